"""``lrp-captum evaluate``: rank explanation methods for a model on a batch of inputs.

    lrp-captum evaluate rank --arch resnet18 --weights resnet18.pt --inputs images/ \\
        --composites seeds,epsilon_gamma_box,epsilon_plus_flat --captum saliency --out report/
    lrp-captum evaluate rank --arch mypkg.models:make_net --inputs batch.pt --grid --out report/

Writes ``report.md``, ``curves.png``, ``results.csv`` and ``curves.csv`` to ``--out``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from lrp_captum.cli import add_group
from lrp_captum.cli.arguments import (CommandError, add_option, comma_list, composite_name, existing_file,
                                      existing_path, fail, non_negative_float, non_negative_int, one_of, output_folder,
                                      positive_float, positive_int)
from lrp_captum.core.normalization import IMAGENET_MEAN, IMAGENET_STD

PROG = "lrp-captum evaluate rank"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
NORMALIZATIONS = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "none": None,
}
DEFAULT_COMPOSITES = "seeds,epsilon_gamma_box,epsilon_plus_flat,epsilon,zero"
BASELINES = ("zeros", "mean", "blur", "uniform")


def _baseline(text: str):
    """A named baseline or a number."""
    if text in BASELINES:
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(BASELINES)} or a number, "
                                         f"got {text!r}") from None


_baseline.__name__ = "baseline"


def register(subparsers) -> None:
    """Add the ``evaluate`` group to the top-level ``lrp-captum`` parser."""
    from lrp_captum.evaluation.ranking import CAPTUM_METHODS, METRIC_DIRECTIONS

    sub = add_group(subparsers, "evaluate", "rank composites by explanation quality",
                    __doc__.splitlines()[0])
    p = sub.add_parser("rank", help="measure and rank explanation methods, write a report folder")
    add_option(p, "--arch", old=("--model",), required=True,
               help="torchvision architecture name (e.g. resnet18) or 'package.module:factory' (a callable "
                    "returning an nn.Module)")
    p.add_argument("--weights", type=existing_file, help="state_dict file, loaded with weights_only=True; "
                   "without it the model keeps its random initialisation")
    p.add_argument("--num-classes", type=positive_int, help="classes of a torchvision model")
    p.add_argument("--inputs", type=existing_path, required=True,
                   help="folder of images, or a .pt file holding a tensor (N, C, ...) or a dict "
                        "with 'images' and optional 'labels'")
    p.add_argument("--image-size", type=positive_int, default=224, help="side images are resized to")
    p.add_argument("--normalize", choices=sorted(NORMALIZATIONS), default="imagenet",
                   help="normalisation applied to folder images; also sets the z^B bounds. For .pt "
                        "inputs the tensor is used as is and 'none' takes bounds from its min/max")
    p.add_argument("--max-images", type=positive_int, default=32, help="use at most this many inputs")
    p.add_argument("--composites", type=comma_list(composite_name), default=DEFAULT_COMPOSITES,
                   help="comma-separated LRP composites ('' for none); see 'lrp-captum composites'")
    p.add_argument("--grid", action="store_true", help="add a γ × ε grid (epsilon_gamma_box)")
    p.add_argument("--gammas", type=comma_list(non_negative_float), default="0,0.1,0.25,1",
                   help="γ values of --grid (>= 0)")
    p.add_argument("--epsilons", type=comma_list(positive_float), default="1e-6,0.25",
                   help="ε values of --grid (> 0)")
    p.add_argument("--captum", type=comma_list(one_of(CAPTUM_METHODS, "Captum method")),
                   default="saliency,input_x_gradient",
                   help=f"comma-separated Captum methods: {', '.join(CAPTUM_METHODS)} ('' for none)")
    p.add_argument("--target", type=non_negative_int, help="explained class (default: labels in the .pt "
                   "file, else the model's prediction)")
    p.add_argument("--patch-size", type=positive_int, default=16, help="perturbation patch side in pixels")
    p.add_argument("--baseline", type=_baseline, default="mean", help=f"{', '.join(BASELINES)} or a number")
    add_option(p, "--output-mode", old=("--output",), choices=("logit", "probability"),
               help="what is tracked while perturbing: the target's logit or its softmax probability")
    p.add_argument("--steps", type=positive_int, help="perturbation steps (default: all patches)")
    p.add_argument("--continuity-samples", type=non_negative_int, default=0,
                   help="noisy copies per input for the continuity metric (0 = not measured)")
    p.add_argument("--randomisation-layers", type=non_negative_int, default=1,
                   help="top layers re-initialised for the model-randomisation check (0 = not measured)")
    # mass accuracy and the pointing game need ground-truth masks, which the command does not take
    p.add_argument("--rank-by", choices=sorted(set(METRIC_DIRECTIONS) - {"mass_accuracy", "pointing_game"}),
                   default="aopc_morf", help="metric to rank by")
    add_option(p, "--device")
    p.add_argument("--out", type=output_folder, required=True, help="report folder (created)")
    p.set_defaults(func=run_rank)


def load_inputs(path: Path, image_size: int, normalize: str) -> tuple[torch.Tensor, torch.Tensor | None,
                                                                     torch.Tensor, torch.Tensor]:
    """Inputs, optional labels and z^B bounds ``(low, high)`` per channel.

    Raises :class:`~lrp_captum.cli.arguments.CommandError` naming the unusable file or folder.
    """
    from lrp_captum.core.rules import zbox_bounds

    if path.is_dir():
        from lrp_captum.cli.images import read_rgb

        files = sorted(f for f in path.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise CommandError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {path}")
        x = torch.stack([torch.from_numpy(read_rgb(f, image_size)).permute(2, 0, 1).float() / 255
                         for f in files])
        norm = NORMALIZATIONS[normalize]
        if norm is None:
            return x, None, torch.zeros(3), torch.ones(3)
        mean, std = norm
        x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
        low, high = zbox_bounds(mean, std)
        return x, None, low, high
    if path.suffix != ".pt" or not path.is_file():
        raise CommandError(f"--inputs {path} is neither a folder of images nor a .pt file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CommandError(f"cannot read {path} with weights_only=True: {exc}") from None
    labels = None
    if isinstance(obj, dict):
        key = next((k for k in ("images", "inputs", "x") if k in obj), None)
        if key is None:
            raise CommandError(f"{path} holds a dict without 'images'; keys: {list(obj)}")
        labels = obj.get("labels", obj.get("targets"))
        obj = obj[key]
    if not isinstance(obj, torch.Tensor) or obj.dim() < 3:
        raise CommandError(f"{path} must hold a tensor (N, C, ...); got "
                           f"{type(obj).__name__} {tuple(getattr(obj, 'shape', ()))}")
    x = obj.float()
    norm = NORMALIZATIONS[normalize]
    if norm is not None and x.shape[1] == len(norm[0]):
        low, high = zbox_bounds(*norm)
    else:
        dims = [0] + list(range(2, x.dim()))
        low, high = x.amin(dim=dims), x.amax(dim=dims)
    return x, (None if labels is None else torch.as_tensor(labels).long()), low, high


def run_rank(args) -> int:
    try:
        return _rank(args)
    except (CommandError, ValueError, RuntimeError) as exc:  # select names the failing candidate
        return fail(PROG, exc)


def _rank(args) -> int:
    from lrp_captum.evaluation import ranking as S
    from lrp_captum.cli.core import build_model

    if not (args.composites or args.grid or args.captum):
        raise CommandError("nothing to rank; give --composites, --grid or --captum")
    needs = {"continuity": ("--continuity-samples", args.continuity_samples),
             "randomisation_similarity": ("--randomisation-layers", args.randomisation_layers)}
    if args.rank_by in needs and needs[args.rank_by][1] == 0:
        raise CommandError(f"--rank-by {args.rank_by} is measured only with {needs[args.rank_by][0]} > 0")
    from lrp_captum.devices import resolve_device

    device = resolve_device(args.device)
    model = build_model(args.arch, args.weights, args.num_classes).to(device)
    x, labels, low, high = load_inputs(args.inputs, args.image_size, args.normalize)
    x = x[:args.max_images].to(device)
    low, high = low.to(device), high.to(device)
    if args.target is not None:
        target = args.target
    elif labels is not None:
        target = labels[:args.max_images].to(device)
    else:
        target = None
    cands = {}
    if args.composites:
        cands.update(S.lrp_explainers(args.composites, low=low, high=high))
    if args.grid:
        cands.update(S.lrp_grid(args.gammas, args.epsilons, low=low, high=high))
    if args.captum:
        cands.update(S.captum_explainers(args.captum, occlusion_window=args.patch_size))
    result = S.rank_explainers(model, x, cands, target=target, patch_size=args.patch_size,
                               baseline=args.baseline, output=args.output_mode, n_steps=args.steps,
                               continuity_samples=args.continuity_samples,
                               randomisation_layers=args.randomisation_layers, rank_by=args.rank_by)
    report = result.write_report(args.out)
    print(result.to_markdown())
    print(f"\nbest: {result.best}; report: {report}", file=sys.stderr)
    return 0
