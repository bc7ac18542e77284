"""``make demo``: the main job end to end on bundled data, then the viewer.

1. write a sample whole-slide image (built from scikit-image's IHC image) in ``demo_output/slides``;
2. train (or reuse) the demo tile classifier;
3. explain the slide with a progress bar into ``demo_output/results/<slide>``;
4. prepare the EEG and text pages (simulated epochs, a small EEG model; the MiniLM transformer,
   the text page's default, scored on the hand-written reviews of tests/data, and the word-CNN);
5. start the Streamlit app on all of them with the demo model (``--no-app`` to skip): it prints the
   URL to open, token included; without ``--port`` it takes 8501 or the next free port and says
   which (``make demo PORT=8600``).

Every step is skipped when its output exists, so a second ``make demo`` starts at once. All
steps call the same library code as the CLI (``lrp-captum --help``).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lrp_captum.cli import main as cli
from lrp_captum.demos.slide_model import demo_model_config


def _step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def run(out: Path, size: int, open_app: bool, port: int | None) -> int:
    slides, results = out / "slides", out / "results"
    slide = slides / "sample.svs"
    slides.mkdir(parents=True, exist_ok=True)

    _step(f"sample slide {slide} ({size} x {size} px, Aperio SVS-like)")
    if not slide.exists():
        cli(["slide", "sample", str(slide), "--size", str(size), "--kind", "svs"])

    _step("demo tile classifier (trained once, cached)")
    cli(["slide", "train-demo", "--quiet"])

    _step("explaining the slide (resumable: interrupt and rerun to continue)")
    code = cli(["slide", "explain", str(slide), "--model", "demo", "--out",
                str(results / slide.stem), "--overlap", "0.25"])
    if code:
        return code

    eeg_dir = out / "eeg"
    _step("EEG page: simulated motor-imagery epochs, ShallowConvNet, relevance")
    epochs = eeg_dir / "sim_motor_imagery-epo.fif"
    if not (eeg_dir / "explained").exists():
        cli(["eeg", "simulate", "--task", "motor_imagery", "--out", str(eeg_dir)])
        cli(["eeg", "train", str(epochs), "--arch", "shallow", "--out", str(eeg_dir / "model")])
        cli(["eeg", "explain", str(epochs), "--model", str(eeg_dir / "model"),
             "--out", str(eeg_dir / "explained")])

    _step("text page: the MiniLM transformer (cached; about a minute on a quiet 2-core machine) and "
          "the word-CNN")
    for argv in text_steps(out):
        if cli(argv):
            return 1

    print(f"\nOutputs: {results / slide.stem}  (overview.png, overlay.tif, tiles.geojson, "
          "relevance.zarr, manifest.json)")
    if not open_app:
        return 0
    _step("starting the app (it prints the URL to open)")
    return cli(app_arguments(out, demo_model_config(), port))


#: labelled reviews never used in training, in a source checkout (not in an installed package)
INDEPENDENT_REVIEWS = Path(__file__).resolve().parents[2] / "tests" / "data"


def text_steps(out: Path) -> list[list[str]]:
    """The commands that make the text page's models: the MiniLM demo (reused when cached),
    scored on the hand-written reviews when the checkout has them, and the word-CNN."""
    reviews = sorted(INDEPENDENT_REVIEWS.glob("reviews_independent*.jsonl"))
    minilm = ["text", "train-demo", "--arch", "minilm", "--out", str(out / "text_minilm")]
    steps = [minilm + (["--evaluate-on", *map(str, reviews)] if reviews else [])]
    if not (out / "text_model" / "config.json").exists():
        steps.append(["text", "train-demo", "--out", str(out / "text_model")])
    return steps


def text_model_folder(out: Path) -> Path:
    """What the app's text page gets: the folder holding both models (it shows the transformer first)."""
    return out


def app_arguments(out: Path, model: Path, port: int | None) -> list[str]:
    """``lrp-captum app`` on the demo's folders, with the demo model (so slides and tiles can be
    explained again from the page); ``port`` None: 8501 or the next free one."""
    return (["app", "--slides", str(out / "slides"), "--results", str(out / "results"), "--model", str(model),
             "--eeg-results", str(out / "eeg"), "--text-model", str(text_model_folder(out))]
            + (["--port", str(port)] if port is not None else []))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lrp_captum.cli.demo", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="demo_output")
    p.add_argument("--size", type=int, default=8000, help="sample slide side in pixels")
    p.add_argument("--no-app", action="store_true", help="do not start the viewer")
    p.add_argument("--port", type=int, default=None, help="app port (default 8501, or the next free one)")
    args = p.parse_args(argv)
    open_app = not args.no_app and not os.environ.get("CI")
    return run(Path(args.out), args.size, open_app, args.port)


if __name__ == "__main__":
    sys.exit(main())
