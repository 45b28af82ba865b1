"""Write a simulated active_matter dataset in The Well's layout: parallel, deterministic, restartable.

    <well_root>/datasets/active_matter/data/{train,valid,test}/active_matter_L_10.0_zeta_{z}_alpha_{a}.hdf5
    <well_root>/datasets/active_matter/stats.yaml      (from the train split)

Each (zeta, dipole) pair of a split is one file holding `trajectories` trajectories, like the real
dataset. Trajectory i of pair (zeta, dipole) in split s gets its own seed from
(base seed, s, zeta, dipole, i), so the output does not depend on the number of workers or on
which other pairs are configured. A file already present is kept when its ``config_hash``
attribute matches what the config asks for, and simulated again otherwise (files are written
atomically, so a present file is complete).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm import tqdm

from irno import IrnoError, log
from irno.config import SimulationConfig
from irno.data.wellfile import write_stats, write_well_file
from irno.files import stable_hash
from irno.settings import to_dict
from irno.sim.active_matter import BETA, BOX_LENGTH, ROTATIONAL_DIFFUSION, TRANSLATIONAL_DIFFUSION, simulate_trajectory

# Bump when the numerics change: files written by another version are then simulated again.
GENERATOR = "irno.sim.active_matter/1"
DESCRIPTION = (
    "Closure-model re-simulation, NOT The Well's active_matter data: the moment equations of the "
    "active-rod kinetic theory with a Bingham closure, solved pseudo-spectrally at low resolution "
    "(irno.sim). It matches the real dataset in its statistics only."
)
EXPECTED_FIELDS = {"t0": ["concentration"], "t1": ["velocity"], "t2": ["D", "E"]}


def file_name(zeta: float, dipole: float) -> str:
    """The real dataset's naming, floats included: active_matter_L_10.0_zeta_11.0_alpha_-2.0.hdf5."""
    return f"active_matter_L_{BOX_LENGTH}_zeta_{float(zeta)}_alpha_{float(dipole)}.hdf5"


