"""Throughput of `irno.train.train_refiner` (the paper's objective and Phi) on random data.

    PYTHONPATH=$PWD python scripts/bench_train.py --grid 32 --samples 32 --epochs 2
    PYTHONPATH=$PWD python scripts/bench_train.py --grid 256 --samples 2048 --batch-size 16 --device cuda --bf16 --channels-last

Trains the default RefinerConfig (U-Net width 16, depth 4, K = 6) for a few epochs with a one-batch
validation split and prints one JSON line: seconds per epoch (from train_log.csv's clock, which
includes that validation and the epoch's files), training samples per second, and the first
epoch's loss. Epoch 1 includes one-off costs (cuDNN autotuning, compilation); the figures use
the later epochs when there are any. Timings taken on a shared machine are pessimistic.
"""

from __future__ import annotations

import argparse
import json
import tempfile

import numpy as np
import torch

from irno.config import RefinerConfig, TrainConfig
from irno.train import train_refiner


class RandomRefinementData(torch.utils.data.Dataset):
    """Random normalised {x, h0, y} with a vectorised batch()."""

    def __init__(self, n: int, n_fields: int, n_steps_input: int, grid: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.y = torch.randn(n, n_fields, grid, grid, generator=g)  # (N, F, H, W)
        self.h0 = self.y + 0.3 * torch.randn(n, n_fields, grid, grid, generator=g)
        self.x = torch.randn(n, n_steps_input * n_fields, grid, grid, generator=g)  # (N, T*F, H, W)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"x": self.x[i], "h0": self.h0[i], "y": self.y[i]}

    def batch(self, rows):
        rows = torch.as_tensor(np.asarray(rows))
        return self.x[rows], self.h0[rows], self.y[rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", type=int, default=32)
    parser.add_argument("--fields", type=int, default=11)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    train = RandomRefinementData(args.samples, args.fields, 4, args.grid, seed=0)
    valid = RandomRefinementData(args.batch_size, args.fields, 4, args.grid, seed=1)
    tc = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        device=args.device,
        bf16=args.bf16,
        channels_last=args.channels_last,
        compile=args.compile,
    )
    with tempfile.TemporaryDirectory() as out:
        history = train_refiner(RefinerConfig(train=tc), train, valid, out)
    seconds = [row["seconds"] for row in history]
    steady = seconds[1:] or seconds
    print(
        json.dumps(
            {
                "grid": args.grid,
                "samples": args.samples,
                "batch_size": args.batch_size,
                "device": args.device,
                "threads": torch.get_num_threads(),
                "epoch_seconds": [round(s, 3) for s in seconds],
                "train_samples_per_s": round(args.samples / float(np.mean(steady)), 3),
                "first_epoch_loss": history[0]["loss"],
                "total_seconds": round(sum(seconds), 3),
            }
        )
    )


if __name__ == "__main__":
    main()
