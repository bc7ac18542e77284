"""CONCH from a local folder as the hub stores it: a small random-weight CoCa checkpoint
(``pytorch_model.bin`` with ``visual.*``, ``text.*`` and ``logit_scale``, no ``config.json``, a
``meta.yaml``), its shape in a ``conch_ViT-B-16.json`` written with CONCH's config names; read
back as a MIL encoder, its embedding checked against the pooler written out here with explicit
matmuls, explained with LRP; and folders that are not CONCH's."""
import json

import pytest
import timm
import torch
import torch.nn.functional as F

from lrp_captum.wsi.hub_folders import is_hub_folder, load_hub_folder
from lrp_captum.wsi.mil.encoders import build_encoder
from test_hub_folders import Payload, assert_conserves_without_additive_parameters, uni
from test_mil_support import mil_cohort  # noqa: F401 -- fixture

OPENAI = ([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])
#: CONCH's config, shrunk: trunk width 32 (CONCH: 768), contrast embedding 24 (512, so keys and
#: values have another size than the queries, as in CONCH), caption embedding = trunk width (768)
CONFIG = {"embed_dim": 24, "embed_dim_caption": 32,
          "vision_cfg": {"image_size": 32, "patch_size": 8, "layers": 2, "width": 32, "num_heads": 4,
                         "attentional_pool_caption": True, "attentional_pool_contrast": True,
                         "attn_pooler_heads": 4, "n_queries_contrast": 1, "n_queries_caption": 6,
                         "output_tokens": True},
          "text_cfg": {"context_length": 8, "vocab_size": 16, "width": 16, "heads": 2, "layers": 1},
          "custom_text": True}


def _randn(gen, *shape):
    return 0.3 * torch.randn(*shape, generator=gen)


def _pooler(gen, prefix, d_model, context, queries):
    """An attentional pooler's tensors under CONCH's names (nn.MultiheadAttention keeps separate
    q/k/v projections when the keys' size differs from the queries')."""
    if d_model == context:
        attn = {"in_proj_weight": _randn(gen, 3 * d_model, d_model)}
    else:
        attn = {"q_proj_weight": _randn(gen, d_model, d_model), "k_proj_weight": _randn(gen, d_model, context),
                "v_proj_weight": _randn(gen, d_model, context)}
    attn.update(in_proj_bias=_randn(gen, 3 * d_model), **{"out_proj.weight": _randn(gen, d_model, d_model),
                                                        "out_proj.bias": _randn(gen, d_model)})
    state = {f"{prefix}.attn.{k}": v for k, v in attn.items()}
    state.update({f"{prefix}.query": _randn(gen, queries, d_model),
                  f"{prefix}.ln_q.weight": 1 + _randn(gen, d_model), f"{prefix}.ln_q.bias": _randn(gen, d_model),
                  f"{prefix}.ln_k.weight": 1 + _randn(gen, context), f"{prefix}.ln_k.bias": _randn(gen, context)})
    return state


def _checkpoint(seed=0):
    """(state_dict as CONCH's pytorch_model.bin holds it, the timm trunk it holds)."""
    vision = CONFIG["vision_cfg"]
    torch.manual_seed(seed)
    trunk = timm.models.vision_transformer.VisionTransformer(
        img_size=vision["image_size"], patch_size=vision["patch_size"], embed_dim=vision["width"],
        depth=vision["layers"], num_heads=vision["num_heads"], num_classes=0).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in trunk.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    d, c, w = CONFIG["embed_dim"], CONFIG["embed_dim_caption"], vision["width"]
    state = {f"visual.trunk.{k}": v for k, v in trunk.state_dict().items()}
    state.update(_pooler(gen, "visual.attn_pool_contrast", d, w, 1))
    state.update(_pooler(gen, "visual.attn_pool_caption", c, w, vision["n_queries_caption"]))
    state.update({"visual.ln_contrast.weight": 1 + _randn(gen, d), "visual.ln_contrast.bias": _randn(gen, d),
                  "visual.proj_contrast": _randn(gen, d, d),
                  "visual.ln_caption.weight": 1 + _randn(gen, c), "visual.ln_caption.bias": _randn(gen, c),
                  "text.token_embedding.weight": _randn(gen, 16, 16), "text.positional_embedding": _randn(gen, 8, 16),
                  "text.cls_emb": _randn(gen, 16), "text.ln_final.weight": _randn(gen, 16),
                  "text.text_projection": _randn(gen, 16, d), "logit_scale": torch.tensor(2.6)})
    return state, trunk


def conch(root, state=None):
    """A folder as the hub stores CONCH, plus its config under CONCH's name; returns (folder, state, trunk)."""
    folder = root / "CONCH"
    folder.mkdir(parents=True)
    written, trunk = _checkpoint()
    state = written if state is None else state
    torch.save(state, folder / "pytorch_model.bin")
    (folder / "meta.yaml").write_text("model: conch\n")
    (folder / "conch_ViT-B-16.json").write_text(json.dumps(CONFIG))
    return folder, written, trunk


