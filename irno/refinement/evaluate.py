"""Evaluation of a trained IRNO: every metric of every refinement step, in one streaming pass.

For each batch of {x, h0, y} the iteration runs once, h_0 (the base) .. h_{K + extra}, under
inference mode on the device, and each step feeds fixed-size accumulators (`StepMetrics`): the
memory does not depend on the split's size. Each step costs one FFT2, shared by every spectral
metric; no Python loop runs over samples, fields or shells. Per step: The Well's VRMSE (physical
units), the reference's pooled VRMSE, band errors, the radial error spectrum E_k(m) and the
quantiles of its ratio to E_0, the per-sample spectral MSE, energy spectra. Non-finite values never
raise: a step with a non-finite mean, or above ``divergence_factor`` x step 0's, is diverged.

Detail: docs/method.md#spectral-metrics, docs/outputs.md#conventions-irnorefinementevaluate
"""

from __future__ import annotations

import itertools
import math
import os
import pickle
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from the_well.benchmark.metrics import binned_spectral_mse
from tqdm import tqdm

from irno import IrnoError, log
from irno.bands import BANDS
from irno.config import EvalConfig
from irno.data.batches import iterate_batches, sequential_batches
from irno.device import log_device, select_device
from irno.files import atomic_path, write_json, write_npz
from irno.metrics import PooledVrmse, well_metadata, well_vrmse
from irno.refinement.phi import load_phi, phi_memory_format, refine_steps

# Histogram of log10(E_k / E_0): 100 bins per decade over [1e-8, 1e8]; quantiles are reported as
# bin centres, within 0.005 decades (1.2 %) of the exact value.
RATIO_LOG10_RANGE = (-8, 8)
RATIO_BINS_PER_DECADE = 100


class RadialShells:
    """Integer shells m <= |kappa| < m + 1 of the integer wavenumbers kappa of an H x W grid."""

    def __init__(self, grid: tuple[int, int], device: torch.device | str = "cpu"):
        H, W = grid
        ky = torch.fft.fftfreq(H, d=1.0 / H, dtype=torch.float64)  # 0, 1, .., -1: FFT order
        kx = torch.fft.fftfreq(W, d=1.0 / W, dtype=torch.float64)
        kappa = torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)  # (H, W)
        self.index = kappa.floor().long().flatten().to(device)  # (H*W,) shell of each frequency
        self.count = int(self.index.max()) + 1  # floor(sqrt(2) N / 2) + 1 shells on an N x N grid

    def sum(self, power: torch.Tensor) -> torch.Tensor:
        """Sum of `power` (..., H, W), in FFT order, over each shell: (..., M)."""
        flat = power.flatten(-2)  # (..., H*W)
        return flat.new_zeros(*flat.shape[:-1], self.count).index_add_(-1, self.index, flat)


class LogQuantiles:
    """Streaming quantiles of positive values in a grid of cells, from fixed log10 histograms.

    Memory is fixed (cells x bins); values may arrive in any number of batches. Bin centres lie
    at log10 = lo + j / bins_per_decade, and a quantile is reported as the centre of the bin that
    holds numpy's "inverted_cdf" quantile: within half a bin of it, and exactly 1 for values of
    exactly 1. Values below the range (and 0) count as 0; values above it, inf and NaN as inf.
    A quantile that falls there reads 0 or inf; a cell without values reads NaN.
    """

    def __init__(
        self, shape: tuple[int, int], device, log10_range=RATIO_LOG10_RANGE, bins_per_decade=RATIO_BINS_PER_DECADE
    ):
        self.lo, self.bins_per_decade = log10_range[0], bins_per_decade
        self.n_bins = (log10_range[1] - log10_range[0]) * bins_per_decade + 1
        # slot 0: below the range; 1 .. n_bins: the bins; n_bins + 1: above the range, inf, NaN
        self.counts = torch.zeros(*shape, self.n_bins + 2, dtype=torch.int64, device=device)

    @property
    def resolution_decades(self) -> float:
        return 0.5 / self.bins_per_decade

    def add(self, row: int, values: torch.Tensor, mask: torch.Tensor) -> None:
        """Count values (..., cells) where mask is true into row `row` of the grid."""
        n_cells, n_slots = self.counts.shape[1:]
        position = (torch.log10(values.double()) - self.lo) * self.bins_per_decade + 0.5
        position = torch.nan_to_num(position, nan=math.inf)  # NaN counts as inf
        slot = position.clamp(-1, self.n_bins).floor().long() + 1  # (..., cells) in 0 .. n_bins + 1
        flat = (torch.arange(n_cells, device=slot.device) * n_slots + slot)[mask]
        self.counts[row] += torch.bincount(flat, minlength=n_cells * n_slots).view(n_cells, n_slots)

    def quantile(self, q: float) -> np.ndarray:
        """The q-quantile of every cell: (rows, cells) float64."""
        cumulative = self.counts.double().cumsum(-1)  # (rows, cells, slots)
        total = cumulative[..., -1:]
        slot = torch.searchsorted(cumulative, q * total).squeeze(-1)  # first slot with cum >= q n
        centre = 10.0 ** (self.lo + (slot - 1).double() / self.bins_per_decade)
        value = torch.where(slot == 0, 0.0, torch.where(slot == self.n_bins + 1, math.inf, centre))
        return torch.where(total.squeeze(-1) > 0, value, math.nan).cpu().numpy()


