import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from robustbench_dc.errors import ConfigError
from robustbench_dc.ops import (
    ANGULARS,
    MAGNITUDES,
    DecoupledConv2d,
    DecoupledLinear,
    angular_fn,
    decoupled_conv2d,
    decoupled_linear,
    magnitude_fn,
    orthogonality_penalty,
    patch_norm2d,
    project_weights,
    weight_gradients,
)
from robustbench_dc.ops.functional import COS_CLAMP
from robustbench_dc.ops.modules import layer_lipschitz


@pytest.mark.parametrize("stride,padding,dilation", [(1, 0, 1), (2, 1, 1), (1, 2, 2), ((2, 1), (1, 0), (1, 2))])
def test_linear_weighted_cos_equals_conv2d(stride, padding, dilation):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 11, 9, dtype=torch.float64)
    w = torch.randn(5, 3, 3, 3, dtype=torch.float64)
    b = torch.randn(5, dtype=torch.float64)
    ours = decoupled_conv2d(
        x, w, b, magnitude="linear", weighted="linear", angular="cos", stride=stride, padding=padding, dilation=dilation
    )
    ref = F.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)


def test_linear_weighted_cos_equals_linear():
    torch.manual_seed(0)
    x, w, b = torch.randn(4, 7), torch.randn(3, 7), torch.randn(3)
    torch.testing.assert_close(decoupled_linear(x, w, b, magnitude="linear", weighted="linear"), F.linear(x, w, b))


def test_module_is_drop_in_for_conv2d():
    torch.manual_seed(0)
    ours = DecoupledConv2d(3, 4, 3, stride=2, padding=1, magnitude="linear", weighted="linear")
    ref = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)
    ref.load_state_dict({k: v for k, v in ours.state_dict().items() if k in ("weight", "bias")})
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)


def test_magnitude_closed_forms():
    r = torch.tensor([0.5, 2.0, 4.0])
    kw = dict(alpha=2.0, beta=0.5, rho=2.0)
    expect = {
        "sphere": [2.0, 2.0, 2.0],
        "ball": [0.5, 2.0, 2.0],
        "tanh": [2 * math.tanh(0.25), 2 * math.tanh(1.0), 2 * math.tanh(2.0)],
        "linear": [1.0, 4.0, 8.0],
        "seg": [1.0, 4.0, 0.5 * 4 + 2 * 2 - 0.5 * 2],
        "log": [2 * math.log(1.5), 2 * math.log(3.0), 2 * math.log(5.0)],
        "mix": [1 + 0.5 * math.log(1.5), 4 + 0.5 * math.log(3), 8 + 0.5 * math.log(5)],
    }
    assert set(expect) == set(MAGNITUDES)
    for name, values in expect.items():
        torch.testing.assert_close(magnitude_fn(name, r, **kw), torch.tensor(values), msg=name)


def test_angular_closed_forms():
    theta = torch.tensor([0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4, math.pi], dtype=torch.float64)
    c = torch.cos(theta)
    torch.testing.assert_close(angular_fn("cos", c), c)
    torch.testing.assert_close(angular_fn("sqcos", c), torch.tensor([1, 0.5, 0, -0.5, -1], dtype=torch.float64))
    # the cosine is clamped away from +-1 before arccos: that costs at most an angle of sqrt(2 * COS_CLAMP)
    clamp_err = 2 / math.pi * math.sqrt(2 * COS_CLAMP) * 1.01
    torch.testing.assert_close(
        angular_fn("linear", c), torch.tensor([1, 0.5, 0, -0.5, -1], dtype=torch.float64), atol=clamp_err, rtol=0
    )
    k = 0.3
    e = math.exp(-math.pi / (2 * k))
    scale = (1 + e) / (1 - e)
    ref = [scale * (1 - math.exp(t / k - math.pi / (2 * k))) / (1 + math.exp(t / k - math.pi / (2 * k))) for t in theta]
    torch.testing.assert_close(
        angular_fn("sigmoid", c, k=k), torch.tensor(ref, dtype=torch.float64), atol=clamp_err * 3, rtol=0
    )
    assert abs(float(angular_fn("sigmoid", c, k=k)[2])) < 1e-12


def test_patch_norm_matches_unfold():
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64)
    r = patch_norm2d(x, (3, 3), stride=2, padding=1, eps=0.0 + 1e-300)
    patches = F.unfold(x, 3, stride=2, padding=1)
    torch.testing.assert_close(r.flatten(1), patches.norm(dim=1))


