"""`irno estimate`: what a config's run costs, before anything is submitted, without data or GPU.

One row per rule: its jobs, GPUs per job, the GPU-hours the jobs request at their first attempt
(irno.cluster, the site's IRNO_SLURM_* settings included) and the GPU-hours they are expected to
take: their work in FLOPs (torch's FLOP counter on the meta device, at the data's real sizes) over
a throughput the output states with its source (a measured benchmark, else the GPU's peak times an
assumed utilisation). Then the disk each output folder takes and the free space where each lands
(sizes from irno.sizes). The job list mirrors the workflow's (tests/test_estimate.py compares it
with Snakemake's dry run for every shipped config).

Detail: docs/slurm.md#before-submitting-what-it-costs
"""

from __future__ import annotations

import functools
import os
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from irno import IrnoError
from irno.cluster import SiteSettings, held_bytes, memory_mb, runtime_minutes
from irno.settings import settings_kinds
from irno.sizes import N_STEPS_INPUT, SPLITS, dataset_shape, roma_data_shape

GB = 1e9
HOUR = 3600.0

# Dense peak throughput (no sparsity), TFLOP/s, from NVIDIA's H100 SXM and A100 SXM datasheets.
GPU_PEAK_TFLOPS = {
    "h100": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4},
    "a100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0},
}
DATA_RULE = {"simulate": "simulate_dataset", "download": "download_dataset", "local": "index_local_dataset"}
DEFAULT_UTILISATION = 0.2  # the share of peak assumed where nothing is measured (benchmarks/README.md's GPU target)
# the rules that run beside Snakemake: every settings file's, downloads, tables, figures, reports
LOCAL_RULES = {"download_dataset", "fetch_base", "tables", "figures", "report", "roma_report"} | {
    f"{kind}_settings" for kind in settings_kinds()
}


@dataclass(frozen=True)
class Throughput:
    """FLOP/s a job's computation runs at, and where that number comes from."""

    flops_per_second: float
    source: str


@dataclass
class RuleCost:
    """One rule's row: its jobs and their GPU-hours, requested and expected."""

    rule: str
    jobs: int = 0
    gpus: int = 0  # per job
    local: bool = False  # runs beside Snakemake, not as a cluster job
    requested_gpu_hours: float = 0.0
    requested_cpu_hours: float = 0.0  # CPU jobs: cores x hours requested
    expected_gpu_hours: float = 0.0
    basis: str = ""  # how the expected figure is made


@dataclass
class Folder:
    """One output folder: what it holds, where, and how much."""

    what: str
    path: Path
    bytes: float = 0.0
    note: str = ""


@dataclass
class Estimate:
    rules: list[RuleCost]
    folders: list[Folder]
    throughputs: dict[str, tuple[Throughput, list[str]]] = field(default_factory=dict)  # source -> it, its rules
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- FLOPs


class FlopCounts:
    """FLOP counts kept on disk between runs of `irno estimate`, so that only the first run of a
    config pays for counting (a few seconds per model shape; the ROMA paper study has 20 shapes).

    A count is a pure function of the code and the shapes: the file is keyed by a fingerprint of
    the package's source and torch's version, so any change of either counts afresh. It lives in
    $XDG_CACHE_HOME/irno (default ~/.cache/irno); IRNO_FLOP_CACHE=off keeps nothing."""

    def __init__(self, folder: Path | None):
        self.path = folder / f"flop-counts-{_code_fingerprint()}.json" if folder else None
        self.counts: dict[str, float | list[float]] = {}
        if self.path and self.path.is_file():
            import json

            try:
                self.counts = json.loads(self.path.read_text())
            except (OSError, ValueError):  # unreadable: count again, and rewrite it
                self.counts = {}

    def get(self, key: str, count):
        if key not in self.counts:
            self.counts[key] = count()
            self._save()
        return self.counts[key]

    def _save(self) -> None:
        import json

        from irno.files import atomic_path

        if self.path is None:
            return
        try:
            with atomic_path(self.path) as tmp:
                tmp.write_text(json.dumps(self.counts, sort_keys=True))
        except OSError:  # a read-only home: counting again next time is the only cost
            self.path = None


