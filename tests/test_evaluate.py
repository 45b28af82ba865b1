"""Evaluation (irno.refinement.evaluate): The Well's metrics, the reference's pooled VRMSE, spectra, divergence.

Reference numbers are computed here independently: the iteration is run on the whole (small)
split at once and The Well's functions are applied to all samples, then compared with the
streaming evaluator's outputs.
"""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
from eval_fixtures import PersistenceOnStore, documented
from the_well.benchmark.metrics import VRMSE, binned_spectral_mse
from the_well.benchmark.metrics.spectral import power_spectrum

from irno import IrnoError
from irno.cli import main
from irno.config import EvalConfig, NetworkConfig, PhiConfig, PhiTrainConfig
from irno.data.batches import iterate_batches, sequential_batches
from irno.data.store import PreparedSplit
from irno.metrics import well_metadata
from irno.refinement.evaluate import (
    LogQuantiles,
    RadialShells,
    StepMetrics,
    evaluate,
    evaluate_checkpoint,
)
from irno.refinement.phi import build_phi, refine_steps
from irno.settings import to_dict

FIELDS = ["concentration", "velocity_x", "velocity_y"]
GRID = (16, 16)
T_IN = 2
K, EXTRA, ALPHA = 3, 2, 0.3
META = well_metadata(FIELDS, GRID)


class SyntheticRefinementData(torch.utils.data.Dataset):
    """Stands in for the contract's RefinementDataset: its items, attributes and batch(rows).

    y: smooth fields; h0: y plus a low- and a high-frequency error (the base's).
    """

    def __init__(self, n=10, seed=0, mean=(1.0, 0.0, 0.5), std=(0.5, 2.0, 1.5)):
        g = torch.Generator().manual_seed(seed)
        F, (H, W) = len(FIELDS), GRID
        i = torch.arange(H, dtype=torch.float32)[:, None] * 2 * math.pi / H
        j = torch.arange(W, dtype=torch.float32)[None, :] * 2 * math.pi / W
        y = torch.zeros(n, F, H, W)
        for ky, kx in [(0, 1), (1, 2), (2, 1), (3, 0)]:
            a, p = torch.randn(n, F, 1, 1, generator=g), torch.rand(n, F, 1, 1, generator=g) * 6.28
            y += a * torch.cos(ky * i + kx * j + p)
        low = 0.3 * torch.randn(n, F, 1, 1, generator=g) * torch.sin(i + j)
        self.y, self.h0 = y, y + low + 0.1 * torch.randn(n, F, H, W, generator=g)
        self.x = torch.randn(n, T_IN * F, H, W, generator=g)
        self.field_names, self.grid, self.n_steps_input = list(FIELDS), GRID, T_IN
        self.channel_mean, self.channel_std = np.array(mean, np.float32), np.array(std, np.float32)
        self.meta = {"source": "test"}

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"x": self.x[i], "h0": self.h0[i], "y": self.y[i]}

    def batch(self, rows):
        return self.x[rows], self.h0[rows], self.y[rows]


class ItemsOnly(torch.utils.data.Dataset):
    """The same data without the vectorised batch()."""

    def __init__(self, data):
        self.data = data
        self.field_names, self.grid = data.field_names, data.grid
        self.channel_mean, self.channel_std = data.channel_mean, data.channel_std

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return self.data[i]


class ConstantPhi(nn.Module):
    """Phi returning a constant on every field (for exact, predictable iterations)."""

    def __init__(self, value: float, n_fields: int = len(FIELDS)):
        super().__init__()
        self.value, self.n_fields = value, n_fields

    def forward(self, inp):
        return torch.full_like(inp[:, -self.n_fields :], self.value)


def small_phi(seed=0):
    """The real U-Net Phi, small (checkpoints, the exploding case)."""
    torch.manual_seed(seed)
    return build_phi(NetworkConfig(base_channels=4, depth=2), T_IN * len(FIELDS) + len(FIELDS), len(FIELDS))


