"""``lrp-captum text ...``: train a demo model, explain texts, compare with baselines.

Every argument is checked before any work starts (nothing is trained, loaded for long, or
written when one is wrong); a wrong one ends with a one-line message and exit code 2.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from lrp_captum.cli import add_group

DEFAULT_MODEL_DIR = "demo_output/text_model"
ARCHES = ("wordcnn", "minilm")
DEVICES = ("auto", "cpu", "cuda")
COLOUR_SCALES = ("text", "shared")


class ArgumentProblem(ValueError):
    """A command-line argument that cannot work; the message names it and says why."""


# ---------------------------------------------------------------------------------------------
# validators (local to the text CLI; shaped to be replaced by shared ones)
# ---------------------------------------------------------------------------------------------
def check_int(value, option: str, low: int, high: int | None = None) -> None:
    """``low <= value (<= high)``, else :class:`ArgumentProblem` naming ``option``."""
    if value is None:
        return
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ArgumentProblem(f"{option} must be {bound}, got {value}")


def check_device(device: str) -> None:
    """``auto``, ``cpu``, or ``cuda`` when a CUDA GPU is present."""
    if device not in DEVICES:
        raise ArgumentProblem(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ArgumentProblem("--device cuda: no CUDA GPU is available; use --device cpu "
                                  "or auto")


def check_output_path(path: str | None, option: str) -> None:
    """A file that can be written: not a folder, and no file where a parent folder goes."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise ArgumentProblem(f"{option} {path}: is a folder; give a file name")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ArgumentProblem(f"{option} {path}: {parent} is a file, not a folder")
            break


def check_input_file(path: str | None, option: str) -> None:
    if path is not None and not Path(path).is_file():
        raise ArgumentProblem(f"{option} {path}: no such file")


def check_composite(name: str | None) -> None:
    """A registered composite that applies to token embeddings (no pixel bounds)."""
    if name is None:
        return
    from lrp_captum.core.composites import UnknownCompositeError, composite_needs_bounds, list_composites

    try:
        needs_bounds = composite_needs_bounds(name)
    except UnknownCompositeError as exc:
        raise ArgumentProblem(str(exc)) from None
    if needs_bounds:
        usable = [c for c in list_composites() if not composite_needs_bounds(c)]
        raise ArgumentProblem(f"composite {name!r} needs input bounds (pixel values) and does "
                              f"not apply to token embeddings; choose from {', '.join(usable)}")


def check_model_dir(path: str) -> None:
    from lrp_captum.text.model_folders import is_text_model_folder

    if not Path(path).is_dir():
        raise ArgumentProblem(f"--model-dir {path}: no such folder. Train a model first: "
                              f"lrp-captum text train-demo --out {path}")
    if not is_text_model_folder(path):
        raise ArgumentProblem(f"--model-dir {path}: no text model in it (no WordCNN "
                              "config.json and no Hugging Face config.json). Train one: "
                              f"lrp-captum text train-demo --out {path}")


