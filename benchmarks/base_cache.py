"""Base-prediction cache build throughput.

    python -m benchmarks.base_cache [--quick] [--grid 64] [--cache-batch 32]

Writes an active_matter-shaped dataset of smooth random waves (the simulator is slow at large
grids, and the time does not depend on the fields), prepares its train store (timed: one pass
through WellDataset), then builds the h0 cache with a base of the published active_matter FNO's
size (16 modes, width 128; untrained) in each storage dtype, in turn, the best of the repeats
kept. The build includes reading the store, the base's forward, writing the memory map and its
progress marker after every batch.

Then what the cache buys: one epoch of `irno.refinement.train.train_phi` (the paper's Phi and
objective, batch 8, validated on the same store) with h0 read from the
float32 cache against the same epoch with h0 = base(x) recomputed for every batch, in turn.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch

from benchmarks import common
from irno.base.cache import BasePredictionCache, RefinementDataset
from irno.base.operator import load_base
from irno.config import PhiConfig, PhiTrainConfig
from irno.data.store import PreparedSplit, prepare_split
from irno.device import select_device
from irno.refinement.train import train_phi

NAME = "base_cache"


def main(argv: list[str] | None = None) -> dict:
    p = common.parser(NAME, __doc__)
    p.add_argument("--grid", type=int, default=64)
    p.add_argument("--frames", type=int, help="frames per trajectory (default: 20 quick, 41 full)")
    p.add_argument("--trajectories", type=int, help="trajectories (default: 2 quick, 4 full)")
    p.add_argument("--cache-batch", type=int, default=32, help="inference batch of the build (base.cache_batch_size)")
    p.add_argument("--repeats", type=int, help="builds per dtype and epochs per h0 source (default: 1 quick, 2 full)")
    p.add_argument("--batch", type=int, default=8, help="training batch of the epoch comparison")
    args = p.parse_args(argv)
    args.frames = args.frames or (20 if args.quick else 41)
    args.trajectories = args.trajectories or (2 if args.quick else 4)
    args.repeats = args.repeats or (1 if args.quick else 2)
    common.set_threads(args.threads)
    device = select_device("auto")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest = common.synthetic_dataset(root, grid=args.grid, frames=args.frames, trajectories=args.trajectories)
        with common.Clock() as prepare:
            store = PreparedSplit(prepare_split(manifest, "train", root / "store"))
        base_cfg, model_dir = common.published_size_base(store.grid, root / "base")
        base = load_base(base_cfg, model_dir, device)
        with torch.no_grad():  # warm-up: the first call pays for kernel and FFT-plan set-up
            base(store.batch(range(min(args.cache_batch, len(store))))[0].to(device))

        def build(dtype: str):
            def run():
                out = root / f"cache_{dtype}"
                shutil.rmtree(out, ignore_errors=True)
                BasePredictionCache.build(base, store, out, dtype=dtype, batch_size=args.cache_batch, device=device)

            return run

        seconds = common.interleaved({dtype: build(dtype) for dtype in ("float32", "bfloat16")}, args.repeats)

        cached = RefinementDataset(store, BasePredictionCache.open(root / "cache_float32"))
        cfg = PhiConfig(train=PhiTrainConfig(epochs=1, batch_size=args.batch, device=device.type))

        def epoch(data, base=None):
            def run():
                out = root / "run"
                shutil.rmtree(out, ignore_errors=True)
                train_phi(cfg, data, data, out, base=base)

            return run

        epochs = common.interleaved(
            {"h0 from the cache": epoch(cached), "h0 = base(x) every batch": epoch(store, base)}, args.repeats
        )

    n = len(store)
    rows = [
        {
            "step": "prepare the store (WellDataset pass)",
            "dtype": "float32",
            "samples_per_s": n / prepare.wall,
            "seconds": prepare.wall,
        }
    ]
    rows += [
        {"step": "build the h0 cache", "dtype": dtype, "samples_per_s": n / min(s["wall"]), "seconds": min(s["wall"])}
        for dtype, s in seconds.items()
    ]
    setting = f"{args.grid}^2, FNO width 128 / 16 modes, batch {args.cache_batch}, {common.describe_device()}"
    rows += [
        {
            "step": f"training epoch, {source}",
            "dtype": "float32",
            "samples_per_s": n / min(s["wall"]),
            "seconds": min(s["wall"]),
        }
        for source, s in epochs.items()
    ]
    cache_s, recompute_s = (min(s["wall"]) for s in epochs.values())
    heads = [
        common.headline(
            f"base cache build throughput, float32 ({setting})", n / min(seconds["float32"]["wall"]), "samples/s"
        ),
        common.headline(f"training epoch from the cache ({args.grid}^2, batch {args.batch})", cache_s, "s"),
        common.headline("the same epoch with the base recomputed every batch", recompute_s, "s"),
        common.headline("epoch speed-up from the cache", recompute_s / cache_s, "x"),
    ]
    notes = [
        f"{n} samples ({args.trajectories} trajectories of {args.frames} frames); "
        f"{args.repeats} build(s) per dtype, best kept"
    ]
    return common.report(NAME, args, rows, heads, notes)


if __name__ == "__main__":
    main()
