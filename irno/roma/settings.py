"""Settings of the ROMA study: the dataclasses every step reads, and their loaders.

A study (the ``roma:`` section of a pipeline config) names its datasets, the default model and
training settings, per-model settings and the paper's experiments (`StudyConfig`);
`irno.roma.study` expands it into datasets and runs. Each step then reads one settings file: a
`DataConfig` (``irno roma simulate``), an `EncodingConfig` (``encode``) or a `RunConfig`
(``train``, ``evaluate``); `SETTINGS_KINDS` names them for ``irno write-settings``. Light on
purpose (no torch, no pandas): the workflow imports it at parse time. The study's format:
docs/roma.md, "The study".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

from irno import IrnoError
from irno.files import read_yaml
from irno.settings import from_dict, load_settings, require, require_at_least

MODEL_KINDS = ("deeponet", "deeponet_mp", "nomad_mp", "roma")
EXPERIMENTS = ("data_noise", "effective_dynamics", "positional", "graph_encodings", "parameter_scaling")
TABLE_FORMATS = ("csv", "md", "tex")
FIGURE_FORMATS = ("pdf", "png")


# ----------------------------------------------------------------------------- data


@dataclass
class GraphConfig:
    """Random hyperbolic graph on the curvature -1 plane; the largest component is kept.

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
class KuramotoConfig:
    """Kuramoto oscillators with degree-weighted, time-varying coupling.

    dtheta_i/dt = omega_i + coupling(t) sum_j w_ij sin(theta_j - theta_i),
    w_ij = sqrt(deg_j) / sum_{k in N(i)} sqrt(deg_k),
    coupling(t) = coupling [a + (1 - a) sin^2(t') ((1 - d) |cos(g t')|^b + d)],  t' = pi * periods * t / t_end
    (the reference code's time scaling: sin^2 t' rises and falls `periods` times over the run).

    The reference trains on preprocessed phase files that no script of its repository writes;
    its input functions live on [0, 1] and its prediction is a norm (>= 0). ``normalise: minmax``
    therefore maps the unwrapped phases affinely onto [0, 1] (the dataset's global minimum and
    maximum), the normalisation its Burgers-like series get; ``none`` keeps radians.
    """

    coupling: float = 5.0  # the coupling strength's scale (the reference's K)
    a: float = 0.5
    b: float = 10.0
    g: float = 10.0
    d: float = 0.5
    periods: float = 1.0
    omega_std: float = 1.0  # omega ~ N(0, omega_std^2), clipped at +-omega_clip * omega_std, centred
    omega_clip: float = 5.0
    theta0_std: float = 5.0  # theta(0) ~ N(0, 25)
    t_end: float = 20.0
    frames: int = 2001  # saved frames at t = k * t_end / (frames - 1): our choice of the frame spacing
    method: Literal["DOP853", "RK45"] = "DOP853"  # scipy's adaptive explicit Runge-Kutta, float64
    rtol: float = 1e-8
    atol: float = 1e-8
    dtype: Literal["float32", "float64"] = "float32"  # stored phases (the integration is float64)
    normalise: Literal["minmax", "none"] = "minmax"

    def __post_init__(self):
        require(self.t_end > 0, "kuramoto.t_end", self.t_end, "> 0")
        require(self.frames >= 3, "kuramoto.frames", self.frames, ">= 3")
        require(0 <= self.a <= 1, "kuramoto.a", self.a, "in [0, 1]")
        require(0 <= self.d <= 1, "kuramoto.d", self.d, "in [0, 1]")
        require(self.omega_std >= 0, "kuramoto.omega_std", self.omega_std, ">= 0")
        require(self.rtol > 0 and self.atol > 0, "kuramoto.rtol/atol", (self.rtol, self.atol), "> 0")

    @property
    def frame_dt(self) -> float:
        return self.t_end / (self.frames - 1)


