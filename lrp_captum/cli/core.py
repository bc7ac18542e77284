"""``lrp-captum composites`` and ``lrp-captum explain``: the core on the command line."""
from __future__ import annotations

import importlib
import json
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("composites", help="list the registered composites")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_composites)

    p = subparsers.add_parser("explain", help="explain an image classifier, write a heatmap PNG")
    p.add_argument("--arch", required=True,
                   help="torchvision architecture name (resnet18, vgg16, ...) or "
                        "package.module:factory")
    p.add_argument("--weights", help="state_dict file (loaded with weights_only=True)")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--image", help="image file (PNG/JPEG); default: a random image")
    p.add_argument("--size", type=int, default=224, help="input side in pixels")
    p.add_argument("--composite", default="epsilon_gamma_box")
    p.add_argument("--target", default="predicted", help="class index or 'predicted'")
    p.add_argument("--output-mode", default="logit",
                   choices=["logit", "probability", "contrastive"])
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--print-rules", action="store_true", help="print the layer -> rule table")
    p.set_defaults(func=_explain)


def _composites(args) -> int:
    from ..composites import list_composites
    items = list_composites()
    if args.json:
        print(json.dumps(items, indent=2))
    else:
        width = max(map(len, items))
        for name, desc in items.items():
            print(f"{name:<{width}}  {desc}")
    return 0


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_model(arch: str, weights: str | None, num_classes: int):
    """A model from a torchvision name or ``package.module:factory``, with optional weights."""
    import torch
    if ":" in arch:
        module_name, factory = arch.split(":", 1)
        model = getattr(importlib.import_module(module_name), factory)()
    else:
        import torchvision
        if not hasattr(torchvision.models, arch):
            raise SystemExit(f"unknown torchvision architecture {arch!r}")
        model = getattr(torchvision.models, arch)(num_classes=num_classes)
    if weights:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    return model.eval()


def _explain(args) -> int:
    import numpy as np
    import torch

    from ..attribution import LRP
    from ..composites import get_composite
    from ..rules import zbox_bounds
    from ..visualization import save_heatmap

    model = build_model(args.arch, args.weights, args.num_classes)
    if args.image:
        from PIL import Image
        img = Image.open(args.image).convert("RGB").resize((args.size, args.size))
        pixels = np.asarray(img, dtype=np.uint8)
    else:
        rng = np.random.default_rng(0)
        pixels = rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    x = torch.from_numpy(pixels).permute(2, 0, 1).float().div(255)[None]
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    x = (x - mean) / std
    low, high = zbox_bounds(IMAGENET_MEAN, IMAGENET_STD)
    needs_bounds = args.composite in ("epsilon_gamma_box", "seeds")
    composite = get_composite(args.composite, **({"low": low, "high": high}
                                                 if needs_bounds else {}))
    with torch.no_grad():
        logits = model(x)
    target = int(logits.argmax(1)) if args.target == "predicted" else int(args.target)
    lrp = LRP(model, composite=composite)
    if args.print_rules:
        print(lrp.rule_table(x))
    relevance, delta = lrp.attribute(x, target=target, output_mode=args.output_mode,
                                     return_convergence_delta=True)
    out = save_heatmap(args.out, relevance[0], image=pixels)
    print(json.dumps({"out": str(out), "target": target, "logit": float(logits[0, target]),
                      "relevance_sum": float(relevance.sum()), "delta": float(delta[0])}))
    return 0