def conv_phi(seed=0):
    """A cheap non-trivial Phi for the metric tests: one circular 3x3 convolution."""
    torch.manual_seed(seed)
    n_f = len(FIELDS)
    return nn.Conv2d(T_IN * n_f + n_f, n_f, kernel_size=3, padding=1, padding_mode="circular")


def run(phi, data, alpha=ALPHA, **cfg):
    return evaluate(
        phi,
        data,
        K=K,
        alpha=alpha,
        cfg=EvalConfig(**{"extra_steps": EXTRA, "batch_size": 4, **cfg}),
        device=torch.device("cpu"),
    )


def all_steps(phi, data, alpha=ALPHA):
    """h_0 .. h_{K+EXTRA} of every sample at once: (S, N, F, H, W)."""
    with torch.no_grad():
        return torch.stack([data.h0, *refine_steps(phi.eval(), data.x, data.h0, alpha, K + EXTRA)])


def physical(data, h):
    return h * torch.as_tensor(data.channel_std)[:, None, None] + torch.as_tensor(data.channel_mean)[:, None, None]


@pytest.fixture(scope="module")
def data():
    return SyntheticRefinementData()


@pytest.fixture(scope="module")
def phi():
    return conv_phi()


@pytest.fixture(scope="module")
def result(phi, data):
    return run(phi, data)


# ----------------------------------------------------------------------------- VRMSE


def test_vrmse_is_the_wells_on_channel_last_physical_data(result, phi, data):
    for k, h in enumerate(all_steps(phi, data)):
        expected = VRMSE.eval(physical(data, h).movedim(1, -1), physical(data, data.y).movedim(1, -1), META)  # (N, F)
        row = result.per_step.iloc[k]
        for f, name in enumerate(FIELDS):
            assert row[f"vrmse_{name}"] == pytest.approx(expected[:, f].mean().item(), rel=1e-5)
        assert row["vrmse"] == pytest.approx(expected.mean().item(), rel=1e-5)


def test_pooled_vrmse_is_the_wells_function_on_channel_first_data(result, phi, data):
    for k, h in enumerate(all_steps(phi, data)):
        pooled = VRMSE.eval(h, data.y, META)  # (N, W): (C, H) pooled, as the reference calls it
        assert pooled.shape == (len(data), GRID[1])
        assert result.per_step["vrmse_pooled_cf"][k] == pytest.approx(
            pooled[torch.isfinite(pooled)].mean().item(), rel=1e-5
        )
    # it is a different number from The Well's
    assert abs(result.per_step["vrmse_pooled_cf"][0] - result.per_step["vrmse"][0]) > 1e-3


def test_vrmse_invariant_to_per_field_affine_maps(phi, data):
    h, y = data.h0.movedim(1, -1), data.y.movedim(1, -1)  # (N, H, W, F)
    scale, shift = torch.tensor([3.0, 0.2, 7.0]), torch.tensor([1.0, -5.0, 0.5])
    assert torch.allclose(VRMSE.eval(h * scale + shift, y * scale + shift, META), VRMSE.eval(h, y, META), rtol=1e-4)
    # so the evaluator's VRMSE does not depend on the units of the data (std O(1) here) ...
    other_units = SyntheticRefinementData(mean=(10.0, -3.0, 0.0), std=(4.0, 0.3, 1.0))
    a, b = run(phi, data).per_step, run(phi, other_units).per_step
    np.testing.assert_allclose(a["vrmse"], b["vrmse"], rtol=1e-4)
    np.testing.assert_array_equal(a["vrmse_pooled_cf"], b["vrmse_pooled_cf"])  # normalised data: unchanged
    # ... except through VRMSE's eps = 1e-7 when a field's physical variance is tiny: then the
    # normalised number is not The Well's, which is why the evaluator works in physical units.
    tiny = SyntheticRefinementData(std=(1e-3, 2.0, 1.5))
    per_field = run(phi, tiny).per_step["vrmse_concentration"][0]
    normalised = VRMSE.eval(h, y, META)[:, 0].mean().item()
    in_physical_units = (
        VRMSE.eval(physical(tiny, tiny.h0).movedim(1, -1), physical(tiny, tiny.y).movedim(1, -1), META)[:, 0]
        .mean()
        .item()
    )
    assert abs(normalised - in_physical_units) > 0.01 * normalised
    assert per_field == pytest.approx(in_physical_units, rel=1e-5)