@dataclass
class BurgersConfig:
    """Burgers-like social dynamics (the reference's lib/burgers_coupled.py), see irno.roma.burgers.

    Each node's series mixes ``mixed`` of ``curves`` aggregation ("gel") growth curves, is smoothed
    by a trailing Gaussian window and differenced, then ``iterations`` message-passing updates add
    sqrt(mean_j (w_ij x_j(t-1))^2) / ``reduction`` to every increment (w_ij = deg_j / sum_k deg_k
    over i's neighbours); the cumulative sum, divided by its global maximum, is the series.

    The reference reads its gel curves from files no script of it writes ("G-N1k-F1"); ours come
    from a stochastic aggregation model: ``influx`` agents join per step until there are
    ``agents``, each with a character c ~ U(0, 1); each step ``pairs`` random pairs of present
    agents join their groups with probability 1 - |c_i - c_j|; a curve is the largest group's
    share of ``agents`` over time.
    """

    frames: int = 2001
    agents: int = 1000
    influx: int = 5
    pairs: int = 1
    curves: int = 64
    mixed: int = 3
    window: int = 64
    window_std: float = 8.0
    iterations: int = 6
    reduction: float = 4.0

    def __post_init__(self):
        require_at_least(self, "burgers", 3, "frames")
        require_at_least(self, "burgers", 2, "agents")
        require_at_least(self, "burgers", 1, "influx", "pairs", "curves", "mixed", "window")
        require_at_least(self, "burgers", 0, "iterations")
        require(self.window_std > 0, "burgers.window_std", self.window_std, "> 0")
        require(self.reduction > 0, "burgers.reduction", self.reduction, "> 0")


@dataclass
class DataConfig:
    """One dataset: a graph, the dynamics on it (``system``) and the seed of both."""

    system: Literal["kuramoto", "burgers"] = "kuramoto"
    graph: GraphConfig = field(default_factory=GraphConfig)
    kuramoto: KuramotoConfig = field(default_factory=KuramotoConfig)
    burgers: BurgersConfig = field(default_factory=BurgersConfig)
    seed: int = 0

    @property
    def frames(self) -> int:
        return self.kuramoto.frames if self.system == "kuramoto" else self.burgers.frames


@dataclass
class EncodingConfig:
    """Graph encodings of every node of a dataset's graph (the reference's positional encodings).

    ``laplacian`` eigenvectors of the symmetric normalised Laplacian with the smallest eigenvalues,
    the trivial one dropped, and ``node2vec`` dimensions (p = q = 1: uniform random walks of
    ``walk_length`` steps, ``walks_per_node`` per node per epoch, windows of ``context`` nodes,
    ``negatives`` random negatives per walk, sparse Adam); each kind min-max normalised over the
    whole graph. The defaults are the reference's.
    """

    laplacian: int = 512
    node2vec: int = 512
    walk_length: int = 20
    context: int = 10
    walks_per_node: int = 10
    negatives: int = 1
    epochs: int = 21
    batch_nodes: int = 512  # walk roots per step (the reference: the embedding dimension)
    lr: float = 0.005
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        require_at_least(self, "encodings", 0, "laplacian", "node2vec")
        require(2 <= self.context <= self.walk_length + 1, "encodings.context", self.context, "in [2, walk_length + 1]")
        require_at_least(self, "encodings", 1, "walks_per_node", "negatives", "epochs", "batch_nodes")


@dataclass
class StudyDataset(DataConfig):
    """A dataset of the study: its data settings and the settings of its graph encodings."""

    encodings: EncodingConfig = field(default_factory=EncodingConfig)


# ----------------------------------------------------------------------------- model and training


