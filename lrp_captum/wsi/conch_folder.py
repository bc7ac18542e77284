"""CONCH's vision tower from a local folder, as the Hugging Face hub stores CONCH (MahmoodLab/CONCH).

The hub folder holds ``pytorch_model.bin`` (and ``meta.yaml``), no ``config.json``: the
state_dict of an open_clip CoCa model, ``visual.*`` the vision tower, ``text.*`` the text tower
and ``logit_scale`` (the caption decoder was removed before release). The model's shape is not in
the folder but in CONCH's code, its ``conch_ViT-B-16`` config: :data:`CONCH_VIT_B_16`. A
``conch_ViT-B-16.json`` next to the weights, in that config's format (``embed_dim``,
``embed_dim_caption``, ``vision_cfg`` with ``image_size``, ``patch_size``, ``layers``, ``width``,
``num_heads``, ``mlp_ratio``, ``attn_pooler_heads``, ``n_queries_contrast``,
``n_queries_caption``, ``attentional_pool_caption``), replaces those values.

The embedding is the one CONCH's README gives for tile features,
``encode_image(x, proj_contrast=False, normalize=False)``: the tokens of a timm ViT trunk (class
and patch tokens after its last LayerNorm), pooled by one learned query that attends to them
(:class:`AttentionalPooler`), then a LayerNorm: ``(N, 3, 448, 448) -> (N, 512)``. The contrastive
projection and the caption pooler are loaded (every ``visual.*`` key, ``strict=True``) but not
used; the text tower is checked to be there and not read. Tiles are normalised with OpenAI CLIP's
mean and std, as CONCH's transform does after a bicubic resize to 448 px.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from lrp_captum.model_files import read_state_dict

__all__ = ["CONCH_VIT_B_16", "CONFIG_FILE", "ConchVisual", "AttentionalPooler", "is_conch_folder", "conch_parts"]

#: the model config CONCH's code names ``conch_ViT-B-16`` (vision part; the text part is not read)
CONCH_VIT_B_16 = {"embed_dim": 512, "embed_dim_caption": 768,
                  "vision_cfg": {"image_size": 448, "patch_size": 16, "layers": 12, "width": 768, "num_heads": 12,
                                 "mlp_ratio": 4, "attentional_pool_contrast": True,
                                 "attentional_pool_caption": True, "attn_pooler_heads": 8,
                                 "n_queries_contrast": 1, "n_queries_caption": 256, "output_tokens": True}}
#: an optional copy of a CONCH model config next to the weights
CONFIG_FILE = "conch_ViT-B-16.json"
#: what marks a folder without config.json as CONCH's
MARKERS = ("pytorch_model.bin", "model.safetensors", "meta.yaml", CONFIG_FILE)
#: OpenAI CLIP's normalisation, which CONCH's factory sets
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
#: checkpoint keys outside the vision tower that a CoCa checkpoint may hold
OTHER_TOWERS = ("text.", "text_decoder.", "logit_scale")


def is_conch_folder(path) -> bool:
    """True for a folder without ``config.json`` holding one of :data:`MARKERS`."""
    try:
        folder = Path(path)
        return folder.is_dir() and not (folder / "config.json").exists() and any(
            (folder / name).is_file() for name in MARKERS)
    except (TypeError, OSError):
        return False


class AttentionalPooler(nn.Module):
    """Learned queries attending to tokens (``(N, T, context_dim) -> (N, n_queries, d_model)``),
    with the parameter names of CONCH's checkpoint: ``query``, ``attn`` (an
    ``nn.MultiheadAttention`` whose keys and values have ``context_dim``), ``ln_q``, ``ln_k``."""

    def __init__(self, d_model: int, context_dim: int, n_head: int, n_queries: int):
        super().__init__()
        self.query = nn.Parameter(torch.zeros(n_queries, d_model))
        self.attn = nn.MultiheadAttention(d_model, n_head, kdim=context_dim, vdim=context_dim, batch_first=True)
        self.ln_q = nn.LayerNorm(d_model)
        self.ln_k = nn.LayerNorm(context_dim)

    def forward(self, tokens):
        keys = self.ln_k(tokens)
        queries = self.ln_q(self.query).unsqueeze(0).expand(tokens.shape[0], -1, -1)
        return self.attn(queries, keys, keys, need_weights=False)[0]


class ConchVisual(nn.Module):
    """CONCH's vision tower, keys as under ``visual.`` in its checkpoint; the forward pass is the
    tile embedding (``(N, 3, S, S) -> (N, embed_dim)``, see module docstring)."""

    def __init__(self, embed_dim: int, embed_dim_caption: int, vision: dict):
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer

        self.trunk = VisionTransformer(img_size=vision["image_size"], patch_size=vision["patch_size"],
                                       embed_dim=vision["width"], depth=vision["layers"],
                                       num_heads=vision["num_heads"], mlp_ratio=vision["mlp_ratio"], num_classes=0)
        width, heads = vision["width"], vision["attn_pooler_heads"]
        self.attn_pool_contrast = AttentionalPooler(embed_dim, width, heads, vision["n_queries_contrast"])
        self.ln_contrast = nn.LayerNorm(embed_dim)
        self.proj_contrast = nn.Parameter(torch.zeros(embed_dim, embed_dim))  # retrieval only: not in the embedding
        if vision["attentional_pool_caption"]:  # the captioner's input: loaded, not used
            self.attn_pool_caption = AttentionalPooler(embed_dim_caption, width, heads, vision["n_queries_caption"])
            self.ln_caption = nn.LayerNorm(embed_dim_caption)

    def forward(self, x):
        pooled = self.attn_pool_contrast(self.trunk.forward_features(x))[:, 0]
        return self.ln_contrast(pooled)


def _config(folder: Path) -> tuple[dict, str]:
    """(config, its name): the folder's :data:`CONFIG_FILE` over :data:`CONCH_VIT_B_16`."""
    path = folder / CONFIG_FILE
    if not path.is_file():
        return CONCH_VIT_B_16, "conch_ViT-B-16"
    try:
        given = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"CONCH config {path} is not valid JSON: {exc}") from None
    if not isinstance(given, dict) or not isinstance(given.get("vision_cfg", {}), dict):
        raise ValueError(f"CONCH config {path} must be a JSON object with a 'vision_cfg' object, as CONCH's "
                         f"conch_ViT-B-16.json")
    unknown = sorted(set(given.get("vision_cfg", {})) - set(CONCH_VIT_B_16["vision_cfg"]))
    if unknown:
        raise ValueError(f"CONCH config {path}: vision_cfg keys {unknown} are not CONCH's (known: "
                         f"{', '.join(CONCH_VIT_B_16['vision_cfg'])})")
    config = {k: given.get(k, v) for k, v in CONCH_VIT_B_16.items() if k != "vision_cfg"}
    config["vision_cfg"] = dict(CONCH_VIT_B_16["vision_cfg"], **given.get("vision_cfg", {}))
    return config, path.name


