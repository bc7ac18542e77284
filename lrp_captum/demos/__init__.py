"""Synthetic data, demo models and their trainers, and benchmark helpers.

What ``make demo``, the documentation and the benchmarks run on: the sample slide built from
scikit-image's IHC image, the demo tile models, a synthetic MIL cohort, simulated EEG, generated
review sentences, planted-pattern images. Not the library's API: no library module imports from
it, only the command line's demo commands (``make demo`` is :mod:`lrp_captum.cli.demo`), the
tests and the benchmarks.
"""
