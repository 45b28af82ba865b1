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
    _add_write_settings(sub)
    return parser


def _add_write_settings(sub) -> None:
    from irno.config import SETTINGS_KINDS

    p = sub.add_parser(
        "write-settings",
        help="validate a JSON mapping as a step's settings and write it as YAML",
        description="Validate a JSON mapping against the settings dataclass of KIND (unknown keys, wrong "
        "types and invalid values are named) and write it, complete with defaults, as YAML. The workflow "
        "writes every base's and run's settings.yaml this way.",
    )
    p.add_argument("--kind", required=True, choices=sorted(SETTINGS_KINDS), help="which settings dataclass")
    p.add_argument("--json", required=True, help='the settings as a JSON mapping, e.g. \'{"train": {"K": 4}}\'')
    p.add_argument("--out", required=True, help="YAML file to write (atomically)")
    p.set_defaults(func=_write_settings)


def _write_settings(args) -> None:
    import json

    from irno.config import write_settings

    try:
        data = json.loads(args.json)
    except json.JSONDecodeError as e:
        raise IrnoError(f"--json: not valid JSON ({e})") from None
    write_settings(args.kind, data, args.out)


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
