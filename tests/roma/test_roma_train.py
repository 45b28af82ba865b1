"""Losses, schedule, split, noise, the resumable training loop and evaluation."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

import irno.roma.evaluate as evaluate_module
import irno.roma.train as train_module
from irno import IrnoError
from irno.roma.datasets import load
from irno.roma.evaluate import evaluate
from irno.roma.settings import TrainConfig
from irno.roma.train import (
    Subgraph,
    learning_rate,
    make_batch,
    read_inputs,
    sanitise_gradients,
    smspe,
    split_nodes,
    train,
)


def test_smspe_by_hand():
    y = torch.tensor([1.0, -2.0, 0.0, 3.0])
    y_hat = torch.tensor([1.0, -1.0, 0.5, -3.0])
    # (|y - y_hat| / (|y| + |y_hat| + 1e-4))^2: 0, (1/3.0001)^2, (0.5/0.5001)^2, (6/6.0001)^2
    terms = np.square([0.0, 1 / 3.0001, 0.5 / 0.5001, 6 / 6.0001])
    torch.testing.assert_close(smspe(y, y_hat), torch.tensor(terms, dtype=torch.float32))
    assert float(smspe(y, y).sum()) == 0.0


def test_learning_rate_schedule_by_hand():
    """The reference's: 0 -> lr over w = min(warmup, steps / 2), -> min_lr until steps - w, -> final_lr."""
    cfg = TrainConfig(steps=100, warmup_steps=20, lr=1e-3, min_lr=1e-5, final_lr=1e-6)
    assert learning_rate(0, cfg) == 0.0 and learning_rate(10, cfg) == pytest.approx(5e-4)
    assert learning_rate(20, cfg) == pytest.approx(1e-3)
    assert learning_rate(50, cfg) == pytest.approx(1e-3 + (1e-5 - 1e-3) * 30 / 60)
    assert learning_rate(80, cfg) == pytest.approx(1e-5)
    assert learning_rate(90, cfg) == pytest.approx(1e-5 + (1e-6 - 1e-5) / 2)
    assert learning_rate(100, cfg) == pytest.approx(1e-6)
    paper = TrainConfig()  # 50k steps: 10k of warm-up (20 %), the last 10k from 2e-7 to 2e-8
    assert learning_rate(10_000, paper) == pytest.approx(2e-5) and learning_rate(40_000, paper) == pytest.approx(2e-7)
    short = TrainConfig(steps=10, warmup_steps=10_000)  # at most half the steps warm up, no decay phase
    assert learning_rate(4, short) == pytest.approx(0.8 * short.lr) and learning_rate(5, short) == short.min_lr


def test_gradients_clipped_elementwise_and_nan_tensors_zeroed():
    model = torch.nn.Linear(2, 2)
    model.weight.grad = torch.tensor([[3.0, -0.5], [-2.0, 0.25]])
    model.bias.grad = torch.tensor([float("nan"), 1.0])
    assert sanitise_gradients(model, 1.0) == 1
    torch.testing.assert_close(model.weight.grad, torch.tensor([[1.0, -0.5], [-1.0, 0.25]]))
    torch.testing.assert_close(model.bias.grad, torch.zeros(2))  # the whole tensor, as the reference does


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
    assert all(np.array_equal(a, b) for a, b in zip(split.test, again.test, strict=True))
    with pytest.raises(IrnoError, match="subgraph_nodes"):
        split_nodes(data, tiny_run(subgraph_nodes=100, test_subgraphs=3).train)


def test_batches_and_noise_on_inputs_and_targets(tiny_kuramoto):
    data = load(tiny_kuramoto)
    nodes = np.arange(5, 15)
    sub = Subgraph.of(data, nodes, torch.device("cpu"))
    assert sub.adjacency.diagonal().eq(1).all() and sub.edges.shape[0] == 2  # self loops included
    ends = np.array([10, 20])
    clean = make_batch(data, sub, ends, 8, None, torch.device("cpu"))
    np.testing.assert_array_equal(clean.history[1, 3].numpy(), data.values[8, 13:21])  # frames e - 7 .. e
    np.testing.assert_array_equal(clean.target[1].numpy(), data.values[nodes, 21])  # frame e + 1
    np.testing.assert_array_equal(clean.time.numpy(), [10.0, 20.0])  # the absolute time of the last input
    noisy = make_batch(data, sub, ends, 8, None, torch.device("cpu"), noise_eta=0.01, rng=np.random.default_rng(0))
    ratio = (noisy.history / clean.history).log()
    assert abs(ratio.std() - 0.1) < 0.02  # x exp(sqrt(eta) xi), sqrt(0.01) = 0.1
    assert not torch.allclose(noisy.target, clean.target)  # training noise on the targets too
    inputs_only = make_batch(
        data, sub, ends, 8, None, torch.device("cpu"), noise_eta=0.01, noisy_targets=False, rng=np.random.default_rng(0)
    )
    torch.testing.assert_close(inputs_only.target, clean.target)


