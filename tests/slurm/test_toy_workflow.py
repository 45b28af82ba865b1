"""profiles/slurm on the real test cluster, proven on a toy workflow whose rules state their own
resources (runtimes growing with the attempt, a gpu resource for GPU rules): sbatch for every
non-local rule, a GPU for GPU rules, and recovery from cancellation, requeueing and time-outs by a
job that resumes from its own progress file, as the trainers do from their last epoch checkpoint.

The time-out run takes about three minutes of mostly waiting (SLURM's shortest limit is a minute),
so it starts before the first test and runs beside the others; its test only checks the result.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from slurm_harness import RunningSnakemake, SlurmCluster, SnakemakeRun

pytestmark = pytest.mark.slurm

# A resumable "training" job: STEPS steps of SECONDS each, its progress saved after every step
# in a file that is not a workflow output (like the trainer's last.pt), so it survives a failed
# attempt. Each start appends "<job id> <first step>" to the history file.
TOY_TRAIN = """\
import os, sys, time
from pathlib import Path

out, steps, seconds = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
progress, history = out.with_suffix(".progress"), out.with_suffix(".history")
start = int(progress.read_text()) if progress.exists() else 0
job = os.environ.get("SLURM_JOB_ID", "none")
with open(history, "a") as f:
    f.write(f"{job} {start}\\n")
print(f"job {job}: " + (f"resuming from step {start}" if start else "starting"), flush=True)
for step in range(start, steps):
    time.sleep(seconds)
    progress.with_suffix(".tmp").write_text(str(step + 1))
    os.replace(progress.with_suffix(".tmp"), progress)
out.write_text(f"steps={steps} job={job} cuda={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}\\n")
"""

SNAKEFILE = """\
localrules: tables

rule prepare_split:
    output: "data/split.txt"
    resources: runtime=lambda wildcards, attempt: 120 * attempt
    shell: "echo job=${{SLURM_JOB_ID:-none}} cuda=${{CUDA_VISIBLE_DEVICES:-unset}} > {output}"

rule evaluate:
    input: "data/split.txt"
    output: "eval/metrics.txt"
    resources: runtime=lambda wildcards, attempt: 120 * attempt, gpu=1
    shell: "echo job=${{SLURM_JOB_ID:-none}} cuda=${{CUDA_VISIBLE_DEVICES:-unset}} > {output}"

rule tables:
    input: "eval/metrics.txt"
    output: "tables/summary.txt"
    shell: "echo job=${{SLURM_JOB_ID:-none}} > {output}"

rule train_phi:
    output: "runs/phi.txt"
    resources: runtime=lambda wildcards, attempt: 1440 * attempt, gpu=1
    params: steps=config.get("steps", 1), seconds=config.get("step_seconds", 0.1)
    shell: "python toy_train.py {output} {params.steps} {params.seconds}"

rule simulate_dataset:
    output: "data/simulated.txt"
    resources: runtime=lambda wildcards, attempt: 240 * attempt
    params: steps=config.get("steps", 1), seconds=config.get("step_seconds", 0.1)
    shell: "python toy_train.py {output} {params.steps} {params.seconds}"
