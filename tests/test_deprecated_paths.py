"""Import paths of release 0.1 keep working for one release, with a DeprecationWarning."""
from __future__ import annotations

import subprocess
import sys

import pytest

from lrp_captum.deprecated_paths import MOVED, new_path


def _import_in_fresh_process(statement: str) -> subprocess.CompletedProcess:
    code = ("import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
            f"import lrp_captum\n{statement}\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_path_is_the_module_at_its_new_place(old):
    import importlib
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert module is importlib.import_module(MOVED[old])
    assert module.__spec__.name == MOVED[old]  # its own spec, not the alias's


def test_importing_an_old_path_warns_and_names_the_new_one():
    done = _import_in_fresh_process("from lrp_captum.rules import GammaRule")
    assert done.returncode != 0 and "DeprecationWarning" in done.stderr
    assert "lrp_captum.core.rules" in done.stderr


def test_a_submodule_of_a_moved_package_is_one_module_under_both_names():
    done = _import_in_fresh_process(
        "import warnings; warnings.simplefilter('ignore')\n"
        "import lrp_captum.engine.session as old, lrp_captum.core.engine.session as new\n"
        "assert old is new and old.call_session is new.call_session")
    assert done.returncode == 0, done.stderr


def test_public_names_of_the_package_did_not_move():
    done = _import_in_fresh_process(
        "from lrp_captum import LRP, LayerLRP, get_composite, list_composites, zbox_bounds, canonize")
    assert done.returncode == 0, done.stderr


def test_new_path_maps_submodules_of_moved_packages_and_leaves_others_alone():
    assert new_path("lrp_captum.engine.fused") == "lrp_captum.core.engine.fused"
    assert new_path("lrp_captum.engine.linear_ops") == "lrp_captum.core.linear_ops"
    assert new_path("lrp_captum.wsi.pipeline") is None


@pytest.mark.parametrize("old", sorted(__import__("lrp_captum.deprecated_paths", fromlist=["MOVED_NAMES"]).MOVED_NAMES))
def test_a_name_that_left_its_module_is_still_there_with_a_warning(old):
    import importlib

    from lrp_captum.deprecated_paths import MOVED_NAMES

    module, _, name = old.rpartition(".")
    new_module, _, new_name = MOVED_NAMES[old].rpartition(".")
    with pytest.warns(DeprecationWarning, match=rf"{old} has moved to {MOVED_NAMES[old]}"):
        value = getattr(importlib.import_module(module), name)
    assert value is getattr(importlib.import_module(new_module), new_name)


def test_the_0_1_imports_of_demo_code_from_the_library_warn():
    done = _import_in_fresh_process("from lrp_captum.text import train_demo_model")
    assert done.returncode != 0 and "lrp_captum.demos.text_wordcnn.train_demo_model" in done.stderr
    done = _import_in_fresh_process("from lrp_captum.eeg import simulate_epochs")
    assert done.returncode != 0 and "lrp_captum.demos.eeg_simulation.simulate_epochs" in done.stderr


def test_an_unknown_name_is_still_an_attribute_error():
    import lrp_captum.eeg
    import lrp_captum.text

    for module in (lrp_captum.eeg, lrp_captum.text):
        with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
            module.nothing