def _layer_norm(x, state, prefix):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-5) * state[f"{prefix}.weight"] + state[f"{prefix}.bias"]


def _reference_embedding(state, trunk, x):
    """encode_image(x, proj_contrast=False, normalize=False) written out: the first query of the
    contrast pooler attending over the trunk's tokens, heads split by hand, then ln_contrast."""
    p = "visual.attn_pool_contrast"
    heads, d = CONFIG["vision_cfg"]["attn_pooler_heads"], CONFIG["embed_dim"]
    with torch.no_grad():
        tokens = _layer_norm(trunk.forward_features(x), state, f"{p}.ln_k")  # (N, T, C)
        query = _layer_norm(state[f"{p}.query"], state, f"{p}.ln_q")[0]  # (D,)
        bq, bk, bv = state[f"{p}.attn.in_proj_bias"].split(d)
        q = query @ state[f"{p}.attn.q_proj_weight"].T + bq  # (D,)
        k = tokens @ state[f"{p}.attn.k_proj_weight"].T + bk  # (N, T, D)
        v = tokens @ state[f"{p}.attn.v_proj_weight"].T + bv
        per_head = []
        for h in range(heads):
            s = slice(h * d // heads, (h + 1) * d // heads)
            scores = k[..., s] @ q[s] / (d // heads) ** 0.5  # (N, T)
            per_head.append((scores.softmax(-1).unsqueeze(-1) * v[..., s]).sum(1))
        pooled = torch.cat(per_head, -1) @ state[f"{p}.attn.out_proj.weight"].T + state[f"{p}.attn.out_proj.bias"]
        return _layer_norm(pooled, state, "visual.ln_contrast")


def test_a_conch_folder_is_a_mil_encoder_with_its_config_s_input_size_and_openai_normalisation(tmp_path):
    folder, _, _ = conch(tmp_path)
    assert is_hub_folder(folder)
    encoder = build_encoder({"arch": str(folder)})
    assert encoder.spec["arch"] == "hub-folder" and encoder.tile_size == 32 and encoder.dim == 24
    assert list(encoder.mean) == OPENAI[0] and list(encoder.std) == OPENAI[1]
    tiles = torch.randint(0, 256, (3, 32, 32, 3), dtype=torch.uint8)
    assert encoder.embed(tiles).shape == (3, 24)


def test_the_conch_embedding_is_the_contrast_pooler_s_first_query_after_its_layernorm(tmp_path):
    folder, state, trunk = conch(tmp_path)
    hub = load_hub_folder(folder)
    assert (hub.kind, hub.architecture, hub.input_size, hub.num_features) == ("conch", "conch_ViT-B-16", 32, 24)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(hub.model(x), _reference_embedding(state, trunk, x), rtol=1e-4, atol=1e-5)


def test_every_vision_key_is_loaded_and_the_text_tower_is_left_out(tmp_path):
    folder, state, _ = conch(tmp_path)
    loaded = load_hub_folder(folder).model.state_dict()
    assert sorted(loaded) == sorted(k[len("visual."):] for k in state if k.startswith("visual."))
    for name, tensor in loaded.items():
        torch.testing.assert_close(tensor, state[f"visual.{name}"])


def test_lrp_through_conch_conserves_relevance_up_to_its_additive_parameters(tmp_path):
    """As for the other transformer encoders (tests/test_hub_folders.py): with biases, position
    embedding and class token zeroed, the pixels receive all the relevance, through the trunk,
    the pooler's nn.MultiheadAttention and the LayerNorms."""
    folder, _, _ = conch(tmp_path)
    encoder = build_encoder(str(folder))
    assert encoder.tile_size == 32
    assert_conserves_without_additive_parameters(encoder)


def test_without_its_config_file_a_conch_folder_is_built_as_published(tmp_path):
    """CONCH's hub folder holds no config: the published conch_ViT-B-16 shape (ViT-B/16 at 448 px,
    embedding 512) is assumed, so these small weights do not fit it, and the message says so."""
    folder, _, _ = conch(tmp_path)
    (folder / "conch_ViT-B-16.json").unlink()
    with pytest.raises(ValueError, match=r"CONCH weights .*pytorch_model\.bin do not fit the vision tower of "
                                         r"conch_ViT-B-16: .*size mismatch"):
        load_hub_folder(folder)


# --- folders that are not CONCH's -----------------------------------------------------------------
def test_a_conch_folder_without_weights_is_refused_naming_the_file_it_lacks(tmp_path):
    folder, _, _ = conch(tmp_path)
    (folder / "pytorch_model.bin").unlink()
    with pytest.raises(FileNotFoundError, match=r"CONCH folder .*CONCH holds no weights: expected pytorch_model\.bin"):
        build_encoder(str(folder))


def test_a_pickle_in_conch_s_pytorch_model_bin_is_refused_and_never_runs(tmp_path, capsys):
    folder, _, _ = conch(tmp_path)
    torch.save({"visual.trunk.cls_token": Payload()}, folder / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"pytorch_model\.bin .*not a plain state_dict"):
        load_hub_folder(folder)
    assert "pickled code ran" not in capsys.readouterr().out


def test_weights_without_a_vision_tower_are_not_a_conch_checkpoint(tmp_path):
    folder, _ = uni(tmp_path)  # timm's keys, and its config.json taken away
    (folder / "config.json").unlink()
    with pytest.raises(ValueError, match=r"no config\.json and pytorch_model\.bin is not a CONCH checkpoint "
                                         r"\(no visual\.trunk\.\* keys\)"):
        load_hub_folder(folder)


def test_a_checkpoint_without_the_text_tower_is_refused(tmp_path):
    state, _ = _checkpoint()
    folder, _, _ = conch(tmp_path, {k: v for k, v in state.items() if k.startswith("visual.")})
    with pytest.raises(ValueError, match=r"pytorch_model\.bin hold no text\.\* keys"):
        load_hub_folder(folder)


def test_keys_outside_conch_s_towers_are_refused_naming_them(tmp_path):
    state, _ = _checkpoint()
    folder, _, _ = conch(tmp_path, dict(state, **{"head.weight": torch.zeros(2, 24)}))
    with pytest.raises(ValueError, match=r"keys outside CONCH's towers: head\.weight"):
        load_hub_folder(folder)


def test_a_missing_pooler_key_is_refused_naming_the_file(tmp_path):
    state, _ = _checkpoint()
    state.pop("visual.ln_contrast.bias")
    folder, _, _ = conch(tmp_path, state)
    with pytest.raises(ValueError, match=r"pytorch_model\.bin do not fit .*Missing key.*ln_contrast\.bias"):
        load_hub_folder(folder)


def test_a_config_key_conch_does_not_have_is_refused_naming_the_config(tmp_path):
    folder, _, _ = conch(tmp_path)
    (folder / "conch_ViT-B-16.json").write_text(json.dumps(dict(CONFIG, vision_cfg={"depth": 2})))
    with pytest.raises(ValueError, match=r"conch_ViT-B-16\.json: vision_cfg keys \['depth'\] are not CONCH's"):
        load_hub_folder(folder)


def test_conch_is_refused_as_a_tile_classifier(tmp_path):
    from lrp_captum.wsi.model import load_model

    folder, _, _ = conch(tmp_path)
    with pytest.raises(ValueError, match="CONCH, an encoder without a classifier"):
        load_hub_folder(folder, num_classes=2)
    with pytest.raises(ValueError, match="encoder without a classifier"):
        load_model(dict(architecture=str(folder), classes=["a", "b"], tile_size=224, mpp=0.5), device="cpu")


def test_a_bad_conch_folder_is_one_line_on_the_command_line(mil_cohort, tmp_path):
    from test_hub_folders import _cli

    state, _ = _checkpoint()
    folder, _, _ = conch(tmp_path, {k: v for k, v in state.items() if k.startswith("visual.")})
    rc, _, err = _cli("train-mil", "--cohort", str(mil_cohort), "--out", str(tmp_path / "head"), "--encoder",
                      str(folder), "--embeddings", str(tmp_path / "emb"), "--quiet")
    assert rc == 2 and err.count("\n") == 1 and "pytorch_model.bin" in err
    assert not (tmp_path / "head.json").exists()


def test_train_and_explain_mil_with_a_conch_folder(mil_cohort, tmp_path):
    from lrp_captum.demos.mil_cohort import read_cohort
    from test_hub_folders import _cli

    folder, _, _ = conch(tmp_path)
    rc, out, err = _cli("train-mil", "--cohort", str(mil_cohort), "--out", str(tmp_path / "head"), "--encoder",
                        str(folder), "--encoder-mpp", "4", "--embeddings", str(tmp_path / "emb"), "--epochs", "2",
                        "--quiet")
    assert rc == 0, err
    slide = next(e for e in read_cohort(mil_cohort) if e.label == 1).slide
    rc, _, err = _cli("explain-mil", str(slide), "--mil", json.loads(out)["head"], "--out", str(tmp_path / "out"),
                      "--top-tiles", "2", "--embeddings", str(tmp_path / "emb"), "--quiet")
    assert rc == 0, err
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["pixel_composite"] == "xmil_vit" and manifest["embeddings"]["embedded_now"] == 0
    assert len(manifest["top_tiles"]) == 2 and all(t["pixel_to_evidence"] is not None for t in manifest["top_tiles"])
