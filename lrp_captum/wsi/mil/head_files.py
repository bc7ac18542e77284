"""Saving and loading trained MIL heads, with the encoder they belong to.

A head is two files side by side: ``NAME.pt`` (the state_dict, loaded with
``weights_only=True``) and ``NAME.json``::

    {"format": "lrp_captum.wsi.mil.head/1", "head": "abmil", "kwargs": {...}, "in_dim": 32,
     "classes": ["negative", "lesion"], "weights": "NAME.pt",
     "encoder": {...spec...}, "encoder_identity": "<sha256>", "training": {...},
     "input_standardisation": {"mean": [...], "std": [...]},   # optional, per embedding number
     "embeddings": "/abs/cohort/embeddings"}                   # optional, the training cache
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from lrp_captum.model_files import class_index, class_names, load_weights
from lrp_captum.wsi.model import file_sha256
from lrp_captum.wsi.mil.encoders import EncoderMismatchError, TileEncoder
from lrp_captum.wsi.mil.heads import make_head

HEAD_FORMAT = "lrp_captum.wsi.mil.head/1"


@dataclass
class MILHead:
    """A trained head and what it was trained on.

    Attributes
    ----------
    model : the head in eval mode, (B, N, in_dim) -> (B, len(classes)).
    name : ``"abmil"`` or ``"transmil"``.
    classes : slide class names, index = logit index.
    in_dim : embedding size it expects.
    encoder_spec : spec of the tile encoder (:mod:`lrp_captum.wsi.mil.encoders`).
    encoder_identity : identity of that encoder.
    config : the whole JSON config.
    weights_sha256 : hash of the weights file ("" for a head not loaded from disk).
    path : the JSON file it was loaded from ("" for a head not loaded from disk).
    mean, std : (D,) standardisation of the embeddings the head reads, or None.
    embeddings_dir : the embedding cache of its training cohort ("" when not recorded).
    """

    model: nn.Module
    name: str
    classes: list
    in_dim: int
    encoder_spec: dict
    encoder_identity: str
    config: dict = field(default_factory=dict)
    weights_sha256: str = ""
    path: str = ""
    mean: Optional[torch.Tensor] = None
    std: Optional[torch.Tensor] = None
    embeddings_dir: str = ""

    def bag_input(self, features) -> torch.Tensor:
        """(N, D) embeddings (array or tensor) -> the (N, D) float32 tensor the head reads.

        Standardised with the head's training statistics when it has them; relevance of a
        standardised number is relevance of that embedding number (the map is elementwise).
        """
        x = torch.as_tensor(np.asarray(features) if not torch.is_tensor(features) else features,
                            dtype=torch.float32)
        return x if self.mean is None else (x - self.mean) / self.std

    def class_index(self, name_or_index) -> int:
        return class_index(self.classes, name_or_index, owner="head")

    def check_encoder(self, encoder: TileEncoder) -> None:
        """Raise :class:`EncoderMismatchError` unless ``encoder`` is the one this head was trained with."""
        if encoder.dim != self.in_dim:
            raise EncoderMismatchError(
                f"encoder {encoder.name!r} gives {encoder.dim}-dimensional embeddings but the MIL head expects "
                f"{self.in_dim}; use the encoder the head was trained with ({self.encoder_spec.get('arch')!r})")
        if encoder.identity != self.encoder_identity:
            raise EncoderMismatchError(
                f"the MIL head was trained on embeddings of encoder {self.encoder_spec.get('arch')!r} (identity "
                f"{self.encoder_identity[:12]}), not of the given encoder {encoder.name!r} (identity "
                f"{encoder.identity[:12]}); its evidence would be meaningless. Omit the encoder to use the "
                f"head's own, or retrain the head on this encoder's embeddings")


def save_head(model: nn.Module, path, *, name: str, classes: list, encoder: TileEncoder,
              kwargs: dict | None = None, training: dict | None = None, standardisation=None,
              embeddings=None) -> Path:
    """Write ``<path>.pt`` and ``<path>.json`` (``path`` without suffix, or ending in .json); returns the JSON path.

    ``standardisation`` is ``(mean, std)`` of the embeddings (each (D,)) that the head was
    trained on, or None for a head on raw embeddings. ``embeddings`` is the folder of the
    embedding cache it was trained from (recorded absolute), or None.
    """
    path = Path(path)
    if path.suffix == ".json":
        path = path.with_suffix("")
    path.parent.mkdir(parents=True, exist_ok=True)
    wpath, jpath = path.with_suffix(".pt"), path.with_suffix(".json")
    tmp = wpath.with_name(f".{wpath.name}.tmp-{os.getpid()}")
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
    os.replace(tmp, wpath)
    config = dict(format=HEAD_FORMAT, head=name, kwargs=dict(kwargs or {}), in_dim=encoder.dim,
                  classes=list(classes), weights=wpath.name, encoder=encoder.spec,
                  encoder_identity=encoder.identity, training=training or {},
                  input_standardisation=None if standardisation is None else dict(
                      mean=[float(v) for v in standardisation[0]], std=[float(v) for v in standardisation[1]]),
                  intended_use="research and demonstration of MIL explanations; not for diagnosis")
    if embeddings is not None:
        config["embeddings"] = str(Path(embeddings).resolve())
    tmp = jpath.with_name(f".{jpath.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(config, indent=2, default=str))
    os.replace(tmp, jpath)
    return jpath


def load_head(path) -> MILHead:
    """Load a head from its JSON file (or the folder holding exactly one head JSON).

    The weights are read with ``torch.load(..., weights_only=True)``. Raises
    ``FileNotFoundError``/``ValueError`` naming the file when it is missing, not a head config,
    or its weights do not fit.
    """
    path = Path(path)
    if path.is_dir():
        found = [p for p in sorted(path.glob("*.json")) if _is_head_config(p)]
        if len(found) != 1:
            raise FileNotFoundError(f"{path} holds {len(found)} MIL head configs; pass the .json file itself")
        path = found[0]
    if not path.is_file():
        raise FileNotFoundError(f"MIL head {path} does not exist; train one with `lrp-captum slide train-mil`")
    try:
        config = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"MIL head {path} is not valid JSON: {exc}") from None
    if not isinstance(config, dict) or config.get("format") != HEAD_FORMAT:
        raise ValueError(f"{path} is not a MIL head config (expected format {HEAD_FORMAT!r}); "
                         f"train one with `lrp-captum slide train-mil`")
    wpath = path.parent / config["weights"]
    if not wpath.is_file():
        raise FileNotFoundError(f"weights {wpath} named in MIL head {path} do not exist")
    classes = class_names(config.get("classes"), f"MIL head {path}")
    model = make_head(config["head"], int(config["in_dim"]), len(classes), **config.get("kwargs", {}))
    load_weights(model, wpath, of=f"of MIL head {path}", architecture=f"MIL head {config['head']}")
    model.eval().requires_grad_(False)
    stand = config.get("input_standardisation")
    mean, std = (None, None) if not stand else (torch.tensor(stand["mean"]), torch.tensor(stand["std"]))
    return MILHead(model=model, name=config["head"], classes=classes, in_dim=int(config["in_dim"]),
                   encoder_spec=dict(config["encoder"]), encoder_identity=config["encoder_identity"],
                   config=config, weights_sha256=file_sha256(wpath), path=str(path.resolve()), mean=mean, std=std,
                   embeddings_dir=str(config.get("embeddings") or ""))


def _is_head_config(path: Path) -> bool:
    try:
        return json.loads(path.read_text()).get("format") == HEAD_FORMAT
    except (ValueError, OSError, AttributeError):
        return False


#: the command line's head architecture names -> (the name of :func:`load_published_head`, gated attention)
_PUBLISHED = {"abmil": ("abmil", False), "abmil-gated": ("abmil", True), "clam-sb": ("clam_sb", None),
              "clam-mb": ("clam_mb", None), "transmil": ("transmil", None), "xmil-attnmil": ("xmil", None)}


def head_from_checkpoint(checkpoint, arch: str, classes=None) -> MILHead:
    """A MIL head trained elsewhere, from its checkpoint, as a :class:`MILHead` that reads features.

    Parameters
    ----------
    checkpoint : the weights file (for ``xmil-attnmil`` the xMIL run folder).
    arch : ``abmil``, ``abmil-gated``, ``clam-sb``, ``clam-mb``, ``transmil``, ``xmil-attnmil``
        (:data:`~lrp_captum.wsi.slide_options.HEAD_ARCHITECTURES`) or ``package.module:factory``.
    classes : names of its logits, in order; default ``class_0, class_1, ...``.

    The head has no encoder of its own (``encoder_spec`` empty): it explains features computed
    elsewhere. Raises ``ValueError`` naming the file as
    :func:`~lrp_captum.wsi.mil.published_heads.load_published_head`, and when the checkpoint is an
    ABMIL of the other attention kind or ``classes`` does not match its number of logits.
    """
    from lrp_captum.wsi.mil.published_heads import load_published_head

    name, gated = _PUBLISHED.get(arch, (arch, None))
    try:
        loaded = load_published_head(checkpoint, name)
    except ValueError as exc:  # said in the library's names: say it in the ones given here
        raise ValueError(_in_given_names(str(exc))) from None
    if gated is not None and loaded.options.get("gated") != gated:
        other = "abmil-gated" if loaded.options.get("gated") else "abmil"
        raise ValueError(f"{checkpoint} holds {'a gated' if loaded.options.get('gated') else 'an ungated'} ABMIL "
                         f"(global_attn.{'attention_a' if loaded.options.get('gated') else 'module'}), not {arch}; "
                         f"name it {other}")
    names = [f"class_{i}" for i in range(loaded.num_classes)] if classes is None else list(classes)
    if len(names) != loaded.num_classes:
        raise ValueError(f"{len(names)} class names ({', '.join(names)}) for the {loaded.num_classes} logits of "
                         f"{checkpoint}; give one name per logit")
    return MILHead(model=loaded.model, name=arch, classes=names, in_dim=int(loaded.in_dim), encoder_spec={},
                   encoder_identity="", config=dict(arch=arch, options=loaded.options),
                   weights_sha256=file_sha256(loaded.path), path=str(Path(loaded.path).resolve()))


def _in_given_names(message: str) -> str:
    """``message`` of :mod:`~lrp_captum.wsi.mil.published_heads` with its architecture names as
    :data:`~lrp_captum.wsi.slide_options.HEAD_ARCHITECTURES` spells them."""
    from lrp_captum.wsi.mil.published_heads import ARCHITECTURES
    from lrp_captum.wsi.slide_options import HEAD_ARCHITECTURES

    message = message.replace(", ".join(ARCHITECTURES), ", ".join(HEAD_ARCHITECTURES))
    return re.sub(r"\b(clam)_(sb|mb)\b", r"\1-\2", message)
