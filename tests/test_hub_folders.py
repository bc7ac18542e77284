"""Foundation-model encoders from local folders as the hub stores them: small random-weight
versions of UNI (ViT-L/16, layer scale), Virchow2 (ViT-H/14, SwiGLU, SiLU, 4 registers, class
token + patch mean), H-optimus-0 (ViT-g/14 with registers) and Phikon (a transformers ViTModel),
written here as folders (config.json + model.safetensors or pytorch_model.bin), read back, used
as MIL encoders and tile classifiers, explained with LRP; and folders that are not models."""
import json
import shutil

import pytest
import timm
import torch
import transformers
from safetensors.torch import save_file
from torch import nn

from lrp_captum import LRP
from lrp_captum.cli.slide_options import model_from_args
from lrp_captum.wsi.hub_folders import load_hub_folder
from lrp_captum.wsi.mil.encoders import build_encoder
from lrp_captum.wsi.mil.pixel_maps import default_pixel_composite
from lrp_captum.wsi.model import load_model
from test_mil_support import mil_cohort  # noqa: F401 -- fixture

IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
HOPTIMUS = ([0.707223, 0.578729, 0.703617], [0.211883, 0.230117, 0.177517])
SMALL = dict(embed_dim=32, depth=2, num_heads=4, num_classes=0)
#: the published configs' model_args, shrunk (embed_dim, depth, heads, image and patch size)
UNI_ARGS = dict(img_size=32, patch_size=8, init_values=1e-5, dynamic_img_size=True, **SMALL)
VIRCHOW2_ARGS = dict(img_size=28, patch_size=7, init_values=1e-5, reg_tokens=4, mlp_ratio=5.3375, global_pool="",
                     dynamic_img_size=True, **SMALL)
HOPTIMUS_ARGS = dict(img_size=28, patch_size=7, init_values=1e-5, **SMALL)
#: what is added rather than computed from the pixels
ADDITIVE = ("bias", "pos_embed", "cls_token", "reg_token", "position_embeddings")


def _trained_like(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights with every parameter moved off its initial value (biases, layer scales and
    embeddings included), as training leaves them."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return model.eval()


def _write_timm(folder, architecture, model_args, build_args=None, norm=IMAGENET, weights="model.safetensors",
                num_classes=0, label_names=None):
    """A folder as timm's push_to_hf_hub writes it; returns (folder, the model it holds)."""
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    model = _trained_like(timm.create_model(architecture, pretrained=False,
                                            **dict(build_args or model_args, num_classes=num_classes)))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if weights.endswith(".safetensors"):
        save_file(state, folder / weights)
    else:
        torch.save(state, folder / weights)
    size = model_args["img_size"]
    config = {"architecture": architecture, "num_classes": num_classes, "num_features": model_args["embed_dim"],
              "model_args": model_args,
              "pretrained_cfg": {"tag": "test", "custom_load": False, "input_size": [3, size, size],
                                 "fixed_input_size": False, "interpolation": "bicubic", "crop_pct": 1.0,
                                 "mean": norm[0], "std": norm[1], "num_classes": num_classes,
                                 "first_conv": "patch_embed.proj", "classifier": "head"}}
    if label_names:
        config["label_names"] = label_names
    (folder / "config.json").write_text(json.dumps(config))
    return folder, model


def uni(root):
    return _write_timm(root / "UNI", "vit_large_patch16_224", UNI_ARGS, weights="pytorch_model.bin")


def virchow2(root):
    """Virchow2's published config names no MLP: its model card passes SwiGLUPacked and SiLU in code."""
    built = dict(VIRCHOW2_ARGS, mlp_layer=timm.layers.SwiGLUPacked, act_layer=nn.SiLU)
    return _write_timm(root / "Virchow2", "vit_huge_patch14_224", VIRCHOW2_ARGS, built)


def virchow2_named(root):
    """The same with the layers named as strings in model_args, as other exports write them."""
    named = dict(VIRCHOW2_ARGS, mlp_layer="timm.layers.SwiGLUPacked", act_layer="torch.nn.SiLU")
    built = dict(VIRCHOW2_ARGS, mlp_layer=timm.layers.SwiGLUPacked, act_layer=nn.SiLU)
    return _write_timm(root / "Virchow2-named", "vit_huge_patch14_224", named, built)


def hoptimus(root):
    return _write_timm(root / "H-optimus-0", "vit_giant_patch14_reg4_dinov2", HOPTIMUS_ARGS, norm=HOPTIMUS)


def phikon(root):
    """Phikon's layout: a transformers ViTModel (config.json with model_type vit) and its
    preprocessor_config.json."""
    folder = root / "phikon"
    folder.mkdir(parents=True)
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=4, intermediate_size=64)
    torch.manual_seed(0)
    model = _trained_like(transformers.ViTModel(config, add_pooling_layer=True))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(dict(config.to_dict(), architectures=["ViTModel"])))
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "ViTImageProcessor", "do_normalize": True, "do_resize": True, "resample": 3,
        "image_mean": IMAGENET[0], "image_std": IMAGENET[1], "size": {"height": 32, "width": 32}}))
    return folder, model