@dataclass
class ModelConfig:
    """A neural operator on graphs: ROMA or one of the paper's baselines (irno.roma.models).

    Every model reads each node's ``history`` through ``input_functions`` random Gaussian-process
    functions and predicts the next value as the norm of a decoded vector u in R^outputs.

    - ``deeponet``: a residual-MLP branch per node, no graph
    - ``deeponet_mp``: a Euclidean message-passing layer, a Transformer branch, DeepONet decoder
    - ``nomad_mp``: the same with NOMAD's nonlinear decoder
    - ``roma``: a message-passing layer on the Poincare ball (``manifold``), a learned
      renormalisation into ``coarse_nodes``, graph encodings, a Transformer over fine + coarse
      tokens with index, level and context embeddings, DeepONet decoder

    The baselines are built as the reference's baseline runs are configured: Euclidean message
    passing, no encodings, no pooling, index embeddings of scale 1, no level or context embedding;
    the ROMA-only keys do not apply to them. Widths are matched by parameter count per experiment
    (``per_model`` and ``overrides`` in the study). Defaults are the reference's.
    """

    kind: Literal["deeponet", "deeponet_mp", "nomad_mp", "roma"] = "roma"
    width: int = 1024  # Transformer width; residual networks are 2 x width wide
    depth: int = 7  # Transformer blocks; residual networks have depth + 1 hidden layers
    heads: int = 8
    basis: int = 2048  # DeepONet basis size p per output
    outputs: int = 3  # dimension of u and of the learned PDE's space coordinates x
    fourier_features: int = 2048  # trunk input [sin, cos]((t, x) B), B ~ N(0, scale^2), no 2 pi
    time_scale: float = 1e-4
    space_scale: float = 1e-4
    input_functions: int = 128  # Gaussian-process functions each history value goes through
    function_length_scale: float = 1.0  # RBF kernel on [0, 1]
    function_grid: int = 1000  # grid the functions are sampled on (cubic splines in between)
    function_layout: Literal["reference", "node"] = "reference"  # see irno.roma.models.InputFunctions
    encoder_width: int = 512
    manifold: Literal["poincare", "euclidean"] = "poincare"  # roma's message passing and pooling
    curvature: float = 0.125  # c of the Poincare ball
    edge_mlp: bool = True  # messages MLP([x_i, x_j - x_i]) (else the sender's features)
    coarse_nodes: int = 64  # roma: nodes of the renormalised graph (one level, as in every reference run)
    encodings: list[Literal["laplacian", "node2vec"]] = field(default_factory=lambda: ["laplacian", "node2vec"])
    encoding_width: int = 192  # roma: the encodings' linear embedding, beside the history
    index_embedding: list[float] = field(default_factory=lambda: [0.25, 1.0])  # roma: scale fine, coarse
    level_embedding: float = 1.0  # roma
    context_embedding: bool = True  # roma: LayerNorm(MLP(encoder features)) added to the tokens
    learned_pde: bool = True  # the effective dynamics: a residual loss of a learned PDE
    pde: Literal["emergent", "burgers"] = "emergent"
    fermi_dirac: list[float] = field(default_factory=lambda: [0.5, 3.0])  # roma: initial (r, t), learned
    frozen_skips: bool = True  # skip projections fixed at their random initialisation, as the reference's

    def __post_init__(self):
        require_at_least(
            self, "model", 1, "width", "depth", "heads", "basis", "outputs", "input_functions", "encoder_width"
        )
        require(self.width >= self.heads, "model.heads", self.heads, f"at most model.width = {self.width}")
        require(
            self.fourier_features >= 2 and self.fourier_features % 2 == 0,
            "model.fourier_features",
            self.fourier_features,
            "an even number >= 2",
        )
        require(self.function_grid >= 4, "model.function_grid", self.function_grid, ">= 4 (a not-a-knot cubic spline)")
        require(self.function_length_scale > 0, "model.function_length_scale", self.function_length_scale, "> 0")
        require(self.curvature > 0, "model.curvature", self.curvature, "> 0")
        require_at_least(self, "model", 1, "coarse_nodes")
        require(len(set(self.encodings)) == len(self.encodings), "model.encodings", self.encodings, "no repeats")
        require_at_least(self, "model", 0, "encoding_width")
        require(len(self.index_embedding) == 2, "model.index_embedding", self.index_embedding, "[fine, coarse]")
        require(len(self.fermi_dirac) == 2, "model.fermi_dirac", self.fermi_dirac, "[r, t]")

    @property
    def graph(self) -> bool:
        return self.kind != "deeponet"

    @property
    def used_encodings(self) -> list[str]:
        """The graph encodings the model reads (roma only, and only with an embedding width)."""
        return list(self.encodings) if self.kind == "roma" and self.encoding_width > 0 else []


