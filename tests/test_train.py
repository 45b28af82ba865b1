"""The trainer: learning, bit-identical resume, the non-finite policy, no-op restarts, data paths, DDP."""

from __future__ import annotations

import gc
import logging
import os
import socket
import weakref

import numpy as np
import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn as nn
from eval_fixtures import PersistenceOnStore

import irno.refinement.train
from irno import IrnoError
from irno.cli import main as irno_main
from irno.config import LossConfig, NetworkConfig, PhiConfig, PhiTrainConfig
from irno.data.batches import epoch_batches
from irno.files import write_yaml
from irno.refinement.ddp import relaunch_with_torchrun, torchrun_command
from irno.refinement.phi import load_phi
from irno.refinement.train import TRAIN_LOG_COLUMNS, train_phi
from irno.resume import FORMAT

FIELDS, T_IN, GRID = 2, 2, 16


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Synthetic(torch.utils.data.Dataset):
    """x: T_IN random frames; y: a smoothed copy of the last frame; h0 = 0.5 y (a poor base).

    Phi sees (x, h) and can learn the missing half. Indices in `poison` get a NaN target.
    """

    def __init__(self, n: int, seed: int, with_h0: bool = True):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, T_IN * FIELDS, GRID, GRID, generator=g)  # (N, T*F, H, W)
        last = self.x[:, -FIELDS:]
        self.y = (last + torch.roll(last, 1, dims=-1) + torch.roll(last, 1, dims=-2)) / 3  # (N, F, H, W)
        self.h0 = 0.5 * self.y if with_h0 else None
        self.poison: set[int] = set()

    def __len__(self) -> int:
        return len(self.x)

    def _y(self, idx: torch.Tensor) -> torch.Tensor:
        y = self.y[idx].clone()
        bad = torch.tensor([int(i) in self.poison for i in idx.reshape(-1)]).reshape(idx.shape)
        y[bad] = float("nan")
        return y

    def __getitem__(self, i: int) -> dict:
        item = {"x": self.x[i], "y": self._y(torch.tensor(i))}
        if self.h0 is not None:
            item["h0"] = self.h0[i]
        return item


class SyntheticBatched(Synthetic):
    """The same data with the contract's vectorised `batch(indices)`."""

    def batch(self, indices):
        idx = torch.as_tensor(np.asarray(indices))
        if self.h0 is None:
            return self.x[idx], self._y(idx)
        return self.x[idx], self.h0[idx], self._y(idx)


def _cfg(phi: NetworkConfig | None = None, **train) -> PhiConfig:
    settings = dict(K=2, epochs=3, batch_size=4, lr=3e-3, device="cpu") | train
    return PhiConfig(
        network=phi or NetworkConfig(base_channels=4, depth=2),
        loss=LossConfig(fixed_point_warmup_epochs=2),
        train=PhiTrainConfig(**settings),
    )


def _data(cls=SyntheticBatched, **kw):
    return cls(24, seed=1, **kw), cls(8, seed=2, **kw)


def _final_weights(run_dir) -> dict:
    return torch.load(run_dir / "last.pt", weights_only=True)["model"]


def _assert_same_weights(a: dict, b: dict, atol: float = 0.0):
    assert a.keys() == b.keys()
    for k in a:
        if atol == 0.0:
            assert torch.equal(a[k], b[k]), k
        else:
            torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0, msg=k)


def test_shuffling_is_a_function_of_seed_and_epoch():
    a = epoch_batches(10, 4, seed=42, epoch=3)
    assert [len(b) for b in a] == [4, 4, 2]
    assert sorted(np.concatenate(a).tolist()) == list(range(10))
    assert all(np.array_equal(x, y) for x, y in zip(a, epoch_batches(10, 4, seed=42, epoch=3)))
    assert not all(np.array_equal(x, y) for x, y in zip(a, epoch_batches(10, 4, seed=42, epoch=4)))


