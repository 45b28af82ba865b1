"""The base check: which forward mode reproduces the published numbers of a base?

The published FNO/TFNO checkpoints were trained with the FNO-block bug, so under the_well 1.2.0
only the ``legacy`` forward reproduces The Well's numbers for them. Before anything is built on a
base, this check measures both forwards (other classes have one) against The Well's valid VRMSE
and the paper's pooled single-pass number, and decides the forward everything downstream uses
(``forward`` in base_check.json): ``forward: auto`` takes the one that reproduces the published
numbers, an explicit ``legacy|fixed`` always wins, and a miss fails unless ``strict: false``.

Detail: docs/method.md#the-base-check
"""

from __future__ import annotations

import os

import numpy as np
import torch

from irno import IrnoError, log
from irno.base.operator import FOURIER_CLASSES, BaseOperator, check_channels, load_base, read_provenance
from irno.base.train import persistence
from irno.config import BaseConfig
from irno.data.store import PreparedSplit
from irno.device import log_device, select_device
from irno.files import read_json, write_json
from irno.metrics import PooledVrmse, well_metadata, well_vrmse

# The two references a forward is checked against: base config key, measured key, what it is.
REFERENCES = {
    "paper": ("published_single_pass_pooled", "test_vrmse_pooled_cf", "the paper's single-pass VRMSE (pooled, test)"),
    "well": ("published_valid_vrmse", "valid_vrmse", "The Well's valid VRMSE"),
}


@torch.no_grad()
def per_field_vrmse(
    predictors: dict, split: PreparedSplit, indices: np.ndarray, batch_size: int, device
) -> dict[str, np.ndarray]:
    """Name -> (F,) The Well's VRMSE per field, averaged over the samples `indices`, for every predictor."""
    meta = well_metadata(split.field_names, split.grid, split.meta["dataset"])
    # The Well validates in physical units (its trainer denormalises the prediction); VRMSE is
    # affine-invariant except for its eps, which matters for fields of tiny variance (concentration).
    mean, std = (torch.as_tensor(a, device=device).view(-1, 1, 1) for a in (split.channel_mean, split.channel_std))
    sums = {name: np.zeros(len(split.field_names)) for name in predictors}
    for idx in torch.from_numpy(indices).split(batch_size):
        x, y = (t.to(device) for t in split.batch(idx))
        y_phys = y * std + mean  # (B, F, H, W)
        for name, predict in predictors.items():
            vrmse = well_vrmse(predict(x).float() * std + mean, y_phys, meta)  # (B, F)
            sums[name] += vrmse.double().sum(0).cpu().numpy()
    return {name: s / len(indices) for name, s in sums.items()}


@torch.no_grad()
def pooled_vrmse(predictors: dict, split: PreparedSplit, batch_size: int, device) -> dict[str, float]:
    """Name -> the reference's pooled VRMSE over the whole split (mean of the finite (B, W) values)."""
    meta = well_metadata(split.field_names, split.grid, split.meta["dataset"])
    pooled = {name: PooledVrmse(meta, device) for name in predictors}
    for idx in torch.arange(len(split)).split(batch_size):
        x, y = (t.to(device) for t in split.batch(idx))
        for name, predict in predictors.items():
            pooled[name].add(predict(x).float(), y)
    return {name: p.value() for name, p in pooled.items()}


def check_indices(cfg: BaseConfig, n: int) -> np.ndarray:
    """All samples, or `check_max_samples` evenly spaced ones (only when configured)."""
    if cfg.check_max_samples is None or cfg.check_max_samples >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, cfg.check_max_samples).round().astype(np.int64))


def _misses(cfg: BaseConfig, measured: dict[str, dict], reference: str) -> dict[str, float] | None:
    """Forward -> relative miss of `reference`'s published number; None without that number (or measurement)."""
    key, measured_key, _ = REFERENCES[reference]
    published = getattr(cfg, key)
    if published is None or any(measured_key not in m for m in measured.values()):
        return None
    return {mode: abs(m[measured_key] - published) / published for mode, m in measured.items()}


def _numbers(measured: dict[str, dict], reference: str) -> str:
    _, measured_key, _ = REFERENCES[reference]
    return ", ".join(f"'{mode}' {m[measured_key]:.4f}" for mode, m in measured.items())


