"""Evaluation throughput: K + 6 refinement steps with every metric, against the bare iteration.

    python -m benchmarks.evaluate [--quick] [--grid 64] [--batch 16]

Data as in benchmarks.train (simulated active_matter, prepared store, h0 cached from an
untrained FNO of the published size); Phi is the paper's U-Net (untrained: the time does not
depend on the weights). Measured in turn, best of the repeats: `irno.refinement.evaluate.evaluate` over the
test split (h_0 .. h_{K+6}, The Well's VRMSE in both conventions, band errors, radial error
spectra and their ratio quantiles, spectral MSE, energy spectra), the same iteration without
metrics, and evaluate with Phi channels-first instead of channels_last.
"""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks import common
from irno.config import EvalConfig, NetworkConfig
from irno.device import select_device
from irno.refinement.evaluate import evaluate
from irno.refinement.phi import build_phi, refine_steps

NAME = "evaluate"


def iterate_only(phi, data, batch: int, n_steps: int, device, memory_format) -> None:
    """The iteration evaluate runs, without metrics."""
    with torch.inference_mode():
        for start in range(0, len(data), batch):
            x, h0, _ = (
                t.to(device, memory_format=memory_format)
                for t in data.batch(np.arange(start, min(start + batch, len(data))))
            )
            for _ in itertools.chain([h0], refine_steps(phi, x, h0, 0.2, n_steps - 1)):
                pass


def main(argv: list[str] | None = None) -> dict:
    p = common.parser(NAME, __doc__)
    p.add_argument("--grid", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--K", type=int, default=6)
    p.add_argument("--extra-steps", type=int, default=6)
    p.add_argument("--trajectories", type=int, help="test trajectories (default: 1 quick, 2 full)")
    p.add_argument("--frames", type=int, help="frames per trajectory (default: 20 quick, 40 full)")
    p.add_argument("--repeats", type=int, help="timed runs of each case (default: 2 quick, 3 full)")
    args = p.parse_args(argv)
    args.trajectories = args.trajectories or (1 if args.quick else 2)
    args.frames = args.frames or (20 if args.quick else 40)
    args.repeats = args.repeats or (2 if args.quick else 3)
    common.set_threads(args.threads)
    device = select_device("auto")
    n_steps = args.K + args.extra_steps + 1

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.grid <= 128:
            manifest = common.simulated_dataset(
                root, grid=args.grid, frames=args.frames, train=1, test=args.trajectories
            )
        else:  # the simulator is slow at large grids; timing does not depend on the fields
            manifest = common.synthetic_dataset(
                root, grid=args.grid, frames=args.frames, trajectories=args.trajectories
            )
        base_cfg, model_dir = common.published_size_base((args.grid, args.grid), root / "base")
        data = common.stores_and_caches(manifest, root, base_cfg, model_dir, splits=("test",))["test"]
        torch.manual_seed(0)
        phi = build_phi(NetworkConfig(), 55, 11).to(device).eval()
        cfg = EvalConfig(extra_steps=args.extra_steps, batch_size=args.batch, device=str(device))
        cl, cf = torch.channels_last, torch.contiguous_format

        def run_evaluate(memory_format):
            return lambda: evaluate(phi, data, K=args.K, alpha=0.2, cfg=cfg, device=device, memory_format=memory_format)

        cases = {
            "evaluate, every metric (Phi channels_last, as irno evaluate runs it)": run_evaluate(cl),
            "evaluate, every metric, Phi channels-first": run_evaluate(cf),
            "iteration only, no metrics (channels_last)": lambda: iterate_only(
                phi, data, args.batch, n_steps, device, cl
            ),
        }
        for run in cases.values():  # warm-up: kernels, FFT plans
            run()
        seconds = common.interleaved(cases, args.repeats)
        peak = common.peak_rss_mb()

    n = len(data)
    best = {name: min(s["wall"]) for name, s in seconds.items()}
    full, bare = best[next(iter(cases))], best["iteration only, no metrics (channels_last)"]
    rows = [
        {"case": name, "samples_per_s": n / b, "seconds": b, "all_runs_s": np.round(seconds[name]["wall"], 2).tolist()}
        for name, b in best.items()
    ]
    overhead = 100 * (full - bare) / bare
    setting = f"{args.grid}^2, {n_steps} steps, batch {args.batch}, {common.describe_device()}"
    heads = [
        common.headline(f"evaluation throughput, every metric ({setting})", n / full, "samples/s"),
        common.headline("metrics' cost on top of the iteration", overhead, "%"),
    ]
    notes = [f"{n} test samples, {args.repeats} interleaved runs of each case, best kept; peak RSS {peak:.0f} MB"]
    return common.report(NAME, args, rows, heads, notes)


if __name__ == "__main__":
    main()
