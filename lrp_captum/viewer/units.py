"""The units of the numbers the app shows, named the same way on every page and in the viewer.

A slide result's map holds the mean input relevance per model-input pixel (summed over RGB) of
the explained output (``manifest["relevance_unit"]``, written by the WSI pipeline); a tile's
``relevance_sum`` is the sum over its model-input pixels, its share of that output. The output
is a logit unless the run's ``output_mode`` says otherwise.
"""
from __future__ import annotations

OUTPUT_UNITS = {"logit": "logit units", "probability": "probability units",
                "contrastive": "units of the logit difference"}


def output_units(output_mode) -> str:
    """``"logit units"`` for a run's ``output_mode`` (unknown modes: ``"units of the explained output"``)."""
    return OUTPUT_UNITS.get(str(output_mode), "units of the explained output")


def pixel_relevance_unit(output_mode="logit") -> str:
    """What a relevance map's value is: ``"relevance per model-input pixel, logit units"``."""
    return f"relevance per model-input pixel, {output_units(output_mode)}"


def tile_sum_unit(output_mode="logit") -> str:
    """What a tile's ``relevance_sum`` is: ``"tile sum, logit units"``."""
    return f"tile sum, {output_units(output_mode)}"


def probability_label(class_name, value: float) -> str:
    """``"p(tumour)=0.97"``: a probability always names its class (``class_name`` as given: escape it
    for where it is shown)."""
    return f"p({class_name})={value:.2f}"