def test_training_reduces_the_loss_and_writes_the_run(tmp_path):
    train, valid = _data()
    # BatchNorm: a LayerNorm over the 8 channels of a pixel hides the amplitudes Phi must learn here.
    cfg = _cfg(NetworkConfig(base_channels=8, depth=2, norm="batch"), epochs=4, lr=1e-2)
    history = train_phi(cfg, train, valid, tmp_path)
    losses = [row["loss_spatial"] for row in history]
    assert losses[-1] < 0.6 * losses[0]
    assert all(later < earlier for earlier, later in zip(losses, losses[1:]))
    assert history[-1]["valid_mse"] < 0.6 * history[0]["valid_mse"]
    assert [row["beta_fixed_point"] for row in history] == pytest.approx([0.005, 0.01, 0.01, 0.01])  # 2-epoch warm-up
    assert history[1]["lr"] < history[0]["lr"]  # cosine schedule, stepped per epoch

    log = pd.read_csv(tmp_path / "train_log.csv")
    assert list(log.columns) == TRAIN_LOG_COLUMNS
    assert log["epoch"].tolist() == [1, 2, 3, 4]
    assert log["skipped_batches"].sum() == 0 and log["outlier_pct"].max() == 0

    phi, loaded_cfg, ckpt = load_phi(tmp_path / "checkpoint.pt")
    assert loaded_cfg == cfg and phi(torch.randn(1, T_IN * FIELDS + FIELDS, GRID, GRID)).shape == (
        1,
        FIELDS,
        GRID,
        GRID,
    )
    assert (ckpt["in_channels"], ckpt["out_channels"], ckpt["selected"]) == (T_IN * FIELDS + FIELDS, FIELDS, "best")
    best = log.loc[log["valid_mse"].idxmin()]
    assert ckpt["epoch"] == best["epoch"] and ckpt["valid_mse"] == pytest.approx(best["valid_mse"])
    assert log["best"].sum() >= 1 and bool(log.loc[log["epoch"] == ckpt["epoch"], "best"].item())


def test_resume_after_interruption_is_bit_identical(tmp_path, monkeypatch, caplog):
    train, valid = _data()
    train_phi(_cfg(epochs=4), train, valid, tmp_path / "straight")

    # Interrupt the second run during epoch 3 (after its training batches, before its files);
    # two epochs after the restart check that the schedule, not only the weights, was restored.
    real_validate, calls = irno.refinement.train.validate, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_validate(*args, **kwargs)

    monkeypatch.setattr(irno.refinement.train, "validate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_phi(_cfg(epochs=4), train, valid, tmp_path / "resumed")
    assert torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)["done"] == 2
    assert len(pd.read_csv(tmp_path / "resumed" / "train_log.csv")) == 2
    monkeypatch.setattr(irno.refinement.train, "validate", real_validate)

    with caplog.at_level(logging.INFO, logger="irno"):
        history = train_phi(_cfg(epochs=4), train, valid, tmp_path / "resumed")
    assert "resuming from epoch 2" in caplog.text
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    _assert_same_weights(_final_weights(tmp_path / "straight"), _final_weights(tmp_path / "resumed"))
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] and a["valid_mse"] == b["valid_mse"]
    _assert_same_weights(a["model"], b["model"])
    cols = [c for c in TRAIN_LOG_COLUMNS if c != "seconds"]
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "straight" / "train_log.csv")[cols],
        pd.read_csv(tmp_path / "resumed" / "train_log.csv")[cols],
    )


def test_finished_run_restarts_as_a_no_op_and_a_changed_config_starts_afresh(tmp_path, caplog):
    train, valid = _data()
    train_phi(_cfg(epochs=2), train, valid, tmp_path)
    files = ("last.pt", "checkpoint.pt", "train_log.csv")
    stamps = {f: (tmp_path / f).stat().st_mtime_ns for f in files}
    with caplog.at_level(logging.INFO, logger="irno"):
        history = train_phi(_cfg(epochs=2), train, valid, tmp_path)
    assert "nothing to do" in caplog.text
    assert len(history) == 2
    assert {f: (tmp_path / f).stat().st_mtime_ns for f in files} == stamps

    # A deleted output of a finished run comes back from last.pt without training.
    (tmp_path / "checkpoint.pt").unlink()
    train_phi(_cfg(epochs=2), train, valid, tmp_path)
    assert (tmp_path / "checkpoint.pt").is_file() and (tmp_path / "last.pt").stat().st_mtime_ns == stamps["last.pt"]

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="irno"):
        history = train_phi(_cfg(epochs=2, lr=1e-3), train, valid, tmp_path)
    assert "starting afresh" in caplog.text and "train.lr: 0.003 -> 0.001" in caplog.text
    assert [row["lr"] for row in history][0] == 1e-3


