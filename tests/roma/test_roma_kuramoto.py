"""Kuramoto dynamics, integration and dataset files (simulation, resume, the values models see)."""

import h5py
import numpy as np
import pytest

import irno.roma.kuramoto as kuramoto
from irno import IrnoError
from irno.roma.datasets import load, simulate
from irno.roma.kuramoto import coupling_strength, coupling_weights, integrate, natural_frequencies
from irno.roma.settings import DataConfig, GraphConfig, KuramotoConfig


def run(weights, omega, theta0, times, dyn):
    return np.concatenate([block for _, block in integrate(weights, omega, theta0, times, dyn)], axis=1)


def test_uncoupled_phases_advance_linearly():
    edges = np.array([[0, 1], [1, 2], [2, 3], [0, 3]])
    omega = np.array([0.3, -1.0, 2.0, 0.1])
    theta0 = np.array([0.0, 1.0, -2.0, 3.0])
    times = np.linspace(0.0, 10.0, 51)
    phases = run(coupling_weights(4, edges), omega, theta0, times, KuramotoConfig(coupling=0.0, t_end=10.0))
    np.testing.assert_allclose(phases, theta0[:, None] + omega[:, None] * times[None, 1:], atol=1e-10)


@pytest.mark.parametrize("gap", [0.5, 1.5, 1.9])
def test_two_oscillators_phase_lock_below_2K(gap):
    # d(theta_1 - theta_2)/dt = gap - 2K sin(theta_1 - theta_2): locks at arcsin(gap / 2K) when gap < 2K
    dyn = KuramotoConfig(coupling=1.0, a=1.0, t_end=40.0)  # a = 1: constant coupling(t) = coupling
    times = np.linspace(0.0, 40.0, 401)
    phases = run(
        coupling_weights(2, np.array([[0, 1]])), np.array([gap / 2, -gap / 2]), np.array([0.0, 2.5]), times, dyn
    )
    difference = phases[0] - phases[1]
    assert difference[-1] == pytest.approx(np.arcsin(gap / 2), abs=1e-5)
    assert np.ptp(difference[-100:]) < 1e-5


def test_two_oscillators_drift_above_2K():
    dyn = KuramotoConfig(coupling=1.0, a=1.0, t_end=40.0)
    phases = run(
        coupling_weights(2, np.array([[0, 1]])), np.array([1.25, -1.25]), np.zeros(2), np.linspace(0.0, 40.0, 401), dyn
    )
    assert phases[0, -1] - phases[1, -1] > 2 * np.pi * 3  # slips cycle after cycle


def test_coupling_weights_and_strength_by_hand():
    w = coupling_weights(4, np.array([[0, 1], [1, 2], [2, 3]])).toarray()  # path, degrees 1 2 2 1
    r2 = np.sqrt(2)
    np.testing.assert_allclose(w[1], [1 / (1 + r2), 0, r2 / (1 + r2), 0])  # sqrt(deg_j) / sum sqrt(deg_k)
    np.testing.assert_allclose(w[0], [0, 1, 0, 0])
    np.testing.assert_allclose(w.sum(1), 1.0)
    dyn = KuramotoConfig(coupling=5.0, a=0.5, b=10.0, g=10.0, d=0.5, t_end=20.0)
    t = np.array([0.0, 10.0, 4.0])
    s = np.pi * t / 20.0
    expected = 5 * (0.5 + 0.5 * np.sin(s) ** 2 * (0.5 * np.abs(np.cos(10 * s)) ** 10 + 0.5))
    np.testing.assert_allclose(coupling_strength(t, dyn), expected)
    assert coupling_strength(0.0, dyn) == pytest.approx(2.5) and coupling_strength(10.0, dyn) == pytest.approx(5.0)


def test_natural_frequencies():
    omega = natural_frequencies(10_000, KuramotoConfig(omega_std=2.0, omega_clip=1.5), np.random.default_rng(0))
    assert abs(omega.mean()) < 1e-12
    assert np.abs(omega).max() <= 2 * 1.5 * 2.0  # clipped at 3 before centring
    assert 1.5 < omega.std() < 2.0


def test_dataset_file_is_complete_and_deterministic(tiny_kuramoto, tiny_data_config, tmp_path):
    data = load(tiny_kuramoto)
    assert data.values.shape == (data.num_nodes, 41) and data.values.dtype == np.float32
    assert data.adjacency.shape == (data.num_nodes, data.num_nodes) and data.system == "kuramoto"
    with h5py.File(tiny_kuramoto) as f:
        phases = f["values"][:]
        np.testing.assert_allclose(phases[:, 0], f["theta0"][:], atol=1e-6)
        assert f.attrs["nodes"] == data.num_nodes and f["coupling"].shape == (41,)
        # models see the phases mapped onto [0, 1] by their global minimum and maximum
        lo, hi = f.attrs["value_min"], f.attrs["value_max"]
        assert (lo, hi) == pytest.approx((phases.min(), phases.max()))
        assert (f.attrs["value_offset"], f.attrs["value_scale"]) == pytest.approx((lo, 1 / (hi - lo)))
    np.testing.assert_allclose(data.values, (phases - lo) / (hi - lo), atol=1e-6)
    assert data.values.min() == pytest.approx(0, abs=1e-6) and data.values.max() == pytest.approx(1)
    again = load(simulate(tiny_data_config, tmp_path / "again.h5"))
    np.testing.assert_array_equal(again.values, data.values)
    raw = DataConfig(graph=GraphConfig(nodes=200), kuramoto=KuramotoConfig(t_end=0.5, frames=5, normalise="none"))
    with h5py.File(simulate(raw, tmp_path / "raw.h5")) as f:
        stored = f["values"][:]
    np.testing.assert_array_equal(load(tmp_path / "raw.h5").values, stored)  # radians as stored


def test_interrupted_simulation_resumes(tmp_path, monkeypatch):
    cfg = DataConfig(
        graph=GraphConfig(nodes=300),
        kuramoto=KuramotoConfig(t_end=2.0, frames=81, dtype="float64", normalise="none"),
        seed=4,
    )
    reference = load(simulate(cfg, tmp_path / "reference.h5")).values
    monkeypatch.setattr(kuramoto, "_BLOCK_BYTES", 1)  # one block per solver step
    real_integrate = kuramoto.integrate

    def interrupted(*args, **kwargs):
        for i, item in enumerate(real_integrate(*args, **kwargs)):
            if i == 3:
                raise KeyboardInterrupt  # the job is killed after three blocks
            yield item

    monkeypatch.setattr(kuramoto, "integrate", interrupted)
    out = tmp_path / "resumed.h5"
    with pytest.raises(KeyboardInterrupt):
        simulate(cfg, out)
    assert not out.exists()
    with h5py.File(tmp_path / ".resumed.h5.partial") as f:
        done = int(f.attrs["frames_done"])
    assert 1 < done < 81
    monkeypatch.setattr(kuramoto, "integrate", real_integrate)
    resumed = load(simulate(cfg, out)).values
    np.testing.assert_array_equal(resumed[:, :done], reference[:, :done])
    np.testing.assert_allclose(resumed, reference, atol=1e-6)  # a fresh solver start, within tolerances


def test_incomplete_or_missing_dataset(tmp_path):
    with pytest.raises(IrnoError, match="not found"):
        load(tmp_path / "missing.h5")
    with h5py.File(tmp_path / "partial.h5", "w") as f:
        f.attrs["complete"] = False
    with pytest.raises(IrnoError, match="incomplete"):
        load(tmp_path / "partial.h5")
