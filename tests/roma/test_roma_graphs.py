"""Random hyperbolic graphs, random-walk subgraphs and graph encodings (Laplacian eigenvectors, node2vec)."""

import math

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

import irno.roma.graphs as graphs
from irno import IrnoError
from irno.roma.graphs import (
    adjacency,
    disk_radius,
    graph_encodings,
    hyperbolic_edges,
    induced_subgraph,
    initial_walk_roots,
    laplacian_eigenvectors,
    minmax,
    node2vec,
    random_hyperbolic_graph,
    random_walk_subgraph,
    sample_points,
)
from irno.roma.settings import EncodingConfig


def brute_force_edges(radius, angle, R):
    """Every pair, with the textbook distance cosh d = cosh r cosh r' - sinh r sinh r' cos(dphi)."""
    i, j = np.triu_indices(radius.size, 1)
    cosh_d = np.cosh(radius[i]) * np.cosh(radius[j]) - np.sinh(radius[i]) * np.sinh(radius[j]) * np.cos(
        angle[i] - angle[j]
    )
    close = np.arccosh(np.maximum(cosh_d, 1.0)) < R
    return np.stack([i[close], j[close]], axis=1)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("mean_degree", [3.0, 24 / math.pi])
def test_edges_exactly_where_distance_below_R(seed, mean_degree):
    rng = np.random.default_rng(seed)
    R = disk_radius(1200, mean_degree)
    radius, angle = sample_points(1200, R, rng)
    edges = hyperbolic_edges(radius, angle, R)
    expected = brute_force_edges(radius, angle, R)
    assert expected.shape[0] > 1000
    np.testing.assert_array_equal(edges, expected)  # both sorted by (i, j)


def test_mean_degree_near_target():
    for target in (3.0, 24 / math.pi):
        R = disk_radius(20_000, target)
        degrees = [
            2 * hyperbolic_edges(*sample_points(20_000, R, np.random.default_rng(s)), R).shape[0] / 20_000
            for s in range(3)
        ]
        assert abs(np.mean(degrees) - target) < 0.1 * target, (target, degrees)


def test_graph_is_the_largest_component_and_deterministic():
    g = random_hyperbolic_graph(3000, 3.0, np.random.default_rng([5, 0]))
    n = g.num_nodes
    a = adjacency(n, g.edges)
    assert connected_components(a, directed=False)[0] == 1
    assert (g.edges[:, 0] < g.edges[:, 1]).all() and g.edges.max() == n - 1
    assert np.unique(g.edges, axis=0).shape == g.edges.shape
    assert 100 < n < 3000 and g.drawn == 3000
    again = random_hyperbolic_graph(3000, 3.0, np.random.default_rng([5, 0]))
    np.testing.assert_array_equal(g.edges, again.edges)
    np.testing.assert_array_equal(g.radius, again.radius)
    other = random_hyperbolic_graph(3000, 3.0, np.random.default_rng([6, 0]))
    assert other.edges.shape != g.edges.shape or not np.array_equal(other.edges, g.edges)


def test_random_walk_subgraph():
    """The reference's sampler: whole walks redrawn until exactly `size` nodes, ascending."""
    g = random_hyperbolic_graph(2000, 24 / math.pi, np.random.default_rng(1))
    a = adjacency(g.num_nodes, g.edges)
    nodes, roots = random_walk_subgraph(a, 200, 8, np.random.default_rng(0), initial_walk_roots(200, 8))
    assert initial_walk_roots(200, 8) == 45  # size // walk_length + 20
    assert nodes.shape == (200,) and (np.diff(nodes) > 0).all()
    # walks move along edges: the subgraph has far more edges than 200 random nodes would
    random_nodes = np.random.default_rng(0).choice(g.num_nodes, 200, replace=False)
    assert induced_subgraph(a, nodes).nnz > 5 * induced_subgraph(a, random_nodes).nnz
    again, roots_again = random_walk_subgraph(a, 200, 8, np.random.default_rng(0), initial_walk_roots(200, 8))
    np.testing.assert_array_equal(nodes, again)
    assert roots_again == roots
    # from far too many or too few roots the count moves one at a time towards the size
    _, fewer = random_walk_subgraph(a, 200, 8, np.random.default_rng(1), 120)
    _, more = random_walk_subgraph(a, 200, 8, np.random.default_rng(1), 2)
    assert fewer < 120 and more > 2
    with pytest.raises(IrnoError, match="subgraph_nodes"):
        random_walk_subgraph(a, g.num_nodes + 1, 8, np.random.default_rng(0), 10)


