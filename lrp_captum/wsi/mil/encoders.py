"""Tile encoders: frozen modules that turn (N, 3, T, T) tiles into (N, D) embeddings.

An encoder is described by a JSON-able *spec*, stored with every MIL head trained on its
embeddings, so that the same encoder can be rebuilt for explanation::

    {"arch": "demo", "config": "demo_cnn.json"}    # the demo tile CNN without its classifier
                                              # (lrp_captum.demos.slide_model.demo_encoder_spec())
    {"arch": "model-config", "config": "x.json"}   # any tile classifier of lrp_captum.wsi.model,
                                              # its last nn.Linear replaced by nn.Identity
    {"arch": "resnet18", "seed": 0}           # a torchvision model, random init (no downloads),
                                              # its last nn.Linear replaced by nn.Identity
    {"arch": "timm:resnet18", "seed": 0}      # a timm model, pretrained=False, num_classes=0
    {"arch": "package.module:factory"}        # a factory returning an encoder module
    {"arch": "hub-folder", "config": "UNI/"}  # a foundation model in a local folder as the hub
                                              # stores it (lrp_captum.wsi.hub_folders): timm's
                                              # config.json + model.safetensors/pytorch_model.bin,
                                              # a transformers ViT (Phikon), or CONCH's
                                              # pytorch_model.bin (its vision tower); input size and
                                              # normalisation from its config. An "arch" that is
                                              # such a folder is read as this spec.
    # optional: "kwargs", "weights" (state_dict file, loaded with weights_only=True),
    # "tile_size" (px), "mpp" (µm/px), "normalisation" {"mean", "std"} on RGB in [0, 1]

Every encoder has an *identity*: a SHA-256 over its spec (without file locations) and every
parameter and buffer. ``"demo"`` is a model config like ``"model-config"`` with an identity of
its own: the demo model is trained and cached by :mod:`lrp_captum.demos.slide_model`, which the
CLI asks for its config (the library never trains it). A head remembers the identity of the encoder it was trained with and
refuses any other, and the embedding cache is keyed by it.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lrp_captum.model_files import build_from_factory, load_weights
from lrp_captum.wsi.hub_folders import is_hub_folder, load_hub_folder
from lrp_captum.core.normalization import IMAGENET_MEAN, IMAGENET_STD

DEFAULT_TILE_SIZE = 128
DEFAULT_MPP = 0.5


class EncoderMismatchError(ValueError):
    """Embeddings or a head do not belong to the given encoder."""


@dataclass
class TileEncoder:
    """A frozen tile encoder and how to feed it.

    Attributes
    ----------
    model : (N, 3, tile_size, tile_size) normalised RGB -> (N, dim) embeddings; eval mode.
    spec : the JSON-able description it was built from (see module docstring).
    tile_size : input side in px at ``mpp``.
    mpp : µm per pixel of the input tiles.
    mean, std : per-channel normalisation of RGB in [0, 1].
    dim : embedding size D.
    identity : SHA-256 hex of the spec and all parameters/buffers.
    """

    model: nn.Module
    spec: dict
    tile_size: int
    mpp: float
    mean: tuple
    std: tuple
    dim: int
    identity: str

    @property
    def device(self) -> torch.device:
        p = next(self.model.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    @property
    def name(self) -> str:
        return str(self.spec.get("arch"))

    def normalise(self, tiles_uint8: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 normalised, on the encoder's device."""
        x = tiles_uint8.to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    @torch.no_grad()
    def embed(self, tiles_uint8: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) uint8 tiles -> (N, dim) float32 embeddings (on CPU)."""
        return self.model(self.normalise(tiles_uint8)).float().cpu()


def _drop_last_linear(model: nn.Module) -> nn.Module:
    """``model`` with its last ``nn.Linear`` (in registration order) replaced by ``nn.Identity``."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    if last is None:
        raise ValueError(f"{type(model).__name__} has no nn.Linear classifier to remove; give an encoder "
                         f"that returns embeddings as 'package.module:factory'")
    parent_name, _, child = last.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, nn.Identity())
    return model


