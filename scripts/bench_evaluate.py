"""Throughput of `irno.evaluate`: samples per second for K + extra steps with every metric,
against the bare iteration (Phi only), on synthetic data of the paper's shape.

    PYTHONPATH=$PWD python scripts/bench_evaluate.py --grid 64 --samples 64 --batch-size 16
    PYTHONPATH=$PWD python scripts/bench_evaluate.py --grid 256 --samples 512 --batch-size 32 --device cuda

Prints one JSON line. Timings taken on a shared machine are pessimistic.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import numpy as np
import torch

from irno.config import EvalConfig, PhiConfig
from irno.evaluate import evaluate
from irno.models import build_phi, refine_steps
from irno.utils import select_device


class RandomRefinementData(torch.utils.data.Dataset):
    """Random normalised {x, h0, y} with the contract's attributes and a vectorised batch()."""

    def __init__(self, n: int, n_fields: int, n_steps_input: int, grid: int):
        g = torch.Generator().manual_seed(0)
        self.y = torch.randn(n, n_fields, grid, grid, generator=g)
        self.h0 = self.y + 0.3 * torch.randn(n, n_fields, grid, grid, generator=g)
        self.x = torch.randn(n, n_steps_input * n_fields, grid, grid, generator=g)
        self.field_names = [f"field_{i}" for i in range(n_fields)]
        self.grid = (grid, grid)
        self.channel_mean, self.channel_std = np.zeros(n_fields, np.float32), np.ones(n_fields, np.float32)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"x": self.x[i], "h0": self.h0[i], "y": self.y[i]}

    def batch(self, rows):
        return self.x[rows], self.h0[rows], self.y[rows]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", type=int, default=64)
    parser.add_argument("--fields", type=int, default=11)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--K", type=int, default=6)
    parser.add_argument("--extra-steps", type=int, default=6)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    device = select_device(args.device)
    data = RandomRefinementData(args.samples, args.fields, 4, args.grid)
    phi = build_phi(PhiConfig(), 5 * args.fields, args.fields).to(device).eval()
    cfg = EvalConfig(extra_steps=args.extra_steps, batch_size=args.batch_size, device=str(device))
    n_steps = args.K + args.extra_steps

    evaluate(
        phi, RandomRefinementData(args.batch_size, args.fields, 4, args.grid), K=args.K, alpha=0.2, cfg=cfg, device=device
    )  # warm-up
    synchronize(device)
    start = time.perf_counter()
    evaluate(phi, data, K=args.K, alpha=0.2, cfg=cfg, device=device)
    synchronize(device)
    with_metrics = time.perf_counter() - start

    start = time.perf_counter()
    with torch.inference_mode():
        for first in range(0, len(data), args.batch_size):
            x, h0, _ = (t.to(device) for t in data.batch(np.arange(first, min(first + args.batch_size, len(data)))))
            for _ in itertools.chain([h0], refine_steps(phi, x, h0, 0.2, n_steps)):
                pass
    synchronize(device)
    iteration_only = time.perf_counter() - start

    print(json.dumps({
        "device": str(device), "grid": args.grid, "fields": args.fields, "samples": args.samples,
        "batch_size": args.batch_size, "steps": n_steps + 1, "threads": torch.get_num_threads(),
        "samples_per_s": round(args.samples / with_metrics, 2),
        "samples_per_s_iteration_only": round(args.samples / iteration_only, 2),
        "metric_overhead_pct": round(100 * (with_metrics - iteration_only) / iteration_only, 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
