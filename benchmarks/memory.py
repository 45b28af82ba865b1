"""Memory: training and evaluation with the dataset doubled.

    python -m benchmarks.memory [--quick] [--trajectories 12]

Writes two active_matter-shaped datasets of smooth random waves (1x: N trajectories per split,
2x: 2N; 64^2, 41 frames), prepares their stores and caches h0 (a small FNO: the base plays no
part in the memory of training). Then, each in a fresh process: one epoch of `train_phi`
on the train split (a small Phi, batch 32; the stores and caches are memory-mapped), and
`evaluate` of the test split (K = 6 + 6 steps, every metric).

What is measured, per process: the peak resident set (ru_maxrss), which counts the pages of the
memory-mapped stores that were read (the kernel's page cache, shared and dropped under memory
pressure, so it grows with the data read), and the peak *anonymous* resident memory (RssAnon,
polled every 5 ms from /proc/self/status): the process's own memory, which is what a job
needs from its node. Targets: anonymous peak of 2x within 1.2x of 1x for both.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks import common

NAME = "memory"
GRID, FRAMES, BATCH = 64, 41, 32


def rss_anon_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class AnonymousPeak(threading.Thread):
    """Polls RssAnon every `interval` s until stopped; `peak` holds the highest value seen (MB)."""

    def __init__(self, interval: float = 0.005):
        super().__init__(daemon=True)
        self.interval, self.peak, self._stop_event = interval, rss_anon_mb(), threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.peak = max(self.peak, rss_anon_mb())

    def stop(self) -> float:
        self._stop_event.set()
        self.join()
        self.peak = max(self.peak, rss_anon_mb())
        return self.peak


def child(task: str, data_root: Path, result: Path, threads: int) -> None:
    """One measured run in this (fresh) process; writes its figures to `result`."""
    import torch

    from benchmarks.train import FirstSamples
    from irno.base.cache import BasePredictionCache, RefinementDataset
    from irno.config import EvalConfig, NetworkConfig, PhiConfig, PhiTrainConfig
    from irno.data.store import PreparedSplit

    torch.set_num_threads(threads)
    data = {
        s: RefinementDataset(
            PreparedSplit(data_root / "prepared" / s), BasePredictionCache.open(data_root / "cache" / s)
        )
        for s in ("train", "valid", "test")
    }
    phi_cfg = NetworkConfig(base_channels=8, depth=2)
    sampler = AnonymousPeak()
    sampler.start()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        if task == "train":
            from irno.refinement.train import train_phi

            cfg = PhiConfig(network=phi_cfg, train=PhiTrainConfig(epochs=1, batch_size=BATCH, device="cpu"))
            train_phi(cfg, data["train"], FirstSamples(data["valid"], BATCH), out)
            n = len(data["train"])
        else:
            from irno.refinement.evaluate import evaluate
            from irno.refinement.phi import build_phi, phi_memory_format

            phi = build_phi(phi_cfg, 55, 11)
            evaluate(
                phi,
                data["test"],
                K=6,
                alpha=0.2,
                cfg=EvalConfig(batch_size=BATCH, device="cpu"),
                memory_format=phi_memory_format(phi_cfg),
            )
            n = len(data["test"])
    seconds = time.perf_counter() - start
    anon = sampler.stop()
    result.write_text(
        json.dumps({"samples": n, "seconds": seconds, "peak_rss_mb": common.peak_rss_mb(), "peak_anon_mb": anon})
    )


def main(argv: list[str] | None = None) -> dict:
    p = common.parser(NAME, __doc__)
    p.add_argument(
        "--trajectories", type=int, help="trajectories per split of the 1x dataset (default: 2 quick, 12 full)"
    )
    # the measured child processes' options
    p.add_argument("--child", choices=["train", "evaluate"], help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args.child, args.data, args.result, args.threads)
    args.trajectories = args.trajectories or (2 if args.quick else 12)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        roots = {}
        for scale in (1, 2):
            root = Path(tmp) / f"{scale}x"
            manifest = common.synthetic_dataset(root, grid=GRID, frames=FRAMES, trajectories=scale * args.trajectories)
            base_cfg, model_dir = common.published_size_base((GRID, GRID), root / "base", modes=4, width=8)
            common.stores_and_caches(manifest, root, base_cfg, model_dir, splits=("train", "valid", "test"))
            roots[scale] = root
        for task in ("train", "evaluate"):
            for scale, root in roots.items():
                result = Path(tmp) / f"{task}_{scale}x.json"
                cmd = [
                    sys.executable,
                    "-m",
                    "benchmarks.memory",
                    "--child",
                    task,
                    "--data",
                    str(root),
                    "--result",
                    str(result),
                    "--threads",
                    str(args.threads),
                ]
                subprocess.run(cmd, check=True, cwd=common.ROOT, env=dict(common.child_env(), PYTHONWARNINGS="ignore"))
                split = "train" if task == "train" else "test"
                size = (
                    sum(
                        f.stat().st_size
                        for d in (root / "prepared" / split, root / "cache" / split)
                        for f in d.iterdir()
                    )
                    / 2**20
                )
                rows.append({"task": task, "dataset": f"{scale}x", "data_mb": size, **json.loads(result.read_text())})

    def ratio(task: str, key: str) -> float:
        one, two = (next(r[key] for r in rows if r["task"] == task and r["dataset"] == d) for d in ("1x", "2x"))
        return two / one

    heads = []
    for task, what in (("train", "training"), ("evaluate", "evaluation")):
        anon = ratio(task, "peak_anon_mb")
        heads.append(
            common.headline(f"{what} peak anonymous memory, 2x / 1x dataset", anon, "x", "<= 1.2x", anon <= 1.2)
        )
        heads.append(
            common.headline(f"{what} peak RSS incl. mapped store pages, 2x / 1x", ratio(task, "peak_rss_mb"), "x")
        )
    notes = [
        f"1x: {args.trajectories} trajectories per split of {FRAMES} frames at {GRID}^2; each run in a fresh process, "
        f"{args.threads} threads; Phi of width 8, depth 2, batch {BATCH}",
        "peak RSS counts the pages of the memory-mapped stores that were read (page cache, reclaimable); "
        "anonymous memory is the process's own",
    ]
    return common.report(NAME, args, rows, heads, notes)


if __name__ == "__main__":
    main()
