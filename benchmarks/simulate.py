"""The embedded simulator: single trajectories on one core, the demo dataset on 2 workers.

    python -m benchmarks.simulate [--quick] [--repeats 2] [--workers 2]

Targets: one 81-frame trajectory at 64^2 in <= 6 s on one core; the demo-sized dataset
(the `SimulationConfig` defaults: 64^2, 81 frames, 12 trajectories) in <= 2 min on 2 workers
(--quick leaves the dataset out). Wall time on a shared, busy machine is pessimistic, so CPU time
and the load average are recorded beside it (the CPU time of one single-threaded process is
close to its wall time on an idle core).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy loads: one core per process

import resource  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from benchmarks import common  # noqa: E402
from irno.config import SimulationConfig  # noqa: E402
from irno.sim import simulate_dataset, simulate_trajectory  # noqa: E402

NAME = "simulate"


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
            "target_s": 6.0 if grid == 64 else None, "load_avg_1min": os.getloadavg()[0]}  # fmt: skip


def time_demo_dataset(workers: int) -> dict:
    cfg = SimulationConfig(workers=workers)
    n = sum(len(getattr(cfg, s).pairs) * getattr(cfg, s).trajectories for s in ("train", "valid", "test"))
    with tempfile.TemporaryDirectory() as root:
        wall, cpu = time.perf_counter(), time.process_time() + _children_cpu()
        simulate_dataset(cfg, root, progress=False)
        wall = time.perf_counter() - wall
        cpu = time.process_time() + _children_cpu() - cpu
    return {"case": f"demo dataset ({n} trajectories, {cfg.grid}^2)", "workers": workers, "wall_s": wall,
            "cpu_s": cpu, "target_s": 120.0, "load_avg_1min": os.getloadavg()[0]}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    p = common.parser(NAME, __doc__)
    p.add_argument(
        "--repeats", type=int, help="runs per single-trajectory case, the fastest counts (default: 1 quick, 2 full)"
    )
    p.add_argument("--workers", type=int, default=2, help="workers for the demo dataset")
    args = p.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 2)
    rows = [time_trajectory(32, args.repeats), time_trajectory(64, args.repeats)]
    if not args.quick:
        rows.append(time_demo_dataset(args.workers))
    heads = [
        common.headline(
            r["case"] + f", {r['workers']} worker(s), wall",
            r["wall_s"],
            "s",
            f"<= {r['target_s']:g} s",
            r["wall_s"] <= r["target_s"],
        )
        for r in rows
        if r["target_s"]
    ]
    return common.report(NAME, args, rows, heads)


if __name__ == "__main__":
    main()