class StepMetrics:
    """Fixed-size accumulators of every metric at every step, updated one batch at a time.

    Only the per-sample spectral MSE (figure (b) of the paper, S floats per sample, part of the
    output) grows with the split; everything else has the size of one step's aggregates.
    """

    def __init__(
        self,
        n_samples: int,
        n_steps: int,
        K: int,
        field_names,
        grid,
        channel_mean,
        channel_std,
        example_index: int,
        device,
    ):
        self.n_samples, self.n_steps, self.K = n_samples, n_steps, K
        self.field_names, self.grid = list(field_names), tuple(grid)
        self.example_index = example_index
        self.meta = well_metadata(self.field_names, self.grid)
        self.shells = RadialShells(self.grid, device)
        F, S, M = len(self.field_names), n_steps, self.shells.count
        self.mean = torch.as_tensor(np.asarray(channel_mean), dtype=torch.float32, device=device).view(F, 1, 1)
        self.std = torch.as_tensor(np.asarray(channel_std), dtype=torch.float32, device=device).view(F, 1, 1)
        f64 = dict(dtype=torch.float64, device=device)
        self.vrmse_sum = torch.zeros(S, F, **f64)  # sums over samples
        self.pooled = [PooledVrmse(self.meta, device) for _ in range(S)]
        self.band_mse_sum = torch.zeros(S, len(BANDS), **f64)  # sums over samples and fields
        self.error_spectrum_sum = torch.zeros(S, M, **f64)
        self.energy_sum = torch.zeros(3, F, M, **f64)  # truth, base (k = 0), refined (k = K)
        self.ratios = LogQuantiles((S, M), device)
        self.spectral_mse = np.full((n_samples, S), np.nan)  # per sample (an output)
        self.example: dict[str, np.ndarray] = {}
        self.n_seen = 0

    def physical(self, h: torch.Tensor) -> torch.Tensor:
        return h * self.std + self.mean

    def add_batch(self, predictions: Iterable[torch.Tensor], y: torch.Tensor, rows: np.ndarray) -> None:
        """One batch: y (B, F, H, W), dataset rows (B,), and h_0 .. h_{S-1}, consumed one at a time."""
        B, F, H, W = y.shape
        half = W // 2 + 1  # rfft2 columns
        target_fft = torch.fft.fft2(y)  # (B, F, H, W) complex; the_well takes unnormalised FFTs
        target_amplitude = target_fft[..., :half].abs()  # (B, F, H, W//2+1), once for all steps
        target_physical = self.physical(y)
        self.energy_sum[0] += self.shells.sum((target_fft / (H * W)).abs().square()).sum(0)  # (F, M)
        example = np.flatnonzero(rows == self.example_index)
        if example.size:
            self.example["truth"] = target_physical[example[0]].float().cpu().numpy()
        spectral_mse = torch.empty(B, self.n_steps, dtype=torch.float64, device=y.device)
        n_predictions = 0
        for k, h in enumerate(predictions):
            n_predictions += 1
            h_fft = torch.fft.fft2(h)  # (B, F, H, W), the one FFT of this step
            h_physical = self.physical(h)
            vrmse = well_vrmse(h_physical, target_physical, self.meta)  # (B, F)
            self.vrmse_sum[k] += vrmse.double().sum(0)
            self.pooled[k].add(h, y)
            error_power = (h_fft - target_fft).abs().square()  # (B, F, H, W): |FFT(h_k - y)|^2
            # Band errors are linear in the error power, and only their sum over samples and fields
            # is kept: The Well's binned_spectral_mse bins that one summed spectrum (passed as the
            # amplitude of a difference to zero), B*F times less work than binning every field.
            summed = error_power.sum((0, 1)).sqrt()[None, :, :, None]  # (1, H, W, 1)
            bands = binned_spectral_mse.eval(summed, torch.zeros_like(summed), self.meta, fourier_input=True)
            self.band_mse_sum[k] += torch.stack(
                [bands[f"spectral_error_mse_per_bin_{i}"].double().sum() for i in range(len(BANDS))]
            )
            error = self.shells.sum(error_power / (H * W) ** 2)  # (B, F, M): E_k(m)
            self.error_spectrum_sum[k] += error.double().sum((0, 1))
            if k == 0:
                base_error = error
            self.ratios.add(k, error / base_error, mask=torch.isfinite(base_error) & (base_error > 0))
            # rfft2(norm="ortho") is the first W // 2 + 1 columns of fft2, scaled by 1 / sqrt(H W)
            amplitude_error = (h_fft[..., :half].abs() - target_amplitude) / math.sqrt(H * W)
            spectral_mse[:, k] = amplitude_error.square().mean((1, 2, 3))
            for which, step in ((1, 0), (2, self.K)):  # energy spectra and example of h_0 and h_K
                if k == step:
                    self.energy_sum[which] += self.shells.sum((h_fft / (H * W)).abs().square()).sum(0)
                    if example.size:
                        self.example["base" if step == 0 else "refined"] = h_physical[example[0]].float().cpu().numpy()
        if n_predictions != self.n_steps:
            raise ValueError(f"expected {self.n_steps} predictions per batch, got {n_predictions}")
        self.spectral_mse[rows] = spectral_mse.cpu().numpy()
        self.n_seen += B

    def result(self, divergence_factor: float) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
        """per_step table and spectra arrays (docs/outputs.md)."""
        if self.n_seen != self.n_samples:
            raise ValueError(f"saw {self.n_seen} samples, expected {self.n_samples}")
        n, F = self.n_samples, len(self.field_names)
        with np.errstate(divide="ignore", invalid="ignore"):
            vrmse_field = self.vrmse_sum.cpu().numpy() / n  # (S, F)
            vrmse = vrmse_field.mean(1)
            band_mse = self.band_mse_sum.cpu().numpy() / (n * F)  # (S, 3)
            band_ratio = band_mse / band_mse[0]
            pooled = np.array([p.value() for p in self.pooled])  # NaN where nothing was finite
            diverged = ~np.isfinite(vrmse) | (vrmse > divergence_factor * vrmse[0])
        table = {
            "step": np.arange(self.n_steps),
            "vrmse": vrmse,
            "vrmse_pooled_cf": pooled,
            "spectral_mse": self.spectral_mse.mean(0),
        }
        table |= {f"band_mse_{band}": band_mse[:, i] for i, band in enumerate(BANDS)}
        table |= {f"band_ratio_{band}": band_ratio[:, i] for i, band in enumerate(BANDS)}
        table["diverged"] = diverged
        table |= {f"vrmse_{name}": vrmse_field[:, i] for i, name in enumerate(self.field_names)}
        energy = self.energy_sum.cpu().numpy() / n  # (3, F, M)
        spectra = {
            "steps": np.arange(self.n_steps),
            "K": np.array(self.K),
            "shells": np.arange(self.shells.count),
            "nyquist": np.array(min(self.grid) / 2),
            "ratio_median": self.ratios.quantile(0.5),
            "ratio_q25": self.ratios.quantile(0.25),
            "ratio_q75": self.ratios.quantile(0.75),
            "error_spectrum_mean": self.error_spectrum_sum.cpu().numpy() / (n * F),
            "spectral_mse": self.spectral_mse,
            "energy_wavenumber": np.arange(self.shells.count) + 0.5,  # shell centres
            "energy_truth": energy[0],
            "energy_base": energy[1],
            "energy_refined": energy[2],
            "field_names": np.array(self.field_names, dtype=str),
            "example_index": np.array(self.example_index),
            "example_truth": self.example["truth"],
            "example_base": self.example["base"],
            "example_refined": self.example["refined"],
        }
        return pd.DataFrame(table), spectra


