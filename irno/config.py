"""Configuration dataclasses for the refinement operator, its training and its evaluation.

Defaults are the paper's (docs/method.md). The workflow resolves one experiment (defaults plus
the experiment's overrides) into a plain dict, writes it as the run's ``settings.yaml`` and the
CLI rebuilds these dataclasses from it with `from_dict`, which rejects unknown keys and values
of the wrong type by name (``train.K: expected int, got 'six'``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from irno.settings import from_dict
from irno.settings import require as _require


@dataclass
class NetworkConfig:
    """The refinement operator Phi (docs/method.md#phi)."""

    backbone: Literal["unet", "fno"] = "unet"  # "fno": a neuralop FNO with the same channels (backbone ablation)
    base_channels: int = 16  # U-Net widths base * 2^level: 16, 32, 64, 128; bottleneck 256
    depth: int = 4  # encoder levels; the grid must be divisible by 2^depth
    padding: Literal["circular", "zeros"] = "circular"  # circular: periodic domains
    norm: Literal["layer", "batch", "group"] = "layer"  # LayerNorm over channels, BatchNorm2d or GroupNorm
    num_groups: int = 8  # GroupNorm groups (halved until they divide the width)
    # "align_corners": bilinear with align_corners=True, the released reference (default, for
    # comparability). It is not periodic: Phi then only approximately commutes with shifts.
    # "periodic": bilinear on a circularly padded grid; Phi commutes exactly with shifts by
    # multiples of 2^depth pixels.
    upsample: Literal["align_corners", "periodic"] = "align_corners"
    fno_modes: int = 16  # backbone "fno": Fourier modes kept per dimension
    fno_hidden_channels: int = 32  # backbone "fno": width
    fno_layers: int = 4  # backbone "fno": Fourier layers

    def __post_init__(self):
        _require(self.base_channels >= 1, "network.base_channels", self.base_channels, ">= 1")
        _require(self.depth >= 1, "network.depth", self.depth, ">= 1")


@dataclass
class LossConfig:
    """Weights of the objective (docs/method.md#the-objective)."""

    spectral_weight: float = 1.0  # beta_s; 0 disables the spectral term
    lambda_start: float = 1.0  # progressive exponent lambda_k, k = 0 .. K-1
    lambda_end: float = 2.0  # lambda_k rises linearly from lambda_start (k = 0) to lambda_end (k = K-1)
    spectral_warmup_epochs: int = 0  # linear warm-up of beta_s (0: none)
    fixed_point_weight: float = 0.01  # beta_fp; 0 disables the fixed-point term
    fixed_point_warmup_epochs: int = 5  # linear warm-up of beta_fp (0: none)

    def __post_init__(self):
        _require(self.spectral_weight >= 0, "loss.spectral_weight", self.spectral_weight, ">= 0")
        _require(self.fixed_point_weight >= 0, "loss.fixed_point_weight", self.fixed_point_weight, ">= 0")


@dataclass
class PhiTrainConfig:
    """Optimisation of Phi (docs/method.md#training-defaults, #validation)."""

    K: int = 6  # refinement steps unrolled in training
    alpha: float = 0.2  # step size of h_{k+1} = h_k + alpha * Phi(cat[x, h_k])
    epochs: int = 150
    batch_size: int = 16  # samples per optimiser step (shared among DDP processes)
    lr: float = 3e-4  # Adam's learning rate at the start of the cosine schedule
    weight_decay: float = 1e-5  # Adam's weight decay
    eta_min: float = 1e-6  # cosine schedule floor
    grad_clip: float = 1.0  # gradient-norm clip (0: none)
    seed: int = 42  # initialisation and the shuffle of every epoch
    outlier_threshold: float = 100.0  # valid samples with MSE above this are outliers
    max_outlier_pct: float = 5.0  # best checkpoint only while fewer outliers than this
    max_skipped_fraction: float = 0.1  # non-finite batches tolerated per epoch; more: the training diverged
    device: str = "auto"  # auto: CUDA when available, else CPU; or cpu, cuda, cuda:1
    bf16: bool = False  # bf16 autocast (GPU only)
    channels_last: bool = True  # U-Net Phi in the channels_last memory format (faster on CPU and GPU)
    compile: bool = False  # torch.compile Phi (GPU only)
    num_workers: int = 0  # DataLoader worker processes (0: batches read in the training process)

    def __post_init__(self):
        _require(self.K >= 1, "train.K", self.K, ">= 1")
        _require(self.alpha > 0, "train.alpha", self.alpha, "> 0")
        _require(self.epochs >= 1, "train.epochs", self.epochs, ">= 1")
        _require(self.batch_size >= 1, "train.batch_size", self.batch_size, ">= 1")
        _require(self.lr > 0, "train.lr", self.lr, "> 0")


@dataclass
class PhiConfig:
    """Everything that defines one trained Phi: what a run's settings.yaml holds."""

    network: NetworkConfig = field(default_factory=NetworkConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: PhiTrainConfig = field(default_factory=PhiTrainConfig)


@dataclass
class EvalConfig:
    """Evaluation on the test split (docs/method.md#evaluation)."""

    extra_steps: int = 6  # steps beyond K
    batch_size: int = 16  # samples per batch of the iteration
    divergence_factor: float = 1e3  # a step diverges when its error exceeds this x the base's
    example_index: int = 0  # test sample kept for the field figure
    device: str = "auto"  # auto: CUDA when available, else CPU

    def __post_init__(self):
        _require(self.extra_steps >= 0, "evaluate.extra_steps", self.extra_steps, ">= 0")
        _require(self.batch_size >= 1, "evaluate.batch_size", self.batch_size, ">= 1")


@dataclass
class SplitPlan:
    """Which (zeta, dipole) pairs a simulated split holds, and trajectories per pair (one file each)."""

    pairs: list = field(default_factory=list)  # [[zeta, dipole], ...]: The Well's zeta and alpha
    trajectories: int = 1  # per pair

    def __post_init__(self):
        _require(self.trajectories >= 1, "simulate.<split>.trajectories", self.trajectories, ">= 1")
        for pair in self.pairs:
            _require(
                isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(v, (int, float)) for v in pair),
                "simulate.<split>.pairs",
                pair,
                "a [zeta, dipole] pair of numbers",
            )


SIMULATED_DATASETS = ("active_matter",)  # what the embedded simulator (irno.sim) can produce


@dataclass
class SimulationConfig:
    """The embedded active-matter re-simulation, written in The Well's format.

    Its equations: docs/method.md#active-matter-equations.
    """

    dataset: str = "active_matter"  # the Well dataset it stands in for (one of SIMULATED_DATASETS)
    grid: int = 64  # grid points per side of the 10 x 10 periodic box (even)
    frames: int = 81  # saved frames per trajectory
    frame_dt: float = 0.25  # time between saved frames
    dt: float = 0.025  # integrator step
    seed: int = 0  # base seed; each trajectory derives its own from (seed, split, pair, index)
    workers: int = 2  # parallel processes
    train: SplitPlan = field(default_factory=lambda: SplitPlan([[1, -1], [3, -2], [5, -3], [9, -4]], 2))
    valid: SplitPlan = field(default_factory=lambda: SplitPlan([[7, -2], [11, -3]], 1))
    test: SplitPlan = field(default_factory=lambda: SplitPlan([[3, -4], [13, -1]], 1))

    def __post_init__(self):
        _require(
            self.dataset in SIMULATED_DATASETS,
            "simulate.dataset",
            self.dataset,
            f"one the simulator can make: {', '.join(SIMULATED_DATASETS)}",
        )
        _require(self.grid >= 16 and self.grid % 2 == 0, "simulate.grid", self.grid, "even and >= 16")
        _require(self.frames >= 6, "simulate.frames", self.frames, ">= 6 (4 input frames and a target)")
        _require(self.frame_dt > 0, "simulate.frame_dt", self.frame_dt, "> 0")
        _require(self.dt > 0, "simulate.dt", self.dt, "> 0")
        steps = round(self.frame_dt / self.dt)
        _require(
            steps >= 1 and abs(steps * self.dt - self.frame_dt) <= 1e-9 * self.frame_dt,
            "simulate.dt",
            self.dt,
            f"a whole fraction of frame_dt = {self.frame_dt}",
        )
        _require(self.seed >= 0, "simulate.seed", self.seed, ">= 0")
        _require(self.workers >= 1, "simulate.workers", self.workers, ">= 1")
        for split in ("train", "valid", "test"):
            pairs = [(float(z), float(a)) for z, a in getattr(self, split).pairs]
            _require(bool(pairs), f"simulate.{split}.pairs", pairs, "at least one [zeta, dipole] pair")
            repeated = sorted({p for p in pairs if pairs.count(p) > 1})
            _require(not repeated, f"simulate.{split}.pairs", repeated, "pairs listed once (one file each)")
            for zeta, _ in pairs:
                # RK4's stability limit for the alignment term: dt below about 0.7 / zeta.
                if self.dt * abs(zeta) >= 0.7:
                    _require(
                        False,
                        "simulate.dt",
                        self.dt,
                        f"below 0.7 / zeta = {0.7 / abs(zeta):.4g} for zeta = {zeta} in simulate.{split}.pairs",
                    )


@dataclass
class BaseConfig:
    """A frozen base operator T_base: where it comes from, how it runs, how it is checked and cached."""

    model_class: Literal["FNO", "TFNO", "UNetClassic", "UNetConvNext"] = "FNO"  # one of The Well's benchmark models
    source: Literal["pretrained", "train"] = "pretrained"  # fetched (rule fetch_base) or trained here (train_base)
    pretrained: str = ""  # Hub id (polymathic-ai/FNO-active_matter) or a local save_pretrained directory
    revision: str | None = None  # Hub revision (commit hash or tag) to pin
    # FNO/TFNO only. "legacy": projection(lifting(x)), what the published checkpoints were trained
    # with (the_well <= 1.1.0 dropped the Fourier blocks' output); "fixed": the installed forward;
    # "auto": the one the base check finds reproducing the published numbers (irno.base.check).
    forward: Literal["fixed", "legacy", "auto"] = "fixed"
    # FNO/TFNO trained here (source: train) only: the forward the weights are trained with; default
    # the one the base runs in ("fixed" for auto). "legacy" trains lifting -> projection alone, as
    # the_well <= 1.1.0 trained the published checkpoints; run with forward "fixed" such a base is
    # what those checkpoints compute under the_well 1.2.0 (Fourier blocks at their initial weights).
    train_forward: Literal["fixed", "legacy"] | None = None
    model_kwargs: dict = field(default_factory=dict)  # constructor arguments when source = train
    epochs: int = 10  # local training (source = train)
    lr: float = 1e-3  # local training: Adam's learning rate
    weight_decay: float = 0.0  # local training: Adam's weight decay
    batch_size: int = 16  # local training: samples per step
    seed: int = 0  # local training: initialisation and shuffles
    device: str = "auto"  # auto: CUDA when available, else CPU
    published_valid_vrmse: float | None = None  # The Well's valid VRMSE, for the base check
    published_single_pass_pooled: float | None = None  # the paper's single-pass VRMSE (pooled, test split)
    published_source: str = ""  # where the published numbers come from (recorded in base_check.json)
    check_tolerance: float = 0.10  # relative miss of the published number that fails the check
    strict: bool = True  # false: a failed check warns instead of stopping
    check_max_samples: int | None = None  # base check on this many evenly spaced valid samples (None: all)
    cache_dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # storage of the cached predictions h0
    cache_batch_size: int = 32  # inference batch of the cache build and the base check

    def __post_init__(self):
        _require(self.epochs >= 1, "base.epochs", self.epochs, ">= 1")
        _require(self.lr > 0, "base.lr", self.lr, "> 0")
        _require(self.batch_size >= 1, "base.batch_size", self.batch_size, ">= 1")
        _require(self.cache_batch_size >= 1, "base.cache_batch_size", self.cache_batch_size, ">= 1")
        _require(self.check_tolerance > 0, "base.check_tolerance", self.check_tolerance, "> 0")
        _require(
            self.check_max_samples is None or self.check_max_samples >= 1,
            "base.check_max_samples",
            self.check_max_samples,
            ">= 1 or null",
        )
        if self.source == "pretrained":
            _require(bool(self.pretrained), "base.pretrained", self.pretrained, "a Hub id or a local directory")
        _require(
            self.train_forward is None or self.source == "train",
            "base.train_forward",
            self.train_forward,
            "unset for a fetched base (its weights are trained already)",
        )


@dataclass
class PlanExperiment:
    """One experiment of a report plan: its directory name, its ablation group, its display label."""

    name: str = ""  # eval/<dataset>/<base>/<name>/
    group: str = ""  # ablation-table group: "loss terms", "K", "alpha", "lambda schedule", ...
    label: str = ""  # shown in tables and legends; empty: the name

    def __post_init__(self):
        _require(bool(self.name), "plan.experiments[].name", self.name, "a non-empty experiment name")
        _require(bool(self.group), f"plan.experiments[{self.name}].group", self.group, "a non-empty group name")
        self.label = self.label or self.name


SWEEP_KEYS = ("K", "alpha")  # train keys whose one-key experiments form a convergence sweep (metrics.json keys too)


def seed_dir(seed: int) -> str:
    """The folder level of one seed's run and evaluation in a multi-seed study."""
    return f"seed_{seed}"


@dataclass
class ReportPlan:
    """Which evaluated runs the tables and figures show (``irno.report``; docs/outputs.md, "Report plan").

    The workflow writes it from the experiment grid it scheduled; a run listed here but absent
    under the evaluation root is shown as missing, never skipped.
    """

    run_name: str = ""
    datasets: list = field(default_factory=list)  # [active_matter, ...]
    bases: list = field(default_factory=list)  # base names as in eval/<dataset>/<base>/
    seeds: list = field(default_factory=list)  # [] one run per cell; [42, 43, ...] eval/<d>/<b>/<e>/seed_<n>/
    main_experiment: str = "irno"  # the full method: main table, per-field table, spectral figures
    experiments: list = field(default_factory=list)  # [{name, group, label}] -> PlanExperiment
    band_experiments: list = field(default_factory=list)  # side by side in the band table and figure (b)
    sweeps: dict = field(default_factory=dict)  # K / alpha -> [experiment]; the main experiment joins each
    figure_dataset: str = ""  # the fields figure's run; empty: the first dataset
    figure_base: str = ""  # empty: the first base
    simulated: list = field(default_factory=list)  # datasets that are re-simulations: published numbers not compared
    reported_names: dict = field(default_factory=dict)  # base -> its model's name in reported.yaml (default: same)

    def __post_init__(self):
        for key in ("datasets", "bases"):
            values = getattr(self, key)
            _require(
                isinstance(values, list) and bool(values) and all(isinstance(v, str) and v for v in values),
                f"plan.{key}",
                values,
                "a non-empty list of names",
            )
            _require(len(set(values)) == len(values), f"plan.{key}", values, "free of duplicates")
        _require(
            isinstance(self.seeds, list)
            and all(isinstance(v, int) and not isinstance(v, bool) for v in self.seeds)
            and len(set(self.seeds)) == len(self.seeds),
            "plan.seeds",
            self.seeds,
            "a list of distinct integer seeds",
        )
        _require(
            isinstance(self.experiments, list) and bool(self.experiments),
            "plan.experiments",
            self.experiments,
            "a non-empty list",
        )
        self.experiments = [
            e if isinstance(e, PlanExperiment) else from_dict(PlanExperiment, e, f"plan.experiments[{i}]")
            for i, e in enumerate(self.experiments)
        ]
        names = [e.name for e in self.experiments]
        _require(len(set(names)) == len(names), "plan.experiments", names, "free of duplicate names")
        known = f"one of the plan's experiments ({', '.join(names)})"
        _require(self.main_experiment in names, "plan.main_experiment", self.main_experiment, known)
        for name in self.band_experiments:
            _require(name in names, "plan.band_experiments", name, known)
        _require(isinstance(self.sweeps, dict), "plan.sweeps", self.sweeps, "a mapping K/alpha -> [experiments]")
        for key, members in self.sweeps.items():
            _require(key in SWEEP_KEYS, "plan.sweeps", key, f"one of {', '.join(SWEEP_KEYS)}")
            _require(isinstance(members, list), f"plan.sweeps.{key}", members, "a list of experiment names")
            for name in members:
                _require(name in names, f"plan.sweeps.{key}", name, known)
        self.figure_dataset = self.figure_dataset or self.datasets[0]
        self.figure_base = self.figure_base or self.bases[0]
        _require(
            self.figure_dataset in self.datasets, "plan.figure_dataset", self.figure_dataset, "one of plan.datasets"
        )
        _require(self.figure_base in self.bases, "plan.figure_base", self.figure_base, "one of plan.bases")
        for name in self.simulated:
            _require(name in self.datasets, "plan.simulated", name, "one of plan.datasets")
        for name in self.reported_names:
            _require(name in self.bases, "plan.reported_names", name, "one of plan.bases")

    @property
    def seed_dirs(self) -> list[str]:
        """The folder of each seed's evaluation below eval/<dataset>/<base>/<experiment>/ ("" without seeds)."""
        return [seed_dir(seed) for seed in self.seeds] or [""]

    def experiment(self, name: str) -> PlanExperiment:
        return next(e for e in self.experiments if e.name == name)

    def sweep(self, key: str) -> list[str]:
        """The sweep's experiments with the full method included (at its own K / alpha)."""
        members = list(self.sweeps[key])
        return members if self.main_experiment in members else [self.main_experiment, *members]


# ----------------------------------------------------------------------------- settings files

# What `irno write-settings --kind KIND` validates against (`irno.settings.write_settings`): the
# dataclass each step's settings YAML holds.
SETTINGS_KINDS: dict[str, type] = {
    "phi": PhiConfig,
    "eval": EvalConfig,
    "base": BaseConfig,
    "simulate": SimulationConfig,
    "report_plan": ReportPlan,
}
