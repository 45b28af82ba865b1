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
    _add_data_commands(sub)
    return parser


# ----------------------------------------------------------------------------- data


def _add_data_commands(sub) -> None:
    p = sub.add_parser(
        "prepare",
        help="normalise one split into a memory-mappable prepared store",
        description="Read every trajectory of one split once through The Well's WellDataset (z-score "
        "normalised with the dataset's stats.yaml) and write a prepared store: trajectories.npy "
        "(N_traj, T, F, H, W) float32, windows.npy (the training windows, in WellDataset order) and meta.json.",
    )
    p.add_argument("--manifest", required=True, help="manifest.json written by `irno download` or `irno simulate`")
    p.add_argument("--split", required=True, choices=["train", "valid", "test"])
    p.add_argument("--out", required=True, help="store folder to create (replaced atomically)")
    p.add_argument("--n-steps-input", type=int, default=4, help="input frames per sample (default 4)")
    p.set_defaults(func=_prepare)


def _prepare(args) -> None:
    from irno.data.store import prepare_split

    prepare_split(args.manifest, args.split, args.out, n_steps_input=args.n_steps_input)


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
