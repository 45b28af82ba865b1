"""The real workflow through the real test cluster: config/test.yaml with profiles/slurm, as a
researcher runs it (`snakemake --profile slurm all --configfile ...`), with every site setting of
irno.cluster set for the test node (slurm_harness.SITE_ENV).

- The README's command, the profile installed as `slurm` in a fresh HOME, runs the IRNO paper
  config; with --configfile config/roma.yaml the ROMA study.
- Every non-local rule runs as a SLURM job: GPU rules with a GPU of the site's model in the GPU
  partition with the site's QOS and constraint, the others in the CPU partition; no job asks for
  more memory than the site's cap; and the results equal the local run's (the `test_run` fixture
  of tests/conftest.py) exactly.
- A training job cancelled or requeued mid-run (pre-emption) starts again, resumes from its last
  epoch's resume state and ends exactly as an uninterrupted training does.
- A training job killed at its time limit comes back with the same time (capped by the site's
  limit) and resumes.
- A training job with two GPUs runs as two DDP processes and learns what one process learns; a
  time limit changed on the command line keeps its GPUs and the site's settings.
- A base that misses its published number is checked once, not again; a GPU job that finds no
  CUDA fails within a minute naming the driver.

The full run comes first (`slurm_test_run`); every other test works in a copy of its folder, so
that only the jobs under test run. The interrupted trainings are sized in seconds of this
machine's epochs, so that they are caught mid-run whatever its speed.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from slurm_harness import EXTRA, GPU_MODEL, RunningSnakemake, SlurmCluster, SnakemakeRun
from workflow_copy import copy_workflow, gpu_rules, snakemake

pytestmark = pytest.mark.slurm

CONFIG = "config/test.yaml"
# The jobs of config/test.yaml that go through sbatch; which of them get a GPU the rules say.
SUBMITTED_RULES = {
    "simulate_dataset", "prepare_split", "train_base", "check_base", "cache_base_predictions", "train_phi",
    "evaluate", "roma_simulate", "roma_encode", "roma_train",
}  # fmt: skip
# The jobs of config/test.yaml that run beside Snakemake: the workflow's localrules and `all`.
LOCAL_RULES = {
    "simulate_settings", "base_settings", "phi_settings", "eval_settings", "report_plan_settings",
    "tables", "figures", "report", "roma_study_settings", "roma_data_settings", "roma_encodings_settings",
    "roma_run_settings", "roma_report", "all",
}  # fmt: skip
# The training the tests below interrupt, and its log.
RUN = "results/test/runs/active_matter/FNO/irno"
TRAINING = f"{RUN}/checkpoint.pt"
TRAINING_LOG = "results/test/logs/train_phi/active_matter_FNO_irno.log"
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
    config["phi"]["train"]["epochs"] = epochs
    (workdir / "longer.yaml").write_text(yaml.safe_dump(config))
    shutil.rmtree(workdir / RUN)
    return ("--configfile", "longer.yaml")


RESUMING = re.compile(r"resuming from epoch (\d+) of (\d+)")


def resumed_from(workdir: Path) -> int:
    """The epoch the last attempt of the training under test resumed from (its log says)."""
    found = RESUMING.search((workdir / TRAINING_LOG).read_text())
    assert found, f"the last attempt did not resume:\n{(workdir / TRAINING_LOG).read_text()[-3000:]}"
    return int(found.group(1))


def epochs_resumed_while_running(running: RunningSnakemake) -> list[int]:
    """The epochs every attempt of the training under test resumed from, read from its log while
    Snakemake runs: each attempt writes the log anew, and the last one may only find the training
    finished (its predecessor did all epochs and was killed while exiting)."""
    resumed: list[int] = []
    log = running.workdir / TRAINING_LOG
    while running.process.poll() is None and time.monotonic() < running.deadline:
        text = log.read_text() if log.is_file() else ""
        for found in RESUMING.finditer(text):
            if not resumed or int(found.group(1)) != resumed[-1]:
                resumed.append(int(found.group(1)))
        time.sleep(0.5)
    return resumed


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
    """A training of about TIMING_OUT_SECONDS on a site whose partition allows 1 minute
    (IRNO_SLURM_MAX_RUNTIME=1): every attempt asks for that minute, and resumes.

    Its length comes from the epochs of the uninterrupted training, which ran alone, as this one
    does: the full run's epochs, run side by side with other jobs, can be several times slower, and
    a training that finishes within the first minute has nothing to resume. More retries than the
    profile's, as a user would give a training that needs several time limits.
    """
    workdir = copy_run(slurm_test_run, tmp_path_factory.mktemp("timeout") / "run")
    with slurm.start_snakemake(
        workdir,
        TRAINING,
        overrides={"retries": 8},
        extra_args=longer_training(workdir, epochs_lasting([uninterrupted / "train_log.csv"], TIMING_OUT_SECONDS)),
        env=slurm.env(IRNO_SLURM_MAX_RUNTIME="1"),
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
    # the GPU rules, as Snakemake evaluates the rules' resources; the GPU jobs with one GPU of the
    # site's model in the GPU partition, with the QOS and constraint, the others in the CPU partition
    gpu_jobs = gpu_rules(run.workdir)
    assert gpu_jobs and gpu_jobs < {j.rule for j in jobs}
    for j in jobs:
        on_gpu = j.rule in gpu_jobs
        assert j.gpus == int(on_gpu) and j.account == slurm.account, j
        assert j.partition == (slurm.partition if on_gpu else slurm.cpu_partition), j
        assert (j.qos, j.constraints) == ((slurm.qos, slurm.constraint) if on_gpu else ("normal", "")), j
        assert j.wckey == EXTRA.removeprefix("--wckey=") and 0 < j.memory_mb <= 1000, j  # raw flags; the cap
    assert f"gpu_model={GPU_MODEL}" in run.output
    # the rules' runtimes (minutes, attempt 1) and one SLURM log per job, kept after success
    limits = {j.rule: j.timelimit for j in jobs}
    assert (limits["train_phi"], limits["evaluate"], limits["prepare_split"]) == (
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
        workdir, TRAINING, rule="train_phi", ready=(workdir / RUN / "last.pt").exists,
        what="the first epoch's resume state", interrupt=interrupt, extra_args=longer_training(workdir, epochs),
    )  # fmt: skip


def test_cancelled_training_is_submitted_again_and_resumes(
    slurm: SlurmCluster, slurm_test_run: SnakemakeRun, epochs: int, uninterrupted: Path, tmp_path: Path
):
    workdir = copy_run(slurm_test_run, tmp_path / "run")
    first, run = interrupt_training(slurm, workdir, epochs, slurm.cancel)
    jobs = [(j.job_id, j.state) for j in slurm.jobs(run.run_id) if j.rule == "train_phi"]
    assert len(jobs) == 2 and jobs[0] == (first, "CANCELLED") and jobs[1][1] == "COMPLETED", jobs
    assert "Trying to restart job" in run.output  # Snakemake's retry, a new job
    assert 1 <= resumed_from(workdir) < epochs
    assert_same_training(workdir / RUN, uninterrupted)


def test_requeued_training_resumes_under_the_same_job_id(
    slurm: SlurmCluster, slurm_test_run: SnakemakeRun, epochs: int, uninterrupted: Path, tmp_path: Path
):
    workdir = copy_run(slurm_test_run, tmp_path / "run")
    job, run = interrupt_training(slurm, workdir, epochs, slurm.requeue)
    jobs = [(j.job_id, j.state) for j in slurm.jobs(run.run_id) if j.rule == "train_phi"]
    assert jobs == [(job, "REQUEUED"), (job, "COMPLETED")], jobs
    assert "Trying to restart job" not in run.output  # SLURM restarted it; Snakemake just waited
    assert 1 <= resumed_from(workdir) < epochs
    assert_same_training(workdir / RUN, uninterrupted)


def test_timed_out_training_comes_back_with_the_same_capped_time_and_resumes(
    slurm: SlurmCluster, timing_out: RunningSnakemake
):
    resumed = epochs_resumed_while_running(timing_out)
    run = timing_out.wait().check()

    jobs = [j for j in slurm.jobs(run.run_id) if j.rule == "train_phi"]
    # killed at each limit until the work was done (how many depends on the machine's speed), each
    # attempt with the same minute: the rule's 24 h capped by the site, not grown with the attempt
    assert len(jobs) >= 2 and [j.state for j in jobs] == ["TIMEOUT"] * (len(jobs) - 1) + ["COMPLETED"], jobs
    assert {j.timelimit for j in jobs} == {"00:01:00"} and all(0 < j.memory_mb <= 1000 for j in jobs), jobs
    settings = yaml.safe_load((run.workdir / RUN / "settings.yaml").read_text())
    epochs = pd.read_csv(run.workdir / RUN / "train_log.csv")["epoch"].tolist()
    assert epochs == list(range(1, settings["train"]["epochs"] + 1))
    # every attempt after the first went on from where the one before it stopped
    assert resumed and resumed == sorted(resumed) and 1 <= resumed[0] and resumed[-1] < len(epochs), resumed


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
    # (one CPU core per GPU, and a time limit of its own on the command line, which keeps the rest)
    run = slurm.snakemake(
        workdir,
        TRAINING,
        extra_args=("--configfile", CONFIG, "--set-resources", "train_phi:runtime=30"),
        env=slurm.env(IRNO_SLURM_TRAIN_GPUS="2"),
    ).check()

    jobs = [j for j in slurm.jobs(run.run_id) if j.rule == "train_phi"]
    assert [(j.state, j.gpus) for j in jobs] == [("COMPLETED", 2)] and "cpu=2" in jobs[0].alloc_tres, jobs
    assert (jobs[0].timelimit, jobs[0].partition, jobs[0].qos) == ("00:30:00", slurm.partition, slurm.qos), jobs
    assert "launching 2 training processes (threads each: 1)" in (workdir / TRAINING_LOG).read_text()
    # the same global batches, shared by two processes (gloo on CPU): what one process learns
    one = pd.read_csv(slurm_test_run.workdir / RUN / "train_log.csv")
    two = pd.read_csv(workdir / RUN / "train_log.csv")
    for column in ("loss", "loss_spatial", "loss_spectral", "loss_fixed_point", "valid_mse"):
        np.testing.assert_allclose(two[column], one[column], rtol=1e-5, err_msg=column)


def test_the_readme_command_runs_the_paper_config(slurm: SlurmCluster, tmp_path: Path):
    """`snakemake --profile slurm all`, after the README's one-time install of the profile into the
    user's HOME, plans the IRNO paper run through the cluster; --configfile picks the ROMA study."""
    (tmp_path / "checkout").mkdir()
    workdir = copy_workflow(tmp_path / "checkout")
    home = tmp_path / "home"
    # the README's install line, in a fresh HOME
    install = 'mkdir -p ~/.config/snakemake && ln -s "$PWD/profiles/slurm" ~/.config/snakemake/slurm'
    env = {k: v for k, v in slurm.env(HOME=str(home)).items() if not k.startswith("XDG_")}
    subprocess.run(["bash", "-c", install], cwd=workdir, env=env, check=True)
    assert (home / ".config/snakemake/slurm").resolve() == (workdir / "profiles/slurm").resolve()

    def dry_run(*extra: str) -> str:
        run = subprocess.run(
            [sys.executable, "-m", "snakemake", "--profile", "slurm", "all", *extra, "-n"],
            cwd=workdir, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        return run.stdout + run.stderr

    paper = dry_run()
    assert "config/config.yaml" in paper and "results/paper/runs/active_matter/FNO/irno/checkpoint.pt" in paper
    assert re.search(r"^train_phi\s+72$", paper, re.M) and "roma_train" not in paper
    assert "slurm_partition=gpu" in paper and "gpu_model=fake" in paper  # the site's settings, through the rules
    roma = dry_run("--configfile", "config/roma.yaml")
    assert re.search(r"^roma_train\s+35$", roma, re.M) and "train_phi" not in roma


def test_a_base_that_misses_its_published_number_is_checked_once(
    slurm: SlurmCluster, slurm_test_run: SnakemakeRun, tmp_path: Path
):
    workdir = copy_run(slurm_test_run, tmp_path / "run")
    config = yaml.safe_load((workdir / CONFIG).read_text())
    # no forward of the base reaches this number: the check's verdict (forward auto) fails
    config["bases"]["FNO"].update(published_valid_vrmse=1.0e-6, forward="auto")
    (workdir / "missing.yaml").write_text(yaml.safe_dump(config))
    check = "results/test/base/active_matter/FNO/base_check.json"
    run = slurm.snakemake(workdir, check, extra_args=("--configfile", "missing.yaml"))
    assert run.returncode != 0
    jobs = [j for j in slurm.jobs(run.run_id) if j.rule == "check_base"]
    assert [j.state for j in jobs] == ["FAILED"], jobs  # once: the rule is not retried
    log = (workdir / "results/test/logs/check_base/active_matter_FNO.log").read_text()
    assert "no forward reproduces The Well's valid VRMSE" in log, log[-2000:]
    assert "Trying to restart job" not in run.output.split("rule check_base:", 1)[1]


def test_a_gpu_job_without_cuda_fails_within_a_minute_naming_the_driver(
    slurm: SlurmCluster, slurm_test_run: SnakemakeRun, tmp_path: Path
):
    """The test cluster's GPUs have no CUDA behind them: with `device: auto` a GPU job must stop at
    once, not train on the CPU for its whole time limit."""
    workdir = copy_run(slurm_test_run, tmp_path / "run")
    target = "results/test/eval/active_matter/FNO/irno/metrics.json"
    run = slurm.snakemake(
        workdir, target, overrides={"retries": 0}, extra_args=("--configfile", CONFIG, "--config", "device=auto")
    )
    assert run.returncode != 0
    failed = [j for j in slurm.jobs(run.run_id) if j.state == "FAILED"]
    assert failed and all(j.gpus == 1 for j in failed), failed
    minutes, seconds = (int(x) for x in failed[0].elapsed.split(":")[-2:])
    assert 60 * minutes + seconds < 60, failed[0]
    rule = failed[0].rule
    logs = "".join(p.read_text() for p in (workdir / "results/test/logs" / rule).glob("*.log"))
    assert "torch finds no usable CUDA device" in logs and "no NVIDIA driver was found" in logs, logs[-2000:]
    assert "device: cpu" in logs  # what to do