def choose_forward(cfg: BaseConfig, measured: dict[str, dict]) -> tuple[str, str, str, str]:
    """(forward, verdict, reason, message) from each forward's measured numbers.

    `measured`: forward -> {"valid_vrmse": ..., "test_vrmse_pooled_cf": ... (when a test split was
    checked)}. verdict: pass | fail | warn | unchecked; reason: what decided the forward.
    """
    tol = cfg.check_tolerance
    modes = list(measured)
    misses = {ref: _misses(cfg, measured, ref) for ref in REFERENCES}

    def describe(ref: str) -> str:
        key, _, what = REFERENCES[ref]
        return f"{what} {getattr(cfg, key):.4f} (measured: {_numbers(measured, ref)}; tolerance {100 * tol:.0f} %)"

    if cfg.forward == "auto" and len(modes) > 1:
        for ref in REFERENCES:  # the paper's number first, then The Well's
            if misses[ref] is None:
                continue
            closest = min(modes, key=lambda m: misses[ref][m])
            if misses[ref][closest] <= tol:
                return closest, "pass", ref, f"forward '{closest}' reproduces {describe(ref)}"
            message = f"no forward reproduces {describe(ref)}"
            return closest, "fail", ref, message
        lowest = min(modes, key=lambda m: measured[m]["valid_vrmse"])
        return (
            lowest,
            "unchecked",
            "lowest valid error",
            (
                f"no published number configured; forward '{lowest}' has the lower valid VRMSE "
                f"({_numbers(measured, 'well')}), so the weights were trained with it"
            ),
        )

    forward = cfg.forward if cfg.model_class in FOURIER_CLASSES and cfg.forward != "auto" else "fixed"
    notes, verdict = [], "unchecked"
    for ref in REFERENCES:
        if misses[ref] is None:
            continue
        if misses[ref][forward] <= tol:
            verdict = "pass" if verdict == "unchecked" else verdict
            notes.append(f"forward '{forward}' reproduces {describe(ref)}")
            continue
        others = [m for m in modes if m != forward and misses[ref][m] <= tol]
        hint = f"; forward '{others[0]}' would (set `base.forward: {others[0]}` or `auto`)" if others else ""
        notes.append(f"forward '{forward}' misses {describe(ref)}{hint}")
        # The Well's number decides a failure (the weights' own benchmark); the paper's only warns.
        verdict = "fail" if ref == "well" and others else "warn" if verdict != "fail" else verdict
    reason = "configured" if cfg.model_class in FOURIER_CLASSES and cfg.forward != "auto" else "single forward"
    if not notes:
        notes.append(f"no published number configured; measured with forward '{forward}': {_numbers(measured, 'well')}")
    return forward, verdict, reason, "; ".join(notes)


def check_base(
    cfg: BaseConfig,
    model_dir: str | os.PathLike,
    valid: PreparedSplit,
    out: str | os.PathLike,
    test: PreparedSplit | None = None,
) -> dict:
    """Measure both forwards, decide, write `out` (base_check.json); raise IrnoError on a strict failure."""
    device = select_device(cfg.device)
    log_device(device, "fp32")
    fourier = cfg.model_class in FOURIER_CLASSES
    modes = ("fixed", "legacy") if fourier else ("fixed",)
    op = load_base(cfg, model_dir, device, forward=modes[0])
    n_fields = len(valid.field_names)
    check_channels(op, valid.n_steps_input * n_fields, n_fields, f"the store {valid.path}")
    predictors = {mode: BaseOperator(op.model, mode) for mode in modes}
    indices = check_indices(cfg, len(valid))
    per_field = per_field_vrmse(
        {**predictors, "persistence": lambda x: persistence(x, n_fields)}, valid, indices, cfg.cache_batch_size, device
    )
    measured = {
        mode: {
            "valid_vrmse": float(per_field[mode].mean()),
            "valid_vrmse_per_field": dict(zip(valid.field_names, per_field[mode].tolist(), strict=True)),
        }
        for mode in modes
    }
    if test is not None:
        for mode, pooled in pooled_vrmse(predictors, test, cfg.cache_batch_size, device).items():
            measured[mode]["test_vrmse_pooled_cf"] = pooled
    forward, status, reason, message = choose_forward(cfg, measured)
    provenance = read_provenance(model_dir)
    report = {
        "dataset": valid.meta["dataset"],
        "base": {**op.identity, "forward": forward},
        "configured_forward": cfg.forward,
        "forward": forward,
        "chosen_by": reason,
        "hub_revision": provenance.get("resolved_revision"),
        "forwards": measured,
        "published": {
            "valid_vrmse": cfg.published_valid_vrmse,
            "single_pass_pooled": cfg.published_single_pass_pooled,
            "source": cfg.published_source,
        },
        "valid_samples": len(indices),
        "valid_samples_split": len(valid),
        "test_samples": None if test is None else len(test),
        "units": "valid_vrmse: The Well's VRMSE in physical units (as The Well's validation); "
        "test_vrmse_pooled_cf: the IRNO reference's pooled VRMSE on normalised data (as the paper's table)",
        "persistence_valid_vrmse": float(per_field["persistence"].mean()),
        "tolerance": cfg.check_tolerance,
        "strict": cfg.strict,
        "verdict": status,
        "message": message,
    }
    if not fourier:
        report["note"] = f"{cfg.model_class} has a single forward; base.forward={cfg.forward!r} does not apply to it"
    write_json(out, report)
    if status == "fail" and cfg.strict:
        raise IrnoError(
            f"base check failed for {model_dir}: {message} "
            f"(details in {out}; `base.strict: false` makes this a warning)"
        )
    (log.warning if status in ("fail", "warn") else log.info)("base check %s: %s", status, message)
    return report


def checked_forward(check_path: str | os.PathLike) -> str:
    """The forward a base check decided (base_check.json's ``forward``)."""
    report = read_json(check_path)
    forward = report.get("forward") if isinstance(report, dict) else None
    if forward not in ("fixed", "legacy"):
        raise IrnoError(f"{check_path}: no decided 'forward' (fixed or legacy); rerun `irno base check`")
    return forward
