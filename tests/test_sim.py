"""The embedded active-matter simulator: physics checks, The Well format, restarts, bad input.

Physics checks recompute what they check independently of the solver (numpy FFTs, the tensor
form of docs/method.md#active-matter-equations, quadrature of the orientation distribution), so a
slip in the solver's complex form shows up here.
"""

from __future__ import annotations

import itertools
import os

import h5py
import numpy as np
import pytest
import yaml

from irno import IrnoError
from irno.config import SimulationConfig
from irno.files import file_sha256
from irno.settings import from_dict
from irno.sim import simulate_dataset, simulate_trajectory
from irno.sim.active_matter import (
    BETA,
    BOX_LENGTH,
    Q_CAP,
    ActiveMatterModel,
    bingham_closure,
)

ZETA, DIPOLE, GRID = 9.0, -3.0, 32


@pytest.fixture(scope="module")
def developed():
    """A 32^2 trajectory to t = 10, well into the non-linear regime (|Q| near c, strong flow)."""
    return simulate_trajectory(ZETA, DIPOLE, grid=GRID, frames=41, seed=3)


def _wavenumbers(n: int):
    """Full-FFT wavenumbers (kx along axis 0, ky along axis 1), Nyquist dropped for derivatives."""
    k = 2 * np.pi / BOX_LENGTH * np.fft.fftfreq(n, 1.0 / n)
    k[n // 2] = 0.0
    return k[:, None] * np.ones((1, n)), k[None, :] * np.ones((n, 1))


def _grad(f: np.ndarray):
    """(d_x f, d_y f) of real (..., N, N) fields, spectrally."""
    kx, ky = _wavenumbers(f.shape[-1])
    fh = np.fft.fft2(f)
    return np.fft.ifft2(1j * kx * fh).real, np.fft.ifft2(1j * ky * fh).real


def _q(D: np.ndarray) -> np.ndarray:
    return (D[..., 0, 0] - D[..., 1, 1]) + 2j * D[..., 0, 1]


# ----------------------------------------------------------------------------- invariants


def test_shapes_and_time(developed):
    assert developed["concentration"].shape == (41, GRID, GRID)
    assert developed["velocity"].shape == (41, GRID, GRID, 2)
    assert developed["D"].shape == developed["E"].shape == (41, GRID, GRID, 2, 2)
    assert np.allclose(developed["time"], np.arange(41) * 0.25)
    assert all(np.isfinite(v).all() for v in developed.values())


def test_mean_concentration_conserved(developed):
    mean = developed["concentration"].mean(axis=(1, 2))  # (T,)
    assert abs(mean[0] - 1.0) < 1e-12
    assert np.abs(mean - mean[0]).max() < 1e-6


def test_velocity_divergence_free(developed):
    u = developed["velocity"]  # (T, N, N, 2)
    kx, ky = _wavenumbers(GRID)
    uh, vh = np.fft.fft2(u[..., 0]), np.fft.fft2(u[..., 1])
    divergence = np.sqrt((np.abs(kx * uh + ky * vh) ** 2).sum())
    scale = np.sqrt(((kx**2 + ky**2) * (np.abs(uh) ** 2 + np.abs(vh) ** 2)).sum())
    assert scale > 0 and divergence / scale < 1e-8


def test_strain_rate_is_symmetric_velocity_gradient(developed):
    u, E = developed["velocity"], developed["E"]
    ux_x, ux_y = _grad(u[..., 0])
    uy_x, uy_y = _grad(u[..., 1])
    sym = np.stack([np.stack([ux_x, (ux_y + uy_x) / 2], -1), np.stack([(ux_y + uy_x) / 2, uy_y], -1)], -2)
    assert np.abs(E - sym).max() < 1e-8 * np.abs(sym).max()


def test_orientation_tensor_trace_and_realisability(developed):
    c, D = developed["concentration"], developed["D"]
    assert np.abs(D[..., 0, 0] + D[..., 1, 1] - c).max() < 1e-12
    assert np.array_equal(D[..., 0, 1], D[..., 1, 0])
    ratio = np.abs(_q(D)) / c
    assert ratio.max() <= Q_CAP + 1e-12  # |Q| <= c everywhere, with the cap's margin
    assert ratio[-1].mean() > 0.5  # and the state did become strongly aligned (the check is not vacuous)


def test_deterministic_per_seed():
    a = simulate_trajectory(5.0, -2.0, grid=16, frames=6, seed=11)
    b = simulate_trajectory(5.0, -2.0, grid=16, frames=6, seed=11)
    c = simulate_trajectory(5.0, -2.0, grid=16, frames=6, seed=12)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["D"], c["D"])


