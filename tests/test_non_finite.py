"""NaN or inf in a model's weights or in its inputs: a clear error that names the parameter or the
inputs, from the library and (one line, exit code 2) from the command line -- not a request to
report a canonization bug."""
import pytest
import torch
from torch import nn

from lrp_captum import LRP
from lrp_captum.cli import main

FACTORY = "lrp_captum.demos.planted_patterns:PlantedPatternCNN"


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


def test_nan_weights_are_named_by_parameter():
    model = _mlp()
    with torch.no_grad():
        model[2].weight[1, 3] = float("nan")
    with pytest.raises(ValueError, match=r"parameter '2\.weight' holds 1 NaN"):
        LRP(model, composite="epsilon").attribute(torch.randn(2, 4), target=0)


@pytest.mark.parametrize("value, word", [(float("nan"), "NaN"), (float("inf"), "inf"), (-float("inf"), "inf")])
def test_non_finite_inputs_are_named_with_their_first_position(value, word):
    x = torch.randn(2, 4)
    x[1, 2] = value
    with pytest.raises(ValueError, match=rf"inputs hold 1 {word}.*first at \(1, 2\)"):
        LRP(_mlp(), composite="epsilon").attribute(x, target=0)


def test_the_model_comes_back_as_it_was():
    model = _mlp()
    with torch.no_grad():
        model[0].bias[0] = float("inf")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="'0.bias' holds 1 inf"):
        LRP(model, composite="epsilon").attribute(torch.randn(2, 4), target=0)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) or torch.isnan(before[k]).any() for k in before)
    assert not model.training


def test_the_command_line_names_nan_weights_in_one_line(tmp_path, capsys):
    from lrp_captum.demos.planted_patterns import PlantedPatternCNN

    torch.manual_seed(0)
    state = PlantedPatternCNN().state_dict()
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first].view(-1)[0] = float("nan")
    torch.save(state, tmp_path / "w.pt")
    try:
        code = main(["explain", "--arch", FACTORY, "--weights", str(tmp_path / "w.pt"), "--size", "32",
                     "--out", str(tmp_path / "h.png")])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"parameter '{first}' holds 1 NaN" in err and "Traceback" not in err
    assert not (tmp_path / "h.png").exists()
