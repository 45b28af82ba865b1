"""What each job asks a SLURM cluster for: one table of the workflow's cluster jobs (`JOBS`), the
site's settings (`SiteSettings`, from IRNO_SLURM_* environment variables) and the resources of
one job at one attempt (`job_resources`), which the rules state through Snakemake and
`irno estimate` prints.

Per job: its runtime (the same at every attempt for a job that resumes, else attempt x minutes),
its memory (what it holds, `held_bytes`, plus a measured fixed part, `JobSpec.base_mb`; growing
with the attempt only where `memory_may_grow`), both capped by the site's limits; GPU jobs get the
site's GPU partition, model, QOS, constraint and CPU cores per GPU. Light on purpose (no torch):
the workflow imports it at parse time.

Detail: docs/slurm.md#what-each-job-asks-for
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from irno import IrnoError

MB = 1e6
# The fixed part of a request: what benchmarks/job_memory.py measured (peak RSS of the rule's
# command on the CPU, besides the data) times HEADROOM, for what the measurement does not see
# (other versions of the libraries, allocator fragmentation, a node's other settings), plus on a
# GPU node the host memory of CUDA, which no machine of this project could measure:
HEADROOM = 1.5
# Assumed, not measured: the CUDA libraries torch loads are 3.2 GB on disk (cuBLAS, cuDNN, cuFFT,
# NCCL, ..., torch 2.x for CUDA 13) besides libtorch_cuda's 1 GB, of which a process maps what it
# uses; pytorch/pytorch#12873 found 1.1 GB more resident memory after the first CUDA operation
# (before CUDA's lazy module loading, which lowered it). Pinned buffers come on top.
CUDA_HOST_MB = 3000


@dataclass(frozen=True)
class JobSpec:
    """One rule's cluster job: its GPUs, runtime and memory at the first attempt, and its retries."""

    runtime: int  # minutes at the first attempt
    measured_mb: int  # peak memory besides the data it holds, measured on the CPU (benchmarks/job_memory.py)
    gpus: int = 0  # GPUs per job (train_phi: the site's IRNO_SLURM_TRAIN_GPUS)
    resumable: bool = False  # a retry continues where the last attempt stopped: the same runtime again
    memory_may_grow: bool = False  # an out-of-memory failure is possible: a retry asks for attempt x the memory
    retried: bool = True  # False: its failure is a verdict (the rule sets retries: 0)
    what: str = ""  # what its memory holds besides base_mb (docs/slurm.md's table)
    gpu_extra_mb: int = 0  # host memory of the paper's runs on a GPU that the CPU measurement misses

    @property
    def own_mb(self) -> int:
        """What one process of the job needs besides the data it holds, without headroom."""
        return self.measured_mb + (CUDA_HOST_MB + self.gpu_extra_mb if self.gpus else 0)

    @property
    def base_mb(self) -> int:
        """The fixed part of the job's request (per process): measured x HEADROOM, plus CUDA's."""
        return math.ceil(HEADROOM * self.measured_mb) + (CUDA_HOST_MB + self.gpu_extra_mb if self.gpus else 0)


