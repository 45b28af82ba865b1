"""Where `irno train` reads its stores and caches from (irno.staging): in place where they fit in the
job's memory, else copies in the staging folder where it has room on another file system, else in
place with the reason; the copies are what the training reads, and they are gone afterwards."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import pandas as pd
import pytest
import torch

import irno.refinement.ddp
import irno.refinement.train
import irno.staging
from irno.cli import main as irno_main
from irno.cli import with_option_values
from irno.config import LossConfig, NetworkConfig, PhiConfig, PhiTrainConfig
from irno.files import write_yaml
from irno.refinement.train import TRAIN_LOG_COLUMNS
from irno.settings import to_dict
from irno.staging import WorkingSet

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def train_command(tiny_stores, tiny_caches, tmp_path):
    """`irno train` on the tiny stores and caches (2 epochs, a small Phi): a function of the run
    folder and further options; returns its exit status."""
    cfg = PhiConfig(
        network=NetworkConfig(base_channels=4, depth=2),
        loss=LossConfig(fixed_point_warmup_epochs=1),
        train=PhiTrainConfig(K=2, epochs=2, batch_size=8, device="cpu"),
    )
    settings = tmp_path / "settings.yaml"
    write_yaml(settings, to_dict(cfg))
    data = ["--train", str(tiny_stores["train"]), "--train-cache", str(tiny_caches["train"])]
    data += ["--valid", str(tiny_stores["valid"]), "--valid-cache", str(tiny_caches["valid"])]

    def run(out: Path, *options: str) -> int:
        return irno_main(["train", "--config", str(settings), *data, "--out", str(out), *options])

    return run


@pytest.fixture
def stage_dir(tmp_path, monkeypatch) -> Path:
    """A staging folder taken for another file system than the data's (in tests both are in tmp)."""
    monkeypatch.setattr(irno.staging, "same_file_system", lambda a, b: False)
    folder = tmp_path / "node_local"
    folder.mkdir()
    return folder


def reads(monkeypatch) -> list[dict[str, Path]]:
    """The folders every training reads (its datasets' paths), recorded as it starts."""
    seen = []
    real = irno.refinement.train.train_phi

    def recording(cfg, train, valid, out_dir, **kwargs):
        folders = {"train store": train.split.path, "train cache": train.cache.path, "valid store": valid.split.path}
        assert all((folder / "meta.json").is_file() for folder in folders.values())  # there while it trains
        seen.append(folders)
        return real(cfg, train, valid, out_dir, **kwargs)

    monkeypatch.setattr(irno.refinement.train, "train_phi", recording)
    return seen


def same_training(a: Path, b: Path) -> None:
    """Two run folders hold bit-identical trainings (weights, losses, every logged figure but time)."""
    ca, cb = (torch.load(run / "checkpoint.pt", weights_only=True) for run in (a, b))
    assert ca["epoch"] == cb["epoch"] and ca["valid_mse"] == cb["valid_mse"]
    assert all(torch.equal(ca["model"][k], cb["model"][k]) for k in ca["model"])
    columns = [c for c in TRAIN_LOG_COLUMNS if c != "seconds"]
    pd.testing.assert_frame_equal(pd.read_csv(a / "train_log.csv")[columns], pd.read_csv(b / "train_log.csv")[columns])


def test_a_working_set_that_fits_is_read_in_place(train_command, stage_dir, tiny_stores, tmp_path, monkeypatch, caplog):
    seen = reads(monkeypatch)
    with caplog.at_level(logging.INFO, logger="irno"):
        assert train_command(tmp_path / "run", "--memory-mb", "1000000", "--stage-dir", str(stage_dir)) == 0
    assert "fits in the job's memory" in caplog.text and "reading it in place" in caplog.text
    assert seen[0]["train store"] == tiny_stores["train"]
    assert not list(stage_dir.iterdir())


def test_a_working_set_that_does_not_fit_is_staged_and_trains_as_in_place(
    train_command, stage_dir, tmp_path, monkeypatch, caplog
):
    assert train_command(tmp_path / "in_place") == 0
    seen = reads(monkeypatch)
    with caplog.at_level(logging.INFO, logger="irno"):
        assert train_command(tmp_path / "staged", "--memory-mb", "1", "--stage-dir", str(stage_dir)) == 0
    assert "does not fit in the job's memory" in caplog.text
    assert "staged the working set" in caplog.text and "training reads the copies" in caplog.text
    assert all(stage_dir in folder.parents for folder in seen[-1].values())
    assert "removed the staged copies" in caplog.text and not list(stage_dir.iterdir())
    same_training(tmp_path / "in_place", tmp_path / "staged")


