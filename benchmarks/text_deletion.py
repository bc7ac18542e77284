"""Token-deletion faithfulness on the MiniLM sentiment demo: MoRF / LeRF curves and areas for
AttnLRP, CP-LRP, input x gradient, Captum's integrated gradients, attention rollout, raw
attention (last layer, [CLS] row, mean over heads) and random.

Each method explains the predicted class of the same texts; lrp_captum.text.deletion replaces
word tokens by [UNK] in the order the method ranks them and tracks the probability of that
class. Prints a markdown table (lower MoRF and higher LeRF are better). The LRP rows need the
transformer composites of the core ('attnlrp', 'cp_lrp'); where they are not registered the
row says so.

    python benchmarks/text_deletion.py                        # 100 held-out generated reviews
    python benchmarks/text_deletion.py --texts independent    # tests/data/reviews_independent.jsonl
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from lrp_captum.core.composites import list_composites
from lrp_captum.text.deletion import deletion_curves, format_deletion_table
from lrp_captum.text.explain import explain_text
from lrp_captum.demos.text_minilm import demo_split, train_minilm_demo
from lrp_captum.text.model_folders import DEFAULT_MODEL_DIRS

INDEPENDENT = Path(__file__).resolve().parents[1] / "tests" / "data" / "reviews_independent.jsonl"
# (row name, explain_text arguments)
METHODS = [
    ("AttnLRP", {"method": "lrp", "composite": "attnlrp"}),
    ("CP-LRP", {"method": "lrp", "composite": "cp_lrp"}),
    ("input x gradient", {"method": "input_x_gradient"}),
    ("integrated gradients (32 steps)", {"method": "integrated_gradients"}),
    ("attention rollout", {"method": "attention_rollout"}),
    ("raw attention (last layer)", {"method": "raw_attention"}),
    ("random", {"method": "random"}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=DEFAULT_MODEL_DIRS["minilm"])
    parser.add_argument("--texts", choices=["heldout", "independent"], default="heldout")
    parser.add_argument("--n", type=int, default=100, help="held-out reviews to use")
    parser.add_argument("--steps", type=int, default=10, help="deletion steps")
    parser.add_argument("--replacement", default="unk", choices=["unk", "mask", "pad"])
    args = parser.parse_args()

    model, tokenizer, report = train_minilm_demo(args.model_dir,
                                                 log=lambda m: print(m, flush=True))
    if args.texts == "independent":
        texts = [json.loads(line)["text"]
                 for line in INDEPENDENT.read_text(encoding="utf-8").splitlines()]
    else:
        texts = [r.text for r in demo_split(report["settings"])[1][:args.n]]
    print(f"{len(texts)} texts ({args.texts}), {args.steps} steps, deleted tokens -> "
          f"[{args.replacement.upper()}]; load average {os.getloadavg()}", flush=True)
    rows = []
    for name, kwargs in METHODS:
        composite = kwargs.get("composite")
        if composite is not None and composite not in list_composites():
            rows.append({"method": name, "result": None,
                         "note": f"composite '{composite}' not in this lrp_captum"})
            continue
        start = time.perf_counter()
        explanations = explain_text(model, tokenizer, texts, **kwargs)
        seconds = time.perf_counter() - start
        result = deletion_curves(model, tokenizer, explanations, n_steps=args.steps,
                                 replacement=args.replacement)
        rows.append({"method": name, "result": result, "seconds": seconds})
        print(f"{name}: MoRF {result.morf_auc:.3f}, LeRF {result.lerf_auc:.3f} "
              f"({seconds:.0f} s to explain)", flush=True)
    print()
    print(format_deletion_table(rows))
    print("\nseconds: time to explain all texts (wall, shared machine).")


if __name__ == "__main__":
    main()