def test_a_resume_state_of_another_format_is_ignored_naming_both_formats(tmp_path, caplog):
    """A last.pt of format 1 (an older irno: "epoch" where this one reads "done") retrains from epoch 1."""
    train, valid = _data()
    cfg = _cfg(epochs=2)
    train_phi(cfg, train, valid, tmp_path)
    old = torch.load(tmp_path / "last.pt", weights_only=True)
    old["format"], old["epoch"] = 1, old.pop("done")
    old["training"] = {"status": "running"}
    torch.save(old, tmp_path / "last.pt")
    (tmp_path / "checkpoint.pt").unlink()

    with caplog.at_level(logging.INFO, logger="irno"):
        history = train_phi(cfg, train, valid, tmp_path)
    assert f"resume state of format 1, written by another version of irno (this one reads format {FORMAT})" in (
        caplog.text
    )
    assert "starting afresh" in caplog.text and "resuming" not in caplog.text
    assert [row["epoch"] for row in history] == [1, 2]
    assert torch.load(tmp_path / "last.pt", weights_only=True)["format"] == FORMAT


def test_non_finite_batches_are_skipped_and_counted(tmp_path):
    train, valid = _data()
    train.poison = {0, 1}  # at most two of the six batches per epoch
    history = train_phi(_cfg(epochs=2, max_skipped_fraction=0.34), train, valid, tmp_path)
    for row in history:
        batches_with_poison = sum(bool({0, 1} & set(b.tolist())) for b in epoch_batches(24, 4, 42, row["epoch"]))
        assert row["skipped_batches"] == batches_with_poison
        assert np.isfinite(row["loss"])
    assert all(torch.isfinite(v).all() for v in _final_weights(tmp_path).values())


def test_too_many_non_finite_batches_end_the_training_as_diverged_keeping_the_last_good_epoch(
    tmp_path, monkeypatch, caplog
):
    train, valid = _data()
    real_validate = irno.refinement.train.validate

    def poison_after_epoch_1(*args, **kwargs):
        train.poison = {0}  # from epoch 2 on, one of six batches: 17 % > 10 %
        return real_validate(*args, **kwargs)

    monkeypatch.setattr(irno.refinement.train, "validate", poison_after_epoch_1)
    history = train_phi(_cfg(epochs=3), train, valid, tmp_path)  # no error: a diverged training is a result
    assert [row["epoch"] for row in history] == [1]
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["done"] == 1 and state["training"]["status"] == "diverged" and state["training"]["epoch"] == 2
    assert "epoch 2: 1 of 6 batches had a non-finite loss" in state["training"]["message"]
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["selected"], ckpt["training"]) == (1, "best", state["training"])
    _assert_same_weights(ckpt["model"], state["model"])  # the last good epoch was the best
    assert len(pd.read_csv(tmp_path / "train_log.csv")) == 1

    # The run is over: started again, it trains nothing.
    monkeypatch.setattr(irno.refinement.train, "validate", real_validate)
    train.poison = set()
    stamp = (tmp_path / "last.pt").stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="irno"):
        assert len(train_phi(_cfg(epochs=3), train, valid, tmp_path)) == 1
    assert "training diverged" in caplog.text and "nothing to do" in caplog.text
    assert (tmp_path / "last.pt").stat().st_mtime_ns == stamp