@dataclass
class TrainConfig:
    """One subgraph x ``windows`` time windows per step, as the reference trains (defaults: its own).

    AdamW on element-wise clipped gradients (a tensor with a NaN gradient gets none that step);
    learning rate 0 -> lr over ``warmup_steps`` (at most half the steps), linearly to ``min_lr``,
    then to ``final_lr`` over the last ``warmup_steps``. Noise x exp(sqrt(eta) xi) on the inputs
    and the targets in training; the test is clean. The last model is kept.
    """

    history: int = 64  # kappa: input frames per node
    subgraph_nodes: int = 512
    walk_length: int = 16  # GraphSAINT-style random walks build each subgraph
    windows: int = 1  # time windows per step
    subgraph_reuse: int = 2  # steps on one subgraph before the next is drawn
    steps: int = 50_000
    lr: float = 2e-5
    min_lr: float = 2e-7
    final_lr: float = 2e-8
    warmup_steps: int = 10_000
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-7
    weight_decay: float = 5e-3
    grad_clip: float = 1.0  # element-wise
    noise_eta: float = 4e-4
    coarse_weight: float = 0.0  # data loss on coarse tokens (the reference: 0)
    pde_weight: float = 1.0
    gpde_weight: float = 1e8  # the PDE residual's gradient with respect to (t, x)
    multiscale_weight: float = 1.0  # times the weighted pooling losses
    pool_weights: list[float] = field(default_factory=lambda: [1.0, 1e-3, 1e2])  # entropy S, entropy A', link
    log_every: int = 100  # steps between log rows (train loss means, validation sMSPE)
    checkpoint_every: int = 1000  # steps between resume points (last.pt), a multiple of log_every
    valid_subgraphs: int = 1
    test_subgraphs: int = 1
    eval_windows: int = 20
    split_seed: int = 0
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        require_at_least(self, "train", 2, "history")
        require_at_least(self, "train", 4, "subgraph_nodes")
        require_at_least(self, "train", 1, "walk_length", "windows", "subgraph_reuse", "steps", "log_every")
        require_at_least(self, "train", 1, "checkpoint_every")
        require(
            self.checkpoint_every % self.log_every == 0,
            "train.checkpoint_every",
            self.checkpoint_every,
            f"a multiple of train.log_every = {self.log_every}",
        )
        require(self.lr > 0, "train.lr", self.lr, "> 0")
        require(self.min_lr >= 0 and self.final_lr >= 0, "train.min_lr/final_lr", (self.min_lr, self.final_lr), ">= 0")
        require_at_least(self, "train", 0, "warmup_steps")
        require(len(self.betas) == 2, "train.betas", self.betas, "[beta1, beta2]")
        require(self.grad_clip > 0, "train.grad_clip", self.grad_clip, "> 0")
        require_at_least(self, "train", 0, "noise_eta")
        require(len(self.pool_weights) == 3, "train.pool_weights", self.pool_weights, "[entropy S, entropy A', link]")
        require_at_least(self, "train", 1, "valid_subgraphs", "test_subgraphs", "eval_windows")


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
    """One grid: every dataset x model x combination of the `vary` values; then `overrides`."""

    datasets: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=lambda: ["roma"])
    vary: dict = field(default_factory=dict)  # "model.width" / "train.noise_eta" -> list of values
    overrides: dict[str, dict] = field(default_factory=dict)  # "<model>" or "<dataset>/<model>" -> settings


