"""Prepared stores: one split of a Well dataset, normalised once, as one memory-mappable array.

`prepare_split` reads every trajectory once through The Well's own `WellDataset` (so the
normalisation is The Well's) and writes ``trajectories.npy`` (N_traj, T, F, H, W), ``windows.npy``
(N_samples, 2: [trajectory, t0], in WellDataset's order) and ``meta.json``. A training window is an
index into the trajectories, never a copy, and gives exactly what `window_to_xy(WellDataset(...)[i])`
gives. `PreparedSplit` opens the arrays lazily with ``mmap_mode="r"`` (also in DataLoader workers),
so RAM stays flat however large the split.

Detail: docs/outputs.md#data-datadataset
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from tqdm import tqdm

from irno import IrnoError, log
from irno.data.well import READ_ERRORS, check_split, dataset_dir, field_names, open_well_dataset, split_dir
from irno.files import atomic_dir, file_sha256, read_json, read_meta, stable_hash, write_json

STORE_FORMAT = 1


def manifest_hash(manifest: dict, split: str) -> str:
    """Identity of one split's data: its files (names, sizes, content hashes, shapes, fields) and the statistics.

    The dataset root is left out, so moving the data does not invalidate stores and caches.
    """
    return stable_hash(
        {"dataset": manifest["dataset"], "stats": manifest.get("stats"), "files": manifest["splits"][split]}
    )


def _verify_against_manifest(manifest: dict, manifest_path: Path, split: str) -> None:
    """The split on disk must be the one the manifest describes: same files, sizes, SHA-256 and statistics.

    Cheap checks first (listing, sizes, the statistics); the files are hashed only when those pass.
    """
    name, root = manifest["dataset"], manifest["root"]
    if split not in manifest.get("splits", {}):
        raise IrnoError(f"{manifest_path}: no split '{split}' (it holds {', '.join(manifest.get('splits', {}))})")
    folder = split_dir(root, name, split)
    entries = manifest["splits"][split]
    on_disk = {p.name: p.stat().st_size for p in [*folder.glob("*.hdf5"), *folder.glob("*.h5")]}
    listed = {e["file"]: e["bytes"] for e in entries}
    problems = [f"{folder / f}: listed in the manifest but missing" for f in sorted(set(listed) - set(on_disk))]
    problems += [f"{folder / f}: present but not in the manifest" for f in sorted(set(on_disk) - set(listed))]
    problems += [
        f"{folder / f}: {on_disk[f]} bytes, the manifest says {listed[f]}"
        for f in sorted(set(listed) & set(on_disk))
        if on_disk[f] != listed[f]
    ]
    unhashed = [e["file"] for e in entries if not e.get("sha256")]
    if unhashed:
        problems.append(
            f"{manifest_path}: no sha256 for {len(unhashed)} file(s) of split '{split}' ({unhashed[0]}, ...); "
            "it predates content hashes: run the download or simulation again to rewrite it (files already there "
            "are kept)"
        )
    stats = dataset_dir(root, name) / "stats.yaml"
    if "stats" in manifest and stats.is_file() and file_sha256(stats) != manifest["stats"]["sha256"]:
        problems.append(f"{stats}: differs from the statistics the manifest recorded")
    steps = {e["n_steps"] for e in entries}
    if len(steps) > 1:
        lengths = ", ".join(f"{e['file']}: {e['n_steps']}" for e in entries)
        problems.append(f"{folder}: trajectories of different lengths are not supported ({lengths})")
    if not problems:
        total = sum(e["bytes"] for e in entries)
        log.info("checking the SHA-256 of %d files (%.2f GB) against %s", len(entries), total / 1e9, manifest_path)
        for entry in entries:
            found = file_sha256(folder / entry["file"])
            if found != entry["sha256"]:
                problems.append(
                    f"{folder / entry['file']}: sha256 {found}, the manifest says {entry['sha256']} "
                    "(same size, other content: the file was damaged or replaced after the manifest was written)"
                )
    if problems:
        raise IrnoError(
            f"split '{split}' of '{name}' does not match {manifest_path}:\n  "
            + "\n  ".join(problems)
            + "\n"
            + _repair_advice(manifest, manifest_path)
        )


def _repair_advice(manifest: dict, manifest_path: Path) -> str:
    """What to do when the data on disk are not what the manifest recorded, or cannot be read."""
    step, action = {
        "simulated": ("the simulation (irno simulate)", "simulates"),
        "the_well download": ("the download (irno download)", "fetches"),
    }.get(manifest.get("source"), ("the download or simulation", "fetches or simulates"))
    return (
        f"To repair: delete the files named above and run {step} again; it {action} the missing files anew and "
        "rewrites the manifest, but keeps a file that is still there, damaged or not. "
        f"In the workflow, add `--forcerun {manifest_path}` to the snakemake command."
    )


def prepare_split(
    manifest_path: str | os.PathLike, split: str, out_dir: str | os.PathLike, *, n_steps_input: int = 4
) -> Path:
    """Build the prepared store of one split of the dataset a manifest describes; returns `out_dir`.

    Every file is checked against the manifest (size, SHA-256) before anything is read, and every
    trajectory must read through The Well's loader and hold finite values only; otherwise an
    IrnoError names the file (and the trajectory, field and frame) and no store is written.
    """
    manifest_path, out_dir = Path(manifest_path), Path(out_dir)
    check_split(split)
    if n_steps_input < 1:
        raise IrnoError(f"n_steps_input must be >= 1, got {n_steps_input}")
    manifest = read_json(manifest_path)
    for key in ("dataset", "root", "splits"):
        if key not in manifest:
            raise IrnoError(f"{manifest_path}: not a dataset manifest (no key '{key}')")
    _verify_against_manifest(manifest, manifest_path, split)
    name, root = manifest["dataset"], manifest["root"]

    # One item per trajectory: input = first T_in frames, output = all the rest.
    ds = open_well_dataset(root, name, split, n_steps_input=n_steps_input, full_trajectory=True)
    n_traj, n_frames = len(ds), int(ds.n_steps_per_trajectory[0])
    if n_frames <= n_steps_input:
        raise IrnoError(
            f"{split_dir(root, name, split)}: {n_frames} frames per trajectory, "
            f"need more than n_steps_input={n_steps_input}"
        )
    height, width = (int(s) for s in ds.metadata.spatial_resolution)
    names = field_names(ds)
    n_fields = len(names)
    # Window order of WellDataset (n_steps_output = 1): file by file, trajectory, then t0.
    windows_per_traj = n_frames - n_steps_input
    windows = (
        np.stack(np.meshgrid(np.arange(n_traj), np.arange(windows_per_traj), indexing="ij"), axis=-1)
        .reshape(-1, 2)
        .astype(np.int64)
    )  # (N_samples, 2)

    meta = {
        "format": STORE_FORMAT,
        "dataset": name,
        "split": split,
        "source": manifest.get("source"),
        "manifest": str(manifest_path.resolve()),
        "manifest_hash": manifest_hash(manifest, split),
        "stats_sha256": (manifest.get("stats") or {}).get("sha256"),
        "field_names": names,
        "channel_mean": ds.norm.flattened_means["variable"].float().tolist(),
        "channel_std": ds.norm.flattened_stds["variable"].float().tolist(),
        "n_steps_input": n_steps_input,
        "n_trajectories": n_traj,
        "n_frames": n_frames,
        "n_samples": len(windows),
        "grid": [height, width],
        "files": [
            {"file": Path(p).name, "n_trajectories": int(k)}
            for p, k in zip(ds.files_paths, ds.n_trajectories_per_file, strict=True)
        ],
        "dtype": "float32",
    }
    stats = dataset_dir(root, name) / "stats.yaml"
    if len(meta["channel_mean"]) != n_fields:
        raise IrnoError(f"{stats}: statistics for {len(meta['channel_mean'])} channels, data has {n_fields}")
    for key in ("channel_mean", "channel_std"):
        bad = [n for n, v in zip(names, meta[key], strict=True) if not np.isfinite(v)]
        if bad:
            raise IrnoError(f"{stats}: non-finite {key.split('_')[1]} for {', '.join(bad)}")

    # Trajectory n of the split is trajectory `index` of `file` (WellDataset's order: file by file).
    sources = [(Path(p), i) for p, k in zip(ds.files_paths, ds.n_trajectories_per_file, strict=True) for i in range(k)]
    with atomic_dir(out_dir) as tmp:
        traj = np.lib.format.open_memmap(
            tmp / "trajectories.npy", mode="w+", dtype=np.float32, shape=(n_traj, n_frames, n_fields, height, width)
        )
        for n in tqdm(range(n_traj), desc=f"prepare {name}/{split}", unit="traj"):
            file, index = sources[n]
            try:
                item = ds[n]
            except READ_ERRORS as e:
                raise IrnoError(
                    f"{file}: The Well's loader could not read trajectory {index} ({type(e).__name__}: {e})\n"
                    + _repair_advice(manifest, manifest_path)
                ) from None
            frames = torch.cat([item["input_fields"], item["output_fields"]])  # (T, H, W, F)
            if frames.shape != (n_frames, height, width, n_fields):
                raise IrnoError(
                    f"{file}: a trajectory came back from WellDataset as {tuple(frames.shape)} (T, H, W, F), "
                    f"expected {(n_frames, height, width, n_fields)}"
                )
            frames = rearrange(frames, "T H W F -> T F H W").float().numpy()  # (T, F, H, W)
            problem = _non_finite(frames, names)
            if problem:
                raise IrnoError(
                    f"{file}: trajectory {index}, {problem}. A prepared store holds finite values only; the file was "
                    "damaged, or was written so.\n" + _repair_advice(manifest, manifest_path)
                )
            traj[n] = frames
        traj.flush()
        del traj
        np.save(tmp / "windows.npy", windows)
        write_json(tmp / "meta.json", meta)
    log.info("prepared %s/%s: %d trajectories, %d samples -> %s", name, split, n_traj, len(windows), out_dir)
    return out_dir


def _non_finite(frames: np.ndarray, names: list[str]) -> str | None:
    """Where the first NaN or infinity of one trajectory's (T, F, H, W) frames is, and how many there are."""
    finite = np.isfinite(frames)
    if finite.all():
        return None
    bad = ~finite
    frame, field = (int(i) for i in np.argwhere(bad)[0][:2])  # the first in time, then in channel order
    value = frames[frame, field][bad[frame, field]][0]
    return (
        f"field '{names[field]}', frame {frame}: {value} (normalised with stats.yaml); {int(bad.sum())} non-finite "
        f"values in this trajectory, in {int(bad.any(axis=(1, 2, 3)).sum())} of its {len(frames)} frames"
    )


