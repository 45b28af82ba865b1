"""The ``irno roma`` commands end to end on config/test.yaml's roma: section, in one process (the
workflow runs the same commands, one job each: tests/test_workflow.py)."""

import json

import pandas as pd
import pytest

from irno.cli import main
from irno.files import read_json, read_yaml
from irno.roma.config import expand_study, read_study_config, reads_encodings, report_outputs

CONFIG = "config/test.yaml"


@pytest.mark.slow
def test_study_end_to_end(tmp_path):
    root = tmp_path / "roma"
    assert main(["roma", "expand", "--config", CONFIG, "--out-dir", str(root)]) == 0
    plan = read_json(root / "study.json")
    for name in plan["datasets"]:
        folder = root / "data" / name
        data = str(folder / "dataset.h5")
        assert main(["roma", "simulate", "--config", str(folder / "settings.yaml"), "--out", data]) == 0
        if name in plan["encodings"]:
            encodings = ["--config", str(folder / "encodings" / "settings.yaml"), "--data", data]
            assert main(["roma", "encode", *encodings, "--out", str(folder / "encodings" / "encodings.h5")]) == 0
    metrics, logs, attention = [], [], []
    for key, settings in plan["runs"].items():
        run, ev = root / "runs" / key, root / "eval" / key
        folder = root / "data" / settings["dataset"]
        inputs = ["--config", str(run / "settings.yaml"), "--data", str(folder / "dataset.h5")]
        if reads_encodings(settings):
            inputs += ["--encodings", str(folder / "encodings" / "encodings.h5")]
        # the training job scores its model; `evaluate` re-scores the checkpoint to the same numbers
        assert main(["roma", "train", *inputs, "--out-dir", str(run), "--evaluation", str(ev), "--threads", "1"]) == 0
        rescored = ["--checkpoint", str(run / "checkpoint.pt"), "--metrics", str(tmp_path / "rescored.json")]
        assert main(["roma", "evaluate", *inputs, *rescored]) == 0
        assert read_json(tmp_path / "rescored.json") == read_json(ev / "metrics.json")
        if not metrics:  # a job killed once trained, its outputs removed as Snakemake does: it only scores again
            log_before, metrics_before = (run / "train_log.csv").read_text(), read_json(ev / "metrics.json")
            for done in (run / "checkpoint.pt", run / "train_log.csv", ev / "metrics.json"):
                done.unlink()
            assert main(["roma", "train", *inputs, "--out-dir", str(run), "--evaluation", str(ev)]) == 0
            assert (run / "train_log.csv").read_text() == log_before  # its seconds too: not trained again
            assert read_json(ev / "metrics.json") == metrics_before
        metrics.append(str(ev / "metrics.json"))
        logs.append(str(run / "train_log.csv"))
        if settings["model"]["kind"] == "roma":
            attention.append(str(ev / "attention.npz"))
        else:
            assert sorted(p.name for p in ev.iterdir()) == ["metrics.json"]
    assert main(["roma", "tables", "--config", CONFIG, "--metrics", *metrics, "--out-dir", str(root / "tables")]) == 0
    figures = ["--metrics", *metrics, "--train-logs", *logs, "--attention", *attention]
    assert main(["roma", "figures", "--config", CONFIG, *figures, "--out-dir", str(root / "figures")]) == 0

    expected = report_outputs(expand_study(read_study_config(CONFIG)))
    assert sorted(p.name for p in (root / "tables").iterdir()) == sorted(expected["tables"])
    assert sorted(p.name for p in (root / "figures").iterdir()) == sorted(expected["figures"])
    assert all(p.stat().st_size > 1000 for p in (root / "figures").iterdir())
    results = pd.read_csv(root / "tables" / "results.csv")
    assert len(results) == len(plan["runs"]) == 8
    assert results["smspe"].between(0, 1).all() and results["smspe_persistence"].between(0, 1).all()
    assert set(results["system"]) == {"kuramoto", "burgers"}
    smspe = pd.read_csv(root / "tables" / "smspe.csv")
    assert list(smspe["model"]) == ["deeponet", "roma"] and smspe.shape[1] == 1 + 1  # one size, one eta
    scaling = pd.read_csv(root / "tables" / "scaling.csv")
    assert scaling["exponent_se"].notna().all() and (scaling["points"] == 3).all()
    assert set(scaling["loss"]) == {"smspe", "loss_pde"}
    assert "\\begin{tabular}" in (root / "tables" / "ablations.tex").read_text()
    # a second plan leaves the settings alone (the workflow relies on their modification times)
    settings = next((root / "runs").glob("*/settings.yaml"))
    before = settings.stat().st_mtime_ns
    assert main(["roma", "expand", "--config", CONFIG, "--out-dir", str(root)]) == 0
    assert settings.stat().st_mtime_ns == before


