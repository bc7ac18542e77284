"""The architecture is what the import graph says: the layers of pyproject.toml's import-linter
contracts hold, no import cycle exists anywhere in the package (imports inside functions
included), and docs/architecture.md lists exactly the contracts' layers."""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]

#: import cycles (strongly connected modules) that exist today; each change that breaks one
#: removes it here. The set only shrinks.
KNOWN_CYCLES = [
    {"lrp_captum.wsi.plan", "lrp_captum.wsi.stitch", "lrp_captum.wsi.work"},
    {"lrp_captum.cli.cohort", "lrp_captum.cli.slide"},
]


def import_cycles(graph) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = 0
    for start in sorted(graph.modules):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def test_the_cycle_finder_finds_a_cycle_of_three_and_ignores_a_chain():
    graph = grimp.ImportGraph()
    for a, b in [("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d"), ("p.d", "p.e")]:
        graph.add_import(importer=a, imported=b)
    assert import_cycles(graph) == [{"p.a", "p.b", "p.c"}]


def test_no_import_cycle_in_the_package_beyond_the_known_ones():
    graph = grimp.build_graph("lrp_captum", include_external_packages=False)
    cycles = import_cycles(graph)
    new = [sorted(c) for c in cycles if c not in KNOWN_CYCLES]
    assert not new, f"import cycles: {new}"
    gone = [sorted(c) for c in KNOWN_CYCLES if c not in cycles]
    assert not gone, f"these cycles no longer exist: remove them from KNOWN_CYCLES: {gone}"


def test_the_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_every_ignored_import_of_a_contract_still_exists():
    """An exception to a contract is removed with the import it excused."""
    graph = grimp.build_graph("lrp_captum", include_external_packages=False)
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    stale = []
    for contract in config["tool"]["importlinter"]["contracts"]:
        for line in contract.get("ignore_imports", []):
            importer, imported = (s.strip() for s in line.split("->"))
            if not graph.direct_import_exists(importer=importer, imported=imported):
                stale.append(line)
    assert not stale, f"remove from pyproject.toml's ignore_imports: {stale}"


LAYER_BLOCK = re.compile(r"^```layers contract=(\S+)\n(.*?)^```", re.S | re.M)


def _layer_set(expression: str) -> frozenset:
    return frozenset(part.strip() for part in expression.split("|"))


def documented_layers(text: str) -> dict:
    """``{contract id: [layer, ...]}`` from the ```layers blocks of docs/architecture.md: each
    line is a layer (modules joined by ``|``), then, after two spaces, what it holds."""
    found = {}
    for contract, body in LAYER_BLOCK.findall(text):
        layers = []
        for line in body.splitlines():
            if line.strip():
                modules = re.split(r"\s{2,}", line.strip())[0]
                layers.append(_layer_set(modules))
        found[contract] = layers
    return found


def test_the_layer_reader_takes_a_line_with_its_description_apart():
    text = "```layers contract=c\na | b        what a and b hold\nc\n```\n"
    assert documented_layers(text) == {"c": [frozenset({"a", "b"}), frozenset({"c"})]}


def test_docs_architecture_lists_exactly_the_layers_of_the_contracts():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = {c["id"]: [_layer_set(layer) for layer in c["layers"]]
                 for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"}
    documented = documented_layers((ROOT / "docs" / "architecture.md").read_text(encoding="utf-8"))
    assert documented == contracts
