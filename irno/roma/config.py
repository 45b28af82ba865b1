"""Configuration of the ROMA study: data, model and training dataclasses, and the study plan.

A study (the ``roma:`` section of a pipeline config, e.g. ``config/demo.yaml``) names its
datasets, the default model and training settings, and the four experiments of the paper, each
a grid ``datasets x models x vary``:

    roma:
      datasets: {km3k: {graph: {nodes: 3000}, dynamics: {frames: 400, t_end: 4.0}, seed: 1}}
      model: {width: 32}                    # defaults for every run
      train: {epochs: 8}
      experiments:
        data_noise:        {datasets: [km3k], models: [deeponet, roma], vary: {train.noise_eta: [0.0, 4.0e-4]}}
        effective_dynamics: {datasets: [km3k], models: [roma], vary: {model.learned_pde: [false, true]}}
        positional:        {datasets: [km3k], models: [roma], vary: {model.positional: [laplacian, none]}}
        parameter_scaling: {datasets: [km3k], models: [roma], vary: {model.width: [16, 32, 64]}}

`plan_study` expands the grids into runs. A run is identified by its resolved settings
(``<dataset>-<model>-<hash>``), so the same settings reached from two experiments (the default
ROMA run is in all four) train once. Every step of the pipeline then reads one resolved
settings file: a `DataConfig` for ``irno roma simulate``, a `RunConfig` for ``train`` and
``evaluate``; `write_settings` writes them. `report_outputs` names the tables and figures a plan
produces. Light on purpose (no torch, no pandas): the workflow imports it at parse time.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from irno.utils import (
    IrnoError,
    from_dict,
    load_settings,
    read_yaml,
    require,
    stable_hash,
    to_dict,
    write_json,
    write_yaml,
)

MODEL_KINDS = ("deeponet", "deeponet_mp", "nomad_mp", "roma")
EXPERIMENTS = ("data_noise", "effective_dynamics", "positional", "parameter_scaling")
TABLE_FORMATS = ("csv", "md", "tex")
FIGURE_FORMATS = ("pdf", "png")


# ----------------------------------------------------------------------------- data


@dataclass
class GraphConfig:
    """Random hyperbolic graph on the curvature -1 plane (SPEC 7); the largest component is kept.

    ``nodes`` points are drawn with radius r = arcsinh(u (cosh R - 1)), u ~ U(0, 1), and a uniform
    angle; two points are linked when their hyperbolic distance is below R. With this radial law
    the expected degree is (8 / pi) N exp(-R / 2) (Krioukov et al. 2010, alpha = zeta = 1), so
    R = 2 ln(8 N / (pi * mean_degree)). The reference code's R = 2 ln(N / 3) is mean_degree =
    24 / pi = 7.64: its graphs have mean degree 7.6, not the 3 the paper's text states. The
    curvature only sets the unit of length here (alpha = zeta), so it is not a parameter.
    """

    nodes: int = 3000  # points drawn; the stored graph is their largest connected component
    mean_degree: float = 24 / math.pi  # expected degree of the drawn graph (see above)

    def __post_init__(self):
        require(self.nodes >= 10, "graph.nodes", self.nodes, ">= 10")
        require(0 < self.mean_degree < self.nodes, "graph.mean_degree", self.mean_degree, "in (0, nodes)")


@dataclass
class DynamicsConfig:
    """Kuramoto oscillators with degree-weighted coupling and time-varying K(t) (SPEC 7).

    dtheta_i/dt = omega_i + K(t) sum_j w_ij sin(theta_j - theta_i),
    w_ij = sqrt(deg_j) / sum_{k in N(i)} sqrt(deg_k),
    K(t) = K [a + (1 - a) sin^2(t') ((1 - d) |cos(g t')|^b + d)],  t' = pi * periods * t / t_end
    (the reference code's time scaling: sin^2 t' rises and falls `periods` times over the run).
    """

    K: float = 5.0
    a: float = 0.5
    b: float = 10.0
    g: float = 10.0
    d: float = 0.5
    periods: float = 1.0
    omega_std: float = 1.0  # omega ~ N(0, omega_std^2), clipped at +-omega_clip * omega_std, centred
    omega_clip: float = 5.0
    theta0_std: float = 5.0  # theta(0) ~ N(0, 25)
    t_end: float = 20.0
    frames: int = 2000  # saved frames at t = k * t_end / (frames - 1)
    method: Literal["DOP853", "RK45"] = "DOP853"  # scipy's adaptive explicit Runge-Kutta, float64
    rtol: float = 1e-8
    atol: float = 1e-8
    dtype: Literal["float32", "float64"] = "float32"  # stored phases (the integration is float64)

    def __post_init__(self):
        require(self.t_end > 0, "dynamics.t_end", self.t_end, "> 0")
        require(self.frames >= 3, "dynamics.frames", self.frames, ">= 3")
        require(0 <= self.a <= 1, "dynamics.a", self.a, "in [0, 1]")
        require(0 <= self.d <= 1, "dynamics.d", self.d, "in [0, 1]")
        require(self.omega_std >= 0, "dynamics.omega_std", self.omega_std, ">= 0")
        require(self.rtol > 0 and self.atol > 0, "dynamics.rtol/atol", (self.rtol, self.atol), "> 0")

    @property
    def frame_dt(self) -> float:
        return self.t_end / (self.frames - 1)


@dataclass
class DataConfig:
    """One Kuramoto dataset: a graph, its dynamics and the seed of both."""

    graph: GraphConfig = field(default_factory=GraphConfig)
    dynamics: DynamicsConfig = field(default_factory=DynamicsConfig)
    seed: int = 0


# ----------------------------------------------------------------------------- model and training


@dataclass
class ModelConfig:
    """A neural operator on graphs: ROMA or one of the paper's baselines.

    - ``deeponet``: per-node MLP branch on the history (no graph) + Fourier-feature trunk
    - ``deeponet_mp``: message-passing encoder + the same DeepONet decoder
    - ``nomad_mp``: message-passing encoder + NOMAD's nonlinear decoder MLP([branch, trunk input])
    - ``roma``: message passing, learned renormalisation into ``coarse_nodes`` levels, a
      Transformer over fine + coarse tokens, DeepONet decoder
    """

    kind: Literal["deeponet", "deeponet_mp", "nomad_mp", "roma"] = "roma"
    width: int = 64  # token width of encoder, pooling, Transformer and trunk
    encoder_layers: int = 2
    coarse_nodes: list[int] = field(default_factory=lambda: [32, 8])  # reference: 32 // 4^i, two steps
    transformer_layers: int = 2
    heads: int = 4
    basis: int = 32  # DeepONet basis size p (NOMAD: branch code size)
    trunk_layers: int = 2
    fourier_features: int = 32  # trunk input: cos/sin of 2 pi B (t, xi), B ~ N(0, fourier_scale^2)
    fourier_scale: float = 1.0
    coord_dim: int = 3  # learned coordinates xi of every token (the learned PDE's space)
    positional: Literal["laplacian", "random_walk", "laplacian+random_walk", "none"] = "laplacian"
    pe_dim: int = 16  # per encoding kind
    learned_pde: bool = False  # effective dynamics: du/dt = F(t, xi, u, grad u, lap u), residual loss

    def __post_init__(self):
        require(self.width >= 4, "model.width", self.width, ">= 4")
        require(self.width % self.heads == 0, "model.heads", self.heads, f"a divisor of model.width = {self.width}")
        require(self.encoder_layers >= 1, "model.encoder_layers", self.encoder_layers, ">= 1")
        require(all(m >= 1 for m in self.coarse_nodes), "model.coarse_nodes", self.coarse_nodes, "positive sizes")
        require(self.basis >= 1, "model.basis", self.basis, ">= 1")
        require(
            self.fourier_features >= 2 and self.fourier_features % 2 == 0,
            "model.fourier_features",
            self.fourier_features,
            "an even number >= 2",
        )
        require(self.coord_dim >= 1, "model.coord_dim", self.coord_dim, ">= 1")
        require(self.pe_dim >= 1, "model.pe_dim", self.pe_dim, ">= 1")
        if self.kind == "roma":
            require(len(self.coarse_nodes) >= 1, "model.coarse_nodes", self.coarse_nodes, "at least one level for roma")

    @property
    def pe_kinds(self) -> list[str]:
        return [] if self.positional == "none" else self.positional.split("+")


@dataclass
class TrainConfig:
    """Training on random-walk subgraphs with the sMSPE loss, AdamW, warm-up and linear decay."""

    history: int = 64  # kappa: input frames per node
    horizon: int = 1  # forecast lead times 1 .. horizon frames
    subgraph_nodes: int = 512
    walk_length: int = 16  # GraphSAINT-style random walks build each subgraph
    subgraphs_per_step: int = 1
    windows_per_subgraph: int = 4  # time windows per subgraph in one step
    epochs: int = 50
    steps_per_epoch: int = 100
    lr: float = 1e-3
    weight_decay: float = 1e-3
    warmup_fraction: float = 0.1  # of all steps, linear from 0
    final_lr_fraction: float = 0.01  # linear decay to lr * this at the last step
    grad_clip: float = 1.0
    noise_eta: float = 4e-4  # multiplicative input noise x * exp(sqrt(eta) xi)
    # ROMA's auxiliary terms, relative to a data sMSPE of order 1e-3 on these phases
    coarse_weight: float = 0.1  # sMSPE on coarse tokens
    entropy_weight: float = 1e-3  # assignment entropy, mean of -S log S (reference: 1e-2 x [1, 0, 0.1])
    link_weight: float = 1e-3  # link prediction, mean (A - S S^T)^2
    pde_weight: float = 1e-3  # learned-PDE residual, mean square (model.learned_pde); residuals are O(1)
    valid_subgraphs: int = 2  # held-out node sets: validation (model selection) ...
    test_subgraphs: int = 4  # ... and test (evaluation); both removed from the training graph
    eval_windows: int = 16  # evenly spaced windows per held-out subgraph
    split_seed: int = 0
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        require(self.history >= 2, "train.history", self.history, ">= 2")
        require(self.horizon >= 1, "train.horizon", self.horizon, ">= 1")
        require(self.subgraph_nodes >= 4, "train.subgraph_nodes", self.subgraph_nodes, ">= 4")
        require(self.walk_length >= 1, "train.walk_length", self.walk_length, ">= 1")
        require(self.subgraphs_per_step >= 1, "train.subgraphs_per_step", self.subgraphs_per_step, ">= 1")
        require(self.windows_per_subgraph >= 1, "train.windows_per_subgraph", self.windows_per_subgraph, ">= 1")
        require(self.epochs >= 1, "train.epochs", self.epochs, ">= 1")
        require(self.steps_per_epoch >= 1, "train.steps_per_epoch", self.steps_per_epoch, ">= 1")
        require(self.lr > 0, "train.lr", self.lr, "> 0")
        require(0 <= self.warmup_fraction < 1, "train.warmup_fraction", self.warmup_fraction, "in [0, 1)")
        require(0 < self.final_lr_fraction <= 1, "train.final_lr_fraction", self.final_lr_fraction, "in (0, 1]")
        require(self.noise_eta >= 0, "train.noise_eta", self.noise_eta, ">= 0")
        require(self.valid_subgraphs >= 1, "train.valid_subgraphs", self.valid_subgraphs, ">= 1")
        require(self.test_subgraphs >= 1, "train.test_subgraphs", self.test_subgraphs, ">= 1")
        require(self.eval_windows >= 1, "train.eval_windows", self.eval_windows, ">= 1")

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


@dataclass
class RunConfig:
    """Everything that defines one trained operator: what a run's settings.yaml holds."""

    dataset: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        require(bool(self.dataset), "dataset", self.dataset, "the name of a dataset of the study")