def _code_fingerprint() -> str:
    import hashlib

    import torch

    digest = hashlib.sha256(torch.__version__.encode())
    for path in sorted(Path(__file__).resolve().parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def flop_cache_folder() -> Path | None:
    if os.environ.get("IRNO_FLOP_CACHE", "").strip().lower() == "off":
        return None
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "irno"


@functools.cache
def flop_counts() -> FlopCounts:
    return FlopCounts(flop_cache_folder())


def _count_flops(build, run) -> float:
    """FLOPs of `run(model, inputs)` for the model and inputs `build()` makes on the meta device."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model, inputs = build()
    with FlopCounterMode(display=False) as counter:
        run(model, inputs)
    return float(counter.get_total_flops())


def phi_flops(network_json: str, channels: int, grid: tuple[int, int], K: int) -> tuple[float, float]:
    """(one training step's FLOPs per sample at K, one Phi pass forward per sample) of a Phi config
    (JSON of irno.config.NetworkConfig) on `channels` fields of `grid`.

    The step is the objective's K unrolled passes and the fixed-point pass, forward and backward;
    it is linear in K, so it is counted at K = 1 and 2 and extended."""
    import json

    # torch's FLOP counter counts matrix products and convolutions, so Phis that differ only in their
    # normalisation layers count the same: counted once
    cfg = json.dumps(
        {k: v for k, v in json.loads(network_json).items() if k not in ("norm", "num_groups")}, sort_keys=True
    )
    key = json.dumps(["phi", cfg, channels, list(grid)])
    one, two, forward = flop_counts().get(key, lambda: _phi_counts(cfg, channels, grid))
    return one + (K - 1) * (two - one), forward


@functools.cache
def _phi_counts(network_json: str, channels: int, grid: tuple[int, int]) -> tuple[float, float, float]:
    """FLOPs per sample of a training step at K = 1 and K = 2, and of one forward pass of Phi."""
    import json

    import torch

    from irno.config import LossConfig, NetworkConfig
    from irno.refinement.phi import build_phi
    from irno.refinement.train import Objective
    from irno.settings import from_dict

    cfg = from_dict(NetworkConfig, json.loads(network_json))
    x_channels = N_STEPS_INPUT * channels

    def inputs():
        return [torch.randn(1, c, *grid) for c in (x_channels, channels, channels)]  # x, h0, y

    def step(k: int) -> float:
        def build():
            return Objective(build_phi(cfg, x_channels + channels, channels), LossConfig(), k, 0.2), inputs()

        def run(objective, tensors):
            objective(*tensors, 1.0, 1.0)[0].backward()

        return _count_flops(build, run)

    def forward(phi, tensors):
        with torch.no_grad():
            phi(torch.cat([tensors[0], tensors[1]], dim=1))

    phi = lambda: (build_phi(cfg, x_channels + channels, channels), inputs())  # noqa: E731
    return step(1), step(2), _count_flops(phi, forward)


# The published bases' architecture (The Well's model cards: 16 Fourier modes per dimension, width
# 128; the active_matter FNO has 19,020,683 parameters), used where the config does not say.
PUBLISHED_BASE_KWARGS = {"FNO": {"modes1": 16, "modes2": 16, "hidden_channels": 128}}
PUBLISHED_BASE_KWARGS["TFNO"] = PUBLISHED_BASE_KWARGS["FNO"]


def base_flops(model_class: str, kwargs_json: str, channels: int, grid: tuple[int, int]) -> float:
    """FLOPs of one base forward per sample (The Well's model, its full forward)."""
    import json

    key = json.dumps(["base", model_class, kwargs_json, channels, list(grid)])
    return flop_counts().get(key, lambda: _base_flops(model_class, kwargs_json, channels, grid))


def _base_flops(model_class: str, kwargs_json: str, channels: int, grid: tuple[int, int]) -> float:
    import json

    import torch

    from irno.base.operator import model_class as the_well_class

    kwargs = json.loads(kwargs_json)

    def build():
        cls = the_well_class(model_class)
        model = cls(
            dim_in=N_STEPS_INPUT * channels, dim_out=channels, n_spatial_dims=2, spatial_resolution=grid, **kwargs
        )
        return model, torch.randn(1, N_STEPS_INPUT * channels, *grid)

    def run(model, x):
        with torch.no_grad():
            model(x)

    return _count_flops(build, run)


# ----------------------------------------------------------------------------- the jobs


def irno_jobs(study) -> dict[str, list[dict]]:
    """Every job of the IRNO study that `all` runs: rule -> one dict per job, named as the rules'
    wildcards are (dataset, base, split, experiment, seed)."""
    jobs: dict[str, list[dict]] = defaultdict(list)
    if not study.has_irno:
        return jobs
    for d in study.selected_datasets:
        source = study.datasets[d]["source"]
        if source == "simulate":
            jobs["simulate_settings"].append({"dataset": d})
        jobs[DATA_RULE[source]].append({"dataset": d})
        jobs["prepare_split"] += [{"dataset": d, "split": s} for s in SPLITS]
        for b in study.selected_bases:
            jobs["base_settings"].append({"dataset": d, "base": b})
            source = study.bases[b]["source"]
            jobs["fetch_base" if source == "pretrained" else "train_base"].append({"dataset": d, "base": b})
            jobs["check_base"].append({"dataset": d, "base": b})
            jobs["cache_base_predictions"] += [{"dataset": d, "base": b, "split": s} for s in SPLITS]
    for run in study.runs:
        job = {"dataset": run.dataset, "base": run.base, "experiment": run.experiment, "seed": run.seed}
        if not run.is_transfer:
            jobs["phi_settings"].append(job)
            jobs["train_phi"].append(job)
        jobs["evaluate"].append(job)
    for rule in ("eval_settings", "report_plan_settings", "tables", "figures"):
        jobs[rule].append({})
    return jobs


def roma_jobs(roma) -> dict[str, list[dict]]:
    """Every job of the ROMA study (an expanded study, or None): rule -> one dict per job."""
    jobs: dict[str, list[dict]] = defaultdict(list)
    if roma is None:
        return jobs
    jobs["roma_study_settings"].append({})
    jobs["roma_data_settings"] += [{}] * len(roma.datasets)
    jobs["roma_encodings_settings"] += [{}] * len(roma.encodings)
    jobs["roma_run_settings"] += [{}] * len(roma.runs)
    jobs["roma_simulate"] += [{"roma_dataset": d} for d in roma.datasets]
    jobs["roma_encode"] += [{"roma_dataset": d} for d in roma.encodings]
    jobs["roma_train"] += [{"roma_run": k} for k in roma.runs]
    jobs["roma_report"].append({})
    return jobs


def all_jobs(study, roma) -> dict[str, list[dict]]:
    jobs = irno_jobs(study)
    for rule, entries in roma_jobs(roma).items():
        jobs[rule] += entries
    jobs["report"].append({})
    return dict(jobs)


# ----------------------------------------------------------------------------- throughput


@dataclass(frozen=True)
class Rates:
    """How fast a GPU computes, per precision: measured where a benchmark says, else assumed."""

    gpu: str = "h100"
    utilisation: float = DEFAULT_UTILISATION
    measured: Throughput | None = None  # Phi training in bf16, from benchmarks/train.py on a GPU

    def bound(self, precision: str) -> Throughput:
        peak = GPU_PEAK_TFLOPS[self.gpu][precision]
        return Throughput(
            peak * 1e12 * self.utilisation,
            f"{self.utilisation:.0%} of the {self.gpu.upper()} {precision} peak ({peak:g} TFLOP/s dense, NVIDIA's "
            "datasheet): assumed, not measured",
        )

    def for_training(self, bf16: bool) -> Throughput:
        if bf16 and self.measured:
            return self.measured
        return self.bound("bf16" if bf16 else "tf32")


def measured_training(path: Path) -> Throughput | None:
    """Phi's training throughput measured on a GPU by benchmarks/train.py (its JSON), as FLOP/s: the
    samples per second times the FLOPs of one sample's step at the benchmark's settings (the
    paper's Phi, K = 6, 11 channels, bf16 autocast on CUDA). None without such a measurement."""
    from irno.files import read_json

    if not path.is_file():
        return None
    result = read_json(path)
    gpu = (result.get("machine") or {}).get("gpu")
    rates = [h for h in result.get("headlines", []) if h.get("metric", "").startswith("training throughput, ours")]
    if not gpu or not rates:
        return None
    grid = int(result["params"]["grid"])
    step, _ = phi_flops('{"backbone": "unet"}', 11, (grid, grid), 6)
    samples = float(rates[0]["value"])
    return Throughput(
        samples * step, f"measured: {samples:.0f} samples/s of Phi's training at {grid}^2 on {gpu} ({path})"
    )


# ----------------------------------------------------------------------------- expected work


def _network_json(settings: dict) -> str:
    import json

    return json.dumps(settings.get("network") or {}, sort_keys=True)


def _base_kwargs(settings: dict) -> str:
    import json

    kwargs = settings.get("model_kwargs") or PUBLISHED_BASE_KWARGS.get(settings["model_class"], {})
    return json.dumps(kwargs, sort_keys=True)


def expected_work(rule: str, job: dict, study, roma, rates: Rates) -> tuple[float, Throughput] | None:
    """(FLOPs, throughput) of one GPU job, or None where the work is not known (a dataset of unknown size)."""
    from irno.config import EvalConfig, PhiConfig
    from irno.settings import from_dict

    if rule == "roma_train":
        import json

        from irno.roma.cost import train_step_flops

        run = roma.runs[job["roma_run"]]
        data = [roma.datasets[run["dataset"]], roma.encodings.get(run["dataset"])]  # its graph and encodings
        key = json.dumps(["roma", run, data], sort_keys=True)
        step = flop_counts().get(key, lambda: train_step_flops(run, roma))
        # TF32 matrix products on a GPU, as the reference's JAX (irno roma train)
        return run["train"]["steps"] * step, rates.bound("tf32")
    if rule == "roma_encode":
        encodings = roma.encodings[job["roma_dataset"]]
        nodes = roma_data_shape(roma, job["roma_dataset"]).nodes
        # skip-gram: each (node, context) pair of each walk and its negatives, a dot product and its
        # two gradients of `node2vec` dimensions (6 FLOPs per dimension)
        pairs = (
            encodings["epochs"] * nodes * encodings["walks_per_node"] * encodings["walk_length"] * encodings["context"]
        )
        return pairs * (1 + encodings["negatives"]) * 6 * encodings["node2vec"], rates.bound("fp32")

    shape = dataset_shape(study, job["dataset"])
    if shape is None:
        return None
    n = {s: shape.samples(s) for s in SPLITS}
    if rule in ("train_phi", "evaluate"):
        run = study.run(job["dataset"], job["base"], job["experiment"], job["seed"])
        cfg = from_dict(PhiConfig, study.phi_settings(run.trained_experiment, run.trained_on_base, run.seed))
        step, forward = phi_flops(_network_json(study.phi_settings(run.trained_experiment, run.trained_on_base)),
                                  shape.channels, shape.grid, cfg.train.K)  # fmt: skip
        if rule == "train_phi":
            flops = cfg.train.epochs * (n["train"] * step + n["valid"] * cfg.train.K * forward)
            return flops, rates.for_training(cfg.train.bf16)
        steps = cfg.train.K + from_dict(EvalConfig, study.eval_settings()).extra_steps
        return n["test"] * steps * forward, rates.bound("tf32")
    settings = study.base_settings(job["dataset"], job["base"])
    forward = base_flops(settings["model_class"], _base_kwargs(settings), shape.channels, shape.grid)
    if rule == "cache_base_predictions":
        return n[job["split"]] * forward, rates.bound("tf32")
    if rule == "check_base":
        checked = min(n["valid"], settings.get("check_max_samples") or n["valid"])
        return 2 * (checked + n["test"]) * forward, rates.bound("tf32")  # both forwards
    if rule == "train_base":
        epochs = settings.get("epochs", 10)
        return epochs * (3 * n["train"] + n["valid"]) * forward, rates.bound("tf32")
    raise IrnoError(f"rule {rule!r}: no work model in irno.estimate")


# ----------------------------------------------------------------------------- disk


def _parameters(build) -> int:
    import torch

    with torch.device("meta"):
        model = build()
    return sum(p.numel() for p in model.parameters())


def phi_parameters(network_json: str, channels: int) -> int:
    import json

    key = json.dumps(["phi parameters", network_json, channels])
    return flop_counts().get(key, lambda: _phi_parameters(network_json, channels))


def _phi_parameters(network_json: str, channels: int) -> int:
    import json

    from irno.config import NetworkConfig
    from irno.refinement.phi import build_phi
    from irno.settings import from_dict

    cfg = from_dict(NetworkConfig, json.loads(network_json))
    return _parameters(lambda: build_phi(cfg, (N_STEPS_INPUT + 1) * channels, channels))


def folders(study, roma) -> list[Folder]:
    """The output folders of a run and what they will hold."""
    from irno.config import EvalConfig
    from irno.settings import from_dict
    from irno.sizes import FLOAT32

    out: list[Folder] = []
    if study.has_irno:
        home = study.data_home
        downloads = Folder("The Well's files (downloads)", study.data_root)
        simulated = Folder("simulated datasets (The Well's format)", home / "data")
        stores = Folder("prepared stores", home / "data")
        bases = Folder("base models, checks and caches", home / "base")
        runs = Folder("trainings (Phi, resume states)", study.results_dir / "runs")
        evaluations = Folder("evaluations", study.results_dir / "eval")
        unknown = []
        for d in study.selected_datasets:
            shape = dataset_shape(study, d)
            if shape is None:
                unknown.append(d)
                continue
            source = study.datasets[d]["source"]
            if source == "download":
                downloads.bytes += shape.files_bytes
            elif source == "simulate":
                simulated.bytes += shape.files_bytes
            stores.bytes += sum(shape.store_bytes(s) for s in SPLITS)
            for b in study.selected_bases:
                settings = study.base_settings(d, b)
                dtype = settings.get("cache_dtype", "float32")
                bases.bytes += sum(shape.cache_bytes(s, dtype) for s in SPLITS)
                bases.bytes += (
                    base_parameters(settings["model_class"], _base_kwargs(settings), shape.channels) * FLOAT32
                )
            extra = from_dict(EvalConfig, study.eval_settings()).extra_steps
            for run in (r for r in study.runs if r.dataset == d):
                settings = study.phi_settings(run.trained_experiment, run.trained_on_base, run.seed)
                if not run.is_transfer:
                    # checkpoint.pt, and last.pt: Phi, its best weights, Adam's two moments
                    runs.bytes += 5 * phi_parameters(_network_json(settings), shape.channels) * FLOAT32
                steps = settings["train"].get("K", 6) + extra + 1
                # per-sample spectral MSE per step, and the example fields of the figure
                evaluations.bytes += shape.samples("test") * steps * 8 + 4 * shape.frame_bytes
        if unknown:
            note = f"not counted: {', '.join(unknown)} (size unknown to irno.sizes)"
            for folder in (downloads, stores, bases, evaluations):
                folder.note = note
        local = [d for d in study.selected_datasets if study.datasets[d]["source"] == "local"]
        if local:
            downloads.note = f"none: {', '.join(local)} read in place from a local copy"
        out += [f for f in (downloads, simulated, stores, bases, runs, evaluations) if f.bytes or f.note]
    if roma is not None:
        roma_dir = study.results_dir / "roma"
        series = Folder("ROMA series and graphs", roma_dir / "data")
        encodings = Folder("ROMA graph encodings", roma_dir / "data")
        checkpoints = Folder("ROMA trainings (model, resume state)", roma_dir / "runs")
        for d in roma.datasets:
            series.bytes += roma_data_shape(roma, d).series_bytes
        for d in roma.encodings:
            encodings.bytes += roma_data_shape(roma, d).encodings_bytes
        for key in roma.runs:
            # checkpoint.pt, and last.pt: the model and Adam's two moments
            checkpoints.bytes += 4 * roma_parameters(key, roma) * FLOAT32
        out += [series, encodings, checkpoints]
    return out


def base_parameters(model_class: str, kwargs_json: str, channels: int) -> int:
    import json

    key = json.dumps(["base parameters", model_class, kwargs_json, channels])
    return flop_counts().get(key, lambda: _base_parameters(model_class, kwargs_json, channels))


def _base_parameters(model_class: str, kwargs_json: str, channels: int) -> int:
    import json

    from irno.base.operator import model_class as the_well_class

    cls = the_well_class(model_class)
    kwargs = json.loads(kwargs_json)
    grid = (64, 64)  # the parameter count does not depend on the grid
    return _parameters(
        lambda: cls(
            dim_in=N_STEPS_INPUT * channels, dim_out=channels, n_spatial_dims=2, spatial_resolution=grid, **kwargs
        )
    )


def roma_parameters(key: str, roma) -> int:
    """Trained parameters of one ROMA run's model (built on the meta device; equal models once)."""
    import json

    from irno.roma.models import parameter_counts
    from irno.roma.settings import RunConfig
    from irno.settings import from_dict, to_dict

    run = from_dict(RunConfig, roma.runs[key])
    encodings = roma.encodings.get(run.dataset) or {}
    dim = sum(encodings.get(kind, 0) for kind in run.model.used_encodings)
    shape = json.dumps(["roma parameters", to_dict(run.model), run.train.history, run.train.subgraph_nodes, dim],
                       sort_keys=True)  # fmt: skip
    return flop_counts().get(shape, lambda: parameter_counts(run, dim)[0])


def free_bytes(path: Path) -> tuple[float, Path]:
    """Free space of the file system where `path` will be (its nearest existing folder)."""
    probe = Path(os.path.abspath(path))
    while not probe.exists():
        probe = probe.parent
    return float(shutil.disk_usage(probe).free), probe


# ----------------------------------------------------------------------------- the estimate


def estimate(study, roma, site: SiteSettings, rates: Rates) -> Estimate:
    rows: list[RuleCost] = []
    used: dict[str, tuple[Throughput, list[str]]] = {}  # source -> the throughput and the rules using it
    for rule, jobs in all_jobs(study, roma).items():
        if not jobs:
            continue
        row = RuleCost(rule, jobs=len(jobs))
        if rule in LOCAL_RULES:
            row.local, row.basis = True, "runs beside Snakemake"
            rows.append(row)
            continue
        row.gpus = site.gpus(rule)
        hours = runtime_minutes(rule, 1, site) / 60
        if not row.gpus:
            cores = 2 if rule == "simulate_dataset" else 1  # the rule's threads
            row.requested_cpu_hours = len(jobs) * cores * hours
            row.basis = "CPU job"
            rows.append(row)
            continue
        row.requested_gpu_hours = len(jobs) * row.gpus * hours
        unknown = 0
        for job in jobs:
            work = expected_work(rule, job, study, roma, rates)
            if work is None:
                unknown += 1
                continue
            flops, throughput = work
            row.expected_gpu_hours += flops / throughput.flops_per_second / HOUR
            rules = used.setdefault(throughput.source, (throughput, []))[1]
            if rule not in rules:
                rules.append(rule)
            row.basis = "FLOPs / measured rate" if throughput.source.startswith("measured") else "FLOPs / assumed rate"
        if unknown:
            row.basis += f"; {unknown} job(s) on data of unknown size not counted"
        if rule == "roma_encode":
            row.basis += "; the Laplacian eigenvectors (on the job's CPU cores) not counted"
        rows.append(row)
    notes = []
    if site.max_runtime or site.max_mem_mb:
        caps = f"IRNO_SLURM_MAX_RUNTIME={site.max_runtime}, IRNO_SLURM_MAX_MEM_MB={site.max_mem_mb}"
        notes.append(f"requests capped by the environment: {caps}")
    return Estimate(rows, folders(study, roma), used, notes)


def memory_table(study, roma, site: SiteSettings) -> list[tuple[str, int, int]]:
    """(rule, smallest, largest) memory in MB its jobs request at the first attempt."""
    out = []
    for rule, jobs in all_jobs(study, roma).items():
        if rule in LOCAL_RULES or not jobs:
            continue
        mbs = [memory_mb(rule, held_bytes(rule, study, roma, job), 1, site) for job in jobs]
        out.append((rule, min(mbs), max(mbs)))
    return out


def _hours(value: float) -> str:
    return f"{value:,.1f}" if value >= 0.1 or value == 0 else f"{value:.2g}"


def render(result: Estimate, memory: list[tuple[str, int, int]]) -> str:
    from tabulate import tabulate

    table = []
    for r in result.rules:
        if r.local:  # one row for them all, at the end
            continue
        table.append([
            r.rule, r.jobs, r.gpus or "-",
            _hours(r.requested_gpu_hours) if r.gpus else f"({_hours(r.requested_cpu_hours)} CPU core-h)",
            _hours(r.expected_gpu_hours) if r.gpus else "-",
            next((f"{lo / 1000:,.0f}" if lo == hi else f"{lo / 1000:,.0f}-{hi / 1000:,.0f}") for rule, lo, hi in memory
                 if rule == r.rule),
            r.basis,
        ])  # fmt: skip
    local = [r for r in result.rules if r.local]
    if local:
        table.append([f"{len(local)} local rules", sum(r.jobs for r in local), "-", "", "", "",
                      "run beside Snakemake (settings, downloads, report)"])  # fmt: skip
    requested = sum(r.requested_gpu_hours for r in result.rules)
    expected = sum(r.expected_gpu_hours for r in result.rules)
    table.append(["total", sum(r.jobs for r in result.rules), "", _hours(requested), _hours(expected), "", ""])
    lines = [
        "GPU-hours by rule (requested: the jobs' time limits at the first attempt; expected: their work over the "
        "throughput below)",
        "",
        tabulate(
            table,
            headers=["rule", "jobs", "GPUs/job", "requested GPU-h", "expected GPU-h", "memory/job GB", "expected from"],
            tablefmt="simple",
            disable_numparse=True,
        ),
        "",
        "Throughput (expected GPU-hours = FLOPs / throughput):",
        *(
            f"  {', '.join(rules)}: {t.flops_per_second / 1e12:,.1f} TFLOP/s, {t.source}"
            for t, rules in result.throughputs.values()
        ),
        "",
        "Disk by output folder",
        "",
    ]
    disk = []
    by_fs: dict[int, list] = {}  # file system -> [bytes landing there, free bytes, a folder on it]
    for f in result.folders:
        free, probe = free_bytes(f.path)
        landing = by_fs.setdefault(probe.stat().st_dev, [0.0, free, probe])
        landing[0] += f.bytes
        disk.append([f.what, str(f.path), f"{f.bytes / GB:,.1f}", f"{free / GB:,.0f}", f.note])
    disk.append(["total", "", f"{sum(f.bytes for f in result.folders) / GB:,.1f}", "", ""])
    lines.append(tabulate(disk, headers=["folder", "where", "GB", "free there GB", ""], tablefmt="simple",
                          disable_numparse=True))  # fmt: skip
    for needed, free, probe in by_fs.values():
        if needed > free:
            lines.append(f"warning: {needed / GB:,.0f} GB will land on the file system of {probe}, which has "
                         f"{free / GB:,.0f} GB free")  # fmt: skip
    lines += ["", *result.notes]
    return "\n".join(lines).rstrip() + "\n"


def roma_expanded(study):
    """The config's expanded ROMA study, or None without a roma: section."""
    from irno.roma.settings import study_from_dict
    from irno.roma.study import expand_study

    section = study.roma_section()
    return expand_study(study_from_dict(section)) if section is not None else None
