"""``lrp-captum text ...``: train a demo model, explain texts, compare with baselines.

Every argument is checked before any work starts (nothing is trained, loaded for long, or
written when one is wrong); a wrong one ends with a one-line message and exit code 2, as in every
group (:mod:`lrp_captum.cli.arguments`). In batch mode a line that holds no valid text is
reported and skipped, and the others are explained (exit code 1 then).
"""
from __future__ import annotations

import sys
from pathlib import Path

from lrp_captum.cli import add_group
from lrp_captum.cli.arguments import (CommandError, add_option, bound_free_composite, existing_file, fail,
                                      int_range, output_file, output_folder, positive_int)
from lrp_captum.wording import counted

DEFAULT_MODEL_DIR = "demo_output/text_model"
ARCHES = ("wordcnn", "minilm")
COLOUR_SCALES = ("text", "shared")
#: the composite type of every text command: token embeddings have no pixel bounds
text_composite = bound_free_composite("token embeddings")


def check_model_folder(path) -> None:
    """A folder :func:`lrp_captum.text.load_text_model` can load, else :class:`CommandError`
    saying how to make one."""
    from lrp_captum.text.model_folders import is_text_model_folder

    if not Path(path).is_dir():
        raise CommandError(f"--model {path}: no such folder. Train a model first: "
                           f"lrp-captum text train-demo --out {path}")
    if not is_text_model_folder(path):
        raise CommandError(f"--model {path}: no text model in it (no WordCNN config.json and no "
                           f"Hugging Face config.json). Train one: lrp-captum text train-demo --out {path}")


def _add_model_option(parser) -> None:
    add_option(parser, "--model", old=("--model-dir",), default=DEFAULT_MODEL_DIR,
               help="model folder: written by train-demo, or a Hugging Face save_pretrained folder")


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
                                   "(about a minute on a quiet 2-core CPU); reused when --out already "
                                   "holds one trained with the same settings.")
    t.add_argument("--arch", default="wordcnn", choices=ARCHES,
                   help="architecture: a CNN over frozen word embeddings, or the MiniLM transformer")
    t.add_argument("--out", type=output_folder, default=None,
                   help="model folder (default: demo_output/text_model for wordcnn, "
                        "demo_output/text_minilm for minilm)")
    t.add_argument("--n-examples", type=int_range(10), default=None,
                   help="generated sentences (default: 4000 for either arch)")
    t.add_argument("--epochs", type=positive_int, default=None,
                   help="passes over the training sentences (default: 20 for wordcnn, 3 for minilm)")
    t.add_argument("--filters", type=positive_int, default=None,
                   help="wordcnn: filters per width (default: 32 for wordcnn)")
    t.add_argument("--train-layers", type=int_range(0, 6), default=None,
                   help="minilm: top encoder layers fine-tuned, 0-6 (default: 2 for minilm)")
    t.add_argument("--evaluate-on", type=existing_file, nargs="+", default=None, metavar="JSONL",
                   help="labelled JSONL files (text, label) never used in training: the accuracy on each "
                        "is recorded in the model folder and shown on the app's text page")
    t.add_argument("--force", action="store_true", help="minilm: retrain even if cached")
    add_option(t, "--seed")
    add_option(t, "--device")
    t.set_defaults(func=_train_demo)

    e = sub.add_parser("explain", help="word relevance for one text or a JSONL batch",
                       description="Explain TEXT, or every line of --input (JSONL: objects "
                                   "with 'text' and optional 'id', 'target'; or JSON strings).")
    e.add_argument("text", nargs="?", help="the text to explain (omit with --input)")
    e.add_argument("--input", type=existing_file, help="JSONL file of texts (batch mode)")
    add_option(e, "--out", old=("--output",), type=output_file, default=None,
               help="batch mode: JSONL file of explanations (default: standard output)")
    e.add_argument("--html", type=output_file, help="write highlighted HTML here")
    e.add_argument("--json", type=output_file, help="single text: write the explanation as JSON here")
    e.add_argument("--colour-scale", default="text", choices=COLOUR_SCALES,
                   help="HTML colours scaled per text or shared by all texts")
    _add_model_option(e)
    e.add_argument("--target", default=None, help="class name or index (default: the predicted class)")
    e.add_argument("--composite", type=text_composite, default=None,
                   help="LRP composite (default: epsilon; attnlrp for a transformer); "
                        "list them with: lrp-captum composites")
    e.add_argument("--method", default="lrp", choices=METHODS, help="attribution method")
    add_option(e, "--output-mode")
    e.add_argument("--max-length", type=int_range(3), default=None,
                   help="tokens per model input; longer texts are explained over overlapping "
                        "windows (default: the model's maximum)")
    e.add_argument("--stride", type=positive_int, default=None,
                   help="text tokens between window starts (default: half a window)")
    add_option(e, "--batch-size", default=32)
    add_option(e, "--device")
    e.set_defaults(func=_explain)

    c = sub.add_parser("compare", help="LRP vs InputXGradient vs IntegratedGradients on "
                                       "held-out sentences with known deciding words")
    _add_model_option(c)
    c.add_argument("--n", type=positive_int, default=400, help="held-out generated sentences to score")
    c.add_argument("--composite", type=text_composite, default=None,
                   help="LRP composite (default: epsilon; attnlrp for a transformer)")
    add_option(c, "--device")
    c.set_defaults(func=_compare)


