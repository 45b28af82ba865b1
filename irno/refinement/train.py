"""Training Phi: the objective of docs/method.md in one plain, resumable loop (`train_phi`).

Per epoch: seeded shuffled batches (`irno.data.batches`), the K-step unroll with gradients through
the chain, Adam with gradient-norm clipping, cosine annealing, validation, and the epoch's files
(`last.pt`, `checkpoint.pt`, `train_log.csv`), written atomically. A non-finite batch is skipped
on the device; too many skips end the training as diverged, a result rather than a failure.
Under torchrun (`irno.refinement.ddp`) each process trains on its share of every global batch.
Resuming, the non-finite policy, devices and DDP in detail: docs/training.md.
"""

from __future__ import annotations

import collections
import contextlib
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import Dataset
from tqdm import tqdm

from irno import IrnoError, log
from irno.config import LossConfig, PhiConfig
from irno.data.batches import epoch_batches, iterate_batches, sequential_batches
from irno.device import log_device, select_device
from irno.files import atomic_path
from irno.refinement.ddp import all_reduce, process_group
from irno.refinement.objective import objective, term_weights
from irno.refinement.phi import build_phi, phi_memory_format, refine_steps
from irno.resume import STATE_FILE, TrainingState, seed_everything
from irno.runlock import LOCK_FILE, RunFolderLock
from irno.settings import to_dict

TRAIN_LOG_COLUMNS = [
    "epoch",
    "loss",
    "loss_spatial",
    "loss_spectral",
    "loss_fixed_point",
    "beta_spectral",
    "beta_fixed_point",
    "valid_mse",
    "outlier_pct",
    "lr",
    "seconds",
    "skipped_batches",
    "best",
]
LOG_EVERY = 10  # training batches between host syncs (progress bar, non-finite check)


class Objective(nn.Module):
    """Phi and the batch objective as one module, so that DDP sees one forward per step."""

    def __init__(self, phi: nn.Module, loss: LossConfig, K: int, alpha: float):
        super().__init__()
        self.phi, self.loss, self.K, self.alpha = phi, loss, K, alpha

    def forward(self, x, h0, y, beta_spectral: float, beta_fixed_point: float):
        return objective(
            self.phi,
            x,
            h0,
            y,
            self.loss,
            K=self.K,
            alpha=self.alpha,
            beta_spectral=beta_spectral,
            beta_fixed_point=beta_fixed_point,
        )


def _describe(dataset, role: str) -> str:
    return str(getattr(dataset, "path", f"the {role} data"))


def _check_data(cfg: PhiConfig, train_data, valid_data, base: nn.Module | None) -> tuple[int, int]:
    """(in_channels, out_channels) of Phi for this data; IrnoError naming what does not fit."""
    shapes = {}
    for role, ds in (("train", train_data), ("valid", valid_data)):
        if len(ds) == 0:
            raise IrnoError(f"{_describe(ds, role)}: no samples in the {role} split")
        item = ds[0]
        if base is None and "h0" not in item:
            raise IrnoError(
                f"{_describe(ds, role)}: items have no 'h0' (base prediction); "
                "give a base-prediction cache or a base model"
            )
        shapes[role] = (tuple(item["x"].shape), tuple(item["y"].shape))
    if shapes["train"] != shapes["valid"]:
        raise IrnoError(f"train samples (x, y) have shapes {shapes['train']} but valid samples {shapes['valid']}")
    (c_x, H, W), (c_y, *_) = shapes["train"]
    if cfg.network.backbone == "unet" and (H % 2**cfg.network.depth or W % 2**cfg.network.depth):
        raise IrnoError(
            f"config key 'network.depth': {cfg.network.depth} needs a grid divisible by {2**cfg.network.depth}, "
            f"the data's is {H}x{W}"
        )
    return c_x + c_y, c_y


def _data_identity(dataset) -> dict:
    """What distinguishes a dataset for resuming: its size and, where it has one, its identity."""
    return {"n_samples": len(dataset), "identity": getattr(dataset, "identity", None)}


# ----------------------------------------------------------------------------- validation


