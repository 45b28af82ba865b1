"""Graphs of the ROMA study: random hyperbolic graphs, random-walk subgraphs, graph encodings.

The generator never looks at all pairs: a sweep over radial bands of angle-sorted points finds
each edge once, from its inner point, in O(N log N + E) (docs/roma.md, "Data"). The graph
encodings (the reference's positional encodings: Laplacian eigenvectors and node2vec, each
min-max normalised) are computed once on the whole graph, and every model that reads them takes
its subgraph's rows (docs/roma.md, "Graph encodings").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg
from scipy.sparse.csgraph import connected_components

from irno import IrnoError
from irno.device import select_device

_BAND_WIDTH = 0.5  # radial band width of the sweep; ~e^(w/2) candidates per edge near the rim
_MAX_CANDIDATES = 1 << 23  # candidate pairs held at once (memory bound of the sweep)
_DENSE_NODES = 2000  # graphs up to this size get a dense eigensolver


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
    """Radii r = arcsinh(u (cosh R - 1)), u ~ U(0, 1) (docs/roma.md, "Data"), and uniform angles."""
    radius = np.arcsinh(rng.random(nodes) * (math.cosh(R) - 1.0))
    angle = 2.0 * math.pi * rng.random(nodes)
    return radius, angle


def hyperbolic_edges(radius: np.ndarray, angle: np.ndarray, R: float) -> np.ndarray:
    """(E, 2) int64 array of all pairs i < j at hyperbolic distance below R (radial-band sweep)."""
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


WALK_PATIENCE = 100  # draws at one root count before the count moves (the reference's patience)


def initial_walk_roots(size: int, walk_length: int) -> int:
    """The reference's first root count: size // walk_length + 20."""
    return size // walk_length + 20


def random_walk_subgraph(
    adj: sp.csr_matrix, size: int, walk_length: int, rng: np.random.Generator, roots: int
) -> tuple[np.ndarray, int]:
    """Exactly `size` distinct nodes, ascending: the nodes that `roots` random walks of `walk_length`
    steps from uniform random roots visit, redrawn until they number exactly `size`.

    The reference's sampler (GraphSAINT's random-walk sampler in its ``get_next_batch``): walks
    on the graph with self loops, so a step stays put with probability 1 / (degree + 1) (a node
    without neighbours always); after WALK_PATIENCE draws that miss the size, the root count
    moves by one towards it (down when the last draw had too many nodes, up when too few) and
    the draws go on. Returns the nodes and the root count that gave them, where the next draw
    should start.
    """
    n = adj.shape[0]
    if size > n:
        raise IrnoError(f"train.subgraph_nodes = {size} exceeds the {n} nodes available to sample from")
    indptr, indices = adj.indptr, adj.indices
    degree = np.diff(indptr)
    while True:
        for _ in range(WALK_PATIENCE):
            position = rng.integers(n, size=roots)
            visited = [position]
            for _ in range(walk_length):
                slot = (rng.random(roots) * (degree[position] + 1)).astype(np.int64)  # slot = degree: the self loop
                moving = slot < degree[position]
                position = position.copy()
                position[moving] = indices[indptr[position[moving]] + slot[moving]]
                visited.append(position)
            nodes = np.unique(np.concatenate(visited))
            if nodes.size == size:
                return nodes, roots
        if nodes.size > size and roots == 1:
            raise IrnoError(
                f"train.walk_length = {walk_length}: one walk visits more than train.subgraph_nodes = {size} "
                "nodes in every draw; use shorter walks"
            )
        if nodes.size < size and roots == n:
            raise IrnoError(f"train.subgraph_nodes = {size}: walks from every node never cover exactly {size} nodes")
        roots += -1 if nodes.size > size else 1


def induced_subgraph(adj: sp.csr_matrix, nodes: np.ndarray) -> sp.csr_matrix:
    return adj[nodes][:, nodes].tocsr()


# ----------------------------------------------------------------------------- graph encodings


def normalised_adjacency(adj: sp.csr_matrix) -> sp.csr_matrix:
    """D^-1/2 A D^-1/2 (isolated nodes: zero rows)."""
    degree = np.asarray(adj.sum(axis=1)).ravel()
    inv_sqrt = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1e-300)), 0.0)
    return sp.diags(inv_sqrt) @ adj @ sp.diags(inv_sqrt)


