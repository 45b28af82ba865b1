"""The FLOPs of a training step: counted on meta tensors as on real ones, by hand at the paper's
DeepONet size, linear in the subgraph's edges through the edge MLPs, the settings left out of the
cache key changing nothing, and a study's runs read with their datasets."""

import pytest

from irno import IrnoError
from irno.roma.cost import NO_FLOPS, count_train_step, mean_subgraph_edges, train_step_flops
from irno.roma.models import _gaussian_process_basis
from irno.roma.settings import ModelConfig, RunConfig, TrainConfig, read_study_config
from irno.roma.study import expand_study
from irno.settings import from_dict

TINY = dict(width=8, depth=1, heads=2, basis=4, fourier_features=8, input_functions=3, function_grid=33)


def tiny(kind: str, windows: int = 2, **model) -> RunConfig:
    settings = {**TINY, "encoder_width": 6, "coarse_nodes": 3, "encoding_width": 4, **model}
    return RunConfig(
        dataset="x",
        model=ModelConfig(kind=kind, **settings),
        train=TrainConfig(history=5, subgraph_nodes=10, windows=windows),
    )


@pytest.mark.parametrize(
    "kind, pde", [("deeponet", None), ("deeponet_mp", "burgers"), ("nomad_mp", "emergent"), ("roma", "emergent")]
)
def test_the_meta_count_is_the_count_on_real_tensors(kind, pde):
    """The learned PDE's forward-mode derivatives (jacfwd under vmap) included."""
    cfg = tiny(kind, learned_pde=pde is not None, pde=pde or "emergent")
    assert count_train_step(cfg, 7, 30) == count_train_step(cfg, 7, 30, device="cpu")


def resnet_flops(dims: list[int], tokens: int) -> int:
    """A residual net LN(GELU(W x + b)) + skip(x) on an input that needs no gradient, skips frozen:
    forward both products of every layer; backward the trainable weights' gradients, and the
    input gradients of both products of every layer but the first."""
    products = [a * b for a, b in zip(dims, dims[1:])]
    forward = 2 * sum(products)
    backward = sum(products) + 2 * sum(products[1:])
    return 2 * tokens * (forward + backward)


def test_deeponet_at_the_paper_size_by_hand():
    """1872 wide, 8 hidden layers of 3744 in branch and trunk, 512 tokens: 1.28 TFLOP per step."""
    cfg = RunConfig(dataset="x", model=ModelConfig(kind="deeponet", width=1872, learned_pde=False))
    m, t = cfg.model, cfg.train
    hidden = [2 * m.width] * (m.depth + 1)
    branch = resnet_flops([m.input_functions * t.history, *hidden, m.basis * m.outputs], t.subgraph_nodes)
    trunk = resnet_flops([m.fourier_features, *hidden, m.basis], t.subgraph_nodes)
    modes = _gaussian_process_basis(m.function_grid, m.function_length_scale).shape[1]
    functions = 2 * m.input_functions * modes * m.function_grid  # drawing them: xi @ basis^T, no gradient
    functions += 2 * m.input_functions * m.function_grid**2  # their splines' curvatures: M y
    fourier = 2 * t.subgraph_nodes * (1 + m.outputs) * m.fourier_features // 2  # (t, x) B, no gradient
    by_hand = branch + trunk + functions + fourier
    assert count_train_step(cfg, 0, 0) == by_hand == pytest.approx(1.28e12, rel=1e-3)


@pytest.mark.parametrize("kind", ["deeponet_mp", "roma"])
def test_edges_cost_their_edge_mlps_and_nothing_else(kind):
    """Per edge and window, each MLP [2d, 4d, 4d, d] costs 28 d^2 multiply-adds forward and twice
    that backward (weights and inputs); without the edge MLP, edges cost no FLOPs."""
    widths = {"deeponet_mp": [6], "roma": [6, 3, 6]}[kind]  # encoder; roma also pooling (to m) and embedding
    cfg = tiny(kind, learned_pde=False)
    slope = 6 * 28 * sum(d * d for d in widths) * cfg.train.windows
    assert count_train_step(cfg, 7, 41) - count_train_step(cfg, 7, 30) == 11 * slope
    flat = tiny(kind, learned_pde=False, edge_mlp=False)
    assert count_train_step(flat, 7, 41) == count_train_step(flat, 7, 30)


def test_settings_left_out_of_the_cache_key_change_no_count():
    cfg = tiny("roma")
    base = count_train_step(cfg, 7, 30)
    changed = dict(
        time_scale=0.5,
        space_scale=0.5,
        function_layout="node",
        curvature=1.0,
        manifold="euclidean",
        index_embedding=[0.0, 0.0],
        level_embedding=0.0,
        fermi_dirac=[1.0, 1.0],
    )
    assert set(changed) | {"encodings"} == set(NO_FLOPS)
    for key, value in changed.items():
        assert count_train_step(tiny("roma", **{key: value}), 7, 30) == base, key
    assert count_train_step(tiny("roma", width=16), 7, 30) != base  # and the count sees a shape


def test_train_step_flops_reads_the_run_and_its_dataset():
    """One run of each model kind of config/demo.yaml: its dataset's encodings and graph."""
    expanded = expand_study(read_study_config("config/demo.yaml"))
    first = {}
    for key, settings in expanded.runs.items():
        first.setdefault(settings["model"]["kind"], key)
    assert len(first) == 4
    for key in first.values():
        cfg = from_dict(RunConfig, expanded.runs[key])
        t = cfg.train
        dim = sum(expanded.encodings[cfg.dataset][kind] for kind in cfg.model.used_encodings)
        assert dim > 0 or cfg.model.kind != "roma"
        graph = expanded.datasets[cfg.dataset]["graph"]
        edges = t.subgraph_nodes  # no edge MLP (DeepONet has no graph): the edges cost nothing
        if cfg.model.graph and cfg.model.edge_mlp:
            edges = round(mean_subgraph_edges(graph["nodes"], graph["mean_degree"], t.subgraph_nodes, t.walk_length))
        assert train_step_flops(expanded.runs[key], expanded) == count_train_step(cfg, dim, edges), key
    with pytest.raises(IrnoError, match="no such dataset"):
        train_step_flops({**expanded.runs[key], "dataset": "elsewhere"}, expanded)
