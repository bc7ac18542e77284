"""Canonizers: rewrite a model (without touching it) so that LRP is well defined on every op.

:func:`canonize` traces the model with ``torch.fx`` and builds a new ``GraphModule`` that shares
every parameter and module with the original, except where it substitutes a layer:

* BatchNorm directly after a Conv/Linear (and used only there) is merged with it
  (:class:`~lrp_captum.core.layers.MergedBatchNorm`): one linear layer, one rule;
* residual sums ``a + b`` become :class:`~lrp_captum.core.layers.Sum` layers;
* elementwise products where one factor is a gate (squeeze-excitation, broadcast factor) become
  :class:`~lrp_captum.core.layers.GatedProduct` with the gate treated as a constant;
* activations written as function calls become :class:`~lrp_captum.core.layers.FunctionalActivation`;
* in-place activations become out-of-place copies (the original module keeps ``inplace=True``).

Ops through which the plain gradient already propagates relevance correctly (reshapes,
concatenation, indexing, max/avg pooling, means, ReLU, scaling by constants) are left as they
are. Anything else raises :class:`CanonizationError` naming the op, before anything runs.
"""
from __future__ import annotations

import copy
import operator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from lrp_captum.core import layer_types as types
from lrp_captum.core.composites import SOURCE_LAYERS
from lrp_captum.core.layers import FunctionalActivation, GatedProduct, MergedBatchNorm, Sum
from lrp_captum.core.op_families import FAMILIES, neutral

__all__ = ["canonize", "Canonized", "CanonizationError", "UntraceableModelError"]


class CanonizationError(TypeError):
    """The model contains an op that no rule covers (raised before anything is changed)."""