def test_random_walks_may_stay_put_as_on_the_graph_with_self_loops():
    """On one edge, a walk of one step from one root visits one node only when it stays: without
    the self loop no draw would give one node, and the sampler would give up."""
    edge = adjacency(2, np.array([[0, 1]]))
    rng = np.random.default_rng(2)
    nodes, roots = random_walk_subgraph(edge, 1, 1, rng, 1)
    assert nodes.size == 1 and roots == 1
    ring = adjacency(1000, np.stack([np.arange(1000), (np.arange(1000) + 1) % 1000], axis=1))
    with pytest.raises(IrnoError, match="shorter walks"):
        random_walk_subgraph(ring, 2, 50, rng, 1)


def path_with_branch() -> sp.csr_matrix:
    """0-1-2-3 with 4 hanging off 1: five nodes, connected."""
    return adjacency(5, np.array([[0, 1], [1, 2], [2, 3], [1, 4]]))


@pytest.mark.parametrize("sparse", [False, True])
def test_laplacian_eigenvectors_by_hand(sparse, monkeypatch):
    if sparse:  # the Lanczos branch
        monkeypatch.setattr(graphs, "_DENSE_NODES", 10)
        g = random_hyperbolic_graph(300, 24 / math.pi, np.random.default_rng(2))
        a = adjacency(g.num_nodes, g.edges)
    else:
        a = path_with_branch()
    k = 3
    vectors = laplacian_eigenvectors(a, k, np.random.default_rng(0))
    assert vectors.shape == (a.shape[0], k)
    degree = np.asarray(a.sum(axis=1)).ravel()
    lap = np.eye(a.shape[0]) - a.toarray() / np.sqrt(np.outer(degree, degree))
    eigenvalues = np.linalg.eigvalsh(lap)[1 : k + 1]  # the 2nd .. (k+1)th smallest: the trivial 0 dropped
    np.testing.assert_allclose(lap @ vectors, vectors * eigenvalues, atol=1e-5)
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(k), atol=1e-5)
    np.testing.assert_allclose(vectors.T @ np.sqrt(degree), 0, atol=1e-5)  # orthogonal to the trivial one
    # reproducible: the same seed gives the same vectors (ARPACK's own start vector would not)
    np.testing.assert_array_equal(laplacian_eigenvectors(a, k, np.random.default_rng(0)), vectors)
    flipped = laplacian_eigenvectors(a, k, np.random.default_rng(1))  # random signs
    np.testing.assert_allclose(np.abs(flipped), np.abs(vectors), atol=1e-5)
    # more than the graph has: zero columns
    assert (laplacian_eigenvectors(path_with_branch(), 6, np.random.default_rng(0))[:, 4:] == 0).all()


def test_node2vec_embeds_neighbours_close():
    g = random_hyperbolic_graph(400, 24 / math.pi, np.random.default_rng(3))
    a = adjacency(g.num_nodes, g.edges)
    cfg = EncodingConfig(node2vec=16, epochs=4, batch_nodes=128, lr=0.05, device="cpu")
    e = node2vec(a, 16, cfg)
    assert e.shape == (g.num_nodes, 16)
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    rng = np.random.default_rng(0)
    pairs = rng.integers(g.num_nodes, size=(2000, 2))
    assert (e[g.edges[:, 0]] * e[g.edges[:, 1]]).sum(1).mean() > (e[pairs[:, 0]] * e[pairs[:, 1]]).sum(1).mean() + 0.2
    once = EncodingConfig(node2vec=4, epochs=1, batch_nodes=256, device="cpu")
    np.testing.assert_array_equal(node2vec(a, 4, once), node2vec(a, 4, once))  # seeded


def test_graph_encodings_are_min_max_normalised():
    cfg = EncodingConfig(laplacian=3, node2vec=2, epochs=1, device="cpu")
    out = graph_encodings(path_with_branch(), cfg)
    assert out["laplacian"].shape == (5, 3) and out["node2vec"].shape == (5, 2)
    for array in out.values():  # one minimum and maximum per kind, over the whole graph
        assert array.dtype == np.float32 and array.min() == 0 and array.max() == pytest.approx(1)
    assert minmax(np.array([[2.0, 4.0], [3.0, 6.0]])).tolist() == [[0.0, 0.5], [0.25, 1.0]]
