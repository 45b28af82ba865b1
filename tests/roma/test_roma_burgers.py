"""Burgers-like social dynamics by hand: aggregation curves, smoothing, the coupling, the series."""

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from irno.roma.burgers import coupling, gel_curve, smoothed_increments, social_series
from irno.roma.datasets import load
from irno.roma.settings import BurgersConfig


def test_gel_curves_grow_to_a_giant_group():
    cfg = BurgersConfig(agents=200, influx=5, pairs=1)
    curves = np.stack([gel_curve(cfg, 600, np.random.default_rng(s)) for s in range(4)])
    assert (np.diff(curves, axis=1) >= 0).all()  # the largest group never shrinks (no fragmentation)
    assert (curves[:, 0] <= 2 / 200).all() and (curves <= 1).all()
    assert (curves[:, 50] < 0.1).all() and (curves[:, -1] > 0.9).all()  # small groups first, then a gel
    assert not np.array_equal(curves[0], curves[1])


def test_smoothed_increments_by_hand():
    cfg = BurgersConfig(frames=4, window=3, window_std=1.0)
    curves = np.array([[0.0, 1.0, 3.0, 6.0, 10.0, 15.0, 21.0]])  # frames + window steps
    w = np.exp(-0.5 * (np.arange(3) - 1.0) ** 2)  # the trailing window's Gaussian weights
    sums = np.array([w @ curves[0, t - 2 : t + 1] for t in range(2, 7)])  # defined from the 3rd value on
    np.testing.assert_allclose(smoothed_increments(curves, cfg)[0], np.diff(sums))


def test_coupling_by_hand():
    # a star: 0 in the centre, 1, 2, 3 around it; degrees 3, 1, 1, 1
    edges = np.array([[0, 1], [0, 2], [0, 3]])
    m = coupling(4, edges).toarray()
    # w_ij = deg_j / sum_{k in N(i)} deg_k; (M v)_i = mean_j w_ij^2 v_j
    w_centre = 1 / 3  # each leaf: degree 1 of 3
    np.testing.assert_allclose(m[0], [0, w_centre**2 / 3, w_centre**2 / 3, w_centre**2 / 3])
    np.testing.assert_allclose(m[1], [1.0, 0, 0, 0])  # a leaf's only neighbour is the centre: w = 1
    assert sp.issparse(coupling(4, edges))


def test_social_series_by_hand():
    """Two nodes on an edge; the updates, the cumulative sum and the normalisation done by hand."""
    cfg = BurgersConfig(frames=5, agents=20, influx=2, curves=3, mixed=2, window=4, window_std=1.5, iterations=2)
    edges = np.array([[0, 1]])
    series, curves, mix = social_series(2, edges, cfg, np.random.default_rng(0))
    assert series.shape == (2, 5) and curves.shape == (3, 9) and mix.shape == (2, 2)
    x = smoothed_increments(curves, cfg)[mix].mean(axis=1)  # (2, 5): each node's curves mixed
    for _ in range(2):  # x_i(t) += sqrt(w_ij^2 x_j(t - 1)^2) / 4 with w = 1 on the single edge
        x = x + np.concatenate([np.zeros((2, 1)), np.abs(x[::-1, :-1]) / 4], axis=1)
    expected = np.cumsum(x, axis=1)
    np.testing.assert_allclose(series, expected / expected.max(), rtol=1e-5)


def test_burgers_dataset(tiny_burgers):
    data = load(tiny_burgers)
    assert data.system == "burgers" and data.values.shape == (data.num_nodes, 41)
    assert (np.diff(data.values, axis=1) >= 0).all() and data.values.max() == pytest.approx(1)
    assert data.values.min() >= 0
    with h5py.File(tiny_burgers) as f:
        assert (f.attrs["value_offset"], f.attrs["value_scale"]) == (0.0, 1.0)  # stored as models see them
        assert f["curves"].shape == (8, 41 + 8) and f["mix"].shape == (data.num_nodes, 3)
        np.testing.assert_array_equal(f["time"][:], np.arange(41))