# The workflow's cluster jobs: every rule that is not a localrule. The rules take their resources
# from here (common.smk, `cluster_resources`), irno estimate reads the same table.
JOBS: dict[str, JobSpec] = {
    "index_local_dataset": JobSpec(runtime=120, measured_mb=700, what="one file's checks at a time"),
    "simulate_dataset": JobSpec(
        runtime=240,
        measured_mb=750,
        resumable=True,
        what="4 x its largest file while the file's trajectories come in (float64), a trajectory per worker",
    ),
    "prepare_split": JobSpec(
        runtime=240,
        measured_mb=750,
        retried=False,
        what="8 x a trajectory (read through The Well's loader, reordered, checked)",
    ),
    "train_base": JobSpec(
        runtime=720,
        measured_mb=1300,
        gpus=1,
        resumable=True,
        what="the train and valid stores (memory-mapped, read every epoch), a batch's host copies",
    ),
    "check_base": JobSpec(runtime=60, measured_mb=1250, gpus=1, retried=False, what="a batch's host copies"),
    "cache_base_predictions": JobSpec(
        runtime=120, measured_mb=1200, gpus=1, resumable=True, what="a batch's host copies"
    ),
    "train_phi": JobSpec(
        runtime=1440,
        measured_mb=900,
        gpus=1,
        resumable=True,
        what="its working set, the train and valid stores and the base's caches of them (memory-mapped, read "
        "every epoch; irno.staging), and a batch's host copies",
    ),
    "evaluate": JobSpec(
        runtime=120, measured_mb=850, gpus=1, what="a batch's host copies (the per-step sums are small)"
    ),
    "roma_simulate": JobSpec(
        runtime=240, measured_mb=150, memory_may_grow=True, what="the series and the graph, twice while written"
    ),
    "roma_encode": JobSpec(
        runtime=1440,
        measured_mb=900,
        gpus=1,
        memory_may_grow=True,
        what="the graph's sparse Laplacian and eigensolver, and the encodings",
    ),
    "roma_train": JobSpec(
        runtime=1440,
        measured_mb=900,
        gpus=1,
        resumable=True,
        what="1.4 x the series and the graph encodings",
        # a resumed run loads its state to the host first: the paper's models, ~264M parameters, and
        # Adam's two moments at 4 bytes each
        gpu_extra_mb=3200,
    ),
}


@dataclass(frozen=True)
class SiteSettings:
    """The SLURM site's settings, from IRNO_SLURM_* environment variables (unset: not passed to sbatch)."""

    partition: str = ""  # GPU jobs, and every job without cpu_partition (sbatch -p)
    cpu_partition: str = ""  # jobs without a GPU
    account: str = ""  # sbatch -A
    qos: str = ""  # sbatch --qos, for the jobs of the GPU partition
    constraint: str = ""  # sbatch -C, for the jobs of the GPU partition
    extra: str = ""  # raw sbatch flags for every job, e.g. --mail-type=FAIL
    gpu_model: str = ""  # sbatch --gpus=<model>:N
    train_gpus: int = 1  # GPUs per training of Phi (one DDP process each)
    cpus_per_gpu: int = 8  # CPU cores per GPU of a GPU job
    max_runtime: int | None = None  # minutes: no attempt asks for more
    max_mem_mb: int | None = None  # MB: no attempt asks for more

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> SiteSettings:
        def text(name: str) -> str:
            return environ.get(f"IRNO_SLURM_{name}", "").strip()

        def number(name: str, default: int | None, minimum: int) -> int | None:
            value = text(name)
            if not value:
                return default
            if not value.isdigit() or int(value) < minimum:
                raise IrnoError(
                    f"environment variable IRNO_SLURM_{name}={value!r}: must be a whole number >= {minimum}"
                )
            return int(value)

        return cls(
            partition=text("PARTITION"),
            cpu_partition=text("CPU_PARTITION"),
            account=text("ACCOUNT"),
            qos=text("QOS"),
            constraint=text("CONSTRAINT"),
            extra=text("EXTRA"),
            gpu_model=text("GPU_MODEL"),
            train_gpus=number("TRAIN_GPUS", 1, 1),
            cpus_per_gpu=number("CPUS_PER_GPU", 8, 1),
            max_runtime=number("MAX_RUNTIME", None, 1),
            max_mem_mb=number("MAX_MEM_MB", None, 1),
        )

    def gpus(self, rule: str) -> int:
        """GPUs of one job of `rule`."""
        return self.train_gpus if rule == "train_phi" else JOBS[rule].gpus


def runtime_minutes(rule: str, attempt: int, site: SiteSettings) -> int:
    """The time limit of `rule`'s job at `attempt` (1, 2, ...)."""
    spec = JOBS[rule]
    minutes = spec.runtime if spec.resumable else spec.runtime * attempt
    return min(minutes, site.max_runtime) if site.max_runtime else minutes


