"""Which tile classifier the app may run to explain tiles again (the tile view, the deepest zoom
levels of the viewer).

``--model`` wins; otherwise the model config recorded in a result's manifest is used when its
weights file still exists and it names a built-in or torchvision architecture: a
``package.module:factory`` entry would import code named by a results file, so it needs
``--model``. Models are loaded by :func:`lrp_captum.wsi.model.load_model`
(``torch.load(..., weights_only=True)``).
"""
from __future__ import annotations

from pathlib import Path


def model_source(model_config: str | Path | None, manifest: dict) -> tuple[str | None, object]:
    """``(key, config)`` of the model to explain a result's tiles with, or ``(None, reason)``.

    Parameters
    ----------
    model_config : path or None
        The app's ``--model``.
    manifest : dict
        The result's ``manifest.json``.

    Returns
    -------
    key : str or None
        Identifies the model (for caches); None when there is none.
    config : str or dict, or str
        What :func:`~lrp_captum.wsi.model.load_model` takes; the reason (plain text) when ``key``
        is None.
    """
    if model_config is not None:
        path = Path(model_config)
        return f"{path}:{path.stat().st_mtime_ns}", str(path)
    model = manifest.get("model") if isinstance(manifest.get("model"), dict) else {}
    config = model.get("config")
    if not isinstance(config, dict) or "architecture" not in config:
        return None, ("No model to re-explain tiles: start the app with --model CONFIG "
                      "(the demo model: `lrp-captum slide train-demo`).")
    if ":" in str(config["architecture"]):
        return None, "The result's model is a custom factory; start the app with --model CONFIG to use it."
    weights = config.get("weights")
    if weights and not Path(weights).is_file():
        return None, f"The result's model weights {Path(weights).name} are gone; start the app with --model CONFIG."
    return f"manifest:{model.get('weights_sha256', '')}:{sorted(config.items())!r}", config
