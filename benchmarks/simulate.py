"""Benchmark of the embedded simulator: single trajectories on one core, the demo dataset on 2 workers.

    PYTHONPATH=. python benchmarks/simulate.py [--out results/benchmarks/simulate.json] [--repeats 2]

Targets (issue 3): one 81-frame trajectory at 64^2 in <= 6 s on one core; the demo-sized dataset
(the `SimulationConfig` defaults: 64^2, 81 frames, 12 trajectories) in <= 2 min on 2 workers.
Wall time on a shared, busy machine is pessimistic, so CPU time and the load average are recorded
beside it (CPU time of one single-threaded process is close to its wall time on an idle core).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy loads: one core per process

import argparse
import resource
import tempfile
import time
from pathlib import Path

import pandas as pd

from irno.config import SimulationConfig
from irno.sim import simulate_dataset, simulate_trajectory
from irno.utils import write_json


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_trajectory(grid: int, repeats: int) -> dict:
    walls, cpus = [], []
    for repeat in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        simulate_trajectory(9.0, -3.0, grid=grid, frames=81, seed=repeat)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return {"case": f"1 trajectory, {grid}^2, 81 frames", "workers": 1, "wall_s": min(walls), "cpu_s": min(cpus),
            "target_s": 6.0 if grid == 64 else None, "load_avg_1min": os.getloadavg()[0]}


def time_demo_dataset(workers: int) -> dict:
    cfg = SimulationConfig(workers=workers)
    n = sum(len(getattr(cfg, s).pairs) * getattr(cfg, s).trajectories for s in ("train", "valid", "test"))
    with tempfile.TemporaryDirectory() as root:
        wall, cpu = time.perf_counter(), time.process_time() + _children_cpu()
        simulate_dataset(cfg, root, progress=False)
        wall = time.perf_counter() - wall
        cpu = time.process_time() + _children_cpu() - cpu
    return {"case": f"demo dataset ({n} trajectories, {cfg.grid}^2)", "workers": workers, "wall_s": wall,
            "cpu_s": cpu, "target_s": 120.0, "load_avg_1min": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/simulate.json"), help="JSON output")
    parser.add_argument("--repeats", type=int, default=2, help="runs per single-trajectory case (the fastest counts)")
    parser.add_argument("--workers", type=int, default=2, help="workers for the demo dataset")
    args = parser.parse_args()
    rows = [time_trajectory(32, args.repeats), time_trajectory(64, args.repeats), time_demo_dataset(args.workers)]
    table = pd.DataFrame(rows)
    table["met"] = [None if t is None or pd.isna(t) else w <= t for w, t in zip(table["wall_s"], table["target_s"])]
    print(table.to_markdown(index=False, floatfmt=".2f"))
    write_json(args.out, {"cpu_count": os.cpu_count(), "rows": rows})
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
