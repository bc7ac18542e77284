"""``lrp-captum composites`` and ``lrp-captum explain``: the core on the command line."""
from __future__ import annotations

import json

from lrp_captum.cli.arguments import (CommandError, add_option, composite_name, existing_file, int_range,
                                      non_negative_int, output_file, positive_int, reporting_errors)

DEFAULT_COMPOSITE = "epsilon_gamma_box"
#: the largest input side: LRP keeps every layer's activations, and a ResNet at 2048² px needs
#: several GB of memory
MAX_SIZE = 2048


def _target(text: str):
    return text if text == "predicted" else non_negative_int(text)


_target.__name__ = "target"


def register(subparsers) -> None:
    p = subparsers.add_parser("composites", help="list the registered composites")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_composites)

    p = subparsers.add_parser("explain", help="explain an image classifier: a PNG of the image, its relevance "
                                              "and the overlay")
    p.add_argument("--arch", required=True,
                   help="torchvision architecture name (resnet18, vgg16, ...) or "
                        "package.module:factory")
    p.add_argument("--weights", type=existing_file, help="state_dict file (loaded with weights_only=True)")
    p.add_argument("--num-classes", type=positive_int, default=1000,
                   help="classes of a torchvision model")
    p.add_argument("--image", type=existing_file, help="image file (PNG/JPEG); default: a random image")
    p.add_argument("--size", type=int_range(1, MAX_SIZE), default=224,
                   help="input side in pixels: the image is resized to SIZE x SIZE")
    p.add_argument("--composite", type=composite_name, default=DEFAULT_COMPOSITE,
                   help="LRP composite; see 'lrp-captum composites'")
    p.add_argument("--target", type=_target, default="predicted", help="class index or 'predicted'")
    add_option(p, "--output-mode")
    p.add_argument("--out", type=output_file, required=True,
                   help="PNG file to write: the image, its relevance with a colour bar and the overlay; the "
                        "relevance map (H, W) is saved beside it as OUT.relevance.npy")
    p.add_argument("--print-rules", action="store_true", help="print the layer -> rule table")
    # a ValueError of the library names bad input (weights or inputs that are NaN, ...)
    p.set_defaults(func=reporting_errors("lrp-captum explain", _run_explain, (CommandError, ValueError)))


def _composites(args) -> int:
    from lrp_captum.core.composites import list_composites
    items = list_composites()
    if args.json:
        print(json.dumps(items, indent=2))
    else:
        width = max(map(len, items))
        for name, desc in items.items():
            print(f"{name:<{width}}  {desc}")
    return 0


def build_model(arch: str, weights=None, num_classes: int | None = None):
    """A model in eval mode from a torchvision name or ``package.module:factory`` (called without
    arguments), with optional weights (a state_dict, or a dict holding one under ``state_dict``,
    loaded with ``weights_only=True``).

    Raises :class:`~lrp_captum.cli.arguments.CommandError` naming what cannot be built or loaded.
    """
    from lrp_captum.model_files import build_from_factory, load_weights

    if ":" in arch:
        try:
            model = build_from_factory(arch)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
    else:
        import torchvision
        if arch not in torchvision.models.list_models():
            raise CommandError(f"unknown torchvision model {arch!r}; e.g. resnet18, vgg16, or "
                               f"'package.module:factory'")
        kwargs = {} if num_classes is None else {"num_classes": num_classes}
        model = torchvision.models.get_model(arch, weights=None, **kwargs)
    if weights is not None:
        try:
            load_weights(model, weights, architecture=arch)
        except (ValueError, FileNotFoundError) as exc:
            raise CommandError(str(exc)) from None
    return model.eval()


def _run_explain(args) -> int:
    import numpy as np
    import torch

    from lrp_captum.cli.images import read_rgb
    from lrp_captum.core.attribution import LRP
    from lrp_captum.core.composites import get_composite
    from lrp_captum.core.normalization import IMAGENET_MEAN, IMAGENET_STD
    from lrp_captum.visualization.heatmaps import relevance_map
    from lrp_captum.visualization.image_figure import save_explanation_figure

    model = build_model(args.arch, args.weights, args.num_classes)
    if args.image:
        pixels = read_rgb(args.image, args.size)
    else:
        pixels = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    x = torch.from_numpy(pixels).permute(2, 0, 1).float().div(255)[None]
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    x = (x - mean) / std
    composite = get_composite(args.composite, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    with torch.no_grad():
        logits = model(x)
    if args.target == "predicted":
        target = int(logits.argmax(1))
    elif args.target < logits.shape[1]:
        target = args.target
    else:
        raise CommandError(f"--target {args.target} is out of range: the model has {logits.shape[1]} outputs")
    lrp = LRP(model, composite=composite)
    if args.print_rules:
        print(lrp.rule_table(x))
    relevance, delta = lrp.attribute(x, target=target, output_mode=args.output_mode,
                                     return_convergence_delta=True)
    source = args.image.name if args.image else "a random image"
    title = f"{source}: relevance for class {target}, its {args.output_mode}, composite {args.composite}"
    out = save_explanation_figure(args.out, pixels, relevance[0], title=title)
    saved = out.with_suffix(".relevance.npy")
    np.save(saved, relevance_map(relevance[0]).astype(np.float32))
    print(json.dumps({"out": str(out), "relevance": str(saved), "target": target,
                      "logit": float(logits[0, target]), "relevance_sum": float(relevance.sum()),
                      "delta": float(delta[0])}))
    return 0
