"""ROMA datasets on disk: simulation into HDF5 (Kuramoto or Burgers-like), graph encodings, loading.

``dataset.h5`` holds the series ``values (N, T)``, their ``time``, the graph (``edges``,
``radius``, ``angle``), the dynamics' own arrays and the settings with their hash (every
dataset and attribute: docs/roma.md, "Data"); it is written under a temporary name and renamed
when complete. A Kuramoto simulation streams its frames into ``.dataset.h5.partial`` and
resumes from its last written block. Models see (values - value_offset) * value_scale (`load`
applies it). ``encodings.h5``: ``laplacian (N, k)``, ``node2vec (N, d)`` float32, with the
EncodingConfig and the dataset's settings hash.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import scipy.sparse as sp
from tqdm import tqdm

from irno import IrnoError
from irno.files import atomic_path, stable_hash
from irno.roma import burgers, kuramoto
from irno.roma.graphs import adjacency, graph_encodings, random_hyperbolic_graph
from irno.roma.settings import DataConfig, EncodingConfig
from irno.settings import to_dict

log = logging.getLogger("irno.roma")

_ROWS_PER_WRITE = 1 << 15  # nodes per block when a whole series array is written


def simulate(cfg: DataConfig, out: str | os.PathLike) -> Path:
    """Generate the graph and the dynamics on it; write `out` (resumes an interrupted Kuramoto run)."""
    out = Path(out)
    partial = out.with_name(f".{out.name}.partial")
    settings_hash = stable_hash(to_dict(cfg))
    if partial.exists() and not _resumable(partial, settings_hash):
        partial.unlink()
    if not partial.exists():
        _start_file(cfg, partial, settings_hash)
    with h5py.File(partial, "r+") as f:
        if cfg.system == "kuramoto":
            _integrate_kuramoto(f, cfg, out.name)
        else:
            _write_burgers(f, cfg)
        f.attrs["complete"] = True
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(partial, out)
    return out


def _resumable(partial: Path, settings_hash: str) -> bool:
    try:
        with h5py.File(partial, "r") as f:
            return f.attrs.get("settings_hash") == settings_hash and "state" in f
    except OSError:  # truncated by the interruption
        return False


def _start_file(cfg: DataConfig, path: Path, settings_hash: str) -> None:
    """The graph, the empty series and, for kuramoto, frame 0 and the integrator's state."""
    graph = random_hyperbolic_graph(cfg.graph.nodes, cfg.graph.mean_degree, np.random.default_rng([cfg.seed, 0]))
    n, frames = graph.num_nodes, cfg.frames
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".new")
    with h5py.File(tmp, "w") as f:
        dtype = cfg.kuramoto.dtype if cfg.system == "kuramoto" else "float32"
        values = f.create_dataset("values", shape=(n, frames), dtype=dtype, chunks=(min(n, 1 << 15), min(frames, 32)))
        f["edges"] = graph.edges
        f["radius"], f["angle"] = graph.radius, graph.angle
        f.attrs.update(
            system=cfg.system,
            settings=json.dumps(to_dict(cfg)),
            settings_hash=settings_hash,
            seed=cfg.seed,
            nodes=n,
            edges=graph.edges.shape[0],
            drawn=graph.drawn,
            disk_radius=graph.disk_radius,
            mean_degree=2.0 * graph.edges.shape[0] / n,
            complete=False,
        )
        if cfg.system == "kuramoto":
            dyn = cfg.kuramoto
            rng = np.random.default_rng([cfg.seed, 1])
            omega = kuramoto.natural_frequencies(n, dyn, rng)
            theta0 = rng.normal(0.0, dyn.theta0_std, n)
            times = np.linspace(0.0, dyn.t_end, frames)
            values[:, 0] = theta0
            f["time"] = times
            f["coupling"] = kuramoto.coupling_strength(times, dyn)
            f["omega"], f["theta0"] = omega, theta0
            f["state"] = theta0  # float64 state at the last written frame
            f.attrs.update(
                frame_dt=dyn.frame_dt,
                solver=dyn.method,
                nfev=0,
                solver_steps=0,
                frames_done=1,
                value_min=theta0.min(),
                value_max=theta0.max(),
            )
        else:
            f["time"] = np.arange(frames, dtype=np.float64)
    os.replace(tmp, path)
    log.info(
        "graph: %d of %d drawn points in the largest component, %d edges, mean degree %.2f",
        n,
        graph.drawn,
        graph.edges.shape[0],
        2.0 * graph.edges.shape[0] / n,
    )


