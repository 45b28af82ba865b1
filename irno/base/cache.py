"""The base-prediction cache: h0 = T_base(x) for every sample of a prepared store, computed once.

A cache folder (one per dataset, split and base) holds ``h0.npy`` (store order; float32, float16,
or bfloat16 kept as raw int16 bits; memory-mapped on read) and ``meta.json`` (the base's and the
store's identity, dtype, normalisation, and the measured error of reduced precision). A build runs
in batches into ``.<name>.partial/``; run again after an interruption it ends with the same bytes
as an uninterrupted build. `BasePredictionCache.open(path, expect=...)` refuses a cache whose
metadata differs from what the caller expects, naming every difference.

Detail: docs/outputs.md#base-operators-basedatasetbase
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from irno import IrnoError, log
from irno.base.operator import (
    BaseOperator,
    base_identity,
    check_channels,
    effective_forward,
    load_base,
    read_provenance,
)
from irno.config import BaseConfig
from irno.data.store import PreparedSplit
from irno.device import log_device, select_device
from irno.files import read_json, read_meta, replace_dir, stable_hash, write_json
from irno.settings import flatten

CACHE_FORMAT = 1
STORAGE = {"float32": np.float32, "float16": np.float16, "bfloat16": np.int16}
TORCH_DTYPE = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _to_storage(h: torch.Tensor, dtype: str) -> np.ndarray:
    t = h.detach().to("cpu", TORCH_DTYPE[dtype])
    return (t.view(torch.int16) if dtype == "bfloat16" else t).numpy()


def _from_storage(a: np.ndarray, dtype: str) -> torch.Tensor:
    t = torch.from_numpy(np.array(a))  # a copy: the memory map stays read-only
    return (t.view(torch.bfloat16) if dtype == "bfloat16" else t).float()


def _mismatches(expected: dict, actual: dict, prefix: str = "") -> list[str]:
    """Every key of `expected` (recursively, by its dotted name) whose value differs in `actual`."""
    got = flatten(actual)
    return [
        f"{prefix}{key} is {got.get(key)!r}, expected {want!r}"
        for key, want in flatten(expected).items()
        if got.get(key) != want
    ]


class BasePredictionCache:
    """h0 for every sample of one prepared store; `batch` and items give float32 tensors."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.meta = read_meta(self.path, "cache", CACHE_FORMAT, "rebuild it")
        self.dtype: str = self.meta["dtype"]
        self._h0 = None

    @classmethod
    def open(cls, path: str | os.PathLike, expect: dict | None = None) -> BasePredictionCache:
        """Open a finished cache; with `expect` (a nested dict, e.g. `expected_meta(...)`), refuse a stale one."""
        path = Path(path)
        if not (path / "meta.json").is_file():
            partial = path.with_name(f".{path.name}.partial")
            hint = (
                f" (an unfinished build is in {partial}: run `irno base cache` again to finish it)"
                if partial.exists()
                else ""
            )
            raise IrnoError(f"{path}: not a base-prediction cache, no meta.json{hint}")
        cache = cls(path)
        problems = _mismatches(expect or {}, cache.meta)
        if problems:
            raise IrnoError(
                f"{path}: stale base-prediction cache, refusing it: "
                + "; ".join(problems)
                + " (rebuild it with `irno base cache`)"
            )
        return cache

    @classmethod
    def build(
        cls,
        op: BaseOperator,
        split: PreparedSplit,
        out_dir: str | os.PathLike,
        *,
        dtype: str = "float32",
        batch_size: int = 32,
        device: torch.device | str = "cpu",
    ) -> BasePredictionCache:
        """Compute h0 = op(x) for every sample of `split` into `out_dir`, resuming an interrupted build."""
        out_dir = Path(out_dir)
        if dtype not in STORAGE:
            raise IrnoError(f"config key 'base.cache_dtype': {dtype!r} is not one of {', '.join(STORAGE)}")
        if not op.identity:
            raise IrnoError("the base has no identity to record; load it with irno.base.load_base")
        shape = (len(split), len(split.field_names), *split.grid)
        meta = {
            "format": CACHE_FORMAT,
            "base": op.identity,
            "store": split.identity,
            "dtype": dtype,
            "shape": list(shape),
            "field_names": split.field_names,
            "channel_mean": split.channel_mean.tolist(),
            "channel_std": split.channel_std.tolist(),
            "manifest": split.meta["manifest"],
            "batch_size": batch_size,
        }
        work = out_dir.with_name(f".{out_dir.name}.partial")
        progress_file = work / "progress.json"
        key = stable_hash(meta)
        progress = read_json(progress_file) if progress_file.is_file() else {}
        h0 = None
        if progress.get("key") == key:
            try:
                h0 = np.lib.format.open_memmap(work / "h0.npy", mode="r+")
                log.info("resuming the cache build in %s at sample %d of %d", work, progress["done"], shape[0])
            except (OSError, ValueError) as e:
                log.warning("cannot resume from %s (%s): starting afresh", work, e)
        if h0 is None or h0.shape != shape:
            if work.exists():
                log.info("discarding %s: it cannot be resumed for this base, store and dtype", work)
                shutil.rmtree(work)
            work.mkdir(parents=True)
            h0 = np.lib.format.open_memmap(work / "h0.npy", mode="w+", dtype=STORAGE[dtype], shape=shape)
            progress = {"key": key, "done": 0, "error": {"sum_sq": 0.0, "sum_sq_h0": 0.0, "max_abs": 0.0}}
            write_json(progress_file, progress)

        op = op.to(device).eval()
        err = progress["error"]
        with (
            torch.no_grad(),
            tqdm(
                total=shape[0], initial=progress["done"], desc=f"cache h0 {split.meta['split']}", unit="sample"
            ) as bar,
        ):
            for start in range(progress["done"], shape[0], batch_size):
                stop = min(start + batch_size, shape[0])
                x, _ = split.batch(np.arange(start, stop))
                pred = op(x.to(device)).float().cpu()  # (B, F, H, W)
                stored = _to_storage(pred, dtype)
                h0[start:stop] = stored
                if dtype != "float32":  # what the reduced precision costs, measured on every value
                    diff = _from_storage(stored, dtype).double() - pred.double()
                    err["sum_sq"] += float(diff.square().sum())
                    err["sum_sq_h0"] += float(pred.double().square().sum())
                    err["max_abs"] = max(err["max_abs"], float(diff.abs().max()))
                h0.flush()  # data on disk before the marker says so
                progress["done"] = stop
                write_json(progress_file, progress)
                bar.update(stop - start)
        del h0
        if dtype != "float32":
            rms = (err["sum_sq"] / np.prod(shape)) ** 0.5
            meta["quantisation_error"] = {
                "max_abs": err["max_abs"],
                "rms": rms,
                "relative_rms": (err["sum_sq"] / max(err["sum_sq_h0"], 1e-300)) ** 0.5,
            }
            log.info(
                "cache stored as %s: rms error %.3g, max error %.3g (normalised units)", dtype, rms, err["max_abs"]
            )
        progress_file.unlink()
        write_json(work / "meta.json", meta)
        replace_dir(work, out_dir)
        return cls(out_dir)

    @property
    def h0(self) -> np.ndarray:
        """(N, F, H, W) memory map in the storage dtype."""
        if self._h0 is None:
            file = self.path / "h0.npy"
            try:
                self._h0 = np.load(file, mmap_mode="r")
            except (OSError, ValueError) as e:
                raise IrnoError(f"{file}: unreadable ({e}); rebuild the cache") from None
            if list(self._h0.shape) != self.meta["shape"]:
                raise IrnoError(
                    f"{file}: shape {self._h0.shape}, meta.json says {self.meta['shape']}; rebuild the cache"
                )
        return self._h0

    def __getstate__(self):  # DataLoader workers reopen the map instead of pickling its contents
        return {**self.__dict__, "_h0": None}

    def __len__(self) -> int:
        return self.meta["shape"][0]

    def __getitem__(self, index: int) -> torch.Tensor:
        return _from_storage(self.h0[index], self.dtype)  # (F, H, W) float32

    def batch(self, indices) -> torch.Tensor:
        return _from_storage(self.h0[np.asarray(indices, dtype=np.int64).reshape(-1)], self.dtype)  # (B, F, H, W)


