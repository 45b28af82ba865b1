"""What every benchmark shares: the machine, clocks, interleaved repeats, its data, the report.

The convention (benchmarks/README.md): a benchmark is a module ``benchmarks/<name>.py``, run from
the repository root as ``python -m benchmarks.<name>``, whose `main(argv)` parses `parser(...)`'s
options (``--quick``: a smaller problem that finishes in a minute or two; ``--out``: the JSON
file, default ``results/benchmarks/<name>.json``; ``--threads``), measures, and ends with
`report`: a printed table of every measured row, the headline figures against their targets, and
the JSON (machine, load, parameters, rows, headlines). ``python -m benchmarks`` runs them all.

Timing on shared machines is noisy: cases that are compared run in the same process, in turn
(`interleaved`), and the best of the repeats is compared; the load average is recorded.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import resource
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]  # the repository
RESULTS = Path("results/benchmarks")


def parser(name: str, doc: str) -> argparse.ArgumentParser:
    """The options every benchmark takes; add its own to the returned parser."""
    p = argparse.ArgumentParser(
        prog=f"python -m benchmarks.{name}", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="a smaller problem (a minute or two)")
    p.add_argument("--out", type=Path, default=RESULTS / f"{name}.json", help="JSON to write (default: %(default)s)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    return p


def child_env() -> dict:
    """The environment for a child process: this repository's `irno` and `benchmarks` first."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def machine() -> dict:
    """What the figures were measured on, and how busy it was."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average": [round(v, 2) for v in os.getloadavg()],  # 1, 5, 15 minutes
    }


def describe_device() -> str:
    m = machine()
    return m["gpu"] or f"{m['cpu']}, {m['torch_threads']} threads"


class Clock:
    """Wall and CPU seconds of a block (CPU: all threads of this process)."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        synchronize()
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


