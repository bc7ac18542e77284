"""Accuracy of the MiniLM demo sentiment classifier: held-out generated reviews and the
independent hand-written reviews in tests/data/reviews_independent.jsonl (set 1, written before
any training) and reviews_independent_2.jsonl (set 2, written after the first model, before
the changes that followed).

Trains the demo (or reuses it from --model-dir when it was trained with the same settings),
then prints the training time, the machine's load, and the accuracies -- overall and per
phenomenon of the independent set -- next to VADER (a rule-based lexicon classifier) on the
same independent reviews.

    python benchmarks/text_minilm_accuracy.py                  # trains once (minutes), then cached
    python benchmarks/text_minilm_accuracy.py --force          # retrain
"""
from __future__ import annotations

import argparse
import json
import os
import re
from collections import defaultdict
from pathlib import Path

from lrp_captum.text.explain import predict_proba
from lrp_captum.demos.text_minilm import demo_split, train_minilm_demo
from lrp_captum.text.model_folders import DEFAULT_MODEL_DIRS

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
INDEPENDENT_SETS = {"set 1": DATA / "reviews_independent.jsonl",
                    "set 2": DATA / "reviews_independent_2.jsonl"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=DEFAULT_MODEL_DIRS["minilm"])
    parser.add_argument("--force", action="store_true", help="retrain even if cached")
    args = parser.parse_args()

    load_before = os.getloadavg()
    model, tokenizer, report = train_minilm_demo(
        args.model_dir, force=args.force, log=lambda m: print(m, flush=True))
    cached = "reused from the cache" if report["cached"] else "trained now"
    print(f"\nmodel: {args.model_dir} ({cached}); settings {report['settings']}")
    print(f"training: {report['seconds']:.0f} s wall, {report.get('cpu_seconds', float('nan')):.0f}"
          f" s CPU, {report['threads']} threads; load average at training end "
          f"{report['load_average']}; load average at benchmark start {list(load_before)}")
    print(f"held-out generated reviews: accuracy {report['test_accuracy']:.3f} "
          f"(n={report['data']['n_test']}); by kind {report['test_accuracy_by_kind']}")
    train, _ = demo_split(report["settings"])
    generated = {_normalised(r.text) for r in train}
    for name, path in INDEPENDENT_SETS.items():
        report_set(model, tokenizer, name, path, generated)


def _normalised(text: str) -> str:
    return " ".join(re.findall(r"[a-z']+", text.lower()))


def report_set(model, tokenizer, name: str, path: Path, generated: set[str]) -> None:
    """Print accuracy per phenomenon of one independent set, beside VADER's; also without
    the texts that occur verbatim (case and punctuation aside) in the training reviews."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for r in rows:
        if _normalised(r["text"]) in generated:
            r["phenomena"] = r["phenomena"] + ["also in training data"]
    probs = predict_proba(model, tokenizer, [r["text"] for r in rows])
    names = list(model.config.id2label.values())
    predicted = [names[i] for i in probs.argmax(1).tolist()]
    vader = SentimentIntensityAnalyzer()
    vader_says = ["positive" if vader.polarity_scores(r["text"])["compound"] > 0 else "negative"
                  for r in rows]
    by = defaultdict(lambda: [0, 0, 0])
    for r, p, v in zip(rows, predicted, vader_says):
        for key in ["all"] + r["phenomena"]:
            by[key][0] += 1
            by[key][1] += p == r["label"]
            by[key][2] += v == r["label"]
    print(f"\n| independent reviews, {name} | n | MiniLM demo | VADER |")
    print("|---|---|---|---|")
    n_seen, ok_seen, vader_seen = by["also in training data"]
    by["all but those in training data"] = [by["all"][0] - n_seen, by["all"][1] - ok_seen,
                                            by["all"][2] - vader_seen]
    for key in ["all", "all but those in training data", "negation", "contrast", "typo",
                "emoji", "short", "long"]:
        n, ok, ok_vader = by[key]
        if n:
            print(f"| {key} | {n} | {ok / n:.3f} | {ok_vader / n:.3f} |")
    wrong = [(r["id"], r["text"][:70], r["label"]) for r, p in zip(rows, predicted)
             if p != r["label"]]
    print(f"misclassified ({len(wrong)}):")
    for item in wrong:
        print("  ", item)


if __name__ == "__main__":
    main()