def test_a_training_interrupted_on_copies_resumes_in_place_bit_identically(
    train_command, stage_dir, tmp_path, monkeypatch, caplog
):
    assert train_command(tmp_path / "straight") == 0
    real_validate, calls = irno.refinement.train.validate, []

    def interrupted(*args, **kwargs):  # in epoch 2, after its training batches
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_validate(*args, **kwargs)

    monkeypatch.setattr(irno.refinement.train, "validate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_command(tmp_path / "resumed", "--memory-mb", "1", "--stage-dir", str(stage_dir))
    assert not list(stage_dir.iterdir())  # removed on the exception
    monkeypatch.setattr(irno.refinement.train, "validate", real_validate)
    with caplog.at_level(logging.INFO, logger="irno"):
        assert train_command(tmp_path / "resumed") == 0  # the data identify themselves, not their path
    assert "resuming from epoch 1" in caplog.text and "starting afresh" not in caplog.text
    same_training(tmp_path / "straight", tmp_path / "resumed")


def test_sigterm_while_on_copies_removes_them(train_command, stage_dir, tmp_path, monkeypatch):
    def terminated(*args, **kwargs):
        assert list(stage_dir.iterdir())  # the copies exist
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(irno.refinement.train, "train_phi", terminated)
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stopped:
        train_command(tmp_path / "run", "--memory-mb", "1", "--stage-dir", str(stage_dir))
    assert stopped.value.code == 143
    assert not list(stage_dir.iterdir())
    assert signal.getsignal(signal.SIGTERM) == handler  # put back


@pytest.mark.parametrize(
    ("folder", "free", "reason"),
    [
        (None, None, "no staging folder"),
        ("missing", None, "does not exist"),
        ("node_local", 10**6, "has 0.001 GB free, the copy needs 1.0"),
        ("data", None, "is on the file system of the train store, train cache, valid store, valid cache"),
    ],
)
def test_without_a_place_to_stage_the_data_are_read_in_place_saying_why(
    train_command, tmp_path, monkeypatch, caplog, folder, free, reason
):
    options = ["--memory-mb", "1"]
    if folder == "data":  # the real check: tmp_path holds the data too
        options += ["--stage-dir", str(tmp_path)]
    elif folder is not None:
        monkeypatch.setattr(irno.staging, "same_file_system", lambda a, b: False)
        (tmp_path / "node_local").mkdir()
        options += ["--stage-dir", str(tmp_path / folder)]
    if free is not None:
        monkeypatch.setattr(irno.staging, "free_bytes", lambda path: free)
    seen = reads(monkeypatch)
    with caplog.at_level(logging.INFO, logger="irno"):
        assert train_command(tmp_path / "run", *options) == 0
    assert "does not fit in the job's memory" in caplog.text and "reading it in place" in caplog.text
    assert reason in caplog.text
    assert all(tmp_path / "node_local" not in folder.parents for folder in seen[0].values())
    assert not list(tmp_path.glob("**/irno-stage-*"))


def test_a_copy_that_fails_is_removed_and_the_data_are_read_in_place(
    train_command, stage_dir, tiny_stores, tmp_path, monkeypatch, caplog
):
    def disk_full(source, target):
        raise OSError(28, "No space left on device", str(target))

    monkeypatch.setattr(irno.staging.shutil, "copyfile", disk_full)
    seen = reads(monkeypatch)
    with caplog.at_level(logging.INFO, logger="irno"):
        assert train_command(tmp_path / "run", "--memory-mb", "1", "--stage-dir", str(stage_dir)) == 0
    assert "failed ([Errno 28] No space left on device" in caplog.text and "reading it in place" in caplog.text
    assert seen[0]["train store"] == tiny_stores["train"] and not list(stage_dir.iterdir())


def test_ddp_processes_are_started_on_the_copies(train_command, stage_dir, tmp_path, monkeypatch):
    launched = []

    def relaunch(nproc, argv):
        launched.append(argv)
        copies = [Path(argv[argv.index(option) + 1]) for option in ("--train", "--train-cache", "--valid-cache")]
        assert all(stage_dir in copy.parents and (copy / "meta.json").is_file() for copy in copies)
        return 0

    monkeypatch.setattr(irno.refinement.ddp, "relaunch_with_torchrun", relaunch)
    assert train_command(tmp_path / "run", "--nproc", "2", "--memory-mb", "1", "--stage-dir", str(stage_dir)) == 0
    assert launched and not list(stage_dir.iterdir())


def test_option_values_are_replaced_in_either_spelling():
    argv = ["train", "--train", "a", "--valid=b", "--out", "o", "--train-cache", "c"]
    values = {"--train": "A", "--valid": "B", "--train-cache": "C"}
    assert with_option_values(argv, values) == [
        "train",
        "--train",
        "A",
        "--valid=B",
        "--out",
        "o",
        "--train-cache",
        "C",
    ]


def test_the_working_set_is_every_file_of_the_folders(tiny_stores, tiny_caches):
    working = WorkingSet.of({"train store": tiny_stores["train"], "train cache": tiny_caches["train"]})
    on_disk = sum(f.stat().st_size for d in (tiny_stores["train"], tiny_caches["train"]) for f in d.iterdir())
    assert working.total == on_disk > 0
    assert working.describe().startswith(f"{on_disk / 1e9:.3g} GB (train store ")
