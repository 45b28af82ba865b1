"""What a ROMA-study training step costs: seconds and peak memory per optimiser step of each model
on the CPU at a reduced width, and the FLOPs of a step at the paper's sizes.

    python -m benchmarks.roma_train [--quick] [--shrink 8] [--steps 3]

The measured runs are the paper config's (config/roma.yaml) on the 3M-node Kuramoto graph: the
data experiment's ROMA (with its learned PDE), DeepONet, DeepONet + MP and NOMAD + MP (without),
and the effective-dynamics baselines (with the learned PDE). Each is shrunk: every width (the
Transformer's, the basis, the encoder's, the Fourier features, the input functions, the graph
encodings and their embedding) divided by --shrink, the token structure kept (512 fine nodes,
64 coarse, history 64, one window). In a fresh process per run: the model, AdamW, a random-walk
subgraph of a 20k-node hyperbolic graph of the paper's mean degree, random inputs; a warm-up step,
then --steps timed steps of `irno.roma.train` (forward with the PDE terms, `training_loss`,
backward, element-wise clipping, AdamW); the best and the median seconds per step and the peak anonymous
memory (the process's own, polled every 5 ms; before the first step and at its peak). The FLOPs
of that step are counted by `irno.roma.cost` (torch's FLOP counter on meta tensors), so the
table gives the CPU's achieved rate. At the paper's sizes `irno.roma.cost.train_step_flops` counts
every run of config/roma.yaml (without --quick): per step, and times its steps.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import common

NAME = "roma_train"
PAPER_CONFIG = "config/roma.yaml"
GRAPH_NODES = 20_000  # the measured subgraph is drawn from a graph this big (its edges set the cost)
SHRUNK = ("width", "basis", "encoder_width", "fourier_features", "input_functions", "encoding_width")


def measured_runs(expanded) -> list[tuple[str, str]]:
    """(experiment, run key) of the runs this benchmark times: the data experiment on km3m at the
    lower noise, and the effective-dynamics baselines on km3m."""
    picked = []
    for entry in expanded.experiments["data_noise"]:
        if entry["dataset"] == "km3m" and expanded.runs[entry["run"]]["train"]["noise_eta"] == 4e-4:
            picked.append(("data_noise", entry["run"]))
    for entry in expanded.experiments["effective_dynamics"]:
        if entry["dataset"] == "km3m" and entry["model"] != "roma":  # ROMA's is the data experiment's run
            picked.append(("effective_dynamics", entry["run"]))
    return picked


def shrink(settings: dict, factor: int) -> dict:
    """A run's settings with every width divided by `factor` (Fourier features kept even)."""
    model = dict(settings["model"])
    for key in SHRUNK:
        model[key] = max(1, model[key] // factor)
    model["fourier_features"] = max(2, model["fourier_features"] // 2 * 2)
    model["heads"] = min(model["heads"], model["width"])
    return {**settings, "model": model}


def child(settings_path: Path, encoding_dim: int, steps: int, result: Path, threads: int) -> None:
    """Time `steps` training steps of the run in `settings_path`; write the figures to `result`."""
    import types

    import numpy as np
    import torch

    from benchmarks.memory import AnonymousPeak, rss_anon_mb
    from irno.roma.graphs import adjacency, initial_walk_roots, random_hyperbolic_graph, random_walk_subgraph
    from irno.roma.models import build_model, count_parameters
    from irno.roma.settings import RunConfig
    from irno.roma.train import Batch, Subgraph, make_optimizer, objective, sanitise_gradients
    from irno.settings import from_dict

    torch.set_num_threads(threads)
    cfg = from_dict(RunConfig, json.loads(settings_path.read_text()))
    t = cfg.train
    graph = random_hyperbolic_graph(GRAPH_NODES, 7.6394, np.random.default_rng(0))
    adj = adjacency(graph.num_nodes, graph.edges)
    rng = np.random.default_rng(1)
    nodes, _ = random_walk_subgraph(
        adj, t.subgraph_nodes, t.walk_length, rng, initial_walk_roots(t.subgraph_nodes, t.walk_length)
    )
    sub = Subgraph.of(types.SimpleNamespace(adjacency=adj), nodes, torch.device("cpu"))
    torch.manual_seed(0)
    model = build_model(cfg.model, t.history, t.subgraph_nodes, encoding_dim)
    optimizer = make_optimizer(model, t)
    draw = torch.Generator().manual_seed(2)
    B, n, k = t.windows, t.subgraph_nodes, t.history
    batch = Batch(
        history=torch.rand(B, n, k, generator=draw),
        target=torch.rand(B, n, generator=draw),
        time=torch.full((B,), 1000.0),
        encodings=torch.rand(B, n, encoding_dim, generator=draw) if encoding_dim else None,
    )
    before = rss_anon_mb()
    peak = AnonymousPeak()
    peak.start()
    seconds = []
    for step in range(steps + 1):  # the first is a warm-up
        start = time.perf_counter()
        model.train()
        loss, _ = objective(model, sub, batch, cfg, seed=step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        sanitise_gradients(model, t.grad_clip)
        optimizer.step()
        seconds.append(time.perf_counter() - start)
    figures = {
        "seconds": seconds[1:],
        "anon_before_mb": before,
        "peak_anon_mb": peak.stop(),
        "parameters": count_parameters(model),
        "edges": int(sub.edges.shape[1]),
    }
    result.write_text(json.dumps(figures))


def main(argv: list[str] | None = None) -> dict:
    p = common.parser(NAME, __doc__)
    p.add_argument("--shrink", type=int, help="widths divided by this on the CPU (default: 8; --quick 16)")
    p.add_argument("--steps", type=int, help="timed steps per model after a warm-up (default: 3; --quick 2)")
    # the measured child process's options
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--encoding-dim", type=int, help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args.child, args.encoding_dim, args.steps, args.result, args.threads)
    args.shrink = args.shrink or (16 if args.quick else 8)
    args.steps = args.steps or (2 if args.quick else 3)

    from irno.roma import cost
    from irno.roma.cost import count_train_step, train_step_flops
    from irno.roma.models import parameter_counts
    from irno.roma.settings import RunConfig, read_study_config
    from irno.roma.study import expand_study
    from irno.settings import from_dict

    expanded = expand_study(read_study_config(PAPER_CONFIG))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for experiment, key in measured_runs(expanded):
            run = expanded.runs[key]
            small = shrink(run, args.shrink)
            used = from_dict(RunConfig, run).model.used_encodings
            paper_dim = sum(expanded.encodings[run["dataset"]][kind] for kind in used)
            dim = paper_dim // args.shrink
            settings, result = Path(tmp) / f"{key}.json", Path(tmp) / f"{key}.result.json"
            settings.write_text(json.dumps(small))
            cmd = [sys.executable, "-m", f"benchmarks.{NAME}", "--child", str(settings), "--encoding-dim", str(dim)]
            cmd += ["--steps", str(args.steps), "--result", str(result), "--threads", str(args.threads)]
            subprocess.run(cmd, check=True, cwd=common.ROOT, env=dict(common.child_env(), PYTHONWARNINGS="ignore"))
            measured = json.loads(result.read_text())
            step_flops = count_train_step(from_dict(RunConfig, small), dim, measured["edges"])
            seconds = min(measured["seconds"])  # the best step: the others' extra time is the machine's load
            paper_flops = train_step_flops(run, expanded)
            rows.append(
                {
                    "task": "CPU step",
                    "experiment": experiment,
                    "model": run["model"]["kind"],
                    "learned_pde": run["model"]["learned_pde"],
                    "width": f"{small['model']['width']} (paper {run['model']['width']})",
                    "run": key,
                    "parameters": measured["parameters"],
                    "s_per_step": seconds,
                    "s_median": statistics.median(measured["seconds"]),
                    "peak_anon_mb": measured["peak_anon_mb"],
                    "step_mb": measured["peak_anon_mb"] - measured["anon_before_mb"],
                    "gflop_per_step": step_flops / 1e9,
                    "gflop_per_s": step_flops / 1e9 / seconds,
                    "paper_parameters": parameter_counts(from_dict(RunConfig, run), paper_dim)[1],
                    "steps": run["train"]["steps"],
                    "paper_tflop_per_step": paper_flops / 1e12,
                    "paper_pflop_run": paper_flops * run["train"]["steps"] / 1e15,
                }
            )
    counted = time.perf_counter()
    if not args.quick:
        cost.forget_counts()  # the study's counts from scratch, as `irno estimate` makes them
        for name, entries in expanded.experiments.items():
            for entry in entries:
                run = expanded.runs[entry["run"]]
                flops = train_step_flops(run, expanded)
                rows.append(
                    {
                        "task": "paper run",
                        "experiment": name,
                        "model": run["model"]["kind"],
                        "learned_pde": run["model"]["learned_pde"],
                        "width": str(run["model"]["width"]),
                        "run": entry["run"],
                        "steps": run["train"]["steps"],
                        "paper_tflop_per_step": flops / 1e12,
                        "paper_pflop_run": flops * run["train"]["steps"] / 1e15,
                    }
                )
    counted = time.perf_counter() - counted
    roma = next(r for r in rows if r["model"] == "roma")
    heads = [
        common.headline(
            f"ROMA training step on the CPU, widths / {args.shrink} ({roma['width']}), {args.threads} threads",
            roma["s_per_step"],
            "s",
        ),
        common.headline("ROMA training step, peak anonymous memory of the step", roma["step_mb"], "MB"),
        common.headline("ROMA training step at the paper's size (264M), FLOPs", roma["paper_tflop_per_step"], "TFLOP"),
    ]
    if not args.quick:
        runs = {r["run"]: r for r in rows if r["task"] == "paper run"}  # a run in two experiments counts once
        total = sum(r["paper_pflop_run"] for r in runs.values())
        heads += [
            common.headline(f"the paper's {len(runs)} ROMA-study trainings, FLOPs in all", total / 1e3, "EFLOP"),
            common.headline(f"counting them (irno.roma.cost, {len(runs)} runs)", counted, "s"),
        ]
    notes = [
        f"CPU steps: {PAPER_CONFIG}'s runs with every width divided by {args.shrink}, 512 + 64 tokens, history 64, "
        f"one window, a random-walk subgraph of a {GRAPH_NODES}-node hyperbolic graph; best of {args.steps} steps "
        "after a warm-up, each model in a fresh process",
        "FLOPs: matrix products only (torch's FLOP counter), forward and backward; paper sizes by "
        "irno.roma.cost.train_step_flops",
    ]
    columns = list(dict.fromkeys(key for row in rows for key in row))  # CPU steps and paper runs in one table
    return common.report(NAME, args, [{key: row.get(key, "") for key in columns} for row in rows], heads, notes)


if __name__ == "__main__":
    main()
