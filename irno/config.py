"""Configuration dataclasses for the refinement operator, its training and its evaluation.

Defaults are the paper's (SPEC 1.2-1.4). The workflow resolves one experiment (defaults plus
the experiment's overrides) into a plain dict, writes it as the run's ``settings.yaml`` and the
CLI rebuilds these dataclasses from it with `from_dict`, which rejects unknown keys and values
of the wrong type by name (``train.K: expected int, got 'six'``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

# The dict <-> dataclass machinery lives in irno.utils (the ROMA study shares it); re-exported here.
from irno.utils import deep_merge, from_dict, to_dict  # noqa: F401
from irno.utils import require as _require


@dataclass
class PhiConfig:
    """The refinement operator Phi (SPEC 1.2)."""

    backbone: Literal["unet", "fno"] = "unet"
    base_channels: int = 16  # U-Net widths base * 2^level: 16, 32, 64, 128; bottleneck 256
    depth: int = 4
    padding: Literal["circular", "zeros"] = "circular"  # circular: periodic domains
    norm: Literal["layer", "batch", "group"] = "layer"
    num_groups: int = 8  # GroupNorm groups (halved until they divide the width)
    # backbone "fno": a neuralop FNO with the same 55 -> 11 channels (backbone ablation)
    fno_modes: int = 16
    fno_hidden_channels: int = 32
    fno_layers: int = 4

    def __post_init__(self):
        _require(self.base_channels >= 1, "phi.base_channels", self.base_channels, ">= 1")
        _require(self.depth >= 1, "phi.depth", self.depth, ">= 1")


@dataclass
class LossConfig:
    """Weights of the objective of SPEC 1.3."""

    spectral_weight: float = 1.0  # beta_s; 0 disables the spectral term
    lambda_start: float = 1.0  # progressive exponent lambda_k, k = 0 .. K-1
    lambda_end: float = 2.0
    spectral_warmup_epochs: int = 0  # linear warm-up of beta_s (0: none)
    fixed_point_weight: float = 0.01  # beta_fp; 0 disables the fixed-point term
    fixed_point_warmup_epochs: int = 5

    def __post_init__(self):
        _require(self.spectral_weight >= 0, "loss.spectral_weight", self.spectral_weight, ">= 0")
        _require(self.fixed_point_weight >= 0, "loss.fixed_point_weight", self.fixed_point_weight, ">= 0")


@dataclass
class TrainConfig:
    """Optimisation of Phi (SPEC 1.3)."""

    K: int = 6  # refinement steps unrolled in training
    alpha: float = 0.2  # step size of h_{k+1} = h_k + alpha * Phi(cat[x, h_k])
    epochs: int = 150
    batch_size: int = 16
    lr: float = 3e-4
    weight_decay: float = 1e-5
    eta_min: float = 1e-6  # cosine schedule floor
    grad_clip: float = 1.0
    seed: int = 42
    outlier_threshold: float = 100.0  # valid samples with MSE above this are outliers
    max_outlier_pct: float = 5.0  # best checkpoint only while fewer outliers than this
    max_skipped_fraction: float = 0.1  # non-finite batches tolerated per epoch
    device: str = "auto"
    bf16: bool = False  # bf16 autocast (GPU only)
    channels_last: bool = False  # channels_last memory format (GPU only)
    compile: bool = False  # torch.compile Phi
    num_workers: int = 0

    def __post_init__(self):
        _require(self.K >= 1, "train.K", self.K, ">= 1")
        _require(self.alpha > 0, "train.alpha", self.alpha, "> 0")
        _require(self.epochs >= 1, "train.epochs", self.epochs, ">= 1")
        _require(self.batch_size >= 1, "train.batch_size", self.batch_size, ">= 1")
        _require(self.lr > 0, "train.lr", self.lr, "> 0")


@dataclass
class RefinerConfig:
    """Everything that defines one trained Phi: what a run's settings.yaml holds."""

    phi: PhiConfig = field(default_factory=PhiConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class EvalConfig:
    """Evaluation on the test split (SPEC 1.4, 2)."""

    extra_steps: int = 6  # steps beyond K
    batch_size: int = 16
    divergence_factor: float = 1e3  # a step diverges when its error exceeds this x the base's
    example_index: int = 0  # test sample kept for the field figure
    device: str = "auto"

    def __post_init__(self):
        _require(self.extra_steps >= 0, "evaluate.extra_steps", self.extra_steps, ">= 0")
        _require(self.batch_size >= 1, "evaluate.batch_size", self.batch_size, ">= 1")


@dataclass
class SplitPlan:
    """Which (zeta, alpha) pairs a simulated split holds, and trajectories per pair (one file each)."""

    pairs: list = field(default_factory=list)  # [[zeta, alpha], ...]
    trajectories: int = 1

    def __post_init__(self):
        _require(self.trajectories >= 1, "simulate.<split>.trajectories", self.trajectories, ">= 1")
        for pair in self.pairs:
            _require(
                isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(v, (int, float)) for v in pair),
                "simulate.<split>.pairs",
                pair,
                "a [zeta, alpha] pair of numbers",
            )