# ---------------------------------------------------------------------------------------------
# train-demo
# ---------------------------------------------------------------------------------------------
def validate_train_demo(args) -> None:
    """The ``train-demo`` arguments that are wrong together, before anything is trained or
    written."""
    from lrp_captum.text.model_folders import DEFAULT_MODEL_DIRS, TRAINING_FILE

    only = {"wordcnn": ("--train-layers", "train_layers"), "minilm": ("--filters", "filters")}
    option, attr = only[args.arch]
    if getattr(args, attr) is not None:
        raise CommandError(f"{option} does not apply to --arch {args.arch}")
    if args.force and args.arch != "minilm":
        raise CommandError("--force applies to --arch minilm only (the word-CNN always retrains)")
    args.out = Path(args.out or DEFAULT_MODEL_DIRS[args.arch])
    out = args.out
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out {out}: is a file; give a folder")
    if args.arch == "minilm" and out.is_dir() and any(out.iterdir()) and not (out / TRAINING_FILE).is_file():
        raise CommandError(f"--out {out}: exists and is not a MiniLM demo model folder; choose another folder")


def _train_demo(args) -> int:
    prog = "lrp-captum text train-demo"
    try:
        validate_train_demo(args)
    except CommandError as exc:
        return fail(prog, exc)
    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    if args.arch == "minilm":
        from lrp_captum.demos.text_minilm import train_minilm_demo

        settings = {k: v for k, v in (("n_examples", args.n_examples), ("epochs", args.epochs),
                                      ("train_layers", args.train_layers),
                                      ("seed", args.seed)) if v is not None}
        model, tokenizer, report = train_minilm_demo(args.out, force=args.force, log=log, **settings)
        how = "reused the cached model in" if report["cached"] else \
            f"trained in {report['seconds']:.0f} s and saved"
        summary = f"{how} {args.out}"
    else:
        from lrp_captum.demos.text_wordcnn import train_demo_model

        model, tokenizer, report = train_demo_model(args.out, n_examples=args.n_examples or 4000,
                                                    epochs=args.epochs or 20, n_filters=args.filters or 32,
                                                    seed=args.seed, device=args.device, log=log)
        summary = f"saved {args.out}: train accuracy {report['train_accuracy']:.3f}"
    try:
        accuracies = _evaluate_on(args, model, tokenizer, report)
    except ValueError as exc:
        return fail(prog, exc)
    print(f"{summary}; accuracy on " + "; ".join(f"{name}: {value:.3f}" for name, value in accuracies))
    return 0


def _evaluate_on(args, model, tokenizer, report: dict) -> list[tuple[str, float]]:
    """Score the --evaluate-on files, record them in the model folder; every accuracy, named."""
    from lrp_captum.text.evaluate import labelled_accuracy
    from lrp_captum.text.model_folders import accuracy_report, record_accuracy

    records = report.get("accuracy_on", [])
    if args.evaluate_on:
        records = record_accuracy(args.out, [labelled_accuracy(model, tokenizer, path)
                                             for path in args.evaluate_on])
    return accuracy_report({**report, "accuracy_on": records})


# ---------------------------------------------------------------------------------------------
# explain
# ---------------------------------------------------------------------------------------------
def validate_explain(args) -> None:
    """The ``explain`` arguments that are wrong together or need the file system."""
    if (args.text is None) == (args.input is None):
        raise CommandError("give either a TEXT or --input FILE.jsonl")
    if args.out and not args.input:
        raise CommandError("--out is for batch mode (--input); use --json for one text")
    if args.json and args.input:
        raise CommandError("--json is for one text; use --out in batch mode")
    if args.composite is not None and args.method != "lrp":
        raise CommandError(f"--composite applies to --method lrp only, not {args.method}")
    check_model_folder(args.model)