def test_a_diverging_training_ends_with_the_initial_phi_and_evaluates(tiny_stores, tmp_path):
    from irno.config import EvalConfig
    from irno.data.store import PreparedSplit
    from irno.refinement.evaluate import evaluate_checkpoint

    train, valid, test = (PersistenceOnStore(PreparedSplit(tiny_stores[s])) for s in ("train", "valid", "test"))
    history = train_phi(_cfg(epochs=2, batch_size=8, lr=1e6, alpha=5.0), train, valid, tmp_path / "run")
    assert history == []  # not one epoch stayed finite
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["selected"], ckpt["valid_mse"]) == (0, "initial", None)
    assert ckpt["training"]["status"] == "diverged" and ckpt["training"]["epoch"] == 1
    assert list(pd.read_csv(tmp_path / "run" / "train_log.csv").columns) == TRAIN_LOG_COLUMNS

    metrics = evaluate_checkpoint(
        EvalConfig(extra_steps=1, device="cpu"), tmp_path / "run" / "checkpoint.pt", test, tmp_path / "eval",
        dataset_name="active_matter", base="persistence", experiment="diverging",
    )  # fmt: skip
    assert (metrics["training_status"], metrics["training_diverged_epoch"]) == ("diverged", 1)
    assert "non-finite loss" in metrics["training_message"] and np.isfinite(metrics["vrmse_refined"])


def test_an_epoch_keeps_no_batch_graph_alive(tmp_path, monkeypatch):
    # The epoch's running sums must hold numbers, not autograd graphs: a graph kept alive per
    # batch makes an epoch's memory grow with the dataset (benchmarks/memory.py caught one).
    # Every batch's loss terms get a fresh leaf; it lives exactly as long as their graph.
    markers, alive = [], []
    real_forward, real_validate = irno.refinement.train.Objective.forward, irno.refinement.train.validate

    def forward(self, *args):
        total, terms = real_forward(self, *args)
        marker = torch.zeros((), requires_grad=True)
        markers.append(weakref.ref(marker))
        return total + 0 * marker, {name: term + 0 * marker for name, term in terms.items()}

    def validate(*args, **kwargs):  # at the end of the epoch's batches
        gc.collect()
        alive.append(sum(ref() is not None for ref in markers[:-1]))  # the last batch's are still in scope
        return real_validate(*args, **kwargs)

    monkeypatch.setattr(irno.refinement.train.Objective, "forward", forward)
    monkeypatch.setattr(irno.refinement.train, "validate", validate)
    train_phi(_cfg(epochs=1), *_data(), tmp_path)
    assert len(markers) == 6 and alive == [0]


def test_item_and_batch_paths_and_on_the_fly_base_train_identically(tmp_path):
    class HalfSmoothedLast(nn.Module):
        """A 'base' computing exactly the synthetic h0 from x."""

        def forward(self, x):
            last = x[:, -FIELDS:]
            return 0.5 * ((last + torch.roll(last, 1, dims=-1) + torch.roll(last, 1, dims=-2)) / 3)

    cfg = _cfg(epochs=1)
    train_phi(cfg, *_data(SyntheticBatched), tmp_path / "batched")
    train_phi(cfg, *_data(Synthetic), tmp_path / "items")  # DataLoader with per-item collation
    train_phi(cfg, *_data(SyntheticBatched, with_h0=False), tmp_path / "base", base=HalfSmoothedLast())
    reference = _final_weights(tmp_path / "batched")
    _assert_same_weights(reference, _final_weights(tmp_path / "items"))
    _assert_same_weights(reference, _final_weights(tmp_path / "base"))


def test_data_without_h0_needs_a_base(tmp_path):
    with pytest.raises(IrnoError, match="no 'h0'"):
        train_phi(_cfg(epochs=1), *_data(with_h0=False), tmp_path)


def _ddp_worker(rank: int, world: int, port: int, cfg: PhiConfig, out_dir) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    train_phi(cfg, *_data(), out_dir)


