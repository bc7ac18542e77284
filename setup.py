"""Packaging that pyproject.toml cannot say: the top-level ``apps/`` folder (the Streamlit app
and its viewer page) ships inside the package as ``lrp_captum._app``, so ``lrp-captum app``
works from an installed wheel. Everything else is in pyproject.toml."""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["lrp_captum", "lrp_captum.*"])
    + ["lrp_captum._app", "lrp_captum._app.views", "lrp_captum._app.viewer"],  # viewer/: data only
    package_dir={"lrp_captum._app": "apps"},
    package_data={"lrp_captum._app.viewer": ["*.html", "*.js", "*.css"]},
)
