"""Benchmark: base-prediction cache build, and a training epoch of Phi from the cache vs recomputing h0.

One run, one machine, one dataset:

1. writes a synthetic Well-format dataset (11 active_matter-shaped fields of smooth random waves
   at the simulated size, 64 x 64 by default) and prepares its train store;
2. builds the h0 cache with a base of the published active_matter FNO's size (modes 16,
   width 128; untrained: the timing does not depend on the weights) -> samples/s;
3. times an epoch of Phi training (the paper's U-Net, K unrolled steps, MSE per step, Adam)
   reading h0 from the cache, and an epoch computing h0 = base(x) in every batch, interleaved,
   `--repeats` times each; the fastest of each is reported (all are kept in the JSON).

Prints a table and writes JSON. Figures measured on a shared, loaded machine are pessimistic.

    PYTHONPATH=. python benchmarks/base_cache.py --out results/benchmarks/base_cache.json
"""

from __future__ import annotations

import argparse
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from irno.base.cache import BasePredictionCache, RefinementDataset
from irno.base.operator import BaseOperator, build_model
from irno.config import BaseConfig, PhiConfig
from irno.data.store import PreparedSplit, prepare_split
from irno.data.well import build_manifest
from irno.data.wellfile import write_stats, write_well_file
from irno.models import build_phi, refine_steps
from irno.utils import write_json


def write_dataset(root: Path, grid: int, frames: int, n_files: int, n_traj: int, seed: int = 0) -> Path:
    """active_matter-shaped files of smooth random waves (timing only; not physics)."""
    rng = np.random.default_rng(seed)
    x = np.arange(grid) * 2 * np.pi / grid
    X, Y = np.meshgrid(x, x, indexing="ij")
    t = np.arange(frames)[:, None, None]

    def waves(*shape):  # (n_traj, frames, grid, grid, *shape)
        n = int(np.prod(shape, dtype=int))
        out = np.zeros((n_traj, frames, grid, grid, n), np.float32)
        for b, c in np.ndindex(n_traj, n):
            kx, ky = rng.integers(-4, 5, size=2)
            out[b, ..., c] = rng.normal() * np.cos(kx * X + ky * Y - rng.uniform(-0.4, 0.4) * t + rng.uniform(0, 6.3))
        return out.reshape(n_traj, frames, grid, grid, *shape)

    folder = root / "datasets" / "active_matter"
    for i in range(n_files):
        write_well_file(
            folder / "data" / "train" / f"active_matter_bench_{i}.hdf5",
            dataset_name="active_matter",
            time=np.arange(frames, dtype=np.float32) * 0.25,
            coords={"x": x.astype(np.float32), "y": x.astype(np.float32)},
            fields={0: {"concentration": 1 + 0.01 * waves()}, 1: {"velocity": waves(2)}, 2: {"D": waves(2, 2), "E": waves(2, 2)}},
        )
    write_stats(folder)
    return root


