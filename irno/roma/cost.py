"""What one training step of a ROMA-study run costs, in FLOPs, at the run's real sizes, without
weights, data or a GPU.

`train_step_flops(run, study)` builds the run's model on torch's meta device (shapes, no
storage), runs one training step (forward with the learned-PDE derivatives when the run has
them, `irno.roma.train.training_loss`, backward) under torch's FLOP counter and returns the
count: matrix products only, 2 FLOPs per multiply-add, nothing scaled. The subgraph's edge count
is the mean over sampled subgraphs of a graph drawn with the dataset's law
(`mean_subgraph_edges`). What is left out, how close the edge count is, and the time a count
takes: docs/roma.md, "Cost".
"""

from __future__ import annotations

import functools
import json

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from irno import IrnoError
from irno.roma.graphs import (
    adjacency,
    induced_subgraph,
    initial_walk_roots,
    random_hyperbolic_graph,
    random_walk_subgraph,
)
from irno.roma.models import make_operator
from irno.roma.settings import GraphConfig, RunConfig
from irno.roma.study import ExpandedStudy
from irno.roma.train import Batch, training_loss
from irno.settings import from_dict, to_dict

EDGE_SAMPLE_NODES = 100_000  # largest graph drawn to estimate a subgraph's edges (0.3 s to draw)
EDGE_SAMPLES = 16  # subgraphs averaged
# model settings that change no matrix product (scales, layouts, initial values, the manifold's
# maps: a Mobius linear map is the same product as a Euclidean one): left out of the cache key
NO_FLOPS = (
    "time_scale",
    "space_scale",
    "function_layout",
    "curvature",
    "manifold",
    "index_embedding",
    "level_embedding",
    "fermi_dirac",
    "encodings",  # counted through the encodings' total dimension
)

_counts: dict[str, float] = {}  # cache key -> FLOPs


def train_step_flops(run: dict, study: ExpandedStudy) -> float:
    """FLOPs of one optimiser step (forward and backward) of `run`, an entry of
    `expand_study(...).runs`, on its dataset in `study` (the same expanded study).

    A few seconds the first time a model shape is seen, then cached for the process: runs that
    differ only in training settings (steps, lr, noise, loss weights) or in NO_FLOPS share a count.
    """
    cfg = from_dict(RunConfig, run, "run")
    if cfg.dataset not in study.datasets:
        raise IrnoError(f"run on dataset '{cfg.dataset}': the study has no such dataset ({', '.join(study.datasets)})")
    used = cfg.model.used_encodings
    if used and cfg.dataset not in study.encodings:
        raise IrnoError(f"run on dataset '{cfg.dataset}' reads graph encodings the study does not define")
    encoding_dim = sum(study.encodings[cfg.dataset][kind] for kind in used)
    t = cfg.train
    edges = t.subgraph_nodes  # without an edge MLP the edges enter gathers and scatters only
    if cfg.model.graph and cfg.model.edge_mlp:
        graph = from_dict(GraphConfig, study.datasets[cfg.dataset]["graph"], f"{cfg.dataset}.graph")
        size = min(graph.nodes, EDGE_SAMPLE_NODES)
        edges = round(mean_subgraph_edges(size, graph.mean_degree, t.subgraph_nodes, t.walk_length))
    model = {k: v for k, v in to_dict(cfg.model).items() if k not in NO_FLOPS}
    key = json.dumps([model, t.history, t.subgraph_nodes, t.windows, encoding_dim, edges], sort_keys=True)
    if key not in _counts:
        _counts[key] = count_train_step(cfg, encoding_dim, edges)
    return _counts[key]


def forget_counts() -> None:
    """Empty the caches of counts and edge estimates (a benchmark times them from scratch)."""
    _counts.clear()
    mean_subgraph_edges.cache_clear()


def count_train_step(cfg: RunConfig, encoding_dim: int, edges: int, device: str | torch.device = "meta") -> float:
    """FLOPs of one training step of `cfg`'s model on a subgraph with `edges` directed edges (self
    loops included), counted on `device`: "meta" counts without memory; a real device runs the step
    on random numbers (the test of the meta count). The model is built as `parameter_counts` builds
    it: under torch's default initialisation, which leaves the shapes, and so the count, unchanged."""
    t = cfg.train
    B, n, k = t.windows, t.subgraph_nodes, t.history
    if cfg.model.graph and edges < n:
        raise IrnoError(f"edges = {edges}: a subgraph of {n} nodes has at least its {n} self loops")
    with torch.device(device):
        model = make_operator(cfg.model, k, n, encoding_dim)
        senders = torch.arange(edges) % n  # any edges of the right count: the FLOPs depend on E alone
        edge_index = torch.stack([senders, (senders + 1 + torch.arange(edges) // n) % n])  # (2, E)
        adj = torch.eye(n)
        batch = Batch(
            history=torch.rand(B, n, k),
            target=torch.rand(B, n),
            time=torch.full((B,), float(k)),
            encodings=torch.rand(B, n, encoding_dim) if encoding_dim else None,
        )
    model.train()
    # the math path everywhere: CPU's fused attention kernel is invisible to the counter
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        out = model(batch.history, batch.time, edge_index, adj, batch.encodings, pde=cfg.model.learned_pde)
        loss, _ = training_loss(out, batch, cfg)
        loss.backward()
    return float(counter.get_total_flops())


@functools.lru_cache(maxsize=16)
def mean_subgraph_edges(nodes: int, mean_degree: float, subgraph_nodes: int, walk_length: int) -> float:
    """Mean directed edge count (self loops included) of the training sampler's subgraphs on a
    random hyperbolic graph of `nodes` points and `mean_degree`, over EDGE_SAMPLES draws (fixed seeds)."""
    graph = random_hyperbolic_graph(nodes, mean_degree, np.random.default_rng([nodes, 11]))
    adj = adjacency(graph.num_nodes, graph.edges)
    rng = np.random.default_rng([nodes, 12])
    _, roots = random_walk_subgraph(
        adj, subgraph_nodes, walk_length, rng, initial_walk_roots(subgraph_nodes, walk_length)
    )
    counts = []
    for _ in range(EDGE_SAMPLES):
        sample, _ = random_walk_subgraph(adj, subgraph_nodes, walk_length, rng, roots)
        counts.append(induced_subgraph(adj, sample).nnz + subgraph_nodes)
    return float(np.mean(counts))
