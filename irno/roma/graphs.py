"""Graphs of the ROMA study: random hyperbolic graphs, random-walk subgraphs, positional encodings.

The generator never looks at all pairs. Points are bucketed into radial bands and sorted by
angle inside each band. For a point i and a band of points at least as far out as i
(r_j >= max(r_i, band start)), the hyperbolic distance grows with r_j at fixed angle, so all of
i's neighbours in that band lie within the angle theta_max(r_i, max(r_i, band start)) of i:
two binary searches give the candidates and the exact distance keeps the edges. Every pair is
found once, from its inner point. Most points sit near the rim, where theta_max is tiny, so the
candidates stay within a small factor of the edges: O(N log N + E) overall (about 2 s for 10^6
points on one core, see benchmarks/roma_graphs.py).

Positional encodings are computed on the subgraph a model sees (random-walk subgraphs of a few
hundred nodes), not on the full graph: the cost does not grow with the graph (3M nodes), train
and test nodes get encodings of the same kind of graph, and one dense eigendecomposition of
the subgraph's normalised adjacency N = D^-1/2 A D^-1/2 = V diag(lambda) V^T gives both kinds:
- Laplacian eigenvectors: the columns of V with the largest lambda, i.e. the smallest
  eigenvalues of the normalised Laplacian I - N (random signs in training, as usual);
- random-walk encodings (the cheap variant; node2vec would need a new dependency): the return
  probabilities diag(P^t) of the walk P = D^-1 A, t = 1..k, which equal diag(N^t) =
  (V * V) @ lambda^t.
A dense solver is the right tool at this size: ARPACK (eigsh) needs k < n/2 for stable
convergence, and the paper's 256 encodings of a 512-node subgraph are half the spectrum. It is
torch's (float64, CPU), whose threads follow ``torch.set_num_threads``: OpenBLAS's own threads,
which scipy's eigh uses, spin on a shared, oversubscribed node (100x slower at n = 256).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import connected_components

from irno.utils import IrnoError

_BAND_WIDTH = 0.5  # radial band width of the sweep; ~e^(w/2) candidates per edge near the rim
_MAX_CANDIDATES = 1 << 23  # candidate pairs held at once (memory bound of the sweep)


@dataclass
class HyperbolicGraph:
    """The largest connected component of a random hyperbolic graph, nodes relabelled 0..n-1."""

    edges: np.ndarray  # (E, 2) int64, i < j, each undirected edge once
    radius: np.ndarray  # (n,) polar coordinates on the hyperbolic plane
    angle: np.ndarray  # (n,)
    disk_radius: float  # R: points lie in the disk of radius R and link when closer than R
    drawn: int  # points drawn before keeping the largest component

    @property
    def num_nodes(self) -> int:
        return self.radius.shape[0]


def disk_radius(nodes: int, mean_degree: float) -> float:
    """R for an expected degree `mean_degree`: (8 / pi) N exp(-R / 2) = mean_degree."""
    return 2.0 * math.log(8.0 * nodes / (math.pi * mean_degree))


def sample_points(nodes: int, R: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Radii r = arcsinh(u (cosh R - 1)), u ~ U(0, 1) (SPEC 7), and uniform angles."""
    radius = np.arcsinh(rng.random(nodes) * (math.cosh(R) - 1.0))
    angle = 2.0 * math.pi * rng.random(nodes)
    return radius, angle