# ----------------------------------------------------------------------------- the study


@dataclass
class ExperimentConfig:
    """One experiment: every dataset x model x combination of the `vary` values."""

    datasets: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=lambda: ["roma"])
    vary: dict = field(default_factory=dict)  # "model.width" / "train.noise_eta" -> list of values


@dataclass
class ExperimentsConfig:
    data_noise: ExperimentConfig | None = None  # graph sizes x noise eta x models
    effective_dynamics: ExperimentConfig | None = None  # learned-PDE loss off / on
    positional: ExperimentConfig | None = None  # positional-encoding variants
    parameter_scaling: ExperimentConfig | None = None  # widths; power law of loss vs parameters


@dataclass
class StudyConfig:
    datasets: dict[str, DataConfig] = field(default_factory=dict)
    model: ModelConfig = field(default_factory=ModelConfig)  # defaults of every run
    train: TrainConfig = field(default_factory=TrainConfig)
    experiments: ExperimentsConfig = field(default_factory=ExperimentsConfig)


@dataclass
class StudyPlan:
    """The expanded study: resolved settings of every dataset and run, and who belongs where."""

    datasets: dict[str, dict]  # name -> DataConfig as a dict
    runs: dict[str, dict]  # run key -> RunConfig as a dict
    experiments: dict[str, list[dict]]  # experiment -> [{"run", "dataset", "model", <vary key>: value}]

    def to_dict(self) -> dict:
        return {"datasets": self.datasets, "runs": self.runs, "experiments": self.experiments}


