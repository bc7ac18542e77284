"""What a run records about the software that made it (manifests of slides, cohorts, MIL runs)."""
from __future__ import annotations

import importlib.metadata as metadata
import sys

PACKAGES = ("lrp-captum", "torch", "captum", "numpy", "openslide-python", "openslide-bin", "tifffile",
            "zarr", "scikit-image")


def versions(extra: tuple[str, ...] = ()) -> dict:
    """``{"python": ..., package: version}`` for :data:`PACKAGES` and ``extra`` that are installed,
    plus ``libopenslide`` (the C library's version) when OpenSlide loads."""
    out = {"python": sys.version.split()[0]}
    for name in PACKAGES + tuple(extra):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    try:
        import openslide

        out["libopenslide"] = openslide.__library_version__
    except Exception:  # noqa: BLE001 -- informational only: no OpenSlide means no entry
        pass
    return out
