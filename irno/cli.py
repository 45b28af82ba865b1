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
    _add_data_commands(sub)
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


# ----------------------------------------------------------------------------- data


def _add_data_commands(sub) -> None:
    p = sub.add_parser(
        "download",
        help="download a Well dataset, verify it against the registry, write its manifest",
        description="Download splits of a Well dataset with The Well's downloader (curl; interrupted "
        "downloads resume when run again), then verify that every file the package's registry lists "
        "exists, is non-empty, opens with h5py and holds the fields stats.yaml describes. Writes the "
        "manifest (files, sizes, fields) later steps depend on; any missing or bad file is an error naming it.",
    )
    p.add_argument("--dataset", required=True, help="The Well dataset name, e.g. active_matter")
    p.add_argument("--root", required=True, help="folder that receives datasets/<name>/{stats.yaml,data/<split>/}")
    p.add_argument("--manifest", required=True, help="manifest.json to write")
    p.add_argument("--splits", nargs="+", default=["train", "valid", "test"], choices=["train", "valid", "test"])
    p.add_argument("--registry", help="registry YAML of file URLs (default: the one shipped with the_well)")
    p.set_defaults(func=_download)

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


def _download(args) -> None:
    from irno.data.download import download_dataset
    from irno.utils import write_json

    manifest = download_dataset(args.dataset, args.root, splits=tuple(args.splits), registry_path=args.registry)
    write_json(args.manifest, manifest)


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
