"""``lrp-captum text``: every bad argument ends in one clear line, exit code 2, nothing written."""
import json

import pytest
import torch

from lrp_captum.cli import main


@pytest.fixture(scope="module")
def word_cnn_dir(tmp_path_factory):
    """An untrained word-CNN saved as train-demo saves it (argument checks need no training)."""
    from lrp_captum.text.embeddings import load_word_embeddings
    from lrp_captum.text.models import WordCNN
    from lrp_captum.text.model_folders import save_word_cnn

    torch.manual_seed(0)
    model = WordCNN(n_filters=4, embedding_weights=load_word_embeddings())
    out = tmp_path_factory.mktemp("wordcnn")
    save_word_cnn(model, out, {"class_names": ["negative", "positive"]})
    return out


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    """A small random BERT classifier with the MiniLM tokenizer, saved with save_pretrained."""
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    from lrp_captum.text.embeddings import minilm_model_dir

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=32, num_labels=2,
                        max_position_embeddings=64, id2label={0: "bad", 1: "good"},
                        label2id={"bad": 0, "good": 1})
    out = tmp_path_factory.mktemp("bert")
    BertForSequenceClassification(config).save_pretrained(out)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(minilm_model_dir() / "tokenizer.json"), pad_token="[PAD]",
        unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    tokenizer.save_pretrained(out)
    return out


def _run_bad(argv, capsys, tmp_path):
    before = sorted(p.name for p in tmp_path.iterdir())
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse refuses before the command runs
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    # the dialect of every group: "lrp-captum GROUP COMMAND: error: ..."
    assert len(lines) == 1 and lines[0].startswith(f"lrp-captum text {argv[1]}: error: "), err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing left behind
    return lines[0]


@pytest.mark.parametrize("extra, message", [
    (["--composite", "bogus"], "unknown composite 'bogus'; choose from epsilon"),
    (["--composite", "epsilon_gamma_box"], "needs input bounds (z^B rule), which token embeddings do not have"),
    (["--batch-size", "0"], "argument --batch-size: must be a positive integer (1 or more), got '0'"),
    (["--max-length", "2"], "argument --max-length: must be 3 or more, got '2'"),
    (["--stride", "0"], "argument --stride: must be a positive integer (1 or more), got '0'"),
    (["--device", "tpu"], "argument --device: unknown device 'tpu'; use auto, cpu, cuda, cuda:N or mps"),
    (["--target", "neutral"], "--target: unknown target class 'neutral'; classes: negative, "
                              "positive"),
    (["--target", "5"], "--target: target 5 out of range for 2 classes"),
    (["--method", "attention_rollout"], "--method attention_rollout needs a transformer"),
    (["--method", "input_x_gradient", "--composite", "epsilon"],
     "--composite applies to --method lrp only"),
    (["--out", "out.jsonl"], "--out is for batch mode"),
    (["--max-length", "2", "--composite", "bogus"], "argument --max-length: must be 3 or more"),
])
def test_bad_explain_argument_is_one_line_and_exit_2(word_cnn_dir, tmp_path, capsys, extra,
                                                     message):
    html = tmp_path / "page.html"
    line = _run_bad(["text", "explain", "not bad at all", "--model", str(word_cnn_dir),
                     "--html", str(html)] + extra, capsys, tmp_path)
    assert message in line


