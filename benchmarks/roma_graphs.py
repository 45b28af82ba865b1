"""The ROMA study's data generation: hyperbolic graphs and Kuramoto integration.

    python -m benchmarks.roma_graphs [--quick]
    python -m benchmarks.roma_graphs --graph-sizes 10000 100000 1000000 3850000 --kuramoto-sizes 10000 100000

Graph generation is timed end to end (points, edges by the radial-band sweep, largest
component; best of --repeat). The Kuramoto integration runs the dataset's dynamics (DOP853,
rtol = atol = 1e-8) over --t-end time units and extrapolates to the paper's setting (3M nodes,
t_end = 20) per node. Timings on a shared, busy machine are pessimistic.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks import common
from irno.roma.config import DynamicsConfig, GraphConfig
from irno.roma.graphs import disk_radius, hyperbolic_edges, random_hyperbolic_graph, sample_points
from irno.roma.kuramoto import coupling_weights, integrate, natural_frequencies

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
    dyn = DynamicsConfig(t_end=t_end, frames=int(100 * t_end) + 1)
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


def main(argv: list[str] | None = None) -> dict:
    p = common.parser(NAME, __doc__)
    p.add_argument("--graph-sizes", type=int, nargs="+", help="nodes per graph (default: 10^4 quick, 10^4 10^5 full)")
    p.add_argument("--kuramoto-sizes", type=int, nargs="+", help="nodes per integration (default: as --graph-sizes)")
    p.add_argument("--t-end", type=float, help="simulated time of the Kuramoto runs (default: 1 quick, 2 full)")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    args.graph_sizes = args.graph_sizes or ([10_000] if args.quick else [10_000, 100_000])
    args.kuramoto_sizes = args.kuramoto_sizes or args.graph_sizes
    args.t_end = args.t_end or (1.0 if args.quick else 2.0)
    rows = [time_graph(n, args.repeat) for n in args.graph_sizes]
    rows += [time_kuramoto(n, args.t_end) for n in args.kuramoto_sizes]
    largest, graph = rows[-1], max((r for r in rows if r["task"] == "graph"), key=lambda r: r["nodes_drawn"])
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
    ]
    return common.report(NAME, args, rows, heads)


if __name__ == "__main__":
    main()