def hyperbolic_edges(radius: np.ndarray, angle: np.ndarray, R: float) -> np.ndarray:
    """(E, 2) int64 array of all pairs i < j at hyperbolic distance below R (radial-band sweep)."""
    n = radius.shape[0]
    n_bands = max(1, math.ceil(R / _BAND_WIDTH))
    band_start = np.linspace(0.0, R, n_bands + 1)[:-1]
    band = np.minimum(np.searchsorted(band_start, radius, side="right") - 1, n_bands - 1)
    cosh_R = math.cosh(R)
    found = []
    for k in range(n_bands):
        members = np.flatnonzero(band == k)
        if members.size == 0:
            continue
        members = members[np.argsort(angle[members], kind="stable")]
        m = members.size
        sorted_angle = angle[members]
        unrolled = np.concatenate([sorted_angle - 2 * math.pi, sorted_angle, sorted_angle + 2 * math.pi])
        queries = np.flatnonzero(band <= k)  # points not farther out than this band
        # Largest angle at which i can reach any point of the band at or beyond its own radius.
        r_i = radius[queries]
        r_b = np.maximum(band_start[k], r_i)
        denominator = 2.0 * np.sinh(r_i) * np.sinh(r_b)
        with np.errstate(divide="ignore", invalid="ignore"):
            sin2_half = np.where(denominator > 0, (cosh_R - np.cosh(r_i - r_b)) / denominator, np.inf)
        whole_band = sin2_half >= 1.0
        theta_max = 2.0 * np.arcsin(np.sqrt(np.clip(sin2_half, 0.0, 1.0)))
        theta_max = theta_max * (1 + 1e-9) + 1e-12  # rounding must never drop a neighbour
        lo = np.searchsorted(unrolled, angle[queries] - theta_max, side="left")
        hi = np.searchsorted(unrolled, angle[queries] + theta_max, side="right")
        lo = np.where(whole_band, m, lo)
        hi = np.where(whole_band, 2 * m, np.minimum(hi, lo + m))
        for chunk in _chunks_by_total(hi - lo, _MAX_CANDIDATES):
            found.append(_close_pairs(queries[chunk], lo[chunk], hi[chunk], members, radius, angle, cosh_R))
    edges = np.concatenate(found) if found else np.zeros((0, 2), dtype=np.int64)
    return edges[np.lexsort((edges[:, 1], edges[:, 0]))]


def _chunks_by_total(counts: np.ndarray, limit: int) -> list[slice]:
    """Consecutive slices of `counts` whose sums stay near `limit` (at least one item each)."""
    cumulative = np.cumsum(counts)
    slices, start = [], 0
    while start < counts.size:
        base = cumulative[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(cumulative, base + limit, side="right")))
        slices.append(slice(start, stop))
        start = stop
    return slices