# ----------------------------------------------------------------------------- the equations


def _stress_tensor(model, c, D, E, R):
    """Sigma = alpha D + beta S:E - 2 zeta beta (D.D - S:D) in tensor form, S from (c, Q, R)."""
    q = _q(D)
    s1111 = (3 * c + 4 * q.real + R.real) / 8  # int cos^4 psi
    s1112 = (2 * q.imag + R.imag) / 8  # int cos^3 sin psi
    s1122 = D[..., 0, 0] - s1111
    s1222 = D[..., 0, 1] - s1112
    s2222 = D[..., 1, 1] - s1122
    by_y_count = [s1111, s1112, s1122, s1222, s2222]  # S is fully symmetric: only the number of y's counts
    S = np.empty(c.shape + (2, 2, 2, 2))
    for i, j, k, m in itertools.product(range(2), repeat=4):
        S[..., i, j, k, m] = by_y_count[i + j + k + m]
    S_E = np.einsum("...ijkl,...kl->...ij", S, E)
    S_D = np.einsum("...ijkl,...kl->...ij", S, D)
    DD = D @ D
    return model.dipole * D + BETA * S_E - 2 * model.zeta * BETA * (DD - S_D), S_E, S_D, DD


def test_velocity_is_the_stokes_flow_of_the_stress(developed):
    """-lap u + grad p = div Sigma with Sigma in tensor form, solved here with numpy."""
    model = ActiveMatterModel(ZETA, DIPOLE, grid=GRID, dt=0.025)
    frame = 30
    c, D, E = developed["concentration"][frame], developed["D"][frame], developed["E"][frame]
    sigma, *_ = _stress_tensor(model, c, D, E, bingham_closure(c, _q(D)))
    kx, ky = _wavenumbers(GRID)
    k2 = kx**2 + ky**2
    inv_k2 = np.divide(1.0, k2, out=np.zeros_like(k2), where=k2 > 0)
    sh = np.fft.fft2(sigma, axes=(0, 1))  # (N, N, 2, 2)
    force = np.stack([1j * (kx * sh[..., 0, 0] + ky * sh[..., 0, 1]), 1j * (kx * sh[..., 1, 0] + ky * sh[..., 1, 1])])
    along_k = (kx * force[0] + ky * force[1]) * inv_k2
    u = np.stack(
        [np.fft.ifft2((force[0] - kx * along_k) * inv_k2).real, np.fft.ifft2((force[1] - ky * along_k) * inv_k2).real],
        -1,
    )
    saved = developed["velocity"][frame]
    assert np.abs(saved - u).max() < 1e-7 * np.abs(u).max()


def test_moment_equations_match_the_tensor_form(developed):
    """The solver's complex Q equation against D_t in tensor form (the non-linear terms)."""
    model = ActiveMatterModel(ZETA, DIPOLE, grid=GRID, dt=0.025)
    frame = 30
    c, D, u, E = (developed[k][frame] for k in ("concentration", "D", "velocity", "E"))
    q = _q(D)
    R = bingham_closure(c, q)
    _, S_E, S_D, DD = _stress_tensor(model, c, D, E, R)
    grad_u = np.stack([np.stack(_grad(u[..., 0]), -1), np.stack(_grad(u[..., 1]), -1)], -2)  # [i, j] = d_j u_i
    kx, ky = _wavenumbers(GRID)

    def minus_div_flux(f):  # -div(u f) = -u.grad f for div-free u
        return np.fft.ifft2(-1j * (kx * np.fft.fft2(u[..., 0] * f) + ky * np.fft.fft2(u[..., 1] * f))).real

    advection = np.stack([np.stack([minus_div_flux(D[..., i, j]) for j in range(2)], -1) for i in range(2)], -2)
    rotation = grad_u @ D + D @ np.swapaxes(grad_u, -1, -2)
    D_t = advection + rotation - 2 * S_E + 4 * model.zeta * (DD - S_D)
    q_t = (D_t[..., 0, 0] - D_t[..., 1, 1]) + 2j * D_t[..., 0, 1]
    c_t = minus_div_flux(c)

    state = np.stack([c, q.real, q.imag])
    tendency, _ = model.tendency(model.rfft(state), E[..., 0, 0] + 1j * E[..., 0, 1])
    expected = model.rfft(np.stack([c_t, q_t.real, q_t.imag])) * model.dealias
    assert np.abs(tendency - expected).max() < 1e-6 * np.abs(expected).max()


