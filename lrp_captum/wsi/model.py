"""Tile classifiers for slides: the demo CNN, its JSON config, and loaders for user models.

A model is described by a JSON config (a dict works too)::

    {"architecture": "demo_cnn",                 # or "demo_vit", a torchvision name
                                                 # ("resnet18", "vit_b_16"), "timm:NAME"
                                                 # ("timm:vit_small_patch16_224"),
                                                 # "package.module:factory", or a model
                                                 # folder as the hub stores it (timm's
                                                 # config.json + weights: its classifier,
                                                 # input size and normalisation; see
                                                 # lrp_captum.wsi.hub_folders)
     "kwargs": {"num_classes": 2},               # passed to the constructor/factory
     "weights": "demo_cnn.pt",                   # state_dict, relative to the config file
     "classes": ["negative", "positive"],
     "tile_size": 128,                           # input side in pixels
     "mpp": 0.5,                                 # µm per pixel the model was trained at
     "normalisation": {"mean": [...], "std": [...]}}   # on RGB scaled to [0, 1]

Vision Transformers are built for the config's ``tile_size`` (torchvision's ``image_size``,
timm's ``img_size``) unless ``kwargs`` says otherwise, since their position embeddings fix the
input size. Weights are always loaded with ``torch.load(..., weights_only=True)``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from lrp_captum.model_files import class_index, class_names, build_from_factory, load_weights
from lrp_captum.wsi.hub_folders import is_hub_folder, load_hub_folder
from lrp_captum.core.normalization import IMAGENET_MEAN, IMAGENET_STD
from lrp_captum.devices import resolve_device

DEMO_MEAN = (0.80, 0.72, 0.65)
DEMO_STD = (0.15, 0.17, 0.18)


class DemoTileCNN(nn.Module):
    """Small stain classifier: three conv/BN/ReLU blocks, global average pool, linear head.

    Input (N, 3, H, W) normalised RGB (any H, W >= 16); output (N, num_classes) logits.
    """

    def __init__(self, num_classes: int = 2, width: int = 16):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.BatchNorm2d(4 * w), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(4 * w, num_classes)

    def forward(self, x):
        return self.classifier(self.flatten(self.pool(self.features(x))))


def demo_tile_vit(num_classes: int = 2, image_size: int = 128, patch_size: int = 16,
                  num_layers: int = 4, num_heads: int = 4, hidden_dim: int = 64,
                  mlp_dim: int = 128) -> nn.Module:
    """Small Vision Transformer for the demo tile task (torchvision's ``VisionTransformer``).

    Input (N, 3, image_size, image_size) normalised RGB; output (N, num_classes) logits from
    the class token. The defaults (128-px tiles in 16-px patches, 4 layers of width 64) give
    65 tokens and 0.2 M parameters: small enough to train on a CPU in minutes.
    """
    from torchvision.models import VisionTransformer

    return VisionTransformer(image_size=image_size, patch_size=patch_size, num_layers=num_layers,
                             num_heads=num_heads, hidden_dim=hidden_dim, mlp_dim=mlp_dim,
                             num_classes=num_classes)


@dataclass
class ModelBundle:
    """A loaded tile classifier with everything needed to feed it tiles.

    Attributes
    ----------
    model : the module in eval mode on ``device``.
    classes : class names, index = logit index.
    tile_size : input side in pixels at ``mpp``.
    mpp : µm per pixel of the model input.
    mean, std : per-channel normalisation of RGB in [0, 1].
    config : the config dict as given (weights path made absolute).
    weights_sha256 : hash of the weights file ("" when none was loaded).
    """

    model: nn.Module
    classes: list[str]
    tile_size: int
    mpp: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    config: dict = field(default_factory=dict)
    weights_sha256: str = ""

    @property
    def device(self) -> torch.device:
        p = next(self.model.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def normalise(self, tiles_uint8: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) uint8 tiles -> (N, 3, H, W) float32 normalised on the model's device."""
        x = tiles_uint8.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def class_index(self, name_or_index) -> int:
        return class_index(self.classes, name_or_index)


ARCHITECTURE_FORMS = ("'demo_cnn', 'demo_vit', a torchvision model name (e.g. 'resnet18', 'vit_b_16'), "
                      "'timm:NAME' (e.g. 'timm:vit_small_patch16_224'), 'package.module:factory', or a model "
                      "folder as the hub stores it (config.json + model.safetensors or pytorch_model.bin)")


def _build_architecture(arch: str, kwargs: dict, tile_size: int) -> nn.Module:
    if arch == "demo_cnn":
        return DemoTileCNN(**kwargs)
    if arch == "demo_vit":
        return demo_tile_vit(**{"image_size": tile_size, **kwargs})
    if arch.startswith("timm:"):
        return _timm_model(arch[len("timm:"):], kwargs, tile_size)
    if ":" in arch:
        return build_from_factory(arch, "model factory", **kwargs)
    import torchvision.models as tvm

    if arch not in tvm.list_models():
        raise ValueError(f"unknown architecture {arch!r}: use {ARCHITECTURE_FORMS}")
    if tvm.get_model_builder(arch).__module__.endswith(".vision_transformer"):
        kwargs = {"image_size": tile_size, **kwargs}
    return tvm.get_model(arch, weights=None, **kwargs)


def _timm_model(name: str, kwargs: dict, tile_size: int) -> nn.Module:
    """``timm.create_model(name)`` without pretrained weights (nothing is downloaded)."""
    try:
        import timm
    except ImportError as exc:
        raise ValueError(f"architecture 'timm:{name}' needs timm: pip install timm") from exc
    if not timm.is_model(name):
        raise ValueError(f"timm has no model {name!r} (timm.list_models() lists them)")
    kwargs = dict(kwargs, pretrained=False)
    if "img_size" in kwargs:
        return timm.create_model(name, **kwargs)
    try:  # transformers take their input size; convolutional networks refuse the argument
        return timm.create_model(name, img_size=tile_size, **kwargs)
    except TypeError:
        return timm.create_model(name, **kwargs)


def _check_classifier(model: nn.Module, config: dict, hub) -> None:
    """A hub folder used as a tile classifier must hold one with as many outputs as classes."""
    with torch.no_grad():
        outputs = model(torch.zeros(1, 3, hub.input_size, hub.input_size)).shape[-1]
    if not hub.label_names and outputs == hub.num_features and getattr(model, "num_classes", 0) == 0:
        raise ValueError(f"model folder {config['architecture']} holds an encoder without a classifier "
                         f"(num_classes 0): use it as a MIL encoder (--encoder), or give a folder whose config has "
                         f"num_classes and label_names")
    if outputs != len(config["classes"]):
        raise ValueError(f"model folder {config['architecture']} has {outputs} outputs but {len(config['classes'])} "
                         f"classes were given ({config['classes']})")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_model(config: str | Path | dict, device: str = "auto") -> ModelBundle:
    """Load a tile classifier from a JSON config file or dict (see module docstring).

    Returns a :class:`ModelBundle` in eval mode on ``device`` (``auto``/``cpu``/``cuda``).
    """
    base, owner = Path("."), "model config"
    if not isinstance(config, dict):
        path = Path(config)
        if not path.is_file():
            raise FileNotFoundError(f"model config {path} does not exist (expected a JSON file)")
        try:
            config = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"model config {path} is not valid JSON: {exc}") from exc
        base, owner = path.parent, f"model config {path}"
    config = dict(config)
    for key in ("architecture", "classes", "tile_size", "mpp"):
        if key not in config:
            raise ValueError(f"model config lacks {key!r}; required keys: architecture, classes, "
                             f"tile_size, mpp (optional: kwargs, weights, normalisation)")
    classes = class_names(config["classes"], owner)
    kwargs = dict(config.get("kwargs", {}))
    if is_hub_folder(config["architecture"]):
        hub = load_hub_folder(config["architecture"])
        model = hub.model
        config.update(tile_size=hub.input_size, normalisation=dict(mean=list(hub.mean), std=list(hub.std)),
                      architecture=str(Path(config["architecture"]).resolve()))
        _check_classifier(model, config, hub)
    else:
        model = hub = None
    try:
        model = model if model is not None else _build_architecture(config["architecture"], kwargs,
                                                                    int(config["tile_size"]))
    except TypeError as exc:  # a keyword the constructor does not take
        raise ValueError(f"architecture {config['architecture']!r} cannot be built with kwargs "
                         f"{kwargs}: {exc}") from exc
    sha = file_sha256(hub.weights) if hub is not None else ""
    if config.get("weights"):
        wpath = Path(config["weights"])
        if not wpath.is_absolute():
            wpath = base / wpath
        if not wpath.is_file():
            raise FileNotFoundError(f"model weights {wpath} named in the config do not exist")
        load_weights(model, wpath, what="model weights", architecture=f"architecture {config['architecture']}")
        sha = file_sha256(wpath)
        config["weights"] = str(wpath.resolve())
    norm = config.get("normalisation", {"mean": IMAGENET_MEAN, "std": IMAGENET_STD})
    model.eval().to(resolve_device(device))
    _check_outputs(model, classes, int(config["tile_size"]), owner)
    return ModelBundle(model=model, classes=classes, tile_size=int(config["tile_size"]),
                       mpp=float(config["mpp"]), mean=tuple(norm["mean"]), std=tuple(norm["std"]),
                       config=config, weights_sha256=sha)


