"""How big a config's data are, known before anything is downloaded or simulated: the sizes the
cluster requests (irno.cluster) and the cost estimate (irno.estimate) are derived from.

A dataset's shape (trajectories per split, frames, grid, channels) comes from its simulation
settings for a simulated dataset, and for The Well's datasets from `WELL_SHAPES`, a table of
their published metadata with its source (The Well's package ships only its file registry,
which names the files but not what they hold). From the shape follow the bytes of every file the
pipeline keeps: the dataset's files, the prepared stores (irno.data.store), the base caches
(irno.base.cache) and the ROMA study's series and encodings. Light on purpose (no torch): the
workflow imports it at parse time.
"""

from __future__ import annotations

from dataclasses import dataclass

SPLITS = ("train", "valid", "test")
N_STEPS_INPUT = 4  # input frames per sample (irno prepare's default, what every rule uses)
FLOAT32 = 4
CACHE_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
WELL_SPLIT = {"train": 0.8, "valid": 0.1, "test": 0.1}  # The Well's train / valid / test split of trajectories


@dataclass(frozen=True)
class DatasetShape:
    """What one dataset holds: trajectories per split, frames each, the grid and the channels."""

    trajectories: dict[str, int]  # split -> trajectories
    frames: int
    grid: tuple[int, int]
    channels: int
    files_bytes: float  # the dataset's files (The Well's published size, or float32 data for simulations)
    source: str  # where these numbers come from

    def samples(self, split: str) -> int:
        """Training windows of a split: every start frame with N_STEPS_INPUT inputs and one target."""
        return self.trajectories[split] * (self.frames - N_STEPS_INPUT)

    @property
    def frame_bytes(self) -> int:
        """One frame of every channel, float32."""
        return self.channels * self.grid[0] * self.grid[1] * FLOAT32

    def store_bytes(self, split: str) -> float:
        """The prepared store: every trajectory as float32 (N, T, F, H, W), plus the window index."""
        return self.trajectories[split] * self.frames * self.frame_bytes + self.samples(split) * 16

    def cache_bytes(self, split: str, dtype: str = "float32") -> float:
        """A base cache: one predicted frame per sample, in the cache's dtype."""
        return self.samples(split) * self.frame_bytes // FLOAT32 * CACHE_DTYPE_BYTES[dtype]


def _well_shape(trajectories: int, frames: int, grid: tuple[int, int], channels: int, gigabytes: float, source: str):
    counts = {split: round(trajectories * WELL_SPLIT[split]) for split in ("train", "valid")}
    counts["test"] = trajectories - counts["train"] - counts["valid"]
    return DatasetShape(
        counts,
        frames,
        grid,
        channels,
        gigabytes * 1e9,
        f"{source}; split {' / '.join(str(counts[s]) for s in SPLITS)} (The Well's 80/10/10 train/valid/test)",
    )


# The datasets of The Well this pipeline has been set up for. Add a row (with its source) to give
# another dataset sizes; without one, irno estimate names it and the cluster requests fall back
# to their defaults.
WELL_SHAPES: dict[str, DatasetShape] = {
    "active_matter": _well_shape(
        225,
        81,
        (256, 256),
        11,
        51.3,
        "The Well's dataset card (datasets/active_matter/README.md: 225 simulations, 81 time steps of 256 x 256, "
        "51.3 GB) and active_matter.yaml (11 fields)",
    ),
    "turbulent_radiative_layer_2D": _well_shape(
        90,
        101,
        (128, 384),
        4,
        6.9,
        "The Well's dataset card (datasets/turbulent_radiative_layer_2D/README.md: 90 trajectories, 101 time "
        "steps of 128 x 384, density, pressure and velocity (4 channels), 6.9 GB)",
    ),
}


def simulated_shape(settings: dict) -> DatasetShape:
    """The shape of the embedded simulator's dataset from its settings (irno.config.SimulationConfig)."""
    from irno.config import SimulationConfig
    from irno.settings import from_dict

    cfg = from_dict(SimulationConfig, settings, "simulate")
    trajectories = {s: len(getattr(cfg, s).pairs) * getattr(cfg, s).trajectories for s in SPLITS}
    channels = 11  # concentration, velocity (2), D (2 x 2), E (2 x 2): active_matter's fields
    files = sum(trajectories.values()) * cfg.frames * channels * cfg.grid**2 * FLOAT32
    return DatasetShape(trajectories, cfg.frames, (cfg.grid, cfg.grid), channels, files, "its simulation settings")


def dataset_shape(study, dataset: str) -> DatasetShape | None:
    """The shape of a config's dataset (an irno.study.Study's), or None where it is not known."""
    if study.datasets[dataset]["source"] == "simulate":
        return simulated_shape(study.simulate_settings(dataset))
    return WELL_SHAPES.get(dataset)


# ----------------------------------------------------------------------------- the ROMA study


@dataclass(frozen=True)
class GraphDataShape:
    """A ROMA dataset: nodes of its graph, frames of its series, graph-encoding dimensions."""

    nodes: int  # points drawn (the stored graph, their largest component, keeps 80-90 % of them)
    frames: int
    mean_degree: float
    encoding_dims: int  # Laplacian eigenvectors + node2vec dimensions (0 when no run reads encodings)

    @property
    def series_bytes(self) -> float:
        """The simulated series (float32 per node and frame) and the graph's edges (two int64 per
        directed edge) in dataset.h5."""
        return self.nodes * self.frames * FLOAT32 + self.nodes * self.mean_degree * 2 * 8

    @property
    def encodings_bytes(self) -> float:
        return self.nodes * self.encoding_dims * FLOAT32


def roma_data_shape(roma, dataset: str) -> GraphDataShape:
    """The shape of one dataset of an expanded ROMA study (irno.roma.study.expand_study)."""
    data = roma.datasets[dataset]
    system = data["system"]
    frames = data[system]["frames"]
    encodings = roma.encodings.get(dataset)
    dims = encodings["laplacian"] + encodings["node2vec"] if encodings else 0
    return GraphDataShape(data["graph"]["nodes"], frames, data["graph"]["mean_degree"], dims)
