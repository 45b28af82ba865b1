"""Kuramoto oscillators on a graph: the dynamics on sparse operators, float64 adaptive integration.

    dtheta_i/dt = omega_i + coupling(t) sum_j w_ij sin(theta_j - theta_i)
                = omega_i + coupling(t) [cos(theta_i) (W sin theta)_i - sin(theta_i) (W cos theta)_i]

so one right-hand side costs two sparse products with W (O(E)). scipy's DOP853 (or RK45) is
stepped by hand and its dense output evaluated at the frame times, which yields the frames in
blocks: irno.roma.datasets streams them to the file (memory O(N) however long the run) and
resumes an interrupted simulation from its last written block (a fresh solver start from that
state, equal to an uninterrupted run within the tolerances).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.integrate
import scipy.sparse as sp

from irno import IrnoError
from irno.roma.graphs import adjacency
from irno.roma.settings import KuramotoConfig

_BLOCK_BYTES = 64 << 20  # frames buffered before a write


def coupling_weights(num_nodes: int, edges: np.ndarray) -> sp.csr_matrix:
    """W with w_ij = sqrt(deg_j) / sum_{k in N(i)} sqrt(deg_k) on edges (rows sum to 1)."""
    a = adjacency(num_nodes, edges)
    sqrt_degree = np.sqrt(np.asarray(a.sum(axis=1)).ravel())
    weighted = a.multiply(sqrt_degree[None, :]).tocsr()
    row_sum = np.asarray(weighted.sum(axis=1)).ravel()
    return sp.diags(np.where(row_sum > 0, 1.0 / np.maximum(row_sum, 1e-300), 0.0)) @ weighted


def coupling_strength(t: np.ndarray | float, cfg: KuramotoConfig) -> np.ndarray:
    """coupling(t) = coupling [a + (1 - a) sin^2(t') ((1 - d) |cos(g t')|^b + d)], t' = pi periods t / t_end."""
    s = np.pi * cfg.periods * np.asarray(t, dtype=np.float64) / cfg.t_end
    return cfg.coupling * (
        cfg.a + (1 - cfg.a) * np.sin(s) ** 2 * ((1 - cfg.d) * np.abs(np.cos(cfg.g * s)) ** cfg.b + cfg.d)
    )


def natural_frequencies(num_nodes: int, cfg: KuramotoConfig, rng: np.random.Generator) -> np.ndarray:
    """omega ~ N(0, std^2), clipped at +-clip * std, then centred (zero mean frequency)."""
    omega = np.clip(
        rng.normal(0.0, cfg.omega_std, num_nodes), -cfg.omega_clip * cfg.omega_std, cfg.omega_clip * cfg.omega_std
    )
    return omega - omega.mean()


def integrate(
    weights: sp.csr_matrix,
    omega: np.ndarray,
    state: np.ndarray,
    times: np.ndarray,
    cfg: KuramotoConfig,
    counters: dict | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Integrate from `state` at times[0]; yield (index of the first frame, (N, k) float64 frames)
    blocks that cover times[1:] in order. `counters` (if given) accumulates ``nfev`` and ``steps``.
    """

    def rhs(t: float, theta: np.ndarray) -> np.ndarray:
        s, c = np.sin(theta), np.cos(theta)
        return omega + coupling_strength(t, cfg) * (c * (weights @ s) - s * (weights @ c))

    counters = {} if counters is None else counters
    counters.setdefault("nfev", 0)
    counters.setdefault("steps", 0)
    solver = getattr(scipy.integrate, cfg.method)(
        rhs, float(times[0]), np.asarray(state, dtype=np.float64), float(times[-1]), rtol=cfg.rtol, atol=cfg.atol
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
                "try kuramoto.method or a looser kuramoto.rtol"
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