class UntraceableModelError(CanonizationError):
    """torch.fx cannot trace the model's forward (data-dependent control flow, calls fx
    cannot proxy). ``where`` names the innermost module that fails on its own."""

    def __init__(self, message: str, where: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.where, self.reason = where, reason


_ACTIVATION_FUNCTIONS = {
    torch.sigmoid: "sigmoid", torch.tanh: "tanh", F.sigmoid: "sigmoid", F.tanh: "tanh",
    F.silu: "silu", F.gelu: "gelu", F.elu: "elu", F.selu: "selu", F.celu: "celu",
    F.softplus: "softplus", F.hardswish: "hardswish", F.hardsigmoid: "hardsigmoid",
    F.hardtanh: "hardtanh", F.relu6: "relu6", F.mish: "mish", F.logsigmoid: "logsigmoid",
    F.leaky_relu: "leaky_relu", torch.exp: "exp", torch.log: "log", torch.square: "square",
}
_ACTIVATION_METHODS = {"sigmoid", "tanh", "exp", "log", "square", "sigmoid_", "tanh_"}
_RELU = {torch.relu, F.relu, torch.relu_}

# what else the plain gradient propagates correctly is one fact, shared with the engine
# (lrp_captum.core.op_families.NEUTRAL); fx records a few more, and the names of the
# functions torchvision's stochastic depth and fx's argument checks go by
_SAFE_FUNCTIONS = {operator.getitem, getattr, operator.neg, operator.truediv, operator.floordiv,
                   F.linear}
_SAFE_FUNCTION_NAMES = {"stochastic_depth", "_assert", "_assert_is_none", "__getitem__"}
#: names of ops that only the transformer / MIL composites cover (named in the error)
_ATTENTION_OPS = ("softmax", "matmul", "mm", "bmm", "einsum", "layer_norm", "rms_norm",
                  "scaled_dot_product_attention")
_ADD = {operator.add, torch.add, operator.iadd}
_SUB = {operator.sub, torch.sub, operator.isub}
_MUL = {operator.mul, torch.mul, operator.imul}


@dataclass
class Canonized:
    """Result of :func:`canonize`.

    Attributes
    ----------
    module : fx.GraphModule
        Computes the same function as the model; shares its parameters.
    layer_names : dict
        ``{module in module: display name}`` using the original model's names
        (``"features.0+features.1"`` for a merged conv + BatchNorm).
    replaced : dict
        ``{original module: substitute module}`` for merged / copied layers.
    changes : list of str
        What was rewritten, for reports.
    """
    module: fx.GraphModule
    layer_names: dict = field(default_factory=dict)
    replaced: dict = field(default_factory=dict)
    changes: list = field(default_factory=list)

    def layers(self) -> list[tuple[str, nn.Module]]:
        """``(display name, module)`` of every called leaf layer, in execution order."""
        seen, out = set(), []
        for node in self.module.graph.nodes:
            if node.op == "call_module":
                mod = self.module.get_submodule(node.target)
                if id(mod) not in seen:
                    seen.add(id(mod))
                    out.append((self.layer_names.get(mod, node.target), mod))
        return out


class _Tracer(fx.Tracer):
    """Keeps layers that carry rules as leaves; traces through everything else."""

    def __init__(self, leaf_types: tuple) -> None:
        super().__init__()
        self.leaf_types = leaf_types

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if hasattr(m, "rule") or isinstance(m, self.leaf_types):
            return True
        return next(m.children(), None) is None and not _is_traceable_leaf(m)


def _is_traceable_leaf(m: nn.Module) -> bool:
    # parameter-free leaves of unknown type (e.g. torchvision's StochasticDepth) are traced
    # through so that their ops are checked; leaves with parameters stay leaves (they need a rule)
    return next(m.parameters(recurse=False), None) is None and \
        next(m.buffers(recurse=False), None) is None


@contextmanager
def _containers_restored(model: nn.Module):
    """Put back the dicts, lists and sets a module keeps as attributes after tracing: a forward
    that caches a tensor (timm's LeViT caches its attention biases in eval mode) would
    otherwise keep a torch.fx proxy, and the user's model would come back changed."""
    saved = [(container, copy.copy(container)) for m in model.modules() for name, container in vars(m).items()
             if not name.startswith("_") and isinstance(container, (dict, list, set))]
    try:
        yield
    finally:
        for container, before in saved:
            container.clear()
            if isinstance(container, list):
                container.extend(before)
            else:
                container.update(before)


def _leaf_types(extra: Sequence[type] = ()) -> tuple:
    return (types.Linear + types.BatchNorm + types.AvgPool + types.MaxPool + types.Activation
            + types.Identity + SOURCE_LAYERS + (nn.LayerNorm, nn.GroupNorm, nn.LSTM, nn.GRU,
                                                 nn.MultiheadAttention) + tuple(extra))


def canonize(model: nn.Module, example_inputs: Optional[Sequence[torch.Tensor]] = None,
             extra_leaf_types: Sequence[type] = (), check: bool = True,
             atol: float = 1e-5, op_families: Sequence[str] = ()) -> Canonized:
    """Rewrite ``model`` into an LRP-ready ``GraphModule`` (the model itself is not changed).

    Parameters
    ----------
    model : nn.Module
        In evaluation mode.
    example_inputs : sequence of Tensor, optional
        Real inputs; used to tell a gate from the gated value by shape, and to check that the
        rewritten module computes the same outputs (``atol``).
    extra_leaf_types : sequence of type
        Module types to keep as leaves (they have rules in the composite).
    op_families : sequence of str
        Families of functions the composite has rules for
        (:mod:`lrp_captum.core.op_families`): their calls are left as they are and get their
        rules when the model runs.

    Raises
    ------
    CanonizationError
        If the model cannot be traced, or contains an op no rule covers.
    """
    if example_inputs is not None:
        few = few_examples(example_inputs)
        if any(a is not b for a, b in zip(few, example_inputs)):
            try:
                return _canonize(model, few, extra_leaf_types, check, atol, op_families)
            except UntraceableModelError:
                raise
            except Exception:  # noqa: BLE001 - e.g. an argument whose first dimension only
                pass           # happens to equal the batch size: run on the arguments as given
    return _canonize(model, example_inputs, extra_leaf_types, check, atol, op_families)


def _canonize(model: nn.Module, example_inputs, extra_leaf_types: Sequence[type], check: bool,
              atol: float, op_families: Sequence[str]) -> Canonized:
    leaf_types = _leaf_types(extra_leaf_types)
    tracer = _Tracer(leaf_types)
    concrete = _concrete_args(model, example_inputs)
    try:
        with _containers_restored(model):
            graph = tracer.trace(model, concrete_args=concrete or None)
    except Exception as exc:  # fx raises many types for untraceable code
        with _containers_restored(model):
            where, reason = _untraceable_module(model, leaf_types, exc)
        raise UntraceableModelError(
            f"torch.fx could not trace {where}: {reason}. Use canonizers=None "
            "(rules are then attached to the leaf modules as they are; functional ops and "
            "in-place activations are not rewritten) or make that forward traceable.",
            where, reason) from exc
    gm = fx.GraphModule(model, graph, class_name=f"Canonized{type(model).__name__}")
    result = Canonized(gm)
    for name, module in model.named_modules():
        result.layer_names[module] = name

    shapes = {}
    if example_inputs is not None:
        shapes = _node_shapes(gm, example_inputs)

    _check_and_rewrite_ops(result, shapes, set(op_families))
    _merge_batchnorms(result)
    _copy_inplace_modules(result)
    gm.graph.eliminate_dead_code()
    gm.graph.lint()
    gm.recompile()

    if check and example_inputs is not None:
        with torch.no_grad():
            expected = model(*example_inputs)
            actual = gm(*example_inputs)
        problem = None if _finite(expected) else non_finite_problem(model, example_inputs)
        if problem:  # NaN weights or inputs: not a canonization error, say what is wrong
            raise ValueError(problem)
        if not _allclose(expected, actual, atol):
            raise CanonizationError(
                f"the canonized {type(model).__name__} does not reproduce the model's output "
                f"(atol {atol}); please report this model, and use canonizers=None meanwhile")
    return result


def non_finite_problem(model: Optional[nn.Module], inputs) -> Optional[str]:
    """What is NaN or inf among the ``model``'s parameters and buffers and the floating-point
    ``inputs`` (a tuple), in words naming the first parameter or the first input position; None
    when all are finite."""
    def count(t: torch.Tensor) -> str:
        nan, inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
        return " and ".join(f"{n} {word}" for n, word in ((nan, "NaN"), (inf, "inf")) if n) + " value(s)"

    for name, t in (model.state_dict(keep_vars=True).items() if model is not None else ()):
        if torch.is_tensor(t) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return (f"parameter {name!r} holds {count(t.detach())}: LRP needs finite weights; check the "
                    "weights file or the training that wrote it")
    for i, t in enumerate(inputs):
        if torch.is_tensor(t) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            first = tuple(int(j) for j in torch.nonzero(~torch.isfinite(t))[0])
            which = "inputs" if len(inputs) == 1 else f"inputs[{i}]"
            return (f"the {which} hold {count(t.detach())}, first at {first}: LRP needs finite inputs; "
                    "drop or repair those examples")
    return None


def _concrete_args(model: nn.Module, example_inputs) -> dict:
    """Arguments the trace is specialised on: those passed as ``None`` or as non-tensors, and
    the defaults of those not passed (``forward(x, mask=None)`` with ``if mask is not None``
    must take the branch of the call at hand, not the one a proxy would take)."""
    import inspect
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return {}
    given = tuple(example_inputs) if example_inputs is not None else None
    concrete = {}
    for i, param in enumerate(params):
        if param.kind not in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            break
        if given is not None and i < len(given):
            value = given[i]
            if value is None or isinstance(value, (bool, int, float, str)):
                concrete[param.name] = value
        elif given is not None and param.default is not param.empty:
            concrete[param.name] = param.default
    return concrete


def _untraceable_module(model: nn.Module, leaf_types: tuple, exc: Exception) -> tuple:
    """``("module 'name' (Type)", reason)`` for the innermost module whose forward fails to
    trace on its own (the model itself if no submodule does)."""
    name, module, reason = "", model, exc
    descend = True
    while descend:
        descend = False
        for child_name, child in module.named_children():
            tracer = _Tracer(leaf_types)
            if tracer.is_leaf_module(child, child_name):
                continue
            try:
                tracer.trace(child)
            except Exception as child_exc:  # noqa: BLE001 - same as above, one level down
                name = f"{name}.{child_name}" if name else child_name
                module, reason, descend = child, child_exc, True
                break
    what = f"module '{name}' ({type(module).__name__})" if name else type(model).__name__
    text = str(reason).strip().splitlines()
    return what, (text[0] if text else type(reason).__name__)


def _allclose(a: Any, b: Any, atol: float) -> bool:
    if torch.is_tensor(a):
        scale = max(1.0, float(a.abs().max())) if a.numel() else 1.0
        return torch.is_tensor(b) and a.shape == b.shape and \
            torch.allclose(a, b, atol=atol * scale, rtol=1e-4)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_allclose(x, y, atol) for x, y in zip(a, b))
    return a == b


