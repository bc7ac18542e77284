"""``lrp-captum evaluate``: rank explanation methods for a model on a batch of inputs.

    lrp-captum evaluate rank --model resnet18 --weights resnet18.pt --inputs images/ \\
        --composites seeds,epsilon_gamma_box,epsilon_plus_flat --captum saliency --out report/
    lrp-captum evaluate rank --model mypkg.models:make_net --inputs batch.pt --grid --out report/

Writes ``report.md``, ``curves.png``, ``results.csv`` and ``curves.csv`` to ``--out``.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import torch

from . import add_group

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
NORMALIZATIONS = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "none": None,
}
DEFAULT_COMPOSITES = "seeds,epsilon_gamma_box,epsilon_plus_flat,epsilon,zero"


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def register(subparsers) -> None:
    """Add the ``evaluate`` group to the top-level ``lrp-captum`` parser."""
    sub = add_group(subparsers, "evaluate", "rank composites by explanation quality",
                    __doc__.splitlines()[0])
    p = sub.add_parser("rank", help="measure and rank explanation methods, write a report folder",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True,
                   help="torchvision architecture name (e.g. resnet18) or 'package.module:factory' "
                        "(a callable returning an nn.Module)")
    p.add_argument("--weights", type=Path, help="state_dict file, loaded with weights_only=True; "
                   "without it the model keeps its random initialisation")
    p.add_argument("--num-classes", type=int, help="classes of a torchvision model")
    p.add_argument("--inputs", type=Path, required=True,
                   help="folder of images, or a .pt file holding a tensor (N, C, ...) or a dict "
                        "with 'images' and optional 'labels'")
    p.add_argument("--image-size", type=int, default=224, help="side images are resized to")
    p.add_argument("--normalize", choices=sorted(NORMALIZATIONS), default="imagenet",
                   help="normalisation applied to folder images; also sets the z^B bounds. For .pt "
                        "inputs the tensor is used as is and 'none' takes bounds from its min/max")
    p.add_argument("--max-images", type=int, default=32, help="use at most this many inputs")
    p.add_argument("--composites", default=DEFAULT_COMPOSITES,
                   help="comma-separated LRP composites ('' for none)")
    p.add_argument("--grid", action="store_true", help="add a γ × ε grid (epsilon_gamma_box)")
    p.add_argument("--gammas", default="0,0.1,0.25,1", help="γ values of --grid")
    p.add_argument("--epsilons", default="1e-6,0.25", help="ε values of --grid")
    p.add_argument("--captum", default="saliency,input_x_gradient",
                   help="comma-separated Captum methods: saliency, input_x_gradient, "
                        "integrated_gradients, occlusion ('' for none)")
    p.add_argument("--target", type=int, help="explained class (default: labels in the .pt file, "
                   "else the model's prediction)")
    p.add_argument("--patch-size", type=int, default=16, help="perturbation patch side in pixels")
    p.add_argument("--baseline", default="mean", help="zeros, mean, blur, uniform or a number")
    p.add_argument("--output", choices=["logit", "probability"], default="logit")
    p.add_argument("--steps", type=int, help="perturbation steps (default: all patches)")
    p.add_argument("--continuity-samples", type=int, default=0)
    p.add_argument("--randomisation-layers", type=int, default=1)
    p.add_argument("--rank-by", default="aopc_morf")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--out", type=Path, required=True, help="report folder (created)")
    p.set_defaults(func=run_rank)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("lrp-captum evaluate: --device cuda but no CUDA device is available; use --device cpu")
    return torch.device(name)


def load_model(spec: str, weights: Path | None = None, num_classes: int | None = None) -> torch.nn.Module:
    """A model from a torchvision name or ``package.module:factory``, with optional weights."""
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise SystemExit(f"lrp-captum evaluate: cannot import {spec!r} ({exc}); give "
                             "'package.module:callable' importable from the current environment")
        model = factory()
    else:
        import torchvision

        kwargs = {} if num_classes is None else {"num_classes": num_classes}
        try:
            model = torchvision.models.get_model(spec, weights=None, **kwargs)
        except ValueError as exc:
            raise SystemExit(f"lrp-captum evaluate: unknown torchvision model {spec!r}; e.g. resnet18, "
                             f"vgg16, or use 'package.module:factory' ({exc})")
    if weights is not None:
        if not weights.is_file():
            raise SystemExit(f"lrp-captum evaluate: weights file {weights} does not exist")
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise SystemExit(f"lrp-captum evaluate: cannot read {weights} as a weights-only state_dict "
                             f"(pickled objects are refused): {exc}")
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise SystemExit(f"lrp-captum evaluate: {weights} does not fit {spec}: {exc}")
    return model.eval()


def load_inputs(path: Path, image_size: int, normalize: str) -> tuple[torch.Tensor, torch.Tensor | None,
                                                                     torch.Tensor, torch.Tensor]:
    """Inputs, optional labels and z^B bounds ``(low, high)`` per channel."""
    from ..rules import zbox_bounds

    if path.is_dir():
        from PIL import Image

        files = sorted(f for f in path.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise SystemExit(f"lrp-captum evaluate: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {path}")
        imgs = []
        for f in files:
            try:
                im = Image.open(f).convert("RGB").resize((image_size, image_size), Image.BILINEAR)
            except OSError as exc:
                raise SystemExit(f"lrp-captum evaluate: cannot read image {f}: {exc}")
            imgs.append(torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
                        .view(image_size, image_size, 3).permute(2, 0, 1).float() / 255)
        x = torch.stack(imgs)
        norm = NORMALIZATIONS[normalize]
        if norm is None:
            return x, None, torch.zeros(3), torch.ones(3)
        mean, std = norm
        x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
        low, high = zbox_bounds(mean, std)
        return x, None, low, high
    if path.suffix != ".pt" or not path.is_file():
        raise SystemExit(f"lrp-captum evaluate: --inputs {path} is neither a folder of images nor a .pt file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SystemExit(f"lrp-captum evaluate: cannot read {path} with weights_only=True: {exc}")
    labels = None
    if isinstance(obj, dict):
        key = next((k for k in ("images", "inputs", "x") if k in obj), None)
        if key is None:
            raise SystemExit(f"lrp-captum evaluate: {path} holds a dict without 'images'; keys: {list(obj)}")
        labels = obj.get("labels", obj.get("targets"))
        obj = obj[key]
    if not isinstance(obj, torch.Tensor) or obj.dim() < 3:
        raise SystemExit(f"lrp-captum evaluate: {path} must hold a tensor (N, C, ...); got "
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
    from .. import select as S

    device = _device(args.device)
    model = load_model(args.model, args.weights, args.num_classes).to(device)
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
    names = [n for n in args.composites.split(",") if n.strip()]
    if names:
        try:
            cands.update(S.lrp_explainers(names, low=low, high=high))
        except ValueError as exc:
            raise SystemExit(f"lrp-captum evaluate: {exc}")
    if args.grid:
        cands.update(S.lrp_grid(_floats(args.gammas), _floats(args.epsilons), low=low, high=high))
    captum = [n for n in args.captum.split(",") if n.strip()]
    if captum:
        try:
            cands.update(S.captum_explainers(captum, occlusion_window=args.patch_size))
        except ValueError as exc:
            raise SystemExit(f"lrp-captum evaluate: {exc}")
    if not cands:
        raise SystemExit("lrp-captum evaluate: nothing to rank; give --composites, --grid or --captum")
    try:
        baseline = float(args.baseline)
    except ValueError:
        baseline = args.baseline
    result = S.rank_explainers(model, x, cands, target=target, patch_size=args.patch_size,
                               baseline=baseline, output=args.output, n_steps=args.steps,
                               continuity_samples=args.continuity_samples,
                               randomisation_layers=args.randomisation_layers, rank_by=args.rank_by)
    report = result.write_report(args.out)
    print(result.to_markdown())
    print(f"\nbest: {result.best}; report: {report}", file=sys.stderr)
    return 0
