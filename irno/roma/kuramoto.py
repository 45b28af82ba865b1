"""Kuramoto datasets: the dynamics on sparse operators, float64 adaptive integration, HDF5 files.

    dtheta_i/dt = omega_i + K(t) sum_j w_ij sin(theta_j - theta_i)
                = omega_i + K(t) [cos(theta_i) (W sin theta)_i - sin(theta_i) (W cos theta)_i]

so one right-hand side costs two sparse products with W (O(E)). scipy's DOP853 (or RK45) is
stepped by hand and its dense output evaluated at the frame times, which streams frames to the
file in blocks: memory stays O(N) however long the run, and an interrupted simulation resumes
from its last written block (the partial file keeps the state; the resumed part is a fresh
solver start from that state, equal to an uninterrupted run within the tolerances).

File layout (``kuramoto.h5``; written under a temporary name, renamed when complete):

    phases    (N, T)  float32/64   theta_i(t_k), unwrapped, radians
    time      (T,)    float64      t_k = k t_end / (T - 1)
    coupling  (T,)    float64      K(t_k)
    edges     (E, 2)  int64        undirected, i < j, nodes of the largest component
    omega, theta0, radius, angle   (N,) float64   natural frequencies, initial phases, node coordinates
    attrs: settings (JSON of the DataConfig), settings_hash, seed, nodes, edges, drawn, disk_radius,
           mean_degree, frame_dt, solver, nfev, solver_steps, complete
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import scipy.integrate
import scipy.sparse as sp
from tqdm import tqdm

from irno.roma.config import DataConfig, DynamicsConfig
from irno.roma.graphs import adjacency, random_hyperbolic_graph
from irno.utils import IrnoError, stable_hash, to_dict

log = logging.getLogger("irno.roma")

_BLOCK_BYTES = 64 << 20  # frames buffered before a write


def coupling_weights(num_nodes: int, edges: np.ndarray) -> sp.csr_matrix:
    """W with w_ij = sqrt(deg_j) / sum_{k in N(i)} sqrt(deg_k) on edges (rows sum to 1)."""
    a = adjacency(num_nodes, edges)
    sqrt_degree = np.sqrt(np.asarray(a.sum(axis=1)).ravel())
    weighted = a.multiply(sqrt_degree[None, :]).tocsr()
    row_sum = np.asarray(weighted.sum(axis=1)).ravel()
    return sp.diags(np.where(row_sum > 0, 1.0 / np.maximum(row_sum, 1e-300), 0.0)) @ weighted


def coupling_strength(t: np.ndarray | float, dyn: DynamicsConfig) -> np.ndarray:
    """K(t) = K [a + (1 - a) sin^2(t') ((1 - d) |cos(g t')|^b + d)], t' = pi periods t / t_end."""
    s = np.pi * dyn.periods * np.asarray(t, dtype=np.float64) / dyn.t_end
    return dyn.K * (dyn.a + (1 - dyn.a) * np.sin(s) ** 2 * ((1 - dyn.d) * np.abs(np.cos(dyn.g * s)) ** dyn.b + dyn.d))


def natural_frequencies(num_nodes: int, dyn: DynamicsConfig, rng: np.random.Generator) -> np.ndarray:
    """omega ~ N(0, std^2), clipped at +-clip * std, then centred (zero mean frequency)."""
    omega = np.clip(
        rng.normal(0.0, dyn.omega_std, num_nodes), -dyn.omega_clip * dyn.omega_std, dyn.omega_clip * dyn.omega_std
    )
    return omega - omega.mean()


