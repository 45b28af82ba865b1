"""DataLoader workers (`train.num_workers`): what they buy the training of Phi on this machine's cores.

    python -m benchmarks.workers [--quick] [--workers 0 1 2] [--threads 2]

Two measurements, each case in turn, the best of the repeats kept:

- reading: batches as `irno.refinement.train.train_epoch` reads them (`irno.data.batches.iterate_batches` over a
  prepared store and its base cache, memory-mapped, in the page cache after a first pass) with
  each worker count, at the paper's grid (256^2) and batch (16) by default; one loader reads
  `--read-epochs` shuffled epochs of the small dataset, so that its workers' start (paid once per
  epoch of a real training, thousands of batches) weighs as little as in a real epoch. This is
  all the loader does on any node: what a GPU training must get from its CPU cores per step.
- training: one epoch of `irno.refinement.train.train_phi` (the paper's Phi and objective, fp32 on the
  CPU, `--threads` torch threads) with each worker count, at 64^2, batch 8, as
  benchmarks/train.py measures the CPU training. The workers share the machine's cores with
  torch's threads, as they would in a CPU job.

Data: an active_matter-shaped dataset of smooth random waves (benchmarks/common.py; the time does
not depend on the values) with h0 cached from a small untrained FNO.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from benchmarks import common
from benchmarks.train import FirstSamples

NAME = "workers"


def dataset(root: Path, *, grid: int, frames: int, trajectories: int):
    """(train, valid) RefinementDatasets of a synthetic dataset under `root`."""
    manifest = common.synthetic_dataset(root, grid=grid, frames=frames, trajectories=trajectories)
    base_cfg, model_dir = common.published_size_base((grid, grid), root / "base", modes=4, width=8)
    data = common.stores_and_caches(manifest, root, base_cfg, model_dir)
    return data["train"], data["valid"]


def read_batches(data, batches: list[np.ndarray], workers: int) -> int:
    """Read `batches` through one loader as the training loop does; returns the samples read."""
    from irno.data.batches import iterate_batches

    samples = 0
    for *_, y in iterate_batches(data, batches, num_workers=workers):
        samples += len(y)
    return samples


def main(argv: list[str] | None = None) -> dict:
    p = common.parser(NAME, __doc__)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="worker counts (default: %(default)s)")
    p.add_argument("--read-grid", type=int, default=256, help="grid of the reading measurement (default: 256)")
    p.add_argument("--read-batch", type=int, default=16)
    p.add_argument("--train-grid", type=int, default=64, help="grid of the training measurement (default: 64)")
    p.add_argument("--train-batch", type=int, default=8)
    p.add_argument("--read-epochs", type=int, default=8, help="shuffled epochs one loader reads (default: 8)")
    p.add_argument("--repeats", type=int, help="interleaved passes of each case (default: 2 quick, 3 full)")
    args = p.parse_args(argv)
    args.repeats = args.repeats or (2 if args.quick else 3)
    common.set_threads(args.threads)
    from irno.config import LossConfig, NetworkConfig, PhiConfig, PhiTrainConfig
    from irno.data.batches import epoch_batches
    from irno.refinement.train import train_phi

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # reading: 6 trajectories of 24 frames at 256^2 are 120 samples, 1.2 GB of store and cache
        read_train, _ = dataset(
            root / "read", grid=args.read_grid, frames=16 if args.quick else 24, trajectories=3 if args.quick else 6
        )
        batches = [
            b for e in range(1, args.read_epochs + 1) for b in epoch_batches(len(read_train), args.read_batch, 42, e)
        ]
        read_batches(read_train, batches, 0)  # into the page cache
        seconds = common.interleaved(
            {w: (lambda w=w: read_batches(read_train, batches, w)) for w in args.workers}, args.repeats
        )
        n = sum(map(len, batches))
        sample_mb = sum(t.nbytes for t in read_train.batch([0])) / 1e6
        for w, s in seconds.items():
            rows.append(
                {
                    "measurement": f"reading, {args.read_grid}^2, batch {args.read_batch}",
                    "num_workers": w,
                    "samples_per_s": n / min(s["wall"]),
                    "MB_per_s": n * sample_mb / min(s["wall"]),
                    "ms_per_batch": 1e3 * min(s["wall"]) / len(batches),
                    "passes_s": np.round(s["wall"], 2).tolist(),
                }
            )

        train, valid = dataset(
            root / "train", grid=args.train_grid, frames=20 if args.quick else 40, trajectories=2 if args.quick else 4
        )
        valid_batch = FirstSamples(valid, args.train_batch)

        def cfg(workers: int) -> PhiConfig:
            tc = PhiTrainConfig(epochs=1, batch_size=args.train_batch, device="cpu", num_workers=workers)
            return PhiConfig(network=NetworkConfig(), loss=LossConfig(), train=tc)

        def epoch(workers: int) -> None:
            with tempfile.TemporaryDirectory(dir=root) as out:
                train_phi(cfg(workers), train, valid_batch, out)

        with tempfile.TemporaryDirectory(dir=root) as out:  # warm-up: kernels and primitives for these shapes
            train_phi(cfg(0), FirstSamples(train, args.train_batch), valid_batch, out)
        seconds = common.interleaved({w: (lambda w=w: epoch(w)) for w in args.workers}, args.repeats)
        n = len(train)
        for w, s in seconds.items():
            rows.append(
                {
                    "measurement": f"training, {args.train_grid}^2, batch {args.train_batch}, {args.threads} threads",
                    "num_workers": w,
                    "samples_per_s": n / min(s["wall"]),
                    "samples_per_cpu_s": n / min(s["cpu"]),
                    "passes_s": np.round(s["wall"], 2).tolist(),
                }
            )

    def rate(what: str, w: int) -> float:
        return next(r["samples_per_s"] for r in rows if r["measurement"].startswith(what) and r["num_workers"] == w)

    heads = []
    for what, grid, batch in (
        ("reading", args.read_grid, args.read_batch),
        ("training", args.train_grid, args.train_batch),
    ):
        for w in args.workers:
            heads.append(
                common.headline(f"{what} with num_workers {w} ({grid}^2, batch {batch})", rate(what, w), "samples/s")
            )
        if 0 in args.workers:
            best = max(args.workers, key=lambda w: rate(what, w))
            heads.append(common.headline(f"{what}: best num_workers / 0", rate(what, best) / rate(what, 0), "x"))
    notes = [
        f"{args.repeats} interleaved passes of each case, the best kept; workers are forked per epoch, as "
        "train_epoch does (their start is in every figure); "
        f"reading: {args.read_epochs} epochs of {len(read_train)} samples of {sample_mb:.1f} MB (x, h0, y) per loader, "
        "from the page cache",
        f"the training's workers (DataLoader processes) share the machine's cores with torch's {args.threads} threads",
        "a worker hands every batch to the training process through shared memory (torch copies x, h0 and y "
        "into /dev/shm); in the training process the batch is gathered from the memory maps directly",
    ]
    return common.report(NAME, args, rows, heads, notes)


if __name__ == "__main__":
    main()
