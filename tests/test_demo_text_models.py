"""``make demo`` prepares the text page with the transformer as its default model and reports its
accuracy on the hand-written reviews of tests/data beside the generated held-out split."""
from pathlib import Path

from lrp_captum.cli import build_parser
from lrp_captum.cli.demo import text_steps

ROOT = Path(__file__).resolve().parents[1]


def test_the_demo_trains_the_minilm_and_scores_it_on_the_hand_written_reviews(tmp_path):
    steps = text_steps(tmp_path)
    minilm = next(argv for argv in steps if "--arch" in argv and argv[argv.index("--arch") + 1] == "minilm")
    assert minilm[:2] == ["text", "train-demo"]
    assert Path(minilm[minilm.index("--out") + 1]) == tmp_path / "text_minilm"
    scored = minilm[minilm.index("--evaluate-on") + 1:]
    assert sorted(Path(p).name for p in scored) == ["reviews_independent.jsonl", "reviews_independent_2.jsonl"]
    assert all((ROOT / "tests" / "data" / Path(p).name).samefile(p) for p in scored)
    for argv in steps:  # each is a command the CLI takes
        build_parser().parse_args(argv)


def test_the_app_gets_the_folder_of_both_text_models(tmp_path):
    from lrp_captum.cli.demo import text_model_folder

    assert text_model_folder(tmp_path) == tmp_path
    outs = {Path(argv[argv.index("--out") + 1]) for argv in text_steps(tmp_path)}
    assert outs == {tmp_path / "text_minilm", tmp_path / "text_model"}
