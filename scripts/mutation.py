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

The session database of each target is kept in ``mutation-results/``: a rerun continues where
an interrupted one stopped (``--fresh`` starts over).
"""
from __future__ import annotations

import argparse
import json
import os
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
               "tests/test_uniform_rule_on_modules.py"], 600),
    "engine": ("lrp_captum/core/engine",
               ["tests/test_rules_reference.py", "tests/test_engine_equivalence.py",
                "tests/test_transformer_rules_reference.py", "tests/test_uniform_rule_on_modules.py",
                "tests/test_captum_compat.py", "tests/test_output_modes_and_layers.py",
                "tests/test_conservation.py"], 1200),
    "canonizers": ("lrp_captum/core/canonizers.py",
                   ["tests/test_canonizers.py", "tests/test_conservation.py",
                    "tests/test_more_architectures.py"], 1200),
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
    """``[{"module", "line", "operator", "outcome", "diff"}]`` from a cosmic-ray session."""
    dump = subprocess.run([sys.executable, "-m", "cosmic_ray.cli", "dump", str(session)],
                          capture_output=True, text=True, check=True).stdout
    rows = []
    for line in dump.splitlines():
        item, result = json.loads(line)
        if result is None:
            continue
        mutation = item["mutations"][0]
        rows.append(dict(module=mutation["module_path"], line=mutation["start_pos"][0],
                         operator=mutation["operator_name"], outcome=result["test_outcome"],
                         diff=result.get("diff") or ""))
    return rows


def run_target(name: str, fresh: bool, workers_env: dict) -> dict:
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
        subprocess.run([sys.executable, "-m", "cosmic_ray.cli", "exec", str(config), str(session)],
                       cwd=tree, env=env, check=True)
    rows = outcomes(session)
    survivors = [r for r in rows if r["outcome"] == "survived"]
    with open(RESULTS / f"{name}.txt", "w") as report:
        for r in survivors:
            report.write(f"--- {r['module']}:{r['line']} {r['operator']}\n{r['diff']}\n")
    counts = {k: sum(r["outcome"] == k for r in rows) for k in ("killed", "survived", "incompetent")}
    decided = counts["killed"] + counts["survived"]
    return dict(target=name, module=module, mutants=len(rows), **counts,
                kill_rate=counts["killed"] / decided if decided else float("nan"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help=f"default: all ({', '.join(TARGETS)})")
    parser.add_argument("--list", action="store_true", help="print the targets and their tests")
    parser.add_argument("--fresh", action="store_true", help="start every session over")
    args = parser.parse_args(argv)
    if args.list:
        for name, (module, tests, _) in TARGETS.items():
            print(f"{name:11s} {module}  <-  {' '.join(tests)}")
        return 0
    unknown = [t for t in args.targets if t not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {unknown}; choose from {list(TARGETS)}")
    summary = [run_target(name, args.fresh, {"OMP_NUM_THREADS": "1"}) for name in args.targets or TARGETS]
    print("\n| target | module | mutants | killed | survived | incompetent | kill rate |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for s in summary:
        print(f"| {s['target']} | `{s['module']}` | {s['mutants']} | {s['killed']} | {s['survived']} | "
              f"{s['incompetent']} | {s['kill_rate']:.1%} |")
    print(f"\nsurvivors with their diffs: {RESULTS}/<target>.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