def _vision_numbers(config: dict, where: str) -> dict:
    vision = dict(config["vision_cfg"])
    size = vision["image_size"]
    if isinstance(size, (list, tuple)) and len(size) == 2 and size[0] == size[1]:
        vision["image_size"] = size = size[0]
    for key in ("image_size", "patch_size", "layers", "width", "num_heads", "attn_pooler_heads",
                "n_queries_contrast", "n_queries_caption"):
        if not (isinstance(vision[key], int) and not isinstance(vision[key], bool) and vision[key] > 0):
            raise ValueError(f"{where}: vision_cfg {key} must be a positive integer, got {vision[key]!r}")
    if not vision["attentional_pool_contrast"]:
        raise ValueError(f"{where}: attentional_pool_contrast is false; only CONCH's attentional pooler is read")
    for key in ("embed_dim", "embed_dim_caption"):
        if not (isinstance(config[key], int) and config[key] > 0):
            raise ValueError(f"{where}: {key} must be a positive integer, got {config[key]!r}")
    return vision


def _vision_state(state: dict, path: Path, folder: Path) -> dict:
    """The ``visual.*`` tensors of a CoCa checkpoint, prefix removed; ``ValueError`` naming the
    file for a checkpoint that is not CONCH's."""
    if not any(k.startswith("visual.trunk.") for k in state):
        raise ValueError(f"model folder {folder} has no config.json and {path.name} is not a CONCH checkpoint (no "
                         f"visual.trunk.* keys): a hub folder holds config.json (timm, transformers) or CONCH's "
                         f"pytorch_model.bin")
    if not any(k.startswith("text.") for k in state):
        raise ValueError(f"CONCH weights {path} hold no text.* keys: not CONCH's CoCa checkpoint (the hub's "
                         f"pytorch_model.bin holds the text tower too)")
    stray = sorted(k for k in state if not k.startswith(("visual.",) + OTHER_TOWERS))
    if stray:
        raise ValueError(f"CONCH weights {path} hold keys outside CONCH's towers: {', '.join(stray[:3])}"
                         + (f" and {len(stray) - 3} more" if len(stray) > 3 else ""))
    return {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}


def conch_parts(folder) -> dict:
    """What :func:`lrp_captum.wsi.hub_folders.load_hub_folder` needs of a CONCH folder.

    Returns
    -------
    dict with ``model`` (:class:`ConchVisual`, weights loaded, eval), ``architecture`` (the
    config's name), ``input_size`` (px), ``mean``, ``std``, ``num_features`` (``embed_dim``)
    and ``weights`` (the file read).

    Raises
    ------
    FileNotFoundError : no weights file.
    ValueError : a config that is not CONCH's format, weights that are a pickle, not CONCH's
        checkpoint or do not fit the config; each names the file.
    """
    folder = Path(folder)
    path = next((folder / n for n in ("model.safetensors", "pytorch_model.bin") if (folder / n).is_file()), None)
    if path is None:
        raise FileNotFoundError(f"CONCH folder {folder} holds no weights: expected pytorch_model.bin (as the hub "
                                f"stores CONCH) or model.safetensors")
    config, name = _config(folder)
    where = f"CONCH config {folder / name}" if name == CONFIG_FILE else f"CONCH's {name} config"
    vision = _vision_numbers(config, where)
    state = _vision_state(read_state_dict(path, what="model weights", of=f"of {folder.name}"), path, folder)
    try:
        model = ConchVisual(config["embed_dim"], config["embed_dim_caption"], vision)
    except (AssertionError, RuntimeError, ValueError) as exc:
        raise ValueError(f"{where}: cannot build the vision tower: {exc}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = "; ".join(line.strip() for line in str(exc).strip().splitlines()[:3])
        raise ValueError(f"CONCH weights {path} do not fit the vision tower of {name}: {detail}") from None
    return dict(model=model.eval(), architecture=name.removesuffix(".json"), input_size=vision["image_size"],
                mean=OPENAI_MEAN, std=OPENAI_STD, num_features=config["embed_dim"], weights=path)
