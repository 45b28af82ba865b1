"""The `irno` command end to end on the tiny prepared stores and base caches: train, again, evaluate.

The outputs are checked against docs/outputs.md, the document the workflow and the report code
rely on.
"""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pandas as pd
import pytest
import torch
from eval_fixtures import DOCS, documented

from irno.cli import main
from irno.data.store import PreparedSplit
from irno.files import write_yaml
from irno.refinement.train import TRAIN_LOG_COLUMNS

SETTINGS = {
    "network": {"base_channels": 4, "depth": 2},
    "train": {"K": 2, "epochs": 2, "batch_size": 8, "device": "cpu"},
}
EXTRA = 1


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained(tiny_stores, tiny_caches, tmp_path_factory):
    """(folder, the `irno train` arguments) of a run trained from the command line."""
    root = tmp_path_factory.mktemp("cli")
    write_yaml(root / "settings.yaml", SETTINGS)
    args = ["train", "--config", str(root / "settings.yaml"), "--out", str(root / "run")]
    for split in ("train", "valid"):
        args += [f"--{split}", str(tiny_stores[split]), f"--{split}-cache", str(tiny_caches[split])]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    assert main(args) == 0
    torch.set_num_threads(threads)
    return root, args


def test_train_writes_the_documented_run(trained, tiny_stores):
    root, _ = trained
    run = root / "run"
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "last.pt", "train_log.csv"]  # no temporaries
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert set(ckpt) == {
        "model",
        "config",
        "in_channels",
        "out_channels",
        "epoch",
        "valid_mse",
        "selected",
        "training",
        "field_names",
    }
    assert ckpt["training"] == {"status": "completed"}
    assert (ckpt["in_channels"], ckpt["out_channels"]) == (55, 11) and ckpt["selected"] in ("best", "last")
    assert ckpt["config"]["network"]["base_channels"] == 4 and ckpt["config"]["train"]["K"] == 2
    assert ckpt["field_names"] == PreparedSplit(tiny_stores["train"]).field_names
    log = pd.read_csv(run / "train_log.csv")
    documented_columns = re.search(r"`train_log.csv` columns: `([^`]+)`", DOCS.read_text()).group(1)
    assert list(log.columns) == TRAIN_LOG_COLUMNS == re.split(r",\s*", documented_columns)
    assert log["epoch"].tolist() == [1, 2]
    assert np.isfinite(log[["loss", "loss_spatial", "loss_spectral", "loss_fixed_point", "valid_mse"]].to_numpy()).all()
    assert ckpt["epoch"] in (1, 2) and ckpt["valid_mse"] == pytest.approx(log["valid_mse"][ckpt["epoch"] - 1])


def test_a_second_train_on_the_same_run_is_a_no_op(trained, caplog):
    root, args = trained
    stamps = {p.name: p.stat().st_mtime_ns for p in (root / "run").iterdir()}
    with caplog.at_level(logging.INFO, logger="irno"):
        assert main(args) == 0
    assert "nothing to do" in caplog.text
    assert {p.name: p.stat().st_mtime_ns for p in (root / "run").iterdir()} == stamps


def test_evaluate_writes_the_documented_outputs(trained, tiny_stores, tiny_caches):
    root, _ = trained
    write_yaml(root / "eval.yaml", {"extra_steps": EXTRA, "batch_size": 8, "device": "cpu"})
    out = root / "eval" / "active_matter" / "FNO" / "irno"
    args = ["evaluate", "--config", str(root / "eval.yaml"), "--checkpoint", str(root / "run" / "checkpoint.pt"),
            "--store", str(tiny_stores["test"]), "--cache", str(tiny_caches["test"]), "--out", str(out),
            "--dataset", "active_matter", "--base", "FNO", "--experiment", "irno"]  # fmt: skip
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "per_step.csv", "spectra.npz"]  # no temporaries

    store = PreparedSplit(tiny_stores["test"])
    n, steps, fields = len(store), SETTINGS["train"]["K"] + EXTRA + 1, store.field_names
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(documented("metrics.json")) <= set(metrics)
    expected = {"dataset": "active_matter", "base": "FNO", "experiment": "irno", "split": "test",
                "trained_on_base": "FNO", "n_samples": n, "K": 2, "extra_steps": EXTRA,
                "field_names": fields}  # fmt: skip
    assert {key: metrics[key] for key in expected} == expected
    assert metrics["checkpoint_epoch"] == torch.load(root / "run" / "checkpoint.pt", weights_only=True)["epoch"]
    assert all(np.isfinite(metrics[key]) for key in ("vrmse_base", "vrmse_refined", "vrmse_pooled_cf_refined"))

    per_step = pd.read_csv(out / "per_step.csv")
    assert list(per_step.columns) == documented("per_step.csv") + [f"vrmse_{f}" for f in fields]
    assert per_step["step"].tolist() == list(range(steps))
    assert metrics["vrmse_refined"] == pytest.approx(per_step["vrmse"][2])
    with np.load(out / "spectra.npz", allow_pickle=False) as npz:
        assert set(npz.files) == set(documented("spectra.npz"))
        assert npz["spectral_mse"].shape == (n, steps) and npz["field_names"].tolist() == fields
        assert npz["example_truth"].shape == (len(fields), *store.grid)
