"""Tables, figures and the Snakemake report from synthetic evaluation outputs (tests/eval_fixtures.py).

The evaluation tree: active_matter x {FNO, TFNO}; on FNO every run is present and alpha_0.5
diverges from step 9; on TFNO no_spectral and K_4 are missing and the transfer run's Phi was
trained on FNO predictions.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from eval_fixtures import write_eval_outputs
from matplotlib.collections import PolyCollection
from matplotlib.image import AxesImage, imread

from irno import IrnoError
from irno.cli import main as cli_main
from irno.config import ReportPlan
from irno.files import write_yaml
from irno.report.claims import load_claims
from irno.report.figures import (
    convergence,
    energy_spectra,
    field_quantities,
    fields,
    spectral_error_ratio,
    spectral_mse_per_step,
    write_figures,
)
from irno.report.names import FIGURE_NAMES, TABLE_NAMES
from irno.report.results import load_plan, load_reported, load_run, load_runs
from irno.report.tables import write_tables
from irno.settings import from_dict

REPO = Path(__file__).resolve().parents[1]
REPORTED = REPO / "config" / "reported.yaml"
CLAIMS = REPO / "config" / "claims.yaml"
PLAN = {
    "run_name": "test",
    "datasets": ["active_matter"],
    "bases": ["FNO", "TFNO"],
    "main_experiment": "irno",
    "experiments": [
        {"name": "irno", "group": "full method", "label": "IRNO"},
        {"name": "no_spectral", "group": "loss terms", "label": "no spectral loss"},
        {"name": "no_fixed_point", "group": "loss terms", "label": "no fixed-point loss"},
        {"name": "K_4", "group": "K", "label": "K = 4"},
        {"name": "alpha_0.3", "group": "alpha", "label": "α = 0.3"},
        {"name": "alpha_0.5", "group": "alpha", "label": "α = 0.5"},
        {"name": "lambda_fixed_1.0", "group": "lambda schedule", "label": "fixed λ = 1.0"},
        {"name": "transfer", "group": "transfer", "label": "transferred Φ"},
    ],
    "band_experiments": ["irno", "no_spectral"],
    "sweeps": {"alpha": ["alpha_0.3", "alpha_0.5"], "K": ["K_4"]},
}
SETTINGS = {"K_4": {"K": 4}, "alpha_0.3": {"alpha": 0.3}, "alpha_0.5": {"alpha": 0.5}}
MISSING_RUNS = {("TFNO", "no_spectral"), ("TFNO", "K_4")}
DIVERGED_RUN, DIVERGED_FROM = ("FNO", "alpha_0.5"), 9


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """(plan path, eval root, {(base, experiment): what write_eval_outputs wrote})."""
    root = tmp_path_factory.mktemp("report")
    written = {}
    for seed, (base, experiment) in enumerate((b, e["name"]) for b in PLAN["bases"] for e in PLAN["experiments"]):
        if (base, experiment) in MISSING_RUNS:
            continue
        written[(base, experiment)] = write_eval_outputs(
            root / "eval" / "active_matter" / base / experiment,
            base=base,
            experiment=experiment,
            trained_on_base="FNO" if (base, experiment) == ("TFNO", "transfer") else None,
            diverge_from=DIVERGED_FROM if (base, experiment) == DIVERGED_RUN else None,
            seed=seed,
            **SETTINGS.get(experiment, {}),
        )
    write_yaml(root / "plan.yaml", PLAN)
    return root / "plan.yaml", root / "eval", written


@pytest.fixture(scope="module")
def tables(evaluated, tmp_path_factory):
    plan_path, eval_root, _ = evaluated
    out = tmp_path_factory.mktemp("tables")
    write_tables(load_plan(plan_path), eval_root, REPORTED, out, CLAIMS)
    return {name: pd.read_csv(out / f"{name}.csv", dtype=str, keep_default_na=False) for name in TABLE_NAMES} | {
        "dir": out
    }


def _cell(table: pd.DataFrame, column: str, **where) -> str:
    mask = np.logical_and.reduce([table[k] == v for k, v in where.items()])
    assert mask.sum() == 1, (where, mask.sum())
    return table.loc[mask, column].item()


def _number(text: str) -> float:
    return float(text.removesuffix(" (diverged)"))


# ----------------------------------------------------------------------------- plan and loader


def test_plan_rejects_bad_entries_by_name(tmp_path):
    assert from_dict(ReportPlan, PLAN).sweep("K") == ["irno", "K_4"]
    bad = [
        ({"main_experiment": "irno_full"}, "plan.main_experiment.*irno_full"),
        ({"sweeps": {"lr": ["irno"]}}, "plan.sweeps.*'lr'"),
        ({"sweeps": {"K": ["K_16"]}}, "plan.sweeps.K.*K_16"),
        ({"band_experiments": ["irno", "spectral"]}, "plan.band_experiments.*spectral"),
        ({"experiments": [{"name": "irno"}]}, r"plan.experiments\[irno\].group"),
        ({"experiments": [{"name": "irno", "group": "g", "colour": "red"}]}, r"plan.experiments\[0\].colour"),
        ({"bases": []}, "plan.bases"),
        ({"figure_base": "UNet"}, "plan.figure_base.*UNet"),
        ({"colour": "red"}, "plan.colour"),
    ]
    for change, message in bad:
        write_yaml(tmp_path / "plan.yaml", PLAN | change)
        with pytest.raises(IrnoError, match=message) as err:
            load_plan(tmp_path / "plan.yaml")
        assert "plan.yaml" in str(err.value)


def test_loader_marks_missing_and_names_bad_files(evaluated, tmp_path):
    plan_path, eval_root, written = evaluated
    runs = load_runs(load_plan(plan_path), eval_root)
    assert runs[("active_matter", "TFNO", "K_4")].missing and runs[("active_matter", "TFNO", "K_4")].status == "missing"
    assert "metrics.json" in runs[("active_matter", "TFNO", "K_4")].missing_reason
    assert runs[("active_matter", "FNO", "alpha_0.5")].status == f"diverged from k={DIVERGED_FROM}"
    assert runs[("active_matter", "FNO", "irno")].status == "ok"

    run_dir = tmp_path / "active_matter" / "FNO" / "irno"
    shutil.copytree(eval_root / "active_matter" / "FNO" / "irno", run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    (run_dir / "metrics.json").write_text(json.dumps({k: v for k, v in metrics.items() if k != "vrmse_final"}))
    with pytest.raises(IrnoError, match=r"metrics.json: missing key\(s\) vrmse_final"):
        load_run(tmp_path, "active_matter", "FNO", "irno")
    (run_dir / "metrics.json").write_text(json.dumps(metrics | {"experiment": "no_spectral"}))
    with pytest.raises(IrnoError, match="'experiment' is 'no_spectral'"):
        load_run(tmp_path, "active_matter", "FNO", "irno")
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    written[("FNO", "irno")]["per_step"].drop(columns="vrmse_D_xx").to_csv(run_dir / "per_step.csv", index=False)
    with pytest.raises(IrnoError, match=r"per_step.csv: missing column\(s\) vrmse_D_xx"):
        load_run(tmp_path, "active_matter", "FNO", "irno")
    written[("FNO", "irno")]["per_step"].to_csv(run_dir / "per_step.csv", index=False)
    np.savez(run_dir / "spectra.npz", steps=np.arange(3))
    with pytest.raises(IrnoError, match=r"spectra.npz: missing array\(s\) K, shells"):
        _ = load_run(tmp_path, "active_matter", "FNO", "irno").spectra  # read on first use


def test_reported_numbers_come_with_their_sources(tmp_path):
    reported = load_reported(REPORTED)
    assert reported.main_entry("active_matter", "FNO") | {"source": None} == {
        "source": None, "dataset": "active_matter", "base": "FNO", "single_pass": 0.1017, "irno": 0.0501,
        "gain_pct": 50.73,
    }  # fmt: skip
    assert reported.main_entry("turbulent_radiative_layer_2D", "TFNO")["irno"] == 0.1042
    assert reported.well_vrmse("active_matter", "TFNO", "valid") == 0.3342
    assert reported.well_vrmse("active_matter", "UNetConvNext", "test") == 0.1034
    assert reported.ablation_entry("active_matter", "TFNO", "lambda_fixed_1.75")["vrmse_pooled_cf"] == 0.0586
    assert "indicative" in reported.sources[reported.ablations[0]["source"]]["standing"]
    for entry in reported.main:
        assert reported.sources[entry["source"]]["convention"] == "pooled_cf"
    data = yaml.safe_load(REPORTED.read_text())
    data["main"][0]["source"] = "a_blog"
    write_yaml(tmp_path / "reported.yaml", data)
    with pytest.raises(IrnoError, match=r"main\[0\]: source 'a_blog'"):
        load_reported(tmp_path / "reported.yaml")


# ----------------------------------------------------------------------------- tables


def test_main_table_cells_equal_metrics_and_published(tables, evaluated):
    main, written = tables["main"], evaluated[2]
    reported = load_reported(REPORTED)
    metrics = written[("FNO", "irno")]["metrics"]
    well = {"base": "FNO", "convention": "The Well"}
    pooled = {"base": "FNO", "convention": "pooled (reference)"}
    assert float(_cell(main, "single pass", **well)) == metrics["vrmse_base"]
    assert float(_cell(main, "IRNO @ K", **well)) == metrics["vrmse_refined"]
    assert float(_cell(main, "gain %", **well)) == metrics["gain_pct"]
    assert float(_cell(main, "reported single pass", **well)) == 0.3691
    assert float(_cell(main, "Δ single pass", **well)) == pytest.approx(metrics["vrmse_base"] - 0.3691)
    assert _cell(main, "reported IRNO", **well) == "not reported" == _cell(main, "Δ IRNO", **well)
    assert float(_cell(main, "single pass", **pooled)) == metrics["vrmse_pooled_cf_base"]
    assert float(_cell(main, "IRNO @ K", **pooled)) == metrics["vrmse_pooled_cf_refined"]
    assert float(_cell(main, "gain %", **pooled)) == metrics["gain_pct_pooled_cf"]
    entry = reported.main_entry("active_matter", "FNO")
    assert float(_cell(main, "reported IRNO", **pooled)) == entry["irno"] == 0.0501
    assert float(_cell(main, "Δ IRNO", **pooled)) == pytest.approx(metrics["vrmse_pooled_cf_refined"] - 0.0501)
    assert float(_cell(main, "Δ gain (pp)", **pooled)) == pytest.approx(metrics["gain_pct_pooled_cf"] - 50.73)
    assert _cell(main, "reported source", **pooled) == "irno_readme"
    assert _cell(main, "K", **pooled) == "6" and _cell(main, "status", **pooled) == "ok"
    assert float(_cell(main, "reported IRNO", base="TFNO", convention="pooled (reference)")) == 0.0387


def test_ablation_table_groups_marks_divergence_and_missing(tables, evaluated):
    ablations, written = tables["ablations"], evaluated[2]
    fno = ablations[ablations["base"] == "FNO"]
    assert fno["variant"].tolist()[:3] == ["IRNO", "no spectral loss", "no fixed-point loss"]
    assert list(dict.fromkeys(fno["group"])) == [
        "full method",
        "loss terms",
        "K",
        "alpha",
        "lambda schedule",
        "transfer",
    ]
    assert "VRMSE @ K+6" in ablations.columns
    for (base, experiment), out in written.items():
        label = next(e["label"] for e in PLAN["experiments"] if e["name"] == experiment)
        label += " (Φ trained on FNO)" if (base, experiment) == ("TFNO", "transfer") else ""
        m = out["metrics"]
        row = {"base": base, "variant": label}
        assert _number(_cell(ablations, "VRMSE @ K", **row)) == m["vrmse_refined"]
        assert _number(_cell(ablations, "VRMSE @ K+6", **row)) == m["vrmse_final"]
        assert _number(_cell(ablations, "gain %", **row)) == m["gain_pct"]
        assert _number(_cell(ablations, "pooled VRMSE @ K", **row)) == m["vrmse_pooled_cf_refined"]
        assert int(_cell(ablations, "K", **row)) == m["K"] and float(_cell(ablations, "α", **row)) == m["alpha"]
    diverged = {"base": "FNO", "variant": "α = 0.5"}
    assert _cell(ablations, "VRMSE @ K+6", **diverged) == "inf (diverged)"
    assert not _cell(ablations, "VRMSE @ K", **diverged).endswith("(diverged)")  # step 6 < 9 is fine
    assert _cell(ablations, "status", **diverged) == f"diverged from k={DIVERGED_FROM}"
    for column in ("K", "VRMSE @ K", "VRMSE @ K+6", "gain %", "status"):
        assert _cell(ablations, column, base="TFNO", variant="K = 4") == "missing"
    assert _cell(ablations, "reported pooled @ K", base="TFNO", variant="IRNO") == "0.0387"
    assert _cell(ablations, "reported pooled @ K", base="TFNO", variant="fixed λ = 1.0") == "0.0509"
    assert _cell(ablations, "reported pooled @ K", base="FNO", variant="fixed λ = 1.0") == "not reported"


def test_band_and_per_field_tables(tables, evaluated):
    bands, per_field, written = tables["bands"], tables["per_field"], evaluated[2]
    per_step = written[("FNO", "no_spectral")]["per_step"]
    for step in (0, 6, 12):
        for band in ("low", "mid", "high"):
            cell = _cell(bands, f"no spectral loss: {band} %", base="FNO", step=str(step))
            assert float(cell) == 100 * per_step.loc[step, f"band_ratio_{band}"]
    assert float(_cell(bands, "IRNO: low %", base="FNO", step="0")) == 100.0
    assert _cell(bands, "no spectral loss: mid %", base="TFNO", step="3") == "missing"
    assert len(bands[bands["base"] == "TFNO"]) == 13  # steps of the present band run

    steps = written[("TFNO", "irno")]["per_step"]
    for name in ("concentration", "D_xx", "E_yy"):
        single, refined = steps.loc[0, f"vrmse_{name}"], steps.loc[6, f"vrmse_{name}"]
        assert float(_cell(per_field, "single pass", base="TFNO", field=name)) == single
        assert float(_cell(per_field, "refined @ K", base="TFNO", field=name)) == refined
        assert float(_cell(per_field, "gain %", base="TFNO", field=name)) == pytest.approx(
            100 * (single - refined) / single
        )
    assert len(per_field) == 22


def test_markdown_and_latex_render_the_same_cells(tables, evaluated, tmp_path):
    out = tables["dir"]
    for name in TABLE_NAMES:
        assert (out / f"{name}.md").stat().st_size > 0
        tex = (out / f"{name}.tex").read_text()
        assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
        assert "\\label{tab:irno-" in tex
        assert tex.isascii(), [c for c in tex if not c.isascii()]  # pdflatex needs no unicode setup
    md = (out / "ablations.md").read_text()
    assert re.search(r"\|\s+inf †\s+\|", md) and "† diverged" in md
    assert re.search(r"\|\s+0\.0387\s+\|", md)  # our rounding, not tabulate's
    tex = (out / "ablations.tex").read_text()
    assert r"inf $^{\dagger}$" in tex and r"gain \%" in tex and r"$\alpha$" in tex
    metrics = evaluated[2][("FNO", "irno")]["metrics"]
    assert f"{metrics['vrmse_refined']:.4f}" in (out / "main.md").read_text()
    assert f"{metrics['vrmse_refined']:.4f}" in (out / "main.tex").read_text()

    # a simulated dataset is not compared with published numbers
    plan_path, eval_root, _ = evaluated
    write_yaml(tmp_path / "plan.yaml", PLAN | {"simulated": ["active_matter"]})
    write_tables(load_plan(tmp_path / "plan.yaml"), eval_root, REPORTED, tmp_path, CLAIMS)
    main = pd.read_csv(tmp_path / "main.csv", dtype=str)
    assert set(main["reported IRNO"]) == {"not compared (simulated)"}


# ----------------------------------------------------------------------------- seeds and claims

SEEDS = [42, 43, 44]
SEEDED = {  # (experiment, metrics key) -> one value per seed
    ("irno", "gain_pct"): [60.0, 61.0, 62.0],
    ("irno", "band_ratio_high"): [0.50, 0.52, 0.51],
    ("no_spectral", "band_ratio_high"): [0.80, 0.81, 0.79],
    ("irno", "vrmse_refined"): [0.30, 0.31, 0.29],
    ("no_spectral", "vrmse_refined"): [0.30, 0.32, 0.29],
}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """Three seeds of irno, no_spectral and alpha_0.5 on FNO, with chosen metrics: (plan, eval root, tables)."""
    root = tmp_path_factory.mktemp("seeded")
    plan = PLAN | {
        "bases": ["FNO"],
        "seeds": SEEDS,
        "experiments": [e for e in PLAN["experiments"] if e["name"] in ("irno", "no_spectral", "alpha_0.5")],
        "sweeps": {"alpha": ["alpha_0.5"]},
    }
    for i, seed in enumerate(SEEDS):
        for j, experiment in enumerate(("irno", "no_spectral", "alpha_0.5")):
            directory = root / "eval" / "active_matter" / "FNO" / experiment / f"seed_{seed}"
            write_eval_outputs(directory, experiment=experiment, seed=10 * i + j, **SETTINGS.get(experiment, {}))
            metrics = json.loads((directory / "metrics.json").read_text())
            metrics |= {key: values[i] for (e, key), values in SEEDED.items() if e == experiment}
            if experiment == "alpha_0.5":  # beyond K its error grows past the base's in every seed
                metrics["vrmse_final"] = metrics["vrmse_base"] * (1.5 + 0.1 * i)
            (directory / "metrics.json").write_text(json.dumps(metrics))
    write_yaml(root / "plan.yaml", plan)
    write_tables(load_plan(root / "plan.yaml"), root / "eval", REPORTED, root / "tables", CLAIMS)
    tables = {
        name: pd.read_csv(root / "tables" / f"{name}.csv", dtype=str, keep_default_na=False) for name in TABLE_NAMES
    }
    return load_plan(root / "plan.yaml"), root / "eval", tables | {"dir": root / "tables"}


def test_seeds_give_mean_and_spread_in_every_format(seeded):
    plan, eval_root, tables = seeded
    gain = SEEDED[("irno", "gain_pct")]
    main = tables["main"]
    row = main[main["convention"] == "The Well"]
    assert float(row["gain %"].item()) == pytest.approx(np.mean(gain))
    assert float(row["gain % sd"].item()) == pytest.approx(np.std(gain, ddof=1))
    md = (tables["dir"] / "main.md").read_text()
    assert "61.00 ± 1.00" in md and "mean ± standard deviation over the seeds 42, 43, 44" in md
    assert r"61.00 $\pm$ 1.00" in (tables["dir"] / "main.tex").read_text()
    # a difference within the seeds' spread is marked, a clear one is not
    ablations = tables["ablations"]
    assert _cell(ablations, "Δ VRMSE @ K vs irno", variant="no spectral loss").endswith(" (ns)")
    runs = load_runs(plan, eval_root)
    assert runs[("active_matter", "FNO", "irno")].n == 3 and runs[("active_matter", "FNO", "irno")].status == "ok"


def test_a_missing_seed_is_named_and_left_out(seeded, tmp_path):
    plan, eval_root, _ = seeded
    shutil.copytree(eval_root, tmp_path / "eval")
    shutil.rmtree(tmp_path / "eval" / "active_matter" / "FNO" / "irno" / "seed_43")
    run = load_runs(plan, tmp_path / "eval")[("active_matter", "FNO", "irno")]
    assert run.n == 2 and run.status == "missing seed_43"
    assert run.stat("gain_pct").values == (60.0, 62.0)


def test_figures_draw_the_mean_and_the_range_over_seeds(seeded, tmp_path):
    plan, eval_root, _ = seeded
    runs = load_runs(plan, eval_root)
    irno, alpha = runs[("active_matter", "FNO", "irno")], runs[("active_matter", "FNO", "alpha_0.5")]
    fig = convergence({"alpha": [irno, alpha]}, None)
    ax = fig.axes[0]
    steps, mean, low, high = irno.curve("vrmse")
    line = next(line for line in ax.lines if line.get_gid() == "vrmse irno")
    np.testing.assert_allclose(line.get_ydata(), mean)
    band = next(c for c in ax.collections if c.get_gid() == "seed range irno")
    vertices = band.get_paths()[0].vertices
    assert vertices[:, 1].max() == pytest.approx(high.max()) and vertices[:, 1].min() == pytest.approx(low.min())
    per_seed = [run.per_step["vrmse"].to_numpy() for run in irno.present]
    np.testing.assert_allclose(mean, np.mean(per_seed, axis=0))
    ratio = spectral_error_ratio([irno], None).axes[0]
    assert any(c.get_gid() == "seed range k=3" for c in ratio.collections)
    median = next(line for line in ratio.lines if line.get_gid() == "median k=3")
    np.testing.assert_allclose(median.get_ydata(), irno.spectra_stack("ratio_median")[:, 3].mean(0))
    write_figures(plan, eval_root, tmp_path)
    assert all((tmp_path / f"{name}.png").stat().st_size > 0 for name in FIGURE_NAMES)


def test_claims_verdicts_follow_the_numbers_and_their_spread(seeded):
    claims = seeded[2]["claims"]

    def verdict(claim_start: str) -> list[str]:
        return claims.loc[claims["claim"].str.startswith(claim_start), "verdict"].tolist()

    assert set(claims["verdict"]) <= {"holds", "does not hold", "not significant", "not run"}
    assert verdict("IRNO lowers the base's error at the training horizon K") == ["holds"]  # 61 ± 1 >= 45.32
    assert verdict("At K the high-frequency band error falls to") == ["does not hold"]  # 51 % > 2 %
    assert verdict("The spectral loss is what lowers") == ["holds"]  # 51 % < 80 %, clearly
    assert verdict("A step size alpha >= 0.5 diverges") == ["holds"]
    assert verdict("Without the fixed-point term") == ["not run"]  # no no_fixed_point experiment
    assert verdict("A Phi trained on TFNO") == ["not run"]
    ours = claims.loc[claims["claim"].str.startswith("IRNO lowers"), "ours"].item()
    assert ours == "61 ± 1 (n = 3)"


def test_one_seed_is_never_significant(tables):
    claims = tables["claims"]
    decided = claims[claims["verdict"].isin(["holds", "does not hold"])]
    # only the alpha divergence flagged in the evaluation itself is decided without a spread
    assert set(decided["claim"]) <= {"A step size alpha >= 0.5 diverges beyond K"}


def test_claims_thresholds_are_the_published_numbers():
    reported = load_reported(REPORTED)
    claims = {c.id: c for c in load_claims(CLAIMS, reported)}
    assert claims["gain_at_K"].test["threshold"] == min(e["gain_pct"] for e in reported.main)
    (bands,) = reported.band_ratios
    for band in ("low", "mid", "high"):
        assert claims[f"band_{band}"].test["threshold"] == bands[band][1]


def test_bad_claims_are_named(tmp_path):
    reported = load_reported(REPORTED)
    data = yaml.safe_load(CLAIMS.read_text())
    for change, message in (
        ({"test": {"kind": "larger"}}, r"claims\[0\] \(gain_at_K\): test.kind must be one of"),
        ({"test": {"kind": "at_least", "metric": "gain_pct"}}, "needs threshold"),
        ({"source": "a_blog"}, "source 'a_blog' is not one of the sources"),
    ):
        data_changed = copy.deepcopy(data)
        data_changed["claims"][0].update(change)
        write_yaml(tmp_path / "claims.yaml", data_changed)
        with pytest.raises(IrnoError, match=message):
            load_claims(tmp_path / "claims.yaml", reported)


def test_nothing_evaluated_yet_renders_missing_everywhere(evaluated, tmp_path):
    plan = load_plan(evaluated[0])
    write_tables(plan, tmp_path / "no_eval", REPORTED, tmp_path, CLAIMS)
    main = pd.read_csv(tmp_path / "main.csv", dtype=str)
    assert set(main["IRNO @ K"]) == set(main["status"]) == {"missing"}
    assert set(main["reported IRNO"]) == {"0.0501", "0.0387", "not reported"}  # published numbers still shown
    bands = pd.read_csv(tmp_path / "bands.csv", dtype=str)
    assert len(bands) == 2 and set(bands.iloc[:, 2:].to_numpy().ravel()) == {"missing"}
    runs = load_runs(plan, tmp_path / "no_eval")
    main_runs = [runs[("active_matter", b, "irno")] for b in plan.bases]
    for fig in (
        spectral_error_ratio(main_runs, None),
        spectral_mse_per_step(main_runs, None),
        convergence({"K": [runs[("active_matter", "FNO", e)] for e in plan.sweep("K")]}, None),
        energy_spectra(main_runs, None),
        fields(main_runs[0], None),
    ):
        fig.draw_without_rendering()
        assert any(t.get_gid() == "missing" for ax in fig.axes for t in ax.texts)


# ----------------------------------------------------------------------------- figures


@pytest.fixture(scope="module")
def runs(evaluated):
    plan_path, eval_root, _ = evaluated
    return load_runs(load_plan(plan_path), eval_root)


def _lines(ax) -> dict:
    return {line.get_gid(): line for line in ax.lines if line.get_gid()}


def test_spectral_error_ratio_plots_the_given_arrays(runs, evaluated):
    main = [runs[("active_matter", base, "irno")] for base in ("FNO", "TFNO")]
    fig = spectral_error_ratio(main, None)
    s = evaluated[2][("FNO", "irno")]["spectra"]
    ax = fig.axes[0]
    lines = _lines(ax)
    for k in (0, 6, 12):
        np.testing.assert_array_equal(lines[f"median k={k}"].get_xdata(), s["shells"])
        np.testing.assert_array_equal(lines[f"median k={k}"].get_ydata(), s["ratio_median"][k])
    assert lines["median k=3"].get_linestyle() == "-" and lines["median k=9"].get_linestyle() == "--"
    assert lines["nyquist"].get_xdata()[0] == s["nyquist"] == 8
    band = next(c for c in ax.collections if isinstance(c, PolyCollection) and c.get_gid() == "iqr k=4")
    vertices = band.get_paths()[0].vertices
    for q in ("ratio_q25", "ratio_q75"):
        assert all(np.isclose(vertices[:, 1], v).any() for v in s[q][4])
    assert ax.get_yscale() == "log" and ax.get_xlabel() and ax.get_ylabel()


def test_spectral_mse_and_convergence_show_divergence_and_missing(runs, evaluated):
    written = evaluated[2]
    band = [runs[("active_matter", b, e)] for b in ("FNO", "TFNO") for e in ("irno", "no_spectral")]
    fig = spectral_mse_per_step(band, None, max_samples=3)
    fno, tfno = fig.axes[0], fig.axes[1]
    per_sample = written[("FNO", "irno")]["spectra"]["spectral_mse"]
    lines = _lines(fno)
    np.testing.assert_array_equal(lines["sample 0"].get_ydata(), per_sample[0])
    np.testing.assert_array_equal(lines["sample 4"].get_ydata(), per_sample[4])
    assert "sample 1" not in lines  # 3 of 5 samples shown, evenly spaced: 0, 2, 4
    np.testing.assert_array_equal(lines["median irno"].get_ydata(), np.median(per_sample, axis=0))
    assert "no spectral loss: missing" in [t.get_text() for t in tfno.get_legend().get_texts()]
    assert any(p.get_gid() == "beyond K" for p in fno.patches)

    sweeps = {
        key: [runs[("active_matter", b, e)] for b in ("FNO", "TFNO") for e in from_dict(ReportPlan, PLAN).sweep(key)]
        for key in ("alpha", "K")
    }
    fig = convergence(sweeps, None)
    alpha_fno, k_fno, alpha_tfno, k_tfno = fig.axes[:4]
    lines = _lines(alpha_fno)
    for experiment in ("irno", "alpha_0.3", "alpha_0.5"):
        np.testing.assert_array_equal(
            lines[f"vrmse {experiment}"].get_ydata(), written[("FNO", experiment)]["per_step"]["vrmse"]
        )
    beyond = lines["beyond axis"]  # diverged points, on the top edge
    top = alpha_fno.get_ylim()[1]
    np.testing.assert_array_equal(beyond.get_ydata(), np.full(len(beyond.get_xdata()), top))
    assert beyond.get_xdata()[-1] == 12  # the infinite last step is shown
    legend = [t.get_text() for t in alpha_fno.get_legend().get_texts()]
    assert "α = 0.2 (full method)" in legend and f"α = 0.5, diverged from k={DIVERGED_FROM}" in legend
    assert "diverged: beyond the axis" in legend
    assert [t.get_text() for t in k_fno.get_legend().get_texts()][:2] == ["K = 4", "K = 6 (full method)"]
    np.testing.assert_array_equal(_lines(k_fno)["vrmse K_4"].get_xdata(), np.arange(11))
    assert "K = 4: missing" in [t.get_text() for t in k_tfno.get_legend().get_texts()]


def test_energy_spectra_and_fields_plot_the_given_arrays(runs, evaluated):
    written = evaluated[2]
    s = written[("FNO", "irno")]["spectra"]
    assert field_quantities(list(s["field_names"])) == [("concentration", [0]), ("velocity", [1, 2]), ("D_xx", [3])]
    assert field_quantities(["density", "pressure", "velocity_x", "velocity_y"])[1:] == [
        ("velocity", [2, 3]),
        ("pressure", [1]),
    ]

    missing = runs[("active_matter", "TFNO", "no_spectral")]
    fig = energy_spectra([runs[("active_matter", "FNO", "irno")], missing], None)
    lines = _lines(fig.axes[1])  # velocity: the sum of both components' spectra
    np.testing.assert_array_equal(lines["energy_truth velocity"].get_xdata(), s["energy_wavenumber"])
    np.testing.assert_allclose(lines["energy_truth velocity"].get_ydata(), s["energy_truth"][1] + s["energy_truth"][2])
    np.testing.assert_array_equal(_lines(fig.axes[2])["energy_refined D_xx"].get_ydata(), s["energy_refined"][3])
    assert any(t.get_gid() == "missing" for t in fig.axes[3].texts)

    fig = fields(runs[("active_matter", "FNO", "irno")], None)
    images = [im for ax in fig.axes for im in ax.images if isinstance(im, AxesImage)]
    assert len(images) == 15  # 3 quantities x (truth, base, refined, 2 errors)
    np.testing.assert_array_equal(images[0].get_array(), s["example_truth"][0].T)
    speed = np.sqrt(s["example_refined"][1] ** 2 + s["example_refined"][2] ** 2)
    np.testing.assert_allclose(images[7].get_array(), speed.T)
    np.testing.assert_allclose(images[14].get_array(), np.abs(s["example_refined"][3] - s["example_truth"][3]).T)


def test_cli_writes_every_file_and_reports_bad_input(evaluated, tmp_path, capsys):
    plan_path, eval_root, _ = evaluated
    assert (
        cli_main(
            [
                "tables",
                "--plan",
                str(plan_path),
                "--eval-root",
                str(eval_root),
                "--reported",
                str(REPORTED),
                "--claims",
                str(CLAIMS),
                "--out",
                str(tmp_path / "tables"),
            ]
        )
        == 0
    )
    assert (
        cli_main(
            ["figures", "--plan", str(plan_path), "--eval-root", str(eval_root), "--out", str(tmp_path / "figures")]
        )
        == 0
    )
    for name in TABLE_NAMES:
        for suffix in ("csv", "md", "tex"):
            assert (tmp_path / "tables" / f"{name}.{suffix}").stat().st_size > 0
    for name in FIGURE_NAMES:
        assert (tmp_path / "figures" / f"{name}.pdf").read_bytes().startswith(b"%PDF")
        image = imread(tmp_path / "figures" / f"{name}.png")
        assert image.shape[0] > 300 and image.shape[1] > 300 and image[..., :3].std() > 0.01
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]  # nothing half-written left
    write_yaml(tmp_path / "bad.yaml", PLAN | {"main_experiment": "full"})
    assert (
        cli_main(
            ["figures", "--plan", str(tmp_path / "bad.yaml"), "--eval-root", str(eval_root), "--out", str(tmp_path)]
        )
        == 1
    )
    assert "bad.yaml" in capsys.readouterr().err


# ----------------------------------------------------------------------------- Snakemake report

REPORT_SNAKEFILE = """
import sys