def _finite(a: Any) -> bool:
    if torch.is_tensor(a):
        return not a.is_floating_point() or bool(torch.isfinite(a).all())
    if isinstance(a, (tuple, list)):
        return all(_finite(x) for x in a)
    return True


#: examples of a batch that canonization runs: the shapes it reads and the check of the
#: rewritten model do not depend on the batch size (plans are cached without it), so the first
#: call pays for two examples, not for the whole batch. Two, not one: with one example a
#: broadcast ``(1, C)`` could not be told from a batch ``(N, C)``. Where the cut arguments do not
#: run (an argument whose first dimension only happens to equal ``N``), canonization runs again
#: on the arguments as given.
CANONIZATION_EXAMPLES = 2


def few_examples(arguments: Sequence) -> tuple:
    """The first :data:`CANONIZATION_EXAMPLES` examples of a batch: every tensor argument whose
    first dimension is the batch size ``N`` of the first tensor is cut to that many rows; other
    arguments are left as they are."""
    tensors = [a for a in arguments if torch.is_tensor(a) and a.dim() > 0]
    if not tensors or tensors[0].shape[0] <= CANONIZATION_EXAMPLES:
        return tuple(arguments)
    n = tensors[0].shape[0]
    return tuple(a[:CANONIZATION_EXAMPLES] if torch.is_tensor(a) and a.dim() > 0
                 and a.shape[0] == n else a for a in arguments)


