"""The real workflow through the real test cluster: config/test.yaml with profiles/slurm, as a
researcher runs it (`snakemake --profile slurm all --configfile ...`), fitted to the test node.

- Every non-local rule runs as a SLURM job, GPU rules with a GPU, and the results equal the
  local run's (the `test_run` fixture of tests/conftest.py) exactly.
- A training job cancelled or requeued mid-run (pre-emption) starts again, resumes from its last
  epoch's resume state and ends exactly as an uninterrupted training does.
- A training job killed at its time limit comes back with more time and resumes.
- A training job with two GPUs runs as two DDP processes and learns what one process learns.

The full run comes first (`slurm_test_run`); every other test works in a copy of its folder, so
that only the jobs under test run. The interrupted trainings are sized in seconds of this
machine's epochs, so that they are caught mid-run whatever its speed.
"""

from __future__ import annotations

import math
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from slurm_harness import RunningSnakemake, SlurmCluster, SnakemakeRun
from workflow_copy import copy_workflow, gpu_rules, snakemake

pytestmark = pytest.mark.slurm

CONFIG = "config/test.yaml"
# The jobs of config/test.yaml that go through sbatch; which of them get a GPU the rules say.
SUBMITTED_RULES = {
    "simulate_dataset", "prepare_split", "train_base", "check_base", "cache_base_predictions", "train_refiner",
    "evaluate", "roma_simulate", "roma_encode", "roma_train",
}  # fmt: skip
# The jobs of config/test.yaml that run beside Snakemake: the workflow's localrules and `all`.
LOCAL_RULES = {
    "simulate_settings", "base_settings", "refiner_settings", "eval_settings", "plan_settings",
    "tables", "figures", "report", "roma_study", "roma_settings", "roma_report", "all",
}  # fmt: skip
# The training the tests below interrupt, and its log.
RUN = "results/test/runs/active_matter/FNO/irno"
TRAINING = f"{RUN}/checkpoint.pt"
TRAINING_LOG = "results/test/logs/train_refiner/active_matter_FNO_irno.log"
# How long the interrupted trainings train, in epochs of the speed this machine showed: long
# enough to be caught after the first epoch and well before the last; for the time-out, more than
# the first attempt can do even if the estimate is twice too long (SLURM ends a job 60 to 90 s
# after its start, and start-up takes 10 to 20 s of that). A slower machine than estimated makes
# the training time out more than once, which the time-out test allows.
INTERRUPTED_SECONDS = 15
TIMING_OUT_SECONDS = 150


@pytest.fixture(scope="module")
def slurm_test_run(slurm: SlurmCluster, tmp_path_factory: pytest.TempPathFactory) -> SnakemakeRun:
    """`all` of config/test.yaml through the test cluster, in a temporary copy of the workflow."""
    workdir = copy_workflow(tmp_path_factory.mktemp("slurm_run"))
    return slurm.snakemake(workdir, "all", extra_args=("--configfile", CONFIG), timeout=1500).check()


def epochs_lasting(train_logs: list[Path], seconds: float) -> int:
    """Epochs of config/test.yaml's training that take about `seconds` here, as these logs measured."""
    logs = pd.concat(pd.read_csv(p) for p in train_logs)
    return max(10, math.ceil(seconds / logs["seconds"].median()))


@pytest.fixture(scope="module")
def epochs(slurm_test_run: SnakemakeRun) -> int:
    """Epochs of the trainings cancelled or requeued below, from the full run's trainings (which ran
    side by side with other jobs, so slower than one alone: a safe over-estimate here)."""
    return epochs_lasting(
        list((slurm_test_run.workdir / "results/test/runs").glob("*/*/*/train_log.csv")), INTERRUPTED_SECONDS
    )


def copy_run(run: SnakemakeRun, dest: Path) -> Path:
    """A copy of a finished run's folder (its results and Snakemake's records of them)."""
    shutil.copytree(run.workdir, dest, symlinks=True, ignore=shutil.ignore_patterns("snakemake.out", ".test-profile"))
    return dest


def longer_training(workdir: Path, epochs: int) -> tuple[str, ...]:
    """Snakemake arguments for config/test.yaml with trainings of `epochs` epochs.

    The run folder of the training under test goes first, resume state included (what README.md
    says to do to retrain), so a last.pt found there is this training's.
    """
    config = yaml.safe_load((workdir / CONFIG).read_text())
    config["refiner"]["train"]["epochs"] = epochs
    (workdir / "longer.yaml").write_text(yaml.safe_dump(config))
    shutil.rmtree(workdir / RUN)
    return ("--configfile", "longer.yaml")


def resumed_from(workdir: Path) -> int:
    """The epoch the last attempt of the training under test resumed from (its log says)."""
    found = re.search(r"resuming from epoch (\d+) of (\d+)", (workdir / TRAINING_LOG).read_text())
    assert found, f"the last attempt did not resume:\n{(workdir / TRAINING_LOG).read_text()[-3000:]}"
    return int(found.group(1))


