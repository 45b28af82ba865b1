"""The two VRMSE conventions every comparison with a published number depends on (docs/method.md).

- `well_vrmse`: The Well's VRMSE, per sample and field, on channel-last tensors in physical units,
  as The Well's benchmark (and the base checkpoints' published numbers) compute it.
- `pooled_vrmse_cf`: the IRNO reference implementation's number: the same function called on
  channel-first normalised tensors, so that it pools channels and rows and treats columns as the
  "field" axis; the paper's tables are in this convention. `PooledVrmse` averages it over a split.

Both call The Well's own ``VRMSE.eval``; nothing here re-derives the metric.
"""

from __future__ import annotations

import torch
from the_well.benchmark.metrics import VRMSE
from the_well.data.datasets import WellMetadata


def well_metadata(field_names: list[str], grid: tuple[int, ...], dataset: str = "") -> WellMetadata:
    """Metadata for The Well's metrics (they read only n_spatial_dims)."""
    return WellMetadata(
        dataset_name=dataset,
        n_spatial_dims=len(grid),
        spatial_resolution=tuple(grid),
        scalar_names=[],
        constant_scalar_names=[],
        field_names={0: list(field_names)},
        constant_field_names={},
        boundary_condition_types=[],
        n_files=0,
        n_trajectories_per_file=[],
        n_steps_per_trajectory=[],
    )


def well_vrmse(pred: torch.Tensor, target: torch.Tensor, meta: WellMetadata) -> torch.Tensor:
    """The Well's VRMSE of physical-unit fields (B, F, H, W) -> (B, F), computed channel-last."""
    return VRMSE.eval(pred.movedim(1, -1), target.movedim(1, -1), meta)


def pooled_vrmse_cf(pred: torch.Tensor, target: torch.Tensor, meta: WellMetadata) -> torch.Tensor:
    """The reference's call on normalised channel-first (B, F, H, W): (C, H) pooled, W the "field" -> (B, W).

    The reference averages the finite values of this array (a column of zero variance gives inf).
    """
    return VRMSE.eval(pred, target, meta)


class PooledVrmse:
    """`pooled_vrmse_cf` over many batches: the mean of its finite values, as the reference averages them.

    The sum and count stay float64 tensors on the batches' device: adding a batch waits for nothing.
    """

    def __init__(self, meta: WellMetadata, device: torch.device | str | None = None):
        self.meta = meta
        self.total = torch.zeros((), dtype=torch.float64, device=device)
        self.count = torch.zeros((), dtype=torch.float64, device=device)

    def add(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """One batch of normalised channel-first (B, F, H, W) predictions and targets."""
        pooled = pooled_vrmse_cf(pred, target, self.meta)  # (B, W)
        finite = torch.isfinite(pooled)
        self.total += torch.where(finite, pooled, 0.0).double().sum()
        self.count += finite.sum()

    def value(self) -> float:
        """The mean so far; NaN when no value was finite."""
        return float(self.total / self.count)
