"""Power-law fits and the tables built from saved metrics."""

import numpy as np
import pandas as pd
import pytest

from irno.roma.config import plan_study, report_outputs, study_from_dict
from irno.roma.report import build_tables, fit_power_law
from irno.utils import IrnoError


def test_power_law_fit_recovers_a_known_exponent():
    x = np.array([1e3, 3e3, 1e4, 3e4, 1e5, 3e5])
    exact = fit_power_law(x, 2.5 * x**-0.35)
    assert exact["exponent"] == pytest.approx(0.35) and exact["exponent_se"] == pytest.approx(0.0, abs=1e-10)
    assert np.exp(exact["intercept"]) == pytest.approx(2.5) and exact["r2"] == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    estimates = []
    for _ in range(200):
        fit = fit_power_law(x, 2.5 * x**-0.35 * np.exp(rng.normal(0, 0.05, x.size)))
        estimates.append((fit["exponent"], fit["exponent_se"]))
    exponents, errors = np.array(estimates).T
    assert exponents.mean() == pytest.approx(0.35, abs=0.005)
    # the standard error is calibrated: it matches the spread of the estimates
    assert np.median(errors) == pytest.approx(exponents.std(), rel=0.3)
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
            "experiments": {
                "data_noise": {
                    "datasets": ["s", "m", "l"],
                    "models": ["deeponet", "roma"],
                    "vary": {"train.noise_eta": [0.0, 4.0e-4]},
                },
                "effective_dynamics": {"datasets": ["m"], "vary": {"model.learned_pde": [False, True]}},
                "parameter_scaling": {"datasets": ["m"], "vary": {"model.width": [8, 16, 32, 64]}},
            },
        }
    )


def synthetic_metrics(plan):
    """Metrics following known laws: smspe = 0.01 (params / 1000)^-0.3 x (N / 400)^-0.2 x (1 + 100 eta)."""
    nodes = {"s": 400, "m": 800, "l": 1600}
    rows = []
    for key, run in plan.runs.items():
        params = 1000 * (run["model"]["width"] / 8) ** 2
        eta = run["train"]["noise_eta"]
        n = nodes[run["dataset"]]
        rows.append(
            {
                "run_key": key,
                "dataset": run["dataset"],
                "model": run["model"]["kind"],
                "nodes": n,
                "parameters": params,
                "noise_eta": eta,
                "learned_pde": run["model"]["learned_pde"],
                "smspe": 0.01 * (params / 1000) ** -0.3 * (n / 400) ** -0.2 * (1 + 100 * eta),
                "smspe_clean": 0.001,
                "smspe_persistence": 0.02,
                "pde_residual_rms": 0.1 if run["model"]["learned_pde"] else None,
            }
        )
    return pd.DataFrame(rows).set_index("run_key", drop=False)


def test_tables_from_metrics():
    plan = plan_study(synthetic_study())
    tables = build_tables(plan, synthetic_metrics(plan))
    smspe = tables["smspe"].set_index("model")
    assert list(smspe.index) == ["deeponet", "roma"]
    assert list(smspe.columns) == [f"N={n}, eta={e:g}" for n in (400, 800, 1600) for e in (0.0, 4e-4)]
    assert smspe.loc["roma", "N=800, eta=0.0004"] == pytest.approx(0.01 * 4**-0.3 * 2**-0.2 * 1.04)
    scaling = tables["scaling"].set_index(["against", "model", "noise_eta"])
    assert scaling.loc[("parameters", "roma", 4e-4), "exponent"] == pytest.approx(0.3)
    assert scaling.loc[("nodes", "deeponet", 0.0), "exponent"] == pytest.approx(0.2)
    assert len(scaling) == 1 + 4  # parameters (m, roma); nodes per model x eta
    ablations = tables["ablations"]
    assert list(ablations["setting"]) == ["learned_pde=False", "learned_pde=True"]
    assert ablations["pde_residual_rms"].isna().tolist() == [True, False]


def test_missing_metrics_and_outputs():
    plan = plan_study(synthetic_study())
    metrics = synthetic_metrics(plan)
    with pytest.raises(IrnoError, match="no metrics given for run"):
        build_tables(plan, metrics.iloc[1:])
    outputs = report_outputs(plan)
    assert "smspe.tex" in outputs["tables"] and "ablations.md" in outputs["tables"]
    assert "scaling_law.pdf" in outputs["figures"] and "attention.png" in outputs["figures"]
