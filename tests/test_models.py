"""Phi (docs/method.md#phi) and the iteration h_{k+1} = h_k + alpha * Phi(cat[x, h_k])."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from irno.config import NetworkConfig
from irno.refinement.phi import (
    ChannelLayerNorm,
    PaddedConv2d,
    UNetPhi,
    build_phi,
    circular_pad,
    conditioned,
    refine_steps,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_shape_and_widths():
    phi = UNetPhi(55, 11)
    out = phi(torch.randn(2, 55, 32, 32))
    assert out.shape == (2, 11, 32, 32)
    assert [e[0].out_channels for e in phi.encoders] == [16, 32, 64, 128]
    assert phi.bottleneck[0].out_channels == 256
    assert all(e[0].padding_mode == "circular" for e in phi.encoders)


def test_output_near_zero_at_initialisation():
    phi = UNetPhi(55, 11)
    x = torch.randn(4, 55, 32, 32)
    out = phi(x)
    # The hidden features are normalised (O(1)); the gain-0.1 output layer keeps Phi small.
    assert out.abs().mean() < 0.1 * x.abs().mean()
    assert torch.all(phi.output.bias == 0)


def _shift_error(phi, shift=(16, 32)) -> float:
    x = torch.randn(2, 55, 32, 32)
    shifted = phi(torch.roll(x, shifts=shift, dims=(-2, -1)))
    return (shifted - torch.roll(phi(x), shifts=shift, dims=(-2, -1))).abs().max().item()


@pytest.mark.parametrize("norm", ["layer", "batch", "group"])
def test_periodic_shift_equivariance(norm):
    # A shift by a multiple of 2^depth is an even shift at every pooled level, so it commutes
    # with max-pooling; with circular convolutions and periodic up-sampling the whole U-Net
    # commutes with it.
    phi = UNetPhi(55, 11, norm=norm, upsample="periodic").eval()
    assert _shift_error(phi) < 1e-5


def test_equivariance_breaks_without_periodicity():
    # The test above can fail: zero padding shows the boundary, and so does the reference's
    # align_corners up-sampling (the default, kept for comparability with the paper).
    assert _shift_error(UNetPhi(55, 11, padding="zeros", upsample="periodic").eval()) > 1e-3
    assert _shift_error(UNetPhi(55, 11).eval()) > 1e-3
    # A shift by the whole period is the identity for any Phi.
    assert _shift_error(UNetPhi(55, 11).eval(), shift=(32, 32)) == 0.0


def test_channel_layernorm_equals_permuted_layernorm():
    x = torch.randn(3, 24, 8, 8)
    ours = ChannelLayerNorm(24)
    ref = nn.LayerNorm(24)
    with torch.no_grad():
        ref.weight.normal_()
        ref.bias.normal_()
    ours.load_state_dict(ref.state_dict())
    expected = ref(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    assert torch.allclose(ours(x), expected, atol=1e-5)
    assert torch.allclose(ours(x.contiguous(memory_format=torch.channels_last)), expected, atol=1e-5)


def test_fno_backbone_same_interface():
    phi = build_phi(NetworkConfig(backbone="fno", fno_modes=8, fno_hidden_channels=16, fno_layers=2), 55, 11)
    out = phi(torch.randn(2, 55, 32, 32))
    assert out.shape == (2, 11, 32, 32)
    assert out.abs().mean() < 1.0


def test_refine_steps_is_the_iteration():
    phi = build_phi(NetworkConfig(base_channels=4, depth=2), 6, 2)
    x, h0 = torch.randn(1, 4, 16, 16), torch.randn(1, 2, 16, 16)
    steps = list(refine_steps(phi, x, h0, alpha=0.3, n_steps=3))
    h = h0
    for got in steps:
        h = h + 0.3 * phi(torch.cat([x, h], dim=1))
        # x's share of the first convolution is computed once: the same sums, in another order
        torch.testing.assert_close(got, h, rtol=1e-5, atol=1e-6)
    # gradients flow through the whole chain
    steps[-1].sum().backward()
    assert phi.encoders[0][0].weight.grad is not None


@pytest.mark.parametrize("padding", ["circular", "zeros"])
def test_phi_given_x_is_phi_of_the_concatenation_with_its_gradients(padding):
    torch.manual_seed(0)
    phi = UNetPhi(6, 2, base_channels=4, depth=2, padding=padding)
    x, h = torch.randn(2, 4, 16, 16), torch.randn(2, 2, 16, 16, requires_grad=True)
    given, whole = conditioned(phi, x)(h), phi(torch.cat([x, h], dim=1))
    torch.testing.assert_close(given, whole, rtol=1e-5, atol=1e-6)
    grads = torch.autograd.grad(given.square().sum(), [h, *phi.parameters()])
    expected = torch.autograd.grad(whole.square().sum(), [h, *phi.parameters()])
    for got, want in zip(grads, expected, strict=True):
        # the same sums in another order: float32 rounding relative to the gradient's scale
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * max(1.0, want.abs().max().item()))


@pytest.mark.parametrize("padding", [(1, 1), (2, 1), (0, 3)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_circular_pad_equals_torch_circular_padding_with_its_gradient(padding, channels_last):
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_()
    ph, pw = padding
    padded = circular_pad(x, padding)
    assert torch.equal(padded, F.pad(x, (pw, pw, ph, ph), mode="circular"))
    assert padded.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    assert torch.autograd.gradcheck(lambda t: circular_pad(t, padding), (x,))
    (grad,) = torch.autograd.grad(padded, x, torch.randn_like(padded))  # the backward keeps the layout too
    assert grad.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def test_padded_conv_is_torchs_conv_with_the_same_state_dict():
    for mode in ("circular", "zeros"):
        ours = PaddedConv2d(4, 5, kernel_size=3, padding=1, padding_mode=mode)
        ref = nn.Conv2d(4, 5, kernel_size=3, padding=1, padding_mode=mode)
        ref.load_state_dict(ours.state_dict())
        x = torch.randn(2, 4, 8, 8, requires_grad=True)
        out, expected = ours(x), ref(x)
        torch.testing.assert_close(out, expected)
        (grad,) = torch.autograd.grad(out.square().sum(), x)
        (expected_grad,) = torch.autograd.grad(expected.square().sum(), x)
        torch.testing.assert_close(grad, expected_grad)