FOLDERS = {"uni": uni, "virchow2": virchow2, "virchow2_named": virchow2_named, "hoptimus": hoptimus,
           "phikon": phikon}


def _reference_embedding(name, model, x):
    """What the model cards take as the embedding, computed here from the model as built."""
    with torch.no_grad():
        if name == "phikon":
            return model(pixel_values=x).last_hidden_state[:, 0]
        out = model(x)
        if name.startswith("virchow2"):  # class token and the mean of the patch tokens (registers left out)
            return torch.cat([out[:, 0], out[:, 5:].mean(1)], dim=-1)
        return out


@pytest.mark.parametrize("name", sorted(FOLDERS))
def test_a_hub_folder_gives_the_embedding_its_model_card_takes(name, tmp_path):
    folder, model = FOLDERS[name](tmp_path)
    hub = load_hub_folder(folder)
    x = torch.randn(2, 3, hub.input_size, hub.input_size)
    torch.testing.assert_close(hub.model(x), _reference_embedding(name, model, x))
    assert hub.num_features == (64 if name.startswith("virchow2") else 32)


@pytest.mark.parametrize("name", sorted(FOLDERS))
def test_a_hub_folder_is_a_mil_encoder_with_its_config_s_input_size_and_normalisation(name, tmp_path):
    folder, _ = FOLDERS[name](tmp_path)
    encoder = build_encoder({"arch": str(folder)})
    expected = HOPTIMUS if name == "hoptimus" else IMAGENET
    assert encoder.spec["arch"] == "hub-folder" and encoder.tile_size == (28 if name in ("virchow2", "virchow2_named",
                                                                                         "hoptimus") else 32)
    assert list(encoder.mean) == expected[0] and list(encoder.std) == expected[1]
    tiles = torch.randint(0, 256, (3, encoder.tile_size, encoder.tile_size, 3), dtype=torch.uint8)
    assert encoder.embed(tiles).shape == (3, encoder.dim)


def test_an_encoder_s_identity_does_not_depend_on_where_its_folder_lies(tmp_path):
    folder, _ = uni(tmp_path / "a")
    moved = shutil.copytree(folder, tmp_path / "b" / "UNI-copy")
    assert build_encoder(str(folder)).identity == build_encoder(str(moved)).identity


@pytest.mark.parametrize("name", sorted(FOLDERS))
def test_lrp_through_a_foundation_encoder_conserves_relevance_up_to_its_additive_parameters(name, tmp_path):
    """The default pixel composite of a transformer encoder (xmil_vit) on every block type:
    layer scale, SwiGLU (a product of two branches), register tokens. With what is added rather
    than computed from the pixels zeroed (biases, position embeddings, class and register
    tokens), the pixels receive all the relevance. (With the class token's embedding non-zero,
    or zero but the biases not, the class token's row holds constants in the first block and
    keeps the relevance it gets there: tests/test_mil_sums.py and docs/mil.md.)"""
    folder, _ = FOLDERS[name](tmp_path)
    assert_conserves_without_additive_parameters(build_encoder(str(folder)))