@torch.no_grad()
def validate(
    phi: nn.Module,
    dataset,
    *,
    K: int,
    alpha: float,
    batch_size: int,
    outlier_threshold: float,
    device: torch.device,
    base: nn.Module | None = None,
    autocast=contextlib.nullcontext,
    memory_format=torch.preserve_format,
    rank: int = 0,
    world: int = 1,
) -> tuple[float, float]:
    """(valid MSE over non-outlier samples, outlier %) after K steps; sharded over `world` ranks."""
    was_training = phi.training
    phi.eval()
    shard = np.arange(len(dataset))[rank::world]
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # sum of inlier MSEs, inliers, outliers
    for x, h0, y in iterate_batches(dataset, sequential_batches(shard, batch_size)):
        x, y = x.to(device, memory_format=memory_format), y.to(device, memory_format=memory_format)
        h0 = (
            base(x.contiguous()).to(memory_format=memory_format)
            if base is not None
            else h0.to(device, memory_format=memory_format)
        )
        with autocast():
            h = collections.deque(refine_steps(phi, x, h0, alpha, K), maxlen=1).pop()  # h_K, earlier steps dropped
        mse = ((h.float() - y) ** 2).mean(dim=(1, 2, 3))  # (B,)
        outlier = ~torch.isfinite(mse) | (mse > outlier_threshold)
        sums += torch.stack(
            [torch.where(outlier, 0.0, mse).double().sum(), (~outlier).sum().double(), outlier.sum().double()]
        )
    inlier_sum, inliers, outliers = all_reduce(sums, world).tolist()
    phi.train(was_training)
    valid_mse = inlier_sum / inliers if inliers else math.nan
    return valid_mse, 100.0 * outliers / (inliers + outliers)


# ----------------------------------------------------------------------------- the training loop


class Diverged(Exception):
    """More of an epoch's batches were non-finite than ``train.max_skipped_fraction`` allows."""

    def __init__(self, epoch: int, skipped: int, batches: int, max_skipped_fraction: float):
        super().__init__(
            f"epoch {epoch}: {skipped} of {batches} batches had a non-finite loss or gradient, more than "
            f"train.max_skipped_fraction = {max_skipped_fraction:g} allows; training stopped. "
            "Lower train.lr or train.alpha, or check the data."
        )


@dataclass
class Trainer:
    """What one training of Phi works with, set up by `set_up` (on rank `rank` of `world` processes)."""

    phi: nn.Module  # the bare Phi: its weights are what gets saved
    model: nn.Module  # the batch objective around Phi: compiled, wrapped in DDP where those apply
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    device: torch.device
    memory_format: torch.memory_format
    autocast: Callable[[], contextlib.AbstractContextManager]
    base: nn.Module | None
    rank: int
    world: int

    def to_device(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.device, non_blocking=True, memory_format=self.memory_format)


def uses_bf16(tc, device: torch.device) -> bool:
    """Whether training runs under bf16 autocast: where configured, on CUDA only."""
    return tc.bf16 and device.type == "cuda"


def set_up(cfg: PhiConfig, in_channels: int, out_channels: int, device, rank: int, world: int, base) -> Trainer:
    """Phi, its optimiser and schedule, seeded, on `device`; compile and DDP where they apply."""
    tc = cfg.train
    on_cuda = device.type == "cuda"
    if (tc.bf16 or tc.compile) and not on_cuda:
        log.info("bf16 autocast and torch.compile apply on CUDA only; training in fp32, uncompiled, on %s", device)
    if on_cuda:
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels
    memory_format = phi_memory_format(cfg.network, tc.channels_last)
    seed_everything(tc.seed)
    phi = build_phi(cfg.network, in_channels, out_channels).to(device, memory_format=memory_format)
    if world > 1 and on_cuda:
        phi = nn.SyncBatchNorm.convert_sync_batchnorm(phi)
    optimizer = torch.optim.Adam(phi.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, fused=True)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=tc.epochs, eta_min=tc.eta_min)
    if base is not None:
        base = base.to(device).eval().requires_grad_(False)
    # Only Phi is compiled: the loss's FFTs have no compiled kernels, and one graph serves all K + 1 calls.
    model: nn.Module = Objective(torch.compile(phi) if tc.compile and on_cuda else phi, cfg.loss, tc.K, tc.alpha)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if on_cuda else None, gradient_as_bucket_view=True
        )
    use_bf16 = uses_bf16(tc, device)

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()

    return Trainer(phi, model, optimizer, scheduler, device, memory_format, autocast, base, rank, world)


