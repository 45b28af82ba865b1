"""Fixtures of the ROMA tests: one tiny Kuramoto dataset and run settings that train in a second."""

from __future__ import annotations

import pytest

from irno.roma.config import DataConfig, DynamicsConfig, GraphConfig, ModelConfig, RunConfig, TrainConfig
from irno.roma.kuramoto import simulate

TINY_DATA = DataConfig(graph=GraphConfig(nodes=400), dynamics=DynamicsConfig(t_end=1.0, frames=41), seed=3)


def make_tiny_run(kind: str = "roma", **train) -> RunConfig:
    model = ModelConfig(
        kind=kind,
        width=8,
        encoder_layers=1,
        coarse_nodes=[4, 2],
        transformer_layers=1,
        heads=2,
        basis=8,
        trunk_layers=1,
        fourier_features=8,
        pe_dim=4,
    )
    settings = dict(
        history=16,
        subgraph_nodes=32,
        walk_length=4,
        windows_per_subgraph=2,
        epochs=2,
        steps_per_epoch=3,
        valid_subgraphs=1,
        test_subgraphs=1,
        eval_windows=4,
        device="cpu",
    )
    settings.update(train)
    return RunConfig(dataset="tiny", model=model, train=TrainConfig(**settings))


@pytest.fixture(scope="session")
def tiny_run():
    """Factory: tiny_run(kind, **train overrides) -> RunConfig on the 'tiny' dataset."""
    return make_tiny_run


@pytest.fixture(scope="session")
def tiny_data_config() -> DataConfig:
    return TINY_DATA


@pytest.fixture(scope="session")
def tiny_kuramoto(tmp_path_factory):
    """Path of a simulated dataset: ~350 nodes, 41 frames."""
    return simulate(TINY_DATA, tmp_path_factory.mktemp("roma") / "kuramoto.h5")