def memory_mb(rule: str, held_bytes: float, attempt: int, site: SiteSettings) -> int:
    """The memory of `rule`'s job at `attempt`: its fixed part (per process: a training of Phi runs
    one per GPU) plus what it holds, grown with the attempt where running out of memory is
    possible, capped by the site."""
    spec = JOBS[rule]
    processes = site.gpus(rule) if rule == "train_phi" else 1
    mb = spec.base_mb * processes + math.ceil(held_bytes / MB)
    if spec.memory_may_grow:
        mb *= attempt
    return min(mb, site.max_mem_mb) if site.max_mem_mb else mb


def site_resources(rule: str, site: SiteSettings) -> dict[str, str | int]:
    """What the site adds to `rule`'s jobs: partition, account, QOS, constraint, raw flags, and for GPU
    jobs the GPU count, model and CPU cores."""
    gpus = site.gpus(rule)
    in_gpu_partition = gpus > 0 or not site.cpu_partition
    resources: dict[str, str | int] = {}
    partition = site.partition if in_gpu_partition else site.cpu_partition
    if partition:
        resources["slurm_partition"] = partition
    if site.account:
        resources["slurm_account"] = site.account
    if site.qos and in_gpu_partition:
        resources["qos"] = site.qos
    if site.constraint and in_gpu_partition:
        resources["constraint"] = site.constraint
    if site.extra:
        resources["slurm_extra"] = site.extra
    if gpus:
        resources["gpu"] = gpus
        resources["cpus_per_task"] = site.cpus_per_gpu * gpus
        if site.gpu_model:
            resources["gpu_model"] = site.gpu_model
    return resources


def job_resources(rule: str, held_bytes: Callable[..., float], site: SiteSettings) -> dict:
    """`rule`'s resources as Snakemake takes them: runtime and memory as functions of the job's
    wildcards and attempt (`held_bytes(wildcards)`: what the job holds), the site's as values."""
    if rule not in JOBS:
        raise IrnoError(f"rule {rule!r} has no cluster job in irno.cluster.JOBS")
    resources = {
        "runtime": lambda wildcards, attempt: runtime_minutes(rule, attempt, site),
        "mem_mb": lambda wildcards, attempt: memory_mb(rule, held_bytes(wildcards), attempt, site),
        **site_resources(rule, site),
    }
    if "cpus_per_task" in resources:  # never fewer cores than the rule's own threads
        per_gpus = resources["cpus_per_task"]
        resources["cpus_per_task"] = lambda wildcards, threads: max(threads, per_gpus)
    return resources


# ----------------------------------------------------------------------------- what a job holds

UNKNOWN_DATA_BYTES = 56e9  # a dataset whose size irno.sizes does not know: today's 64 GB requests
# Host copies of a batch on its way to the GPU and back: the batch gathered from the store and its
# pinned (or contiguous) copy. Derived, not measured: on the CPU a batch's memory is dwarfed by the
# models' activations, which a GPU job keeps on the GPU (benchmarks/job_memory.py: "beyond at G^2").
BATCH_COPIES = 2
# What benchmarks/job_memory.py measured a job holding, per byte of what its formula counts:
PREPARE_TRAJECTORIES = 8  # prepare_split: 2 to 7 trajectories' worth of anonymous memory (The Well's loader, checks)
SIMULATED_FILES = 4  # simulate_dataset: a file's trajectories kept until it is complete (float64), then stacked
ROMA_TRAIN_FACTOR = 1.4  # roma_train: 1.35 x its series and encodings


