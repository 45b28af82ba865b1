"""Does the re-simulation look like the real data? Statistics against the real data's, and a stability sweep.

Two checks, each written as CSV and Markdown under ``--out``: ``statistics.{csv,md}`` (the
per-field std and frame-to-frame rms of a simulated dataset beside the real dataset's,
`REAL_STATS`; expected within about 30 %) and ``sweep_<grid>.{csv,md}`` (one trajectory per
(zeta, dipole) at 32^2: finite, kinetic energy growing to a steady level, |Q| / c at most the cap).

    irno simulate-validate --out results/sim_validation [--grid 64] [--sweep-grid 32] [--workers 2]

Detail: docs/simulator.md#validation; the real statistics: docs/method.md#active_matter
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from irno import IrnoError
from irno.config import SimulationConfig, SplitPlan
from irno.files import read_yaml, write_json, write_table
from irno.sim.active_matter import Q_CAP, simulate_trajectory
from irno.sim.dataset import parallel_map, simulate_dataset

REAL_STATS_SOURCE = "The Well, active_matter (256^2, stats.yaml of the train split), as listed in docs/method.md"
# component: (std, rms of the frame-to-frame change). The rms of the change is quoted once per
# field and applies to each of its components.
REAL_STATS = {
    "concentration": (0.00295, 0.00082),
    "velocity_x": (0.577, 0.191),
    "velocity_y": (0.567, 0.191),
    "D_xx": (0.320, 0.149),
    "D_xy": (0.331, 0.149),
    "E_xx": (0.407, 0.248),
    "E_xy": (0.432, 0.248),
}
TOLERANCE = 0.30  # relative
ZETAS = tuple(range(1, 18, 2))  # the real dataset's parameter grid (docs/method.md#active_matter)
DIPOLES = (-1, -2, -3, -4, -5)
GRID_PAIRS = [[zeta, dipole] for zeta in ZETAS for dipole in DIPOLES]
KE_GROWTH_MIN = 100.0  # steady kinetic energy over the initial one
KE_QUARTERS_RATIO_MAX = 3.0  # steady: the last two quarters' mean energies within this factor (growth is ~1e4x)


def _component(stats_entry, name: str) -> float:
    """`velocity_y` / `D_xy` / `concentration` out of a stats.yaml entry (float, list or 2x2 list)."""
    _, _, axes = name.partition("_")
    for axis in axes:
        stats_entry = stats_entry["xy".index(axis)]
    return float(stats_entry)


def statistics_table(stats: dict) -> pd.DataFrame:
    """Simulated vs real std and rms of the change, per component, from a stats.yaml mapping."""
    rows = []
    for name, (std_real, delta_real) in REAL_STATS.items():
        field = name.partition("_")[0]
        std_sim = _component(stats["std"][field], name)
        delta_sim = _component(stats["rms_delta"][field], name)
        rows.append(
            {
                "component": name,
                "std_simulated": std_sim,
                "std_real": std_real,
                "std_ratio": std_sim / std_real,
                "rms_delta_simulated": delta_sim,
                "rms_delta_real": delta_real,
                "rms_delta_ratio": delta_sim / delta_real,
            }
        )
    table = pd.DataFrame(rows)
    table["within_tolerance"] = (table["std_ratio"] - 1).abs().le(TOLERANCE) & (table["rms_delta_ratio"] - 1).abs().le(
        TOLERANCE
    )
    return table


def validation_config(grid: int, trajectories: int, seed: int, workers: int) -> SimulationConfig:
    """All 45 (zeta, dipole) pairs in train (the real train split has them all); one pair in valid and test."""
    return SimulationConfig(
        grid=grid,
        seed=seed,
        workers=workers,
        train=SplitPlan([list(p) for p in GRID_PAIRS], trajectories),
        valid=SplitPlan([[7, -2]], 1),
        test=SplitPlan([[13, -1]], 1),
    )


def _sweep_one(task: tuple) -> dict:
    zeta, dipole, grid, seed = task
    start = time.perf_counter()
    row = {"zeta": zeta, "alpha": dipole}
    try:
        out = simulate_trajectory(zeta, dipole, grid=grid, seed=seed)
    except IrnoError as e:
        return {**row, "finite": False, "error": str(e)}
    energy = 0.5 * (out["velocity"] ** 2).sum(-1).mean(axis=(1, 2))  # (T,) kinetic energy per area
    quarter = len(energy) // 4
    late, last = energy[-2 * quarter : -quarter].mean(), energy[-quarter:].mean()
    q = np.hypot(out["D"][..., 0, 0] - out["D"][..., 1, 1], 2 * out["D"][..., 0, 1])  # |Q|
    row.update(
        {
            "finite": bool(all(np.isfinite(v).all() for v in out.values())),
            "ke_initial": float(energy[0]),
            "ke_steady": float(last),
            "ke_max": float(energy.max()),
            "ke_growth": float(last / energy[0]),
            "ke_quarters_ratio": float(max(last, late) / min(last, late)),
            "max_q_over_c": float((q / out["concentration"]).max()),
            "seconds": time.perf_counter() - start,
        }
    )
    row["passed"] = (
        row["finite"] and row["ke_growth"] >= KE_GROWTH_MIN and row["ke_quarters_ratio"] <= KE_QUARTERS_RATIO_MAX
    )
    return row


def parameter_sweep(grid: int = 32, *, seed: int = 0, workers: int = 2, progress: bool = True) -> pd.DataFrame:
    """One 81-frame trajectory for every (zeta, dipole) of the real grid."""
    tasks = [(float(z), float(a), grid, seed) for z, a in GRID_PAIRS]
    rows = dict(parallel_map(_sweep_one, tasks, workers=workers, progress=progress, desc=f"sweep {grid}^2"))
    table = pd.DataFrame([rows[i] for i in range(len(tasks))])
    if "error" not in table:
        table["error"] = ""
    table["passed"] = table["passed"].fillna(False).astype(bool)
    return table


def run_validation(
    out_dir: str | os.PathLike,
    *,
    grid: int = 64,
    sweep_grid: int = 32,
    trajectories: int = 1,
    seed: int = 0,
    workers: int = 2,
    progress: bool = True,
) -> dict:
    """Both checks; writes the tables and ``validation.json`` under out_dir and returns the summary."""
    out_dir = Path(out_dir)
    cfg = validation_config(grid, trajectories, seed, workers)
    manifest = simulate_dataset(cfg, out_dir / "well", progress=progress)
    stats = read_yaml(out_dir / "well" / "datasets" / cfg.dataset / "stats.yaml")
    table = statistics_table(stats)
    write_table(
        out_dir / "statistics",
        table,
        ("csv", "md"),
        title=f"# Simulated ({grid}^2, {len(GRID_PAIRS)} pairs x {trajectories} trajectories) "
        "vs real active_matter statistics\n\n"
        f"Real values: {REAL_STATS_SOURCE}. Tolerance: {TOLERANCE:.0%}. The simulation is a closure-model "
        "re-simulation, so only statistics are comparable.",
    )
    sweep = parameter_sweep(sweep_grid, seed=seed, workers=workers, progress=progress)
    write_table(
        out_dir / f"sweep_{sweep_grid}",
        sweep,
        ("csv", "md"),
        title=f"# Stability sweep at {sweep_grid}^2 over every (zeta, alpha)\n\n"
        f"passed: finite, steady kinetic energy >= {KE_GROWTH_MIN:g} x the initial one, and the means of the "
        f"last two quarters within a factor {KE_QUARTERS_RATIO_MAX:g} of each other. |Q|/c is capped at {Q_CAP}.",
    )
    summary = {
        "statistics_within_tolerance": bool(table["within_tolerance"].all()),
        "statistics_failed": table.loc[~table["within_tolerance"], "component"].tolist(),
        "sweep_all_finite": bool(sweep["finite"].all()),
        "sweep_all_passed": bool(sweep["passed"].all()),
        "sweep_failed": sweep.loc[~sweep["passed"], ["zeta", "alpha"]].values.tolist(),
        "max_q_over_c": float(sweep["max_q_over_c"].max()),
        "real_stats_source": REAL_STATS_SOURCE,
        "dataset": manifest["simulation"],
    }
    summary["passed"] = summary["statistics_within_tolerance"] and summary["sweep_all_passed"]
    write_json(out_dir / "validation.json", summary)
    return summary
