"""Random hyperbolic graphs, random-walk subgraphs and positional encodings."""

import math

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from irno.roma.graphs import (
    adjacency,
    disk_radius,
    hyperbolic_edges,
    induced_subgraph,
    positional_encoding,
    random_hyperbolic_graph,
    random_walk_subgraph,
    sample_points,
)
from irno.utils import IrnoError


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
    g = random_hyperbolic_graph(2000, 24 / math.pi, np.random.default_rng(1))
    a = adjacency(g.num_nodes, g.edges)
    nodes = random_walk_subgraph(a, 200, 8, np.random.default_rng(0))
    assert nodes.shape == (200,) and np.unique(nodes).size == 200
    # walks move along edges: the subgraph has far more edges than 200 random nodes would
    random_nodes = np.random.default_rng(0).choice(g.num_nodes, 200, replace=False)
    assert induced_subgraph(a, nodes).nnz > 5 * induced_subgraph(a, random_nodes).nnz
    np.testing.assert_array_equal(nodes, random_walk_subgraph(a, 200, 8, np.random.default_rng(0)))
    with pytest.raises(IrnoError, match="subgraph_nodes"):
        random_walk_subgraph(a, g.num_nodes + 1, 8, np.random.default_rng(0))


def test_positional_encodings_by_hand():
    # a path 0-1-2-3 plus an isolated node 4
    a = sp.csr_matrix(
        np.array([[0, 1, 0, 0, 0], [1, 0, 1, 0, 0], [0, 1, 0, 1, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]], dtype=float)
    )
    pe = positional_encoding(a, ["laplacian", "random_walk"], 3)
    assert pe.shape == (5, 6) and pe.dtype == np.float32
    # Laplacian part: eigenvectors of I - D^-1/2 A D^-1/2 for its 3 smallest eigenvalues
    deg = np.array([1, 2, 2, 1, 0.0])
    inv = np.where(deg > 0, 1 / np.sqrt(np.maximum(deg, 1)), 0)
    lap = np.eye(5) - inv[:, None] * a.toarray() * inv[None, :]
    vectors = pe[:, :3].astype(float)
    eigenvalues = np.linalg.eigvalsh(lap)[:3]
    np.testing.assert_allclose(lap @ vectors, vectors * eigenvalues, atol=1e-5)
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(3), atol=1e-5)
    # random-walk part: return probabilities diag(P^t), P = D^-1 A, t = 1, 2, 3
    p = np.where(deg[:, None] > 0, a.toarray() / np.maximum(deg, 1)[:, None], 0)
    expected = np.stack([np.diag(np.linalg.matrix_power(p, t)) for t in (1, 2, 3)], axis=1)
    np.testing.assert_allclose(pe[:, 3:], expected, atol=1e-6)
    assert expected[1, 1] == pytest.approx(0.75)  # 1 -> 0 -> 1 (1/2) or 1 -> 2 -> 1 (1/4)


def test_positional_encoding_signs_and_padding():
    a = adjacency(3, np.array([[0, 1], [1, 2]]))
    plain = positional_encoding(a, ["laplacian"], 5)
    assert plain.shape == (3, 5) and (plain[:, 3:] == 0).all()  # 3 nodes: 2 columns of padding
    flipped = positional_encoding(a, ["laplacian"], 5, np.random.default_rng(0))
    np.testing.assert_allclose(np.abs(flipped), np.abs(plain), atol=1e-6)
    assert any(
        not np.allclose(positional_encoding(a, ["laplacian"], 5, np.random.default_rng(s)), plain) for s in range(5)
    )
    assert positional_encoding(a, [], 5).shape == (3, 0)