def test_summary_prints_each_model_and_every_run(capsys):
    assert main(["roma", "summary", "--config", CONFIG]) == 0
    lines = capsys.readouterr().out.splitlines()
    counts = {line.split()[0]: int(line.split()[-1]) for line in lines[1:5]}
    assert list(counts) == ["deeponet", "deeponet_mp", "nomad_mp", "roma"] and all(c > 0 for c in counts.values())
    plan = expand_study(read_study_config(CONFIG))
    for name, entries in plan.experiments.items():
        runs = [line for line in lines if line.startswith(f"{name} ")]
        assert len(runs) == len(entries) and all(e["run"] in line for e, line in zip(entries, runs, strict=True))
        assert all(int(line.split()[-1]) > 0 for line in runs)


def test_write_settings_validates_and_completes(tmp_path, capsys):
    def write(kind, settings, out):
        return main(["roma", "write-settings", "--kind", kind, "--json", json.dumps(settings), "--out", str(out)])

    plan = expand_study(read_study_config(CONFIG))
    assert write("study", read_yaml(CONFIG)["roma"], tmp_path / "study.yaml") == 0
    written = read_yaml(tmp_path / "study.yaml")["roma"]
    assert written["train"]["steps"] == 4 and written["experiments"]["data_noise"][0]["models"] == ["deeponet", "roma"]
    assert expand_study(read_study_config(tmp_path / "study.yaml")).runs == plan.runs  # completed, same runs
    key, run = next(iter(plan.runs.items()))
    assert write("run", run, tmp_path / "run.yaml") == 0 and read_yaml(tmp_path / "run.yaml") == run
    assert write("data", {"graph": {"nodes": 500}}, tmp_path / "data.yaml") == 0
    assert read_yaml(tmp_path / "data.yaml")["kuramoto"]["K"] == 5.0
    assert write("encodings", {"laplacian": 8}, tmp_path / "enc.yaml") == 0
    assert read_yaml(tmp_path / "enc.yaml")["node2vec"] == 512

    assert write("run", {**run, "train": {**run["train"], "epochz": 3}}, tmp_path / "bad_run.yaml") == 1
    assert "unknown config key 'train.epochz'" in capsys.readouterr().err
    assert write("data", {"graph": {"nodes": 5}}, tmp_path / "bad_data.yaml") == 1
    assert "config key 'graph.nodes': 5 is invalid" in capsys.readouterr().err
    study = read_yaml(CONFIG)["roma"]
    study["experiments"]["graph_encodings"]["datasets"] = ["huge"]
    assert write("study", study, tmp_path / "bad_study.yaml") == 1
    assert "roma.experiments.graph_encodings.datasets': unknown dataset 'huge'" in capsys.readouterr().err
    assert not list(tmp_path.glob("bad_*"))


def test_bad_input_is_one_line_naming_it(tmp_path, capsys):
    bad = tmp_path / "study.yaml"
    bad.write_text("roma:\n  datasets: {a: {graph: {nodes: 100}}}\n  experiments:\n    positional: {datasets: [b]}\n")
    assert main(["roma", "expand", "--config", str(bad), "--out-dir", str(tmp_path / "out")]) == 1
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
    for verb in ("summary", "expand", "simulate", "encode", "train", "evaluate", "tables", "figures"):
        assert verb in help_text
