"""The engine: compiles rule declarations and runs attributions.

Layers of the package, each depending only on those above it::

    rules.py        declarations: what each rule does, as data (Terms, Pass)
    engine/         compiles a declaration into the paths that run it
      reference     term-by-term evaluation (Captum's path, the readable definition)
      fused         one autograd function per layer (canonized models), ReLU folded in
      compiler      CompiledRule: one rule on one layer -> fused / hook path
      session       plans (canonized model, compiled rules, fused graph) and one call
    attribution.py  LRP, LayerLRP: Captum's API over the engine
    wsi/ eeg/ text/ adapters; cli/ and apps/ on top

See docs/architecture.md. Nothing is imported here, so that importing a submodule stays cheap
and free of cycles.
"""
