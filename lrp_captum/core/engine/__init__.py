"""The engine: compiles rule declarations and runs attributions.

Its modules, each importing only those below it (pyproject.toml's import-linter contract
"engine")::

    call            running one attribution call on a plan
    session | conservation | rule_table
                    the per-call hooks, frozen parameters, probes and op mode; the check that
                    relevance adds up; the layer → rule table with each layer's path
    planning        AttributionPlan (canonized model, compiled rules, fused graph) and its cache
    compiler        CompiledRule: one rule on one layer, from the table of kinds
    declaration_kinds
                    the table: each kind of declaration's behaviour on every path
    functional | hook_path | fused
                    rules on functions (a TorchFunctionMode) | a rule on a layer's output |
                    one autograd function per layer, ReLU folded in
    reference       relevance in -> relevance out, term by term (Captum's path)
    constant_scale  normalisations with their scale held constant
    autograd | output_modes
                    the autograd functions that put a rule into a backward pass | the
                    relevance a call starts from
    numerics | scores
                    stabilise and divide | the tensor of scores in a model's output

Below the engine: the declarations (rules, composites, canonizers) and what they share with
it (:mod:`lrp_captum.core.op_families`, :mod:`lrp_captum.core.linear_ops`). See
docs/architecture.md. Nothing is imported here, so that importing a submodule stays cheap and
free of cycles.
"""
