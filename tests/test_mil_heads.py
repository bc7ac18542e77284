"""MIL heads: plain PyTorch aggregators, saved and loaded safely with the encoder they belong to."""
import pytest
import torch

from lrp_captum.wsi.mil.encoders import EncoderMismatchError, build_encoder
from lrp_captum.wsi.mil.head_files import load_head, save_head
from lrp_captum.wsi.mil.heads import GatedAttentionMIL, TransformerMIL, make_head
from lrp_captum.wsi.mil.training import embedding_standardisation, fit_head
from test_mil_support import tiny, tiny_spec  # noqa: F401 -- fixture


@pytest.fixture(params=["abmil", "transmil"])
def head(request):
    torch.manual_seed(0)
    return make_head(request.param, in_dim=16, num_classes=2).eval()


def test_heads_map_a_bag_to_slide_logits(head):
    assert head(torch.randn(1, 37, 16)).shape == (1, 2)
    assert head(torch.randn(3, 5, 16)).shape == (3, 2)


def test_heads_do_not_depend_on_the_order_of_the_tiles(head):
    bag = torch.randn(1, 40, 16)
    with torch.no_grad():
        torch.testing.assert_close(head(bag), head(bag[:, torch.randperm(40)]), rtol=1e-5, atol=1e-6)


def test_abmil_attention_is_a_distribution_over_the_tiles():
    head = GatedAttentionMIL(16).eval()
    weights, values = head.attention_and_values(torch.randn(1, 30, 16))
    assert weights.shape == (1, 1, 30) and values.shape == (1, 1, 30, 64)
    torch.testing.assert_close(weights.sum(-1), torch.ones(1, 1))
    assert (weights > 0).all()


def test_transformer_class_token_attention_covers_the_tiles_and_itself():
    head = TransformerMIL(16, heads=4).eval()
    weights, values = head.attention_and_values(torch.randn(1, 30, 16))
    assert weights.shape == (1, 4, 30) and values.shape == (1, 4, 30, 16)
    assert ((weights.sum(-1) > 0) & (weights.sum(-1) < 1)).all()


def test_a_saved_head_reads_embeddings_standardised_as_in_training(tiny, tmp_path):
    torch.manual_seed(1)
    bags = [torch.randn(20, 16) * 3 + 1, torch.randn(30, 16) * 2 - 4]
    mean, std = embedding_standardisation(bags)
    every = torch.cat(bags)
    torch.testing.assert_close(mean, every.mean(0))
    torch.testing.assert_close(((every - mean) / std).std(0), torch.ones(16))
    head = GatedAttentionMIL(16).eval()
    loaded = load_head(save_head(head, tmp_path / "h", name="abmil", classes=["a", "b"], encoder=tiny,
                                 standardisation=(mean, std)))
    torch.testing.assert_close(loaded.bag_input(bags[0].numpy()), (bags[0] - mean) / std)


def test_training_separates_bags_that_hide_a_few_witness_tiles():
    gen = torch.Generator().manual_seed(0)
    bags, labels = [], []
    for i in range(20):
        bag = torch.randn(40, 8, generator=gen)
        if i % 2:
            bag[:4, 2] += 3.0
        bags.append(bag)
        labels.append(i % 2)
    head = make_head("abmil", 8)
    losses = fit_head(head, bags, labels, epochs=30, lr=2e-3, subsample=1.0)
    with torch.no_grad():
        pred = [int(head(b.unsqueeze(0)).argmax()) for b in bags]
    assert losses[-1] < 0.5 * losses[0] and pred == labels


def test_a_saved_head_loads_back_with_the_same_outputs(head, tiny, tmp_path):
    name = "abmil" if isinstance(head, GatedAttentionMIL) else "transmil"
    path = save_head(head, tmp_path / "head", name=name, classes=["negative", "lesion"], encoder=tiny)
    loaded = load_head(path)
    bag = torch.randn(1, 12, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(bag), head(bag))
    assert loaded.encoder_identity == tiny.identity and loaded.in_dim == 16 and loaded.path == str(path)


def test_a_head_refuses_an_encoder_it_was_not_trained_with(head, tiny, tmp_path):
    path = save_head(head, tmp_path / "head", name="abmil" if isinstance(head, GatedAttentionMIL) else "transmil",
                     classes=["negative", "lesion"], encoder=tiny)
    loaded = load_head(path)
    loaded.check_encoder(tiny)
    with pytest.raises(EncoderMismatchError, match="trained on embeddings of encoder 'test_mil_support:tiny_encoder'"):
        loaded.check_encoder(build_encoder(tiny_spec(seed=1)))  # same size, other weights
    with pytest.raises(EncoderMismatchError, match="gives 8-dimensional embeddings but the MIL head expects 16"):
        loaded.check_encoder(build_encoder(tiny_spec(dim=8)))


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_head_weights_are_loaded_with_weights_only(head, tiny, tmp_path, capsys):
    name = "abmil" if isinstance(head, GatedAttentionMIL) else "transmil"
    path = save_head(head, tmp_path / "head", name=name, classes=["a", "b"], encoder=tiny)
    torch.save({"payload": _Payload()}, tmp_path / "head.pt")
    with pytest.raises(ValueError, match=r"head\.pt of MIL head .* are not a plain state_dict"):
        load_head(path)
    assert "this must never run" not in capsys.readouterr().out


def test_a_file_that_is_not_a_head_config_is_refused(tmp_path):
    (tmp_path / "x.json").write_text('{"architecture": "demo_cnn"}')
    with pytest.raises(ValueError, match=r"x\.json is not a MIL head config"):
        load_head(tmp_path / "x.json")
    with pytest.raises(FileNotFoundError, match="train one with `lrp-captum slide train-mil`"):
        load_head(tmp_path / "missing.json")


def test_encoder_weights_are_loaded_with_weights_only(tmp_path, capsys):
    torch.save({"payload": _Payload()}, tmp_path / "enc.pt")
    with pytest.raises(ValueError, match=r"encoder weights .*enc\.pt are not a plain state_dict"):
        build_encoder(dict(tiny_spec(), weights=str(tmp_path / "enc.pt")))
    assert "this must never run" not in capsys.readouterr().out