"""


def write_toy(workdir: Path) -> Path:
    (workdir / "Snakefile").write_text(SNAKEFILE)
    (workdir / "toy_train.py").write_text(TOY_TRAIN)
    # profiles/slurm names the paper's config; the toy's is empty
    (workdir / "config").mkdir()
    (workdir / "config" / "config.yaml").write_text("{}\n")
    return workdir


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    return write_toy(tmp_path)


@pytest.fixture(scope="module", autouse=True)
def timing_out(slurm: SlurmCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSnakemake]:
    """A CPU job with 1 minute at attempt 1 and 2 at attempt 2, and 100 s of work."""
    toy = write_toy(tmp_path_factory.mktemp("timeout"))
    with slurm.start_snakemake(
        toy,
        "data/simulated.txt",
        overrides={"set-resources": {"simulate_dataset": {"runtime": "attempt"}}},
        extra_args=("--config", "steps=100", "step_seconds=1"),
        timeout=900,
    ) as running:
        yield running


def history(output: Path) -> list[tuple[str, int]]:
    """(job id, first step) for every start of a toy training job."""
    lines = output.with_suffix(".history").read_text().split("\n")
    return [(job, int(step)) for job, step in (line.split() for line in lines if line)]


def progress(output: Path) -> int:
    path = output.with_suffix(".progress")
    return int(path.read_text()) if path.exists() else 0


def test_rules_run_through_sbatch_and_gpu_rules_get_a_gpu(slurm: SlurmCluster, toy: Path):
    run = slurm.snakemake(toy, "tables/summary.txt").check()

    jobs = slurm.jobs(run.run_id)
    assert sorted(j.rule for j in jobs) == ["evaluate", "prepare_split"]  # tables is a localrule
    assert all(j.state == "COMPLETED" for j in jobs), jobs
    assert {j.partition for j in jobs} == {slurm.partition}  # the cluster's default: the toy states none
    by_rule = {j.rule: j for j in jobs}
    assert (by_rule["evaluate"].gpus, by_rule["prepare_split"].gpus) == (1, 0), jobs
    assert (by_rule["evaluate"].timelimit, by_rule["prepare_split"].timelimit) == ("02:00:00", "02:00:00")

    # Inside: each job knows its SLURM id, the GPU rule sees its (fake) GPU, the localrule no job.
    assert (toy / "data/split.txt").read_text().split() == [f"job={by_rule['prepare_split'].job_id}", "cuda=unset"]
    assert (toy / "eval/metrics.txt").read_text().split() == [f"job={by_rule['evaluate'].job_id}", "cuda=0"]
    assert (toy / "tables/summary.txt").read_text().split() == ["job=none"]
    assert (toy / f"logs/slurm/rule_evaluate/{by_rule['evaluate'].job_id}.log").exists()  # kept after success


def interrupt_training(slurm: SlurmCluster, toy: Path, interrupt) -> tuple[str, SnakemakeRun]:
    """The toy training of 20 one-second steps, interrupted after its third step."""
    return slurm.run_interrupted(
        toy, "runs/phi.txt", rule="train_phi", ready=lambda: progress(toy / "runs/phi.txt") >= 3,
        what="3 steps of the first attempt", interrupt=interrupt, extra_args=("--config", "steps=20", "step_seconds=1"),
    )  # fmt: skip


def test_cancelled_job_is_resubmitted_and_resumes(slurm: SlurmCluster, toy: Path):
    out = toy / "runs/phi.txt"
    first, run = interrupt_training(slurm, toy, slurm.cancel)

    starts = history(out)
    assert len(starts) == 2 and starts[0] == (first, 0), starts
    second, resumed_at = starts[1]
    assert second != first and resumed_at >= 3, starts  # resumed, not restarted
    assert out.read_text().split() == ["steps=20", f"job={second}", "cuda=0"]
    jobs = [j for j in slurm.jobs(run.run_id) if j.rule == "train_phi"]
    assert [(j.job_id, j.state) for j in jobs] == [(first, "CANCELLED"), (second, "COMPLETED")]
    assert "Trying to restart job" in run.output


def test_requeued_job_resumes_under_the_same_id(slurm: SlurmCluster, toy: Path):
    out = toy / "runs/phi.txt"
    job, run = interrupt_training(slurm, toy, slurm.requeue)

    starts = history(out)
    assert len(starts) == 2 and starts[0] == (job, 0) and starts[1][0] == job and starts[1][1] >= 3, starts
    states = [j.state for j in slurm.jobs(run.run_id) if j.rule == "train_phi"]
    assert states == ["REQUEUED", "COMPLETED"], states
    assert "Trying to restart job" not in run.output  # SLURM restarted it; Snakemake just waited


def test_timed_out_job_gets_more_time_and_resumes(slurm: SlurmCluster, timing_out: RunningSnakemake):
    run = timing_out.wait().check()

    out = run.workdir / "data/simulated.txt"
    jobs = [j for j in slurm.jobs(run.run_id) if j.rule == "simulate_dataset"]
    assert [(j.state, j.timelimit) for j in jobs] == [("TIMEOUT", "00:01:00"), ("COMPLETED", "00:02:00")], jobs
    starts = history(out)
    assert [job for job, _ in starts] == [j.job_id for j in jobs]
    assert starts[0][1] == 0 and starts[1][1] > 0, starts  # resumed where the first attempt stopped
    assert out.read_text().split()[:2] == ["steps=100", f"job={jobs[1].job_id}"]
