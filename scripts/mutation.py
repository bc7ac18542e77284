"""Mutation testing of the core and the app's guards: ``make mutation`` (not part of ``make test``).

Each target is a module (or package) and the tests that should catch a bug in it. For each,
cosmic-ray (a maintained mutation tester) makes every small change its operators know (``<`` to
``<=``, ``+`` to ``-``, a constant changed, a condition negated, ...) one at a time, in a copy
of the working tree, and runs the target's tests with ``-x``. A mutant the tests fail on is
*killed*; one they pass on *survived*: either a gap in the tests or a change that alters no
result (an equivalent mutant). The table at the end gives the kill rate per target; the list of
survivors, with their diffs, is in ``mutation-results/<target>.txt``.

    python scripts/mutation.py                  # every target (hours on 2 cores)
    python scripts/mutation.py paths escaping   # some targets
    python scripts/mutation.py --list           # the targets and their tests
    python scripts/mutation.py --sample 80      # at most 80 mutants per target, drawn at random

Mutants inside type annotations are skipped, not run: every module of the project starts with
``from __future__ import annotations``, so an annotation is never evaluated and changing it
changes nothing (an equivalent mutant by construction). ``--sample N`` runs a seeded random
draw of ``N`` of the remaining mutants per target (the others are recorded as skipped) and
reports the kill rate of the draw with its 95 % interval: the way to measure a large target on
a small machine. The session database of each target is kept in ``mutation-results/``: a rerun continues where
an interrupted one stopped (``--fresh`` starts over).
"""
from __future__ import annotations

import argparse
import ast
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "mutation-results"

#: name -> (module or package to mutate, tests that should catch its bugs, seconds per test run)
TARGETS = {
    "rules": ("lrp_captum/core/rules.py",
              ["tests/test_rules_reference.py", "tests/test_transformer_rules_reference.py",
               "tests/test_uniform_rule_on_modules.py", "tests/test_engine_fast_paths.py"], 600),
    "engine": ("lrp_captum/core/engine",
               ["tests/test_rules_reference.py", "tests/test_engine_equivalence.py",
                "tests/test_transformer_rules_reference.py", "tests/test_uniform_rule_on_modules.py",
                "tests/test_captum_compat.py", "tests/test_output_modes_and_layers.py",
                "tests/test_conservation.py", "tests/test_engine_fast_paths.py",
                "tests/test_mil_sums.py::test_layernorm_with_its_shift_out_of_the_denominator_is_its_formula"],
               1200),
    "canonizers": ("lrp_captum/core/canonizers.py",
                   ["tests/test_canonizers.py", "tests/test_conservation.py",
                    "tests/test_more_architectures.py", "tests/test_engine_fast_paths.py"], 1200),
    "layers": ("lrp_captum/core/layers.py",
               ["tests/test_canonizers.py", "tests/test_conservation.py"], 600),
    "paths": ("lrp_captum/viewer/paths.py",
              ["tests/test_app_security.py", "tests/test_app_viewer.py"], 600),
    "escaping": ("lrp_captum/viewer/escaping.py",
                 ["tests/test_app_security.py", "tests/test_app_markdown_browser.py"], 600),
}


def copy_tree(dest: Path) -> None:
    """The files git knows in the working tree (tracked, and untracked but not ignored), copied
    to ``dest``: mutants are written there, never into the checkout."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, listed):
        source = ROOT / name.decode()
        if source.is_file():
            target = dest / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    vendor = ROOT / "static" / "vendor"
    if vendor.is_dir():  # OpenSeadragon (gitignored) for the app's browser tests
        shutil.copytree(vendor, dest / "static" / "vendor")


def outcomes(session: Path) -> list[dict]:
    """``[{"module", "line", "start", "end", "operator", "outcome", "diff"}]`` from a cosmic-ray
    session; ``outcome`` is ``"skipped"`` for a mutant that was not run."""
    dump = subprocess.run([sys.executable, "-m", "cosmic_ray.cli", "dump", str(session)],
                          capture_output=True, text=True, check=True).stdout
    rows = []
    for line in dump.splitlines():
        item, result = json.loads(line)
        if result is None:
            continue
        mutation = item["mutations"][0]
        outcome = result["test_outcome"] or result["worker_outcome"]
        rows.append(dict(module=mutation["module_path"], line=mutation["start_pos"][0],
                         start=tuple(mutation["start_pos"]), end=tuple(mutation["end_pos"]),
                         operator=mutation["operator_name"], outcome=outcome,
                         diff=result.get("diff") or ""))
    return rows


def annotation_spans(path: Path) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """``[(start, end)]`` source positions (line, column) of every type annotation in ``path``:
    arguments', returns' and annotated assignments'."""
    spans = []
    for node in ast.walk(ast.parse(path.read_text())):
        found = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found.append(node.returns)
            a = node.args
            found += [arg.annotation for arg in a.posonlyargs + a.args + a.kwonlyargs
                      + [a.vararg, a.kwarg] if arg is not None]
        elif isinstance(node, ast.AnnAssign):
            found.append(node.annotation)
        spans += [((n.lineno, n.col_offset), (n.end_lineno, n.end_col_offset))
                  for n in found if n is not None]
    return spans


def inside(spans, start, end) -> bool:
    return any(s <= tuple(start) and tuple(end) <= e for s, e in spans)


