"""Load a saved text model folder of either kind: the demo word-CNN or a Hugging Face
sequence classifier (the MiniLM demo, or any local ``save_pretrained`` folder)."""
from __future__ import annotations

import json
from pathlib import Path

from lrp_captum.text.transformer import is_hugging_face_folder, load_sequence_classifier

#: default folders of the two demo models (``lrp-captum text train-demo --arch ...``)
DEFAULT_MODEL_DIRS = {"wordcnn": "demo_output/text_model", "minilm": "demo_output/text_minilm"}


def is_text_model_folder(path: str | Path) -> bool:
    """True for a folder that :func:`load_text_model` can load."""
    from lrp_captum.demos.text_wordcnn import CONFIG_FILE

    path = Path(path)
    if is_hugging_face_folder(path):
        return True
    try:
        config = json.loads((path / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False
    return config.get("architecture") == "WordCNN"


def load_text_model(model_dir: str | Path, device="auto"):
    """A text classifier, its tokenizer and its saved description from a folder.

    Parameters
    ----------
    model_dir : path
        Written by ``lrp-captum text train-demo`` (``--arch wordcnn`` or ``minilm``) or by a
        Hugging Face ``save_pretrained`` (model and fast tokenizer).
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Returns
    -------
    model : nn.Module
        In eval mode.
    tokenizer : tokenizers.Tokenizer or transformers.PreTrainedTokenizerFast
    info : dict
        ``class_names``, ``architecture``, and what the folder records about training
        (e.g. ``test_accuracy``).

    Raises
    ------
    FileNotFoundError
        If the folder holds no model (the message says how to train one).
    """
    from lrp_captum.demos.text_wordcnn import load_word_cnn, resolve_device

    model_dir = Path(model_dir)
    if is_hugging_face_folder(model_dir):
        model, tokenizer = load_sequence_classifier(model_dir, resolve_device(device))
        info = {}
        training = model_dir / "training.json"
        if training.is_file():
            info = json.loads(training.read_text())
        names = [model.config.id2label[i] for i in range(model.config.num_labels)]
        return model, tokenizer, {**info, "class_names": names,
                                  "architecture": type(model).__name__}
    return load_word_cnn(model_dir, device=device)
