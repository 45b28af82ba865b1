"""The base check: which forward mode reproduces The Well's published valid VRMSE?

The published FNO/TFNO checkpoints were trained with the old FNO forward (docs/method.md#the-fno-forward), so under
the_well 1.2.0 only the ``legacy`` forward reproduces their numbers (0.3157 FNO, 0.3342 TFNO on
active_matter). Before anything is built on a base, this check measures its one-step VRMSE on
the valid split under both modes (The Well's `VRMSE` on channel-last tensors in physical units,
as The Well's validation computes it; mean over fields and samples) and compares it with the
published number:

- configured mode within `check_tolerance` (relative) of the published number: pass;
- configured mode misses but the other mode matches: fail, naming the mode to use
  (a warning with ``strict: false``);
- neither matches: a warning (other data, other weights: nothing a mode switch fixes);
- no published number (a locally trained base, simulated data): the numbers only.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from irno.base.operator import FOURIER_CLASSES, BaseOperator, check_channels, effective_forward, load_base
from irno.base.train import persistence
from irno.config import BaseConfig
from irno.data.store import PreparedSplit
from irno.utils import IrnoError, log, select_device, write_json


@torch.no_grad()
def per_field_vrmse(
    predictors: dict, split: PreparedSplit, indices: np.ndarray, batch_size: int, device
) -> dict[str, np.ndarray]:
    """Name -> (F,) VRMSE per field, averaged over the samples `indices`, for every predictor."""
    from the_well.benchmark.metrics import VRMSE
    from the_well.data.datasets import WellMetadata

    meta = WellMetadata(
        dataset_name=split.meta["dataset"],
        n_spatial_dims=len(split.grid),
        spatial_resolution=split.grid,
        scalar_names=[],
        constant_scalar_names=[],
        field_names={0: split.field_names},
        constant_field_names={},
        boundary_condition_types=[],
        n_files=0,
        n_trajectories_per_file=[],
        n_steps_per_trajectory=[],
    )
    # The Well validates in physical units (its trainer denormalises the prediction); VRMSE is
    # affine-invariant except for its eps, which matters for fields of tiny variance (concentration).
    mean, std = (torch.as_tensor(a, device=device) for a in (split.channel_mean, split.channel_std))  # (F,)
    sums = {name: np.zeros(len(split.field_names)) for name in predictors}
    for idx in torch.from_numpy(indices).split(batch_size):
        x, y = (t.to(device) for t in split.batch(idx))
        y_phys = y.permute(0, 2, 3, 1) * std + mean  # (B, H, W, F): The Well's channel-last convention
        for name, predict in predictors.items():
            y_hat = predict(x).float().permute(0, 2, 3, 1) * std + mean
            sums[name] += VRMSE.eval(y_hat, y_phys, meta).double().sum(0).cpu().numpy()  # (B, F) -> (F,)
    return {name: s / len(indices) for name, s in sums.items()}


def check_indices(cfg: BaseConfig, n: int) -> np.ndarray:
    """All samples, or `check_max_samples` evenly spaced ones (only when configured)."""
    if cfg.check_max_samples is None or cfg.check_max_samples >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, cfg.check_max_samples).round().astype(np.int64))


def verdict(cfg: BaseConfig, vrmse: dict[str, float]) -> tuple[str, str]:
    """(verdict, message) for the measured VRMSE per forward mode."""
    published, tol = cfg.published_valid_vrmse, cfg.check_tolerance
    configured = effective_forward(cfg)
    got = vrmse[configured]
    if published is None:
        return "unchecked", f"no published valid VRMSE configured; measured {got:.4f} with forward '{configured}'"
    miss = {mode: abs(v - published) / published for mode, v in vrmse.items()}
    if miss[configured] <= tol:
        return (
            "pass",
            f"forward '{configured}': valid VRMSE {got:.4f} matches the published {published:.4f} "
            f"({100 * miss[configured]:.1f} % off)",
        )
    others = [m for m in vrmse if m != configured and miss[m] <= tol]
    if others:
        use = others[0]
        return "fail", (
            f"base.forward '{configured}' gives valid VRMSE {got:.4f}, "
            f"{100 * miss[configured]:.0f} % off the published "
            f"{published:.4f}, while forward '{use}' gives {vrmse[use]:.4f} ({100 * miss[use]:.1f} % off): "
            f"set `base.forward: {use}` for this checkpoint"
        )
    measured = ", ".join(f"'{m}' {v:.4f}" for m, v in vrmse.items())
    return "warn", (
        f"no forward mode reproduces the published valid VRMSE {published:.4f} within {100 * tol:.0f} % "
        f"(measured: {measured}); the data or the weights differ from the published benchmark"
    )


def check_base(cfg: BaseConfig, model_dir: str | os.PathLike, valid: PreparedSplit, out: str | os.PathLike) -> dict:
    """Measure, decide, write `out` (base_check.json); raise IrnoError on a strict failure."""
    device = select_device(cfg.device)
    op = load_base(cfg, model_dir, device)
    n_fields = len(valid.field_names)
    check_channels(op, valid.n_steps_input * n_fields, n_fields, f"the store {valid.path}")
    modes = ("fixed", "legacy") if cfg.model_class in FOURIER_CLASSES else ("fixed",)
    predictors = {mode: BaseOperator(op.model, mode) for mode in modes}
    predictors["persistence"] = lambda x: persistence(x, n_fields)
    indices = check_indices(cfg, len(valid))
    per_field = per_field_vrmse(predictors, valid, indices, cfg.cache_batch_size, device)
    vrmse = {mode: float(per_field[mode].mean()) for mode in modes}
    status, message = verdict(cfg, vrmse)
    report = {
        "dataset": valid.meta["dataset"],
        "split": valid.meta["split"],
        "n_samples": len(indices),
        "n_samples_split": len(valid),
        "subsampled": len(indices) < len(valid),
        "base": op.identity,
        "configured_forward": cfg.forward,
        "forward_mode_applies": cfg.model_class in FOURIER_CLASSES,
        "units": "physical (denormalised with stats.yaml), as The Well's validation",
        "valid_vrmse": vrmse,
        "valid_vrmse_per_field": {m: dict(zip(valid.field_names, per_field[m].tolist())) for m in modes},
        "persistence_valid_vrmse": float(per_field["persistence"].mean()),
        "published_valid_vrmse": cfg.published_valid_vrmse,
        "tolerance": cfg.check_tolerance,
        "strict": cfg.strict,
        "verdict": status,
        "message": message,
    }
    if not report["forward_mode_applies"]:
        report["note"] = f"{cfg.model_class} has a single forward; base.forward={cfg.forward!r} does not apply to it"
    write_json(out, report)
    if status == "fail" and cfg.strict:
        raise IrnoError(
            f"base check failed for {model_dir}: {message} "
            f"(details in {out}; `base.strict: false` makes this a warning)"
        )
    (log.warning if status in ("fail", "warn") else log.info)("base check %s: %s", status, message)
    return report
