"""One process per run folder: a lock file that names its holder, across the nodes of a cluster.

When the head Snakemake of a SLURM run dies and is started again while its jobs still run, it
submits the unfinished trainings again, and two processes would write the same ``last.pt``. Every
trainer therefore works in its run folder only while it holds the folder's lock
(``with RunFolderLock(run_dir / LOCK_FILE): ...``); a second process raises `RunFolderLocked` at
once, naming the holder. The lock is taken by an atomic hard link (on a local disk as on NFS,
Lustre or GPFS), kept alive by a heartbeat thread, taken over when its holder is gone, and removed
when the block ends, also on an exception and on SIGTERM.

Detail (the mechanism and its limits): docs/slurm.md#one-process-per-run-folder
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from irno import IrnoError, log

LOCK_FILE = "run.lock"
HEARTBEAT_S = 30.0
# Long against the heartbeat: NFS caches a file's attributes for up to a minute, and clocks of
# nodes differ by seconds; only a holder on another node without a SLURM job is judged by it.
STALE_AFTER_S = 600.0
# squeue states in which a job's processes may still be running (or will run on: SUSPENDED).
SLURM_LIVE_STATES = {"RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "STOPPED", "SIGNALING", "RESIZING"}


class RunFolderLocked(IrnoError):
    """Another process, alive as far as can be told, holds the run folder's lock."""


def describe(holder: dict) -> str:
    """'process 123 on node7 (SLURM job 456), since 2025-01-01T10:00:00+00:00' from a lock record."""
    if not holder:
        return "an unknown process (the lock file holds no record)"
    job = f" (SLURM job {holder['slurm_job_id']})" if holder.get("slurm_job_id") else ""
    return f"process {holder.get('pid')} on {holder.get('host')}{job}, since {holder.get('started')}"


