"""Harness for tests marked `slurm`: Snakemake run through the real single-node test cluster.

`SlurmCluster` (the `slurm` fixture of conftest.py) runs Snakemake with the project's
profiles/slurm (polling faster) and the site's settings of a user of the test node (`SITE_ENV`),
lists a run's jobs from sacct (state, partition, account, QOS, constraint, AllocTRES, time limit),
finds the running job of a rule, cancels or requeues it. Workflow tests
take the `slurm` fixture and import the rest from here (`from slurm_harness import wait_for`).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from workflow_copy import render_profile

from irno.settings import deep_merge

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SLURM_PROFILE = REPO / "profiles" / "slurm"
WORKFLOW_PROFILE = REPO / "profiles" / "default"

# What up.sh creates; the tests pass them through the site's environment variables (irno.cluster).
PARTITION = "gpu"
CPU_PARTITION = "cpu"
ACCOUNT = "irno"
QOS = "high"
CONSTRAINT = "testnode"
GPU_MODEL = "fake"
EXTRA = "--wckey=irnotest"  # raw sbatch flags; sacct shows the WCKey

# The site's settings as a user of the test node would set them: every setting the workflow
# knows, fitted to the node (2 CPUs, ~20 GB, two fake GPUs): one CPU core per GPU, so that each job
# runs on its rule's own threads as in the local run (`--cores 2`; torch's reductions depend on
# the thread count, so only then can the results be compared byte for byte), and no job asking
# for more than 1000 MB (the cap keeps every attempt within it, as on a partition's MaxMemPerNode).
SITE_ENV = {
    "IRNO_SLURM_PARTITION": PARTITION,
    "IRNO_SLURM_CPU_PARTITION": CPU_PARTITION,
    "IRNO_SLURM_ACCOUNT": ACCOUNT,
    "IRNO_SLURM_QOS": QOS,
    "IRNO_SLURM_CONSTRAINT": CONSTRAINT,
    "IRNO_SLURM_GPU_MODEL": GPU_MODEL,
    "IRNO_SLURM_EXTRA": EXTRA,
    "IRNO_SLURM_CPUS_PER_GPU": "1",
    "IRNO_SLURM_MAX_MEM_MB": "1000",
}
# Overrides of profiles/slurm that poll quickly; everything else (retries, status command) is as
# users get it.
TEST_POLLING = {
    "slurm-init-seconds-before-status-checks": 2,
    "seconds-between-status-checks": 2,
    "latency-wait": 5,
}


def write_profile(dest: Path, workdir: Path, env: Mapping[str, str], overrides: Mapping | None = None) -> Path:
    """Write profiles/slurm as Snakemake in `workdir` with `env` reads it to `dest`/config.yaml, polling
    quickly, with `overrides` merged (a whole top-level key each, as on Snakemake's command line)."""
    config = deep_merge(deep_merge(render_profile(SLURM_PROFILE, workdir, env), TEST_POLLING), dict(overrides or {}))
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return dest


@dataclass(frozen=True)
class SlurmJob:
    """One sacct record of a job (a requeued job has one record per start)."""

    job_id: str
    rule: str  # from the job comment Snakemake sets: rule_<rule>[_wildcards_<...>]
    state: str  # COMPLETED, CANCELLED, TIMEOUT, REQUEUED, ... ("CANCELLED by 0" -> CANCELLED)
    partition: str
    account: str
    alloc_tres: str  # e.g. "billing=1,cpu=1,gres/gpu=1,mem=1000M,node=1"
    timelimit: str  # e.g. "00:02:00"
    elapsed: str
    qos: str = ""
    constraints: str = ""
    wckey: str = ""
    exit_code: str = ""  # "<status>:<signal>"

    @property
    def gpus(self) -> int:
        found = re.search(r"gres/gpu=(\d+)", self.alloc_tres)
        return int(found.group(1)) if found else 0

    @property
    def memory_mb(self) -> int:
        found = re.search(r"mem=(\d+)M", self.alloc_tres)
        return int(found.group(1)) if found else 0


@dataclass
class SnakemakeRun:
    """A finished Snakemake run: its exit status and its whole output (stdout and stderr)."""

    workdir: Path
    returncode: int
    output: str

    @property
    def run_id(self) -> str:
        """The plugin's run id, which is the SLURM job name of every job of this run."""
        run_id = _run_id(self.output)
        assert run_id, f"no SLURM run ID in the Snakemake output:\n{self.output[-3000:]}"
        return run_id

    def check(self) -> SnakemakeRun:
        assert self.returncode == 0, f"snakemake failed ({self.returncode}):\n{self.output[-6000:]}"
        return self


class RunningSnakemake:
    """Snakemake started in the background, so that a test can act on its jobs meanwhile.

    Use it as a context manager: leaving the block interrupts a Snakemake still running (it then
    cancels its SLURM jobs), so a failing test leaves nothing behind.
    """

    def __init__(self, workdir: Path, args: list[str], env: Mapping[str, str], timeout: float):
        self.workdir = workdir
        self.deadline = time.monotonic() + timeout
        self._log = open(workdir / "snakemake.out", "w+")
        # Its own session, so that stopping it reaches the whole process group.
        self.process = subprocess.Popen(
            args, cwd=workdir, env=dict(env), stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def __enter__(self) -> RunningSnakemake:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process.poll() is None:
            self._stop()
        self._log.close()

    def output(self) -> str:
        return (self.workdir / "snakemake.out").read_text()

    def running_job(self, rule: str, timeout: float = 120) -> str:
        """The SLURM id of this run's running job of `rule` (waits for it to start)."""

        def find() -> str | None:
            if self.process.poll() is not None:
                pytest.fail(f"snakemake exited ({self.process.returncode}):\n{self.output()[-6000:]}")
            run_id = _run_id(self.output())
            if run_id is None:
                return None
            for line in _run("squeue", "-h", "-t", "RUNNING", "-n", run_id, "-o", "%i|%k").splitlines():
                job_id, comment = line.split("|", 1)
                if _rule(comment) == rule:
                    return job_id
            return None

        return wait_for(find, timeout=timeout, what=f"a running job of rule {rule}")

    def wait(self) -> SnakemakeRun:
        """Wait for Snakemake to exit; when its time is up, stop it and fail."""
        try:
            self.process.wait(timeout=max(0.0, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self._stop()
            pytest.fail(f"snakemake did not finish in time; its output:\n{self.output()[-6000:]}")
        return SnakemakeRun(self.workdir, self.process.returncode, self.output())

    def _stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGINT)  # Snakemake cancels its SLURM jobs on SIGINT
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


class SlurmCluster:
    """The running test cluster, as the tests see it."""

    partition = PARTITION
    cpu_partition = CPU_PARTITION
    account = ACCOUNT
    qos = QOS
    constraint = CONSTRAINT

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for Snakemake and its jobs: this checkout's `irno`, the profile's variables."""
        env = dict(os.environ)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
        env = {k: v for k, v in env.items() if not k.startswith("IRNO_SLURM_")} | SITE_ENV
        env.update(extra)
        return env

    def start_snakemake(
        self,
        workdir: Path,
        *targets: str,
        overrides: Mapping | None = None,
        extra_args: tuple[str, ...] = (),
        env: Mapping[str, str] | None = None,
        timeout: float = 600,
    ) -> RunningSnakemake:
        """Start `snakemake --profile <profiles/slurm fitted to the test node> TARGETS` in workdir.

        The workflow profile is the project's profiles/default, as in a real run; `workdir` holds
        the Snakefile (or pass --snakefile in extra_args).
        """
        env = env or self.env()
        profile = write_profile(workdir / ".test-profile", workdir, env, overrides)
        args = [
            sys.executable, "-m", "snakemake",
            "--profile", str(profile),
            "--workflow-profile", str(WORKFLOW_PROFILE),
            *targets, *extra_args,
        ]  # fmt: skip
        return RunningSnakemake(workdir, args, env, timeout)

    def snakemake(self, workdir: Path, *targets: str, **kwargs: Any) -> SnakemakeRun:
        """Run Snakemake through the cluster and wait for it (see `start_snakemake`)."""
        with self.start_snakemake(workdir, *targets, **kwargs) as running:
            return running.wait()

    def run_interrupted(
        self,
        workdir: Path,
        target: str,
        *,
        rule: str,
        ready: Callable[[], Any],
        what: str,
        interrupt: Callable[[str], None],
        extra_args: tuple[str, ...] = (),
    ) -> tuple[str, SnakemakeRun]:
        """Build `target` through the cluster and, once `rule`'s job runs and `ready()` holds (`what`
        it waits for), `interrupt` that job (e.g. `self.cancel`, `self.requeue`); returns the
        interrupted job's id and the finished, successful run."""
        with self.start_snakemake(workdir, target, extra_args=extra_args) as running:
            job = running.running_job(rule)
            wait_for(ready, timeout=180, what=what)
            interrupt(job)
            return job, running.wait().check()

    def jobs(self, run_id: str) -> list[SlurmJob]:
        """The sacct records of one Snakemake run (every start of every job), in submission order.

        Waits until sacct lists no job as still pending or running: the accounting database
        learns of a job's end a moment after the job ends.
        """

        def query() -> list[SlurmJob]:
            out = _run(
                "sacct", "-X", "-D", "-n", "-P", "-S", "now-1days", "--name", run_id,
                "-o", "JobIDRaw,Comment,State,Partition,Account,AllocTRES,Timelimit,Elapsed,QOS,Constraints,WCKey,"
                "ExitCode",
            )  # fmt: skip
            jobs = []
            for line in out.splitlines():
                job_id, comment, state, *rest = line.split("|")
                jobs.append(SlurmJob(job_id, _rule(comment), state.split()[0], *rest))
            return jobs

        return wait_for(
            lambda: (jobs := query()) and not any(j.state in ("PENDING", "RUNNING") for j in jobs) and jobs,
            timeout=60,
            what=f"sacct to record the end of the jobs of run {run_id}",
        )

    def cancel(self, job_id: str) -> None:
        """Cancel a job, as a user or an administrator would (sacct: CANCELLED)."""
        _run("scancel", job_id)

    def requeue(self, job_id: str) -> None:
        """Put a running job back in the queue, as pre-emption with PreemptMode=REQUEUE does."""
        _run("scontrol", "requeue", job_id)


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    """Poll `condition` until it returns something truthy; return that, or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
    return result


def _run_id(snakemake_output: str) -> str | None:
    found = re.search(r"SLURM run ID: (\S+)", snakemake_output)
    return found.group(1) if found else None


def _rule(comment: str) -> str:
    """The rule from the comment the plugin gives each job: rule_<rule>[_wildcards_<values>]."""
    return comment.removeprefix("rule_").split("_wildcards_")[0]


def _run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=60).stdout
