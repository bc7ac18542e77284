"""Long texts: overlapping windows and how their relevance combines."""
import pytest
import torch

from lrp_captum.text.windows import plan_windows, special_ends


def test_a_text_that_fits_is_one_window():
    plan = plan_windows(10, 1, 1, max_length=10)
    assert plan.spans == ((1, 9),) and plan.describe() == ""


def test_windows_cover_every_token_overlap_and_keep_the_special_tokens():
    plan = plan_windows(1002, 1, 1, max_length=512)
    assert plan.stride == 255
    assert plan.spans[0][0] == 1 and plan.spans[-1][1] == 1001
    assert all(b - a == 510 for a, b in plan.spans)
    assert all(a2 < b1 for (_, b1), (a2, _) in zip(plan.spans, plan.spans[1:]))
    ids = list(range(1002))
    windows = plan.window_ids(ids)
    assert all(len(w) == 512 and w[0] == 0 and w[-1] == 1001 for w in windows)


def test_relevance_is_summed_over_windows_and_divided_by_their_number():
    # [CLS] a b c d e [SEP], windows of 3 text tokens with stride 1: a..c, b..d, c..e
    plan = plan_windows(7, 1, 1, max_length=5, stride=1)
    assert plan.spans == ((1, 4), (2, 5), (3, 6))
    rel = [torch.tensor([1.0, 2.0, 3.0, 4.0, 10.0]),   # CLS a b c SEP
           torch.tensor([1.0, 5.0, 6.0, 7.0, 10.0]),   # CLS b c d SEP
           torch.tensor([1.0, 8.0, 9.0, 0.0, 10.0])]   # CLS c d e SEP
    combined = plan.combine_relevance(rel)
    expected = torch.tensor([3.0, 2.0, 3.0 + 5.0, 4.0 + 6.0 + 8.0, 7.0 + 9.0, 0.0, 30.0]) / 3
    assert torch.allclose(combined, expected)
    assert combined.sum() == pytest.approx(sum(float(r.sum()) for r in rel) / 3)


def test_describe_says_how_the_windows_combine():
    text = plan_windows(1000, 1, 1, max_length=128).describe()
    assert "overlapping windows of 128 tokens" in text
    assert "mean of the window logits" in text and "divided by the number of windows" in text


@pytest.mark.parametrize("max_length, stride, message", [
    (2, None, "no room for text"), (10, 0, "stride must be between 1 and 8"),
    (10, 9, "stride must be between 1 and 8")])
def test_impossible_windows_are_refused(max_length, stride, message):
    with pytest.raises(ValueError, match=message):
        plan_windows(100, 1, 1, max_length=max_length, stride=stride)


def test_special_ends_counts_leading_and_trailing_special_tokens():
    assert special_ends([None, 0, 0, 1, None]) == (1, 1)
    assert special_ends([None, None, 0, None, None, None]) == (2, 3)
    assert special_ends([None, None]) == (2, 0)
