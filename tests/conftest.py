"""Shared fixtures: a tiny dataset in The Well's exact format, built in a temporary folder, and
the local workflow run of config/test.yaml (`test_run`).

The fields are smooth travelling waves (a few Fourier modes per channel with their own
velocities), so the next frame is predictable from the last ones: models can learn it, and
tests of training and of base operators have something to fit. It is *not* active matter;
`irno.sim` makes the physical dataset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from workflow_copy import copy_workflow, snakemake

from irno.data.wellfile import write_stats, write_well_file

# Tests that start Snakemake (a dry run takes seconds, a run minutes) take one of these fixtures:
# they are all slow, out of the fast loop (`pytest -m "not slow"`); CI runs them with the rest.
SNAKEMAKE_FIXTURES = {"workflow", "workflow_copy", "test_run"}


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if SNAKEMAKE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


TINY_SPLITS = {"train": [(1.0, -1.0), (3.0, -2.0)], "valid": [(5.0, -3.0)], "test": [(7.0, -4.0)]}


def _waves(rng: np.random.Generator, n_traj: int, frames: int, grid: int, shape: tuple) -> np.ndarray:
    """(B, T, grid, grid, *shape) float32 travelling waves."""
    x = np.arange(grid) * 2 * np.pi / grid
    X, Y = np.meshgrid(x, x, indexing="ij")
    t = np.arange(frames)[:, None, None]
    out = np.zeros((n_traj, frames, grid, grid, int(np.prod(shape, dtype=int))), dtype=np.float64)
    for b in range(n_traj):
        for c in range(out.shape[-1]):
            for _ in range(3):
                kx, ky = rng.integers(-3, 4, size=2)
                amp, phase, omega = rng.normal(), rng.uniform(0, 2 * np.pi), rng.uniform(-0.4, 0.4)
                out[b, ..., c] += amp * np.cos(kx * X + ky * Y - omega * t + phase)
    return out.reshape(n_traj, frames, grid, grid, *shape).astype(np.float32)


@pytest.fixture
def one_torch_thread():
    """Torch on one thread for the test: tiny convolutions gain nothing from a second one, and on
    a shared 2-core machine OpenMP threads waiting for each other make them up to 50x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_tiny_active_matter(root: Path, grid: int = 32, frames: int = 12, n_traj: int = 2, seed: int = 0) -> Path:
    """Write train/valid/test splits of an 11-channel active_matter-shaped dataset under root."""
    rng = np.random.default_rng(seed)
    dataset = Path(root) / "datasets" / "active_matter"
    coords = {d: (np.arange(grid) * 10.0 / grid).astype(np.float32) for d in ("x", "y")}
    for split, pairs in TINY_SPLITS.items():
        for zeta, alpha in pairs:
            fields = {
                0: {"concentration": 1.0 + 0.01 * _waves(rng, n_traj, frames, grid, ())},
                1: {"velocity": _waves(rng, n_traj, frames, grid, (2,))},
                2: {
                    "D": 0.3 * _waves(rng, n_traj, frames, grid, (2, 2)),
                    "E": _waves(rng, n_traj, frames, grid, (2, 2)),
                },
            }
            write_well_file(
                dataset / "data" / split / f"active_matter_L_10.0_zeta_{zeta}_alpha_{alpha}.hdf5",
                dataset_name="active_matter",
                time=np.arange(frames, dtype=np.float32) * 0.25,
                coords=coords,
                fields=fields,
                scalars={"L": 10.0, "zeta": zeta, "alpha": alpha},
                attrs={"source": "irno test fixture: travelling waves, not active matter"},
            )
    write_stats(dataset)
    return Path(root)


@pytest.fixture(scope="session")
def tiny_well(tmp_path_factory) -> Path:
    """Root of a tiny Well-format dataset: <root>/datasets/active_matter/{stats.yaml,data/...}."""
    return write_tiny_active_matter(tmp_path_factory.mktemp("well"))


@pytest.fixture(scope="session")
def tiny_manifest(tiny_well, tmp_path_factory) -> Path:
    """manifest.json of the `tiny_well` dataset (what `irno download` / `irno simulate` write)."""
    from irno.data.well import build_manifest
    from irno.files import write_json

    path = tmp_path_factory.mktemp("manifest") / "manifest.json"
    write_json(path, build_manifest(tiny_well, "active_matter", source="test fixture"))
    return path


@pytest.fixture(scope="session")
def tiny_stores(tiny_manifest, tmp_path_factory) -> dict[str, Path]:
    """Prepared stores (irno.data.store) of every split of `tiny_well`: split -> store folder."""
    from irno.data.store import prepare_split

    root = tmp_path_factory.mktemp("prepared")
    return {split: prepare_split(tiny_manifest, split, root / split) for split in ("train", "valid", "test")}


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    """(BaseConfig, model directory) of an untrained tiny FNO (44 -> 11 channels) for `tiny_well`.

    Its predictions are not good ones; it gives tests a real base-prediction cache to read.
    """
    import torch

    from irno.base.operator import build_model, save_base
    from irno.config import BaseConfig

    cfg = BaseConfig(
        model_class="FNO", source="train", model_kwargs={"modes1": 4, "modes2": 4, "hidden_channels": 8}, device="cpu"
    )
    torch.manual_seed(0)
    model_dir = tmp_path_factory.mktemp("tiny_base") / "model"
    save_base(build_model(cfg, 44, 11, (32, 32)), model_dir, {"model_class": "FNO", "source": "train"})
    return cfg, model_dir


@pytest.fixture(scope="session")
def tiny_caches(tiny_base, tiny_stores, tmp_path_factory) -> dict[str, Path]:
    """Base-prediction caches (irno.base.cache) of `tiny_base` for every split: split -> cache folder.

    `RefinementDataset(PreparedSplit(tiny_stores[s]), BasePredictionCache.open(tiny_caches[s]))`.
    """
    from irno.base.cache import cache_base
    from irno.data.store import PreparedSplit

    cfg, model_dir = tiny_base
    root = tmp_path_factory.mktemp("caches")
    return {
        split: cache_base(cfg, model_dir, PreparedSplit(store), root / split).path
        for split, store in tiny_stores.items()
    }


@pytest.fixture(scope="session")
def test_run(tmp_path_factory) -> Path:
    """config/test.yaml run to completion locally (`--cores 2`) in a temporary copy of the workflow.

    One run for the session: tests/test_workflow.py checks it, the SLURM tests compare theirs with it.
    """
    workdir = copy_workflow(tmp_path_factory.mktemp("e2e"))
    snakemake(workdir, "--cores", "2", "all", "--configfile", "config/test.yaml")
    return workdir
