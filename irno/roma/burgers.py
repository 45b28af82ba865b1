"""Burgers-like social dynamics on a graph (the reference's lib/burgers_coupled.py, the paper's BD data).

Each node's raw series is the mean of ``mixed`` random "gel" curves (the largest group's share in
an aggregation process, `gel_curve`: ours, the reference reads its curves from files no script of
it writes), smoothed by a trailing Gaussian window and differenced; then ``iterations``
message-passing updates couple the nodes:

    x_i(t) <- x_i(t) + sqrt(mean_{j in N(i)} (w_ij x_j(t - 1))^2) / reduction,   w_ij = deg_j / sum_{k in N(i)} deg_k

The series is the cumulative sum of the increments, divided by its global maximum (docs/roma.md, "Data").
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from irno.roma.graphs import adjacency
from irno.roma.settings import BurgersConfig

_BLOCK_FRAMES = 64  # time columns per sparse product in the message-passing updates


def gel_curve(cfg: BurgersConfig, steps: int, rng: np.random.Generator) -> np.ndarray:
    """(steps,) share of ``cfg.agents`` in the largest group after each step.

    Per step, ``influx`` agents join (until there are ``agents``), each with a character
    c ~ U(0, 1); then ``pairs`` times a random pair of present agents (i, j) join their groups
    with probability 1 - |c_i - c_j| (union-find on the groups).
    """
    parent = np.arange(cfg.agents)
    size = np.ones(cfg.agents, dtype=np.int64)
    character = rng.random(cfg.agents)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    present, largest = 0, 1
    curve = np.empty(steps)
    for t in range(steps):
        present = min(cfg.agents, present + cfg.influx)
        if present >= 2:
            for _ in range(cfg.pairs):
                i, j = rng.integers(present, size=2)
                a, b = root(i), root(j)
                if a != b and rng.random() < 1.0 - abs(character[i] - character[j]):
                    if size[a] < size[b]:
                        a, b = b, a
                    parent[b] = a
                    size[a] += size[b]
                    largest = max(largest, int(size[a]))
        curve[t] = largest / cfg.agents
    return curve


def smoothed_increments(curves: np.ndarray, cfg: BurgersConfig) -> np.ndarray:
    """(C, frames + window) curves -> (C, frames) differences of their trailing Gaussian-window sums."""
    k = np.arange(cfg.window)
    weights = np.exp(-0.5 * ((k - (cfg.window - 1) / 2) / cfg.window_std) ** 2)
    windows = np.lib.stride_tricks.sliding_window_view(curves, cfg.window, axis=1)  # (C, steps - window + 1, window)
    sums = windows @ weights  # (C, frames + 1): the sum is defined from the window's last value on
    return np.diff(sums, axis=1)


def coupling(num_nodes: int, edges: np.ndarray) -> sp.csr_matrix:
    """M with (M v)_i = mean_{j in N(i)} w_ij^2 v_j, w_ij = deg_j / sum_{k in N(i)} deg_k."""
    a = adjacency(num_nodes, edges)
    degree = np.asarray(a.sum(axis=1)).ravel()
    w = a.multiply(degree[None, :]).tocsr()
    w = sp.diags(1.0 / np.maximum(np.asarray(w.sum(axis=1)).ravel(), 1e-300)) @ w  # rows sum to 1
    return (sp.diags(1.0 / np.maximum(degree, 1.0)) @ w.multiply(w)).tocsr()


def social_series(
    num_nodes: int, edges: np.ndarray, cfg: BurgersConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(series (N, frames) float32, curves (C, frames + window), mix (N, mixed) curve ids)."""
    curves = np.stack([gel_curve(cfg, cfg.frames + cfg.window, rng) for _ in range(cfg.curves)])
    mix = rng.integers(cfg.curves, size=(num_nodes, cfg.mixed))
    increments = smoothed_increments(curves, cfg).astype(np.float32)  # (C, frames)
    x = increments[mix].mean(axis=1)  # (N, frames)
    m = coupling(num_nodes, edges).astype(np.float32)
    for _ in range(cfg.iterations):
        # in place, latest block first: a block's update reads the previous frames' old values
        for stop in range(x.shape[1], 1, -_BLOCK_FRAMES):
            start = max(1, stop - _BLOCK_FRAMES)
            x[:, start:stop] += np.sqrt(m @ np.square(x[:, start - 1 : stop - 1])) / cfg.reduction
    np.cumsum(x, axis=1, out=x)
    x /= x.max()
    return x, curves, mix