@pytest.mark.parametrize("channels_last", [False, True])
def test_lower_precision_patch_norms_are_exact(channels_last):
    """bf16 inputs are squared after the cast to fp32, a few images at a time when large: the patch norms of a
    bf16 input equal the float64 ones of the same values (the square of a bf16 value rounded to bf16 would be
    off by up to 2^-9), whether or not the input is split."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for n in (3, 40):  # one piece; 40 * 16 * 40 * 40 elements are more than one piece holds
        x = torch.randn(n, 16, 40, 40).bfloat16().contiguous(memory_format=fmt)
        ref = patch_norm2d(x.double(), (3, 3), padding=1, eps=1e-4)
        r = patch_norm2d(x, (3, 3), padding=1, eps=1e-4)
        assert r.dtype == torch.float32
        torch.testing.assert_close(r.double(), ref, rtol=1e-6, atol=0)


@pytest.mark.parametrize("magnitude", ["sphere", "ball", "tanh"])
@pytest.mark.parametrize("angular", ANGULARS)
def test_bounded_operators_never_exceed_alpha(magnitude, angular):
    torch.manual_seed(1)
    w = torch.randn(6, 3, 3, 3)
    alpha = 1.7
    for scale in (1e-6, 1e-2, 1.0, 1e3, 1e6):
        x = torch.randn(4, 3, 8, 8) * scale
        out = decoupled_conv2d(x, w, magnitude=magnitude, angular=angular, alpha=alpha, rho=0.5, padding=1)
        assert torch.isfinite(out).all()
        assert out.abs().max() <= alpha * (1 + 1e-5)
    # Adversarial: every patch exactly along a kernel (theta = 0) and far beyond the radius.
    x = w[0:1].repeat(1, 1, 1, 1) * 1e4
    out = decoupled_conv2d(x, w, magnitude=magnitude, angular=angular, alpha=alpha, rho=0.5)
    assert out.abs().max() <= alpha * (1 + 1e-5)
    assert out[0, 0].item() == pytest.approx(alpha, rel=1e-3)


def _gradcheck_inputs():
    torch.manual_seed(3)
    w = torch.randn(2, 2, 2, 2, dtype=torch.float64)
    cases = [torch.randn(1, 2, 3, 3, dtype=torch.float64)]
    cases.append(torch.randn(1, 2, 3, 3, dtype=torch.float64) * 1e-3)  # patch norms near zero
    near0 = w[0:1] + 1e-2 * torch.randn(1, 2, 2, 2, dtype=torch.float64)  # angle near 0 to kernel 0
    cases.append(torch.cat([near0, -near0], dim=0))  # and near pi
    return w, cases


@pytest.mark.parametrize("magnitude,angular", list(itertools.product(MAGNITUDES, ANGULARS)))
def test_gradcheck_every_operator(magnitude, angular):
    w, cases = _gradcheck_inputs()
    for x in cases:
        x = x.clone().requires_grad_(True)
        weight = w.clone().requires_grad_(True)
        # rho chosen away from every test patch norm so that ball/seg are differentiable at the inputs
        fn = lambda x_, w_: decoupled_conv2d(x_, w_, magnitude=magnitude, angular=angular, rho=0.37, padding=0)
        out = fn(x, weight)
        assert torch.isfinite(out).all()
        assert torch.autograd.gradcheck(fn, (x, weight), eps=1e-7, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "stride,padding,dilation,kernel",
    [(2, 1, 1, 3), (1, 2, 2, 3), ((2, 1), (1, 0), (1, 2), 3), (1, "same", 1, 2), (1, "same", 2, 3)],
)
def test_gradcheck_strided_padded_dilated(stride, padding, dilation, kernel):
    """The fused backward's transposed box sum, per geometry (an even kernel with "same" pads one side more)."""
    torch.manual_seed(4)
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, kernel, kernel, dtype=torch.float64, requires_grad=True)
    fn = lambda x_, w_: decoupled_conv2d(
        x_, w_, magnitude="tanh", angular="cos", rho=0.9, stride=stride, padding=padding, dilation=dilation
    )
    assert torch.autograd.gradcheck(fn, (x, w), eps=1e-7, atol=1e-5, rtol=1e-4)
    lin = decoupled_conv2d(
        x, w, magnitude="linear", weighted="linear", stride=stride, padding=padding, dilation=dilation
    )
    torch.testing.assert_close(
        lin, F.conv2d(x, w, stride=stride, padding=padding, dilation=dilation), rtol=1e-10, atol=1e-10
    )


