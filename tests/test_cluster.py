"""What each job asks SLURM for (irno.cluster): the JOBS table the rules take their resources from,
the site's settings from IRNO_SLURM_* variables, retries within the site's limits."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from irno import IrnoError
from irno.cluster import (
    BATCH_COPIES,
    CUDA_HOST_MB,
    HEADROOM,
    JOBS,
    PREPARE_TRAJECTORIES,
    ROMA_TRAIN_FACTOR,
    SIMULATED_FILES,
    SiteSettings,
    held_bytes,
    job_cpus,
    job_resources,
    memory_mb,
    runtime_minutes,
    site_resources,
    use_job_cpus,
)
from irno.roma.settings import study_from_dict
from irno.roma.study import expand_study
from irno.sizes import N_STEPS_INPUT, WELL_SHAPES, roma_data_shape
from irno.study import load_study

ROOT = Path(__file__).resolve().parents[1]


def config(name: str) -> dict:
    return yaml.safe_load((ROOT / "config" / f"{name}.yaml").read_text())


def test_site_settings_come_from_the_environment_and_bad_values_are_named():
    assert SiteSettings.from_environ({}) == SiteSettings()
    site = SiteSettings.from_environ(
        {
            "IRNO_SLURM_PARTITION": " gpu ",
            "IRNO_SLURM_CPU_PARTITION": "cpu",
            "IRNO_SLURM_TRAIN_GPUS": "4",
            "IRNO_SLURM_MAX_RUNTIME": "2880",
            "IRNO_SLURM_MAX_MEM_MB": "128000",
            "IRNO_SLURM_EXTRA": "--mail-type=FAIL",
        }
    )
    assert (site.partition, site.cpu_partition, site.train_gpus) == ("gpu", "cpu", 4)
    assert (site.max_runtime, site.max_mem_mb, site.extra) == (2880, 128000, "--mail-type=FAIL")
    with pytest.raises(IrnoError, match=r"IRNO_SLURM_MAX_RUNTIME='2 days': must be a whole number >= 1"):
        SiteSettings.from_environ({"IRNO_SLURM_MAX_RUNTIME": "2 days"})
    with pytest.raises(IrnoError, match="IRNO_SLURM_TRAIN_GPUS='0'"):
        SiteSettings.from_environ({"IRNO_SLURM_TRAIN_GPUS": "0"})


def test_a_resumable_job_asks_for_the_same_time_every_attempt_others_for_more():
    site = SiteSettings()
    assert JOBS["train_phi"].resumable and JOBS["roma_train"].resumable
    assert [runtime_minutes("train_phi", a, site) for a in (1, 2, 3, 4)] == [1440] * 4
    assert [runtime_minutes("evaluate", a, site) for a in (1, 2, 3)] == [120, 240, 360]


def test_no_attempt_asks_for_more_than_the_site_allows():
    site = SiteSettings(max_runtime=600, max_mem_mb=48000)
    for rule in JOBS:
        for attempt in (1, 2, 3, 4):
            assert runtime_minutes(rule, attempt, site) <= 600
            assert memory_mb(rule, 200e9, attempt, site) <= 48000
    assert [runtime_minutes("evaluate", a, site) for a in (1, 4, 6)] == [120, 480, 600]
    assert runtime_minutes("train_phi", 1, site) == 600  # a training longer than the limit resumes across attempts


def test_memory_grows_only_where_running_out_of_it_is_possible():
    site = SiteSettings()
    for rule, spec in JOBS.items():
        first, second = memory_mb(rule, 10e9, 1, site), memory_mb(rule, 10e9, 2, site)
        assert first == spec.base_mb + 10_000
        assert second == (2 * first if spec.memory_may_grow else first), rule
    assert not JOBS["train_phi"].memory_may_grow  # its working set is memory-mapped, a time-out is not memory


def test_verdicts_are_not_retried():
    assert {rule for rule, spec in JOBS.items() if not spec.retried} == {"check_base", "prepare_split"}


def test_gpu_jobs_go_to_the_gpu_partition_cpu_jobs_to_the_cpu_partition():
    site = SiteSettings(partition="gpu", cpu_partition="cpu", account="proj", qos="high", constraint="a100",
                        extra="--mail-type=FAIL", gpu_model="a100", train_gpus=2, cpus_per_gpu=6)  # fmt: skip
    train = site_resources("train_phi", site)
    assert train == {
        "slurm_partition": "gpu", "slurm_account": "proj", "qos": "high", "constraint": "a100",
        "slurm_extra": "--mail-type=FAIL", "gpu": 2, "cpus_per_task": 12, "gpu_model": "a100",
    }  # fmt: skip
    assert site_resources("evaluate", site)["gpu"] == 1 and site_resources("evaluate", site)["cpus_per_task"] == 6
    # QOS and constraint belong to the GPU partition; account and raw flags to every job
    assert site_resources("prepare_split", site) == {
        "slurm_partition": "cpu", "slurm_account": "proj", "slurm_extra": "--mail-type=FAIL"
    }  # fmt: skip
    # without a CPU partition every job goes to the one partition, with its QOS and constraint
    one = SiteSettings(partition="gpu", qos="high", constraint="a100")
    assert site_resources("roma_simulate", one) == {"slurm_partition": "gpu", "qos": "high", "constraint": "a100"}
    assert site_resources("roma_simulate", SiteSettings()) == {}


def test_job_resources_are_functions_of_the_attempt():
    resources = job_resources("evaluate", lambda wildcards: 5e9, SiteSettings(max_mem_mb=8000))
    assert resources["runtime"](None, 2) == 240 and resources["mem_mb"](None, 1) == 8000
    # a GPU job's cores: per GPU, never fewer than the rule's own threads
    assert resources["cpus_per_task"](None, 1) == 8 and resources["cpus_per_task"](None, 12) == 12
    with pytest.raises(IrnoError, match="rule 'tables' has no cluster job"):
        job_resources("tables", lambda wildcards: 0, SiteSettings())


def test_what_a_paper_training_holds_is_its_working_set_and_a_batch():
    study = load_study(config("config"))
    am = WELL_SHAPES["active_matter"]
    working_set = sum(am.store_bytes(s) + am.cache_bytes(s) for s in ("train", "valid"))
    batch = BATCH_COPIES * 16 * (N_STEPS_INPUT + 2) * am.frame_bytes  # x, h0, y of train.batch_size 16
    job = {"dataset": "active_matter", "base": "FNO", "experiment": "irno", "seed": "42"}
    assert held_bytes("train_phi", study, None, job) == working_set + batch
    assert 85e9 < working_set < 100e9  # stores ~47 GB, caches ~45 GB (float32)
    # a bfloat16 cache halves the caches' share
    paper = config("config")
    paper["bases"]["FNO"]["cache_dtype"] = "bfloat16"
    half = held_bytes("train_phi", load_study(paper), None, job)
    assert half == pytest.approx(working_set + batch - sum(am.cache_bytes(s) / 2 for s in ("train", "valid")))


def test_a_ddp_training_asks_for_the_fixed_part_of_every_process():
    spec = JOBS["train_phi"]
    assert memory_mb("train_phi", 90e9, 1, SiteSettings(train_gpus=4)) == 4 * spec.base_mb + 90_000
    assert memory_mb("evaluate", 1e9, 1, SiteSettings(train_gpus=4)) == JOBS["evaluate"].base_mb + 1000


def test_the_fixed_part_is_the_measured_one_with_headroom_and_cudas_host_memory_on_gpu_jobs():
    for rule, spec in JOBS.items():
        cuda = CUDA_HOST_MB + spec.gpu_extra_mb if spec.gpus else 0
        assert spec.base_mb == math.ceil(HEADROOM * spec.measured_mb) + cuda, rule
        assert spec.own_mb == spec.measured_mb + cuda < spec.base_mb, rule


def test_a_batch_job_holds_a_batch_whatever_the_size_of_the_data():
    small, large = config("test"), config("test")
    large["datasets"]["active_matter"]["simulate"]["train"]["trajectories"] = 40
    large["datasets"]["active_matter"]["simulate"]["test"]["trajectories"] = 40
    job = {"dataset": "active_matter", "base": "FNO", "split": "test", "experiment": "irno"}
    frame = 11 * 16 * 16 * 4  # config/test.yaml: 16^2
    for rule, batch in (("check_base", 32), ("cache_base_predictions", 32), ("evaluate", 16)):
        held = [held_bytes(rule, load_study(cfg), None, job) for cfg in (small, large)]
        assert held[0] == held[1] == BATCH_COPIES * batch * (N_STEPS_INPUT + 2) * frame, rule
    # what prepare_split holds is a trajectory's worth, whatever the split's size
    trajectory = 10 * frame
    assert held_bytes("prepare_split", load_study(large), None, job) == PREPARE_TRAJECTORIES * trajectory


def test_the_simulation_holds_its_largest_file_until_it_is_written():
    cfg = config("test")
    cfg["datasets"]["active_matter"]["simulate"]["valid"]["trajectories"] = 5  # the largest file: 5 trajectories
    trajectory = 10 * 11 * 16 * 16 * 4
    held = held_bytes("simulate_dataset", load_study(cfg), None, {"dataset": "active_matter"})
    assert held == SIMULATED_FILES * 5 * trajectory + 2 * 2 * trajectory  # and a trajectory per worker (2)


def test_what_a_roma_training_holds_is_its_series_and_encodings():
    plan = expand_study(study_from_dict(config("roma")["roma"]))
    km3m = next(k for k, r in plan.runs.items() if r["dataset"] == "km3m" and r["model"]["kind"] == "roma")
    held = held_bytes("roma_train", None, plan, {"roma_run": km3m})
    shape = roma_data_shape(plan, "km3m")
    assert held == ROMA_TRAIN_FACTOR * (shape.series_bytes + shape.encodings_bytes)
    assert 40e9 < shape.series_bytes + shape.encodings_bytes < 50e9  # 3.85M nodes x 2001 frames x 4 bytes, ...


def test_inside_a_slurm_job_every_given_core_is_used():
    env = {"SLURM_CPUS_PER_TASK": "8", "OMP_NUM_THREADS": "1"}
    assert job_cpus(env) == 8 and use_job_cpus(env) == 8
    assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "8"
    outside = {"OMP_NUM_THREADS": "1"}
    assert use_job_cpus(outside) is None and outside == {"OMP_NUM_THREADS": "1"}