def test_html_path_that_is_a_folder_is_refused(word_cnn_dir, tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    line = _run_bad(["text", "explain", "good", "--model", str(word_cnn_dir), "--html",
                     str(tmp_path / "taken")], capsys, tmp_path)
    assert "--html" in line and "is a folder" in line


def test_missing_input_file_and_missing_model_are_named(word_cnn_dir, tmp_path, capsys):
    line = _run_bad(["text", "explain", "--input", str(tmp_path / "nope.jsonl"),
                     "--model", str(word_cnn_dir)], capsys, tmp_path)
    assert "argument --input: file" in line and "nope.jsonl does not exist" in line
    line = _run_bad(["text", "explain", "good", "--model", str(tmp_path / "none")],
                    capsys, tmp_path)
    assert "no such folder" in line and "lrp-captum text train-demo" in line


def test_bad_target_in_a_jsonl_line_is_named_before_anything_is_written(word_cnn_dir, tmp_path,
                                                                         capsys):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a", "text": "fine"}\n{"id": "b", "text": "x", "target": "meh"}\n')
    line = _run_bad(["text", "explain", "--input", str(src), "--out",
                     str(tmp_path / "out.jsonl"), "--model", str(word_cnn_dir)],
                    capsys, tmp_path)
    assert "text b: unknown target class 'meh'" in line


@pytest.mark.parametrize("extra, message", [
    (["--arch", "minilm", "--filters", "8"], "--filters does not apply to --arch minilm"),
    (["--train-layers", "2"], "--train-layers does not apply to --arch wordcnn"),
    (["--arch", "minilm", "--train-layers", "7"], "argument --train-layers: must be at most 6, got '7'"),
    (["--n-examples", "0"], "argument --n-examples: must be 10 or more, got '0'"),
    (["--epochs", "0"], "argument --epochs: must be a positive integer (1 or more), got '0'"),
    (["--force"], "--force applies to --arch minilm only"),
    (["--device", "gpu"], "argument --device: unknown device 'gpu'; use auto, cpu, cuda, cuda:N or mps"),
])
def test_bad_train_demo_argument_is_one_line_and_exit_2(tmp_path, capsys, extra, message):
    line = _run_bad(["text", "train-demo", "--out", str(tmp_path / "model")] + extra,
                    capsys, tmp_path)
    assert message in line


def test_train_demo_out_that_is_a_file_or_a_foreign_folder_is_refused(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    line = _run_bad(["text", "train-demo", "--out", str(tmp_path / "file")], capsys, tmp_path)
    assert "argument --out" in line and "is an existing file" in line
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"x")
    line = _run_bad(["text", "train-demo", "--arch", "minilm", "--out", str(foreign)], capsys,
                    tmp_path)
    assert "not a MiniLM demo model folder" in line
    assert [p.name for p in foreign.iterdir()] == ["cat.jpg"]


def test_compare_names_a_misspelt_composite(word_cnn_dir, tmp_path, capsys):
    line = _run_bad(["text", "compare", "--model", str(word_cnn_dir), "--composite",
                     "epsilom"], capsys, tmp_path)
    assert "unknown composite 'epsilom'; choose from" in line


def test_hugging_face_folder_is_explained_from_the_command_line(bert_dir, tmp_path, capsys):
    out = tmp_path / "words.json"
    code = main(["text", "explain", "I didn't like it.", "--model", str(bert_dir),
                 "--method", "input_x_gradient", "--json", str(out)])
    assert code == 0
    assert "explaining" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["words"] == ["I", "didn't", "like", "it", "."]
    assert data["class_names"] == ["bad", "good"] and data["method"] == "input_x_gradient"


def test_attention_method_on_a_hugging_face_folder_runs(bert_dir, capsys):
    code = main(["text", "explain", "great", "--model", str(bert_dir), "--method",
                 "raw_attention"])
    assert code == 0 and "(special token)" in capsys.readouterr().out


def test_a_line_that_is_not_valid_text_is_reported_and_the_others_explained(word_cnn_dir, tmp_path, capsys):
    # a lone surrogate (half an emoji, valid JSON but no character) and bytes that are not UTF-8
    src = tmp_path / "in.jsonl"
    src.write_bytes(b'{"id": "a", "text": "the staff was rude ."}\n'
                    b'{"id": "b", "text": "nice \\ud83d stay"}\n'
                    b'{"id": "c", "text": "ok \xff\xfe bytes"}\n'
                    b'{"id": "d", "text": "lovely view"}\n')
    out = tmp_path / "out.jsonl"
    code = main(["text", "explain", "--input", str(src), "--out", str(out), "--model", str(word_cnn_dir)])
    err = capsys.readouterr().err
    assert code == 1  # done, with lines skipped
    assert f"{src}:2: the text is not valid Unicode: a lone surrogate U+D83D at character 6" in err
    assert f"{src}:3: not UTF-8" in err and "Traceback" not in err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b", 3, "d"]
    assert "words" in rows[0] and "words" in rows[3]
    assert rows[1]["error"].startswith("the text is not valid Unicode") and rows[2]["line"] == 3


def test_the_library_names_a_text_that_is_not_valid_unicode():
    from lrp_captum.text.embeddings import load_tokenizer
    from lrp_captum.text.encoding import encode_texts

    with pytest.raises(ValueError, match="text 1 is not valid Unicode: a lone surrogate U\\+DC00 at character 3"):
        encode_texts(load_tokenizer(), ["fine", "ok\udc00"])
