"""The objective (docs/method.md#the-objective): spectral loss, lambda schedule, warm-up, the whole batch objective."""

import math

import pytest
import torch
import torch.nn.functional as F

from irno.config import LossConfig, NetworkConfig
from irno.refinement.objective import (
    lambda_schedule,
    objective,
    spectral_loss,
    spectral_weights,
    term_weights,
    warmup_weight,
)
from irno.refinement.phi import build_phi

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _mode(H: int, W: int, ky: int, kx: int, amplitude: float = 1.0) -> torch.Tensor:
    """(1, 1, H, W) amplitude * cos(2 pi (ky y / H + kx x / W))."""
    y = torch.arange(H, dtype=torch.float64)[:, None]
    x = torch.arange(W, dtype=torch.float64)[None, :]
    return (amplitude * torch.cos(2 * math.pi * (ky * y / H + kx * x / W)))[None, None]


def test_spectral_loss_is_zero_for_a_phase_shifted_copy():
    torch.manual_seed(0)
    target = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    shifted = torch.roll(target, shifts=(5, -11), dims=(-2, -1))  # same amplitudes, other phases
    assert F.mse_loss(shifted, target) > 0.5  # far apart in space ...
    assert spectral_loss(shifted, target, 1.5) < 1e-20  # ... identical in amplitude
    assert spectral_loss(1.1 * target, target, 1.5) > 1e-3  # the loss does see amplitudes


def test_spectral_loss_of_single_modes_by_hand():
    # 4 x 4 grid, lambda = 2: rho = 1 + 4 (fy^2 + fx^2) on the rfft grid fy in {0, 1/4, -1/2, -1/4},
    # fx in {0, 1/4, 1/2}; its mean is (12 + 4 * 2.375) / 12 = 21.5 / 12. A unit cosine has
    # orthonormal amplitude sqrt(16) / 2 = 2 in each rfft bin it occupies (squared: 4).
    zero = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    # (ky, kx) = (1, 1): one bin, rho = 1.5 -> 1.5 / (21.5 / 12) * 4 / 12 = 12 / 43
    assert spectral_loss(_mode(4, 4, 1, 1), zero, 2.0).item() == pytest.approx(12 / 43, rel=1e-12)
    # (1, 0): the kx = 0 column holds both ky = 1 and ky = -1, rho = 1.25 each -> 20 / 43
    assert spectral_loss(_mode(4, 4, 1, 0), zero, 2.0).item() == pytest.approx(20 / 43, rel=1e-12)
    # amplitude 3 on (1, 1): (2 * 3 - 0)^2 = 36 instead of 4
    assert spectral_loss(_mode(4, 4, 1, 1, 3.0), zero, 2.0).item() == pytest.approx(9 * 12 / 43, rel=1e-12)


def test_spectral_weights_are_normalised_and_cached():
    rho = spectral_weights(8, 6, 1.0, torch.device("cpu"), torch.float32)
    assert rho.shape == (8, 4)
    assert rho.mean().item() == pytest.approx(1.0, rel=1e-6)
    assert rho[0, 0] == rho.min() and rho[4, 3] == rho.max()  # DC lowest, (Nyquist, Nyquist) highest
    assert spectral_weights(8, 6, 1.0, torch.device("cpu"), torch.float32) is rho
    assert spectral_weights(8, 6, 2.0, torch.device("cpu"), torch.float32) is not rho


def test_lambda_schedule():
    assert lambda_schedule(0, 6, 1.0, 2.0) == 1.0
    assert lambda_schedule(5, 6, 1.0, 2.0) == 2.0
    assert lambda_schedule(2, 5, 1.0, 2.0) == 1.5
    assert lambda_schedule(0, 1, 1.0, 2.0) == 1.0  # K = 1: the start value


def test_warmup_convention():
    assert [warmup_weight(0.01, e, 5) for e in range(1, 7)] == pytest.approx([0.002, 0.004, 0.006, 0.008, 0.01, 0.01])
    assert warmup_weight(0.01, 1, 0) == 0.01
    assert term_weights(LossConfig(), 1) == pytest.approx((1.0, 0.002))  # spectral: no warm-up by default


def _loop_objective(phi, x, h0, y, cfg: LossConfig, K, alpha, beta_s, beta_fp):
    """The objective written as the reference loop: one step, one MSE, one spectral loss at a time."""
    h, total = h0, 0.0
    for k in range(K):
        h = h + alpha * phi(torch.cat([x, h], dim=1))
        lam = lambda_schedule(k, K, cfg.lambda_start, cfg.lambda_end)
        total = total + F.mse_loss(h, y) + beta_s * spectral_loss(h, y, lam)
    return total / K + beta_fp * phi(torch.cat([x, y], dim=1)).pow(2).mean()


def test_objective_matches_the_loop_form():
    torch.manual_seed(0)
    phi = build_phi(NetworkConfig(base_channels=4, depth=2), 4 + 2, 2)
    x, h0, y = torch.randn(3, 4, 16, 16), torch.randn(3, 2, 16, 16), torch.randn(3, 2, 16, 16)
    cfg = LossConfig(lambda_start=0.5, lambda_end=2.5)
    total, terms = objective(phi, x, h0, y, cfg, K=4, alpha=0.3, beta_spectral=0.7, beta_fixed_point=0.05)
    expected = _loop_objective(phi, x, h0, y, cfg, 4, 0.3, 0.7, 0.05)
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert total.item() == pytest.approx(
        (terms["spatial"] + 0.7 * terms["spectral"] + 0.05 * terms["fixed_point"]).item(), rel=1e-6
    )
    # gradients flow through the whole unroll
    total.backward()
    assert all(p.grad is not None for p in phi.parameters())


def test_zero_weights_skip_their_terms():
    torch.manual_seed(0)
    phi = build_phi(NetworkConfig(base_channels=4, depth=2), 6, 2)
    x, h0, y = torch.randn(2, 4, 16, 16), torch.randn(2, 2, 16, 16), torch.randn(2, 2, 16, 16)
    total, terms = objective(phi, x, h0, y, LossConfig(), K=2, alpha=0.2, beta_spectral=0.0, beta_fixed_point=0.0)
    assert terms["spectral"].item() == 0 and terms["fixed_point"].item() == 0
    assert total.item() == pytest.approx(terms["spatial"].item())