def pid_alive(pid) -> bool:
    """Whether a process `pid` exists on this host (a zombie counts as alive until it is reaped)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def slurm_job_state(job_id: str) -> str | None:
    """The job's state as squeue shows it (e.g. "RUNNING"); "" when squeue no longer knows the job;
    None when squeue cannot tell (not installed, no answer from the controller)."""
    try:
        result = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode == 0:
        states = result.stdout.split()
        return states[0] if states else ""
    return "" if "Invalid job id" in result.stderr else None


def _read(path: Path) -> tuple[bytes, float] | None:
    """(content, seconds since the last heartbeat) of a lock file; None when there is none."""
    try:
        # Opening revalidates the attributes NFS caches (close-to-open consistency): a fresh mtime.
        with open(path, "rb") as f:
            return f.read(), max(0.0, time.time() - os.fstat(f.fileno()).st_mtime)
    except FileNotFoundError:
        return None


def _parse(content: bytes) -> dict:
    """A lock record; {} for a file that is not one (judged by its heartbeat alone)."""
    try:
        record = json.loads(content)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _exit_on_sigterm(signum, frame):
    """SIGTERM as SystemExit: `with` blocks and ``finally`` clauses run, the lock file goes."""
    log.warning("SIGTERM received: stopping")
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def sigterm_exits() -> Iterator[None]:
    """Within the block, SIGTERM raises SystemExit(143) in the main thread (`_exit_on_sigterm`), for
    work that must clean up after itself (irno.staging's copies) before a lock is taken."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
        yield
        return
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


class RunFolderLock:
    """Hold the lock file `path` (`LOCK_FILE` in a run folder) for the duration of a ``with`` block.

    Entering raises `RunFolderLocked` when another process, alive as far as can be told, holds
    it, and takes over a stale lock with a log line (docs/slurm.md). `heartbeat_s` and
    `stale_after_s` are for tests; every trainer uses the defaults.
    """

    def __init__(
        self, path: str | os.PathLike, *, heartbeat_s: float = HEARTBEAT_S, stale_after_s: float = STALE_AFTER_S
    ):
        self.path = Path(path)
        self.heartbeat_s, self.stale_after_s = heartbeat_s, stale_after_s
        self.record = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "slurm_cluster": os.environ.get("SLURM_CLUSTER_NAME"),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
            "token": uuid.uuid4().hex,
        }
        self.content = (json.dumps(self.record, indent=1) + "\n").encode()
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._previous_sigterm = None  # the SIGTERM handler this lock replaced, while it is replaced

    def __enter__(self) -> RunFolderLock:
        self._acquire()
        self._heartbeat = threading.Thread(target=self._beat, name=f"heartbeat {self.path}", daemon=True)
        self._heartbeat.start()
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            self._previous_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm) or signal.SIG_DFL
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._heartbeat.join()
        with contextlib.suppress(FileNotFoundError):
            if self.path.read_bytes() == self.content:  # still ours (see `_beat`)
                self.path.unlink()
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None

    # ------------------------------------------------------------------------- taking the lock

    def _acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        taken_over = None  # (old holder, why it is gone) once a stale lock was moved away
        for _ in range(3):  # a try links the lock, or judges its holder (and may move a stale one away)
            if self._link():
                if taken_over:
                    log.warning("%s: took over the lock of %s: %s", self.path, describe(taken_over[0]), taken_over[1])
                return
            found = _read(self.path)
            if found is None:
                continue  # released since: try again
            content, age = found
            holder = _parse(content)
            reason = self._why_gone(holder, age)
            if reason is None:
                hint = f" (scancel {holder['slurm_job_id']})" if holder.get("slurm_job_id") else ""
                raise RunFolderLocked(
                    f"{self.path.parent}: in use by {describe(holder)}, heartbeat {age:.0f} s ago (lock file "
                    f"{self.path}); two processes must not write one run. Wait for it to end or stop it{hint}, "
                    f"then run again; if that process is gone, delete {self.path}"
                )
            if self._move_aside(content):
                taken_over = (holder, reason)
        raise RunFolderLocked(f"{self.path}: other processes kept taking this lock at the same time; run again")

    def _link(self) -> bool:
        """Create the lock file, complete, unless one exists; whether it was created."""
        tmp = self.path.with_name(f".{self.path.name}.{self.record['token']}.tmp")
        tmp.write_bytes(self.content)
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            # On NFS a link whose reply was lost is sent again and fails although it succeeded:
            # then the temporary file has two links.
            return os.stat(tmp).st_nlink == 2
        finally:
            tmp.unlink()

    def _move_aside(self, judged: bytes) -> bool:
        """Rename the lock judged stale (content `judged`) out of the way; False if another process was first."""
        aside = self.path.with_name(f".{self.path.name}.{self.record['token']}.stale")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False  # another process moved it first
        try:
            if aside.read_bytes() == judged:
                return True
            # Another process took the stale lock over first and this moved its new lock: put it
            # back (a link, which never replaces a lock a third process may have made meanwhile).
            with contextlib.suppress(FileExistsError):
                os.link(aside, self.path)
            return False
        finally:
            aside.unlink()

    def _why_gone(self, holder: dict, heartbeat_age: float) -> str | None:
        """Why the holder of a lock counts as gone; None while it may be alive."""
        here = holder.get("host") == self.record["host"]
        if here and not pid_alive(holder.get("pid")):
            return f"process {holder.get('pid')} no longer runs on {holder.get('host')}"
        job = holder.get("slurm_job_id")
        if job and holder.get("slurm_cluster") == self.record["slurm_cluster"]:
            if job == self.record["slurm_job_id"]:
                if not here:  # this job, requeued to another node: its earlier start ended with its node
                    return f"SLURM job {job} is this job, started again on another node"
            else:
                state = slurm_job_state(job)
                if state in SLURM_LIVE_STATES:
                    return None
                if state is not None:
                    return f"squeue shows SLURM job {job} {'as ' + state if state else 'no more'}"
        if heartbeat_age > self.stale_after_s:
            return f"its heartbeat is {heartbeat_age:.0f} s old, more than {self.stale_after_s:.0f} s"
        return None

    # ------------------------------------------------------------------------- holding it

    def _beat(self) -> None:
        """Touch the lock file every `heartbeat_s` seconds while it is ours."""
        while not self._stop.wait(self.heartbeat_s):
            try:
                if self.path.read_bytes() != self.content:
                    # Another process took the lock over (this one was frozen for longer than
                    # stale_after_s, say) and writes the run now: stop rather than write beside it.
                    log.error("%s: the lock was taken over by another process; stopping", self.path)
                    os.kill(os.getpid(), signal.SIGTERM)
                    return
                os.utime(self.path)
            except FileNotFoundError:
                continue  # moved aside for a moment by a process taking over a stale lock; it comes back
            except OSError as e:  # a passing file-system fault: the next beat tries again
                log.warning("%s: heartbeat failed (%s)", self.path, e)