def test_linear_terms_are_diffusion_and_rotational_relaxation():
    model = ActiveMatterModel(ZETA, DIPOLE, grid=16, dt=0.025)
    k2 = (2 * np.pi / BOX_LENGTH) ** 2 * 3.0**2  # mode (kx, ky) = (3, 0)
    assert np.isclose(model.decay_step[0, 3, 0], np.exp(-0.05 * k2 * 0.025))
    assert np.isclose(model.decay_step[1, 3, 0], np.exp((-0.05 * k2 - 4 * 0.05) * 0.025))


def test_bingham_closure_against_quadrature():
    theta = np.linspace(0, 2 * np.pi, 512, endpoint=False)
    for kappa, theta0, c in [(0.3, 0.2, 1.0), (2.0, 1.1, 0.9), (40.0, -0.7, 1.2)]:
        psi = np.exp(kappa * np.cos(2 * (theta - theta0)))
        psi *= c / psi.mean() / (2 * np.pi)
        q = (np.exp(2j * theta) * psi).sum() * 2 * np.pi / len(theta)
        r = (np.exp(4j * theta) * psi).sum() * 2 * np.pi / len(theta)
        got = bingham_closure(np.array([c]), np.array([q]))[0]
        assert abs(got - r) < 1e-5 * c, (kappa, got, r)
    assert bingham_closure(np.array([1.0]), np.array([0j]))[0] == 0  # isotropic: R = 0


def test_initial_state_is_the_moments_of_the_generators_psi():
    """Closed-form moments against quadrature of psi drawn as the original generator draws it."""
    n, seed = 16, 5
    model = ActiveMatterModel(ZETA, DIPOLE, grid=n, dt=0.025)
    got = model.initial_state(np.random.default_rng(seed))

    rng = np.random.default_rng(seed)
    x = np.arange(n) * BOX_LENGTH / n
    theta = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    psi = np.ones((n, n, len(theta)))
    for i in range(8):
        k1, k2 = rng.integers(1, 9, size=2)
        r = rng.uniform(0, 1, size=4)
        psi += (
            0.1
            * (r[0] - 0.5)
            * np.cos(2 * np.pi * k1 * x / BOX_LENGTH + r[1])[:, None, None]
            * np.cos(2 * np.pi * k2 * x / BOX_LENGTH + r[2])[None, :, None]
            * np.cos(2 * theta + r[3]) ** (i + 1)
        )
    dtheta = 2 * np.pi / len(theta)
    c = psi.sum(-1) * dtheta
    q = (psi * np.exp(2j * theta)).sum(-1) * dtheta
    scale = c.mean()
    assert np.allclose(got[0], c / scale, atol=1e-12)
    assert np.allclose(got[1] + 1j * got[2], q / scale, atol=1e-12)
    assert 1e-4 < np.abs(q / scale).max() < 0.2  # a small perturbation of the isotropic state