def validate_against_model(args, model, items) -> None:
    """The arguments that depend on the loaded model: method, composite, targets, length."""
    from lrp_captum.text.attribute import ATTENTION_METHODS
    from lrp_captum.text.explain import class_names_of, resolve_targets
    from lrp_captum.text.transformer import is_hugging_face_model

    if args.method in ATTENTION_METHODS and not is_hugging_face_model(model):
        raise CommandError(f"--method {args.method} needs a transformer; "
                           f"{args.model} holds a {type(model).__name__}")
    names = class_names_of(model)
    for item in items:
        target = item.target if item.target is not None else args.target
        try:
            resolve_targets(target, 1, names)
        except ValueError as exc:
            where = f"text {item.id}: " if args.input else "--target: "
            raise CommandError(where + str(exc)) from None
    min_length = int(getattr(model, "min_length", 1) or 1)
    if args.max_length is not None and args.max_length < min_length:
        raise CommandError(f"--max-length {args.max_length} is shorter than the model's "
                           f"minimum input of {min_length} tokens")


def _explain(args) -> int:
    from lrp_captum.text.texts_file import TextItem, read_texts_file

    prog = "lrp-captum text explain"
    try:
        validate_explain(args)
        from lrp_captum.text.model_folders import load_text_model

        model, tokenizer, _ = load_text_model(args.model, device=args.device)
        items, skipped = read_texts_file(args.input) if args.input else ([TextItem(None, args.text, 0)], [])
        validate_against_model(args, model, items)
    except (CommandError, FileNotFoundError, ValueError, RuntimeError) as exc:
        return fail(prog, exc)
    from lrp_captum.text.explain import explain_text
    from lrp_captum.text.render import write_html
    from lrp_captum.text.texts_file import explanations_jsonl, write_explanations_jsonl

    for line in skipped:
        print(f"{prog}: warning: {line.message()}", file=sys.stderr)
    targets = [it.target if it.target is not None else args.target for it in items]
    try:
        explanations = explain_text(model, tokenizer, [it.text for it in items], target=targets,
                                    composite=args.composite, method=args.method,
                                    max_length=args.max_length, stride=args.stride,
                                    batch_size=args.batch_size, output_mode=args.output_mode)
    except ValueError as exc:
        return fail(prog, exc)
    for it, ex in zip(items, explanations):
        for w in ex.warnings:
            where = f"text {it.id}: " if args.input else ""
            print(f"{prog}: warning: {where}{w}", file=sys.stderr)
    if args.html:
        write_html(explanations, args.html, scale=args.colour_scale)
    if args.input:
        if args.out:
            write_explanations_jsonl(args.out, items, explanations, skipped)
            print(f"wrote {counted(len(explanations), 'explanation')} to {args.out}"
                  + (f"; skipped {counted(len(skipped), 'line')}" if skipped else ""), file=sys.stderr)
        else:
            sys.stdout.write(explanations_jsonl(items, explanations, skipped))
        return 1 if skipped else 0
    _print_explanation(explanations[0], args.json)
    return 0


def _print_explanation(ex, json_path) -> None:
    """One explanation on the terminal (and as JSON in ``json_path``)."""
    from lrp_captum.text.render import split_text, write_json

    if json_path:
        write_json(ex, json_path)
    print(f"predicted {ex.predicted_name} (p({ex.predicted_name})={ex.probabilities[ex.predicted]:.3f}); "
          f"explaining {ex.target_name}")
    width = max([len(w) for w in ex.words] + [4])
    for word, rel in zip(ex.words, ex.word_relevance):
        print(f"  {word:<{width}}  {rel:+.4f}")
    for s in ex.special_tokens:
        print(f"  {s['token']:<{width}}  {s['relevance']:+.4f}  (special token)")
    if ex.logit_split:
        print(f"where the output went: {split_text(ex)}")


# ---------------------------------------------------------------------------------------------
# compare
# ---------------------------------------------------------------------------------------------
def _compare(args) -> int:
    try:
        check_model_folder(args.model)
        from lrp_captum.text.model_folders import load_text_model

        model, tokenizer, config = load_text_model(args.model, device=args.device)
    except (CommandError, FileNotFoundError, ValueError, RuntimeError) as exc:
        return fail("lrp-captum text compare", exc)
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