def skip_update_if_not_finite(optimizer: torch.optim.Optimizer, bad: torch.Tensor) -> None:
    """Make the next `optimizer.step()` a no-op where `bad` (a 0-d float tensor) is non-zero."""
    # The fused Adam skips its update where found_inf is set (torch.amp.GradScaler's mechanism):
    # a non-finite batch is skipped without the host waiting for the device to say so.
    optimizer.found_inf = bad


def train_epoch(trainer: Trainer, tc, train_data, loss_cfg: LossConfig, epoch: int) -> tuple[list[float], int]:
    """One epoch of optimiser steps: (sample-weighted sums of total, spatial, spectral and
    fixed-point loss and the samples counted, all reduced over processes; skipped batches).

    Raises `Diverged` as soon as more batches were skipped than ``tc.max_skipped_fraction`` allows.
    """
    beta_s, beta_fp = term_weights(loss_cfg, epoch)
    # Global batches, each shared among the processes; one smaller than the world is dropped.
    batches = [b for b in epoch_batches(len(train_data), tc.batch_size, tc.seed, epoch) if len(b) >= trainer.world]
    shares = [b[trainer.rank :: trainer.world] for b in batches]
    max_skipped = tc.max_skipped_fraction * len(batches)
    # On the device, so that a batch costs no host sync: sample-weighted total, spatial, spectral,
    # fixed-point, samples; and the skipped batches. They are read once per LOG_EVERY batches.
    sums = torch.zeros(5, dtype=torch.float64, device=trainer.device)
    skipped_batches = torch.zeros((), device=trainer.device)
    skipped = 0  # skipped_batches as last read
    trainer.model.train()
    loader = iterate_batches(train_data, shares, num_workers=tc.num_workers, pin_memory=trainer.device.type == "cuda")
    with tqdm(
        zip(batches, loader, strict=True),
        total=len(batches),
        desc=f"epoch {epoch}/{tc.epochs}",
        unit="batch",
        leave=False,
        disable=trainer.rank != 0,
        mininterval=1.0 if sys.stderr.isatty() else 30.0,
    ) as bar:
        for step, (global_batch, (x, h0, y)) in enumerate(bar, 1):
            x, y = trainer.to_device(x), trainer.to_device(y)
            if trainer.base is not None:
                with torch.no_grad():  # the reference behaviour; the base runs channels-first
                    h0 = trainer.base(x.contiguous())  # (B, F, H, W)
            h0 = trainer.to_device(h0)
            with trainer.autocast():
                total, terms = trainer.model(x, h0, y, beta_s, beta_fp)
            trainer.optimizer.zero_grad(set_to_none=True)
            # This process's share of the global batch's mean loss (DDP averages over processes).
            (total * (len(y) * trainer.world / len(global_batch))).backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(
                trainer.phi.parameters(), tc.grad_clip if tc.grad_clip > 0 else math.inf
            )
            bad = all_reduce(
                (~torch.isfinite(total.detach()) | ~torch.isfinite(grad_norm)).float(), trainer.world, dist.ReduceOp.MAX
            )
            skip_update_if_not_finite(trainer.optimizer, bad)
            trainer.optimizer.step()
            batch_sums = torch.stack(
                [total, terms["spatial"], terms["spectral"], terms["fixed_point"], torch.ones_like(bad)]
            ).detach()
            sums += torch.where(bad > 0, 0.0, batch_sums.double() * len(y))
            skipped_batches += bad
            if step % LOG_EVERY == 0 or step == len(batches):
                skipped = int(skipped_batches.item())  # the host syncs with the device here only
                if skipped > max_skipped:
                    raise Diverged(epoch, skipped, len(batches), tc.max_skipped_fraction)
                bar.set_postfix(loss=f"{sums[0].item() / max(sums[4].item(), 1):.4g}", skipped=skipped, refresh=False)
    trainer.scheduler.step()
    return all_reduce(sums, trainer.world).tolist(), skipped


