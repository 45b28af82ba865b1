"""Benchmark of the ROMA data generation: hyperbolic graphs and Kuramoto integration.

    PYTHONPATH=. python benchmarks/roma_graphs.py                       # 10k, 100k nodes
    PYTHONPATH=. python benchmarks/roma_graphs.py --graph-sizes 10000 100000 1000000 3850000 \\
        --kuramoto-sizes 10000 100000

Prints a table and writes JSON. Graph generation is timed end to end (points, edges by the
radial-band sweep, largest component; best of --repeat). The Kuramoto integration runs the
dataset's dynamics (DOP853, rtol = atol = 1e-8) over --t-end time units and extrapolates to the
paper's setting (t_end = 20) per node. Timings on a shared, busy machine are pessimistic.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd

from irno.roma.config import DynamicsConfig, GraphConfig
from irno.roma.graphs import disk_radius, hyperbolic_edges, random_hyperbolic_graph, sample_points
from irno.roma.kuramoto import coupling_weights, integrate, natural_frequencies
from irno.utils import write_json


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
            "mean_degree": 2 * graph.edges.shape[0] / graph.num_nodes, "seconds": best, "edge_sweep_seconds": best_edges}


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
            "paper_3M_t20_hours_estimate": per_node_time * 3.0e6 * 20.0 / 3600}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--graph-sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--kuramoto-sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--t-end", type=float, default=2.0, help="simulated time of the Kuramoto runs")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default="results/benchmarks/roma_graphs.json")
    args = parser.parse_args()

    rows = [time_graph(n, args.repeat) for n in args.graph_sizes]
    rows += [time_kuramoto(n, args.t_end) for n in args.kuramoto_sizes]
    table = pd.DataFrame(rows)
    print(table.to_markdown(index=False, floatfmt=".4g"))
    load = os.getloadavg()[0]
    print(f"\nload average {load:.1f} on {os.cpu_count()} cores (timings on a busy machine are pessimistic)")
    write_json(args.out, {"load_average": load, "cpu_count": os.cpu_count(), "results": rows})


if __name__ == "__main__":
    main()
