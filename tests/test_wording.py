"""Counts in what the package prints agree with their number: "1 focus", "2 foci", "1 slide"."""
import contextlib
import io

import pytest

from lrp_captum import cli
from lrp_captum.wording import counted


@pytest.mark.parametrize("n, noun, text", [(0, "tile", "0 tiles"), (1, "tile", "1 tile"), (2, "tile", "2 tiles"),
                                           (1, "focus", "1 focus"), (3, "focus", "3 foci"),
                                           (1, "class", "1 class"), (2, "class", "2 classes"),
                                           (12345, "slide", "12,345 slides")])
def test_a_count_takes_the_noun_its_number_asks_for(n, noun, text):
    assert counted(n, noun) == text


def test_cohort_sample_says_1_focus_not_1_foci(tmp_path):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        # seed 2: the first slide has two foci, the second one
        rc = cli.main(["slide", "cohort-sample", "--n", "2", "--size", "1024", "--seed", "2",
                       "--out", str(tmp_path / "c")])
    assert rc == 0
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("2 foci)") and lines[1].endswith("1 focus)"), lines
