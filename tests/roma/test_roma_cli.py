"""The ``irno roma`` commands end to end on config/test.yaml's roma: section, in one process (the
workflow runs the same commands, one job each: tests/test_workflow.py)."""

import json

import pandas as pd
import pytest

from irno.cli import main
from irno.roma.config import load_study, plan_study, report_outputs
from irno.utils import read_json, read_yaml

CONFIG = "config/test.yaml"


@pytest.mark.slow
def test_study_end_to_end(tmp_path):
    root = tmp_path / "roma"
    assert main(["roma", "plan", "--config", CONFIG, "--out-dir", str(root)]) == 0
    plan = read_json(root / "plan.json")
    for name in plan["datasets"]:
        folder = root / "data" / name
        assert (
            main(["roma", "simulate", "--config", str(folder / "settings.yaml"), "--out", str(folder / "kuramoto.h5")])
            == 0
        )
    metrics, logs, attention = [], [], []
    for key, settings in plan["runs"].items():
        run, ev = root / "runs" / key, root / "eval" / key
        data = str(root / "data" / settings["dataset"] / "kuramoto.h5")
        assert (
            main(
                [
                    "roma",
                    "train",
                    "--config",
                    str(run / "settings.yaml"),
                    "--data",
                    data,
                    "--out-dir",
                    str(run),
                    "--threads",
                    "1",
                ]
            )
            == 0
        )
        extra = ["--attention", str(ev / "attention.npz")] if settings["model"]["kind"] == "roma" else []
        assert (
            main(
                [
                    "roma",
                    "evaluate",
                    "--config",
                    str(run / "settings.yaml"),
                    "--data",
                    data,
                    "--checkpoint",
                    str(run / "checkpoint.pt"),
                    "--metrics",
                    str(ev / "metrics.json"),
                    *extra,
                ]
            )
            == 0
        )
        metrics.append(str(ev / "metrics.json"))
        logs.append(str(run / "train_log.csv"))
        attention += extra[1:]
    assert main(["roma", "tables", "--config", CONFIG, "--metrics", *metrics, "--out-dir", str(root / "tables")]) == 0
    assert (
        main(
            [
                "roma",
                "figures",
                "--config",
                CONFIG,
                "--metrics",
                *metrics,
                "--train-logs",
                *logs,
                "--attention",
                *attention,
                "--out-dir",
                str(root / "figures"),
            ]
        )
        == 0
    )

    expected = report_outputs(plan_study(load_study(CONFIG)))
    assert sorted(p.name for p in (root / "tables").iterdir()) == sorted(expected["tables"])
    assert sorted(p.name for p in (root / "figures").iterdir()) == sorted(expected["figures"])
    assert all(p.stat().st_size > 1000 for p in (root / "figures").iterdir())
    results = pd.read_csv(root / "tables" / "results.csv")
    assert len(results) == len(plan["runs"]) == 6
    assert results["smspe"].between(0, 1).all() and results["smspe_persistence"].between(0, 1).all()
    smspe = pd.read_csv(root / "tables" / "smspe.csv")
    assert list(smspe["model"]) == ["deeponet", "roma"] and smspe.shape[1] == 1 + 1  # one size, one eta
    scaling = pd.read_csv(root / "tables" / "scaling.csv")
    assert scaling["exponent_se"].notna().all() and (scaling["points"] == 3).all()
    assert "\\begin{tabular}" in (root / "tables" / "ablations.tex").read_text()
    # a second plan leaves the settings alone (the workflow relies on their modification times)
    settings = next((root / "runs").glob("*/settings.yaml"))
    before = settings.stat().st_mtime_ns
    assert main(["roma", "plan", "--config", CONFIG, "--out-dir", str(root)]) == 0
    assert settings.stat().st_mtime_ns == before


def test_write_settings_validates_and_completes(tmp_path, capsys):
    def write(kind, settings, out):
        return main(["roma", "write-settings", "--kind", kind, "--json", json.dumps(settings), "--out", str(out)])

    plan = plan_study(load_study(CONFIG))
    assert write("study", read_yaml(CONFIG)["roma"], tmp_path / "study.yaml") == 0
    written = read_yaml(tmp_path / "study.yaml")["roma"]
    assert written["train"]["lr"] == 1e-3 and written["experiments"]["data_noise"]["models"] == ["deeponet", "roma"]
    assert plan_study(load_study(tmp_path / "study.yaml")).runs == plan.runs  # completed, same runs
    key, run = next(iter(plan.runs.items()))
    assert write("run", run, tmp_path / "run.yaml") == 0 and read_yaml(tmp_path / "run.yaml") == run
    assert write("data", {"graph": {"nodes": 500}}, tmp_path / "data.yaml") == 0
    assert read_yaml(tmp_path / "data.yaml")["dynamics"]["K"] == 5.0

    assert write("run", {**run, "train": {**run["train"], "epochz": 3}}, tmp_path / "bad_run.yaml") == 1
    assert "unknown config key 'train.epochz'" in capsys.readouterr().err
    assert write("data", {"graph": {"nodes": 5}}, tmp_path / "bad_data.yaml") == 1
    assert "config key 'graph.nodes': 5 is invalid" in capsys.readouterr().err
    study = read_yaml(CONFIG)["roma"]
    study["experiments"]["positional"]["datasets"] = ["huge"]
    assert write("study", study, tmp_path / "bad_study.yaml") == 1
    assert "roma.experiments.positional.datasets': unknown dataset 'huge'" in capsys.readouterr().err
    assert not list(tmp_path.glob("bad_*"))


def test_bad_input_is_one_line_naming_it(tmp_path, capsys):
    bad = tmp_path / "study.yaml"
    bad.write_text("roma:\n  datasets: {a: {graph: {nodes: 100}}}\n  experiments:\n    positional: {datasets: [b]}\n")
    assert main(["roma", "plan", "--config", str(bad), "--out-dir", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "irno roma: error:" in err and "unknown dataset 'b'" in err and "Traceback" not in err
    assert main(["roma", "simulate", "--config", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "x.h5")]) == 1
    assert "missing.yaml: file not found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "x.h5").exists()


def test_help_lists_the_verbs(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["roma", "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for verb in ("plan", "simulate", "train", "evaluate", "tables", "figures"):
        assert verb in help_text