# ---------------------------------------------------------------------------------------------
# parser
# ---------------------------------------------------------------------------------------------
def register(subparsers) -> None:
    """Add the ``text`` command group to the top-level ``lrp-captum`` parser."""
    from lrp_captum.text.attribute import METHODS

    sub = add_group(subparsers, "text", "text classifiers: explain words",
                    "Word-level relevance for text classifiers (word-CNN or Hugging Face "
                    "transformer).")

    t = sub.add_parser("train-demo", help="train a demo sentiment classifier (cached)",
                       description="--arch wordcnn: a word-CNN on VADER-derived sentences "
                                   "(seconds). --arch minilm: the shipped pretrained MiniLM "
                                   "with a sentiment head, fine-tuned on generated reviews "
                                   "(minutes on a CPU); reused when --out already holds one "
                                   "trained with the same settings.")
    t.add_argument("--arch", default="wordcnn", choices=ARCHES)
    t.add_argument("--out", default=None,
                   help="output folder (default demo_output/text_model for wordcnn, "
                        "demo_output/text_minilm for minilm)")
    t.add_argument("--n-examples", type=int, default=None,
                   help="generated sentences (default: 4000 for either arch)")
    t.add_argument("--epochs", type=int, default=None,
                   help="passes over the training sentences (default 20 wordcnn, 3 minilm)")
    t.add_argument("--filters", type=int, default=None,
                   help="wordcnn: filters per width (default: 32 when wordcnn)")
    t.add_argument("--train-layers", type=int, default=None,
                   help="minilm: top encoder layers fine-tuned, 0-6 (default: 2 when minilm)")
    t.add_argument("--force", action="store_true", help="minilm: retrain even if cached")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto, cpu or cuda (wordcnn)")
    t.set_defaults(func=_train_demo)

    e = sub.add_parser("explain", help="word relevance for one text or a JSONL batch",
                       description="Explain TEXT, or every line of --input (JSONL: objects "
                                   "with 'text' and optional 'id', 'target'; or JSON strings).")
    e.add_argument("text", nargs="?", help="the text to explain (omit with --input)")
    e.add_argument("--input", help="JSONL file of texts (batch mode)")
    e.add_argument("--output", help="batch mode: JSONL file of explanations (default: stdout)")
    e.add_argument("--html", help="write highlighted HTML here")
    e.add_argument("--json", help="single text: write the explanation as JSON here")
    e.add_argument("--colour-scale", default="text", choices=COLOUR_SCALES,
                   help="HTML colours scaled per text (default) or shared by all texts")
    e.add_argument("--model-dir", default=DEFAULT_MODEL_DIR,
                   help="folder written by train-demo or a Hugging Face save_pretrained "
                        f"(default {DEFAULT_MODEL_DIR})")
    e.add_argument("--target", default=None, help="class name or index (default: predicted)")
    e.add_argument("--composite", default=None,
                   help="LRP composite (default epsilon; attnlrp for a transformer); "
                        "list them with: lrp-captum composites")
    e.add_argument("--method", default="lrp", choices=METHODS)
    e.add_argument("--output-mode", default="logit",
                   choices=["logit", "probability", "contrastive"])
    e.add_argument("--max-length", type=int, default=None,
                   help="tokens per model input; longer texts are explained over overlapping "
                        "windows (default: the model's maximum)")
    e.add_argument("--stride", type=int, default=None,
                   help="text tokens between window starts (default half a window)")
    e.add_argument("--batch-size", type=int, default=32)
    e.add_argument("--device", default="auto", help="auto, cpu or cuda")
    e.set_defaults(func=_explain)

    c = sub.add_parser("compare", help="LRP vs InputXGradient vs IntegratedGradients on "
                                       "held-out sentences with known deciding words")
    c.add_argument("--model-dir", default=DEFAULT_MODEL_DIR)
    c.add_argument("--n", type=int, default=400, help="sentences to score")
    c.add_argument("--composite", default=None)
    c.add_argument("--device", default="auto")
    c.set_defaults(func=_compare)


def _fail(message: str) -> int:
    print(f"lrp-captum text: {message}", file=sys.stderr)
    return 2


# ---------------------------------------------------------------------------------------------
# train-demo
# ---------------------------------------------------------------------------------------------
def validate_train_demo(args) -> None:
    """Every ``train-demo`` argument, before anything is trained or written."""
    from lrp_captum.text.model_folders import DEFAULT_MODEL_DIRS

    only = {"wordcnn": ("--train-layers", "train_layers"), "minilm": ("--filters", "filters")}
    option, attr = only[args.arch]
    if getattr(args, attr) is not None:
        raise ArgumentProblem(f"{option} does not apply to --arch {args.arch}")
    if args.force and args.arch != "minilm":
        raise ArgumentProblem("--force applies to --arch minilm only (the word-CNN always "
                              "retrains)")
    check_int(args.n_examples, "--n-examples", 10)
    check_int(args.epochs, "--epochs", 1)
    check_int(args.filters, "--filters", 1)
    check_int(args.train_layers, "--train-layers", 0, 6)
    check_int(args.seed, "--seed", 0)
    check_device(args.device)
    args.out = args.out or DEFAULT_MODEL_DIRS[args.arch]
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ArgumentProblem(f"--out {args.out}: is a file; give a folder")
    check_output_path(str(out / "config.json"), "--out")
    if args.arch == "minilm":
        from lrp_captum.demos.text_minilm import TRAINING_FILE

        if out.is_dir() and any(out.iterdir()) and not (out / TRAINING_FILE).is_file():
            raise ArgumentProblem(f"--out {args.out}: exists and is not a MiniLM demo model "
                                  "folder; choose another folder")