def integrate(
    weights: sp.csr_matrix,
    omega: np.ndarray,
    state: np.ndarray,
    times: np.ndarray,
    dyn: DynamicsConfig,
    counters: dict | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Integrate from `state` at times[0]; yield (index of the first frame, (N, k) float64 frames)
    blocks that cover times[1:] in order. `counters` (if given) accumulates ``nfev`` and ``steps``.
    """

    def rhs(t: float, theta: np.ndarray) -> np.ndarray:
        s, c = np.sin(theta), np.cos(theta)
        return omega + coupling_strength(t, dyn) * (c * (weights @ s) - s * (weights @ c))

    counters = {} if counters is None else counters
    counters.setdefault("nfev", 0)
    counters.setdefault("steps", 0)
    solver = getattr(scipy.integrate, dyn.method)(
        rhs, float(times[0]), np.asarray(state, dtype=np.float64), float(times[-1]), rtol=dyn.rtol, atol=dyn.atol
    )
    block = max(1, _BLOCK_BYTES // (8 * state.shape[0]))  # frames per yielded block
    done, buffered, first = 1, [], 1
    while done < times.size:
        nfev_before = solver.nfev
        message = solver.step()
        counters["nfev"] += solver.nfev - nfev_before
        counters["steps"] += 1
        if solver.status == "failed":
            raise IrnoError(
                f"Kuramoto integration failed at t = {solver.t:.6g} ({message}); "
                "try dynamics.method or a looser dynamics.rtol"
            )
        stop = times.size if solver.status == "finished" else int(np.searchsorted(times, solver.t, side="right"))
        if stop > done:
            buffered.append(solver.dense_output()(times[done:stop]).reshape(state.shape[0], -1))
            done = stop
        if buffered and (sum(b.shape[1] for b in buffered) >= block or done == times.size):
            frames = np.concatenate(buffered, axis=1)  # (N, k)
            buffered = []
            yield first, frames
            first += frames.shape[1]


# ----------------------------------------------------------------------------- datasets on disk


def simulate(cfg: DataConfig, out: str | os.PathLike) -> Path:
    """Generate the graph, integrate the dynamics and write `out` (resumes an interrupted run)."""
    out = Path(out)
    partial = out.with_name(f".{out.name}.partial")
    settings_hash = stable_hash(to_dict(cfg))
    if partial.exists() and not _resumable(partial, settings_hash):
        partial.unlink()
    if not partial.exists():
        _start_file(cfg, partial, settings_hash)
    with h5py.File(partial, "r+") as f:
        done = int(f.attrs["frames_done"])
        if done < cfg.dynamics.frames:
            if done > 1:
                log.info("%s: resuming at frame %d of %d", out, done, cfg.dynamics.frames)
            n = int(f.attrs["nodes"])
            weights = coupling_weights(n, f["edges"][:])
            times = f["time"][done - 1 :]
            counters = {"nfev": int(f.attrs["nfev"]), "steps": int(f.attrs["solver_steps"])}
            state = f["state"][:]
            with tqdm(
                total=cfg.dynamics.frames, initial=done, desc=f"simulate {out.name}", unit="frame", disable=None
            ) as bar:
                for first, frames in integrate(weights, f["omega"][:], state, times, cfg.dynamics, counters):
                    start = done - 1 + first
                    f["phases"][:, start : start + frames.shape[1]] = frames
                    f["state"][:] = frames[:, -1]
                    f.attrs["frames_done"] = start + frames.shape[1]
                    f.attrs["nfev"], f.attrs["solver_steps"] = counters["nfev"], counters["steps"]
                    f.flush()  # the state on disk always matches the frames on disk
                    bar.update(frames.shape[1])
        del f["state"]
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
    """Graph, frequencies, initial phases and the empty phase array; frame 0 written."""
    dyn = cfg.dynamics
    graph = random_hyperbolic_graph(cfg.graph.nodes, cfg.graph.mean_degree, np.random.default_rng([cfg.seed, 0]))
    n = graph.num_nodes
    rng = np.random.default_rng([cfg.seed, 1])
    omega = natural_frequencies(n, dyn, rng)
    theta0 = rng.normal(0.0, dyn.theta0_std, n)
    times = np.linspace(0.0, dyn.t_end, dyn.frames)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".new")
    with h5py.File(tmp, "w") as f:
        chunks = (min(n, 1 << 15), min(dyn.frames, 32))
        phases = f.create_dataset("phases", shape=(n, dyn.frames), dtype=dyn.dtype, chunks=chunks)
        phases[:, 0] = theta0
        f["time"] = times
        f["coupling"] = coupling_strength(times, dyn)
        f["edges"] = graph.edges
        f["omega"], f["theta0"] = omega, theta0
        f["radius"], f["angle"] = graph.radius, graph.angle
        f["state"] = theta0  # float64 state at the last written frame
        f.attrs.update(
            settings=json.dumps(to_dict(cfg)),
            settings_hash=settings_hash,
            seed=cfg.seed,
            nodes=n,
            edges=graph.edges.shape[0],
            drawn=graph.drawn,
            disk_radius=graph.disk_radius,
            mean_degree=2.0 * graph.edges.shape[0] / n,
            frame_dt=dyn.frame_dt,
            solver=dyn.method,
            nfev=0,
            solver_steps=0,
            frames_done=1,
            complete=False,
        )
    os.replace(tmp, path)
    log.info(
        "graph: %d of %d drawn points in the largest component, %d edges, mean degree %.2f",
        n,
        graph.drawn,
        graph.edges.shape[0],
        2.0 * graph.edges.shape[0] / n,
    )


@dataclass
class KuramotoData:
    """A dataset in memory: phases, graph and the settings it was made with."""

    phases: np.ndarray  # (N, T)
    time: np.ndarray  # (T,)
    edges: np.ndarray  # (E, 2)
    adjacency: sp.csr_matrix  # (N, N) symmetric 0/1
    degree: np.ndarray  # (N,)
    settings: dict  # the DataConfig
    settings_hash: str

    @property
    def num_nodes(self) -> int:
        return self.phases.shape[0]

    @property
    def num_frames(self) -> int:
        return self.phases.shape[1]


def load(path: str | os.PathLike) -> KuramotoData:
    """Read a complete dataset (phases into memory: N x T x 4 bytes for float32)."""
    path = Path(path)
    if not path.is_file():
        raise IrnoError(f"{path}: Kuramoto dataset not found (run 'irno roma simulate')")
    try:
        with h5py.File(path, "r") as f:
            if not f.attrs.get("complete", False):
                raise IrnoError(f"{path}: incomplete dataset (simulation did not finish)")
            edges = f["edges"][:]
            n = int(f.attrs["nodes"])
            adj = adjacency(n, edges)
            return KuramotoData(
                phases=f["phases"][:],
                time=f["time"][:],
                edges=edges,
                adjacency=adj,
                degree=np.asarray(adj.sum(axis=1)).ravel(),
                settings=json.loads(f.attrs["settings"]),
                settings_hash=str(f.attrs["settings_hash"]),
            )
    except (OSError, KeyError) as e:
        raise IrnoError(f"{path}: not a readable Kuramoto dataset ({e})") from None


def describe(path: str | os.PathLike) -> dict:
    """The dataset's attributes (sizes, degree, solver statistics) without reading the phases."""
    with h5py.File(path, "r") as f:
        return {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items() if k != "settings"}