@dataclass
class EvalResult:
    summary: dict  # the scalars of metrics.json other than the labels (dataset, base, ...)
    per_step: pd.DataFrame  # per_step.csv
    spectra: dict[str, np.ndarray]  # spectra.npz


def evaluate(
    phi: nn.Module,
    dataset,
    *,
    K: int,
    alpha: float,
    cfg: EvalConfig,
    device: torch.device | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> EvalResult:
    """Metrics of h_0 .. h_{K + cfg.extra_steps} on every sample of `dataset` (puts Phi in eval mode).

    `dataset`: items {"x": (T_in*F, H, W), "h0": (F, H, W), "y": (F, H, W)} of normalised data
    (the contract's RefinementDataset) with attributes field_names, grid, channel_mean,
    channel_std, and optionally a vectorised batch(rows) -> (x, h0, y). `memory_format`: the
    layout Phi runs in (`irno.refinement.phi.phi_memory_format`).
    """
    n = len(dataset)
    if n == 0:
        raise IrnoError("the evaluation dataset has no samples")
    if not 0 <= cfg.example_index < n:
        raise IrnoError(
            f"config key 'evaluate.example_index': {cfg.example_index} is not a sample of this split (0 .. {n - 1})"
        )
    device = device or select_device(cfg.device)
    n_steps = K + cfg.extra_steps + 1
    metrics = StepMetrics(
        n,
        n_steps,
        K,
        dataset.field_names,
        dataset.grid,
        dataset.channel_mean,
        dataset.channel_std,
        cfg.example_index,
        device,
    )
    phi = phi.to(device).eval()
    batches = sequential_batches(np.arange(n), cfg.batch_size)
    with torch.inference_mode():
        for rows, (x, h0, y) in tqdm(
            zip(batches, iterate_batches(dataset, batches), strict=True),
            total=len(batches),
            desc="evaluate",
            unit="batch",
            mininterval=30,
        ):
            x, h0, y = (t.to(device, torch.float32, non_blocking=True, memory_format=memory_format) for t in (x, h0, y))
            metrics.add_batch(itertools.chain([h0], refine_steps(phi, x, h0, alpha, n_steps - 1)), y, rows)
    per_step, spectra = metrics.result(cfg.divergence_factor)
    return EvalResult(
        summarise(
            per_step, K=K, alpha=alpha, extra_steps=cfg.extra_steps, field_names=metrics.field_names, n_samples=n
        ),
        per_step,
        spectra,
    )


def summarise(
    per_step: pd.DataFrame, *, K: int, alpha: float, extra_steps: int, field_names: list[str], n_samples: int
) -> dict:
    """The scalars of metrics.json, from the per-step table."""
    vrmse, pooled = per_step["vrmse"].to_numpy(), per_step["vrmse_pooled_cf"].to_numpy()
    diverged_steps = per_step["step"][per_step["diverged"]].tolist()
    with np.errstate(divide="ignore", invalid="ignore"):
        summary = {
            "n_samples": n_samples,
            "K": K,
            "alpha": alpha,
            "extra_steps": extra_steps,
            "field_names": list(field_names),
            "vrmse_base": vrmse[0],
            "vrmse_refined": vrmse[K],
            "vrmse_final": vrmse[-1],
            "gain_pct": 100 * (vrmse[0] - vrmse[K]) / vrmse[0],
            "vrmse_pooled_cf_base": pooled[0],
            "vrmse_pooled_cf_refined": pooled[K],
            "vrmse_pooled_cf_final": pooled[-1],
            "gain_pct_pooled_cf": 100 * (pooled[0] - pooled[K]) / pooled[0],
        }
    summary |= {f"band_ratio_{band}": per_step[f"band_ratio_{band}"].iloc[K] for band in BANDS}
    summary |= {"diverged": bool(diverged_steps), "first_diverged_step": diverged_steps[0] if diverged_steps else None}
    return summary


def write_outputs(out_dir: str | os.PathLike, metrics: dict, result: EvalResult) -> None:
    """per_step.csv, spectra.npz, then metrics.json, each written atomically."""
    out_dir = Path(out_dir)
    with atomic_path(out_dir / "per_step.csv") as tmp:
        result.per_step.to_csv(tmp, index=False)
    write_npz(out_dir / "spectra.npz", **result.spectra)
    write_json(out_dir / "metrics.json", metrics)


def training_outcome(training: dict | None) -> dict:
    """metrics.json's ``training_*`` keys from a checkpoint's ``training`` record (absent: completed)."""
    training = training or {"status": "completed"}
    diverged = training["status"] == "diverged"
    return {
        "training_status": training["status"],
        "training_diverged_epoch": training["epoch"] if diverged else None,
        "training_message": training.get("message", ""),
    }


def evaluate_checkpoint(
    cfg: EvalConfig,
    checkpoint: str | os.PathLike,
    dataset,
    out_dir: str | os.PathLike,
    *,
    dataset_name: str,
    base: str,
    experiment: str,
    trained_on_base: str | None = None,
    split: str = "test",
) -> dict:
    """Evaluate a run's `checkpoint.pt` (Phi, K and alpha from it) on `dataset`; write EVAL_DIR.

    Returns the metrics.json mapping. `trained_on_base` defaults to `base`.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise IrnoError(f"{path}: checkpoint not found")
    device = select_device(cfg.device)
    log_device(device, "fp32")
    try:
        phi, phi_cfg, ckpt = load_phi(path, device)
    except IrnoError as e:
        raise IrnoError(f"{path}: {e}") from None
    except (RuntimeError, KeyError, EOFError, ValueError, pickle.UnpicklingError) as e:
        raise IrnoError(f"{path}: not a readable IRNO checkpoint ({type(e).__name__}: {e})") from None
    n_fields, x_channels = len(dataset.field_names), dataset[0]["x"].shape[0]
    if (ckpt["in_channels"], ckpt["out_channels"]) != (x_channels + n_fields, n_fields):
        raise IrnoError(
            f"{path}: Phi takes {ckpt['in_channels']} channels and returns {ckpt['out_channels']}, but the data have "
            f"{x_channels} input channels and {n_fields} fields ({x_channels + n_fields} -> {n_fields} expected)"
        )
    K, alpha = phi_cfg.train.K, phi_cfg.train.alpha
    memory_format = phi_memory_format(phi_cfg.network, phi_cfg.train.channels_last)
    result = evaluate(phi, dataset, K=K, alpha=alpha, cfg=cfg, device=device, memory_format=memory_format)
    base_identity = getattr(dataset, "base_identity", None) or {}  # the cache's record of the base
    metrics = {
        "dataset": dataset_name,
        "base": base,
        "experiment": experiment,
        "split": split,
        "trained_on_base": trained_on_base or base,
        "base_forward": base_identity.get("forward"),
        "base_pretrained": base_identity.get("pretrained") or None,
        "base_revision": base_identity.get("revision"),
        **result.summary,
        "divergence_factor": cfg.divergence_factor,
        "checkpoint_epoch": ckpt.get("epoch"),
        "checkpoint_selected": ckpt.get("selected"),
        **training_outcome(ckpt.get("training")),
    }
    write_outputs(out_dir, metrics, result)
    log.info(
        "%s/%s/%s: VRMSE %.4g -> %.4g at K=%d (%.1f %%), pooled %.4g -> %.4g%s",
        dataset_name, base, experiment, metrics["vrmse_base"], metrics["vrmse_refined"], K, metrics["gain_pct"],
        metrics["vrmse_pooled_cf_base"], metrics["vrmse_pooled_cf_refined"],
        f"; diverged from k={metrics['first_diverged_step']}" if metrics["diverged"] else "",
    )  # fmt: skip
    if metrics["training_status"] != "completed":
        log.warning("%s: training status %r: %s", path, metrics["training_status"], metrics["training_message"])
    return metrics