def test_vrmse_equals_the_wells_on_raw_well_data(tiny_well, tiny_stores):
    from the_well.data import WellDataset

    data = PersistenceOnStore(PreparedSplit(tiny_stores["test"]))
    got = evaluate(ConstantPhi(0.0, 11), data, K=1, alpha=0.1, cfg=EvalConfig(extra_steps=0, device="cpu")).per_step
    raw = WellDataset(well_base_path=str(tiny_well / "datasets"), well_dataset_name="active_matter",
                      well_split_name="test", n_steps_input=data.split.n_steps_input, n_steps_output=1,
                      use_normalization=False)  # fmt: skip
    samples = [raw[i] for i in range(len(raw))]
    persistence = torch.stack([s["input_fields"][-1] for s in samples])  # (N, H, W, F) physical units
    truth = torch.stack([s["output_fields"][0] for s in samples])
    expected = VRMSE.eval(persistence, truth, well_metadata(data.field_names, data.grid))  # (N, F)
    assert len(got) == 2 and got["vrmse"][0] == pytest.approx(expected.mean().item(), rel=1e-4)
    assert got["vrmse_concentration"][0] == pytest.approx(expected[:, 0].mean().item(), rel=1e-4)


# ----------------------------------------------------------------------------- spectra


def test_single_planar_mode_lands_in_its_shell():
    N = 32
    i, j = np.meshgrid(np.arange(N), np.arange(N), indexing="ij")
    shells = RadialShells((N, N))
    assert shells.count == math.floor(math.sqrt(2) * N / 2) + 1
    for ky, kx, shell in [(3, 4, 5), (0, 7, 7), (5, 5, 7), (1, 1, 1), (16, 16, 22)]:
        field = torch.as_tensor(np.cos(2 * np.pi * (ky * i + kx * j) / N))
        power = (torch.fft.fft2(field) / N**2).abs().square()
        spectrum = shells.sum(power)
        assert spectrum.argmax().item() == shell
        assert spectrum[shell].item() == pytest.approx((field**2).mean().item(), rel=1e-9)
        assert spectrum.sum().item() == pytest.approx(spectrum[shell].item(), rel=1e-9)


def test_planar_error_mode_through_the_evaluator():
    data = SyntheticRefinementData(n=4)
    i = torch.arange(GRID[0])[:, None] * 2 * math.pi / GRID[0]
    j = torch.arange(GRID[1])[None, :] * 2 * math.pi / GRID[1]
    data.h0 = data.y + 0.5 * torch.cos(3 * i + 4 * j)  # an error only at |kappa| = 5
    spectra = run(ConstantPhi(0.0), data).spectra
    error = spectra["error_spectrum_mean"][0]
    assert error.argmax() == 5
    assert error[5] == pytest.approx(0.25 * 0.5, rel=1e-5)  # mean of (0.5 cos)^2
    assert np.delete(error, 5).max() < 1e-10


def test_parseval_error_spectrum_and_bands_sum_to_the_mse(result, phi, data):
    for k, h in enumerate(all_steps(phi, data)):
        mse = ((h - data.y) ** 2).mean().item()  # over samples, fields and space
        assert result.spectra["error_spectrum_mean"][k].sum() == pytest.approx(mse, rel=1e-5)
        bands = sum(result.per_step[f"band_mse_{band}"][k] for band in ("low", "mid", "high"))
        assert bands == pytest.approx(mse, rel=1e-5)


def test_band_mse_is_binned_spectral_mse(result, phi, data):
    steps = all_steps(phi, data)
    for k, h in enumerate(steps):
        expected = binned_spectral_mse.eval(h.movedim(1, -1), data.y.movedim(1, -1), META)  # spatial input
        for i, band in enumerate(("low", "mid", "high")):
            value = expected[f"spectral_error_mse_per_bin_{i}"].mean().item()
            assert result.per_step[f"band_mse_{band}"][k] == pytest.approx(value, rel=1e-5)
            base = binned_spectral_mse.eval(steps[0].movedim(1, -1), data.y.movedim(1, -1), META)[
                f"spectral_error_mse_per_bin_{i}"
            ]
            assert result.per_step[f"band_ratio_{band}"][k] == pytest.approx(value / base.mean().item(), rel=1e-5)


