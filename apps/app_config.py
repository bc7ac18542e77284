"""App configuration from environment variables set by ``lrp-captum app`` (or by tests).

Variables: ``LRP_CAPTUM_APP_SLIDES``, ``LRP_CAPTUM_APP_RESULTS`` (required),
``LRP_CAPTUM_APP_MODEL`` (model config JSON used to explain slides and tiles),
``LRP_CAPTUM_APP_TILE_PORT`` (0 = any free port), ``LRP_CAPTUM_APP_EEG_RESULTS``,
``LRP_CAPTUM_APP_TEXT_MODEL``, ``LRP_CAPTUM_APP_DEVICE`` (auto/cpu/cuda).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class AppConfig:
    slides_dir: Path
    results_dir: Path
    model_config: Path | None = None
    tile_port: int = 0
    eeg_results: Path | None = None
    text_model: Path | None = None
    device: str = "auto"


def _opt_path(name: str) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser().resolve() if value else None


def load_config() -> AppConfig:
    slides, results = _opt_path("LRP_CAPTUM_APP_SLIDES"), _opt_path("LRP_CAPTUM_APP_RESULTS")
    if slides is None or results is None:
        raise ConfigError("The app needs a slides folder and a results folder: start it with "
                          "`lrp-captum app --slides DIR --results DIR`.")
    if not slides.is_dir():
        # the page may be seen by others than the person who started the app: no absolute path
        raise ConfigError("The slides folder given with --slides does not exist; pass an existing folder.")
    results.mkdir(parents=True, exist_ok=True)
    model = _opt_path("LRP_CAPTUM_APP_MODEL")
    if model is not None and not model.is_file():
        raise ConfigError(f"Model config {model.name} does not exist; pass a JSON config with --model "
                          "(e.g. from `lrp-captum slide train-demo`).")
    try:
        port = int(os.environ.get("LRP_CAPTUM_APP_TILE_PORT", "0") or 0)
    except ValueError:
        raise ConfigError("LRP_CAPTUM_APP_TILE_PORT must be an integer port") from None
    return AppConfig(slides, results, model, port, _opt_path("LRP_CAPTUM_APP_EEG_RESULTS"),
                     _opt_path("LRP_CAPTUM_APP_TEXT_MODEL"), os.environ.get("LRP_CAPTUM_APP_DEVICE", "auto"))
