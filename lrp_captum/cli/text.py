"""``lrp-captum text ...``: train the demo model, explain texts, compare with baselines."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from . import add_group

DEFAULT_MODEL_DIR = "demo_output/text_model"


def register(subparsers) -> None:
    """Add the ``text`` command group to the top-level ``lrp-captum`` parser."""
    sub = add_group(subparsers, "text", "text classifiers: explain words",
                    "Word-level LRP for text classifiers.")

    t = sub.add_parser("train-demo", help="train the demo word-CNN on VADER-derived sentences")
    t.add_argument("--out", default=DEFAULT_MODEL_DIR,
                   help=f"output folder for model_state.pt + config.json (default {DEFAULT_MODEL_DIR})")
    t.add_argument("--n-examples", type=int, default=4000)
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--filters", type=int, default=32, help="filters per width")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto, cpu or cuda")
    t.set_defaults(func=_train_demo)

    e = sub.add_parser("explain", help="word relevance for one text or a JSONL batch",
                       description="Explain TEXT, or every line of --input (JSONL: objects "
                                   "with 'text' and optional 'id', 'target'; or JSON strings).")
    e.add_argument("text", nargs="?", help="the text to explain (omit with --input)")
    e.add_argument("--input", help="JSONL file of texts (batch mode)")
    e.add_argument("--output", help="batch mode: JSONL file of explanations (default: stdout)")
    e.add_argument("--html", help="write highlighted HTML here")
    e.add_argument("--json", help="single text: write the explanation as JSON here")
    e.add_argument("--model-dir", default=DEFAULT_MODEL_DIR,
                   help=f"folder written by train-demo (default {DEFAULT_MODEL_DIR})")
    e.add_argument("--target", default=None, help="class name or index (default: predicted)")
    e.add_argument("--composite", default="epsilon", help="LRP composite (default epsilon)")
    e.add_argument("--method", default="lrp",
                   choices=["lrp", "input_x_gradient", "integrated_gradients"])
    e.add_argument("--output-mode", default="logit",
                   choices=["logit", "probability", "contrastive"])
    e.add_argument("--max-length", type=int, default=None, help="tokens per text at most")
    e.add_argument("--batch-size", type=int, default=32)
    e.add_argument("--device", default="auto", help="auto, cpu or cuda")
    e.set_defaults(func=_explain)

    c = sub.add_parser("compare", help="LRP vs InputXGradient vs IntegratedGradients on "
                                       "held-out sentences with known deciding words")
    c.add_argument("--model-dir", default=DEFAULT_MODEL_DIR)
    c.add_argument("--n", type=int, default=400, help="sentences to score")
    c.add_argument("--composite", default="epsilon")
    c.add_argument("--device", default="auto")
    c.set_defaults(func=_compare)


def _fail(message: str) -> int:
    print(f"lrp-captum text: {message}", file=sys.stderr)
    return 2


def _train_demo(args) -> int:
    from ..text.train import train_demo_model

    _, _, report = train_demo_model(args.out, n_examples=args.n_examples, epochs=args.epochs,
                                    n_filters=args.filters, seed=args.seed, device=args.device,
                                    log=lambda m: print(m, file=sys.stderr))
    print(f"saved {args.out}: train accuracy {report['train_accuracy']:.3f}, held-out accuracy "
          f"{report['test_accuracy']:.3f} ({report['data']['n_test']} sentences)")
    return 0


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


def _explain(args) -> int:
    from ..text.explain import explain_text
    from ..text.render import explanations_json, write_html
    from ..text.train import load_text_model

    if (args.text is None) == (args.input is None):
        return _fail("give either a TEXT or --input FILE.jsonl")
    try:
        model, tokenizer, _ = load_text_model(args.model_dir, device=args.device)
        items = (read_jsonl_texts(args.input) if args.input
                 else [{"id": None, "text": args.text, "target": None}])
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        return _fail(str(exc))
    targets = [it["target"] if it["target"] is not None else args.target for it in items]
    try:
        explanations = explain_text(model, tokenizer, [it["text"] for it in items],
                                    target=targets, composite=args.composite,
                                    method=args.method, max_length=args.max_length,
                                    batch_size=args.batch_size, output_mode=args.output_mode)
    except ValueError as exc:
        return _fail(str(exc))
    for it, ex in zip(items, explanations):
        for w in ex.warnings:
            where = f"text {it['id']}: " if args.input else ""
            print(f"warning: {where}{w}", file=sys.stderr)
    if args.html:
        write_html(explanations, args.html)
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
        Path(args.json).write_text(explanations_json(ex), encoding="utf-8")
    print(f"predicted {ex.predicted_name} (p={ex.probabilities[ex.predicted]:.3f}); "
          f"explaining {ex.target_name}")
    width = max([len(w) for w in ex.words] + [4])
    for word, rel in zip(ex.words, ex.word_relevance):
        print(f"  {word:<{width}}  {rel:+.4f}")
    for s in ex.special_tokens:
        print(f"  {s['token']:<{width}}  {s['relevance']:+.4f}  (special token)")
    return 0


def _compare(args) -> int:
    from ..text.data import make_sentiment_dataset, split_examples
    from ..text.evaluate import compare_methods, format_table
    from ..text.train import load_text_model

    try:
        model, tokenizer, config = load_text_model(args.model_dir, device=args.device)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        return _fail(str(exc))
    data = config.get("data", {})
    examples = make_sentiment_dataset(data.get("n_examples", 4000), seed=data.get("seed", 0),
                                      vocab=tokenizer.get_vocab())
    _, test = split_examples(examples, seed=data.get("seed", 0))
    print(format_table(compare_methods(model, tokenizer, test[: args.n],
                                       composite=args.composite)))
    return 0
