"""Power-law fits and the tables built from saved metrics."""

import numpy as np
import pandas as pd
import pytest

from irno import IrnoError
from irno.roma.report import build_tables, fit_power_law
from irno.roma.settings import study_from_dict
from irno.roma.study import expand_study, report_outputs


def test_power_law_fit_recovers_a_known_exponent():
    x = np.array([1e3, 3e3, 1e4, 3e4, 1e5, 3e5])
    exact = fit_power_law(x, (2e2 / x) ** 0.35)  # L = (N_c / N)^alpha with N_c = 200, alpha = 0.35
    assert exact["exponent"] == pytest.approx(0.35) and exact["exponent_se"] == pytest.approx(0.0, abs=1e-10)
    assert exact["critical_size"] == pytest.approx(200) and exact["critical_size_se"] == pytest.approx(0, abs=1e-6)
    assert exact["intercept"] == pytest.approx(0.35 * np.log(200)) and exact["r2"] == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    estimates = []
    for _ in range(200):
        fit = fit_power_law(x, (2e2 / x) ** 0.35 * np.exp(rng.normal(0, 0.05, x.size)))
        estimates.append((fit["exponent"], fit["exponent_se"], np.log(fit["critical_size"]), fit["critical_size_se"]))
    exponents, errors, log_nc, nc_errors = np.array(estimates).T
    assert exponents.mean() == pytest.approx(0.35, abs=0.005)
    # the standard errors are calibrated: they match the spread of the estimates
    assert np.median(errors) == pytest.approx(exponents.std(), rel=0.3)
    assert np.median(nc_errors / np.exp(log_nc)) == pytest.approx(log_nc.std(), rel=0.35)  # se(N_c) / N_c ~ se(ln N_c)
    with pytest.raises(IrnoError, match="at least 3"):
        fit_power_law([1, 2], [1, 2])
    with pytest.raises(IrnoError, match="positive"):
        fit_power_law([1, 2, 3], [1, 0, 2])


def synthetic_study():
    return study_from_dict(
        {
            "datasets": {
                "s": {"graph": {"nodes": 500}},
                "m": {"graph": {"nodes": 900}},
                "l": {"graph": {"nodes": 2000}},
            },
            "model": {"width": 16, "heads": 4},
            "per_model": {"deeponet": {"model.learned_pde": False}},
            "experiments": {
                "data_noise": {
                    "datasets": ["s", "m", "l"],
                    "models": ["deeponet", "roma"],
                    "vary": {"train.noise_eta": [0.0, 4.0e-4]},
                },
                "effective_dynamics": {
                    "datasets": ["m"],
                    "models": ["deeponet", "roma"],
                    "overrides": {"deeponet": {"model.learned_pde": True}},
                },
                "positional": [{"datasets": ["m"]}, {"datasets": ["m"], "vary": {"model.level_embedding": [0.0]}}],
                "parameter_scaling": {"datasets": ["m"], "vary": {"model.width": [8, 16, 32, 64]}},
            },
        }
    )


def synthetic_metrics(expanded):
    """Metrics following known laws: smspe = 0.01 (params / 1000)^-0.3 x (N / 400)^-0.2 x (1 + 100 eta),
    loss_pde = 0.1 (params / 1000)^-0.5."""
    nodes = {"s": 400, "m": 800, "l": 1600}
    rows = []
    for key, run in expanded.runs.items():
        params = 1000 * (run["model"]["width"] / 8) ** 2
        eta = run["train"]["noise_eta"]
        n = nodes[run["dataset"]]
        rows.append(
            {
                "run_key": key,
                "dataset": run["dataset"],
                "model": run["model"]["kind"],
                "nodes": n,
                "width": run["model"]["width"],
                "reference_parameters": params,
                "noise_eta": eta,
                "pde": run["model"]["pde"] if run["model"]["learned_pde"] else None,
                "smspe": 0.01 * (params / 1000) ** -0.3 * (n / 400) ** -0.2 * (1 + 100 * eta),
                "smspe_persistence": 0.02,
                "loss_pde": 0.1 * (params / 1000) ** -0.5 if run["model"]["learned_pde"] else None,
                "loss_gpde": 1e-9 if run["model"]["learned_pde"] else None,
            }
        )
    return pd.DataFrame(rows).set_index("run_key", drop=False)


def test_tables_from_metrics():
    expanded = expand_study(synthetic_study())
    tables = build_tables(expanded, synthetic_metrics(expanded))
    smspe = tables["smspe"].set_index("model")
    assert list(smspe.index) == ["deeponet", "roma"]
    expected = [f"{d} (N={n}), eta={e:g}" for d, n in (("s", 400), ("m", 800), ("l", 1600)) for e in (0.0, 4e-4)]
    assert sorted(smspe.columns) == sorted(expected)
    assert smspe.loc["roma", "m (N=800), eta=0.0004"] == pytest.approx(0.01 * 4**-0.3 * 2**-0.2 * 1.04)
    scaling = tables["scaling"].set_index(["against", "loss", "model", "noise_eta"])
    assert scaling.loc[("parameters", "smspe", "roma", 4e-4), "exponent"] == pytest.approx(0.3)
    assert scaling.loc[("parameters", "loss_pde", "roma", 4e-4), "exponent"] == pytest.approx(0.5)
    assert scaling.loc[("parameters", "loss_pde", "roma", 4e-4), "critical_size"] == pytest.approx(1000 * 0.1**2)
    assert scaling.loc[("nodes", "smspe", "deeponet", 0.0), "exponent"] == pytest.approx(0.2)
    assert len(scaling) == 2 + 4  # parameters (m, roma: sMSPE and PDE loss); nodes per model x eta
    effective = tables["effective_dynamics"]
    assert list(effective["model"]) == ["deeponet", "roma"] and effective["loss_pde"].notna().all()
    ablations = tables["ablations"]
    assert list(ablations["setting"]) == ["default", "level_embedding=0.0"]


def test_missing_metrics_and_outputs():
    expanded = expand_study(synthetic_study())
    metrics = synthetic_metrics(expanded)
    with pytest.raises(IrnoError, match="no metrics given for run"):
        build_tables(expanded, metrics.iloc[1:])
    outputs = report_outputs(expanded)
    assert "smspe.tex" in outputs["tables"] and "ablations.md" in outputs["tables"]
    assert "effective_dynamics.csv" in outputs["tables"]
    assert "scaling_law.pdf" in outputs["figures"] and "attention.png" in outputs["figures"]
