"""A plan (canonized model, compiled rules, fused graph) is made once per composite,
canonizers and input signature, and reused by the calls that share them."""
import dataclasses

import torch
from torch import nn

from lrp_captum import LRP
from lrp_captum.core import composites


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2)).eval()


def _recording(monkeypatch, name: str) -> list:
    """Every composite the registry builds under ``name``, kept alive (so that no object id
    is reused by a later one)."""
    made = []
    entry = composites._REGISTRY[name]

    def factory(**kwargs):
        made.append(entry.factory(**kwargs))
        return made[-1]
    monkeypatch.setitem(composites._REGISTRY, name, dataclasses.replace(entry, factory=factory))
    return made


def test_calls_with_the_default_composite_share_one_plan(monkeypatch):
    made = _recording(monkeypatch, "epsilon")
    lrp, x = LRP(_model()), torch.randn(3, 4)
    for _ in range(3):
        lrp.attribute(x, target=0)
    assert len(made) == 1


def test_calls_with_a_named_composite_share_one_plan(monkeypatch):
    made = _recording(monkeypatch, "epsilon_plus")
    lrp, x = LRP(_model(), composite="epsilon_plus"), torch.randn(3, 4)
    for _ in range(3):
        lrp.attribute(x, target=0)
    assert len(made) == 1


def test_a_new_input_shape_gets_its_own_plan(monkeypatch):
    made = _recording(monkeypatch, "epsilon")
    lrp = LRP(nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU(), nn.Flatten()).eval())
    lrp.attribute(torch.randn(2, 1, 8), target=0)
    lrp.attribute(torch.randn(2, 1, 9), target=0)
    assert len(made) == 2



def test_a_plan_keeps_the_composite_it_was_made_for():
    """A composite built for one call and dropped after it stays referenced by its plan's
    key: were the key the object's id, a later composite at the same address would find
    this plan."""
    import gc
    import weakref

    from lrp_captum import get_composite
    lrp, x = LRP(_model()), torch.rand(3, 4)
    composite = get_composite("epsilon_plus")
    lrp.attribute(x, target=0, composite=composite)
    alive = weakref.ref(composite)
    del composite
    gc.collect()
    assert alive() is not None
    lrp.reset()
    gc.collect()
    assert alive() is None
