"""One process per run folder: the lock names its holder, stale locks are taken over, and the
lock goes when its holder ends (normally, by an exception, by SIGTERM)."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import irno.refinement.ddp
import irno.refinement.train
import irno.runlock
from irno.base.train import train_base
from irno.cli import main as irno_main
from irno.config import BaseConfig
from irno.data.store import PreparedSplit
from irno.files import write_yaml
from irno.runlock import LOCK_FILE, RunFolderLock, RunFolderLocked

HOST = socket.gethostname()
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def outside_slurm(monkeypatch):
    """Locks of this test process record no SLURM job, wherever the tests run; squeue is not asked."""
    for name in ("SLURM_JOB_ID", "SLURM_CLUSTER_NAME"):
        monkeypatch.delenv(name, raising=False)

    def no_squeue(job_id):
        raise AssertionError(f"squeue asked about job {job_id}")

    monkeypatch.setattr(irno.runlock, "slurm_job_state", no_squeue)


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _write_lock(path: Path, age_s: float = 0.0, **record) -> bytes:
    """A lock file of another holder, its heartbeat `age_s` seconds ago."""
    content = json.dumps({"host": HOST, "pid": os.getpid(), "slurm_job_id": None, "slurm_cluster": None,
                          "started": "2025-01-01T00:00:00+00:00", "token": "theirs"} | record).encode()  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    os.utime(path, (time.time() - age_s,) * 2)
    return content


def test_the_lock_names_its_holder_and_goes_after_a_normal_end_and_after_an_exception(tmp_path):
    path = tmp_path / "run" / LOCK_FILE
    with RunFolderLock(path) as lock:
        record = json.loads(path.read_text())
        assert (record["host"], record["pid"], record["token"]) == (HOST, os.getpid(), lock.record["token"])
    assert not path.exists()
    with pytest.raises(RuntimeError, match="a failed epoch"), RunFolderLock(path):
        raise RuntimeError("a failed epoch")
    assert sorted(os.listdir(tmp_path / "run")) == []  # neither the lock nor a temporary file is left


def test_a_fresh_lock_of_a_live_process_blocks_naming_it(tmp_path):
    path = tmp_path / LOCK_FILE
    _write_lock(path, host="node-b", pid=4321, slurm_job_id=None, started="2025-05-06T07:08:09+00:00")
    with pytest.raises(RunFolderLocked) as error, RunFolderLock(path):
        pass
    assert f"{tmp_path}: in use by process 4321 on node-b, since 2025-05-06T07:08:09+00:00" in str(error.value)
    assert path.exists()


def test_a_lock_of_a_dead_process_on_this_host_is_taken_over_with_a_log_line(tmp_path, caplog):
    path = tmp_path / LOCK_FILE
    dead = _dead_pid()
    _write_lock(path, pid=dead)
    with caplog.at_level(logging.WARNING, logger="irno"), RunFolderLock(path) as lock:
        assert json.loads(path.read_text())["token"] == lock.record["token"]
    assert caplog.messages == [
        f"{path}: took over the lock of process {dead} on {HOST}, since 2025-01-01T00:00:00+00:00: "
        f"process {dead} no longer runs on {HOST}"
    ]


@pytest.mark.parametrize("content", [None, b"not a lock record"])
def test_another_hosts_lock_blocks_while_its_heartbeat_is_fresh_and_is_taken_over_when_old(tmp_path, caplog, content):
    path = tmp_path / LOCK_FILE
    _write_lock(path, age_s=60, host="node-b", pid=4321)
    if content is not None:
        path.write_bytes(content)
        os.utime(path, (time.time() - 60,) * 2)
    with pytest.raises(RunFolderLocked, match="heartbeat 60 s ago"), RunFolderLock(path, stale_after_s=120):
        pass
    os.utime(path, (time.time() - 180,) * 2)
    with caplog.at_level(logging.WARNING, logger="irno"), RunFolderLock(path, stale_after_s=120):
        pass
    holder = "process 4321 on node-b" if content is None else "an unknown process (the lock file holds no record)"
    assert f"took over the lock of {holder}" in caplog.text
    assert "its heartbeat is 180 s old, more than 120 s" in caplog.text


@pytest.mark.parametrize(
    ("state", "heartbeat_age_s", "taken_over_because"),
    [
        ("RUNNING", 3600, None),  # squeue says it runs: its heartbeat does not matter
        ("SUSPENDED", 3600, None),
        ("COMPLETED", 0, "squeue shows SLURM job 777 as COMPLETED"),
        ("PENDING", 0, "squeue shows SLURM job 777 as PENDING"),  # requeued: its process is gone
        ("", 0, "squeue shows SLURM job 777 no more"),
        (None, 0, None),  # squeue cannot tell: the heartbeat decides
        (None, 3600, "its heartbeat is 3600 s old"),
    ],
)
def test_squeue_decides_for_a_holder_in_another_slurm_job(
    tmp_path, monkeypatch, caplog, state, heartbeat_age_s, taken_over_because
):
    monkeypatch.setattr(irno.runlock, "slurm_job_state", {"777": state}.get)
    path = tmp_path / LOCK_FILE
    _write_lock(path, age_s=heartbeat_age_s, host="node-b", pid=4321, slurm_job_id="777")
    if taken_over_because is None:
        with pytest.raises(RunFolderLocked, match=r"\(SLURM job 777\).*\(scancel 777\)"), RunFolderLock(path):
            pass
    else:
        with caplog.at_level(logging.WARNING, logger="irno"), RunFolderLock(path):
            pass
        assert taken_over_because in caplog.text


def test_an_earlier_start_of_this_slurm_job_on_another_node_is_taken_over(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("SLURM_JOB_ID", "777")
    path = tmp_path / LOCK_FILE
    _write_lock(path, host="node-b", pid=4321, slurm_job_id="777")
    with caplog.at_level(logging.WARNING, logger="irno"), RunFolderLock(path):
        pass
    assert "SLURM job 777 is this job, started again on another node" in caplog.text


def test_a_taker_that_moved_a_newer_lock_puts_it_back(tmp_path):
    path = tmp_path / LOCK_FILE
    judged = _write_lock(path, pid=_dead_pid())
    newer = _write_lock(path, token="a faster taker's")  # took the stale lock over first
    lock = RunFolderLock(path)
    assert lock._move_aside(judged) is False
    assert path.read_bytes() == newer and os.listdir(tmp_path) == [LOCK_FILE]
    assert lock._move_aside(newer) is True and os.listdir(tmp_path) == []


CONTENDER = """
import sys, time
from irno.runlock import RunFolderLock, RunFolderLocked
path, start = sys.argv[1], float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
try:
    with RunFolderLock(path):
        print("got it", flush=True)
        time.sleep(2)