@pytest.mark.slow
@pytest.mark.parametrize("zeta,dipole", [(1.0, -1.0), (1.0, -5.0), (17.0, -1.0), (17.0, -5.0), (9.0, -3.0)])
def test_kinetic_energy_grows_to_a_steady_state(zeta, dipole):
    """Corners and centre of the (zeta, alpha) grid at 32^2 (`irno simulate-validate` runs all 45)."""
    out = simulate_trajectory(zeta, dipole, grid=32, frames=81, seed=0)
    assert all(np.isfinite(v).all() for v in out.values())
    energy = 0.5 * (out["velocity"] ** 2).sum(-1).mean(axis=(1, 2))  # (T,)
    late, last = energy[40:60].mean(), energy[60:].mean()
    assert energy[0] < 1e-4
    assert 0.02 < last < 1.5
    assert last > 100 * energy[0]
    assert max(late, last) / min(late, last) < 3  # no longer growing: statistically steady


def test_bad_steps_and_divergence_are_reported(monkeypatch):
    with pytest.raises(IrnoError, match="whole multiple"):
        simulate_trajectory(1.0, -1.0, grid=16, frames=6, frame_dt=0.25, dt=0.1)
    # The cap keeps Q bounded, so a blow-up is hard to provoke; poison the state instead.
    initial = ActiveMatterModel.initial_state
    monkeypatch.setattr(ActiveMatterModel, "initial_state", lambda self, rng: initial(self, rng) * np.nan)
    with pytest.raises(IrnoError, match=r"diverged .* at t = 0.25 for zeta=17.0, alpha=-5.0"):
        simulate_trajectory(17.0, -5.0, grid=16, frames=6)


# ----------------------------------------------------------------------------- datasets

TINY = {
    "grid": 16,
    "frames": 8,
    "workers": 1,
    "train": {"pairs": [[1, -1], [3, -2]], "trajectories": 2},
    "valid": {"pairs": [[5, -3]], "trajectories": 1},
    "test": {"pairs": [[7, -4]], "trajectories": 1},
}


def _tiny_config(**overrides) -> SimulationConfig:
    return from_dict(SimulationConfig, {**TINY, **overrides}, "simulate")


@pytest.fixture(scope="module")
def simulated_well(tmp_path_factory):
    root = tmp_path_factory.mktemp("simwell")
    manifest = simulate_dataset(_tiny_config(), root, progress=False)
    return root, manifest


def test_dataset_layout_and_schema(simulated_well):
    root, manifest = simulated_well
    data = root / "datasets" / "active_matter" / "data"
    assert sorted(p.name for p in (data / "train").iterdir()) == [
        "active_matter_L_10.0_zeta_1.0_alpha_-1.0.hdf5",
        "active_matter_L_10.0_zeta_3.0_alpha_-2.0.hdf5",
    ]
    with h5py.File(data / "valid" / "active_matter_L_10.0_zeta_5.0_alpha_-3.0.hdf5", "r") as f:
        assert f.attrs["dataset_name"] == "active_matter" and f.attrs["n_trajectories"] == 1
        assert "closure-model re-simulation" in f.attrs["source"].lower() and "NOT The Well" in f.attrs["source"]
        assert list(f["scalars"].attrs["field_names"]) == ["L", "zeta", "alpha"]
        assert float(f["scalars"]["zeta"][()]) == 5.0 and float(f["scalars"]["alpha"][()]) == -3.0
        assert float(f.attrs["L"]) == 10.0
        assert {f["boundary_conditions"][g].attrs["bc_type"] for g in f["boundary_conditions"]} == {"PERIODIC"}
        assert np.allclose(f["dimensions"]["time"][:], np.arange(8) * 0.25)
        assert np.allclose(f["dimensions"]["x"][:], np.arange(16) * 10.0 / 16)
        assert f["t2_fields"]["D"].shape == (1, 8, 16, 16, 2, 2) and f["t2_fields"]["D"].dtype == np.float32
        assert f["t2_fields"]["E"].attrs["symmetric"] and not f["t2_fields"]["E"].attrs["antisymmetric"]
        assert f["t1_fields"]["velocity"].shape == (1, 8, 16, 16, 2)
    stats = yaml.safe_load((root / "datasets" / "active_matter" / "stats.yaml").read_text())
    assert set(stats) == {"mean", "std", "rms", "mean_delta", "std_delta", "rms_delta"}
    assert abs(stats["mean"]["concentration"] - 1.0) < 1e-6
    assert manifest["source"] == "simulated" and "NOT The Well" in manifest["description"]
    assert manifest["simulation"]["grid"] == 16
    assert [e["n_trajectories"] for e in manifest["splits"]["train"]] == [2, 2]
    for split, entries in manifest["splits"].items():
        assert [e["sha256"] for e in entries] == [file_sha256(data / split / e["file"]) for e in entries]