def _build_module(spec: dict) -> tuple[nn.Module, dict]:
    """(module, defaults for tile_size/mpp/normalisation) for a spec."""
    arch = spec.get("arch")
    kwargs = dict(spec.get("kwargs", {}))
    if arch == "hub-folder":
        if not spec.get("config"):
            raise ValueError("encoder spec 'hub-folder' needs 'config': the model folder (config.json + weights)")
        hub = load_hub_folder(spec["config"], num_classes=0)
        return hub.model, dict(tile_size=hub.input_size, mpp=DEFAULT_MPP,
                               normalisation=dict(mean=list(hub.mean), std=list(hub.std)))
    if arch in ("demo", "model-config"):
        from lrp_captum.wsi.model import load_model

        config = spec.get("config")
        if not config:
            raise ValueError(f"encoder spec {arch!r} needs 'config': a tile model JSON file"
                             + (" (the demo model's: lrp_captum.demos.slide_model.demo_encoder_spec() trains it "
                                "and names it; the CLI's --encoder demo does so)" if arch == "demo" else ""))
        bundle = load_model(config, device="cpu")
        defaults = dict(tile_size=bundle.tile_size, mpp=bundle.mpp,
                        normalisation=dict(mean=list(bundle.mean), std=list(bundle.std)))
        return _drop_last_linear(copy.deepcopy(bundle.model)), defaults
    if not isinstance(arch, str) or not arch:
        raise ValueError(f"encoder spec needs 'arch' (demo, a torchvision or timm:NAME model, or "
                         f"package.module:factory), got {spec!r}")
    torch.manual_seed(int(spec.get("seed", 0)))  # random init must be reproducible: heads remember it
    imagenet = dict(tile_size=DEFAULT_TILE_SIZE, mpp=DEFAULT_MPP,
                    normalisation=dict(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD)))
    if arch.startswith("timm:"):
        try:
            import timm
        except ImportError:
            raise ValueError(f"encoder {arch!r} needs timm: pip install 'lrp-captum[mil]'") from None
        try:
            return timm.create_model(arch[5:], pretrained=False, num_classes=0, **kwargs), imagenet
        except RuntimeError as exc:  # timm's "Unknown model"
            raise ValueError(f"encoder {arch!r}: {exc}") from None
    if ":" in arch:
        return build_from_factory(arch, "encoder factory", **kwargs), imagenet
    import torchvision.models as tvm

    if arch not in tvm.list_models():
        raise ValueError(f"unknown encoder {arch!r}: use 'demo', a torchvision model name (e.g. resnet18), "
                         f"'timm:NAME' or 'package.module:factory'")
    return _drop_last_linear(tvm.get_model(arch, weights=None, **kwargs)), imagenet


def _identity(spec: dict, model: nn.Module) -> str:
    h = hashlib.sha256()
    portable = {k: v for k, v in spec.items() if k not in ("config", "weights")}
    h.update(json.dumps(portable, sort_keys=True).encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def build_encoder(spec: dict | str, device: str = "cpu") -> TileEncoder:
    """Build the encoder a spec describes (see module docstring); a string is ``{"arch": spec}``.

    Raises ``ValueError`` naming the spec when it cannot be built, and when its weights do not fit.
    """
    spec = {"arch": spec} if isinstance(spec, str) else dict(spec)
    if isinstance(spec.get("arch"), str) and is_hub_folder(spec["arch"]):
        spec = dict(spec, config=str(Path(spec["arch"]).resolve()), arch="hub-folder")
        spec.pop("seed", None)
    model, defaults = _build_module(spec)
    if spec.get("weights"):
        load_weights(model, spec["weights"], what="encoder weights", architecture=f"encoder {spec['arch']}")
    model.eval().requires_grad_(False).to(device)
    tile_size = int(spec.get("tile_size") or defaults["tile_size"])
    mpp = float(spec.get("mpp") or defaults["mpp"])
    norm = spec.get("normalisation") or defaults["normalisation"]
    spec.update(tile_size=tile_size, mpp=mpp, normalisation=dict(norm))
    with torch.no_grad():
        probe = model(torch.zeros(1, 3, tile_size, tile_size, device=device))
    if probe.dim() != 2:
        raise ValueError(f"encoder {spec['arch']!r} returns shape {tuple(probe.shape)} for one tile; an encoder "
                         f"must return (N, D) embeddings")
    return TileEncoder(model=model, spec=spec, tile_size=tile_size, mpp=mpp, mean=tuple(norm["mean"]),
                       std=tuple(norm["std"]), dim=int(probe.shape[1]), identity=_identity(spec, model))