def _train_demo(args) -> int:
    try:
        validate_train_demo(args)
    except ArgumentProblem as exc:
        return _fail(str(exc))
    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    if args.arch == "minilm":
        from lrp_captum.demos.text_minilm import train_minilm_demo

        settings = {k: v for k, v in (("n_examples", args.n_examples), ("epochs", args.epochs),
                                      ("train_layers", args.train_layers),
                                      ("seed", args.seed)) if v is not None}
        _, _, report = train_minilm_demo(args.out, force=args.force, log=log, **settings)
        how = "reused the cached model in" if report["cached"] else \
            f"trained in {report['seconds']:.0f} s and saved"
        print(f"{how} {args.out}: held-out accuracy {report['test_accuracy']:.3f} "
              f"({report['data']['n_test']} generated reviews)")
        return 0
    from lrp_captum.demos.text_wordcnn import train_demo_model

    _, _, report = train_demo_model(args.out, n_examples=args.n_examples or 4000,
                                    epochs=args.epochs or 20, n_filters=args.filters or 32,
                                    seed=args.seed, device=args.device, log=log)
    print(f"saved {args.out}: train accuracy {report['train_accuracy']:.3f}, held-out accuracy "
          f"{report['test_accuracy']:.3f} ({report['data']['n_test']} sentences)")
    return 0


# ---------------------------------------------------------------------------------------------
# explain
# ---------------------------------------------------------------------------------------------
def read_jsonl_texts(path: str | Path) -> list[dict]:
    """Items ``{"id", "text", "target"}`` of a JSONL file; errors name the file and line."""
    items = []
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            if isinstance(obj, str):
                obj = {"text": obj}
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise ValueError(f"{path}:{number}: expected a JSON string or an object with a "
                                 "string field 'text'")
            items.append({"id": obj.get("id", number), "text": obj["text"],
                          "target": obj.get("target")})
    return items


def validate_explain(args) -> None:
    """The ``explain`` arguments that need no model."""
    if (args.text is None) == (args.input is None):
        raise ArgumentProblem("give either a TEXT or --input FILE.jsonl")
    if args.output and not args.input:
        raise ArgumentProblem("--output is for batch mode (--input); use --json for one text")
    if args.json and args.input:
        raise ArgumentProblem("--json is for one text; use --output in batch mode")
    if args.composite is not None and args.method != "lrp":
        raise ArgumentProblem(f"--composite applies to --method lrp only, not {args.method}")
    check_input_file(args.input, "--input")
    for option in ("output", "html", "json"):
        check_output_path(getattr(args, option), f"--{option}")
    check_int(args.max_length, "--max-length", 3)
    check_int(args.stride, "--stride", 1)
    check_int(args.batch_size, "--batch-size", 1)
    check_device(args.device)
    check_composite(args.composite)
    check_model_dir(args.model_dir)


def validate_against_model(args, model, items: list[dict]) -> None:
    """The arguments that depend on the loaded model: method, composite, targets, length."""
    from lrp_captum.text.attribute import ATTENTION_METHODS, default_composite
    from lrp_captum.text.explain import class_names_of, resolve_targets
    from lrp_captum.text.transformer import is_hugging_face_model, require_composite

    if args.method in ATTENTION_METHODS and not is_hugging_face_model(model):
        raise ArgumentProblem(f"--method {args.method} needs a transformer; "
                              f"{args.model_dir} holds a {type(model).__name__}")
    if args.method == "lrp":
        try:
            require_composite(args.composite or default_composite(model))
        except KeyError as exc:
            raise ArgumentProblem(str(exc)) from None
    names = class_names_of(model)
    for item in items:
        target = item["target"] if item["target"] is not None else args.target
        try:
            resolve_targets(target, 1, names)
        except ValueError as exc:
            where = f"text {item['id']}: " if args.input else "--target: "
            raise ArgumentProblem(where + str(exc)) from None
    min_length = int(getattr(model, "min_length", 1) or 1)
    if args.max_length is not None and args.max_length < min_length:
        raise ArgumentProblem(f"--max-length {args.max_length} is shorter than the model's "
                              f"minimum input of {min_length} tokens")


