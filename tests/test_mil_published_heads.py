"""The MIL heads users bring (ABMIL, CLAM-SB/-MB, TransMIL, xMIL's AttnMIL): their checkpoints in each
layout load strictly, bad checkpoints are refused with a clear message, and xMIL-LRP shares the
slide logit among the tiles."""
import argparse
import io
import json
import pathlib
import zipfile

import numpy as np
import pytest
import torch

from lrp_captum import LRP
from lrp_captum.core.composites import xmil
from lrp_captum.wsi.mil.evidence import tile_evidence
from lrp_captum.wsi.mil.heads import GatedAttentionMIL
from lrp_captum.wsi.mil.published_heads import (ABMIL, CLAM, NystromAttention, TransMIL, XMILAttentionMIL,
                                                 load_published_head, load_xmil_head)
from test_mil_xmil_reference import reference_abmil_xmil

D = 24


def _randomised(model, seed=0):
    """The model with every parameter moved off its initialisation (biases non-zero), in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    return model.eval()


def _bag(n=30, d=D, seed=1):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def _logits(model, bag):
    with torch.no_grad():
        return model(bag.unsqueeze(0))[0]


def _shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


# --- parameter layouts: the key names and shapes of the public code ----------------------------

def test_clam_sb_has_clams_keys_and_shapes():
    expected = {"attention_net.0.weight": (512, 1024), "attention_net.0.bias": (512,),
                "attention_net.3.attention_a.0.weight": (256, 512), "attention_net.3.attention_a.0.bias": (256,),
                "attention_net.3.attention_b.0.weight": (256, 512), "attention_net.3.attention_b.0.bias": (256,),
                "attention_net.3.attention_c.weight": (1, 256), "attention_net.3.attention_c.bias": (1,),
                "classifiers.weight": (2, 512), "classifiers.bias": (2,),
                "instance_classifiers.0.weight": (2, 512), "instance_classifiers.0.bias": (2,),
                "instance_classifiers.1.weight": (2, 512), "instance_classifiers.1.bias": (2,)}
    assert _shapes(CLAM(1024, 2)) == expected


def test_clam_mb_ungated_without_dropout_has_clams_old_index_layout():
    shapes = _shapes(CLAM(1024, 3, multi_branch=True, gated=False, fc_dropout=False))
    assert shapes["attention_net.2.module.0.weight"] == (256, 512)
    assert shapes["attention_net.2.module.2.weight"] == (3, 256)
    assert shapes["classifiers.2.weight"] == (1, 512)


def test_transmil_has_the_authors_keys_and_shapes():
    expected = {"pos_layer.proj.weight": (512, 1, 7, 7), "pos_layer.proj.bias": (512,),
                "pos_layer.proj1.weight": (512, 1, 5, 5), "pos_layer.proj1.bias": (512,),
                "pos_layer.proj2.weight": (512, 1, 3, 3), "pos_layer.proj2.bias": (512,),
                "_fc1.0.weight": (512, 1024), "_fc1.0.bias": (512,), "cls_token": (1, 1, 512),
                "norm.weight": (512,), "norm.bias": (512,), "_fc2.weight": (2, 512), "_fc2.bias": (2,)}
    for layer in ("layer1", "layer2"):
        expected.update({f"{layer}.norm.weight": (512,), f"{layer}.norm.bias": (512,),
                         f"{layer}.attn.to_qkv.weight": (1536, 512), f"{layer}.attn.to_out.0.weight": (512, 512),
                         f"{layer}.attn.to_out.0.bias": (512,), f"{layer}.attn.res_conv.weight": (8, 1, 33, 1)})
    assert _shapes(TransMIL(1024, 2)) == expected


def test_xmil_attnmil_has_the_repositorys_keys_and_no_head_bias_with_no_bias():
    assert _shapes(XMILAttentionMIL(768, 256, 128, 2, bias=False)) == {
        "linear_layers.0.0.weight": (256, 768), "linear_layers.0.0.bias": (256,),
        "attention.0.weight": (128, 256), "attention.0.bias": (128,), "attention.2.weight": (1, 128),
        "attention.2.bias": (1,), "linear_head.weight": (2, 256)}


def test_abmil_has_mil_labs_keys_gated_and_ungated():
    gated = _shapes(ABMIL(1024, 512, 384, 2))
    assert {k for k in gated if "global_attn" in k} == {
        f"global_attn.attention_{b}.{k}" for b, k in (("a", "0.weight"), ("a", "0.bias"), ("b", "0.weight"),
                                                        ("b", "0.bias"), ("c", "weight"), ("c", "bias"))}
    assert gated["patch_embed.0.weight"] == (512, 1024) and gated["classifier.weight"] == (2, 512)
    ungated = _shapes(ABMIL(1024, 512, 384, 2, gated=False))
    assert ungated["global_attn.module.0.weight"] == (384, 512) and ungated["global_attn.module.3.weight"] == (1, 384)


# --- loading each layout ------------------------------------------------------------------------

HEADS = {
    "abmil": lambda: ABMIL(D, 16, 8, 3),
    "abmil_ungated_two_heads": lambda: ABMIL(D, 16, 8, 3, num_heads=2, gated=False, linear_indices=(0, 3)),
    "clam_sb": lambda: CLAM(D, 3, hidden=16, attn_dim=8),
    "clam_sb_ungated_branch_dropout": lambda: CLAM(D, 2, gated=False, hidden=16, attn_dim=8, branch_dropout=True),
    "clam_mb": lambda: CLAM(D, 3, multi_branch=True, hidden=16, attn_dim=12),
    "transmil": lambda: TransMIL(D, 2, dim=16, heads=8),
}


def _head(name):
    """The head called ``name`` in :data:`HEADS`, the same on every run (whatever ran before)."""
    torch.manual_seed(0)
    return _randomised(HEADS[name]())


def _arch(name):
    return name.split("_ungated")[0]


@pytest.mark.parametrize("name", sorted(HEADS))
def test_a_bare_state_dict_loads_strictly_and_gives_the_same_logits(tmp_path, name):
    model = _head(name)
    torch.save(model.state_dict(), tmp_path / "s_0_checkpoint.pt")
    head = load_published_head(tmp_path / "s_0_checkpoint.pt", _arch(name))
    assert head.in_dim == D and head.num_classes == model.num_classes
    assert not head.model.training and not any(p.requires_grad for p in head.model.parameters())
    torch.testing.assert_close(_logits(head.model, _bag()), _logits(model, _bag()), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["clam_sb", "clam_mb"])
def test_clams_old_layout_without_dropout_loads(tmp_path, name):
    model = _head(name)
    old = {k.replace("attention_net.3.", "attention_net.2."): v for k, v in model.state_dict().items()}
    torch.save(old, tmp_path / "old.pt")
    head = load_published_head(tmp_path / "old.pt", name)
    assert head.options["fc_dropout"] is False
    torch.testing.assert_close(_logits(head.model, _bag()), _logits(model, _bag()), rtol=0, atol=0)


def test_a_multi_gpu_clam_checkpoint_loads_without_module_prefixes_and_instance_loss_buffers(tmp_path):
    model = _head("clam_sb")
    state = {"module." + k.replace("attention_net.", "attention_net.module."): v for k, v in model.state_dict().items()}
    state["module.instance_loss_fn.weight"] = torch.ones(2)
    torch.save(state, tmp_path / "dp.pt")
    head = load_published_head(tmp_path / "dp.pt", "clam_sb")
    torch.testing.assert_close(_logits(head.model, _bag()), _logits(model, _bag()), rtol=0, atol=0)


def test_a_checkpoint_with_numpy_scalars_next_to_the_state_dict_loads(tmp_path):
    model = _head("abmil")
    torch.save({"model_state_dict": model.state_dict(), "epoch": 7, "auc_val": np.float64(0.93),
                "loss_val": np.float32(0.4), "best_epoch": np.int64(5)}, tmp_path / "best.pt")
    head = load_published_head(tmp_path / "best.pt", "abmil")
    torch.testing.assert_close(_logits(head.model, _bag()), _logits(model, _bag()), rtol=0, atol=0)


def test_a_pickled_full_module_is_refused_naming_the_class(tmp_path):
    torch.save(_head("clam_sb"), tmp_path / "model.pt")
    with pytest.raises(ValueError, match=r"model\.pt holds more than tensors, numbers and numpy scalars.*"
                                         r"it pickles lrp_captum\.wsi\.mil\.published_heads\.CLAM.*Re-save only the "
                                         r"state_dict"):
        load_published_head(tmp_path / "model.pt", "clam_sb")


def test_numpy_arrays_next_to_the_weights_are_refused(tmp_path):
    model = _head("abmil")
    torch.save({"model_state_dict": model.state_dict(), "aucs": np.zeros(3)}, tmp_path / "best.pt")
    with pytest.raises(ValueError, match=r"it pickles numpy\._core\.multiarray\._reconstruct"):
        load_published_head(tmp_path / "best.pt", "abmil")


def test_a_lightning_transmil_checkpoint_loads_without_its_model_prefix(tmp_path):
    model = _head("transmil")
    torch.save({"state_dict": {"model." + k: v for k, v in model.state_dict().items()}, "epoch": 1,
                "hyper_parameters": {"lr": 2e-4, "n_classes": 2}}, tmp_path / "epoch=01.ckpt")
    head = load_published_head(tmp_path / "epoch=01.ckpt", "transmil")
    torch.testing.assert_close(_logits(head.model, _bag()), _logits(model, _bag()), rtol=0, atol=0)


def test_a_lightning_checkpoint_with_object_hyper_parameters_is_refused_with_what_to_do(tmp_path):
    model = _head("transmil")
    torch.save({"state_dict": {"model." + k: v for k, v in model.state_dict().items()},
                "hyper_parameters": {"log_path": pathlib.PurePosixPath("/logs")}}, tmp_path / "last.ckpt")
    with pytest.raises(ValueError, match=r"last\.ckpt .*a Lightning checkpoint whose hyper_parameters hold objects.*"
                                         r"pathlib.*Re-save only the state_dict"):
        load_published_head(tmp_path / "last.ckpt", "transmil")


def test_a_checkpoint_of_another_architecture_is_refused_naming_the_missing_parameter(tmp_path):
    torch.save(_head("abmil").state_dict(), tmp_path / "abmil.pt")
    with pytest.raises(ValueError, match=r"abmil\.pt is not a transmil checkpoint: no parameter '_fc1\.0\.weight'"):
        load_published_head(tmp_path / "abmil.pt", "transmil")


def test_a_clam_sb_checkpoint_named_clam_mb_says_which_it_is(tmp_path):
    torch.save(_head("clam_sb").state_dict(), tmp_path / "sb.pt")
    with pytest.raises(ValueError, match=r"sb\.pt is a CLAM-SB checkpoint .*load it as clam_sb"):
        load_published_head(tmp_path / "sb.pt", "clam_mb")


def test_an_unknown_architecture_lists_the_known_ones(tmp_path):
    torch.save(_head("abmil").state_dict(), tmp_path / "h.pt")
    with pytest.raises(ValueError, match=r"unknown MIL head architecture 'dsmil'; choose from abmil, clam_sb"):
        load_published_head(tmp_path / "h.pt", "dsmil")


def test_a_users_own_module_loads_through_its_factory(tmp_path, monkeypatch):
    (tmp_path / "my_heads.py").write_text(
        "from lrp_captum.wsi.mil.heads import GatedAttentionMIL\n"
        "def build(in_dim, hidden):\n    return GatedAttentionMIL(in_dim, 2, hidden=hidden, attention_dim=4)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    model = _randomised(GatedAttentionMIL(D, 2, hidden=8, attention_dim=4))
    torch.save({"model_state_dict": model.state_dict(), "auc_val": np.float64(0.8)}, tmp_path / "w.pt")
    head = load_published_head(tmp_path / "w.pt", "my_heads:build", in_dim=D, hidden=8)
    assert head.in_dim == D and head.num_classes == 2
    torch.testing.assert_close(_logits(head.model, _bag()), _logits(model, _bag()), rtol=0, atol=0)


# --- xMIL run folders ---------------------------------------------------------------------------

XMIL_ARGS = dict(aggregation_model="attention_mil", input_dim=D, head_dim=2, features_dim=16, inner_attention_dim=8,
                 dropout=None, dropout_strategy="features", num_layers=2, n_out_layers=1, no_bias=True,
                 head_type="classification", lr=1e-4)


def _xmil_run(folder, model, args=XMIL_ARGS, extra=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "args.json").write_text(json.dumps(args))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    model(_bag().unsqueeze(0)).sum().backward()
    optimizer.step()
    model.zero_grad()
    torch.save(dict({"model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict(),
                     "epoch": 12, "loss_val": np.float64(0.31), "auc_val": {"auc_target_0": np.float64(0.91)}},
                    **(extra or {})), folder / "best_model.pt")
    return folder


def _xmil_model():
    return _randomised(XMILAttentionMIL(D, 16, 8, 2, num_layers=2, n_out_layers=1, bias=False)).requires_grad_(True)


def test_an_xmil_run_folder_loads_from_args_json_and_best_model(tmp_path):
    model = _xmil_model()
    head = load_published_head(_xmil_run(tmp_path / "2024_05_01__12_00_00", model), "xmil")
    assert head.options == dict(input_dim=D, features_dim=16, inner_attention_dim=8, head_dim=2, num_layers=2,
                                n_out_layers=1, bias=False)
    torch.testing.assert_close(_logits(head.model, _bag()), _logits(model.eval(), _bag()), rtol=0, atol=0)


def test_an_xmil_checkpoint_pickled_under_numpy_1_loads(tmp_path):
    run = _xmil_run(tmp_path / "run", _xmil_model())
    # numpy 1.x pickles its scalars as numpy.core.multiarray.scalar, a name numpy 2 no longer has
    src = zipfile.ZipFile(run / "best_model.pt")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            dst.writestr(info, data)
    (run / "best_model.pt").write_bytes(buf.getvalue())
    assert load_xmil_head(run).num_classes == 2


def test_an_xmil_checkpoint_holding_a_pickled_object_is_refused(tmp_path):
    run = _xmil_run(tmp_path / "run", _xmil_model(), extra={"args": argparse.Namespace(lr=1e-4)})
    with pytest.raises(ValueError, match=r"best_model\.pt holds more than tensors.*it pickles argparse\.Namespace"):
        load_xmil_head(run)


def test_an_xmil_transmil_run_is_refused_with_what_loads(tmp_path):
    run = _xmil_run(tmp_path / "run", _xmil_model(), args=dict(XMIL_ARGS, aggregation_model="transmil"))
    with pytest.raises(ValueError, match=r"aggregation_model 'transmil'; only xMIL's 'attention_mil'"):
        load_xmil_head(run)


# --- xMIL-LRP on each head ----------------------------------------------------------------------

def _gated_abmil_copy(clam: CLAM) -> GatedAttentionMIL:
    """CLAM-SB's weights in the project's gated attention-MIL (Ilse et al. 2018), written separately."""
    net = clam.attention_net
    twin = GatedAttentionMIL(net[0].in_features, clam.num_classes, hidden=net[0].out_features,
                             attention_dim=net[-1].attention_c.in_features).double().eval()
    pairs = [(twin.project[0], net[0]), (twin.attention_v, net[-1].attention_a[0]),
             (twin.attention_u, net[-1].attention_b[0]), (twin.attention_w, net[-1].attention_c),
             (twin.classifier, clam.classifiers)]
    with torch.no_grad():
        for mine, theirs in pairs:
            mine.weight.copy_(theirs.weight)
            mine.bias.copy_(theirs.bias)
    return twin


def test_clam_sb_computes_gated_attention_mil_and_its_xmil_evidence_matches_the_float64_reference():
    clam = _head("clam_sb").double()
    bag = _bag().double()
    twin = _gated_abmil_copy(clam)
    torch.testing.assert_close(_logits(clam, bag), _logits(twin, bag))
    for target in range(3):
        expected, _ = reference_abmil_xmil(twin, bag, target, eps=1e-8)
        got = tile_evidence("xmil_lrp", clam, bag, target)
        torch.testing.assert_close(got.per_dimension, expected, rtol=1e-6, atol=1e-7 * float(expected.abs().max()))


@pytest.mark.parametrize("name", ["abmil", "abmil_ungated_two_heads", "clam_sb", "clam_sb_ungated_branch_dropout",
                                  "xmil_attnmil"])
def test_xmil_tile_evidence_sums_to_the_slide_logit(name):
    model = _xmil_model().eval() if name == "xmil_attnmil" else _head(name)
    bag = _bag()
    logits = _logits(model, bag)
    for target in range(len(logits)):
        total = tile_evidence("xmil_lrp", model, bag, target).scores.sum()
        torch.testing.assert_close(total, logits[target], rtol=1e-4, atol=1e-5)


def test_clam_mb_evidence_of_each_class_sums_to_its_logit_through_its_own_attention_row():
    model = _head("clam_mb")
    bag = _bag()
    logits = _logits(model, bag)
    evidence = [tile_evidence("xmil_lrp", model, bag, c).scores for c in range(3)]
    for c in range(3):
        torch.testing.assert_close(evidence[c].sum(), logits[c], rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # another class's attention row and classifier: class 0's evidence is unchanged
        model.attention_net[-1].attention_c.weight[1].mul_(-3)
        model.classifiers[1].weight.mul_(-3)
    torch.testing.assert_close(tile_evidence("xmil_lrp", model, bag, 0).scores, evidence[0])
    assert not torch.allclose(tile_evidence("xmil_lrp", model, bag, 1).scores, evidence[1])


def test_clam_mb_attention_gives_one_row_per_class_to_the_attention_baseline():
    model = _head("clam_mb")
    with torch.no_grad():
        weights, _ = model.attention_and_values(_bag().unsqueeze(0))
    assert weights.shape == (1, 3, 30)
    torch.testing.assert_close(weights.sum(-1), torch.ones(1, 3))
    torch.testing.assert_close(tile_evidence("attention", model, _bag(), 0).scores, weights[0].mean(0))


def test_transmil_evidence_sums_to_the_logit_less_the_class_token_and_layernorm_offsets():
    model = _head("transmil").double()
    bag = _bag(n=23).double()  # not a square: the first tiles are repeated up to 25
    before = tile_evidence("xmil_lrp", model, bag, 0).scores
    assert torch.isfinite(before).all() and before.shape == (23,)
    assert not torch.isclose(before.sum(), _logits(model, bag)[0], rtol=0.05)  # the class token takes a share
    with torch.no_grad():
        model.cls_token.zero_()
        for norm in (model.layer1.norm, model.layer2.norm, model.norm):
            norm.bias.zero_()
    logit = _logits(model, bag)[0]
    # exact without the stabiliser; the default ε = 1e-8 keeps a little back on small denominators
    exact = LRP(model, composite=xmil(epsilon=0.0)).attribute(bag.unsqueeze(0), target=0)
    torch.testing.assert_close(exact.sum(), logit, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(tile_evidence("xmil_lrp", model, bag, 0).scores.sum(), logit, rtol=2e-3, atol=1e-6)


@pytest.mark.parametrize("name", sorted(HEADS))
def test_every_head_runs_through_the_gradient_and_leave_one_out_baselines(name):
    model, bag = _head(name), _bag(n=12)
    for method in ("gradient", "leave_one_out"):
        assert torch.isfinite(tile_evidence(method, model, bag, 1).scores).all()


def test_transmil_gives_each_bag_of_a_batch_the_logits_it_gets_alone():
    model, a, b = _head("transmil"), _bag(seed=2), _bag(seed=3)
    with torch.no_grad():
        both = model(torch.stack([a, b]))
    torch.testing.assert_close(both, torch.stack([_logits(model, a), _logits(model, b)]), rtol=1e-5, atol=1e-6)


def test_nystrom_attention_with_one_landmark_per_token_is_softmax_attention():
    attn = NystromAttention(16, heads=2, num_landmarks=8).eval().double()
    with torch.no_grad():  # queries = keys = 3 × the token, tokens orthogonal: a well-conditioned kernel
        attn.to_qkv.weight[:32] = 3 * torch.eye(16, dtype=torch.float64).repeat(2, 1)
    x = torch.eye(8, dtype=torch.float64).repeat(1, 2).unsqueeze(0)
    q, k, v = (t.reshape(1, 8, 2, 8).transpose(1, 2) for t in (x @ attn.to_qkv.weight.T).chunk(3, dim=-1))
    exact = torch.softmax(q @ k.transpose(-1, -2) / 8 ** 0.5, dim=-1) @ v + attn.res_conv(v)
    exact = attn.to_out(exact.transpose(1, 2).reshape(1, 8, 16))
    with torch.no_grad():
        torch.testing.assert_close(attn(x), exact.detach(), rtol=1e-9, atol=1e-12)
