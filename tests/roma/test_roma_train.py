"""Loss, schedule, split, the resumable training loop and evaluation."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

import irno.roma.train as train_module
from irno.roma.config import TrainConfig
from irno.roma.evaluate import evaluate
from irno.roma.kuramoto import load
from irno.roma.train import lr_factor, smspe, split_nodes, train
from irno.utils import IrnoError


def test_smspe_by_hand():
    y = torch.tensor([1.0, -2.0, 0.0, 3.0])
    y_hat = torch.tensor([1.0, -1.0, 0.5, -3.0])
    # |y - y_hat| / (|y| + |y_hat| + 1e-4): 0, 1/3.0001, 0.5/0.5001, 6/6.0001
    terms = [0.0, 1 / 3.0001, 0.5 / 0.5001, 6 / 6.0001]
    assert float(smspe(y, y_hat)) == pytest.approx(np.mean(np.square(terms)), rel=1e-6)
    assert float(smspe(y, y)) == 0.0


def test_learning_rate_schedule():
    cfg = TrainConfig(epochs=2, steps_per_epoch=50, warmup_fraction=0.1, final_lr_fraction=0.01)
    factors = [lr_factor(step, cfg) for step in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)  # 10 warm-up steps
    assert np.all(np.diff(factors[:10]) > 0) and np.all(np.diff(factors[10:]) < 0)
    assert lr_factor(100, cfg) == pytest.approx(0.01)


def test_split_is_disjoint_and_deterministic(tiny_kuramoto, tiny_run):
    data = load(tiny_kuramoto)
    cfg = tiny_run(valid_subgraphs=2, test_subgraphs=3).train
    split = split_nodes(data, cfg)
    held_out = np.concatenate(split.valid + split.test)
    assert len(split.valid) == 2 and len(split.test) == 3
    assert all(s.size == cfg.subgraph_nodes for s in split.valid + split.test)
    assert np.unique(held_out).size == held_out.size
    assert np.intersect1d(held_out, split.train_nodes).size == 0
    assert held_out.size + split.train_nodes.size == data.num_nodes
    again = split_nodes(data, cfg)
    assert all(np.array_equal(a, b) for a, b in zip(split.test, again.test))
    with pytest.raises(IrnoError, match="subgraph_nodes"):
        split_nodes(data, tiny_run(subgraph_nodes=100, test_subgraphs=3).train)


def test_train_and_evaluate(tiny_kuramoto, tiny_run, tmp_path):
    cfg = tiny_run("roma")
    summary = train(cfg, tiny_kuramoto, tmp_path / "run")
    log = pd.read_csv(tmp_path / "run" / "train_log.csv")
    assert list(log["epoch"]) == [0, 1] and log["best"].any()
    assert (log["loss_entropy"] > 0).all() and log["loss_pde"].isna().all()
    metrics = evaluate(
        cfg, tiny_kuramoto, tmp_path / "run" / "checkpoint.pt", tmp_path / "metrics.json", tmp_path / "attention.npz"
    )
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    assert metrics["run_key"] == summary["run_key"] == log["run_key"][0]
    for key in ("smspe", "smspe_clean", "smspe_persistence", "smspe_coarse", "mse"):
        assert 0 < metrics[key] < 1, key
    assert metrics["pde_residual_rms"] is None and metrics["epoch"] == summary["epoch"]
    with np.load(tmp_path / "attention.npz") as att:
        assert att["fine_to_coarse"].shape == (32, 6) and att["assignment"].shape == (32, 4)
        assert np.allclose(att["assignment"].sum(1), 1.0, atol=1e-5)
    # a checkpoint only evaluates with the settings it was trained with
    with pytest.raises(IrnoError, match="other settings"):
        evaluate(
            tiny_run("roma", noise_eta=0.01), tiny_kuramoto, tmp_path / "run" / "checkpoint.pt", tmp_path / "m.json"
        )
    with pytest.raises(IrnoError, match="roma only"):
        evaluate(
            tiny_run("deeponet"),
            tiny_kuramoto,
            tmp_path / "run" / "checkpoint.pt",
            tmp_path / "m.json",
            tmp_path / "a.npz",
        )


def test_interrupted_training_resumes_identically(tiny_kuramoto, tiny_run, tmp_path, monkeypatch):
    cfg = tiny_run("deeponet_mp", epochs=3)
    train(cfg, tiny_kuramoto, tmp_path / "straight")

    real_objective = train_module.objective
    calls = {"n": 0}

    def killed_in_epoch_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == cfg.train.steps_per_epoch + 2:
            raise KeyboardInterrupt  # pre-empted in the middle of the second epoch
        return real_objective(*args, **kwargs)

    monkeypatch.setattr(train_module, "objective", killed_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tiny_kuramoto, tmp_path / "resumed")
    assert (tmp_path / "resumed" / "last.pt").exists() and not (tmp_path / "resumed" / "checkpoint.pt").exists()
    monkeypatch.setattr(train_module, "objective", real_objective)
    train(cfg, tiny_kuramoto, tmp_path / "resumed")

    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert straight["epoch"] == resumed["epoch"]
    for name, tensor in straight["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name
    logs = [pd.read_csv(tmp_path / d / "train_log.csv").drop(columns="seconds") for d in ("straight", "resumed")]
    pd.testing.assert_frame_equal(*logs)


def test_changed_settings_start_afresh(tiny_kuramoto, tiny_run, tmp_path):
    train(tiny_run("deeponet", epochs=1), tiny_kuramoto, tmp_path / "run")
    train(tiny_run("deeponet", epochs=1, lr=5e-4), tiny_kuramoto, tmp_path / "run")
    log = pd.read_csv(tmp_path / "run" / "train_log.csv")
    assert list(log["epoch"]) == [0]  # not resumed from the other run's last.pt