def test_well_dataset_reads_the_simulation(simulated_well):
    import torch

    from irno.data.well import field_names, open_well_dataset, window_to_xy

    root, _ = simulated_well
    ds = open_well_dataset(root, "active_matter", "train")
    assert field_names(ds)[:4] == ["concentration", "velocity_x", "velocity_y", "D_xx"]
    x, y = window_to_xy(ds[0])
    assert x.shape == (44, 16, 16) and y.shape == (11, 16, 16)
    assert len(ds) == 2 * 2 * (8 - 5 + 1)
    full = open_well_dataset(root, "active_matter", "train", full_trajectory=True)
    frames = torch.cat(
        [torch.cat([s["input_fields"], s["output_fields"]]) for s in (full[i] for i in range(len(full)))]
    )
    flat = frames.reshape(-1, frames.shape[-1]).double()  # (samples, 11) normalised
    assert torch.allclose(flat.mean(0), torch.zeros(11, dtype=torch.float64), atol=1e-3)
    assert torch.allclose(flat.std(0), torch.ones(11, dtype=torch.float64), atol=1e-3)


def test_restart_keeps_complete_files_and_redoes_changed_ones(tmp_path):
    cfg = _tiny_config(frames=6)
    simulate_dataset(cfg, tmp_path, progress=False)
    data = tmp_path / "datasets" / "active_matter" / "data"
    kept = data / "train" / "active_matter_L_10.0_zeta_1.0_alpha_-1.0.hdf5"
    changed = data / "test" / "active_matter_L_10.0_zeta_7.0_alpha_-4.0.hdf5"
    leftover = data / "valid" / ".active_matter_L_10.0_zeta_5.0_alpha_-3.0.hdf5.x1y2.tmp"
    leftover.write_bytes(b"half a file")  # a run killed while writing
    before = {p: os.stat(p).st_ino for p in (kept, changed)}

    cfg2 = _tiny_config(frames=6, test={"pairs": [[7, -4]], "trajectories": 2})
    manifest = simulate_dataset(cfg2, tmp_path, progress=False)
    assert os.stat(kept).st_ino == before[kept]  # untouched
    assert os.stat(changed).st_ino != before[changed]  # rewritten for 2 trajectories
    assert [e["n_trajectories"] for e in manifest["splits"]["test"]] == [2]
    assert not leftover.exists()

    # a pair dropped from the config: its file goes (the loader would otherwise read it as data)
    cfg3 = _tiny_config(frames=6, train={"pairs": [[1, -1]], "trajectories": 2}, test=cfg2.test.__dict__)
    simulate_dataset(cfg3, tmp_path, progress=False)
    assert sorted(p.name for p in (data / "train").glob("*.hdf5")) == [kept.name]


def test_never_overwrites_or_mixes_in_files_it_did_not_write(tmp_path):
    cfg = _tiny_config(frames=6)
    simulate_dataset(cfg, tmp_path, progress=False)
    data = tmp_path / "datasets" / "active_matter" / "data"
    real = data / "test" / "active_matter_L_10.0_zeta_7.0_alpha_-4.0.hdf5"
    with h5py.File(real, "w") as f:  # e.g. the downloaded dataset under the same root
        f.attrs["dataset_name"] = "active_matter"
    with pytest.raises(IrnoError, match="zeta_7.0_alpha_-4.0.hdf5: not written by irno.sim"):
        simulate_dataset(cfg, tmp_path, progress=False)
    real.unlink()
    damaged = data / "valid" / "active_matter_L_10.0_zeta_5.0_alpha_-3.0.hdf5"
    damaged.write_bytes(damaged.read_bytes()[:500])
    with pytest.raises(IrnoError, match="zeta_5.0_alpha_-3.0.hdf5: an unreadable HDF5 file"):
        simulate_dataset(cfg, tmp_path, progress=False)
    damaged.unlink()
    simulate_dataset(cfg, tmp_path, progress=False)  # both simulated again
    assert real.exists() and damaged.exists()