def trajectory_seed(base_seed: int, split: str, zeta: float, dipole: float, index: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([base_seed, int(stable_hash([split, float(zeta), float(dipole), index]), 16)])


def _file_plan(cfg: SimulationConfig, split: str, zeta: float, dipole: float) -> dict:
    """What one file must hold; its hash is the file's ``config_hash`` attribute."""
    spec = {
        "generator": GENERATOR,
        "split": split,
        "zeta": float(zeta),
        "alpha": float(dipole),
        "trajectories": getattr(cfg, split).trajectories,
        "grid": cfg.grid,
        "frames": cfg.frames,
        "frame_dt": cfg.frame_dt,
        "dt": cfg.dt,
        "seed": cfg.seed,
    }
    return {"spec": spec, "hash": stable_hash(spec), "name": file_name(zeta, dipole)}


def _config_hash_of(path: Path) -> str | None:
    """The ``config_hash`` of a file irno.sim wrote; IrnoError for any other file, readable or not."""
    try:
        with h5py.File(path, "r") as f:
            if str(f.attrs.get("generator", "")).startswith("irno.sim"):
                return str(f.attrs.get("config_hash", ""))
            reason = "not written by irno.sim (the real dataset?)"
    except OSError:
        reason = "an unreadable HDF5 file (damaged?)"
    raise IrnoError(
        f"{path}: {reason}; the simulator neither overwrites nor mixes in files it did not write. "
        "Move it away or choose another --root"
    )


def _prepare_folders(folders: dict[str, Path], plans: dict[str, list[dict]]) -> dict[str, dict[str, str]]:
    """Create the split folders and check they are writable; drop this simulator's files the config
    no longer asks for and temporary files of an interrupted run. Returns split -> {file: config_hash}
    of the files already there."""
    present: dict[str, dict[str, str]] = {}
    for split, folder in folders.items():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test."):
                pass
        except OSError as e:
            raise IrnoError(f"{folder}: cannot write the simulated dataset there ({e.strerror or e})") from None
        for leftover in folder.glob(".*.tmp"):  # irno.files.atomic_path's, from a killed run
            leftover.unlink()
        wanted = {p["name"] for p in plans[split]}
        present[split] = {}
        for path in sorted(folder.glob("*.hdf5")) + sorted(folder.glob("*.h5")):
            config_hash = _config_hash_of(path)
            if path.name in wanted:
                present[split][path.name] = config_hash
            else:
                log.info("%s: removing, the config no longer asks for it", path)
                path.unlink()
    return present


def _simulate_for_file(task: tuple) -> dict[str, np.ndarray]:
    """One trajectory for a file, in a worker: float32 to halve what travels between processes."""
    zeta, dipole, grid, frames, frame_dt, dt, seed = task
    out = simulate_trajectory(zeta, dipole, grid=grid, frames=frames, frame_dt=frame_dt, dt=dt, seed=seed)
    return {k: v.astype(np.float32) for k, v in out.items()}


def parallel_map(
    function: Callable[[Any], Any],
    items: Iterable[Any],
    *,
    workers: int,
    progress: bool = True,
    desc: str = "",
) -> Iterable[tuple[int, Any]]:
    """Yield (index, function(item)) as they complete, in `workers` fresh processes.

    Processes are spawned (not forked), so a parent that imported torch or started threads is
    safe; each worker runs numpy / scipy.fft on one thread. With one worker everything runs in
    this process. A failing item cancels the rest and its exception propagates.
    """
    items = list(items)
    bar = tqdm(total=len(items), desc=desc, unit="traj", disable=not progress or not items)
    try:
        if workers <= 1:
            for i, item in enumerate(items):
                yield i, function(item)
                bar.update()
            return
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = {pool.submit(function, item): i for i, item in enumerate(items)}
            try:
                for future in concurrent.futures.as_completed(futures):
                    yield futures[future], future.result()
                    bar.update()
            except concurrent.futures.process.BrokenProcessPool:
                raise IrnoError(
                    f"a worker process died while running {desc or 'the tasks'}: killed (out of memory?), or a script "
                    "called this without the `if __name__ == '__main__':` guard that spawned processes need"
                ) from None
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    finally:
        bar.close()


def simulate_dataset(cfg: SimulationConfig, well_root: str | os.PathLike, *, progress: bool = True) -> dict:
    """Simulate every split of `cfg` under `well_root`, write ``stats.yaml`` and return the manifest."""
    # Imported here, not at the top: irno.data.well imports torch, which spawned workers do not need.
    from irno.data.well import SPLITS, build_manifest, dataset_dir, split_dir

    well_root = Path(well_root)
    plans = {split: [_file_plan(cfg, split, z, a) for z, a in getattr(cfg, split).pairs] for split in SPLITS}
    folders = {split: split_dir(well_root, cfg.dataset, split) for split in SPLITS}
    present = _prepare_folders(folders, plans)
    # A present file is complete (atomic writes); it is kept if it holds what the config asks for.
    pending = [
        (split, plan) for split in SPLITS for plan in plans[split] if present[split].get(plan["name"]) != plan["hash"]
    ]
    n_files = sum(len(p) for p in plans.values())
    log.info(
        "simulating %d of %d files (%d kept) with %d workers",
        len(pending),
        n_files,
        n_files - len(pending),
        cfg.workers,
    )

    tasks, owners = [], []  # one task per trajectory; owners[i] = (file number, trajectory index)
    for number, (split, plan) in enumerate(pending):
        spec = plan["spec"]
        for index in range(spec["trajectories"]):
            seed = trajectory_seed(cfg.seed, split, spec["zeta"], spec["alpha"], index)
            tasks.append((spec["zeta"], spec["alpha"], cfg.grid, cfg.frames, cfg.frame_dt, cfg.dt, seed))
            owners.append((number, index))
    done: dict[int, dict[int, dict]] = {}
    for i, result in parallel_map(_simulate_for_file, tasks, workers=cfg.workers, progress=progress, desc="simulate"):
        number, index = owners[i]
        done.setdefault(number, {})[index] = result
        split, plan = pending[number]
        if len(done[number]) == plan["spec"]["trajectories"]:
            results = done.pop(number)
            _write_file(cfg, folders[split] / plan["name"], split, plan, [results[k] for k in sorted(results)])

    write_stats(dataset_dir(well_root, cfg.dataset))
    return build_manifest(
        well_root,
        cfg.dataset,
        source="simulated",
        expected_files={split: [p["name"] for p in split_plans] for split, split_plans in plans.items()},
        expected_fields=EXPECTED_FIELDS,
        extra={
            "description": DESCRIPTION,
            "generator": GENERATOR,
            "simulation": to_dict(cfg),
            "config_hashes": {split: {p["name"]: p["hash"] for p in sp} for split, sp in plans.items()},
        },
    )


def _write_file(cfg: SimulationConfig, path: Path, split: str, plan: dict, trajectories: list[dict]) -> None:
    stacked = {
        k: np.stack([t[k] for t in trajectories]) for k in ("concentration", "velocity", "D", "E")
    }  # (B, T, ...)
    spec = plan["spec"]
    coords = np.arange(cfg.grid) * BOX_LENGTH / cfg.grid
    write_well_file(
        path,
        dataset_name=cfg.dataset,
        time=trajectories[0]["time"],
        coords={"x": coords, "y": coords},
        fields={
            0: {"concentration": stacked["concentration"]},
            1: {"velocity": stacked["velocity"]},
            2: {"D": stacked["D"], "E": stacked["E"]},
        },
        scalars={"L": BOX_LENGTH, "zeta": spec["zeta"], "alpha": spec["alpha"]},
        attrs={
            "source": DESCRIPTION,
            "generator": GENERATOR,
            "config_hash": plan["hash"],
            "closure": "Bingham (2D, exact for psi ~ exp(kappa cos 2(theta - theta0)))",
            "beta": BETA,
            "dT": TRANSLATIONAL_DIFFUSION,
            "dR": ROTATIONAL_DIFFUSION,
            "grid": cfg.grid,
            "dt": cfg.dt,
            "frame_dt": cfg.frame_dt,
            "seed": cfg.seed,
            "split": split,
        },
    )