def assert_conserves_without_additive_parameters(encoder) -> None:
    """The encoder's default pixel composite is xmil_vit, and with its additive parameters
    (:data:`ADDITIVE`) zeroed, the pixels of three tiles receive all of a random initial relevance."""
    composite = default_pixel_composite(encoder)
    assert composite == "xmil_vit"
    model = encoder.model.double()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if any(a in pname for a in ADDITIVE):
                p.zero_()
    x = torch.randn(3, 3, encoder.tile_size, encoder.tile_size, dtype=torch.float64)
    initial = model(x) * torch.rand(3, encoder.dim, dtype=torch.float64)
    relevance = LRP(model, composite=composite).attribute(x, output_mode=initial)
    assert relevance.shape == x.shape
    torch.testing.assert_close(relevance.flatten(1).sum(1), initial.sum(1), rtol=1e-4, atol=1e-8)


def test_a_timm_classifier_folder_is_a_tile_model_for_slide_explain(tmp_path):
    folder, model = _write_timm(tmp_path / "clf", "vit_large_patch16_224", UNI_ARGS, num_classes=2,
                                label_names=["benign", "tumour"])

    class Args:
        arch, model, weights, classes, model_tile_size, model_mpp, quiet = str(folder), "demo", None, None, 224, 0.5, True

    bundle = load_model(model_from_args(Args), device="cpu")
    assert bundle.classes == ["benign", "tumour"] and bundle.tile_size == 32 and list(bundle.mean) == IMAGENET[0]
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(bundle.model(x), model(x))
    assert len(bundle.weights_sha256) == 64


def test_an_encoder_folder_is_refused_as_a_tile_classifier(tmp_path):
    folder, _ = uni(tmp_path)
    with pytest.raises(ValueError, match="encoder without a classifier"):
        load_model(dict(architecture=str(folder), classes=["a", "b"], tile_size=224, mpp=0.5), device="cpu")


# --- folders that are not models ----------------------------------------------------------------
def test_a_folder_without_weights_is_refused_naming_the_files_it_lacks(tmp_path):
    folder, _ = uni(tmp_path)
    (folder / "pytorch_model.bin").unlink()
    with pytest.raises(FileNotFoundError, match=r"UNI holds no weights: expected model\.safetensors or pytorch_model\.bin"):
        build_encoder(str(folder))


def test_an_unknown_architecture_is_refused_naming_the_config(tmp_path):
    folder, _ = uni(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(dict(config, architecture="vit_enormous_patch3_1024")))
    with pytest.raises(ValueError, match=r"config\.json: timm has no architecture 'vit_enormous_patch3_1024'"):
        load_hub_folder(folder)


def test_a_config_that_is_no_model_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 32}))
    with pytest.raises(ValueError, match="names no 'architecture'"):
        load_hub_folder(tmp_path)


class Payload:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_a_pickle_in_pytorch_model_bin_is_refused_and_never_runs(tmp_path, capsys):
    folder, _ = uni(tmp_path)
    torch.save({"blocks.0.norm1.weight": Payload()}, folder / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"pytorch_model\.bin .*not a plain state_dict"):
        load_hub_folder(folder)
    assert "pickled code ran" not in capsys.readouterr().out


def test_a_damaged_safetensors_file_is_refused_naming_it(tmp_path):
    folder, _ = virchow2(tmp_path)
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=r"model\.safetensors .*not a readable \.safetensors file"):
        load_hub_folder(folder)


