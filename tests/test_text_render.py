"""HTML and JSON rendering of word relevance."""
import json

import pytest

from lrp_captum.text.explain import TextExplanation
from lrp_captum.text.render import (NEGATIVE_RGB, POSITIVE_RGB, contrast_ratio,
                                    explanation_html, explanations_html, explanations_json,
                                    relevance_color, write_html)


def _explanation(**kw):
    text = "not <b>good</b> & fine"
    base = dict(text=text, words=["not", "<", "b", ">", "good", "&", "fine"],
                word_spans=[(0, 3), (4, 5), (5, 6), (6, 7), (7, 11), (16, 17), (18, 22)],
                word_relevance=[2.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.5],
                tokens=[], token_ids=[], token_relevance=[], token_word=[],
                special_tokens=[{"token": "[CLS]", "position": 0, "relevance": 0.1}],
                target=0, target_name="negative", predicted=0, predicted_name="negative",
                probabilities=[0.9, 0.1], output_relevance=1.5, relevance_sum=1.6)
    base.update(kw)
    return TextExplanation(**base)


def _hex(rgb):
    return "#%02x%02x%02x" % rgb


def test_largest_positive_is_full_red_and_largest_negative_full_blue():
    assert relevance_color(3.0, 3.0)[0] == _hex(POSITIVE_RGB)
    assert relevance_color(-3.0, 3.0)[0] == _hex(NEGATIVE_RGB)
    assert relevance_color(0.0, 3.0)[0] == "#ffffff"


def test_colour_intensity_scales_with_relevance_over_max():
    half = relevance_color(1.0, 2.0)[0]
    r, g, b = (int(half[i:i + 2], 16) for i in (1, 3, 5))
    expected = [round(255 + (c - 255) * 0.5) for c in POSITIVE_RGB]
    assert [r, g, b] == expected


@pytest.mark.parametrize("value", [v / 50 for v in range(-50, 51)])
def test_text_on_every_highlight_meets_wcag_aa_contrast(value):
    background, foreground = relevance_color(value, 1.0)
    assert contrast_ratio(foreground, background) >= 4.5


def test_html_scales_by_the_largest_absolute_word_relevance_of_the_text():
    page = explanation_html(_explanation())
    assert f"background:{_hex(POSITIVE_RGB)}" in page  # "not" has the max |R| = 2
    assert f"background:{relevance_color(-1.0, 2.0)[0]}" in page
    assert "colour scale of this text only: ±2 = full colour" in page


def test_html_escapes_the_text_and_keeps_it_in_order():
    page = explanation_html(_explanation())
    assert "<b>" not in page.replace("<b>negative</b>", "")
    assert "&lt;" in page and "&amp;" in page
    assert page.index(">not<") < page.index(">good<") < page.index(">fine<")


def test_sign_is_shown_without_colour_and_in_the_accessible_label():
    page = explanation_html(_explanation())
    assert 'class="w pos"' in page and 'class="w neg"' in page
    assert 'aria-label="not: relevance +2.0000 (for negative)"' in page
    assert 'aria-label="good: relevance -1.0000 (against negative)"' in page


def test_page_has_a_legend_and_one_block_per_text():
    page = explanations_html([_explanation(), _explanation(words=[], word_spans=[],
                                                           word_relevance=[])])
    assert page.startswith("<!DOCTYPE html>") and 'class="lrp-legend"' in page
    assert page.count('class="lrp-item"') == 2
    assert "(no words)" in page


def test_warnings_are_visible_in_html():
    page = explanation_html(_explanation(warnings=["explained over 3 overlapping windows"]))
    assert 'role="note">⚠ explained over 3 overlapping windows' in page


def test_json_round_trips_every_field():
    e = _explanation()
    data = json.loads(explanations_json(e))
    assert data["words"] == e.words and data["word_relevance"] == e.word_relevance
    assert data["word_spans"][4] == [7, 11]
    assert TextExplanation(**{**data, "word_spans": [tuple(s) for s in data["word_spans"]]}) == e
    assert isinstance(json.loads(explanations_json([e, e])), list)


def test_write_html_creates_the_file(tmp_path):
    path = write_html([_explanation()], tmp_path / "sub" / "page.html", title="Demo")
    assert "<title>Demo</title>" in path.read_text(encoding="utf-8")


def test_probabilities_are_printed_with_their_class_names():
    page = explanation_html(_explanation(class_names=["negative", "positive"]))
    assert "negative 0.90" in page and "positive 0.10" in page


def test_per_text_colour_scale_says_it_is_not_shared_between_texts():
    a = _explanation()
    b = _explanation(word_relevance=[r / 10 for r in a.word_relevance])
    page = explanations_html([a, b])
    # each block names its own scale and says colours cannot be compared across texts
    assert page.count("colour scale of this text only") == 2
    assert "±2 " in page and "±0.2 " in page
    assert "not comparable between texts" in page


def test_shared_colour_scale_uses_the_largest_relevance_of_all_texts_and_says_so():
    a = _explanation()
    b = _explanation(word_relevance=[r / 10 for r in a.word_relevance])
    page = explanations_html([a, b], scale="shared")
    assert "colour scale of this text only" not in page
    assert "shared by all 2 texts" in page
    # "not" in the second text has 0.2 of the shared maximum 2: a pale red, not full red
    assert f"background:{relevance_color(0.2, 2.0)[0]}" in page
    assert page.count(f"background:{_hex(POSITIVE_RGB)}") == 1