configfile: "config.yaml"
report: "{report_dir}/workflow.rst"
RUN = config["run_name"]
TABLES = {tables}
FIGURES = {figures}
REPORT = "{report_dir}"

rule all:
    input:
        expand("results/{{run}}/tables/{{name}}.{{suffix}}", run=RUN, name=TABLES, suffix=["csv", "md", "tex"]),
        expand("results/{{run}}/figures/{{name}}.{{suffix}}", run=RUN, name=FIGURES, suffix=["pdf", "png"]),

rule tables:
    input: plan="plan.yaml", reported="{reported}", claims="{claims}"
    output:
        **{{name: report(f"results/{{RUN}}/tables/{{name}}.csv", caption=f"{{REPORT}}/{{name}}.rst",
                         category="Tables") for name in TABLES}},
        other=expand("results/{{run}}/tables/{{name}}.{{suffix}}", run=RUN, name=TABLES, suffix=["md", "tex"]),
    shell:
        "{{sys.executable}} -m irno.cli tables --plan {{input.plan}} --eval-root eval"
        " --reported {{input.reported}} --claims {{input.claims}} --out results/{{RUN}}/tables"

rule figures:
    input: plan="plan.yaml"
    output:
        **{{name: report(f"results/{{RUN}}/figures/{{name}}.png", caption=f"{{REPORT}}/{{name}}.rst",
                         category="Figures") for name in FIGURES}},
        pdf=expand("results/{{run}}/figures/{{name}}.pdf", run=RUN, name=FIGURES),
    shell: "{{sys.executable}} -m irno.cli figures --plan {{input.plan}} --eval-root eval --out results/{{RUN}}/figures"
