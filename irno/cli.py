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
    _add_base_commands(sub)
    return parser


def _settings(cls, path: str, where: str = ""):
    """A settings YAML (a mapping of `cls`'s fields) as the dataclass; errors name the file."""
    from irno.config import from_dict
    from irno.utils import read_yaml

    try:
        return from_dict(cls, read_yaml(path), where)
    except IrnoError as e:
        raise IrnoError(f"{path}: {e}") from None


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


# ----------------------------------------------------------------------------- base operators


def _add_base_commands(sub) -> None:
    base = sub.add_parser(
        "base",
        help="base operators: fetch, train, check, cache",
        description="Frozen base operators T_base (The Well's FNO, TFNO, UNetClassic, UNetConvNext). BASE.yaml "
        "is a mapping of BaseConfig's keys (model_class, source, pretrained, revision, forward, ...).",
    )
    verbs = base.add_subparsers(dest="verb", metavar="VERB", required=True)

    p = verbs.add_parser(
        "fetch",
        help="copy a pretrained base (Hub id at a pinned revision, or a local directory) into a model directory",
        description="Download config.json and model.safetensors of base.pretrained at base.revision (or read a local "
        "save_pretrained directory) and save them into MODEL_DIR with irno_base.json (the resolved revision and the "
        "weights' hash), so that compute nodes need no internet. Offline, the error says how to use a local directory.",
    )
    p.add_argument("--config", required=True, help="BASE.yaml")
    p.add_argument("--out", required=True, help="model directory to write (replaced atomically)")
    p.set_defaults(func=_base_fetch)

    p = verbs.add_parser(
        "train",
        help="train a base locally on a prepared store (Adam, MSE in normalised units)",
        description="Train base.model_class (constructor extras: base.model_kwargs) for base.epochs on the training "
        "windows, report the valid MSE per epoch and beside it the persistence baseline, and save a model "
        "directory that loads like a fetched one. A pre-empted run continues from its last finished epoch.",
    )
    p.add_argument("--config", required=True, help="BASE.yaml (base.source: train)")
    p.add_argument("--train", required=True, help="prepared store of the train split")
    p.add_argument("--valid", required=True, help="prepared store of the valid split")
    p.add_argument("--out", required=True, help="model directory to write")
    p.set_defaults(func=_base_train)

    p = verbs.add_parser(
        "check",
        help="valid VRMSE under both forward modes vs The Well's published number -> base_check.json",
        description="Measure The Well's VRMSE of the base on the valid split under the 'fixed' and 'legacy' forward "
        "modes (FNO/TFNO) and compare with base.published_valid_vrmse. Fails (exit 1) when the configured mode "
        "misses it by more than base.check_tolerance while the other mode matches; base.strict: false warns instead.",
    )
    p.add_argument("--config", required=True, help="BASE.yaml")
    p.add_argument("--model", required=True, help="model directory (from `irno base fetch` or `irno base train`)")
    p.add_argument("--valid", required=True, help="prepared store of the valid split")
    p.add_argument("--out", required=True, help="base_check.json to write")
    p.set_defaults(func=_base_check)

    p = verbs.add_parser(
        "cache",
        help="h0 = T_base(x) for every sample of a prepared store, memory-mappable",
        description="Run the base over every sample of STORE in batches (on the GPU when there is one) and store h0 "
        "in base.cache_dtype with metadata naming the base, its revision and forward mode, and the store. An "
        "interrupted build resumes when run again.",
    )
    p.add_argument("--config", required=True, help="BASE.yaml")
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("--store", required=True, help="prepared store")
    p.add_argument("--out", required=True, help="cache folder to write")
    p.set_defaults(func=_base_cache)


def _base_fetch(args) -> None:
    from irno.base import fetch_base
    from irno.config import BaseConfig

    fetch_base(_settings(BaseConfig, args.config, "base"), args.out)


def _base_train(args) -> None:
    from irno.base.train import train_base
    from irno.config import BaseConfig
    from irno.data.store import PreparedSplit

    train_base(_settings(BaseConfig, args.config, "base"), PreparedSplit(args.train), PreparedSplit(args.valid), args.out)


def _base_check(args) -> None:
    from irno.base.check import check_base
    from irno.config import BaseConfig
    from irno.data.store import PreparedSplit

    check_base(_settings(BaseConfig, args.config, "base"), args.model, PreparedSplit(args.valid), args.out)


def _base_cache(args) -> None:
    from irno.base.cache import cache_base
    from irno.config import BaseConfig
    from irno.data.store import PreparedSplit

    cache_base(_settings(BaseConfig, args.config, "base"), args.model, PreparedSplit(args.store), args.out)


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