def test_spectral_mse_is_the_unit_weight_spectral_loss(result, phi, data):
    expected = torch.stack(
        [
            ((torch.fft.rfft2(h, norm="ortho").abs() - torch.fft.rfft2(data.y, norm="ortho").abs()) ** 2).mean(
                (1, 2, 3)
            )
            for h in all_steps(phi, data)
        ],
        dim=1,
    )  # (N, S)
    np.testing.assert_allclose(result.spectra["spectral_mse"], expected.numpy(), rtol=1e-5)
    np.testing.assert_allclose(result.per_step["spectral_mse"], expected.mean(0).numpy(), rtol=1e-5)


def test_energy_spectra_match_the_wells_power_spectrum_on_integer_shells(result, phi, data):
    H, W = GRID
    shells = result.spectra["shells"]
    # power_spectrum bins |2 pi fftfreq| in radians; integer shells have edges 2 pi m / N (shifted
    # a hair down so that integer |kappa| falls on the right side of its edge)
    edges = 2 * torch.pi / H * (torch.arange(len(shells) + 1, dtype=torch.float32) - 1e-3)
    steps = all_steps(phi, data)
    for name, field in (("energy_truth", data.y), ("energy_base", steps[0]), ("energy_refined", steps[K])):
        _, mean_power, _, counts = power_spectrum(
            field.movedim(1, -1), META, bins=edges, return_counts=True
        )  # (N, M, F)
        expected = (mean_power * counts[:-1, None] / (H * W) ** 2).mean(0).T  # (F, M): sums per shell
        np.testing.assert_allclose(result.spectra[name], expected.numpy(), rtol=1e-4, atol=1e-9)
    assert result.spectra["energy_wavenumber"].shape == shells.shape


# ----------------------------------------------------------------------------- ratio quantiles


def test_log_quantiles_within_resolution_of_exact_quantiles():
    rng = np.random.default_rng(0)
    values = 10 ** rng.normal(-1.0, 1.5, size=(3, 1001, 4))  # batches of (samples, cells)
    hist = LogQuantiles((1, 4), "cpu")
    for batch in values:
        hist.add(0, torch.as_tensor(batch), torch.ones(batch.shape, dtype=torch.bool))
    pooled = values.reshape(-1, 4)
    assert hist.resolution_decades == 0.005
    for q in (0.25, 0.5, 0.75):
        exact = np.quantile(pooled, q, axis=0, method="inverted_cdf")
        got = hist.quantile(q)[0]
        assert np.abs(np.log10(got) - np.log10(exact)).max() <= hist.resolution_decades + 1e-9
        # a coarser histogram is coarser: the test can see resolution
    coarse = LogQuantiles((1, 4), "cpu", bins_per_decade=2)
    coarse.add(0, torch.as_tensor(pooled), torch.ones(pooled.shape, dtype=torch.bool))
    error = np.abs(
        np.log10(coarse.quantile(0.5)[0]) - np.log10(np.quantile(pooled, 0.5, axis=0, method="inverted_cdf"))
    )
    assert error.max() > hist.resolution_decades and error.max() <= 0.25 + 1e-9


def test_log_quantiles_edges():
    hist = LogQuantiles((1, 4), "cpu")
    values = torch.tensor([[1.0, 0.0, math.inf, 5.0], [1.0, 1e-20, math.nan, 5.0], [1.0, 0.0, 2.0, 5.0]])
    hist.add(0, values, torch.tensor([[True, True, True, False]] * 3))
    median = hist.quantile(0.5)[0]
    assert median[0] == 1.0  # exactly: 1 is a bin centre
    assert median[1] == 0.0  # below the range
    assert median[2] == math.inf  # inf and NaN count as +inf
    assert math.isnan(median[3])  # no values