def test_noise_on_targets_in_training_only(tiny_kuramoto, tiny_run, tmp_path, monkeypatch):
    """Training steps see noisy targets; validation and the test score see the clean values."""
    cfg = tiny_run("deeponet", model={"learned_pde": False}, steps=2, log_every=1, checkpoint_every=2, noise_eta=0.01)
    data = load(tiny_kuramoto)
    seen = {"train": [], "valid": [], "test": []}
    real_objective, real_run = train_module.objective, evaluate_module.run

    def objective(model, sub, batch, run_cfg, seed):
        seen["train"].append(
            batch.target - torch.as_tensor(data.values[sub.nodes[None, :], batch.time.long()[:, None] + 1])
        )
        return real_objective(model, sub, batch, run_cfg, seed)

    def validate(model, valid, run_cfg):
        for sub, batch in valid:
            seen["valid"].append(
                batch.target - torch.as_tensor(data.values[sub.nodes[None, :], batch.time.long()[:, None] + 1])
            )
        return 0.5

    def run(model, sub, batch, **kwargs):
        seen["test"].append(
            batch.target - torch.as_tensor(data.values[sub.nodes[None, :], batch.time.long()[:, None] + 1])
        )
        return real_run(model, sub, batch, **kwargs)

    monkeypatch.setattr(train_module, "objective", objective)
    monkeypatch.setattr(train_module, "validate", validate)
    monkeypatch.setattr(evaluate_module, "run", run)
    inputs = read_inputs(cfg, tiny_kuramoto)
    train(cfg, inputs, tmp_path / "run")
    evaluate(cfg, inputs, tmp_path / "run" / "checkpoint.pt", tmp_path / "metrics.json")
    assert len(seen["train"]) == 2 and all(d.abs().max() > 1e-4 for d in seen["train"])
    assert seen["valid"] and all(d.abs().max() == 0 for d in seen["valid"])
    assert seen["test"] and all(d.abs().max() == 0 for d in seen["test"])


def test_train_and_evaluate(tiny_kuramoto, tiny_encodings, tiny_run, tmp_path):
    cfg = tiny_run("roma")
    inputs = read_inputs(cfg, tiny_kuramoto, tiny_encodings)
    summary = train(cfg, inputs, tmp_path / "run")
    log = pd.read_csv(tmp_path / "run" / "train_log.csv")
    assert list(log["step"]) == [2, 4] and summary["step"] == 4
    assert (log["loss_entropy"] > 0).all() and (log["loss_pde"] > 0).all() and (log["loss_gpde"] >= 0).all()
    metrics = evaluate(
        cfg, inputs, tmp_path / "run" / "checkpoint.pt", tmp_path / "metrics.json", tmp_path / "attention.npz"
    )
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    assert metrics["run_key"] == summary["run_key"] == log["run_key"][0]
    for key in ("smspe", "smspe_noisy_inputs", "smspe_persistence", "smspe_coarse", "mse", "loss_pde", "loss_link"):
        assert 0 <= metrics[key] < 1, key
    assert metrics["reference_parameters"] > metrics["parameters"] > 0
    assert metrics["encodings"] == "laplacian+node2vec" and metrics["test_windows"] == 2
    with np.load(tmp_path / "attention.npz") as att:
        assert att["fine_to_coarse"].shape == (32, 4) and att["assignment"].shape == (32, 4)
        np.testing.assert_allclose(att["assignment"].sum(0), 1.0, atol=1e-5)  # columns of S sum to 1
    # a checkpoint only evaluates with the settings it was trained with, and encodings are needed
    with pytest.raises(IrnoError, match="other settings"):
        evaluate(tiny_run("roma", noise_eta=0.01), inputs, tmp_path / "run" / "checkpoint.pt", tmp_path / "m.json")
    with pytest.raises(IrnoError, match="--encodings"):
        read_inputs(cfg, tiny_kuramoto)
    with pytest.raises(IrnoError, match="roma only"):
        evaluate(
            tiny_run("deeponet"), inputs, tmp_path / "run" / "checkpoint.pt", tmp_path / "m.json", tmp_path / "a.npz"
        )


def test_train_on_burgers_data(tiny_burgers, tiny_run, tmp_path):
    cfg = tiny_run("nomad_mp", model={"pde": "burgers"}, steps=2, log_every=1, checkpoint_every=2)
    inputs = read_inputs(cfg, tiny_burgers)
    train(cfg, inputs, tmp_path / "run")
    metrics = evaluate(cfg, inputs, tmp_path / "run" / "checkpoint.pt", tmp_path / "metrics.json")
    assert metrics["system"] == "burgers" and metrics["pde"] == "burgers" and metrics["loss_pde"] >= 0


def test_interrupted_training_resumes_identically(tiny_kuramoto, tiny_run, tmp_path, monkeypatch):
    cfg = tiny_run("deeponet_mp", model={"learned_pde": False}, steps=6, log_every=2, checkpoint_every=2)
    inputs = read_inputs(cfg, tiny_kuramoto)
    train(cfg, inputs, tmp_path / "straight")

    real_objective = train_module.objective
    calls = {"n": 0}

    def killed_after_step_three(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # pre-empted in step 4: the last resume point is after step 2
        return real_objective(*args, **kwargs)

    monkeypatch.setattr(train_module, "objective", killed_after_step_three)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, inputs, tmp_path / "resumed")
    assert (tmp_path / "resumed" / "last.pt").exists() and not (tmp_path / "resumed" / "checkpoint.pt").exists()
    assert torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)["done"] == 2  # steps done
    monkeypatch.setattr(train_module, "objective", real_objective)
    train(cfg, inputs, tmp_path / "resumed")

    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    for name, tensor in straight["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name
    logs = [pd.read_csv(tmp_path / d / "train_log.csv").drop(columns="seconds") for d in ("straight", "resumed")]
    pd.testing.assert_frame_equal(*logs)


def test_changed_settings_start_afresh(tiny_kuramoto, tiny_run, tmp_path):
    settings = dict(model={"learned_pde": False}, steps=2, log_every=2, checkpoint_every=2)
    inputs = read_inputs(tiny_run("deeponet"), tiny_kuramoto)
    train(tiny_run("deeponet", **settings), inputs, tmp_path / "run")
    train(tiny_run("deeponet", lr=5e-4, **settings), inputs, tmp_path / "run")
    log = pd.read_csv(tmp_path / "run" / "train_log.csv")
    assert list(log["step"]) == [2]  # not resumed from the other run's last.pt
