"""The training objective (docs/method.md#the-objective): spatial MSE, spectral loss, fixed-point term, warm-ups.

For one batch, unrolling h_1 .. h_K from h_0 with gradients through the whole chain:

    L = (1/K) sum_k [ MSE(h_{k+1}, y) + beta_s * L_spec(h_{k+1}, y; lambda_k) ]
        + beta_fp * mean( Phi(cat[x, y])^2 )

The spectral term and the warm-ups follow the released reference (detail: the doc above).
Everything is vectorised: the K predictions are stacked and transformed with one FFT against one
cached (K, H, W//2+1) weight stack; the terms stay tensors (no host sync inside the unroll).
"""

from __future__ import annotations

import functools

import torch
import torch.nn as nn

from irno.config import LossConfig
from irno.refinement.phi import conditioned, refine_steps


def lambda_schedule(k: int, K: int, start: float, end: float) -> float:
    """Progressive exponent lambda_k for step k = 0 .. K-1 (start at k = 0, end at k = K-1)."""
    return start + (end - start) * k / max(K - 1, 1)


def warmup_weight(weight: float, epoch: int, warmup_epochs: int) -> float:
    """`weight` scaled by epoch / warmup_epochs while epoch < warmup_epochs (epochs count from 1)."""
    if warmup_epochs > 0 and epoch < warmup_epochs:
        return weight * epoch / warmup_epochs
    return weight


def term_weights(cfg: LossConfig, epoch: int) -> tuple[float, float]:
    """(beta_spectral, beta_fixed_point) in effect during `epoch` (from 1), warm-ups applied."""
    return (
        warmup_weight(cfg.spectral_weight, epoch, cfg.spectral_warmup_epochs),
        warmup_weight(cfg.fixed_point_weight, epoch, cfg.fixed_point_warmup_epochs),
    )


@functools.lru_cache(maxsize=64)
def spectral_weights(H: int, W: int, lam: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """rho on the rfft2 grid, (H, W//2+1), normalised to mean 1. Cached: treat as read-only."""
    fy = torch.fft.fftfreq(H, dtype=torch.float64)  # (H,) cycles per sample, Nyquist 0.5
    fx = torch.fft.rfftfreq(W, dtype=torch.float64)  # (W//2+1,)
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)  # (H, W//2+1)
    rho = 1.0 + (radius / 0.5) ** lam
    return (rho / rho.mean()).to(device=device, dtype=dtype)


@functools.lru_cache(maxsize=64)
def _spectral_weight_stack(
    H: int, W: int, lams: tuple[float, ...], device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """(len(lams), 1, 1, H, W//2+1): one weight grid per unrolled step, broadcast over (B, C)."""
    return torch.stack([spectral_weights(H, W, lam, device, dtype) for lam in lams])[:, None, None]


def amplitude(u: torch.Tensor) -> torch.Tensor:
    """|rfft2(u, norm="ortho")| over the last two axes, in float32 at least: (..., H, W//2+1)."""
    # FFTs have no bf16 kernels; under autocast the predictions may arrive in reduced precision.
    return torch.fft.rfft2(u.float() if u.dtype in (torch.float16, torch.bfloat16) else u, norm="ortho").abs()


def spectral_loss(pred: torch.Tensor, target: torch.Tensor, lam: float) -> torch.Tensor:
    """L_spec(pred, target; lambda) for (B, C, H, W) tensors: a scalar."""
    H, W = pred.shape[-2:]
    amp_pred, amp_target = amplitude(pred), amplitude(target)  # (B, C, H, W//2+1)
    rho = spectral_weights(H, W, float(lam), pred.device, amp_pred.dtype)
    return (rho * (amp_pred - amp_target) ** 2).mean()


def objective(
    phi: nn.Module,
    x: torch.Tensor,
    h0: torch.Tensor,
    y: torch.Tensor,
    cfg: LossConfig,
    *,
    K: int,
    alpha: float,
    beta_spectral: float,
    beta_fixed_point: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The objective for one batch: (total, {"spatial", "spectral", "fixed_point"}).

    x (B, T*F, H, W), h0 and y (B, F, H, W). The terms are unweighted (spatial and spectral
    averaged over the K steps); total = spatial + beta_spectral * spectral
    + beta_fixed_point * fixed_point. A zero weight skips its term's computation (its value is
    then reported as 0).
    """
    hs = torch.stack(list(refine_steps(phi, x, h0, alpha, K)))  # (K, B, F, H, W), gradients through the chain
    spatial = ((hs - y) ** 2).mean()  # = (1/K) sum_k MSE(h_{k+1}, y): every step has the same size
    zero = hs.new_zeros(())
    spectral = zero
    if beta_spectral > 0:
        H, W = y.shape[-2:]
        lams = tuple(float(lambda_schedule(k, K, cfg.lambda_start, cfg.lambda_end)) for k in range(K))
        amp_target = amplitude(y)  # (B, F, H, W//2+1), once for all K steps
        amp_steps = amplitude(hs)  # (K, B, F, H, W//2+1)
        rho = _spectral_weight_stack(H, W, lams, hs.device, amp_steps.dtype)  # (K, 1, 1, H, W//2+1)
        spectral = (rho * (amp_steps - amp_target) ** 2).mean()  # mean over k of L_spec(h_{k+1}; lambda_k)
    fixed_point = zero
    if beta_fixed_point > 0:
        fixed_point = conditioned(phi, x)(y).float().pow(2).mean()  # Phi(cat[x, y]) -> 0 at the solution
    total = spatial + beta_spectral * spectral + beta_fixed_point * fixed_point
    return total, {"spatial": spatial, "spectral": spectral, "fixed_point": fixed_point}
