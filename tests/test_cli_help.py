"""Help texts say what the code does: stated defaults are the real ones (argparse's and the
library's), commands named in help exist, described methods are the ones used."""
import argparse
import inspect
import math
import re

import numpy as np
import pytest

from lrp_captum.cli import build_parser

# "(default 32)", "(default: the model's)", "; default: 4 evenly spaced" -> the stated default
STATED_DEFAULT = re.compile(r"\bdefault:? ([^;()]+?)(?:[;)]|, i\.e\.|$)")
NAMED_COMMAND = re.compile(r"[`']lrp-captum ([^`']+)[`']")


def _parsers(parser, prefix=()):
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, prefix + (name,))


def _helps():
    """(command, action, help text as printed) for every option and positional of every command."""
    out = []
    for prefix, parser in _parsers(build_parser()):
        formatter = parser._get_formatter()
        for action in parser._actions:
            if action.help and action.help != argparse.SUPPRESS:
                out.append((" ".join(prefix), action, formatter._expand_help(action)))
    return out


HELPS = _helps()


def _same(stated: str, default) -> bool:
    if isinstance(default, (list, tuple)):
        default = " ".join(map(str, default))
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        try:
            return math.isclose(float(stated), float(default))
        except ValueError:
            return False
    return stated == str(default)


WITH_DEFAULT = [h for h in HELPS if STATED_DEFAULT.search(h[2])]


@pytest.mark.parametrize("command, action, text", WITH_DEFAULT,
                         ids=[f"{c or 'lrp-captum'}:{a.dest}" for c, a, _ in WITH_DEFAULT])
def test_a_stated_default_is_the_default(command, action, text):
    stated = STATED_DEFAULT.search(text).group(1).strip()
    if action.default is not None:
        assert _same(stated, action.default), f"{command} {action.option_strings}: help says {stated!r}, " \
                                              f"argparse default is {action.default!r}"
    else:
        # None: the library decides, so the help must describe that, not name a number
        with pytest.raises(ValueError):
            float(stated)


def _command_exists(parser, words) -> bool:
    for word in words:
        if word.startswith(("-", "<", "...")):  # options and placeholders end the command
            break
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or word not in subs[0].choices:
            return False
        parser = subs[0].choices[word]
    return True


def test_commands_named_in_help_exist():
    parser = build_parser()
    texts = [t for _, _, t in HELPS] + [p.description or "" for _, p in _parsers(parser)]
    named = {m.group(1) for t in texts for m in NAMED_COMMAND.finditer(t)}
    assert "composites" in named
    assert not _command_exists(parser, ["core", "composites"])  # the reference the help once gave
    for command in named:
        assert _command_exists(parser, command.split()), f"help names `lrp-captum {command}`"


def _slide_explain():
    parser = dict(_parsers(build_parser()))[("slide", "explain")]
    return {a.dest: a for a in parser._actions}


# CLI option -> explain_slide parameter, where the names differ
SLIDE_PARAMETER = {"workers": "num_workers", "slide_mpp": "slide_mpp_override"}


def test_slide_explain_defaults_are_the_library_defaults():
    from lrp_captum.wsi.pipeline import explain_slide

    params = inspect.signature(explain_slide).parameters
    actions = _slide_explain()
    checked = 0
    for dest, action in actions.items():
        name = SLIDE_PARAMETER.get(dest, dest)
        if name not in params or dest == "composite":
            continue
        assert action.default == params[name].default, dest
        checked += 1
    assert checked >= 10
    # --composite passes None when not given; the library then chooses by model
    from lrp_captum.wsi.tile_relevance import DEFAULT_COMPOSITE, TRANSFORMER_COMPOSITE

    stated = STATED_DEFAULT.search(actions["composite"].help).group(1)
    assert params["composite"].default is None
    assert stated == f"{TRANSFORMER_COMPOSITE} for transformers, {DEFAULT_COMPOSITE} otherwise"


def test_tissue_threshold_help_names_the_method_the_code_uses():
    from skimage.data import immunohistochemistry
    from skimage.filters import threshold_otsu, threshold_triangle

    from lrp_captum.wsi.tissue import MAX_SATURATION_THRESHOLD, tissue_mask_from_rgb

    help_text = _slide_explain()["tissue_threshold"].help
    rgb = np.pad(immunohistochemistry()[::8, ::8], ((40, 40), (40, 40), (0, 0)), constant_values=243)
    f = rgb.astype(np.float32)
    sat = (f.max(-1) - f.min(-1)) / f.max(-1)
    low = inspect.signature(tissue_mask_from_rgb).parameters["min_saturation"].default
    triangle = min(max(float(threshold_triangle(sat)), low), MAX_SATURATION_THRESHOLD)
    assert tissue_mask_from_rgb(rgb)[1] == pytest.approx(triangle)
    assert not math.isclose(triangle, min(max(float(threshold_otsu(sat)), low), MAX_SATURATION_THRESHOLD))
    assert "triangle" in help_text and "Otsu" not in help_text
    assert f"{low:g}..{MAX_SATURATION_THRESHOLD:g}" in help_text


def test_output_downsample_help_matches_the_default_rule():
    from lrp_captum.wsi.pipeline import default_output_downsample

    assert "about 16 px per tile" in _slide_explain()["output_downsample"].help
    for side in (64, 128, 224, 256, 512, 1024, 2048):
        assert 16 / math.sqrt(2) <= side / default_output_downsample(side) <= 16 * math.sqrt(2)


def test_captum_methods_listed_in_help_all_work():
    from lrp_captum.evaluation.ranking import CAPTUM_METHODS, captum_explainers

    parser = dict(_parsers(build_parser()))[("evaluate", "rank")]
    text = next(a.help for a in parser._actions if a.dest == "captum")
    assert all(m in text for m in CAPTUM_METHODS)
    assert set(captum_explainers(CAPTUM_METHODS)) == set(CAPTUM_METHODS)