def _close_pairs(queries, lo, hi, members, radius, angle, cosh_R) -> np.ndarray:
    """Exact test of the candidates members[(lo..hi) mod m] of every query point."""
    counts = hi - lo
    src = np.repeat(queries, counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    dst = members[(np.repeat(lo, counts) + offsets) % members.size]
    r_s, r_d = radius[src], radius[dst]
    outward = (r_d > r_s) | ((r_d == r_s) & (dst > src))  # each pair once, from its inner point
    src, dst, r_s, r_d = src[outward], dst[outward], r_s[outward], r_d[outward]
    half_gap = 0.5 * (np.pi - np.abs(np.pi - np.abs(angle[src] - angle[dst])))
    # cosh d = cosh(r_s - r_d) + 2 sinh r_s sinh r_d sin^2(dphi / 2): no cancellation at small angles
    cosh_d = np.cosh(r_s - r_d) + 2.0 * np.sinh(r_s) * np.sinh(r_d) * np.sin(half_gap) ** 2
    close = cosh_d < cosh_R
    return np.stack([np.minimum(src[close], dst[close]), np.maximum(src[close], dst[close])], axis=1)


def adjacency(num_nodes: int, edges: np.ndarray) -> sp.csr_matrix:
    """Symmetric 0/1 adjacency (CSR, float64) of an undirected edge list."""
    ones = np.ones(edges.shape[0])
    a = sp.coo_matrix((ones, (edges[:, 0], edges[:, 1])), shape=(num_nodes, num_nodes))
    return (a + a.T).tocsr()


def largest_component(num_nodes: int, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(kept node ids, edges relabelled to 0..len(kept)-1) of the largest connected component."""
    _, label = connected_components(adjacency(num_nodes, edges), directed=False)
    kept = np.flatnonzero(label == np.bincount(label).argmax())
    new_id = np.full(num_nodes, -1, dtype=np.int64)
    new_id[kept] = np.arange(kept.size)
    inside = (new_id[edges[:, 0]] >= 0) & (new_id[edges[:, 1]] >= 0)
    return kept, new_id[edges[inside]]


def random_hyperbolic_graph(nodes: int, mean_degree: float, rng: np.random.Generator) -> HyperbolicGraph:
    R = disk_radius(nodes, mean_degree)
    radius, angle = sample_points(nodes, R, rng)
    kept, edges = largest_component(nodes, hyperbolic_edges(radius, angle, R))
    if kept.size < 2:
        raise IrnoError(f"graph.nodes = {nodes}, graph.mean_degree = {mean_degree}: the graph has no edges")
    return HyperbolicGraph(edges=edges, radius=radius[kept], angle=angle[kept], disk_radius=R, drawn=nodes)


# ----------------------------------------------------------------------------- subgraphs


def random_walk_subgraph(adj: sp.csr_matrix, size: int, walk_length: int, rng: np.random.Generator) -> np.ndarray:
    """`size` distinct nodes in the order random walks from uniform random roots first visit them.

    Walks of `walk_length` steps start from fresh roots until enough nodes are seen (GraphSAINT's
    random-walk sampler); a node without neighbours ends its walk where it is.
    """
    n = adj.shape[0]
    if size > n:
        raise IrnoError(f"train.subgraph_nodes = {size} exceeds the {n} nodes available to sample from")
    indptr, indices = adj.indptr, adj.indices
    visits = []
    seen = 0
    while seen < size:
        position = rng.integers(n, size=size // walk_length + 1)  # roots
        walk = [position]
        for _ in range(walk_length):
            degree = indptr[position + 1] - indptr[position]
            pick = indptr[position] + (rng.random(position.size) * degree).astype(np.int64)
            moving = degree > 0
            position = position.copy()
            position[moving] = indices[pick[moving]]
            walk.append(position)
        visits.append(np.stack(walk, axis=1).ravel())  # walk by walk
        order = np.concatenate(visits)
        unique, first = np.unique(order, return_index=True)
        seen = unique.size
    return unique[np.argsort(first)][:size]


def induced_subgraph(adj: sp.csr_matrix, nodes: np.ndarray) -> sp.csr_matrix:
    return adj[nodes][:, nodes].tocsr()


# ----------------------------------------------------------------------------- positional encodings


def positional_encoding(
    adj: sp.csr_matrix, kinds: list[str], dim: int, rng: np.random.Generator | None = None
) -> np.ndarray:
    """(n, len(kinds) * dim) float32 encodings of a (sub)graph's nodes; kinds from
    ``laplacian``, ``random_walk``. With `rng`, Laplacian eigenvectors get random signs (the
    sign of an eigenvector is arbitrary; training on both teaches the model not to rely on it).
    Fewer nodes than `dim`: zero-padded.
    """
    n = adj.shape[0]
    if not kinds:
        return np.zeros((n, 0), dtype=np.float32)
    degree = np.asarray(adj.sum(axis=1)).ravel()
    inv_sqrt = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1e-300)), 0.0)
    normalised = (adj.multiply(inv_sqrt[:, None]).multiply(inv_sqrt[None, :])).toarray()
    eigenvalues, eigenvectors = (x.numpy() for x in torch.linalg.eigh(torch.from_numpy(normalised)))  # ascending
    parts = []
    for kind in kinds:
        out = np.zeros((n, dim))
        if kind == "laplacian":
            k = min(dim, n)
            vectors = eigenvectors[:, ::-1][:, :k]  # smallest Laplacian eigenvalues first
            if rng is not None:
                vectors = vectors * rng.choice([-1.0, 1.0], size=k)
            out[:, :k] = vectors
        elif kind == "random_walk":
            steps = np.arange(1, dim + 1)
            out[:] = (eigenvectors**2) @ (eigenvalues[:, None] ** steps[None, :])  # diag(P^t)
        else:
            raise IrnoError(f"unknown positional encoding '{kind}' (laplacian, random_walk)")
        parts.append(out)
    return np.concatenate(parts, axis=1).astype(np.float32)