@pytest.mark.slow
def test_two_gloo_processes_match_one(tmp_path):
    # batch 3 over 2 processes: shares of 2 and 1 samples, weighted back to the global batch's mean
    cfg = _cfg(epochs=2, batch_size=3)
    train_phi(cfg, *_data(), tmp_path / "one")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, cfg, tmp_path / "two"), nprocs=2)
    one = pd.read_csv(tmp_path / "one" / "train_log.csv")
    two = pd.read_csv(tmp_path / "two" / "train_log.csv")
    for column in ("loss", "loss_spatial", "loss_spectral", "loss_fixed_point", "valid_mse"):
        np.testing.assert_allclose(two[column], one[column], rtol=1e-5, err_msg=column)
    _assert_same_weights(_final_weights(tmp_path / "one"), _final_weights(tmp_path / "two"), atol=1e-5)


def test_cli_train_help_and_argument_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        irno_main(["train", "--help"])
    assert exit_info.value.code == 0
    assert "--train-cache" in capsys.readouterr().out

    settings = tmp_path / "settings.yaml"
    write_yaml(settings, {"train": {"K": 2}})
    paths = ["--train", "tr", "--valid", "va", "--out", str(tmp_path / "run")]
    assert irno_main(["train", "--config", str(settings), *paths, "--train-cache", "c"]) == 1
    assert "--train-cache and --valid-cache, or --base-model and --base-config" in capsys.readouterr().err

    write_yaml(settings, {"train": {"K": 2, "lr_max": 1.0}})
    assert irno_main(["train", "--config", str(settings), *paths, "--train-cache", "a", "--valid-cache", "b"]) == 1
    err = capsys.readouterr().err
    assert str(settings) in err and "train.lr_max" in err


@pytest.mark.parametrize("nproc_args", [["--nproc", "2"], ["--nproc=2"]])
def test_torchrun_command_passes_the_irno_arguments_through(nproc_args):
    from torch.distributed.run import parse_args

    argv = ["train", "--config", "s.yaml", *nproc_args, "--train", "t", "--out", "o"]
    cmd = torchrun_command(2, argv)
    assert cmd[1:3] == ["-m", "torch.distributed.run"]
    parsed = parse_args(cmd[3:])  # torchrun's own parser, as the launched command meets it
    assert (parsed.nproc_per_node, parsed.module, parsed.training_script) == ("2", True, "irno.cli")
    assert parsed.training_script_args == ["train", "--config", "s.yaml", "--train", "t", "--out", "o"]


@pytest.mark.parametrize(("job_threads", "each"), [("16", "8"), ("3", "1"), ("1", "1"), (None, None)])
def test_torchrun_processes_share_the_jobs_threads(monkeypatch, job_threads, each):
    launched = []
    monkeypatch.setattr(irno.refinement.ddp.subprocess, "call", lambda cmd, env: launched.append(env) or 0)
    if job_threads is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", job_threads)
    assert relaunch_with_torchrun(2, ["train", "--nproc", "2"]) == 0
    assert launched[0].get("OMP_NUM_THREADS") == each  # unset: torchrun's default (1 per process)


def test_train_on_prepared_stores_then_evaluate(tiny_stores, tmp_path):
    from irno.config import EvalConfig
    from irno.data.store import PreparedSplit
    from irno.refinement.evaluate import evaluate_checkpoint

    train, valid, test = (PersistenceOnStore(PreparedSplit(tiny_stores[s])) for s in ("train", "valid", "test"))
    cfg = _cfg(epochs=2, batch_size=8)
    history = train_phi(cfg, train, valid, tmp_path / "run")
    assert len(history) == 2 and all(np.isfinite(row["loss"]) for row in history)
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ckpt["field_names"] == train.field_names and ckpt["in_channels"] == 55

    metrics = evaluate_checkpoint(
        EvalConfig(extra_steps=1, device="cpu"), tmp_path / "run" / "checkpoint.pt", test, tmp_path / "eval",
        dataset_name="active_matter", base="persistence", experiment="tiny",
    )  # fmt: skip
    assert (metrics["K"], metrics["checkpoint_epoch"]) == (2, ckpt["epoch"])
    assert np.isfinite(metrics["vrmse_refined"])
