"""How long the table and figure rules take on a paper-sized evaluation tree.

Writes synthetic evaluation outputs (tests/eval_fixtures.py) for the whole experiment grid on
two bases at 256^2 with a realistic test-set size, then times `write_tables` and
`write_figures` (what `irno tables` / `irno figures` run) and prints one JSON line. Figures
measured on a loaded shared machine are pessimistic.

    PYTHONPATH=$PWD python benchmarks/report_speed.py [--grid 256] [--samples 1596] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the synthetic writer lives with the tests

GRID = (
    ["irno", "no_spectral", "no_fixed_point"]
    + [f"K_{k}" for k in (1, 2, 4, 8)]
    + [f"alpha_{a}" for a in (0.1, 0.3, 0.4, 0.5)]
    + [f"lambda_fixed_{v}" for v in (1.0, 1.25, 1.75, 2.0)]
    + ["norm_batch", "norm_group", "phi_fno", "transfer"]
)


def group_of(name: str) -> str:
    prefixes = {"no_": "loss terms", "K_": "K", "alpha_": "alpha", "lambda_": "lambda schedule", "norm_": "norm"}
    special = {"irno": "full method", "phi_fno": "backbone", "transfer": "transfer"}
    return special.get(name) or next(group for prefix, group in prefixes.items() if name.startswith(prefix))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=256)
    parser.add_argument("--samples", type=int, default=1596, help="test samples (active_matter: 21 files x 76 windows)")
    parser.add_argument("--keep", help="write the tree and outputs here instead of a temporary folder")
    args = parser.parse_args()

    from eval_fixtures import write_eval_outputs

    from irno.config import ReportPlan, from_dict

    root = Path(args.keep or tempfile.mkdtemp(prefix="report_speed."))
    plan = from_dict(
        ReportPlan,
        {
            "run_name": "bench",
            "datasets": ["active_matter"],
            "bases": ["FNO", "TFNO"],
            "experiments": [{"name": name, "group": group_of(name)} for name in GRID],
            "sweeps": {
                "alpha": [n for n in GRID if n.startswith("alpha_")],
                "K": [n for n in GRID if n.startswith("K_")],
            },
        },
    )
    start = time.perf_counter()
    for seed, (base, name) in enumerate((b, n) for b in plan.bases for n in GRID):
        settings = (
            {"K": int(name[2:])}
            if name.startswith("K_")
            else {"alpha": float(name[6:])} if name.startswith("alpha_") else {}
        )
        write_eval_outputs(
            root / "eval" / "active_matter" / base / name,
            base=base,
            experiment=name,
            grid=args.grid,
            n_samples=args.samples,
            diverge_from=9 if name == "alpha_0.5" else None,
            seed=seed,
            **settings,
        )
    write_seconds = time.perf_counter() - start

    start = time.perf_counter()
    from irno.report.tables import write_tables

    import_tables = time.perf_counter() - start
    start = time.perf_counter()
    write_tables(plan, root / "eval", Path(__file__).resolve().parents[1] / "config" / "reported.yaml", root / "tables")
    tables = time.perf_counter() - start
    start = time.perf_counter()
    from irno.report.figures import write_figures

    import_figures = time.perf_counter() - start
    start = time.perf_counter()
    write_figures(plan, root / "eval", root / "figures")
    figures = time.perf_counter() - start
    print(
        json.dumps(
            {
                "runs": len(plan.bases) * len(GRID),
                "grid": args.grid,
                "samples": args.samples,
                "write_eval_outputs_s": round(write_seconds, 2),
                "import_tables_s": round(import_tables, 2),
                "tables_s": round(tables, 2),
                "import_figures_s": round(import_figures, 2),
                "figures_s": round(figures, 2),
                "out": str(root),
            }
        )
    )


if __name__ == "__main__":
    main()
