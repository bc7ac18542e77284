"""App configuration from environment variables set by ``lrp-captum app`` (or by tests).

Variables: ``LRP_CAPTUM_APP_SLIDES`` with ``LRP_CAPTUM_APP_RESULTS`` (slide page; the results
folder alone serves the cohort and MIL pages), ``LRP_CAPTUM_APP_EEG_RESULTS`` (EEG page),
``LRP_CAPTUM_APP_TEXT_MODEL`` (text page): at least one page's folder; ``LRP_CAPTUM_APP_MODEL``
(model config JSON used to explain slides and tiles), ``LRP_CAPTUM_APP_TILE_PORT`` (0 = any free
port), ``LRP_CAPTUM_APP_DEVICE`` (auto/cpu/cuda), ``LRP_CAPTUM_APP_TOKEN`` /
``LRP_CAPTUM_APP_NO_TOKEN`` (:mod:`lrp_captum.viewer.access_token`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from lrp_captum.viewer.access_token import AppAccess, TokenMissing, access_from_environment


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class AppConfig:
    slides_dir: Path | None
    results_dir: Path | None
    model_config: Path | None = None
    tile_port: int = 0
    eeg_results: Path | None = None
    text_model: Path | None = None
    device: str = "auto"
    access: AppAccess = field(default_factory=lambda: AppAccess(None))

    @property
    def roots(self) -> dict:
        """Each configured folder and how messages name it (they never spell out a folder's path)."""
        names = {self.slides_dir: "the slides folder", self.results_dir: "the results folder",
                 self.eeg_results: "the EEG results folder", self.text_model: "the text model folder",
                 self.model_config.parent if self.model_config else None: "the model's folder"}
        return {path: name for path, name in names.items() if path is not None}


def _opt_path(name: str) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser().resolve() if value else None


def load_config() -> AppConfig:
    slides, results = _opt_path("LRP_CAPTUM_APP_SLIDES"), _opt_path("LRP_CAPTUM_APP_RESULTS")
    eeg, text = _opt_path("LRP_CAPTUM_APP_EEG_RESULTS"), _opt_path("LRP_CAPTUM_APP_TEXT_MODEL")
    if slides is None and results is None and eeg is None and text is None:
        raise ConfigError("The app needs the folder of at least one page: start it with "
                          "`lrp-captum app --slides DIR --results DIR` (slides), `--results DIR` (cohort, MIL), "
                          "`--eeg-results DIR` or `--text-model DIR`.")
    if slides is not None and results is None:
        raise ConfigError("The slides page needs a results folder too: add `--results DIR`.")
    if slides is not None and not slides.is_dir():
        # the page may be seen by others than the person who started the app: no absolute path
        raise ConfigError("The slides folder given with --slides does not exist; pass an existing folder.")
    if results is not None:
        results.mkdir(parents=True, exist_ok=True)
    model = _opt_path("LRP_CAPTUM_APP_MODEL")
    if model is not None and not model.is_file():
        raise ConfigError(f"Model config {model.name} does not exist; pass a JSON config with --model "
                          "(e.g. from `lrp-captum slide train-demo`).")
    try:
        port = int(os.environ.get("LRP_CAPTUM_APP_TILE_PORT", "0") or 0)
    except ValueError:
        raise ConfigError("LRP_CAPTUM_APP_TILE_PORT must be an integer port") from None
    try:
        access = access_from_environment()
    except TokenMissing:
        # run without the server (Streamlit's AppTest, a bare `streamlit run`): apps/app_server.py,
        # what `lrp-captum app` runs, refuses to start in this case
        access = AppAccess(None)
    return AppConfig(slides, results, model, port, eeg, text, os.environ.get("LRP_CAPTUM_APP_DEVICE", "auto"), access)