def validate_epoch(trainer: Trainer, tc, valid_data) -> tuple[float, float]:
    """(valid MSE, outlier %) of Phi after an epoch (`validate`), sharded over the processes."""
    if trainer.world > 1:  # validate and save the weights of rank 0 (BatchNorm statistics differ per process)
        for buffer in trainer.phi.buffers():
            dist.broadcast(buffer, 0)
    return validate(
        trainer.phi,
        valid_data,
        K=tc.K,
        alpha=tc.alpha,
        batch_size=tc.batch_size,
        outlier_threshold=tc.outlier_threshold,
        device=trainer.device,
        base=trainer.base,
        autocast=trainer.autocast,
        memory_format=trainer.memory_format,
        rank=trainer.rank,
        world=trainer.world,
    )


def log_row(epoch: int, totals: list[float], weights: tuple[float, float], valid: tuple[float, float], **rest) -> dict:
    """The train_log.csv row of an epoch from its loss sums (`train_epoch`) and validation."""
    loss, spatial, spectral, fixed_point = (v / totals[4] if totals[4] else math.nan for v in totals[:4])
    return {
        "epoch": epoch,
        "loss": loss,
        "loss_spatial": spatial,
        "loss_spectral": spectral,
        "loss_fixed_point": fixed_point,
        "beta_spectral": weights[0],
        "beta_fixed_point": weights[1],
        "valid_mse": valid[0],
        "outlier_pct": valid[1],
        **rest,
    }


def _cpu_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def write_outputs(out_dir: Path, state: dict, field_names: list[str] | None) -> None:
    """checkpoint.pt (docs/outputs.md) and train_log.csv from a resume state."""
    best, history = state["best"], state["history"]
    if best is not None:
        chosen, selected = best, "best"
    else:  # the state's own Phi: its last epoch's, or the initial one when no epoch completed
        valid_mse = history[-1]["valid_mse"] if history else None
        chosen = {"model": state["model"], "epoch": state["done"], "valid_mse": valid_mse}
        selected = "last" if history else "initial"
    checkpoint = {
        "model": chosen["model"],
        "config": state["settings"]["config"],
        "in_channels": state["in_channels"],
        "out_channels": state["out_channels"],
        "epoch": chosen["epoch"],
        "valid_mse": chosen["valid_mse"],
        "selected": selected,
        "training": state["training"],
    }
    if field_names is not None:
        checkpoint["field_names"] = list(field_names)
    with atomic_path(out_dir / "checkpoint.pt") as tmp:
        torch.save(checkpoint, tmp)
    with atomic_path(out_dir / "train_log.csv") as tmp:
        pd.DataFrame(history, columns=TRAIN_LOG_COLUMNS).to_csv(tmp, index=False)


def train_phi(
    cfg: PhiConfig,
    train_data: Dataset,
    valid_data: Dataset,
    out_dir: str | os.PathLike,
    *,
    base: nn.Module | None = None,
) -> list[dict]:
    """Train Phi on `train_data`, validating on `valid_data`; files in `out_dir` (docs/training.md).

    `base`: a frozen base operator computing h0 = base(x) per batch (on the training device);
    without it the items must carry h0. Returns the log history, one dict per epoch (including
    those of earlier, resumed-from jobs). Only one process trains in `out_dir` at a time
    (`irno.runlock`): rank 0 holds the run folder's lock for all processes of a DDP training.
    """
    tc = cfg.train
    out_dir = Path(out_dir)
    device = select_device(tc.device)
    with process_group(device.type) as (rank, world):
        if device.type == "cuda" and world > 1:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        if rank == 0:
            log_device(device, "bf16 autocast" if uses_bf16(tc, device) else "fp32")
        if tc.batch_size < world:
            raise IrnoError(
                f"config key 'train.batch_size': {tc.batch_size} is smaller than the {world} training processes"
            )
        if len(train_data) < world:
            raise IrnoError(
                f"{_describe(train_data, 'train')}: {len(train_data)} samples for {world} training processes"
            )
        with RunFolderLock(out_dir / LOCK_FILE) if rank == 0 else contextlib.nullcontext():
            return _train(cfg, train_data, valid_data, out_dir, base, device, rank, world)