def test_a_layer_name_outside_the_allow_list_is_refused_never_evaluated(tmp_path):
    named = dict(VIRCHOW2_ARGS, mlp_layer="os.system", act_layer="torch.nn.SiLU")
    folder, _ = _write_timm(tmp_path / "v", "vit_huge_patch14_224", named,
                            dict(VIRCHOW2_ARGS, mlp_layer=timm.layers.SwiGLUPacked, act_layer=nn.SiLU))
    with pytest.raises(ValueError, match=r"mlp_layer='os.system' is not a layer this library knows"):
        load_hub_folder(folder)


def test_weights_of_another_architecture_are_refused_naming_the_file(tmp_path):
    folder, _ = uni(tmp_path)
    other, _ = hoptimus(tmp_path)
    shutil.copy(other / "model.safetensors", folder / "model.safetensors")  # preferred over pytorch_model.bin
    with pytest.raises(ValueError, match=r"model\.safetensors do not fit 'vit_large_patch16_224'"):
        load_hub_folder(folder)


def test_a_transformers_vit_folder_without_its_preprocessor_config_is_refused(tmp_path):
    folder, _ = phikon(tmp_path)
    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="no preprocessor_config.json"):
        load_hub_folder(folder)


# --- on the command line --------------------------------------------------------------------------
def _cli(*argv):
    import contextlib
    import io

    from lrp_captum import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli.main(["slide", *argv])
        except SystemExit as exc:
            rc = exc.code
    return rc, out.getvalue(), err.getvalue()


def test_train_and_explain_mil_with_an_encoder_folder(mil_cohort, tmp_path):
    from lrp_captum.demos.mil_cohort import read_cohort

    folder, _ = uni(tmp_path)
    rc, out, err = _cli("train-mil", "--cohort", str(mil_cohort), "--out", str(tmp_path / "head"), "--encoder",
                        str(folder), "--encoder-mpp", "4", "--embeddings", str(tmp_path / "emb"), "--epochs", "2",
                        "--quiet")
    assert rc == 0, err
    head = json.loads(out)["head"]
    assert json.loads((tmp_path / "head.json").read_text())["encoder"]["arch"] == "hub-folder"
    slide = next(e for e in read_cohort(mil_cohort) if e.label == 1).slide
    rc, _, err = _cli("explain-mil", str(slide), "--mil", head, "--out", str(tmp_path / "out"), "--top-tiles", "2",
                      "--embeddings", str(tmp_path / "emb"), "--quiet")
    assert rc == 0, err
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["pixel_composite"] == "xmil_vit" and manifest["embeddings"]["embedded_now"] == 0
    assert manifest["sums"]["evidence_to_logit"] == pytest.approx(1.0, abs=1e-4)
    assert len(manifest["top_tiles"]) == 2 and all(t["pixel_to_evidence"] is not None for t in manifest["top_tiles"])


def test_slide_explain_with_a_classifier_folder(tmp_path):
    from lrp_captum.demos.sample_slide import write_sample_slide

    folder, _ = _write_timm(tmp_path / "clf", "vit_large_patch16_224", UNI_ARGS, num_classes=2,
                            label_names=["negative", "positive"])
    slide = write_sample_slide(tmp_path / "s.tif", 512, seed=1)
    rc, _, err = _cli("explain", str(slide), "--arch", str(folder), "--out", str(tmp_path / "out"), "--model-mpp", "2",
                      "--target", "positive", "--threads", "1", "--quiet")
    assert rc == 0, err
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["model"]["classes"] == ["negative", "positive"] and manifest["model"]["tile_size"] == 32


def test_a_folder_that_is_no_model_is_one_line_on_the_command_line(mil_cohort, tmp_path):
    folder, _ = uni(tmp_path)
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not a pickle of tensors")
    rc, _, err = _cli("train-mil", "--cohort", str(mil_cohort), "--out", str(tmp_path / "head"), "--encoder",
                      str(folder), "--embeddings", str(tmp_path / "emb"), "--quiet")
    assert rc == 2 and err.count("\n") == 1 and "pytorch_model.bin" in err
    assert not (tmp_path / "head.json").exists()