def test_ratio_quantiles_match_exact_per_sample_ratios(result, phi, data):
    steps = all_steps(phi, data)
    shells = RadialShells(GRID)
    spectra = [
        shells.sum((torch.fft.fft2(h - data.y) / (GRID[0] * GRID[1])).abs().square()).double() for h in steps
    ]  # (N, F, M)
    for k, e in enumerate(spectra):
        ratio = (e / spectra[0]).reshape(-1, e.shape[-1]).numpy()  # samples and fields pooled
        for q, name in ((0.5, "ratio_median"), (0.25, "ratio_q25"), (0.75, "ratio_q75")):
            exact = np.quantile(ratio, q, axis=0, method="inverted_cdf")
            assert np.abs(np.log10(result.spectra[name][k]) - np.log10(exact)).max() <= 0.005 + 1e-6
    assert np.all(result.spectra["ratio_median"][0] == 1.0)


# ----------------------------------------------------------------------------- steps


def test_step_zero_is_the_base_whatever_phi(result, data):
    a, b = result, run(ConstantPhi(0.7), data)
    pd.testing.assert_series_equal(a.per_step.iloc[0], b.per_step.iloc[0])
    h0 = physical(data, data.h0).movedim(1, -1)
    base = VRMSE.eval(h0, physical(data, data.y).movedim(1, -1), META).mean().item()
    assert a.summary["vrmse_base"] == pytest.approx(base, rel=1e-5)
    np.testing.assert_allclose(a.spectra["example_base"], physical(data, data.h0[0]).numpy(), rtol=1e-6)
    assert (a.per_step.iloc[0][["band_ratio_low", "band_ratio_mid", "band_ratio_high"]] == 1.0).all()


def test_phi_zero_keeps_every_step_at_step_zero(data):
    phi = conv_phi()
    with torch.no_grad():
        phi.weight.zero_()  # Phi == 0: h_k = h_0 for every k
        phi.bias.zero_()
    result = run(phi, data)
    rows = result.per_step.drop(columns="step")
    for k in range(1, K + EXTRA + 1):
        pd.testing.assert_series_equal(rows.iloc[k], rows.iloc[0], check_names=False)
    for name in ("ratio_median", "ratio_q25", "ratio_q75"):
        assert np.all(result.spectra[name] == 1.0)
    np.testing.assert_array_equal(result.spectra["energy_refined"], result.spectra["energy_base"])
    assert result.summary["gain_pct"] == 0.0 and not result.summary["diverged"]


def test_exploding_phi_is_flagged_not_raised(result, data):
    phi = small_phi()
    with torch.no_grad():
        phi.output.weight.mul_(1e30)  # a deliberately exploding Phi, with a large step
    result = run(phi, data, alpha=5.0)
    table = result.per_step
    assert result.summary["diverged"] and result.summary["first_diverged_step"] == 1
    assert table["diverged"].tolist() == [False] + [True] * (K + EXTRA)
    assert not np.isfinite(table["vrmse"][K + EXTRA])
    # step 0 is untouched by the later steps' NaN and inf
    assert np.isfinite(table.iloc[0].drop("diverged").to_numpy(dtype=float)).all()
    pd.testing.assert_series_equal(table.iloc[0], result.per_step.iloc[0])
    assert np.all(result.spectra["ratio_median"][0] == 1.0)
    assert np.all(result.spectra["ratio_median"][-1] == math.inf)


def test_divergence_by_factor_while_finite(data):
    # h_k = h_0 + k * alpha * c: finite, but its error outgrows the base's by more than the factor
    result = run(ConstantPhi(10.0), data, alpha=1.0, divergence_factor=150.0)
    vrmse = result.per_step["vrmse"]
    assert np.isfinite(vrmse).all()
    expected = (vrmse > 150.0 * vrmse[0]).tolist()
    assert result.per_step["diverged"].tolist() == expected
    assert expected[:2] == [False, False] and expected[-1] is True
    assert result.summary["first_diverged_step"] == expected.index(True)


# ----------------------------------------------------------------------------- streaming