class Parts:
    """Wall seconds of the named parts of a loop, one entry per pass; disabled, it only runs the blocks
    (timing a part waits for the GPU, which would slow the loop being measured)."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.seconds: dict[str, list[float]] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        start = time.perf_counter()
        yield
        synchronize()
        self.seconds.setdefault(name, []).append(time.perf_counter() - start)

    def median(self) -> dict[str, float]:
        return {name: float(np.median(s)) for name, s in self.seconds.items()}


def synchronize() -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def interleaved(cases: dict[str, Callable[[], object]], repeats: int) -> dict[str, dict[str, list[float]]]:
    """Wall and CPU seconds of every case, the cases run in turn `repeats` times (a change in load
    hits all alike): {case: {"wall": [...], "cpu": [...]}}."""
    seconds = {name: {"wall": [], "cpu": []} for name in cases}
    for _ in range(repeats):
        for name, run in cases.items():
            with Clock() as clock:
                run()
            seconds[name]["wall"].append(clock.wall)
            seconds[name]["cpu"].append(clock.cpu)
    return seconds


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss, KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def headline(metric: str, value: float, unit: str, target: str = "", met: bool | None = None) -> dict:
    return {"metric": metric, "value": value, "unit": unit, "target": target, "met": met}


def report(name: str, args: argparse.Namespace, rows: list[dict], headlines: list[dict], notes: list[str] = ()) -> dict:
    """Print the rows and headlines as tables, write the JSON; returns what was written."""
    from irno.files import write_json

    result = {
        "benchmark": name,
        "machine": machine(),
        "params": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "rows": rows,
        "headlines": [{"benchmark": name, **h} for h in headlines],
        "notes": list(notes),
    }
    if rows:
        print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".4g"))
        print()
    if headlines:
        print(headline_table(result["headlines"]))
    for note in notes:
        print(f"- {note}")
    m = result["machine"]
    print(f"\n{m['gpu'] or m['cpu']}, {m['torch_threads']} torch threads, load average {m['load_average']}")
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return result


def headline_table(headlines: list[dict]) -> str:
    def cell(h):
        v = h["value"]
        if isinstance(v, float) and math.isfinite(v):
            v = f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        met = {True: "yes", False: "**no**", None: ""}[h["met"]]
        return {
            "benchmark": h["benchmark"],
            "figure": h["metric"],
            "value": f"{v} {h['unit']}".strip(),
            "target": h["target"],
            "met": met,
        }

    return pd.DataFrame([cell(h) for h in headlines]).to_markdown(index=False)


# ----------------------------------------------------------------------------- data


def simulated_dataset(root: Path, *, grid: int, frames: int, train: int, valid: int = 1, test: int = 1) -> Path:
    """Simulate active_matter (irno.sim) with `train` / `valid` / `test` trajectories; returns the manifest."""
    from irno.config import SimulationConfig, SplitPlan
    from irno.files import write_json
    from irno.sim import simulate_dataset

    pairs = [
        [1, -1],
        [3, -2],
        [5, -3],
        [9, -4],
        [7, -2],
        [11, -3],
        [13, -1],
        [3, -4],
        [5, -5],
        [9, -2],
        [1, -3],
        [7, -4],
    ]
    cfg = SimulationConfig(
        grid=grid,
        frames=frames,
        train=SplitPlan(pairs[:train], 1),
        valid=SplitPlan(pairs[train : train + valid], 1),
        test=SplitPlan(pairs[train + valid : train + valid + test], 1),
    )
    manifest = simulate_dataset(cfg, root / "well", progress=False)
    write_json(root / "manifest.json", manifest)
    return root / "manifest.json"


def synthetic_dataset(root: Path, *, grid: int, frames: int, trajectories: int, seed: int = 0) -> Path:
    """An active_matter-shaped dataset of smooth random waves (for timing and memory, not physics).

    Much faster to make than a simulation at large grids or sizes; every split holds one file
    of `trajectories` trajectories. Returns the manifest.
    """
    from irno.data.well import build_manifest
    from irno.data.wellfile import write_stats, write_well_file
    from irno.files import write_json

    rng = np.random.default_rng(seed)
    x = np.arange(grid) * 2 * np.pi / grid
    X, Y = np.meshgrid(x, x, indexing="ij")
    t = np.arange(frames)[:, None, None]

    def waves(*shape):  # (trajectories, frames, grid, grid, *shape)
        n = int(np.prod(shape, dtype=int))
        out = np.zeros((trajectories, frames, grid, grid, n), np.float32)
        for b, c in np.ndindex(trajectories, n):
            kx, ky = rng.integers(-4, 5, size=2)
            out[b, ..., c] = rng.normal() * np.cos(kx * X + ky * Y - rng.uniform(-0.4, 0.4) * t + rng.uniform(0, 6.3))
        return out.reshape(trajectories, frames, grid, grid, *shape)

    folder = root / "well" / "datasets" / "active_matter"
    for split in ("train", "valid", "test"):
        write_well_file(
            folder / "data" / split / f"active_matter_waves_{split}.hdf5",
            dataset_name="active_matter",
            time=np.arange(frames, dtype=np.float32) * 0.25,
            coords={"x": x.astype(np.float32), "y": x.astype(np.float32)},
            fields={
                0: {"concentration": 1 + 0.01 * waves()},
                1: {"velocity": waves(2)},
                2: {"D": waves(2, 2), "E": waves(2, 2)},
            },
        )
    write_stats(folder)
    write_json(root / "manifest.json", build_manifest(root / "well", "active_matter", source="benchmark"))
    return root / "manifest.json"


def published_size_base(grid: tuple[int, int], model_dir: Path, *, modes: int = 16, width: int = 128):
    """(BaseConfig, model directory) of an untrained FNO of the published active_matter base's size.

    Untrained: the time a base takes does not depend on its weights.
    """
    import torch

    from irno.base.operator import build_model, save_base
    from irno.config import BaseConfig

    cfg = BaseConfig(source="train", model_kwargs={"modes1": modes, "modes2": modes, "hidden_channels": width})
    torch.manual_seed(0)
    save_base(build_model(cfg, 44, 11, grid), model_dir, {"model_class": "FNO", "source": "train"})
    return cfg, model_dir


def stores_and_caches(manifest: Path, root: Path, base_cfg, model_dir: Path, splits=("train", "valid")) -> dict:
    """split -> RefinementDataset (prepared store + base-prediction cache), built under `root`."""
    from irno.base.cache import BasePredictionCache, RefinementDataset, cache_base
    from irno.data.store import PreparedSplit, prepare_split

    out = {}
    for split in splits:
        store = PreparedSplit(prepare_split(manifest, split, root / "prepared" / split))
        cache_base(base_cfg, model_dir, store, root / "cache" / split)
        out[split] = RefinementDataset(store, BasePredictionCache.open(root / "cache" / split))
    return out