def load_study(path: str | Path) -> StudyConfig:
    """The ``roma:`` section of a YAML file (a pipeline config such as config/demo.yaml, or the
    study.yaml the workflow writes)."""
    raw = read_yaml(path)
    if not isinstance(raw, dict) or "roma" not in raw:
        raise IrnoError(f"{path}: no 'roma:' section")
    return study_from_dict(raw["roma"])


def study_from_dict(section: dict) -> StudyConfig:
    study = from_dict(StudyConfig, section, "roma")
    if not study.datasets:
        raise IrnoError("config key 'roma.datasets': at least one dataset is required")
    return study


def load_data_config(path: str | Path) -> DataConfig:
    return load_settings(DataConfig, path)


def load_run_config(path: str | Path) -> RunConfig:
    return load_settings(RunConfig, path)


def run_key(settings: dict) -> str:
    """``<dataset>-<model>-<hash of the resolved settings>``: equal settings, equal key."""
    return f"{settings['dataset']}-{settings['model']['kind']}-{stable_hash(settings, 8)}"


def plan_study(study: StudyConfig) -> StudyPlan:
    """Expand every experiment's grid into resolved, validated, de-duplicated runs."""
    runs: dict[str, dict] = {}
    experiments: dict[str, list[dict]] = {}
    for name in EXPERIMENTS:
        exp = getattr(study.experiments, name)
        if exp is None:
            continue
        where = f"roma.experiments.{name}"
        _check_experiment(exp, study, where)
        axes = list(exp.vary)
        combos = list(itertools.product(*(exp.vary[k] for k in axes)))
        if name == "parameter_scaling" and len(combos) < 3:
            raise IrnoError(
                f"config key '{where}.vary': {len(combos)} settings; a power-law fit with an "
                "uncertainty needs at least 3 (e.g. model.width: [16, 32, 64])"
            )
        entries = []
        for dataset, kind, combo in itertools.product(exp.datasets, exp.models, combos):
            settings = {"dataset": dataset, "model": to_dict(study.model), "train": to_dict(study.train)}
            settings["model"]["kind"] = kind
            for key, value in zip(axes, combo):
                section, leaf = key.split(".")
                settings[section][leaf] = value
            settings = to_dict(from_dict(RunConfig, settings, where))  # validates and normalises types
            key = run_key(settings)
            runs[key] = settings
            values = {k: settings[k.split(".")[0]][k.split(".")[1]] for k in axes}  # as validated
            entries.append({"run": key, "dataset": dataset, "model": kind, **values})
        experiments[name] = entries
    if not runs:
        raise IrnoError("config key 'roma.experiments': no experiment is configured")
    datasets = {name: to_dict(study.datasets[name]) for name in sorted({r["dataset"] for r in runs.values()})}
    return StudyPlan(datasets=datasets, runs=runs, experiments=experiments)