def _explain(args) -> int:
    try:
        validate_explain(args)
        from lrp_captum.text.model_folders import load_text_model

        model, tokenizer, _ = load_text_model(args.model_dir, device=args.device)
        items = (read_jsonl_texts(args.input) if args.input
                 else [{"id": None, "text": args.text, "target": None}])
        validate_against_model(args, model, items)
    except (ArgumentProblem, FileNotFoundError, ValueError, RuntimeError) as exc:
        return _fail(str(exc))
    from lrp_captum.text.explain import explain_text
    from lrp_captum.text.render import explanations_json, write_html

    targets = [it["target"] if it["target"] is not None else args.target for it in items]
    try:
        explanations = explain_text(model, tokenizer, [it["text"] for it in items],
                                    target=targets, composite=args.composite,
                                    method=args.method, max_length=args.max_length,
                                    stride=args.stride, batch_size=args.batch_size,
                                    output_mode=args.output_mode)
    except ValueError as exc:
        return _fail(str(exc))
    for it, ex in zip(items, explanations):
        for w in ex.warnings:
            where = f"text {it['id']}: " if args.input else ""
            print(f"warning: {where}{w}", file=sys.stderr)
    if args.html:
        write_html(explanations, args.html, scale=args.colour_scale)
    if args.input:
        lines = [json.dumps({"id": it["id"], **ex.to_dict()}, ensure_ascii=False)
                 for it, ex in zip(items, explanations)]
        if args.output:
            Path(args.output).parent.mkdir(parents=True, exist_ok=True)
            Path(args.output).write_text("\n".join(lines) + "\n", encoding="utf-8")
            print(f"wrote {len(lines)} explanations to {args.output}", file=sys.stderr)
        else:
            print("\n".join(lines))
        return 0
    ex = explanations[0]
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(explanations_json(ex), encoding="utf-8")
    print(f"predicted {ex.predicted_name} (p={ex.probabilities[ex.predicted]:.3f}); "
          f"explaining {ex.target_name}")
    width = max([len(w) for w in ex.words] + [4])
    for word, rel in zip(ex.words, ex.word_relevance):
        print(f"  {word:<{width}}  {rel:+.4f}")
    for s in ex.special_tokens:
        print(f"  {s['token']:<{width}}  {s['relevance']:+.4f}  (special token)")
    return 0


# ---------------------------------------------------------------------------------------------
# compare
# ---------------------------------------------------------------------------------------------
def _compare(args) -> int:
    try:
        check_int(args.n, "--n", 1)
        check_device(args.device)
        check_composite(args.composite)
        check_model_dir(args.model_dir)
        from lrp_captum.text.model_folders import load_text_model

        model, tokenizer, config = load_text_model(args.model_dir, device=args.device)
    except (ArgumentProblem, FileNotFoundError, ValueError, RuntimeError) as exc:
        return _fail(str(exc))
    from lrp_captum.demos.text_sentences import make_sentiment_dataset, split_examples
    from lrp_captum.text.evaluate import compare_methods, format_table

    data = config.get("data", {})
    vocab = getattr(tokenizer, "get_vocab", lambda: None)()
    examples = make_sentiment_dataset(data.get("n_examples", 4000), seed=data.get("seed", 0),
                                      vocab=vocab)
    _, test = split_examples(examples, seed=data.get("seed", 0))
    print(format_table(compare_methods(model, tokenizer, test[: args.n],
                                       composite=args.composite)))
    return 0