def _integrate_kuramoto(f: h5py.File, cfg: DataConfig, name: str) -> None:
    dyn = cfg.kuramoto
    done = int(f.attrs["frames_done"])
    if done < dyn.frames:
        if done > 1:
            log.info("%s: resuming at frame %d of %d", name, done, dyn.frames)
        weights = kuramoto.coupling_weights(int(f.attrs["nodes"]), f["edges"][:])
        counters = {"nfev": int(f.attrs["nfev"]), "steps": int(f.attrs["solver_steps"])}
        times = f["time"][done - 1 :]
        with tqdm(total=dyn.frames, initial=done, desc=f"simulate {name}", unit="frame", disable=None) as bar:
            for first, frames in kuramoto.integrate(weights, f["omega"][:], f["state"][:], times, dyn, counters):
                start = done - 1 + first
                f["values"][:, start : start + frames.shape[1]] = frames
                f["state"][:] = frames[:, -1]
                f.attrs["frames_done"] = start + frames.shape[1]
                f.attrs["nfev"], f.attrs["solver_steps"] = counters["nfev"], counters["steps"]
                f.attrs["value_min"] = min(float(f.attrs["value_min"]), float(frames.min()))
                f.attrs["value_max"] = max(float(f.attrs["value_max"]), float(frames.max()))
                f.flush()  # the state on disk always matches the frames on disk
                bar.update(frames.shape[1])
    del f["state"]
    lo, hi = float(f.attrs["value_min"]), float(f.attrs["value_max"])
    minmax = dyn.normalise == "minmax" and hi > lo
    f.attrs["value_offset"], f.attrs["value_scale"] = (lo, 1.0 / (hi - lo)) if minmax else (0.0, 1.0)


def _write_burgers(f: h5py.File, cfg: DataConfig) -> None:
    n = int(f.attrs["nodes"])
    series, curves, mix = burgers.social_series(n, f["edges"][:], cfg.burgers, np.random.default_rng([cfg.seed, 1]))
    for start in range(0, n, _ROWS_PER_WRITE):
        f["values"][start : start + _ROWS_PER_WRITE] = series[start : start + _ROWS_PER_WRITE]
    f["curves"], f["mix"] = curves, mix
    f.attrs.update(value_min=float(series.min()), value_max=float(series.max()), value_offset=0.0, value_scale=1.0)


@dataclass
class Dataset:
    """A dataset in memory: the series as models see them, the graph, the settings."""

    values: np.ndarray  # (N, T) float32, (stored values - offset) * scale
    time: np.ndarray  # (T,)
    edges: np.ndarray  # (E, 2)
    adjacency: sp.csr_matrix  # (N, N) symmetric 0/1
    degree: np.ndarray  # (N,)
    system: str
    settings: dict  # the DataConfig
    settings_hash: str

    @property
    def num_nodes(self) -> int:
        return self.values.shape[0]

    @property
    def num_frames(self) -> int:
        return self.values.shape[1]


def load(path: str | os.PathLike) -> Dataset:
    """Read a complete dataset (its series into memory: N x T x 4 bytes)."""
    path = Path(path)
    if not path.is_file():
        raise IrnoError(f"{path}: dataset not found (run 'irno roma simulate')")
    try:
        with h5py.File(path, "r") as f:
            if not f.attrs.get("complete", False):
                raise IrnoError(f"{path}: incomplete dataset (simulation did not finish)")
            edges = f["edges"][:]
            n = int(f.attrs["nodes"])
            adj = adjacency(n, edges)
            values = np.empty(f["values"].shape, dtype=np.float32)
            offset, scale = float(f.attrs["value_offset"]), float(f.attrs["value_scale"])
            for start in range(0, n, _ROWS_PER_WRITE):
                rows = f["values"][start : start + _ROWS_PER_WRITE].astype(np.float64)
                values[start : start + _ROWS_PER_WRITE] = (rows - offset) * scale
            return Dataset(
                values=values,
                time=f["time"][:],
                edges=edges,
                adjacency=adj,
                degree=np.asarray(adj.sum(axis=1)).ravel(),
                system=str(f.attrs["system"]),
                settings=json.loads(f.attrs["settings"]),
                settings_hash=str(f.attrs["settings_hash"]),
            )
    except (OSError, KeyError) as e:
        raise IrnoError(f"{path}: not a readable ROMA dataset ({e})") from None


def describe(path: str | os.PathLike) -> dict:
    """The dataset's attributes (sizes, degree, solver statistics) without reading the series."""
    with h5py.File(path, "r") as f:
        return {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items() if k != "settings"}


# ----------------------------------------------------------------------------- graph encodings


def encode(cfg: EncodingConfig, data_path: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Compute the graph encodings of a dataset's graph and write ``encodings.h5``."""
    data_path, out = Path(data_path), Path(out)
    if not data_path.is_file():
        raise IrnoError(f"{data_path}: dataset not found (run 'irno roma simulate')")
    with h5py.File(data_path, "r") as f:
        n, edges, dataset_hash = int(f.attrs["nodes"]), f["edges"][:], str(f.attrs["settings_hash"])
    encodings = graph_encodings(adjacency(n, edges), cfg)
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        for kind, array in encodings.items():
            f[kind] = array
        f.attrs.update(
            settings=json.dumps(to_dict(cfg)), settings_hash=stable_hash(to_dict(cfg)), dataset_hash=dataset_hash
        )
    return out


def load_encodings(path: str | os.PathLike, kinds: list[str], data: Dataset) -> np.ndarray:
    """(N, sum of the kinds' dimensions) float32 encodings of `data`'s nodes, kinds in order."""
    path = Path(path)
    if not path.is_file():
        raise IrnoError(f"{path}: graph encodings not found (run 'irno roma encode')")
    with h5py.File(path, "r") as f:
        if f.attrs.get("dataset_hash") != data.settings_hash:
            raise IrnoError(f"{path}: encodings of another dataset (its settings hash differs)")
        parts = [f[kind][:] for kind in kinds]
    return np.concatenate(parts, axis=1) if parts else np.zeros((data.num_nodes, 0), dtype=np.float32)