def laplacian_eigenvectors(adj: sp.csr_matrix, k: int, rng: np.random.Generator) -> np.ndarray:
    """(n, k) eigenvectors of L = I - D^-1/2 A D^-1/2 with the 2nd .. (k+1)th smallest
    eigenvalues, in that order, each with a random sign; zero columns where n <= k."""
    n = adj.shape[0]
    out = np.zeros((n, k))
    wanted = min(k + 1, n)
    if wanted < 2:
        return out
    normalised = normalised_adjacency(adj.astype(np.float64))
    if n <= _DENSE_NODES or wanted >= n // 2:  # dense: small graphs, or half the spectrum
        # torch's solver: OpenBLAS's (numpy's) threads spin on a busy node, 100x slower at n = 256
        import torch

        values, vectors = (a.numpy() for a in torch.linalg.eigh(torch.from_numpy(normalised.toarray())))
    else:
        # ARPACK's own start vector differs from run to run, and with it the eigenvectors' signs:
        # one drawn from the seeded generator makes the encodings reproducible
        v0 = rng.standard_normal(n)
        values, vectors = scipy.sparse.linalg.eigsh(normalised, k=wanted, which="LA", tol=1e-6, v0=v0)
    order = np.argsort(-values)[:wanted]  # largest of N = smallest of L, the trivial one first
    vectors = vectors[:, order[1:]]
    out[:, : vectors.shape[1]] = vectors * rng.choice([-1.0, 1.0], size=vectors.shape[1])
    return out


def node2vec(adj: sp.csr_matrix, dim: int, cfg, device: str = "cpu") -> np.ndarray:
    """(n, dim) node2vec embedding with p = q = 1 (`cfg`: an EncodingConfig).

    Per epoch, every node (in a random order, `batch_nodes` at a time) starts `walks_per_node`
    random walks of `walk_length` steps and as many walks of uniformly random nodes; every window
    of `context` consecutive nodes of a walk is a sample: sigmoid(<e_first, e_other>) should be 1
    on real walks and 0 on random ones (binary cross-entropy on each pair, a mean per kind).
    """
    import torch

    device = select_device(device)
    n = adj.shape[0]
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    indptr = torch.as_tensor(adj.indptr, dtype=torch.int64, device=device)
    indices = torch.as_tensor(adj.indices, dtype=torch.int64, device=device)
    degree = indptr[1:] - indptr[:-1]
    embedding = torch.nn.Embedding(n, dim, sparse=True, device=device)
    torch.nn.init.normal_(embedding.weight, generator=generator)
    optimizer = torch.optim.SparseAdam(embedding.parameters(), lr=cfg.lr)
    windows = cfg.walk_length + 2 - cfg.context  # windows of `context` nodes in a walk of walk_length + 1 nodes

    def walk(roots: torch.Tensor) -> torch.Tensor:  # (R,) -> (R, walk_length + 1)
        steps = [roots]
        position = roots
        for _ in range(cfg.walk_length):
            offset = (torch.rand(position.shape, generator=generator, device=device) * degree[position]).long()
            position = torch.where(degree[position] > 0, indices[indptr[position] + offset], position)
            steps.append(position)
        return torch.stack(steps, dim=1)

    # the pairs (first node of a window, another node of it): positions (i, j), i < windows, 0 < j - i < context
    position = torch.arange(cfg.walk_length + 1, device=device)
    gap = position[None, :] - position[:, None]  # (L, L): j - i
    pairs = (position[:, None] < windows) & (gap > 0) & (gap < cfg.context)

    def pair_loss(walks: torch.Tensor, positive: bool) -> torch.Tensor:
        e = embedding(walks)  # (R, L, dim): each walk's nodes looked up once, not once per window
        p = torch.sigmoid((e @ e.transpose(1, 2))[:, pairs])  # (R, pairs)
        return -torch.log((p if positive else 1 - p) + 1e-15).mean()

    for _ in range(cfg.epochs):
        order = torch.randperm(n, generator=generator, device=device)
        for batch in order.split(cfg.batch_nodes):
            real = walk(batch.repeat_interleave(cfg.walks_per_node))
            roots = batch.repeat_interleave(cfg.walks_per_node * cfg.negatives)
            noise = torch.randint(n, (roots.numel(), cfg.walk_length), generator=generator, device=device)
            fake = torch.cat([roots[:, None], noise], dim=1)
            loss = pair_loss(real, True) + pair_loss(fake, False)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return embedding.weight.detach().cpu().numpy().astype(np.float64)


def minmax(x: np.ndarray) -> np.ndarray:
    """x mapped onto [0, 1] by its overall minimum and maximum (unchanged if constant or empty)."""
    if x.size == 0 or x.max() == x.min():
        return x
    return (x - x.min()) / (x.max() - x.min())


def graph_encodings(adj: sp.csr_matrix, cfg) -> dict[str, np.ndarray]:
    """{"laplacian": (n, cfg.laplacian), "node2vec": (n, cfg.node2vec)} float32, each min-max
    normalised over the whole graph (`cfg`: an EncodingConfig)."""
    rng = np.random.default_rng([cfg.seed, 11])
    out = {"laplacian": minmax(laplacian_eigenvectors(adj, cfg.laplacian, rng))}
    out["node2vec"] = (
        minmax(node2vec(adj, cfg.node2vec, cfg, cfg.device)) if cfg.node2vec else np.zeros((adj.shape[0], 0))
    )
    return {k: v.astype(np.float32) for k, v in out.items()}
