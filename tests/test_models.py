import pytest
import torch

from robustbench_dc.models import ModelSpec, build_model, create_model, list_models
from robustbench_dc.models.layers import MaxPool2d
from robustbench_dc.ops import DecoupledConv2d

TINY = dict(width=0.125, input_size=8)


@pytest.mark.parametrize("arch", ["cnn9", "resnet32"])
@pytest.mark.parametrize("name", list_models())
def test_every_model_forward_backward_and_state_dict(name, arch):
    torch.manual_seed(0)
    model = create_model(name, arch=arch, **TINY)
    x = torch.rand(4, 3, 8, 8)
    out = model(x)
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    out.logsumexp(1).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    model.eval()
    clone = build_model(ModelSpec.from_dict(model.spec.to_dict())).eval()
    clone.load_state_dict(model.state_dict())
    torch.testing.assert_close(clone(x), model(x))


def test_decoupled_everywhere_but_shortcuts_and_classifier():
    model = create_model("tanhconv", arch="resnet32", width=0.25)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    decoupled = [m for m in convs if isinstance(m, DecoupledConv2d)]
    plain = [m for m in convs if not isinstance(m, DecoupledConv2d)]
    assert len(decoupled) == 1 + 3 * 5 * 2
    assert all(m.kernel_size == (1, 1) for m in plain) and len(plain) == 2
    assert not any(isinstance(m, DecoupledConv2d) for m in create_model("baseline").modules())


def test_widths_and_channels():
    model = create_model("baseline", width=0.25, in_channels=1, num_classes=7, input_size=8)
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 7)
    assert model.head[-1].in_features == 64
    assert model.spec.mean == (0.5,)


def test_operator_options_reach_layers():
    model = create_model("ballconv-sqcos", rho=2.0, alpha=3.0, learnable_rho=True)
    layer = next(m for m in model.modules() if isinstance(m, DecoupledConv2d))
    assert (layer.config.magnitude, layer.config.angular, layer.config.rho, layer.config.alpha) == (
        "ball",
        "sqcos",
        2.0,
        3.0,
    )
    assert layer.rho_r is not None and layer.config.relative_rho  # zoo default


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (
            dict(name="cubeconv"),
            r"unknown model 'cubeconv'; did you mean 'segconv' or 'ballconv'\? valid: baseline, sphereconv",
        ),
        (dict(name="tanhconv-tan"), "unknown angular function 'tan'.*valid suffixes: cos, linear"),
        (
            dict(name="tanhconv", arch="vgg"),
            "unknown architecture 'vgg'; valid: cnn9, convnet-aig, drconv, ir-se, resnet110, resnet32",
        ),
        (dict(name="tanhconv", rho=-1.0), "rho must be > 0"),
        (dict(name="tanhconv", radius=2.0), "unknown operator options \\['radius'\\]; valid:"),
        (dict(name="baseline", rho=2.0), "the baseline takes no operator options"),
        (dict(name="tanhconv", in_channels=1, mean=(0.1, 0.2, 0.3)), "in_channels=1 needs that many"),
    ],
)
def test_bad_names_and_options(kwargs, match):
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=match):
        create_model(name, **kwargs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize(
    "kernel,stride,padding,dilation,ceil",
    [(2, None, 0, 1, False), (3, 2, 1, 1, False), (3, 2, 1, 2, True), ((2, 3), (1, 2), (1, 0), 1, True)],
)
def test_max_pool_layer_equals_torch(dtype, kernel, stride, padding, dilation, ceil):
    """cnn9's pooling (through the channels-last kernel on a CPU) gives nn.MaxPool2d's outputs and gradients,
    bit for bit, ties and NaNs included (which element of a tied window gets the gradient matters)."""
    torch.manual_seed(0)
    x = torch.randn(4, 16, 10, 11, dtype=dtype).relu()  # ReLU: many windows of tied zeros
    x[:, :, 1::2] = x[:, :, ::2][:, :, :5]  # tied positive values across rows
    if dtype != torch.float64:
        x.view(-1)[::37] = float("nan")
    ours, ref = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    y = MaxPool2d(kernel, stride, padding, dilation, ceil_mode=ceil)(ours)
    y_ref = torch.nn.MaxPool2d(kernel, stride, padding, dilation, ceil_mode=ceil)(ref)
    g = torch.randn_like(y_ref)
    y.backward(g)
    y_ref.backward(g)
    assert y.is_contiguous() and torch.equal(y.nan_to_num(7.0), y_ref.nan_to_num(7.0))
    assert torch.equal(ours.grad, ref.grad)
    if dtype == torch.float64:
        assert torch.autograd.gradcheck(
            MaxPool2d(kernel, stride, padding, dilation, ceil_mode=ceil),
            (torch.randn(2, 8, 7, 7, dtype=dtype, requires_grad=True),),
        )
    assert any(isinstance(m, MaxPool2d) for m in create_model("tanhconv", width=0.25).modules())


def test_wrong_input_shape_is_a_clear_error():
    model = create_model("tanhconv", **TINY)
    with pytest.raises(ValueError, match=r"expects images of shape \(N, 3, H, W\)"):
        model(torch.rand(2, 1, 8, 8))