class Clock:
    """Wall and CPU seconds (CPU: all threads of this process, less sensitive to other jobs' load)."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def phi_epoch(phi, optimiser, batches, h0_of, K: int, alpha: float) -> Clock:
    """Time one pass over `batches`; h0_of(indices, x) gives h0 (from the cache or the base)."""
    with Clock() as clock:
        for idx, (x, y) in batches:
            h0 = h0_of(idx, x)
            loss = sum(F.mse_loss(h, y) for h in refine_steps(phi, x, h0, alpha, K)) / K
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        if x.is_cuda:
            torch.cuda.synchronize()
    return clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=64)
    parser.add_argument("--frames", type=int, default=12, help="frames per trajectory (samples = frames - 4 per trajectory)")
    parser.add_argument("--files", type=int, default=2)
    parser.add_argument("--trajectories", type=int, default=2, help="trajectories per file")
    parser.add_argument("--base-width", type=int, default=128, help="FNO hidden channels (published: 128)")
    parser.add_argument("--base-modes", type=int, default=16, help="FNO modes per axis (published: 16)")
    parser.add_argument("--cache-batch", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8, help="Phi training batch size")
    parser.add_argument("--K", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2, help="epochs per mode (the fastest is reported)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--out", type=Path, help="JSON file to write")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_dataset(tmp / "well", args.grid, args.frames, args.files, args.trajectories)
        write_json(tmp / "manifest.json", build_manifest(tmp / "well", "active_matter", source="benchmark", splits=("train",)))
        t0 = time.perf_counter()
        store = PreparedSplit(prepare_split(tmp / "manifest.json", "train", tmp / "store"))
        prepare_s = time.perf_counter() - t0
        n_fields = len(store.field_names)

        torch.manual_seed(0)
        cfg = BaseConfig(source="train", model_kwargs={"modes1": args.base_modes, "modes2": args.base_modes, "hidden_channels": args.base_width})
        base = BaseOperator(build_model(cfg, store.n_steps_input * n_fields, n_fields, store.grid)).to(device).eval().requires_grad_(False)
        base.identity = {"model_class": "FNO", "benchmark": True}
        with torch.no_grad():  # warm-up: the first call pays for kernel and FFT-plan set-up
            base(store.batch(range(min(args.cache_batch, len(store))))[0].to(device))
        with Clock() as cache_clock:
            cache = BasePredictionCache.build(base, store, tmp / "cache", batch_size=args.cache_batch, device=device)
        data = RefinementDataset(store, cache)

        # The same batches in the same order for both epochs; Phi and Adam restart from one state.
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
        batches = [(idx, tuple(t.to(device) for t in store.batch(idx))) for idx in order.split(args.batch)]
        torch.manual_seed(1)
        phi = build_phi(PhiConfig(), store.n_steps_input * n_fields + n_fields, n_fields).to(device)
        initial = {k: v.clone() for k, v in phi.state_dict().items()}
        h0_sources = {"cached": lambda idx, x: cache.batch(idx).to(device), "recomputed": lambda idx, x: base(x)}
        timings = {mode: [] for mode in h0_sources}
        phi_epoch(phi, torch.optim.Adam(phi.parameters()), batches[:1], h0_sources["recomputed"], args.K, 0.2)  # warm-up
        for _ in range(args.repeats):  # interleaved, so a change in the machine's load hits both alike
            for mode, h0_of in h0_sources.items():
                phi.load_state_dict(initial)
                optimiser = torch.optim.Adam(phi.parameters(), lr=3e-4)
                timings[mode].append(phi_epoch(phi, optimiser, batches, h0_of, args.K, 0.2))

    result = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({platform.processor() or platform.machine()})",
        "torch_threads": torch.get_num_threads(),
        "grid": args.grid,
        "n_samples": len(store),
        "base": f"FNO modes {args.base_modes} width {args.base_width} (untrained)",
        "prepare_seconds": prepare_s,
        "cache_build_seconds": cache_clock.wall,
        "cache_build_samples_per_s": len(store) / cache_clock.wall,
        "cache_build_cpu_seconds": cache_clock.cpu,
        "phi": f"U-Net width 16 depth 4, K={args.K}, batch {args.batch}",
        "epoch_seconds_cached": min(c.wall for c in timings["cached"]),
        "epoch_seconds_recomputed": min(c.wall for c in timings["recomputed"]),
        "speedup_cached": min(c.wall for c in timings["recomputed"]) / min(c.wall for c in timings["cached"]),
        "epoch_cpu_seconds_cached": min(c.cpu for c in timings["cached"]),
        "epoch_cpu_seconds_recomputed": min(c.cpu for c in timings["recomputed"]),
        "speedup_cached_cpu": min(c.cpu for c in timings["recomputed"]) / min(c.cpu for c in timings["cached"]),
        "epoch_seconds_all": {mode: [[c.wall, c.cpu] for c in clocks] for mode, clocks in timings.items()},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "note": "wall figures carry whatever load the machine had (pessimistic on a shared machine); "
        "CPU seconds count this process's threads only; epoch_seconds_all: [wall, cpu] per repeat",
    }
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value:.3f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.out, result)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
