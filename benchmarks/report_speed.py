"""The table and figure rules on a paper-sized evaluation tree.

    python -m benchmarks.report_speed [--quick] [--grid 256] [--samples 1596] [--keep DIR]

Writes synthetic evaluation outputs (tests/eval_fixtures.py) for the whole experiment grid on
two bases with a realistic test-set size (--quick: 64^2, 200 samples), then times `write_tables`
and `write_figures` (what `irno tables` / `irno figures` run), their imports apart. Figures
measured on a loaded shared machine are pessimistic.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from benchmarks import common

sys.path.insert(0, str(common.ROOT / "tests"))  # the synthetic writer lives with the tests

NAME = "report_speed"
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


def main(argv: list[str] | None = None) -> dict:
    p = common.parser(NAME, __doc__)
    p.add_argument("--grid", type=int, help="grid of the evaluated fields (default: 64 quick, 256 full)")
    p.add_argument(
        "--samples", type=int, help="test samples (default: 200 quick; 1596, active_matter's 21 files x 76 windows)"
    )
    p.add_argument("--keep", type=Path, help="write the tree and outputs here instead of a temporary folder")
    args = p.parse_args(argv)
    args.grid = args.grid or (64 if args.quick else 256)
    args.samples = args.samples or (200 if args.quick else 1596)

    from eval_fixtures import write_eval_outputs

    from irno.config import ReportPlan
    from irno.settings import from_dict

    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
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
        with common.Clock() as write:
            for seed, (base, name) in enumerate((b, n) for b in plan.bases for n in GRID):
                settings = (
                    {"K": int(name[2:])}
                    if name.startswith("K_")
                    else {"alpha": float(name[6:])}
                    if name.startswith("alpha_")
                    else {}
                )
                write_eval_outputs(
                    root / "eval" / "active_matter" / base / name, base=base, experiment=name, grid=args.grid,
                    n_samples=args.samples, diverge_from=9 if name == "alpha_0.5" else None, seed=seed, **settings,
                )  # fmt: skip
        with common.Clock() as import_tables:
            from irno.report.tables import write_tables
        with common.Clock() as tables:
            write_tables(plan, root / "eval", common.ROOT / "config" / "reported.yaml", root / "tables")
        with common.Clock() as import_figures:
            from irno.report.figures import write_figures
        with common.Clock() as figures:
            write_figures(plan, root / "eval", root / "figures")

    runs = len(plan.bases) * len(GRID)
    rows = [
        {"step": f"write synthetic outputs of {runs} runs", "wall_s": write.wall},
        {"step": "import irno.report.tables", "wall_s": import_tables.wall},
        {"step": "write_tables", "wall_s": tables.wall},
        {"step": "import irno.report.figures", "wall_s": import_figures.wall},
        {"step": "write_figures", "wall_s": figures.wall},
    ]
    setting = f"{runs} runs, {args.grid}^2, {args.samples} samples"
    heads = [
        common.headline(f"tables from saved outputs ({setting})", tables.wall, "s"),
        common.headline(f"figures from saved outputs ({setting})", figures.wall, "s"),
    ]
    return common.report(NAME, args, rows, heads)


if __name__ == "__main__":
    main()