class PreparedSplit(torch.utils.data.Dataset):
    """A prepared store as a Dataset of ``{"x": (T_in*F, H, W), "y": (F, H, W)}`` float32 items."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.meta = read_meta(self.path, "store", STORE_FORMAT, "re-run irno prepare")
        self.field_names: list[str] = list(self.meta["field_names"])
        self.n_steps_input: int = int(self.meta["n_steps_input"])
        self.grid: tuple[int, int] = tuple(self.meta["grid"])
        self.channel_mean = np.asarray(self.meta["channel_mean"], dtype=np.float32)  # (F,)
        self.channel_std = np.asarray(self.meta["channel_std"], dtype=np.float32)  # (F,)
        self.windows = self._load("windows.npy", (self.meta["n_samples"], 2), mmap=False)  # (N, 2) [traj, t0]
        self._traj = None  # opened on first use, in every process that uses it

    def _load(self, name: str, shape: tuple, mmap: bool) -> np.ndarray:
        file = self.path / name
        try:
            arr = np.load(file, mmap_mode="r" if mmap else None)
        except (OSError, ValueError) as e:
            raise IrnoError(f"{file}: unreadable ({e}); re-run irno prepare") from None
        if arr.shape != tuple(shape):
            raise IrnoError(f"{file}: shape {arr.shape}, meta.json says {tuple(shape)}; re-run irno prepare")
        return arr

    @property
    def trajectories(self) -> np.ndarray:
        """(N_traj, T, F, H, W) float32 memory map."""
        if self._traj is None:
            m = self.meta
            shape = (m["n_trajectories"], m["n_frames"], len(self.field_names), *self.grid)
            self._traj = self._load("trajectories.npy", shape, mmap=True)
        return self._traj

    def __getstate__(self):  # DataLoader workers reopen the map instead of pickling its contents
        return {**self.__dict__, "_traj": None}

    @property
    def identity(self) -> dict:
        """What a base-prediction cache built from this store must record (irno.base.cache)."""
        m = self.meta
        keys = ("dataset", "split", "manifest_hash", "stats_sha256", "n_steps_input", "n_samples")
        return {k: m[k] for k in keys}

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        n, t0 = (int(v) for v in self.windows[index])
        frames = np.array(self.trajectories[n, t0 : t0 + self.n_steps_input + 1])  # (T_in + 1, F, H, W)
        x = torch.from_numpy(frames[: self.n_steps_input]).flatten(0, 1)  # (T_in * F, H, W)
        return {"x": x, "y": torch.from_numpy(frames[self.n_steps_input])}

    def batch(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        """Vectorised gather: x (B, T_in*F, H, W), y (B, F, H, W)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n, t0 = self.windows[idx].T  # (B,), (B,)
        steps = t0[:, None] + np.arange(self.n_steps_input)  # (B, T_in)
        x = np.asarray(self.trajectories[n[:, None], steps])  # (B, T_in, F, H, W)
        y = np.asarray(self.trajectories[n, t0 + self.n_steps_input])  # (B, F, H, W)
        return torch.from_numpy(x).flatten(1, 2), torch.from_numpy(y)