def held_bytes(rule: str, study, roma_expanded, job: Mapping[str, str]) -> float:
    """What one job of `rule` holds in memory besides its fixed part, in bytes (docs/slurm.md has
    the formulas and their measurement, benchmarks/job_memory.py).

    `job` names the job as the rule's wildcards do: dataset (and base, split, experiment) for the
    IRNO rules, roma_dataset or roma_run for the ROMA ones. `study` is the config's
    irno.study.Study, `roma_expanded` its expanded ROMA study (or None).
    """
    from irno.config import BaseConfig, EvalConfig, PhiTrainConfig, SimulationConfig
    from irno.settings import from_dict
    from irno.sizes import N_STEPS_INPUT, dataset_shape, roma_data_shape

    if rule.startswith("roma_"):
        dataset = roma_expanded.runs[job["roma_run"]]["dataset"] if "roma_run" in job else job["roma_dataset"]
        shape = roma_data_shape(roma_expanded, dataset)
        if rule == "roma_simulate":
            return 2 * shape.series_bytes
        if rule == "roma_encode":
            laplacian = roma_expanded.encodings[dataset]["laplacian"]
            # ARPACK keeps about 2k + 1 float64 Lanczos vectors; the sparse Laplacian 16 bytes per stored entry
            eigensolver = shape.nodes * (2 * laplacian + 1) * 8 + shape.nodes * shape.mean_degree * 16
            return eigensolver + 3 * shape.encodings_bytes  # node2vec's embeddings and Adam's moments
        from irno.roma.study import reads_encodings

        read = shape.encodings_bytes if reads_encodings(roma_expanded.runs[job["roma_run"]]) else 0
        return ROMA_TRAIN_FACTOR * (shape.series_bytes + read)

    if rule == "index_local_dataset":
        return 0.0  # one file's checks at a time: flat in the data's size
    shape = dataset_shape(study, job["dataset"])
    if shape is None:  # what a batch holds is not known either: the fixed part's headroom covers it
        return UNKNOWN_DATA_BYTES if rule in ("prepare_split", "train_base", "train_phi") else 0.0
    trajectory = shape.frames * shape.frame_bytes
    sample = (N_STEPS_INPUT + 2) * shape.frame_bytes  # x, y and h0 (or a prediction)

    def batch(size: int) -> float:
        return BATCH_COPIES * size * sample

    if rule == "simulate_dataset":
        cfg = from_dict(SimulationConfig, study.simulate_settings(job["dataset"]), "simulate")
        largest_file = max(getattr(cfg, split).trajectories for split in ("train", "valid", "test")) * trajectory
        return SIMULATED_FILES * largest_file + 2 * cfg.workers * trajectory  # a float64 trajectory per worker
    if rule == "prepare_split":
        return PREPARE_TRAJECTORIES * trajectory
    base = study.base_settings(job["dataset"], job["base"])
    if rule in ("check_base", "cache_base_predictions"):
        return batch(base.get("cache_batch_size", BaseConfig.cache_batch_size))
    if rule == "evaluate":
        return batch(study.eval_settings().get("batch_size", EvalConfig.batch_size))
    if rule == "train_base":  # the stores, memory-mapped, read every epoch
        return (
            shape.store_bytes("train")
            + shape.store_bytes("valid")
            + batch(base.get("batch_size", BaseConfig.batch_size))
        )
    if rule == "train_phi":  # its working set (irno.staging): the stores and caches, read every epoch
        dtype = base.get("cache_dtype", "float32")
        working_set = sum(shape.store_bytes(s) + shape.cache_bytes(s, dtype) for s in ("train", "valid"))
        train = study.phi_settings(job["experiment"], job["base"])["train"] if "experiment" in job else {}
        return working_set + batch(train.get("batch_size", PhiTrainConfig.batch_size))
    raise IrnoError(f"rule {rule!r}: no memory model in irno.cluster.held_bytes")


# ----------------------------------------------------------------------------- inside a job

THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "GOTO_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def job_cpus(environ: Mapping[str, str]) -> int | None:
    """The CPU cores SLURM allotted to the running job (SLURM_CPUS_PER_TASK), None outside one."""
    value = environ.get("SLURM_CPUS_PER_TASK", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def use_job_cpus(environ) -> int | None:
    """Inside a SLURM job, let torch, OpenMP and BLAS use every core the job was given.

    Snakemake sets their thread counts to the rule's threads, one for most rules so that jobs
    share a workstation's cores; a cluster job owns its cores (IRNO_SLURM_CPUS_PER_GPU per GPU).
    Call before torch is imported. Returns the cores, or None outside a SLURM job."""
    cpus = job_cpus(environ)
    if cpus:
        for name in THREAD_VARIABLES:
            environ[name] = str(cpus)
    return cpus
