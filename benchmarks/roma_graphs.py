"""The ROMA study's data generation: hyperbolic graphs, Kuramoto integration, the Burgers-like
series and the graph encodings.

    python -m benchmarks.roma_graphs [--quick]
    python -m benchmarks.roma_graphs --graph-sizes 10000 100000 1000000 3850000 --kuramoto-sizes 10000 100000

Graph generation is timed end to end (points, edges by the radial-band sweep, largest
component; best of --repeat). The Kuramoto integration runs the dataset's dynamics (DOP853,
rtol = atol = 1e-8) over --t-end time units and extrapolates to the paper's setting (3M nodes,
t_end = 20) per node. The Burgers-like series (2001 frames, the reference's six message-passing
updates) and the graph encodings (--encoding-dim Laplacian eigenvectors by Lanczos, one node2vec
epoch of that dimension on the CPU) run on the largest of --kuramoto-sizes and are extrapolated
linearly in nodes to 3M (Lanczos grows faster: a lower bound). Timings on a shared, busy machine
are pessimistic.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks import common
from irno.roma.burgers import social_series
from irno.roma.graphs import (
    adjacency,
    disk_radius,
    hyperbolic_edges,
    laplacian_eigenvectors,
    node2vec,
    random_hyperbolic_graph,
    sample_points,
)
from irno.roma.kuramoto import coupling_weights, integrate, natural_frequencies
from irno.roma.settings import BurgersConfig, EncodingConfig, GraphConfig, KuramotoConfig

NAME = "roma_graphs"


def time_graph(nodes: int, repeat: int) -> dict:
    mean_degree = GraphConfig().mean_degree
    best, best_edges = np.inf, np.inf
    for i in range(repeat):
        rng = np.random.default_rng([i, 0])
        start = time.perf_counter()
        graph = random_hyperbolic_graph(nodes, mean_degree, rng)
        best = min(best, time.perf_counter() - start)
        R = disk_radius(nodes, mean_degree)
        radius, angle = sample_points(nodes, R, np.random.default_rng([i, 0]))
        start = time.perf_counter()
        hyperbolic_edges(radius, angle, R)
        best_edges = min(best_edges, time.perf_counter() - start)
    return {"task": "graph", "nodes_drawn": nodes, "nodes": graph.num_nodes, "edges": int(graph.edges.shape[0]),
            "mean_degree": 2 * graph.edges.shape[0] / graph.num_nodes, "seconds": best,
            "edge_sweep_seconds": best_edges}  # fmt: skip


def time_kuramoto(nodes: int, t_end: float) -> dict:
    dyn = KuramotoConfig(t_end=t_end, frames=int(100 * t_end) + 1)
    graph = random_hyperbolic_graph(nodes, GraphConfig().mean_degree, np.random.default_rng(0))
    n = graph.num_nodes
    rng = np.random.default_rng(1)
    weights = coupling_weights(n, graph.edges)
    omega = natural_frequencies(n, dyn, rng)
    theta0 = rng.normal(0.0, dyn.theta0_std, n)
    times = np.linspace(0.0, t_end, dyn.frames)
    counters = {}
    start = time.perf_counter()
    for _ in integrate(weights, omega, theta0, times, dyn, counters):
        pass
    seconds = time.perf_counter() - start
    per_node_time = seconds / (n * t_end)  # the cost grows with nodes x simulated time
    return {"task": "kuramoto", "nodes": n, "edges": int(graph.edges.shape[0]), "t_end": t_end,
            "seconds": seconds, "nfev": counters["nfev"], "solver_steps": counters["steps"],
            "ms_per_rhs": 1e3 * seconds / counters["nfev"],
            "paper_3M_t20_hours_estimate": per_node_time * 3.0e6 * 20.0 / 3600}  # fmt: skip


def time_burgers(nodes: int) -> dict:
    graph = random_hyperbolic_graph(nodes, GraphConfig().mean_degree, np.random.default_rng(0))
    start = time.perf_counter()
    social_series(graph.num_nodes, graph.edges, BurgersConfig(), np.random.default_rng(1))
    seconds = time.perf_counter() - start
    return {"task": "burgers", "nodes": graph.num_nodes, "frames": BurgersConfig().frames, "seconds": seconds,
            "paper_3M_hours_estimate": seconds / graph.num_nodes * 3.0e6 / 3600}  # fmt: skip


def time_encodings(nodes: int, dim: int) -> dict:
    graph = random_hyperbolic_graph(nodes, GraphConfig().mean_degree, np.random.default_rng(0))
    a = adjacency(graph.num_nodes, graph.edges)
    start = time.perf_counter()
    laplacian_eigenvectors(a, dim, np.random.default_rng(0))
    lanczos = time.perf_counter() - start
    start = time.perf_counter()
    node2vec(a, dim, EncodingConfig(node2vec=dim, epochs=1, device="cpu"))
    epoch = time.perf_counter() - start
    scale = 3.0e6 / graph.num_nodes
    return {"task": "encodings", "nodes": graph.num_nodes, "dim": dim, "laplacian_seconds": lanczos,
            "node2vec_epoch_seconds": epoch, "paper_3M_laplacian_hours_lower_bound": lanczos * scale / 3600,
            "paper_3M_node2vec_cpu_hours": epoch * scale * EncodingConfig().epochs / 3600}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    p = common.parser(NAME, __doc__)
    p.add_argument("--graph-sizes", type=int, nargs="+", help="nodes per graph (default: 10^4 quick, 10^4 10^5 full)")
    p.add_argument("--kuramoto-sizes", type=int, nargs="+", help="nodes per integration (default: as --graph-sizes)")
    p.add_argument("--t-end", type=float, help="simulated time of the Kuramoto runs (default: 1 quick, 2 full)")
    p.add_argument("--encoding-dim", type=int, help="Laplacian and node2vec dimensions (default: 16 quick, 64 full)")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    args.graph_sizes = args.graph_sizes or ([10_000] if args.quick else [10_000, 100_000])
    args.kuramoto_sizes = args.kuramoto_sizes or args.graph_sizes
    args.t_end = args.t_end or (1.0 if args.quick else 2.0)
    rows = [time_graph(n, args.repeat) for n in args.graph_sizes]
    rows += [time_kuramoto(n, args.t_end) for n in args.kuramoto_sizes]
    largest, graph = rows[-1], max((r for r in rows if r["task"] == "graph"), key=lambda r: r["nodes_drawn"])
    rows.append(time_burgers(max(args.kuramoto_sizes)))
    rows.append(time_encodings(max(args.kuramoto_sizes), args.encoding_dim or (16 if args.quick else 64)))
    target = "< 60 s" if graph["nodes_drawn"] == 100_000 else ""  # the target: 100k nodes under a minute on CPU
    heads = [
        common.headline(
            f"hyperbolic graph, {graph['nodes_drawn']} nodes drawn",
            graph["seconds"],
            "s",
            target,
            graph["seconds"] < 60 if target else None,
        ),
        common.headline(f"Kuramoto, {largest['nodes']} nodes, per right-hand side", largest["ms_per_rhs"], "ms"),
        common.headline(
            "paper's simulation (3M nodes, t_end 20), extrapolated", largest["paper_3M_t20_hours_estimate"], "h"
        ),
        common.headline("Burgers-like series, 3M nodes, extrapolated", rows[-2]["paper_3M_hours_estimate"], "h"),
    ]
    return common.report(NAME, args, rows, heads)


if __name__ == "__main__":
    main()
