"""Import paths of release 0.1 that moved in 0.2, kept working for one release.

``import lrp_captum.rules`` (or ``from lrp_captum.metrics import aopc``) still works: the old
name is an alias of the module at its new place (the same module object, so classes compare
equal), and the import warns with a ``DeprecationWarning`` that names the new path. The names
exported by ``lrp_captum`` itself (``from lrp_captum import LRP, get_composite, ...``) did not
move. The aliases go in 0.3.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

__all__ = ["MOVED", "MOVED_NAMES", "new_path", "moved_name", "install"]

#: old module or package -> where it is now (a package maps its submodules too)
MOVED = {
    "lrp_captum.types": "lrp_captum.core.layer_types",
    "lrp_captum.layers": "lrp_captum.core.layers",
    "lrp_captum.rules": "lrp_captum.core.rules",
    "lrp_captum.composites": "lrp_captum.core.composites",
    "lrp_captum.canonizers": "lrp_captum.core.canonizers",
    "lrp_captum.engine.linear_ops": "lrp_captum.core.linear_ops",
    "lrp_captum.engine": "lrp_captum.core.engine",
    "lrp_captum.attribution": "lrp_captum.core.attribution",
    "lrp_captum.model_mode": "lrp_captum.core.model_mode",
    "lrp_captum.normalization": "lrp_captum.core.normalization",
    "lrp_captum.metrics": "lrp_captum.evaluation.metrics",
    "lrp_captum.select": "lrp_captum.evaluation.ranking",
    "lrp_captum.attention_maps": "lrp_captum.evaluation.attention_maps",
    "lrp_captum.attention_rollout": "lrp_captum.evaluation.attention_rollout",
    "lrp_captum.groundtruth": "lrp_captum.demos.planted_patterns",
    "lrp_captum.vit_groundtruth": "lrp_captum.demos.vit_planted_patterns",
    "lrp_captum.colormaps": "lrp_captum.visualization.colormaps",
    "lrp_captum.demo": "lrp_captum.cli.demo",
    "lrp_captum.wsi.sample": "lrp_captum.demos.sample_slide",
    "lrp_captum.wsi.train": "lrp_captum.demos.slide_model",
    "lrp_captum.wsi.dab_localisation": "lrp_captum.demos.dab_localisation",
    "lrp_captum.wsi.mil.cohort": "lrp_captum.demos.mil_cohort",
    "lrp_captum.wsi.explain": "lrp_captum.wsi.tile_relevance",
    "lrp_captum.eeg.simulate": "lrp_captum.demos.eeg_simulation",
    "lrp_captum.eeg.benchmark": "lrp_captum.demos.eeg_benchmark",
    "lrp_captum.text.data": "lrp_captum.demos.text_sentences",
    "lrp_captum.text.reviews": "lrp_captum.demos.text_reviews",
    "lrp_captum.text.train": "lrp_captum.demos.text_wordcnn",
    "lrp_captum.text.finetune": "lrp_captum.demos.text_minilm",
    "lrp_captum.viewer.cohort": "lrp_captum.viewer.cohort_results",
}


#: names that left a module which stays (``module.name`` -> where the object is now): the module's
#: ``__getattr__`` hands them out through :func:`moved_name`. Library packages no longer
#: re-export demo code, and loading/saving left the trainers.
MOVED_NAMES = {
    "lrp_captum.text.train_demo_model": "lrp_captum.demos.text_wordcnn.train_demo_model",
    "lrp_captum.eeg.simulate_epochs": "lrp_captum.demos.eeg_simulation.simulate_epochs",
    "lrp_captum.eeg.save_simulated": "lrp_captum.demos.eeg_simulation.save_simulated",
    "lrp_captum.demos.text_wordcnn.save_text_model": "lrp_captum.text.model_folders.save_word_cnn",
    "lrp_captum.demos.text_wordcnn.load_word_cnn": "lrp_captum.text.model_folders.load_word_cnn",
    "lrp_captum.demos.text_wordcnn.CONFIG_FILE": "lrp_captum.text.model_folders.CONFIG_FILE",
    "lrp_captum.demos.text_wordcnn.STATE_FILE": "lrp_captum.text.model_folders.STATE_FILE",
    "lrp_captum.eeg.train.save_model": "lrp_captum.eeg.model_folder.save_model",
    "lrp_captum.eeg.train.load_model": "lrp_captum.eeg.model_folder.load_model",
    "lrp_captum.eeg.train.load_config": "lrp_captum.eeg.model_folder.load_config",
    "lrp_captum.eeg.train.CONFIG_NAME": "lrp_captum.eeg.model_folder.CONFIG_NAME",
    "lrp_captum.eeg.train.WEIGHTS_NAME": "lrp_captum.eeg.model_folder.WEIGHTS_NAME",
}


def moved_name(module: str, name: str):
    """The object once importable as ``module.name``, with a ``DeprecationWarning`` naming its
    new place; ``AttributeError`` (as a module's ``__getattr__`` must raise) when nothing moved.

    A module whose names moved ends with::

        def __getattr__(name):
            return moved_name(__name__, name)
    """
    new = MOVED_NAMES.get(f"{module}.{name}")
    if new is None:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    new_module, _, new_name = new.rpartition(".")
    warnings.warn(f"{module}.{name} has moved to {new}: import it from there (the old path is "
                  "removed in lrp-captum 0.3)", DeprecationWarning, stacklevel=3)
    return getattr(importlib.import_module(new_module), new_name)


def new_path(name: str) -> str | None:
    """Where the module once imported as ``name`` is now, or None if it did not move."""
    for old in sorted(MOVED, key=len, reverse=True):
        if name == old or name.startswith(old + "."):
            return MOVED[old] + name[len(old):]
    return None


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves an old path to the module at its new place, with a warning."""

    def find_spec(self, fullname, path=None, target=None):
        new = new_path(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, self, is_package=False)

    def create_module(self, spec):
        new = new_path(spec.name)
        warnings.warn(f"{spec.name} has moved to {new}: import it from there (the old path "
                      "is removed in lrp-captum 0.3)", DeprecationWarning, stacklevel=2)
        module = importlib.import_module(new)
        self._own_specs[module.__name__] = module.__spec__
        return module

    def exec_module(self, module) -> None:
        # the import system stamped the old name's spec on the module: give it back its own
        module.__spec__ = self._own_specs[module.__name__]

    def __init__(self) -> None:
        self._own_specs: dict = {}


def install() -> None:
    """Put the resolver first on ``sys.meta_path`` (once): before the path finder, which would
    otherwise load a moved package's submodules a second time under the old name."""
    if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedModules())