def test_batching_does_not_change_the_results(phi, data):
    one, many = run(phi, data, batch_size=len(data)), run(phi, data, batch_size=3)
    pd.testing.assert_frame_equal(one.per_step, many.per_step, rtol=1e-6)
    for name, array in one.spectra.items():
        if array.dtype.kind == "U":
            np.testing.assert_array_equal(array, many.spectra[name])
        else:
            np.testing.assert_allclose(array, many.spectra[name], rtol=1e-6, atol=1e-12)
    items = run(phi, ItemsOnly(data), batch_size=3)  # the item-by-item path equals batch()
    pd.testing.assert_frame_equal(items.per_step, many.per_step)


def test_accumulator_state_does_not_grow_with_batches(phi, data):
    def state_bytes(metrics):
        tensors = [v for v in vars(metrics).values() if isinstance(v, torch.Tensor)] + [metrics.ratios.counts]
        return sum(t.numel() * t.element_size() for t in tensors)

    S = K + EXTRA + 1
    metrics = StepMetrics(len(data), S, K, FIELDS, GRID, data.channel_mean, data.channel_std, 0, "cpu")
    sizes = []
    with torch.no_grad():
        batches = sequential_batches(np.arange(len(data)), 2)
        for rows, (x, h0, y) in zip(batches, iterate_batches(data, batches), strict=True):
            metrics.add_batch([h0, *refine_steps(phi, x, h0, ALPHA, S - 1)], y, rows)
            sizes.append(state_bytes(metrics))
    assert len(sizes) == 5 and len(set(sizes)) == 1
    assert metrics.spectral_mse.shape == (len(data), S)  # the only per-sample record (an output)
    assert np.isfinite(metrics.spectral_mse).all()


def test_bad_example_index_names_the_key(phi, data):
    with pytest.raises(IrnoError, match=r"evaluate.example_index.*10.*0 \.\. 9"):
        run(phi, data, example_index=10)


# ----------------------------------------------------------------------------- files


def _checkpoint(path, phi, K=K, alpha=ALPHA):
    cfg = PhiConfig(network=NetworkConfig(base_channels=4, depth=2), train=PhiTrainConfig(K=K, alpha=alpha))
    n_f = len(FIELDS)
    ckpt = {"model": phi.state_dict(), "config": to_dict(cfg), "in_channels": T_IN * n_f + n_f, "out_channels": n_f,
            "epoch": 7, "valid_mse": 0.1, "selected": "best"}  # fmt: skip
    torch.save(ckpt, path)
    return path