def _node_shapes(gm: fx.GraphModule, example_inputs) -> dict:
    """The output shape of every node of ``gm`` run on ``example_inputs``. (Computed: fake
    tensors would skip the arithmetic, but their per-op overhead costs more than a forward pass
    of two examples.)"""
    shapes: dict = {}

    class _Recorder(fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            if torch.is_tensor(out):
                shapes[n] = tuple(out.shape)
            return out

    with torch.no_grad():
        _Recorder(gm).run(*example_inputs)
    return shapes


def _add_module(result: Canonized, module: nn.Module, display: str) -> str:
    gm = result.module
    if not hasattr(gm, "_lrp"):
        gm.add_module("_lrp", nn.Module())
    holder = gm.get_submodule("_lrp")
    key = f"m{len(holder._modules)}"
    holder.add_module(key, module)
    result.layer_names[module] = display
    return f"_lrp.{key}"


def _describe(node: fx.Node) -> str:
    target = node.target
    name = getattr(target, "__name__", str(target))
    stack = node.meta.get("nn_module_stack") or {}
    where = f" in '{list(stack)[-1]}'" if stack else ""
    return f"{node.op} '{name}'{where}"


def _is_tensor_node(arg: Any, shapes: dict) -> bool:
    if not isinstance(arg, fx.Node):
        return False
    return arg in shapes if shapes else True


def _covered_by_op_rules(node: fx.Node, op_families: set) -> bool:
    if not op_families:
        return False
    target = node.target
    if node.op == "call_method":
        target = getattr(torch.Tensor, target, None)
    return FAMILIES.get(target) in op_families


def _check_and_rewrite_ops(result: Canonized, shapes: dict, op_families: set = frozenset()
                           ) -> None:
    gm = result.module
    graph = gm.graph
    unsupported = []
    for node in list(graph.nodes):
        if node.op == "call_module":
            continue
        if node.op not in ("call_function", "call_method"):
            continue
        target = node.target
        if _covered_by_op_rules(node, op_families):
            continue  # the rule of the function's family applies when the model runs
        tensor_args = [a for a in node.args if _is_tensor_node(a, shapes)]
        if shapes and node not in shapes:
            continue  # computes no tensor (a size, a scale from a size): nothing to explain
        if node.op == "call_function" and target in _ADD or \
                node.op == "call_method" and target in ("add", "add_", "__add__", "__iadd__"):
            if len(tensor_args) >= 2 and not node.kwargs:
                _replace_with_module(result, node, Sum(), tensor_args, f"sum@{node.name}",
                                     shapes)
                result.changes.append(f"{_describe(node)} -> Sum layer")
            continue
        if node.op == "call_function" and target in _SUB or \
                node.op == "call_method" and target in ("sub", "__sub__"):
            continue  # native gradient splits a - b with signs, conserving relevance
        if node.op == "call_function" and target in _MUL or \
                node.op == "call_method" and target in ("mul", "mul_", "__mul__"):
            if len(tensor_args) >= 2:
                value, gate = _which_is_gate(node, tensor_args, shapes)
                if value is None:
                    unsupported.append(f"{_describe(node)}: product of two tensors of the same "
                                       "shape (not a gate); give it a module with a rule")
                    continue
                _replace_with_module(result, node, GatedProduct(), [value, gate],
                                     f"gate@{node.name}", shapes)
                result.changes.append(f"{_describe(node)} -> GatedProduct (gate is constant)")
            continue
        if node.op == "call_function" and target in _RELU:
            if node.kwargs.get("inplace") or target is torch.relu_:
                node.target = F.relu
                node.kwargs = {k: v for k, v in node.kwargs.items() if k != "inplace"}
                result.changes.append(f"{_describe(node)} -> out-of-place relu")
            continue
        if node.op == "call_method" and target in ("relu", "relu_"):
            node.target = "relu"
            continue
        if node.op == "call_function" and target in _ACTIVATION_FUNCTIONS:
            fn_name = _ACTIVATION_FUNCTIONS[target]
            kwargs = dict(node.kwargs)
            extra_args = node.args[1:]
            fn = target if not extra_args else (lambda x, _f=target, _a=extra_args, **kw:
                                                 _f(x, *_a, **kw))
            _replace_with_module(result, node, FunctionalActivation(fn, fn_name, kwargs),
                                 [node.args[0]], f"{fn_name}@{node.name}", shapes)
            result.changes.append(f"{_describe(node)} -> FunctionalActivation")
            continue
        if node.op == "call_method" and target in _ACTIVATION_METHODS:
            name = target.rstrip("_")
            fn = getattr(torch, name)
            _replace_with_module(result, node, FunctionalActivation(fn, name),
                                 [node.args[0]], f"{name}@{node.name}", shapes)
            continue
        if node.op == "call_function" and (target in _SAFE_FUNCTIONS or neutral(target) or getattr(
                target, "__name__", "") in _SAFE_FUNCTION_NAMES):
            continue
        if node.op == "call_method" and neutral(getattr(torch.Tensor, target, None)):
            continue
        unsupported.append(_describe(node))
    if unsupported:
        attention = any(f"'{op}'" in text for text in unsupported for op in _ATTENTION_OPS)
        raise CanonizationError(
            "no LRP rule covers these ops: " + "; ".join(unsupported) + ". "
            + ("These are attention or normalisation ops: the composites 'attnlrp' and 'cp_lrp' "
               "(transformers) and 'xmil' (attention-MIL heads) have rules for them. " if attention else "")
            + "Otherwise wrap each in an nn.Module and give it a rule: get_composite(name, "
            "layer_map={YourModule: PassRule()}) for elementwise ops, EpsilonRule() for linear ones.")


def _which_is_gate(node: fx.Node, args: list, shapes: dict):
    a, b = args[0], args[1]
    sa, sb = shapes.get(a), shapes.get(b)
    if sa is not None and sb is not None and sa != sb:
        numel = (lambda s: int(torch.tensor(s).prod()) if s else 1)
        return (a, b) if numel(sa) > numel(sb) else (b, a)
    # same or unknown shape: the gate is the operand made by a squashing function
    for value, gate in ((a, b), (b, a)):
        if _is_squashed(gate):
            return value, gate
    return None, None


def _is_squashed(node: fx.Node) -> bool:
    target = node.target
    if node.op == "call_function" and target in (torch.sigmoid, F.sigmoid, F.hardsigmoid,
                                                 torch.tanh, F.softmax, torch.softmax):
        return True
    if node.op == "call_method" and target in ("sigmoid", "tanh", "softmax"):
        return True
    if node.op == "call_module":
        mod = node.graph.owning_module.get_submodule(node.target)
        return isinstance(mod, (nn.Sigmoid, nn.Hardsigmoid, nn.Tanh, nn.Softmax)) or (
            isinstance(mod, FunctionalActivation) and mod.fn_name in ("sigmoid", "hardsigmoid"))
    return False


def _replace_with_module(result: Canonized, node: fx.Node, module: nn.Module, args: list,
                         display: str, shapes: Optional[dict] = None) -> fx.Node:
    graph = result.module.graph
    stack = node.meta.get("nn_module_stack") or {}
    prefix = f"{list(stack)[-1]}." if stack else ""
    target = _add_module(result, module, prefix + display)
    with graph.inserting_after(node):
        new = graph.call_module(target, tuple(args))
    new.meta = dict(node.meta)
    if shapes is not None and node in shapes:
        shapes[new] = shapes[node]
    node.replace_all_uses_with(new)
    graph.erase_node(node)
    return new


def _merge_batchnorms(result: Canonized) -> None:
    gm = result.module
    for node in list(gm.graph.nodes):
        if node.op != "call_module":
            continue
        bn = gm.get_submodule(node.target)
        if not isinstance(bn, types.BatchNorm):
            continue
        src = node.args[0] if node.args else None
        if not (isinstance(src, fx.Node) and src.op == "call_module" and len(src.users) == 1):
            continue
        lin = gm.get_submodule(src.target)
        if not isinstance(lin, types.Linear) or isinstance(lin, MergedBatchNorm):
            continue
        if bn.training or bn.running_var is None:
            continue  # left standalone; the BatchNorm rule reports training mode
        after = _batchnorm_tail(bn)
        if after is None:
            continue  # a BatchNorm subclass with a forward of its own: left as it is
        merged = MergedBatchNorm(lin, bn)
        display = f"{result.layer_names.get(lin, src.target)}+{result.layer_names.get(bn, '')}"
        target = _add_module(result, merged, display)
        result.replaced[lin] = merged
        result.replaced[bn] = merged
        src.target = target
        out = src
        for name in after:  # timm's BatchNormAct2d: its dropout and activation modules follow
            with gm.graph.inserting_after(out):
                out = gm.graph.call_module(f"{node.target}.{name}", (out,))
            out.meta = dict(node.meta)
        node.replace_all_uses_with(out)
        gm.graph.erase_node(node)
        result.changes.append(f"merged BatchNorm '{display}'" + (f" (then its {', '.join(after)})"
                                                                  if after else ""))


def _batchnorm_tail(bn: nn.Module) -> Optional[tuple]:
    """What follows the normalisation in a BatchNorm module's forward: ``()`` for torch's own
    BatchNorm, ``("drop", "act")`` for timm's ``BatchNormAct2d`` (normalise, dropout,
    activation), None for any other forward (not merged)."""
    from torch.nn.modules.batchnorm import _BatchNorm

    if type(bn).forward is _BatchNorm.forward:
        return ()
    if type(bn).__name__ in ("BatchNormAct2d", "BatchNormAct1d") and \
            isinstance(getattr(bn, "drop", None), nn.Module) and isinstance(getattr(bn, "act", None), nn.Module):
        return ("drop", "act")
    return None


def _copy_inplace_modules(result: Canonized) -> None:
    gm = result.module
    copies = {}
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        mod = gm.get_submodule(node.target)
        if getattr(mod, "inplace", False) is True:
            if mod not in copies:
                clone = _copy_module(mod)
                clone.inplace = False
                copies[mod] = _add_module(result, clone, result.layer_names.get(mod, node.target))
                result.replaced.setdefault(mod, clone)
            node.target = copies[mod]


def _copy_module(mod: nn.Module) -> nn.Module:
    """Shallow copy (parameters stay shared) with hook registries of its own."""
    import copy
    clone = copy.copy(mod)
    for key, value in list(clone.__dict__.items()):
        if "hooks" in key and isinstance(value, dict):
            clone.__dict__[key] = type(value)()
    return clone