def skip_mutants(session: Path, tree: Path, sample: int | None, seed: int) -> dict:
    """Mark the mutants inside annotations, and those outside the sample, as skipped.

    Returns ``{"annotation": n, "not drawn": n}``."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkResult, WorkerOutcome
    skipped = {"annotation": 0, "not drawn": 0}
    with use_db(str(session), WorkDB.Mode.open) as db:
        if db.num_results:  # an interrupted session: its draw was made when it started
            return skipped
        spans: dict = {}
        keep, drop = [], []
        for item in db.work_items:
            m = item.mutations[0]
            path = tree / m.module_path
            if path not in spans:
                spans[path] = annotation_spans(path)
            (drop if inside(spans[path], m.start_pos, m.end_pos) else keep).append(item.job_id)
        skipped["annotation"] = len(drop)
        if sample is not None and len(keep) > sample:
            random.Random(seed).shuffle(keep)
            skipped["not drawn"] = len(keep) - sample
            drop += keep[sample:]
        if drop:
            db.set_multiple_results(drop, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
    return skipped


def wilson(killed: int, decided: int) -> tuple[float, float]:
    """95 % Wilson interval of a kill rate measured on a random draw."""
    if not decided:
        return float("nan"), float("nan")
    z, p = 1.96, killed / decided
    centre = (p + z * z / (2 * decided)) / (1 + z * z / decided)
    half = z * math.sqrt(p * (1 - p) / decided + z * z / (4 * decided ** 2)) / (1 + z * z / decided)
    return max(0.0, centre - half), min(1.0, centre + half)


def run_target(name: str, fresh: bool, workers_env: dict, sample: int | None = None,
               seed: int = 0) -> dict:
    module, tests, timeout = TARGETS[name]
    RESULTS.mkdir(exist_ok=True)
    session = RESULTS / f"{name}.sqlite"
    if fresh and session.exists():
        session.unlink()
    with tempfile.TemporaryDirectory(prefix=f"lrp-mutation-{name}-") as tmp:
        tree = Path(tmp)
        copy_tree(tree)
        command = " ".join([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                            "-p", "no:randomly", *tests])
        config = tree / "cosmic-ray.toml"
        config.write_text(
            "[cosmic-ray]\n"
            f"module-path = {json.dumps(module)}\n"
            f"timeout = {float(timeout)}\n"
            "excluded-modules = []\n"
            f"test-command = {json.dumps(command)}\n"
            "[cosmic-ray.distributor]\nname = \"local\"\n")
        env = dict(os.environ, PYTHONPATH=str(tree), **workers_env)
        if not session.exists():
            subprocess.run([sys.executable, "-m", "cosmic_ray.cli", "init", str(config), str(session)],
                           cwd=tree, env=env, check=True)
        skip_mutants(session, tree, sample, seed)
        subprocess.run([sys.executable, "-m", "cosmic_ray.cli", "exec", str(config), str(session)],
                       cwd=tree, env=env, check=True)
        rows = outcomes(session)
        # positions are those of the copy that was mutated, not of the checkout as it is now
        spans = {m: annotation_spans(tree / m) for m in {r["module"] for r in rows}}
    survivors = [r for r in rows if r["outcome"] == "survived"]
    with open(RESULTS / f"{name}.txt", "w") as report:
        for r in survivors:
            report.write(f"--- {r['module']}:{r['line']} {r['operator']}\n{r['diff']}\n")
    counts = {k: sum(r["outcome"] == k for r in rows)
              for k in ("killed", "survived", "incompetent", "skipped")}
    counts["annotation"] = sum(r["outcome"] == "skipped" and inside(spans[r["module"]], r["start"],
                                                                    r["end"]) for r in rows)
    decided = counts["killed"] + counts["survived"]
    low, high = wilson(counts["killed"], decided)
    return dict(target=name, module=module, mutants=len(rows), **counts,
                kill_rate=counts["killed"] / decided if decided else float("nan"),
                low=low, high=high)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help=f"default: all ({', '.join(TARGETS)})")
    parser.add_argument("--list", action="store_true", help="print the targets and their tests")
    parser.add_argument("--fresh", action="store_true", help="start every session over")
    parser.add_argument("--sample", type=int, default=None, metavar="N",
                        help="run a random draw of at most N mutants per target (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="the draw's seed (default 0)")
    args = parser.parse_args(argv)
    if args.list:
        for name, (module, tests, _) in TARGETS.items():
            print(f"{name:11s} {module}  <-  {' '.join(tests)}")
        return 0
    unknown = [t for t in args.targets if t not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {unknown}; choose from {list(TARGETS)}")
    if args.sample is not None and args.sample < 1:
        parser.error(f"--sample must be at least 1, not {args.sample}")
    summary = [run_target(name, args.fresh, {"OMP_NUM_THREADS": "1"}, args.sample, args.seed)
               for name in args.targets or TARGETS]
    print("\n| target | module | mutants | in annotations (skipped) | not drawn | run | killed "
          "| survived | incompetent | kill rate (95 % interval) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for s in summary:
        run = s["killed"] + s["survived"] + s["incompetent"]
        print(f"| {s['target']} | `{s['module']}` | {s['mutants']} | {s['annotation']} | "
              f"{s['skipped'] - s['annotation']} | {run} | {s['killed']} | {s['survived']} | "
              f"{s['incompetent']} | {s['kill_rate']:.1%} ({s['low']:.0%}–{s['high']:.0%}) |")
    print(f"\nsurvivors with their diffs: {RESULTS}/<target>.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