@dataclass
class SimulationConfig:
    """The embedded active-matter re-simulation (SPEC 5), written in The Well's format."""

    grid: int = 64  # grid points per side of the 10 x 10 periodic box
    frames: int = 81  # saved frames per trajectory
    frame_dt: float = 0.25  # time between saved frames
    dt: float = 0.025  # integrator step
    seed: int = 0  # base seed; each trajectory derives its own from (seed, split, pair, index)
    workers: int = 2  # parallel processes
    train: SplitPlan = field(default_factory=lambda: SplitPlan([[1, -1], [3, -2], [5, -3], [9, -4]], 2))
    valid: SplitPlan = field(default_factory=lambda: SplitPlan([[7, -2], [11, -3]], 1))
    test: SplitPlan = field(default_factory=lambda: SplitPlan([[3, -4], [13, -1]], 1))

    def __post_init__(self):
        _require(self.grid >= 8, "simulate.grid", self.grid, ">= 8")
        _require(self.frames >= 6, "simulate.frames", self.frames, ">= 6 (4 input frames and a target)")
        _require(self.frame_dt > 0, "simulate.frame_dt", self.frame_dt, "> 0")
        _require(self.dt > 0, "simulate.dt", self.dt, "> 0")


@dataclass
class BaseConfig:
    """A frozen base operator T_base: where it comes from, how it runs, how it is checked and cached."""

    model_class: Literal["FNO", "TFNO", "UNetClassic", "UNetConvNext"] = "FNO"
    source: Literal["pretrained", "train"] = "pretrained"
    pretrained: str = ""  # Hub id (polymathic-ai/FNO-active_matter) or a local save_pretrained directory
    revision: Optional[str] = None  # Hub revision (commit hash or tag) to pin
    # FNO/TFNO only. "legacy": projection(lifting(x)), what the published checkpoints were trained
    # with (the_well <= 1.1.0 dropped the Fourier blocks' output); "fixed": the installed forward.
    forward: Literal["fixed", "legacy"] = "fixed"
    model_kwargs: dict = field(default_factory=dict)  # constructor arguments when source = train
    epochs: int = 10  # local training (source = train)
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 16
    seed: int = 0
    device: str = "auto"
    published_valid_vrmse: Optional[float] = None  # The Well's valid VRMSE, for the base check
    check_tolerance: float = 0.10  # relative miss of the published number that fails the check
    strict: bool = True  # false: a failed check warns instead of stopping
    cache_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    cache_batch_size: int = 32

    def __post_init__(self):
        _require(self.epochs >= 1, "base.epochs", self.epochs, ">= 1")
        _require(self.lr > 0, "base.lr", self.lr, "> 0")
        if self.source == "pretrained":
            _require(bool(self.pretrained), "base.pretrained", self.pretrained, "a Hub id or a local directory")