def expected_meta(
    cfg: BaseConfig, model_dir: str | os.PathLike, split: PreparedSplit, forward: str | None = None
) -> dict:
    """What a cache for this base config, model directory, forward (default: the configured one) and
    store must record (for `open(expect=...)`)."""
    identity = base_identity(cfg, read_provenance(model_dir), forward or effective_forward(cfg))
    return {"base": identity, "store": split.identity, "dtype": cfg.cache_dtype}


def cache_base(
    cfg: BaseConfig,
    model_dir: str | os.PathLike,
    split: PreparedSplit,
    out_dir: str | os.PathLike,
    forward: str | None = None,
) -> BasePredictionCache:
    """Build (or finish building) the cache of `split` under the base of `cfg`, run in `forward` (the
    base check's decision; default the configured forward)."""
    device = select_device(cfg.device)
    log_device(device, f"fp32, stored as {cfg.cache_dtype}")
    op = load_base(cfg, model_dir, device, forward=forward)
    n_fields = len(split.field_names)
    check_channels(op, split.n_steps_input * n_fields, n_fields, f"the store {split.path}")
    return BasePredictionCache.build(
        op, split, out_dir, dtype=cfg.cache_dtype, batch_size=cfg.cache_batch_size, device=device
    )


class RefinementDataset(torch.utils.data.Dataset):
    """A prepared store with its base predictions: items ``{"x", "h0", "y"}``, float32."""

    def __init__(self, split: PreparedSplit, cache: BasePredictionCache):
        problems = _mismatches(split.identity, cache.meta["store"], "store.")
        if problems:
            raise IrnoError(f"{cache.path} was not built from the store {split.path}: " + "; ".join(problems))
        self.split, self.cache = split, cache
        self.field_names = split.field_names
        self.n_steps_input = split.n_steps_input
        self.grid = split.grid
        self.channel_mean, self.channel_std = split.channel_mean, split.channel_std
        self.meta = split.meta
        self.base_identity: dict = cache.meta["base"]  # class, Hub id and revision, weights hash, forward

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {**self.split[index], "h0": self.cache[index]}

    def batch(self, indices) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, T_in*F, H, W), h0 (B, F, H, W), y (B, F, H, W)."""
        x, y = self.split.batch(indices)
        return x, self.cache.batch(indices), y
