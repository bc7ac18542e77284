"""Shared pieces of the slide tests (imported by test_wsi_*, test_mil_explain, test_cohort_inputs)."""
from pathlib import Path


def tiny_model_config(folder: Path) -> Path:
    """An untrained demo-architecture model (64-px tiles at 0.5 µm/px): enough for tests of
    options and folders, which do not look at what the model predicts."""
    from lrp_captum.wsi.model import DEMO_MEAN, DEMO_STD, DemoTileCNN, save_model

    config = dict(architecture="demo_cnn", kwargs=dict(num_classes=2, width=4), classes=["neg", "pos"],
                  tile_size=64, mpp=0.5, normalisation=dict(mean=list(DEMO_MEAN), std=list(DEMO_STD)))
    save_model(DemoTileCNN(num_classes=2, width=4), folder, config, name="tiny")
    return folder / "tiny.json"
