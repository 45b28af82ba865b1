"""What one training step of a ROMA-study run costs, in FLOPs, at the run's real sizes, without
weights, data or a GPU.

`train_step_flops(run, study)` builds the run's model on torch's meta device (tensors with shapes
and no storage: nothing is allocated or computed), runs one training step on a batch of meta
tensors of the run's sizes, the forward pass (with the learned-PDE derivatives when the run has
them), `irno.roma.train.training_loss` and the backward pass, under torch's FLOP counter
(`torch.utils.flop_counter.FlopCounterMode`), and returns the count. The forward-mode
derivatives (`torch.func.jacfwd` under `vmap`) run on meta tensors like the rest, so every part
is counted at full size; nothing is scaled. (Under `FakeTensorMode` torch 2.14's forward-mode
autodiff fails an internal assertion; the meta device does not need it.)

What the counter counts: matrix products (mm, addmm, bmm, attention), 2 FLOPs per multiply-add.
Element-wise work (activations, norms, the Mobius maps, the loss), gathers and scatters (message
aggregation, evaluating the input functions) and the optimiser's update are not counted: they are
memory-bound and a GPU's time on them is not proportional to FLOPs. Attention is counted as its
two batched products forward and four backward; a fused GPU kernel recomputes the scores in its
backward pass, one more product (2 B heads T^2 head_dim FLOPs per block) that this count leaves out.

Message passing grows with the subgraph's directed edges E (self loops included), which random
walks draw at random: `mean_subgraph_edges` takes E as the mean over sampled subgraphs of a graph
drawn with the dataset's law, of at most EDGE_SAMPLE_NODES points. E shrinks slowly as the graph
grows (512-node subgraphs at mean degree 7.64: about 3,050-3,250 edges on 20k nodes, 2,900 on
100k, 2,790 on 1M), so for the paper's 3M-node graphs E is about 4 % high; the edge MLPs, the
only products that depend on E, are 3 % of ROMA's FLOPs and 13 % of DeepONet + MP's without the
learned PDE, so the counts are at most 0.5 % high.

Time: the meta device costs about 0.1-0.2 ms per operation whatever the sizes, and ROMA's step
with the PDE terms is about 19,000 operations: 3-5 s per distinct shape on a 2-core CPU, cached;
the paper's 35 runs are 20 shapes, about a minute in all.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from irno import IrnoError
from irno.roma.config import ExpandedStudy, GraphConfig, RunConfig
from irno.roma.graphs import (
    adjacency,
    induced_subgraph,
    initial_walk_roots,
    random_hyperbolic_graph,
    random_walk_subgraph,
)
from irno.roma.models import GraphOperator
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
        model = GraphOperator(cfg.model, k, n, encoding_dim)
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
