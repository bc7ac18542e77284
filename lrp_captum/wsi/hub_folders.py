"""Foundation-model tile encoders from a local folder, as the Hugging Face hub stores them.

Three layouts, told apart by their ``config.json`` (or its absence):

- **timm** (UNI, Virchow, Virchow2, H-optimus-0, ...): ``config.json`` as timm's
  ``push_to_hf_hub`` writes it, ``{"architecture": "vit_large_patch16_224", "num_classes": 0,
  "num_features": 1024, "model_args": {...}, "pretrained_cfg": {"input_size": [3, 224, 224],
  "mean": [...], "std": [...], "interpolation": "bicubic", ...}}`` (older exports keep the
  ``pretrained_cfg`` keys at the top level), next to ``model.safetensors`` or
  ``pytorch_model.bin``. The model is ``timm.create_model(architecture, pretrained=False,
  **model_args)``; nothing is downloaded.
- **transformers ViT** (Phikon): ``config.json`` with ``"model_type": "vit"`` and
  ``preprocessor_config.json`` (``image_mean``, ``image_std``, ``size``), built as a
  ``transformers.ViTModel``; the embedding is the class token of the last hidden state.
- **CONCH** (an open_clip CoCa checkpoint): no ``config.json``, ``pytorch_model.bin`` with the
  ``visual.*`` and ``text.*`` towers; its vision tower is read by :mod:`lrp_captum.wsi.conch_folder`.

Weights are read by :mod:`lrp_captum.model_files` (``safetensors``, or ``torch.load`` with
``weights_only=True``) and loaded with ``strict=True``. Layer classes named as strings in
``model_args`` (``"mlp_layer": "timm.layers.SwiGLUPacked"``, ``"act_layer": "torch.nn.SiLU"``)
are looked up in :func:`layer_names`, an allow-list; nothing in a config is evaluated. The
published Virchow and Virchow2 configs name no MLP: their model cards pass
``mlp_layer=SwiGLUPacked, act_layer=SiLU`` in code. A checkpoint whose MLP is a packed gated
unit (``fc2`` takes half of ``fc1``'s outputs) under a config that names no ``mlp_layer`` is
therefore built with SwiGLUPacked and SiLU, as those cards prescribe.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lrp_captum.model_files import read_state_dict
from lrp_captum.wsi.conch_folder import conch_parts, is_conch_folder

__all__ = ["HubModel", "is_hub_folder", "load_hub_folder", "hub_folder_classes", "weights_file", "layer_names"]

#: weights files of a hub folder, in the order they are looked for
WEIGHTS_FILES = ("model.safetensors", "pytorch_model.bin")
#: model_args keys whose values are layer classes
LAYER_ARGS = ("mlp_layer", "act_layer", "norm_layer")


@functools.lru_cache(maxsize=None)
def layer_names() -> dict:
    """``{name in a config: class}``: the allow-list of layer classes a ``model_args`` string may
    name, in the spellings published configs use (``timm.layers.SwiGLUPacked``,
    ``SwiGLUPacked``, ``torch.nn.SiLU``, ``SiLU``, ``silu``)."""
    from timm import layers

    names = {}
    for home, module, short in (("timm.layers", layers, ("SwiGLUPacked", "SwiGLU", "GluMlp", "Mlp", "RmsNorm")),
                                ("torch.nn", nn, ("LayerNorm", "SiLU", "GELU", "ReLU"))):
        for name in short:
            names[name] = names[f"{home}.{name}"] = getattr(module, name)
    names.update(silu=nn.SiLU, swish=nn.SiLU, gelu=nn.GELU, relu=nn.ReLU)
    return names


@dataclass(frozen=True)
class HubModel:
    """A model read from a hub folder, and how to feed it.

    Attributes
    ----------
    model : (N, 3, input_size, input_size) normalised RGB -> (N, num_features) embeddings, or
        (N, num_classes) logits for a timm classifier; eval mode, on CPU.
    kind : ``"timm"``, ``"transformers-vit"`` or ``"conch"``.
    architecture : timm's model name, ``"ViTModel"``, or CONCH's config name (``"conch_ViT-B-16"``).
    input_size : tile side in px the model takes.
    mean, std : per-channel normalisation of RGB in [0, 1].
    interpolation : resampling the config names (``"bicubic"``), for the record.
    num_features : output size: the embedding size of an encoder (num_classes 0), else the
        number of classes.
    label_names : class names of a classifier (``[]`` for an encoder).
    weights : the weights file read.
    """

    model: nn.Module
    kind: str
    architecture: str
    input_size: int
    mean: tuple
    std: tuple
    interpolation: str
    num_features: int
    label_names: list
    weights: Path


def is_hub_folder(path) -> bool:
    """True for a folder holding a ``config.json``, or CONCH's files (see :func:`load_hub_folder`
    for what it must hold)."""
    try:
        return Path(path).is_dir() and (Path(path) / "config.json").is_file() or is_conch_folder(path)
    except (TypeError, OSError):
        return False


def weights_file(folder) -> Path:
    """``model.safetensors`` or ``pytorch_model.bin`` of ``folder``; ``FileNotFoundError`` naming
    both when neither is there."""
    folder = Path(folder)
    for name in WEIGHTS_FILES:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"model folder {folder} holds no weights: expected {' or '.join(WEIGHTS_FILES)} "
                            f"next to its config.json (as the hub stores them)")


def _read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"model folder {folder} has no config.json (a hub folder holds config.json and "
                                f"{' or '.join(WEIGHTS_FILES)})")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"model config {path} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise ValueError(f"model config {path} holds a {type(config).__name__}, not a JSON object")
    return config


def hub_folder_classes(folder) -> list:
    """The class names a hub folder's config gives (timm's ``label_names``, transformers'
    ``id2label``), ``[]`` when it names none (and for CONCH, an encoder)."""
    if is_conch_folder(folder):
        return []
    config = _read_config(Path(folder))
    pretrained = config.get("pretrained_cfg", config)
    names = config.get("label_names") or pretrained.get("label_names") or []
    if not names and isinstance(config.get("id2label"), dict):
        names = [config["id2label"][k] for k in sorted(config["id2label"], key=int)]
    return [str(n) for n in names]


def load_hub_folder(folder, num_classes: int | None = None) -> HubModel:
    """The model in a local hub folder (see module docstring), with its weights loaded.

    Parameters
    ----------
    folder : the folder (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``; for
        CONCH ``pytorch_model.bin`` without ``config.json``).
    num_classes : for a timm folder, the classifier size to build instead of the config's
        (0: the embedding without a classifier); None keeps the config's. A classifier that the
        weights do not hold fails to load (the message names the file).

    Raises
    ------
    FileNotFoundError : no config.json (and not CONCH's folder), or no weights file.
    ValueError : a config that names no known layout or architecture, a layer name outside
        :func:`layer_names`, weights that are not a plain state_dict (a pickle in
        ``pytorch_model.bin``) or do not fit, a CONCH folder whose weights are not CONCH's
        checkpoint (see :func:`lrp_captum.wsi.conch_folder.conch_parts`); each names the file.
    """
    folder = Path(folder)
    if is_conch_folder(folder):
        return _conch(folder, num_classes)
    config = _read_config(folder)
    if config.get("model_type") == "vit":
        return _transformers_vit(folder, config)
    if "model_type" in config and "architecture" not in config:
        raise ValueError(f"model config {folder / 'config.json'} is a transformers {config['model_type']!r} model; "
                         f"of the transformers layouts only 'vit' (Phikon) is read")
    if "architecture" not in config:
        raise ValueError(f"model config {folder / 'config.json'} names no 'architecture' (timm's hub config) and "
                         f"no 'model_type' (transformers): not a model folder this library reads")
    return _timm_model(folder, config, num_classes)


def _conch(folder: Path, num_classes: int | None) -> HubModel:
    if num_classes:
        raise ValueError(f"model folder {folder} holds CONCH, an encoder without a classifier: use it with --encoder")
    parts = conch_parts(folder)
    return HubModel(kind="conch", interpolation="bicubic", label_names=[], **parts)


def _layer_class(value, key: str, config_path: Path):
    if not isinstance(value, str):
        return value
    try:
        return layer_names()[value]
    except KeyError:
        known = ", ".join(sorted(n for n in layer_names() if "." in n))
        raise ValueError(f"model config {config_path}: model_args {key}={value!r} is not a layer this library "
                         f"knows (names are looked up, never evaluated): use one of {known}") from None


def _packed_glu(state: dict) -> bool:
    """The first block's MLP is a packed gated unit: ``fc2`` takes half of ``fc1``'s outputs."""
    fc1, fc2 = state.get("blocks.0.mlp.fc1.weight"), state.get("blocks.0.mlp.fc2.weight")
    return fc1 is not None and fc2 is not None and fc1.dim() == fc2.dim() == 2 and fc1.shape[0] == 2 * fc2.shape[1]


def _pretrained_cfg(config: dict) -> dict:
    return dict(config.get("pretrained_cfg") or {k: v for k, v in config.items() if k not in ("architecture",
                                                                                         "model_args")})


def _norm_of(pretrained: dict, config_path: Path) -> tuple[tuple, tuple]:
    mean, std = pretrained.get("mean"), pretrained.get("std")
    if not (isinstance(mean, (list, tuple)) and isinstance(std, (list, tuple)) and len(mean) == len(std) == 3):
        raise ValueError(f"model config {config_path}: pretrained_cfg needs 'mean' and 'std' (3 numbers each, the "
                         f"normalisation of RGB in [0, 1]); got mean={mean!r}, std={std!r}")
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def _timm_model(folder: Path, config: dict, num_classes: int | None) -> HubModel:
    try:
        import timm
    except ImportError:
        raise ValueError(f"model folder {folder} is a timm model: pip install 'lrp-captum[mil]'") from None
    config_path = folder / "config.json"
    architecture = config["architecture"]
    if not isinstance(architecture, str) or not timm.is_model(architecture):
        raise ValueError(f"model config {config_path}: timm has no architecture {architecture!r} (timm "
                         f"{timm.__version__}; timm.list_models() lists them)")
    pretrained = _pretrained_cfg(config)
    mean, std = _norm_of(pretrained, config_path)
    args = dict(config.get("model_args") or {})
    # tiles are fed at the config's input size: other sizes (dynamic_img_size, as UNI's and
    # Virchow2's configs allow) only add control flow that torch.fx cannot trace for the
    # canonizers; the weights and the outputs at the input size are the same
    args.pop("dynamic_img_size", None)
    args.pop("dynamic_img_pad", None)
    for key in LAYER_ARGS:
        if key in args:
            args[key] = _layer_class(args[key], key, config_path)
    path = weights_file(folder)
    state = read_state_dict(path, what="model weights", of=f"of {folder.name}")
    if "mlp_layer" not in args and _packed_glu(state):
        from timm.layers import SwiGLUPacked

        args.update(mlp_layer=SwiGLUPacked, act_layer=args.get("act_layer", nn.SiLU))
    classes = config.get("num_classes", pretrained.get("num_classes", 0))
    args["num_classes"] = int(classes if num_classes is None else num_classes)
    args.pop("pretrained", None)
    try:
        model = timm.create_model(architecture, pretrained=False, **args)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"model config {config_path}: timm cannot build {architecture!r} with model_args "
                         f"{sorted(args)}: {exc}") from None
    _load(model, state, path, architecture)
    model.eval()
    size = pretrained.get("input_size") or [3, args.get("img_size", 224), args.get("img_size", 224)]
    model, features = _pooled(model)
    return HubModel(model=model, kind="timm", architecture=architecture, input_size=int(size[-1]), mean=mean,
                    std=std, interpolation=str(pretrained.get("interpolation", "bicubic")),
                    num_features=features, label_names=hub_folder_classes(folder) if args["num_classes"] else [],
                    weights=path)


class ClassAndPatchMean(nn.Module):
    """A timm ViT that returns all its tokens, pooled as Virchow's model cards pool them: the
    class token and the mean of the patch tokens (registers left out), concatenated
    (``(N, T, D) -> (N, 2 D)``)."""

    def __init__(self, vit: nn.Module):
        super().__init__()
        self.vit = vit
        self.prefix = int(getattr(vit, "num_prefix_tokens", 1))

    def forward(self, x):
        tokens = self.vit(x)
        return torch.cat([tokens[:, 0], tokens[:, self.prefix:].mean(1)], dim=-1)


def _pooled(model: nn.Module) -> tuple[nn.Module, int]:
    """The model, wrapped in :class:`ClassAndPatchMean` when it returns tokens
    (``global_pool=""``, as Virchow2's config sets it), and its output size."""
    side = getattr(getattr(model, "patch_embed", None), "img_size", (224, 224))
    with torch.no_grad():
        out = model(torch.zeros(1, 3, *side))
    if out.dim() == 3:
        model = ClassAndPatchMean(model).eval()
        return model, 2 * int(out.shape[-1])
    return model, int(out.shape[-1])


def _load(model: nn.Module, state: dict, path: Path, architecture: str) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = "; ".join(line.strip() for line in first[:3])
        raise ValueError(f"model weights {path} do not fit {architecture!r} as its config.json describes it: "
                         f"{detail}") from None


class ClassToken(nn.Module):
    """A transformers ``ViTModel`` as an encoder: the class token of its last hidden state
    (``(N, 3, H, W) -> (N, hidden_size)``), as Phikon's model card takes it."""

    def __init__(self, vit: nn.Module):
        super().__init__()
        self.vit = vit

    def forward(self, x):
        return self.vit(pixel_values=x).last_hidden_state[:, 0]


#: PIL's resampling codes, as transformers' preprocessor_config.json stores them
_PIL_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic"}


def _transformers_vit(folder: Path, config: dict) -> HubModel:
    import transformers

    config_path = folder / "config.json"
    processor_path = folder / "preprocessor_config.json"
    if not processor_path.is_file():
        raise FileNotFoundError(f"model folder {folder} has no preprocessor_config.json, which gives a transformers "
                                f"ViT's normalisation (image_mean, image_std) and input size: copy it from the hub "
                                f"repository with the weights")
    try:
        processor = json.loads(processor_path.read_text())
        vit_config = transformers.ViTConfig.from_dict(config)
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise ValueError(f"model config {config_path} or {processor_path.name} cannot be read: {exc}") from None
    mean, std = _norm_of({"mean": processor.get("image_mean"), "std": processor.get("image_std")}, processor_path)
    path = weights_file(folder)
    state = read_state_dict(path, what="model weights", of=f"of {folder.name}")
    state = {k[len("vit."):] if k.startswith("vit.") else k: v for k, v in state.items()}
    model = transformers.ViTModel(vit_config, add_pooling_layer=any(k.startswith("pooler.") for k in state))
    _load(model, state, path, "ViTModel")
    model.eval()
    size = processor.get("crop_size") or processor.get("size") or vit_config.image_size
    side = size.get("height", size.get("shortest_edge")) if isinstance(size, dict) else size
    return HubModel(model=ClassToken(model).eval(), kind="transformers-vit", architecture="ViTModel",
                    input_size=int(side or vit_config.image_size), mean=mean, std=std,
                    interpolation=_PIL_RESAMPLE.get(processor.get("resample", 2), str(processor.get("resample"))),
                    num_features=int(vit_config.hidden_size), label_names=[], weights=path)