"""


@pytest.mark.slow
def test_snakemake_report_builds_with_every_caption(evaluated, tmp_path):
    """Every table and figure wrapped in report() with its caption from workflow/report/ builds into a report."""
    plan_path, eval_root, _ = evaluated
    shutil.copytree(eval_root, tmp_path / "eval")
    shutil.copy(plan_path, tmp_path / "plan.yaml")
    write_yaml(tmp_path / "config.yaml", {"run_name": "test"})
    (tmp_path / "Snakefile").write_text(
        REPORT_SNAKEFILE.format(
            report_dir=REPO / "workflow" / "report",
            reported=REPORTED,
            claims=CLAIMS,
            tables=list(TABLE_NAMES),
            figures=list(FIGURE_NAMES),
        )
    )
    env = {"PYTHONPATH": str(REPO), "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "HOME": str(tmp_path)}
    snakemake = [
        sys.executable,
        "-m",
        "snakemake",
        "--cores",
        "1",
        "--directory",
        str(tmp_path),
        "--snakefile",
        str(tmp_path / "Snakefile"),
    ]
    for extra in ([], ["--report", "report.zip"]):
        done = subprocess.run(snakemake + extra, env=env, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stderr[-3000:]
    import zipfile

    with zipfile.ZipFile(tmp_path / "report.zip") as report:
        names = report.namelist()
        text = "".join(report.read(n).decode("utf-8", "replace") for n in names if n.endswith((".html", ".js")))
    for name in (*TABLE_NAMES, *FIGURE_NAMES):
        assert any(n.endswith(f"{name}.png") or n.endswith(f"{name}.csv") for n in names), name
    for caption in ("Main result", "Ablations", "Spectral bands", "Per field", "Spectral error ratio",
                    "Spectral MSE per step", "Convergence", "Energy spectra", "Fields"):  # fmt: skip
        assert f"<strong>{caption}</strong>" in text, caption
    assert re.search(r"IRNO reproduction: run <tt[^>]*>test</tt>", text)  # the front page, Jinja rendered


def test_report_captions_are_clean_restructuredtext():
    # Snakemake renders captions as reStructuredText: a stray "|x|" is a substitution reference
    # and shows up as an error box in the report.
    import io

    import docutils.core

    captions = sorted((REPO / "workflow" / "report").glob("*.rst"))
    assert captions
    for caption in captions:
        warnings = io.StringIO()
        docutils.core.publish_doctree(
            caption.read_text(), settings_overrides={"warning_stream": warnings, "report_level": 2}
        )
        assert not warnings.getvalue(), f"{caption.name}: {warnings.getvalue()}"