SETTINGS_KINDS = {"data": DataConfig, "run": RunConfig, "study": StudyConfig}


def write_settings(kind: str, data: dict, path: str | Path) -> None:
    """Validate `data` as the settings of `kind` and write them, complete with defaults, as YAML.

    The workflow writes every dataset's and run's settings.yaml, and the study.yaml its report
    reads, this way, each from a parameter of its own job: a file changes (and the steps that
    read it rerun) exactly when its settings do. A study is checked as a whole (`plan_study`)
    and written as a ``roma:`` section, the form `load_study` reads.
    """
    if kind not in SETTINGS_KINDS:
        raise IrnoError(f"unknown settings kind {kind!r} (known: {', '.join(SETTINGS_KINDS)})")
    if kind == "study":
        study = study_from_dict(data)
        plan_study(study)
        write_yaml(path, {"roma": to_dict(study)})
    else:
        write_yaml(path, to_dict(from_dict(SETTINGS_KINDS[kind], data)))


def report_outputs(plan: StudyPlan) -> dict[str, list[str]]:
    """File names ``irno roma tables`` and ``figures`` write for this plan (the workflow's outputs)."""
    has = plan.experiments.keys()
    tables = ["results.csv"]
    if "data_noise" in has:
        tables += [f"smspe.{f}" for f in TABLE_FORMATS]
    if "parameter_scaling" in has:
        tables += [f"scaling.{f}" for f in TABLE_FORMATS]
    if has & {"effective_dynamics", "positional"}:
        tables += [f"ablations.{f}" for f in TABLE_FORMATS]
    figures = ["training_curves"]
    if "parameter_scaling" in has:
        figures.append("scaling_law")
    if any(run["model"]["kind"] == "roma" for run in plan.runs.values()):
        figures.append("attention")
    return {"tables": tables, "figures": [f"{name}.{f}" for name in figures for f in FIGURE_FORMATS]}