def test_input_gradient_comes_from_one_fused_backward():
    """The convolution and the patch norm share one backward over the full-size input: autograd reaches the
    input through a single node (not the convolution's plus the square's two products and their sum)."""
    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    out = DecoupledConv2d(4, 5, 3, padding=1, magnitude="tanh", relative_rho=True)(x)
    seen, stack, reaching_x = set(), [out.grad_fn], 0
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        for child, _ in node.next_functions:
            if child is not None and getattr(child, "variable", None) is x:
                reaching_x += 1
            stack.append(child)
    assert reaching_x == 1


@pytest.mark.parametrize("weighted", ["linear", "tanh-joint", "tanh-product"])
def test_gradcheck_weighted(weighted):
    w, cases = _gradcheck_inputs()
    for x in cases:
        x = x.clone().requires_grad_(True)
        fn = lambda x_, w_: decoupled_conv2d(x_, w_, magnitude="tanh", angular="sqcos", weighted=weighted, rho=0.7)
        assert torch.autograd.gradcheck(fn, (x, w.clone().requires_grad_(True)), eps=1e-7, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("magnitude", ["ball", "tanh"])
def test_ball_and_tanh_are_lipschitz_alpha_over_rho(magnitude):
    """Largest observed ||f(x) - f(x')|| / ||x - x'|| per channel stays under alpha / rho, and gets close to it."""
    torch.manual_seed(4)
    alpha, rho = 1.5, 0.8
    w = torch.randn(3, 4, dtype=torch.float64)
    bound = alpha / rho
    worst = torch.zeros(3, dtype=torch.float64)
    for scale in (0.1, 0.5, 1.0, 3.0):
        x = (torch.randn(4000, 4, dtype=torch.float64) * scale).requires_grad_(True)
        out = decoupled_linear(x, w, magnitude=magnitude, rho=rho, alpha=alpha)
        for c in range(3):
            (g,) = torch.autograd.grad(out[:, c].sum(), x, retain_graph=True)
            worst[c] = torch.maximum(worst[c], g.norm(dim=1).max())
        # finite differences too, independent of autograd
        d = torch.randn_like(x) * 1e-3
        diff = decoupled_linear(x + d, w, magnitude=magnitude, rho=rho, alpha=alpha) - out
        assert (diff.abs() / d.norm(dim=1, keepdim=True)).max() <= bound * (1 + 1e-6)
    assert (worst <= bound * (1 + 1e-6)).all()
    assert (worst >= 0.8 * bound).all()  # the bound is attained, not loose
    layer = DecoupledLinear(4, 3, bias=False, magnitude=magnitude, rho=rho, alpha=alpha)
    torch.testing.assert_close(layer_lipschitz(layer), torch.full((3,), bound))


def test_invalid_options_raise_with_valid_list():
    with pytest.raises(ValueError, match="rho must be > 0"):
        DecoupledConv2d(3, 4, 3, magnitude="tanh", rho=-1.0)
    with pytest.raises(ValueError, match="unknown magnitude function 'cube'.*valid: 'sphere'"):
        DecoupledConv2d(3, 4, 3, magnitude="cube")
    with pytest.raises(ValueError, match="unknown angular function"):
        DecoupledLinear(3, 4, magnitude="tanh", angular="tan")
    with pytest.raises(ValueError, match="needs magnitude='tanh'"):
        DecoupledLinear(3, 4, magnitude="ball", weighted="tanh-joint")
    layer = DecoupledConv2d(3, 4, 3, magnitude="tanh")
    with pytest.raises(ValueError, match=r"expects input \(N, 3, H, W\)"):
        layer(torch.randn(1, 5, 8, 8))


def test_learnable_and_relative_rho():
    torch.manual_seed(0)
    layer = DecoupledConv2d(3, 4, 3, magnitude="tanh", learnable_rho=True, relative_rho=True, padding=1)
    assert layer.rho_r.shape == (4,)
    x = torch.randn(8, 3, 8, 8) * 5
    layer.train()
    layer(x).sum().backward()
    assert layer.rho_r.grad is not None and torch.isfinite(layer.rho_r.grad).all()
    moved = float(layer.patch_norm_mean)
    assert moved != 1.0  # running mean updated in training
    layer.eval()
    layer(x)
    assert float(layer.patch_norm_mean) == moved  # frozen in eval
    state = layer.state_dict()
    assert "patch_norm_mean" in state and "rho_r" in state
    clone = DecoupledConv2d(3, 4, 3, magnitude="tanh", learnable_rho=True, relative_rho=True, padding=1).eval()
    clone.load_state_dict(state)
    torch.testing.assert_close(clone(x), layer(x))


def test_weight_projection_and_weighted_gradients():
    torch.manual_seed(0)
    model = torch.nn.Sequential(DecoupledConv2d(3, 4, 3, magnitude="tanh"), torch.nn.Flatten())
    x = torch.randn(2, 3, 5, 5)
    before = model(x)
    project_weights(model)
    torch.testing.assert_close(model[0].weight.flatten(1).norm(dim=1), torch.ones(4))
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-6)  # unweighted operator ignores ||w||
    model[0].weight.data *= 3
    model(x).sum().backward()
    g = model[0].weight.grad.clone()
    weight_gradients(model)
    torch.testing.assert_close(model[0].weight.grad, g * 3)