def test_written_files_follow_docs_outputs(tmp_path, data):
    phi = small_phi()
    out = tmp_path / "eval" / "active_matter" / "FNO" / "irno"
    cfg = EvalConfig(extra_steps=EXTRA, batch_size=4, device="cpu", example_index=3)
    metrics = evaluate_checkpoint(cfg, _checkpoint(tmp_path / "checkpoint.pt", phi), data, out,
                                  dataset_name="active_matter", base="FNO", experiment="irno")  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "per_step.csv", "spectra.npz"]  # no temporaries
    written = json.loads((out / "metrics.json").read_text())
    assert written.keys() == metrics.keys()
    assert set(documented("metrics.json")) <= set(written)
    assert written["trained_on_base"] == "FNO" and written["split"] == "test"
    assert (written["K"], written["alpha"], written["extra_steps"], written["n_samples"]) == (
        K,
        ALPHA,
        EXTRA,
        len(data),
    )
    assert written["checkpoint_epoch"] == 7 and written["checkpoint_selected"] == "best"
    # a checkpoint without a recorded outcome is a completed training
    assert (written["training_status"], written["training_diverged_epoch"], written["training_message"]) == (
        "completed",
        None,
        "",
    )
    table = pd.read_csv(out / "per_step.csv")
    columns = documented("per_step.csv")
    assert "vrmse" in columns and "diverged" in columns
    assert list(table.columns) == columns + [f"vrmse_{f}" for f in FIELDS]
    assert table["step"].tolist() == list(range(K + EXTRA + 1))
    assert written["vrmse_refined"] == pytest.approx(table["vrmse"][K])
    S, F, (H, W) = K + EXTRA + 1, len(FIELDS), GRID
    M = math.floor(math.sqrt(2) * H / 2) + 1
    with np.load(out / "spectra.npz", allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    assert set(arrays) == set(documented("spectra.npz"))
    shapes = {"steps": (S,), "K": (), "shells": (M,), "nyquist": (), "ratio_median": (S, M), "ratio_q25": (S, M),
              "ratio_q75": (S, M), "error_spectrum_mean": (S, M), "spectral_mse": (len(data), S),
              "energy_wavenumber": (M,), "energy_truth": (F, M), "energy_base": (F, M), "energy_refined": (F, M),
              "field_names": (F,), "example_index": (), "example_truth": (F, H, W), "example_base": (F, H, W),
              "example_refined": (F, H, W)}  # fmt: skip
    assert {name: a.shape for name, a in arrays.items()} == shapes
    assert arrays["field_names"].tolist() == FIELDS and int(arrays["K"]) == K and float(arrays["nyquist"]) == H / 2
    np.testing.assert_allclose(arrays["example_truth"], physical(data, data.y[3]).numpy(), rtol=1e-6)
    refined = all_steps(phi, data)[K][3]
    np.testing.assert_allclose(arrays["example_refined"], physical(data, refined).numpy(), rtol=1e-5, atol=1e-6)


def test_transfer_and_diverged_outputs_are_written(tmp_path, data):
    phi = small_phi()
    with torch.no_grad():
        phi.output.weight.mul_(1e30)
    out = tmp_path / "eval"
    metrics = evaluate_checkpoint(EvalConfig(extra_steps=EXTRA, device="cpu"),
                                  _checkpoint(tmp_path / "c.pt", phi, alpha=5.0), data, out, dataset_name="d",
                                  base="TFNO", experiment="transfer", trained_on_base="FNO")  # fmt: skip
    written = json.loads((out / "metrics.json").read_text())  # Python's json reads NaN / Infinity
    assert written["trained_on_base"] == "FNO" and written["base"] == "TFNO"
    assert written["diverged"] is True and written["first_diverged_step"] == 1
    assert not math.isfinite(written["vrmse_final"]) and metrics["alpha"] == 5.0
    assert pd.read_csv(out / "per_step.csv")["diverged"].tolist() == [False] + [True] * (K + EXTRA)


def test_checkpoint_errors_name_the_file(tmp_path, data):
    phi = small_phi()
    cfg = EvalConfig(extra_steps=EXTRA, device="cpu")
    kwargs = dict(dataset_name="d", base="b", experiment="e")
    with pytest.raises(IrnoError, match="missing.pt: checkpoint not found"):
        evaluate_checkpoint(cfg, tmp_path / "missing.pt", data, tmp_path / "out", **kwargs)
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(IrnoError, match="garbage.pt: not a readable IRNO checkpoint"):
        evaluate_checkpoint(cfg, tmp_path / "garbage.pt", data, tmp_path / "out", **kwargs)
    wrong = build_phi(NetworkConfig(base_channels=4, depth=2), 5, 1)
    ckpt = _checkpoint(tmp_path / "wrong.pt", phi)
    state = torch.load(ckpt, weights_only=True) | {"model": wrong.state_dict(), "in_channels": 5, "out_channels": 1}
    torch.save(state, ckpt)
    with pytest.raises(IrnoError, match=r"wrong.pt: Phi takes 5 channels and returns 1.*9 -> 3 expected"):
        evaluate_checkpoint(cfg, ckpt, data, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_cli_help_and_bad_config(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for option in (
        "--config",
        "--checkpoint",
        "--store",
        "--cache",
        "--out",
        "--dataset",
        "--base",
        "--experiment",
        "--trained-on-base",
    ):
        assert option in help_text
    config = tmp_path / "eval.yaml"
    config.write_text("extra_steps: six\n")
    args = ["evaluate", "--config", str(config), "--checkpoint", "c.pt", "--store", "s", "--cache", "c",
            "--out", str(tmp_path / "o"), "--dataset", "d", "--base", "b", "--experiment", "e"]  # fmt: skip
    assert main(args) == 1
    err = capsys.readouterr().err
    assert str(config) in err and "extra_steps" in err and "six" in err