def test_trajectory_seeds_do_not_depend_on_other_pairs(tmp_path):
    a = simulate_dataset(_tiny_config(frames=6), tmp_path / "a", progress=False)
    b = simulate_dataset(
        _tiny_config(frames=6, train={"pairs": [[3, -2]], "trajectories": 2}), tmp_path / "b", progress=False
    )
    name = "active_matter_L_10.0_zeta_3.0_alpha_-2.0.hdf5"
    with (
        h5py.File(tmp_path / "a/datasets/active_matter/data/train" / name) as fa,
        h5py.File(tmp_path / "b/datasets/active_matter/data/train" / name) as fb,
    ):
        assert np.array_equal(fa["t2_fields"]["D"][:], fb["t2_fields"]["D"][:])
    assert a["config_hashes"]["train"][name] == b["config_hashes"]["train"][name]


@pytest.mark.slow
def test_worker_count_does_not_change_the_data(tmp_path):
    one = _tiny_config(frames=6)
    two = _tiny_config(frames=6, workers=2)
    simulate_dataset(one, tmp_path / "one", progress=False)
    simulate_dataset(two, tmp_path / "two", progress=False)
    for split_file in sorted((tmp_path / "one/datasets/active_matter/data").rglob("*.hdf5")):
        other = tmp_path / "two" / split_file.relative_to(tmp_path / "one")
        with h5py.File(split_file) as fa, h5py.File(other) as fb:
            for group in ("t0_fields", "t1_fields", "t2_fields"):
                for name in fa[group]:
                    assert np.array_equal(fa[group][name][:], fb[group][name][:])


# ----------------------------------------------------------------------------- bad input


def test_bad_configs_name_the_key():
    with pytest.raises(IrnoError, match="unknown config key 'simulate.gird'"):
        from_dict(SimulationConfig, {"gird": 32}, "simulate")
    with pytest.raises(IrnoError, match="'simulate.grid'.*even"):
        _tiny_config(grid=33)
    with pytest.raises(IrnoError, match="'simulate.dt'.*whole fraction of frame_dt"):
        _tiny_config(dt=0.03)
    with pytest.raises(IrnoError, match=r"'simulate.dt'.*0.7 / zeta.*zeta = 17.0 in simulate.test.pairs"):
        _tiny_config(dt=0.05, test={"pairs": [[17, -1]], "trajectories": 1})
    with pytest.raises(IrnoError, match="'simulate.valid.pairs'.*listed once"):
        _tiny_config(valid={"pairs": [[5, -3], [5.0, -3.0]], "trajectories": 1})
    with pytest.raises(IrnoError, match="'simulate.test.pairs'.*at least one"):
        _tiny_config(test={"pairs": [], "trajectories": 1})


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(IrnoError, match="'simulate.dataset'.*'turbulent_radiative_layer_2D'.*can make: active_matter"):
        _tiny_config(dataset="turbulent_radiative_layer_2D")


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the Well root should be")
    with pytest.raises(IrnoError, match="not_a_folder/datasets/active_matter/data/train: cannot write"):
        simulate_dataset(_tiny_config(), blocker, progress=False)


def test_cli_simulate(tmp_path, capsys):
    from irno.cli import main
    from irno.files import read_json

    config = tmp_path / "sim.yaml"

    def simulate(settings: dict, manifest: str) -> int:
        config.write_text(yaml.safe_dump(settings))
        args = ["--config", str(config), "--root", str(tmp_path / "well"), "--manifest", str(tmp_path / manifest)]
        return main(["simulate", *args, "--no-progress"])

    assert simulate({**TINY, "frames": 6}, "manifest.json") == 0
    manifest = read_json(tmp_path / "manifest.json")
    assert manifest["dataset"] == "active_matter" and manifest["simulation"]["frames"] == 6

    assert simulate({**TINY, "frames": 6, "alpha": -2}, "m2.json") == 1
    err = capsys.readouterr().err
    assert "sim.yaml" in err and "simulate.alpha" in err