def test_orthogonality_penalty_zero_for_orthogonal_kernels():
    layer = DecoupledLinear(4, 4, magnitude="sphere")
    with torch.no_grad():
        layer.weight.copy_(torch.eye(4) * 2)
    model = torch.nn.Sequential(layer)
    assert float(orthogonality_penalty(model)) == pytest.approx(0.0, abs=1e-12)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    assert float(orthogonality_penalty(model, weight=1.0)) == pytest.approx(12 / 2)


def test_compiled_layer_matches_eager():
    """Under torch.compile the layer runs the plain formula (inductor fuses it); eager runs the fused backward.
    Both give the same outputs and gradients."""
    torch._dynamo.reset()
    torch.manual_seed(5)
    layer = DecoupledConv2d(3, 4, 3, stride=2, padding=1, magnitude="tanh", relative_rho=True)
    x = torch.randn(2, 3, 9, 9)
    results = []
    for fn in (layer, torch.compile(layer, backend="aot_eager")):
        xi = x.clone().requires_grad_(True)
        layer.zero_grad()
        out = fn(xi)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append((out.detach(), xi.grad, layer.weight.grad.clone()))
    for eager, compiled in zip(*results):
        torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)


def test_input_gradient_alone_skips_the_kernel_gradient():
    """An attack asks for the image's gradient only: the fused backward must not pay for the kernel's."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Masks(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.masks = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten.convolution_backward.default:
                self.masks.append(list(args[-1]))
            return func(*args, **(kwargs or {}))

    layer = DecoupledConv2d(3, 4, 3, padding=1, magnitude="tanh")
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    with Masks() as only_input:
        (grad,) = torch.autograd.grad(layer(x).sum(), x)
    with Masks() as both:
        layer(x).sum().backward()
    assert only_input.masks == [[True, False, False]] and grad is not None
    assert both.masks == [[True, True, False]] and layer.weight.grad is not None


def test_tracers_and_transforms_get_the_plain_formula(tmp_path):
    """TorchScript tracing and torch.func transforms have no place for a Python autograd function: the layer gives
    them the plain formula, with eager's values and gradients (a traced DCNet can be saved and loaded)."""
    torch.manual_seed(6)
    layer = DecoupledConv2d(3, 4, 3, padding=1, magnitude="tanh").eval()
    x = torch.randn(2, 3, 7, 7)
    eager = x.clone().requires_grad_(True)
    layer(eager).sum().backward()
    torch.jit.save(torch.jit.trace(layer, x), tmp_path / "layer.pt")
    loaded = torch.jit.load(tmp_path / "layer.pt")
    traced = x.clone().requires_grad_(True)
    loaded(traced).sum().backward()
    torch.testing.assert_close(loaded(x), layer(x))
    torch.testing.assert_close(traced.grad, eager.grad)
    torch.testing.assert_close(torch.func.grad(lambda x_: layer(x_).sum())(x), eager.grad)
    per_image = torch.func.vmap(torch.func.grad(lambda xi: layer(xi.unsqueeze(0)).sum()))(x)
    torch.testing.assert_close(per_image, eager.grad)


def test_same_padding_needs_stride_one():
    with pytest.raises(ConfigError, match="stride 1"):
        decoupled_conv2d(torch.randn(1, 2, 6, 6), torch.randn(3, 2, 3, 3), magnitude="tanh", padding="same", stride=2)