@dataclass
class ExperimentsConfig:
    """Each experiment is a list of grids (one grid may be written without the list)."""

    data_noise: list[ExperimentConfig] | None = None  # graph sizes x noise eta x models
    effective_dynamics: list[ExperimentConfig] | None = None  # every model with the learned-PDE loss
    positional: list[ExperimentConfig] | None = None  # the Transformer's index / level / context embeddings
    graph_encodings: list[ExperimentConfig] | None = None  # (ours) which graph encodings roma reads
    parameter_scaling: list[ExperimentConfig] | None = None  # widths; power laws of the losses


@dataclass
class StudyConfig:
    """A study: its datasets, the defaults of every run, per-model settings and the experiments."""

    datasets: dict[str, StudyDataset] = field(default_factory=dict)
    model: ModelConfig = field(default_factory=ModelConfig)  # defaults of every run
    train: TrainConfig = field(default_factory=TrainConfig)
    per_model: dict[str, dict] = field(default_factory=dict)  # model kind -> settings, e.g. its width
    experiments: ExperimentsConfig = field(default_factory=ExperimentsConfig)


def read_study_config(path: str | Path) -> StudyConfig:
    """The study of a YAML file: its ``roma:`` section (a pipeline config such as config/demo.yaml),
    or the whole file where it holds a study's settings alone (the study.yaml the workflow writes)."""
    raw = read_yaml(path)
    if isinstance(raw, dict) and "roma" in raw:
        return study_from_dict(raw["roma"])
    if isinstance(raw, dict) and raw and raw.keys() <= {f.name for f in fields(StudyConfig)}:
        return study_from_dict(raw)
    raise IrnoError(f"{path}: no 'roma:' section")


def study_from_dict(section: dict) -> StudyConfig:
    """A study from its mapping (one grid of an experiment may be written without the list),
    checked key by key; the checks of the study as a whole are its expansion's."""
    if isinstance(section, dict) and isinstance(section.get("experiments"), dict):
        # a single grid is a list of one
        experiments = {k: [v] if isinstance(v, dict) else v for k, v in section["experiments"].items()}
        section = {**section, "experiments": experiments}
    study = from_dict(StudyConfig, section, "roma")
    if not study.datasets:
        raise IrnoError("config key 'roma.datasets': at least one dataset is required")
    for kind, settings in study.per_model.items():
        if kind not in MODEL_KINDS:
            raise IrnoError(f"config key 'roma.per_model.{kind}': unknown model (one of {', '.join(MODEL_KINDS)})")
        check_dotted_settings(settings, f"roma.per_model.{kind}")
    return study


def load_data_config(path: str | Path) -> DataConfig:
    """A dataset's settings file (``irno roma simulate``)."""
    return load_settings(DataConfig, path)


def load_encoding_config(path: str | Path) -> EncodingConfig:
    """A dataset's graph-encoding settings file (``irno roma encode``)."""
    return load_settings(EncodingConfig, path)


def load_run_config(path: str | Path) -> RunConfig:
    """A run's settings file (``irno roma train`` and ``evaluate``)."""
    return load_settings(RunConfig, path)


# What each settings file of the study holds, by the kind ``irno write-settings --kind`` names.
SETTINGS_KINDS = {
    "roma_study": StudyConfig,
    "roma_data": DataConfig,
    "roma_encodings": EncodingConfig,
    "roma_run": RunConfig,
}


def check_dotted_settings(dotted: dict, where: str) -> None:
    """`dotted` maps ``model.<key>`` / ``train.<key>`` to values (the model's kind excluded)."""
    if not isinstance(dotted, dict):
        raise IrnoError(f"config key '{where}': expected a mapping of 'model.<key>' / 'train.<key>', got {dotted!r}")
    for key in dotted:
        section, _, leaf = key.partition(".")
        if section not in ("model", "train") or not leaf or "." in leaf or key == "model.kind":
            raise IrnoError(
                f"config key '{where}.{key}': expected 'model.<key>' or 'train.<key>' "
                "(models are chosen with 'models:')"
            )