def _check_outputs(model: nn.Module, classes: list[str], tile_size: int, owner: str) -> None:
    """``ValueError`` unless ``model`` gives one output per class on a ``(1, 3, tile_size, tile_size)``
    tile: found at loading, not as a broadcast error after every tile is explained."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with torch.no_grad():
        out = model(torch.zeros(1, 3, tile_size, tile_size, device=device))
    shape = tuple(getattr(out, "shape", ()))
    if shape != (1, len(classes)):
        n = len(classes)
        raise ValueError(f"{owner} names {n} class{'es' if n != 1 else ''} {classes}, but the model gives "
                         f"{shape[-1] if len(shape) == 2 else shape} outputs per tile (output shape {shape} for "
                         f"one tile); list one class per output")


def save_model(model: nn.Module, directory: str | Path, config: dict, name: str = "model") -> Path:
    """Save ``model.state_dict()`` as ``name.pt`` and ``config`` (+ weights name) as ``name.json``.

    Returns the JSON path. Both files are written atomically.
    """
    import os

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    wpath = directory / f"{name}.pt"
    tmp = wpath.with_name(wpath.name + f".tmp-{os.getpid()}")
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
    os.replace(tmp, wpath)
    cfg = dict(config, weights=wpath.name)
    jpath = directory / f"{name}.json"
    tmp = jpath.with_name(jpath.name + f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(cfg, indent=2))
    os.replace(tmp, jpath)
    return jpath