except RunFolderLocked:
    print("locked", flush=True)
"""


def test_of_several_processes_taking_over_a_stale_lock_at_once_exactly_one_gets_it(tmp_path):
    path = tmp_path / LOCK_FILE
    _write_lock(path, pid=_dead_pid())
    start = time.time() + 3  # after every contender's imports
    contenders = [
        subprocess.Popen([sys.executable, "-c", CONTENDER, str(path), str(start)], stdout=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    outcomes = sorted(p.communicate(timeout=60)[0].strip() for p in contenders)
    assert outcomes == ["got it"] + ["locked"] * 5
    assert not path.exists()


def test_the_heartbeat_touches_the_lock_and_stops_the_holder_when_it_was_taken_over(tmp_path, caplog):
    path = tmp_path / LOCK_FILE
    with caplog.at_level(logging.WARNING, logger="irno"), pytest.raises(SystemExit) as stopped:
        with RunFolderLock(path, heartbeat_s=0.05):
            os.utime(path, (time.time() - 3600,) * 2)
            time.sleep(0.5)
            assert time.time() - path.stat().st_mtime < 60
            theirs = _write_lock(path, token="theirs")
            time.sleep(5)  # SIGTERM comes at the next heartbeat
    assert stopped.value.code == 128 + signal.SIGTERM
    assert f"{path}: the lock was taken over by another process; stopping" in caplog.messages
    assert path.read_bytes() == theirs  # not removed: it is not ours
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler it replaced is back


def test_base_training_takes_the_lock_beside_its_model_directory(tiny_stores, tmp_path):
    cfg = BaseConfig(model_class="FNO", source="train", model_kwargs={"modes1": 2, "modes2": 2}, device="cpu")
    train, valid = PreparedSplit(tiny_stores["train"]), PreparedSplit(tiny_stores["valid"])
    with (
        RunFolderLock(tmp_path / f".model.{LOCK_FILE}"),
        pytest.raises(RunFolderLocked, match=f"process {os.getpid()}"),
    ):
        train_base(cfg, train, valid, tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_a_ddp_training_on_a_run_folder_in_use_fails_before_starting_its_processes(
    tiny_stores, tiny_caches, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(
        irno.refinement.ddp, "relaunch_with_torchrun", lambda nproc, argv: pytest.fail("torchrun started")
    )
    write_yaml(tmp_path / "settings.yaml", {"train": {"device": "cpu"}})
    args = ["train", "--config", str(tmp_path / "settings.yaml"), "--out", str(tmp_path / "run"), "--nproc", "2"]
    for split in ("train", "valid"):
        args += [f"--{split}", str(tiny_stores[split]), f"--{split}-cache", str(tiny_caches[split])]
    with RunFolderLock(tmp_path / "run" / LOCK_FILE):
        assert irno_main(args) == 1
    assert f"in use by process {os.getpid()} on {HOST}" in capsys.readouterr().err


# ----------------------------------------------------------------------------- two real trainings


def _irno(*args: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "irno.cli", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.slow
def test_two_trainings_on_one_run_folder(tiny_stores, tiny_caches, tmp_path):
    """The second exits at once naming the first; SIGTERM (a SLURM time limit) ends the first and
    removes its lock; started again, training resumes."""
    train = {"K": 2, "epochs": 1000, "batch_size": 8, "device": "cpu"}  # ends by SIGTERM only
    write_yaml(tmp_path / "settings.yaml", {"network": {"base_channels": 4, "depth": 2}, "train": train})
    args = ["train", "--config", str(tmp_path / "settings.yaml"), "--out", str(tmp_path / "run")]
    for split in ("train", "valid"):
        args += [f"--{split}", str(tiny_stores[split]), f"--{split}-cache", str(tiny_caches[split])]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")} | {"OMP_NUM_THREADS": "1"}
    lock, state = tmp_path / "run" / LOCK_FILE, tmp_path / "run" / "last.pt"

    first = _irno(*args, env=env)
    deadline = time.time() + 120
    while not state.exists() and first.poll() is None and time.time() < deadline:  # one epoch done
        time.sleep(0.2)
    assert json.loads(lock.read_text())["pid"] == first.pid

    started = time.perf_counter()
    second = _irno(*args, env=env)
    _, err = second.communicate(timeout=60)
    assert second.returncode == 1 and time.perf_counter() - started < 30
    assert f"irno train: error: {tmp_path / 'run'}: in use by process {first.pid} on {HOST}, since " in err
    assert first.poll() is None  # the first trains on

    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=60)
    assert first.returncode == 128 + signal.SIGTERM and "SIGTERM received: stopping" in err
    assert not lock.exists()

    again = _irno(*args, env=env)
    for line in again.stderr:  # log lines; stops at the end of the output at the latest
        if "resuming from epoch" in line:
            break
    again.send_signal(signal.SIGTERM)
    again.communicate(timeout=60)
    assert "resuming from epoch" in line and again.returncode == 128 + signal.SIGTERM and not lock.exists()