def _train(cfg, train_data, valid_data, out_dir: Path, base, device: torch.device, rank: int, world: int) -> list[dict]:
    tc = cfg.train
    in_channels, out_channels = _check_data(cfg, train_data, valid_data, base)
    field_names = getattr(train_data, "field_names", None)
    data = {"train": _data_identity(train_data), "valid": _data_identity(valid_data)}
    resume = TrainingState(out_dir / STATE_FILE, {"config": to_dict(cfg), "data": data}, tc.epochs)
    trainer = set_up(cfg, in_channels, out_channels, device, rank, world, base)

    # Restore.
    saved = resume.load()
    history: list[dict] = []
    best = None  # {"model", "epoch", "valid_mse"} of the best epoch so far
    last_good = {"model": _cpu_state_dict(trainer.phi), "epoch": 0}  # the Phi a divergence keeps, without a best one
    if saved is not None:
        history, best, last_good = saved["history"], saved["best"], {"model": saved["model"], "epoch": saved["done"]}
        if resume.finished(saved):
            log.info("%s: training %s (epoch %d); nothing to do", out_dir, saved["training"]["status"], saved["done"])
            if rank == 0 and not ((out_dir / "checkpoint.pt").is_file() and (out_dir / "train_log.csv").is_file()):
                write_outputs(out_dir, saved, field_names)
            return history
        trainer.phi.load_state_dict(saved["model"])
        trainer.optimizer.load_state_dict(saved["optimizer"])
        trainer.scheduler.load_state_dict(saved["scheduler"])
        log.info("resuming from epoch %d of %d (%s)", saved["done"], tc.epochs, resume.path)
    channels = {"in_channels": in_channels, "out_channels": out_channels}

    for epoch in resume.units_to_run(saved):
        started = time.perf_counter()
        lr = trainer.optimizer.param_groups[0]["lr"]
        try:
            totals, skipped = train_epoch(trainer, tc, train_data, cfg.loss, epoch)
        except Diverged as diverged:
            log.warning("%s; keeping the %s Phi", diverged, "best" if best else f"epoch {last_good['epoch']}")
            if rank == 0:
                payload = {"model": last_good["model"], "best": best, "history": history, **channels}
                outcome = {"epoch": epoch, "message": str(diverged)}
                write_outputs(out_dir, resume.save_diverged(last_good["epoch"], outcome, payload), field_names)
            return history
        valid_mse, outlier_pct = validate_epoch(trainer, tc, valid_data)
        improved = (
            math.isfinite(valid_mse)
            and outlier_pct < tc.max_outlier_pct
            and (best is None or valid_mse < best["valid_mse"])
        )
        if improved:
            best = {"model": _cpu_state_dict(trainer.phi), "epoch": epoch, "valid_mse": valid_mse}
        seconds = time.perf_counter() - started
        row = log_row(
            epoch, totals, term_weights(cfg.loss, epoch), (valid_mse, outlier_pct),
            lr=lr, seconds=seconds, skipped_batches=skipped, best=improved,
        )  # fmt: skip
        history.append(row)
        log.info(
            "epoch %d/%d: loss %.4g (spatial %.4g, spectral %.4g, fixed-point %.4g), valid MSE %.4g, "
            "outliers %.1f %%, lr %.3g, %.1f s, %d skipped%s",
            epoch, tc.epochs, row["loss"], row["loss_spatial"], row["loss_spectral"], row["loss_fixed_point"],
            valid_mse, outlier_pct, lr, seconds, skipped, ", best" if improved else "",
        )  # fmt: skip

        # Save.
        last_good = {"model": _cpu_state_dict(trainer.phi), "epoch": epoch}
        if rank == 0:
            payload = {
                "model": last_good["model"],
                "optimizer": trainer.optimizer.state_dict(),
                "scheduler": trainer.scheduler.state_dict(),
                "best": best,
                "history": history,
                **channels,
            }
            write_outputs(out_dir, resume.save(epoch, payload), field_names)
    return history