def write_plan(plan: StudyPlan, out_dir: str | Path) -> None:
    """plan.json, data/<dataset>/settings.yaml and runs/<run>/settings.yaml under out_dir.

    A settings file whose content is unchanged is not rewritten: its modification time, which
    the workflow compares, then only moves when the settings do.
    """
    out_dir = Path(out_dir)
    files = {out_dir / "data" / name / "settings.yaml": settings for name, settings in plan.datasets.items()}
    files.update({out_dir / "runs" / key / "settings.yaml": settings for key, settings in plan.runs.items()})
    for path, settings in files.items():
        if not path.is_file() or read_yaml(path) != settings:
            write_yaml(path, settings)
    write_json(out_dir / "plan.json", plan.to_dict())


def _check_experiment(exp: ExperimentConfig, study: StudyConfig, where: str) -> None:
    if not exp.datasets:
        raise IrnoError(f"config key '{where}.datasets': at least one dataset is required")
    for name in exp.datasets:
        if name not in study.datasets:
            raise IrnoError(
                f"config key '{where}.datasets': unknown dataset '{name}' "
                f"(roma.datasets has: {', '.join(study.datasets)})"
            )
    for kind in exp.models:
        if kind not in MODEL_KINDS:
            raise IrnoError(f"config key '{where}.models': unknown model '{kind}' (one of {', '.join(MODEL_KINDS)})")
    for key, values in exp.vary.items():
        section, _, leaf = key.partition(".")
        if section not in ("model", "train") or not leaf or "." in leaf or key == "model.kind":
            raise IrnoError(
                f"config key '{where}.vary.{key}': expected 'model.<key>' or 'train.<key>' "
                "(models are chosen with 'models:')"
            )
        if not isinstance(values, list) or not values:
            raise IrnoError(f"config key '{where}.vary.{key}': expected a non-empty list of values, got {values!r}")
