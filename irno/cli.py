"""The ``irno`` command: one subcommand per pipeline step, each a thin call into the package.

Workflow rules call these with a settings YAML and explicit paths. Errors the user can fix
(`IrnoError`) print one line naming the file, key or value and exit with status 1.
"""

from __future__ import annotations

import argparse
import sys

from irno import __version__
from irno.utils import IrnoError, setup_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="irno",
        description="IRNO reproduction pipeline: data, base operators, refinement training, evaluation, reports.",
    )
    parser.add_argument("--version", action="version", version=f"irno {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_report_commands(sub)
    return parser


# ----------------------------------------------------------------------------- report


def _add_report_commands(sub) -> None:
    plan_help = "report plan YAML: datasets, bases, experiments and their groups, sweeps (docs/outputs.md)"
    eval_help = "evaluation root holding <dataset>/<base>/<experiment>/{metrics.json,per_step.csv,spectra.npz}"

    p = sub.add_parser(
        "tables",
        help="paper tables (main, ablations, bands, per_field) from saved evaluation outputs",
        description="Write OUT/{main,ablations,bands,per_field}.{csv,md,tex} (LaTeX booktabs) from the "
        "evaluation outputs the plan lists. Loads no model. A run missing on disk shows as 'missing', "
        "a diverged step as a number marked with a dagger.",
    )
    p.add_argument("--plan", required=True, help=plan_help)
    p.add_argument("--eval-root", required=True, help=eval_help)
    p.add_argument("--reported", required=True, help="published numbers with their sources (config/reported.yaml)")
    p.add_argument("--out", required=True, help="output folder (results/<run>/tables)")
    p.set_defaults(func=_tables)

    p = sub.add_parser(
        "figures",
        help="paper figures (spectral error ratio, spectral MSE, convergence, energy spectra, fields)",
        description="Write OUT/{spectral_error_ratio,spectral_mse_per_step,convergence,energy_spectra,fields}"
        ".{pdf,png} from the evaluation outputs the plan lists. Loads no model; a style change reruns only this.",
    )
    p.add_argument("--plan", required=True, help=plan_help)
    p.add_argument("--eval-root", required=True, help=eval_help)
    p.add_argument("--out", required=True, help="output folder (results/<run>/figures)")
    p.set_defaults(func=_figures)


def _tables(args) -> None:
    from irno.report.results import load_plan
    from irno.report.tables import write_tables

    write_tables(load_plan(args.plan), args.eval_root, args.reported, args.out)


def _figures(args) -> None:
    from irno.report.figures import write_figures
    from irno.report.results import load_plan

    write_figures(load_plan(args.plan), args.eval_root, args.out)


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
