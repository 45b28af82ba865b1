"""Synthetic evaluation outputs, written exactly as docs/outputs.md specifies.

`write_eval_outputs` writes one run's ``metrics.json``, ``per_step.csv`` and ``spectra.npz`` with
made-up but self-consistent numbers (errors that fall with the refinement step, optionally
blowing up from a given step) and returns what it wrote, so tests of anything that reads
evaluation outputs (tables, figures, the workflow) can compare against the source numbers.
`PersistenceOnStore` serves a prepared store with the last input frame as h0, the way the
trainer and the evaluation read a base-prediction cache.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from irno.files import atomic_path, write_json, write_npz

DOCS = Path(__file__).resolve().parents[1] / "docs" / "outputs.md"

ACTIVE_MATTER_FIELDS = [
    "concentration", "velocity_x", "velocity_y",
    "D_xx", "D_xy", "D_yx", "D_yy", "E_xx", "E_xy", "E_yx", "E_yy",
]  # fmt: skip


def write_eval_outputs(
    directory: str | Path,
    *,
    dataset: str = "active_matter",
    base: str = "FNO",
    experiment: str = "irno",
    trained_on_base: str | None = None,
    K: int = 6,
    alpha: float = 0.2,
    extra_steps: int = 6,
    n_samples: int = 5,
    grid: int = 16,
    field_names: list[str] = ACTIVE_MATTER_FIELDS,
    diverge_from: int | None = None,
    seed: int = 0,
) -> dict:
    """Write one run's evaluation outputs under `directory`; return {metrics, per_step, spectra}.

    With `diverge_from = d` the errors grow a thousandfold per step from step d and the last
    step is infinite; those steps are flagged diverged.
    """
    rng = np.random.default_rng(seed)
    directory = Path(directory)
    n_steps, n_fields = K + extra_steps + 1, len(field_names)
    steps = np.arange(n_steps)
    decay = 0.35 + 0.65 * np.exp(-steps / rng.uniform(1.5, 3.0))  # (S,) 1 at k = 0, falling
    diverged = np.zeros(n_steps, dtype=bool)
    if diverge_from is not None:
        diverged[diverge_from:] = True
        decay[diverge_from:] = decay[diverge_from - 1] * 1e3 ** np.arange(1, n_steps - diverge_from + 1)
        decay[-1] = np.inf
    growth = decay[:, None]  # (S, 1)

    vrmse_fields = rng.uniform(0.1, 0.6, n_fields)[None, :] * growth  # (S, F)
    vrmse = vrmse_fields.mean(1)
    vrmse_pooled = rng.uniform(0.2, 0.4) * vrmse
    per_sample_spectral = rng.uniform(0.5, 2.0, (n_samples, 1)) * 1e-3 * decay[None, :]  # (N, S)
    band_mse = {
        band: rng.uniform(0.5, 2.0) * 10.0**-i * decay**p
        for i, (band, p) in enumerate(zip(("low", "mid", "high"), (1, 2, 3)))
    }
    band_ratio = {band: values / values[0] for band, values in band_mse.items()}

    per_step = pd.DataFrame(
        {
            "step": steps,
            "vrmse": vrmse,
            "vrmse_pooled_cf": vrmse_pooled,
            "spectral_mse": per_sample_spectral.mean(0),
            **{f"band_mse_{band}": values for band, values in band_mse.items()},
            **{f"band_ratio_{band}": values for band, values in band_ratio.items()},
            "diverged": diverged,
            **{f"vrmse_{name}": vrmse_fields[:, i] for i, name in enumerate(field_names)},
        }
    )
    first = int(np.argmax(diverged)) if diverged.any() else None
    metrics = {
        "dataset": dataset,
        "base": base,
        "experiment": experiment,
        "split": "test",
        "trained_on_base": trained_on_base or base,
        "n_samples": n_samples,
        "K": K,
        "alpha": alpha,
        "extra_steps": extra_steps,
        "field_names": list(field_names),
        "vrmse_base": float(vrmse[0]),
        "vrmse_refined": float(vrmse[K]),
        "vrmse_final": float(vrmse[-1]),
        "gain_pct": float(100 * (vrmse[0] - vrmse[K]) / vrmse[0]),
        "vrmse_pooled_cf_base": float(vrmse_pooled[0]),
        "vrmse_pooled_cf_refined": float(vrmse_pooled[K]),
        "vrmse_pooled_cf_final": float(vrmse_pooled[-1]),
        "gain_pct_pooled_cf": float(100 * (vrmse_pooled[0] - vrmse_pooled[K]) / vrmse_pooled[0]),
        **{f"band_ratio_{band}": float(values[K]) for band, values in band_ratio.items()},
        "diverged": bool(diverged.any()),
        "first_diverged_step": first,
    }

    n_shells = int(math.floor(math.sqrt(2) * grid / 2)) + 1
    shells = np.arange(n_shells)
    # error ratio falls more at high shells: the spectral-bias correction the method claims
    ratio_median = np.exp(np.log(np.maximum(decay[:, None], 1e-300)) * (1 + shells[None, :] / n_shells))
    ratio_median[~np.isfinite(decay)] = np.inf
    error_spectrum_0 = 10.0 ** (-shells / 8)
    n_bins = grid // 2
    wavenumber = 2 * np.pi * (np.arange(n_bins) + 0.5) / grid
    energy_truth = rng.uniform(0.5, 2, (n_fields, 1)) * wavenumber[None, :] ** -3
    finite_fallback = np.where(np.isfinite(decay), decay, 1.0)
    example_truth = rng.normal(size=(n_fields, grid, grid)).astype(np.float32)
    spectra = {
        "steps": steps,
        "K": np.array(K),
        "shells": shells,
        "nyquist": np.array(grid // 2),
        "ratio_median": ratio_median,
        "ratio_q25": 0.7 * ratio_median,
        "ratio_q75": 1.3 * ratio_median,
        "error_spectrum_mean": error_spectrum_0[None, :] * ratio_median,
        "spectral_mse": per_sample_spectral,
        "energy_wavenumber": wavenumber,
        "energy_truth": energy_truth,
        "energy_base": energy_truth * (1 + 0.5 * wavenumber[None, :]),
        "energy_refined": energy_truth * (1 + 0.5 * finite_fallback[K] * wavenumber[None, :]),
        "field_names": np.array(field_names),
        "example_index": np.array(0),
        "example_truth": example_truth,
        "example_base": example_truth + 0.3 * rng.normal(size=example_truth.shape).astype(np.float32),
        "example_refined": example_truth + 0.1 * rng.normal(size=example_truth.shape).astype(np.float32),
    }

    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / "metrics.json", metrics)
    with atomic_path(directory / "per_step.csv") as tmp:
        per_step.to_csv(tmp, index=False)
    write_npz(directory / "spectra.npz", **spectra)
    return {"metrics": metrics, "per_step": per_step, "spectra": spectra}


def documented(section: str) -> list[str]:
    """The names docs/outputs.md lists for an evaluation file: first-column names of its table,
    or the comma-separated columns of its first backticked span (per_step.csv)."""
    text = DOCS.read_text().split(f"### `{section}`")[1].split("###")[0]
    rows = [line.split("|")[1] for line in text.splitlines() if line.startswith("| `")]
    if rows:
        return [name for row in rows for name in re.findall(r"`([^`]+)`", row)]
    return re.split(r",\s*", re.search(r"`([^`]+)`", text).group(1))


class PersistenceOnStore(torch.utils.data.Dataset):
    """A prepared store served with h0 = the last input frame, as RefinementDataset serves a cache."""

    def __init__(self, split):
        self.split, self.field_names, self.grid = split, split.field_names, split.grid
        self.channel_mean, self.channel_std, self.identity = split.channel_mean, split.channel_std, split.identity

    def __len__(self):
        return len(self.split)

    def __getitem__(self, i):
        item = self.split[i]
        return {**item, "h0": item["x"][-len(self.field_names) :]}

    def batch(self, rows):
        x, y = self.split.batch(rows)  # (B, T*F, H, W), (B, F, H, W)
        return x, x[:, -len(self.field_names) :], y
