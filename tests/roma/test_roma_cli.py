"""The ``irno roma`` commands end to end on config/test.yaml's roma: section, in one process (the
workflow runs the same commands, one job each: tests/test_workflow.py)."""

import pandas as pd
import pytest

from irno.cli import main
from irno.files import read_json
from irno.roma.settings import SETTINGS_KINDS, read_study_config
from irno.roma.study import expand_study, reads_encodings, report_outputs, settings_files
from irno.settings import write_settings

CONFIG = "config/test.yaml"


@pytest.mark.slow
def test_study_end_to_end(tmp_path):
    root = tmp_path / "roma"
    expanded = expand_study(read_study_config(CONFIG))
    for folder, (kind, settings) in settings_files(expanded).items():  # as the workflow's settings jobs
        write_settings(SETTINGS_KINDS[kind], settings, root / folder / "settings.yaml")
    for name in expanded.datasets:
        folder = root / "data" / name
        data = str(folder / "dataset.h5")
        assert main(["roma", "simulate", "--config", str(folder / "settings.yaml"), "--out", data]) == 0
        if name in expanded.encodings:
            encodings = ["--config", str(folder / "encodings" / "settings.yaml"), "--data", data]
            assert main(["roma", "encode", *encodings, "--out", str(folder / "encodings" / "encodings.h5")]) == 0
    metrics, logs, attention = [], [], []
    for key, settings in expanded.runs.items():
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

    expected = report_outputs(expanded)
    assert sorted(p.name for p in (root / "tables").iterdir()) == sorted(expected["tables"])
    assert sorted(p.name for p in (root / "figures").iterdir()) == sorted(expected["figures"])
    assert all(p.stat().st_size > 1000 for p in (root / "figures").iterdir())
    results = pd.read_csv(root / "tables" / "results.csv")
    assert len(results) == len(expanded.runs) == 8
    assert results["smspe"].between(0, 1).all() and results["smspe_persistence"].between(0, 1).all()
    assert set(results["system"]) == {"kuramoto", "burgers"}
    smspe = pd.read_csv(root / "tables" / "smspe.csv")
    assert list(smspe["model"]) == ["deeponet", "roma"] and smspe.shape[1] == 1 + 1  # one size, one eta
    scaling = pd.read_csv(root / "tables" / "scaling.csv")
    assert scaling["exponent_se"].notna().all() and (scaling["points"] == 3).all()
    assert set(scaling["loss"]) == {"smspe", "loss_pde"}
    assert "\\begin{tabular}" in (root / "tables" / "ablations.tex").read_text()


def test_summary_prints_each_model_and_every_run(capsys):
    assert main(["roma", "summary", "--config", CONFIG]) == 0
    lines = capsys.readouterr().out.splitlines()
    counts = {line.split()[0]: int(line.split()[-1]) for line in lines[1:5]}
    assert list(counts) == ["deeponet", "deeponet_mp", "nomad_mp", "roma"] and all(c > 0 for c in counts.values())
    expanded = expand_study(read_study_config(CONFIG))
    for name, entries in expanded.experiments.items():
        runs = [line for line in lines if line.startswith(f"{name} ")]
        assert len(runs) == len(entries) and all(e["run"] in line for e, line in zip(entries, runs, strict=True))
        assert all(int(line.split()[-1]) > 0 for line in runs)


def test_bad_input_is_one_line_naming_it(tmp_path, capsys):
    bad = tmp_path / "study.yaml"
    bad.write_text("roma:\n  datasets: {a: {graph: {nodes: 100}}}\n  experiments:\n    positional: {datasets: [b]}\n")
    assert main(["roma", "summary", "--config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "irno roma: error:" in err and "unknown dataset 'b'" in err and "Traceback" not in err
    assert main(["roma", "simulate", "--config", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "x.h5")]) == 1
    assert "missing.yaml: file not found" in capsys.readouterr().err
    assert not (tmp_path / "x.h5").exists()


def test_help_lists_the_verbs(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["roma", "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for verb in ("summary", "simulate", "encode", "train", "evaluate", "tables", "figures"):
        assert verb in help_text
    assert "expand" not in help_text and "write-settings" not in help_text  # irno write-settings writes them
