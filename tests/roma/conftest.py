"""Fixtures of the ROMA tests: tiny datasets (Kuramoto, Burgers-like) and run settings that train in seconds."""

from __future__ import annotations

import pytest

from irno.roma.datasets import encode, simulate
from irno.roma.settings import (
    BurgersConfig,
    DataConfig,
    EncodingConfig,
    GraphConfig,
    KuramotoConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
)

TINY_DATA = DataConfig(graph=GraphConfig(nodes=400), kuramoto=KuramotoConfig(t_end=1.0, frames=41), seed=3)
TINY_BURGERS = DataConfig(
    system="burgers",
    graph=GraphConfig(nodes=400),
    burgers=BurgersConfig(frames=41, agents=40, influx=1, curves=8, window=8, window_std=2.0),
    seed=4,
)
TINY_ENCODINGS = EncodingConfig(laplacian=4, node2vec=4, epochs=1, batch_nodes=128, device="cpu")
TINY_MODEL = dict(
    width=8,
    depth=1,
    heads=2,
    basis=4,
    fourier_features=8,
    input_functions=4,
    function_grid=32,
    encoder_width=8,
    coarse_nodes=4,
    encoding_width=4,
)


def make_tiny_run(kind: str = "roma", model: dict | None = None, **train) -> RunConfig:
    settings = dict(
        history=8,
        subgraph_nodes=32,
        walk_length=4,
        steps=4,
        warmup_steps=1,
        log_every=2,
        checkpoint_every=2,
        eval_windows=2,
        device="cpu",
    )
    settings.update(train)
    return RunConfig(
        dataset="tiny", model=ModelConfig(kind=kind, **{**TINY_MODEL, **(model or {})}), train=TrainConfig(**settings)
    )


@pytest.fixture(scope="session")
def tiny_run():
    """Factory: tiny_run(kind, model={overrides}, **train overrides) -> RunConfig on the 'tiny' dataset."""
    return make_tiny_run


@pytest.fixture(scope="session")
def tiny_data_config() -> DataConfig:
    return TINY_DATA


@pytest.fixture(scope="session")
def tiny_kuramoto(tmp_path_factory):
    """Path of a simulated Kuramoto dataset: ~380 nodes, 41 frames."""
    return simulate(TINY_DATA, tmp_path_factory.mktemp("roma") / "dataset.h5")


@pytest.fixture(scope="session")
def tiny_burgers(tmp_path_factory):
    """Path of a Burgers-like dataset: ~380 nodes, 41 frames."""
    return simulate(TINY_BURGERS, tmp_path_factory.mktemp("roma_bd") / "dataset.h5")


@pytest.fixture(scope="session")
def tiny_encodings(tiny_kuramoto, tmp_path_factory):
    """Path of the tiny Kuramoto dataset's graph encodings (4 + 4 dimensions)."""
    return encode(TINY_ENCODINGS, tiny_kuramoto, tmp_path_factory.mktemp("roma_enc") / "encodings.h5")


@pytest.fixture(autouse=True)
def _torch_on_one_thread(one_torch_thread):
    """Every ROMA test: tiny models gain nothing from a second thread on a shared machine."""