def assert_same_training(run_dir: Path, reference_dir: Path) -> None:
    """The same log (all but the timings) and the same selected Phi, bit for bit."""
    log, reference_log = (pd.read_csv(d / "train_log.csv").drop(columns="seconds") for d in (run_dir, reference_dir))
    pd.testing.assert_frame_equal(log, reference_log, check_exact=True)
    phi, reference_phi = (torch.load(d / "checkpoint.pt", weights_only=True) for d in (run_dir, reference_dir))
    assert {k: v for k, v in phi.items() if k != "model"} == {k: v for k, v in reference_phi.items() if k != "model"}
    assert phi["model"].keys() == reference_phi["model"].keys()
    assert all(torch.equal(phi["model"][k], reference_phi["model"][k]) for k in phi["model"]), "Phi differs"


@pytest.fixture(scope="module")
def uninterrupted(slurm_test_run: SnakemakeRun, epochs: int, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The training under test, run locally without interruption: its run folder."""
    workdir = copy_run(slurm_test_run, tmp_path_factory.mktemp("uninterrupted") / "run")
    snakemake(workdir, "--cores", "1", TRAINING, *longer_training(workdir, epochs))
    return workdir / RUN


@pytest.fixture(scope="module", autouse=True)
def timing_out(
    slurm: SlurmCluster, slurm_test_run: SnakemakeRun, uninterrupted: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningSnakemake]:
    """A training of about TIMING_OUT_SECONDS whose job gets 1 minute at attempt 1, 2 at attempt 2, ...

    Its length comes from the epochs of the uninterrupted training, which ran alone, as this one
    does: the full run's epochs, run side by side with other jobs, can be several times slower, and
    a training that finishes within the first minute has nothing to resume.
    """
    workdir = copy_run(slurm_test_run, tmp_path_factory.mktemp("timeout") / "run")
    with slurm.start_snakemake(
        workdir,
        TRAINING,
        overrides={"set-resources": {"train_refiner": {"runtime": "attempt"}}},
        extra_args=longer_training(workdir, epochs_lasting([uninterrupted / "train_log.csv"], TIMING_OUT_SECONDS)),
        timeout=1200,
    ) as running:
        yield running


def test_every_rule_but_the_local_ones_runs_through_sbatch_gpu_rules_with_a_gpu(
    slurm: SlurmCluster, slurm_test_run: SnakemakeRun
):
    run = slurm_test_run
    jobs = slurm.jobs(run.run_id)
    # Snakemake says which jobs it submitted ("rule ...:") and which it ran itself ("localrule ...:")
    submitted = re.findall(r"^rule (\w+):", run.output, re.M)
    assert set(re.findall(r"^localrule (\w+):", run.output, re.M)) == LOCAL_RULES
    assert sorted(j.rule for j in jobs) == sorted(submitted) and not set(submitted) & LOCAL_RULES, jobs
    assert set(submitted) == SUBMITTED_RULES
    assert all(j.state == "COMPLETED" for j in jobs), jobs
    assert {(j.partition, j.account) for j in jobs} == {(slurm.partition, slurm.account)}
    gpu_jobs = gpu_rules()
    assert gpu_jobs and all(j.gpus == (1 if j.rule in gpu_jobs else 0) for j in jobs), [
        (j.rule, j.alloc_tres) for j in jobs
    ]
    # the rules' runtimes (minutes, attempt 1) and one SLURM log per job, kept after success
    limits = {j.rule: j.timelimit for j in jobs}
    assert (limits["train_refiner"], limits["evaluate"], limits["prepare_split"]) == (
        "1-00:00:00",
        "02:00:00",
        "04:00:00",
    )
    for job in jobs:
        assert list((run.workdir / "logs/slurm" / f"rule_{job.rule}").rglob(f"{job.job_id}.log")), job


def test_results_equal_the_local_run(slurm_test_run: SnakemakeRun, test_run: Path):
    # Exactly: same machine, code, seeds and data, one thread per job in both runs (Snakemake sets
    # OMP_NUM_THREADS to a job's threads), and torch on CPU is deterministic, so any difference is
    # a job that ran with other settings or inputs, which a tolerance would hide.
    slurm_results, local_results = slurm_test_run.workdir / "results/test", test_run / "results/test"
    compared = 0
    for pattern in ("eval/*/*/*/metrics.json", "base/*/*/base_check.json", "tables/*.csv", "eval/*/*/*/per_step.csv"):
        local = sorted(p.relative_to(local_results) for p in local_results.glob(pattern))
        assert local and sorted(p.relative_to(slurm_results) for p in slurm_results.glob(pattern)) == local, pattern
        for path in local:
            assert (slurm_results / path).read_bytes() == (local_results / path).read_bytes(), path
            compared += 1
    for path in sorted(local_results.glob("runs/*/*/*/train_log.csv")):
        slurm_log = pd.read_csv(slurm_results / path.relative_to(local_results)).drop(columns="seconds")
        pd.testing.assert_frame_equal(slurm_log, pd.read_csv(path).drop(columns="seconds"), check_exact=True)
        compared += 1
    assert compared >= 5 + 2 + 4 + 5 + 4


def interrupt_training(slurm: SlurmCluster, workdir: Path, epochs: int, interrupt) -> tuple[str, SnakemakeRun]:
    """Train for `epochs` through the cluster and `interrupt(job_id)` the job once its first epoch
    is saved: (the interrupted job's id, the finished Snakemake run)."""
    return slurm.run_interrupted(
        workdir, TRAINING, rule="train_refiner", ready=(workdir / RUN / "last.pt").exists,
        what="the first epoch's resume state", interrupt=interrupt, extra_args=longer_training(workdir, epochs),
    )  # fmt: skip


def test_cancelled_training_is_submitted_again_and_resumes(
    slurm: SlurmCluster, slurm_test_run: SnakemakeRun, epochs: int, uninterrupted: Path, tmp_path: Path
):
    workdir = copy_run(slurm_test_run, tmp_path / "run")
    first, run = interrupt_training(slurm, workdir, epochs, slurm.cancel)
    jobs = [(j.job_id, j.state) for j in slurm.jobs(run.run_id) if j.rule == "train_refiner"]
    assert len(jobs) == 2 and jobs[0] == (first, "CANCELLED") and jobs[1][1] == "COMPLETED", jobs
    assert "Trying to restart job" in run.output  # Snakemake's retry, a new job
    assert 1 <= resumed_from(workdir) < epochs
    assert_same_training(workdir / RUN, uninterrupted)


def test_requeued_training_resumes_under_the_same_job_id(
    slurm: SlurmCluster, slurm_test_run: SnakemakeRun, epochs: int, uninterrupted: Path, tmp_path: Path
):
    workdir = copy_run(slurm_test_run, tmp_path / "run")
    job, run = interrupt_training(slurm, workdir, epochs, slurm.requeue)
    jobs = [(j.job_id, j.state) for j in slurm.jobs(run.run_id) if j.rule == "train_refiner"]
    assert jobs == [(job, "REQUEUED"), (job, "COMPLETED")], jobs
    assert "Trying to restart job" not in run.output  # SLURM restarted it; Snakemake just waited
    assert 1 <= resumed_from(workdir) < epochs
    assert_same_training(workdir / RUN, uninterrupted)


def test_timed_out_training_gets_more_time_and_resumes(slurm: SlurmCluster, timing_out: RunningSnakemake):
    run = timing_out.wait().check()

    jobs = [j for j in slurm.jobs(run.run_id) if j.rule == "train_refiner"]
    # killed at each limit until one sufficed (how many depends on the machine's speed)
    assert len(jobs) >= 2 and [j.state for j in jobs] == ["TIMEOUT"] * (len(jobs) - 1) + ["COMPLETED"], jobs
    assert [j.timelimit for j in jobs] == [f"00:{attempt:02d}:00" for attempt in range(1, len(jobs) + 1)], jobs
    resumed = resumed_from(run.workdir)
    settings = yaml.safe_load((run.workdir / RUN / "settings.yaml").read_text())
    epochs = pd.read_csv(run.workdir / RUN / "train_log.csv")["epoch"].tolist()
    assert 1 <= resumed < len(epochs) and epochs == list(range(1, settings["train"]["epochs"] + 1))


def test_training_with_two_gpus_runs_two_ddp_processes(
    slurm: SlurmCluster, slurm_test_run: SnakemakeRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    workdir = copy_run(slurm_test_run, tmp_path / "run")
    # More GPUs are no reason to retrain what is finished...
    monkeypatch.setenv("IRNO_SLURM_TRAIN_GPUS", "2")
    out = snakemake(workdir, "-n", "--profile", "profiles/slurm", "all", "--configfile", CONFIG)
    assert "Nothing to be done" in out.stdout + out.stderr, out.stdout[-3000:]
    # ...so train it again, now on two GPUs, with two CPU cores (one thread per process)
    shutil.rmtree(workdir / RUN)
    run = slurm.snakemake(
        workdir,
        TRAINING,
        overrides={"set-threads": {"train_refiner": 2}},
        extra_args=("--configfile", CONFIG),
        env=slurm.env(IRNO_SLURM_TRAIN_GPUS="2"),
    ).check()

    jobs = [j for j in slurm.jobs(run.run_id) if j.rule == "train_refiner"]
    assert [(j.state, j.gpus) for j in jobs] == [("COMPLETED", 2)] and "cpu=2" in jobs[0].alloc_tres, jobs
    assert "launching 2 training processes (threads each: 1)" in (workdir / TRAINING_LOG).read_text()
    # the same global batches, shared by two processes (gloo on CPU): what one process learns
    one = pd.read_csv(slurm_test_run.workdir / RUN / "train_log.csv")
    two = pd.read_csv(workdir / RUN / "train_log.csv")
    for column in ("loss", "loss_spatial", "loss_spectral", "loss_fixed_point", "valid_mse"):
        np.testing.assert_allclose(two[column], one[column], rtol=1e-5, err_msg=column)
