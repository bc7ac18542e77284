"""How MIL explanations add up, pixel to slide: tile evidence against the slide logit, and each
pixel map's sum against its tile's evidence, per encoder and pixel composite.

Usage::

    python benchmarks/mil_sums.py --work /tmp/mil_sums [--n 12 --size 1024]

Writes (or reuses) a synthetic cohort under ``--work``, trains an ``abmil`` head on the demo CNN
trunk and one on the demo ViT trunk (``lrp-captum slide train-mil`` with ``--encoder`` the demo
model configs), explains every held-out slide with ``xmil_lrp`` and ``--top-tiles`` pixel maps
under each pixel composite, and prints a markdown table (docs/mil.md, "Maps that add up").
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lrp_captum.demos.mil_cohort import write_cohort  # noqa: E402
from lrp_captum.demos.slide_model import demo_model_config  # noqa: E402
from lrp_captum.wsi.mil.explain import explain_mil_slide  # noqa: E402
from lrp_captum.wsi.mil.labelled_cohort import read_cohort  # noqa: E402
from lrp_captum.wsi.mil.training import train_mil  # noqa: E402

ENCODERS = {"demo CNN": ("demo_cnn", ("xmil_cnn", "epsilon_plus_flat")),
            "demo ViT": ("demo_vit", ("xmil_vit", "xmil", "cp_lrp", "attnlrp_gamma"))}


def measure(work: Path, n: int, size: int, top_tiles: int) -> list[dict]:
    cohort = work / "cohort"
    if not (cohort / "cohort.csv").is_file():
        write_cohort(cohort, n, size=size, seed=1)
    rows = []
    for label, (arch, composites) in ENCODERS.items():
        spec = {"arch": "model-config", "config": str(demo_model_config(work / "models", arch=arch))}
        head = work / f"abmil_{arch}.json"
        if not head.is_file():
            metrics = train_mil(cohort, head, encoder=spec, head="abmil", cache_dir=work / "embeddings")
            print(f"{label}: head held-out balanced accuracy {metrics['test_balanced_accuracy']:.2f}", file=sys.stderr)
        slides = [e for e in read_cohort(cohort) if e.split == "test"]
        for composite in composites:
            logit_ratio, pixel_ratio = [], []
            for entry in slides:
                out = work / "runs" / arch / composite / Path(entry.slide).stem
                m = explain_mil_slide(entry.slide, head, out, encoder=spec, top_tiles=top_tiles,
                                      pixel_composite=composite, embeddings_dir=work / "embeddings", quiet=True)
                logit_ratio.append(m["sums"]["evidence_to_logit"])
                pixel_ratio += [t["pixel_to_evidence"] for t in m["top_tiles"] if t["pixel_to_evidence"] is not None]
            off = np.abs(np.asarray(pixel_ratio) - 1.0)
            rows.append(dict(encoder=label, composite=composite, slides=len(slides), maps=len(pixel_ratio),
                             logit_off_max=float(np.max(np.abs(np.asarray(logit_ratio) - 1.0))),
                             pixel_median=float(np.median(pixel_ratio)), pixel_off_median=float(np.median(off)),
                             pixel_off_max=float(off.max()), within_1pc=float(np.mean(off <= 0.01))))
            print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


def vit_token_shares(work: Path, composite: str = "xmil_vit", top_tiles: int = 8) -> dict:
    """Where the evidence of the demo ViT's top tiles goes (torchvision's VisionTransformer):
    shares of the tile evidence that stay inside the blocks, on the class token's row, on the
    position embeddings of the patch rows, and that reach the pixels (median and mean |share|)."""
    import copy

    import torch

    from lrp_captum import LRP, LayerLRP, get_composite
    from lrp_captum.wsi.mil.encoders import build_encoder
    from lrp_captum.wsi.mil.explain import MILOptions, plan_mil_run, slide_evidence
    from lrp_captum.wsi.mil.head_files import load_head
    from lrp_captum.wsi.reader import SlideTileDataset

    encoder = build_encoder({"arch": "model-config", "config": str(demo_model_config(work / "models", arch="demo_vit"))})
    head = load_head(work / "abmil_demo_vit.json")
    shares = []
    for entry in [e for e in read_cohort(work / "cohort") if e.split == "test"]:
        plan = plan_mil_run(entry.slide, work / "unused", head, encoder,
                            MILOptions(embeddings_dir=work / "embeddings", quiet=True))
        evidence = slide_evidence(plan)
        top = evidence.order[:top_tiles]
        tiles = SlideTileDataset(plan.slide_path, plan.bag.grid, plan.bag.tiles)
        x = encoder.normalise(torch.stack([tiles[int(i)][1] for i in top])).double()
        initial = evidence.per_dimension[torch.from_numpy(top.copy())].double()
        model = copy.deepcopy(encoder.model).double()
        rules = get_composite(composite)
        pixels = LRP(model, composite=rules).attribute(x, output_mode=initial).flatten(1).sum(1)
        tokens = LayerLRP(model, model.encoder.dropout, composite=rules).attribute(x, output_mode=initial)
        with torch.no_grad():  # the tokens as the encoder adds them up: class token row, patches, positions
            patches = model._process_input(x)
            value = torch.cat([model.class_token.expand(len(x), -1, -1), patches], 1) + model.encoder.pos_embedding
        positions = (model.encoder.pos_embedding * tokens / value)[:, 1:].flatten(1).sum(1)
        total = initial.sum(1)
        shares.append(torch.stack([total - tokens.flatten(1).sum(1), tokens[:, 0].sum(1), positions, pixels], 1)
                      / total[:, None])
    table = torch.cat(shares).numpy()
    names = ("inside the blocks", "class token row", "position embeddings", "pixels")
    return {n: dict(median=float(np.median(table[:, i])), mean_abs=float(np.mean(np.abs(table[:, i]))))
            for i, n in enumerate(names)}


def markdown(rows) -> str:
    lines = ["| encoder | pixel composite | slides | pixel maps | max \\|Σ evidence / logit − 1\\| | median pixel sum / "
             "evidence | median \\|ratio − 1\\| | max \\|ratio − 1\\| | maps within 1 % |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['encoder']} | `{r['composite']}` | {r['slides']} | {r['maps']} | {r['logit_off_max']:.1e} | "
                     f"{r['pixel_median']:.3f} | {r['pixel_off_median']:.1e} | {r['pixel_off_max']:.1e} | "
                     f"{100 * r['within_1pc']:.0f} % |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, required=True, help="cohort, models, heads and runs go here")
    p.add_argument("--n", type=int, default=12, help="cohort slides (default 12)")
    p.add_argument("--size", type=int, default=1024, help="slide side in px (default 1024)")
    p.add_argument("--top-tiles", type=int, default=8, help="pixel maps per slide (default 8)")
    args = p.parse_args(argv)
    print(markdown(measure(args.work, args.n, args.size, args.top_tiles)))
    print("\n| where the demo ViT's tile evidence goes (xmil_vit) | median share | mean \\|share\\| |\n|---|---:|---:|")
    for name, share in vit_token_shares(args.work, top_tiles=args.top_tiles).items():
        print(f"| {name} | {share['median']:.3f} | {share['mean_abs']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
