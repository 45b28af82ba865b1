"""The ``irno`` command: one subcommand per pipeline step, each a thin call into the package.

Workflow rules call these with a settings YAML and explicit paths. Errors the user can fix
(`IrnoError`) print one line naming the file, key or value and exit with status 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from irno import __version__
from irno.utils import IrnoError, read_yaml, setup_logging, write_json


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="irno",
        description="IRNO reproduction pipeline: data, base operators, refinement training, evaluation, reports.",
    )
    parser.add_argument("--version", action="version", version=f"irno {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_simulate(sub)
    return parser


# ----------------------------------------------------------------------------- simulate


def _add_simulate(sub) -> None:
    p = sub.add_parser(
        "simulate",
        help="simulate the active_matter dataset (closure-model re-simulation) in The Well's layout",
        description=(
            "Run the embedded active-matter simulator (irno.sim; a closure-model re-simulation, not The Well's "
            "data) and write <root>/datasets/active_matter/{data/{train,valid,test}/*.hdf5, stats.yaml} plus a "
            "manifest. Restartable: files already complete for this config are kept."
        ),
    )
    p.add_argument("--config", required=True, type=Path, help="YAML mapping of irno.config.SimulationConfig")
    p.add_argument("--root", required=True, type=Path, help="Well root (the dataset goes under ROOT/datasets/)")
    p.add_argument("--manifest", required=True, type=Path, help="where to write the dataset manifest (JSON)")
    p.add_argument("--workers", type=int, help="parallel processes (overrides the config's workers)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_simulate)

    p = sub.add_parser(
        "simulate-validate",
        help="compare simulated statistics with the real dataset's; stability sweep over (zeta, alpha)",
        description=(
            "Simulate a dataset over every (zeta, alpha) of the real grid and write statistics.{csv,md} (per-field "
            "std and frame-to-frame rms beside The Well's), the stability sweep sweep_<grid>.{csv,md} and "
            "validation.json under --out. Exit status 1 if a check fails."
        ),
    )
    p.add_argument("--out", required=True, type=Path, help="folder for the dataset, the tables and validation.json")
    p.add_argument("--grid", type=int, default=64, help="grid of the statistics dataset (default 64)")
    p.add_argument("--sweep-grid", type=int, default=32, help="grid of the stability sweep (default 32)")
    p.add_argument("--trajectories", type=int, default=1, help="trajectories per (zeta, alpha) (default 1)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--workers", type=int, default=2, help="parallel processes (default 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_run_simulate_validate)


def _run_simulate(args) -> int:
    import dataclasses

    from irno.config import SimulationConfig, from_dict
    from irno.sim import simulate_dataset

    data = read_yaml(args.config)
    try:
        cfg = from_dict(SimulationConfig, data, "simulate")
    except IrnoError as e:
        raise IrnoError(f"{args.config}: {e}") from None
    if args.workers is not None:
        cfg = dataclasses.replace(cfg, workers=args.workers)
    manifest = simulate_dataset(cfg, args.root, progress=not args.no_progress)
    write_json(args.manifest, manifest)
    return 0


def _run_simulate_validate(args) -> int:
    from irno.sim.validate import run_validation

    summary = run_validation(
        args.out, grid=args.grid, sweep_grid=args.sweep_grid, trajectories=args.trajectories,
        seed=args.seed, workers=args.workers, progress=not args.no_progress,
    )
    print((args.out / "statistics.md").read_text())
    sweep = "all passed" if summary["sweep_all_passed"] else f"FAILED for {summary['sweep_failed']}"
    print(f"stability sweep at {args.sweep_grid}^2: {sweep} ({args.out / f'sweep_{args.sweep_grid}.md'})")
    print(f"validation {'passed' if summary['passed'] else 'FAILED'}: {args.out / 'validation.json'}")
    return 0 if summary["passed"] else 1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except IrnoError as e:
        print(f"irno {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
