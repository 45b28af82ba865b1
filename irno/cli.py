"""The ``irno`` command: one subcommand per pipeline step, each a thin call into the package.

Workflow rules call these with a settings YAML and explicit paths. Errors the user can fix
(`IrnoError`) print one line naming the file, key or value and exit with status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from irno import __version__
from irno.utils import IrnoError, read_yaml, setup_logging


def _read_config(path: Path, cls: type):
    """The settings dataclass `cls` from a YAML file; errors name the file and the key."""
    from irno.config import from_dict

    data = read_yaml(path)  # its errors name the file already
    try:
        return from_dict(cls, data)
    except IrnoError as e:
        raise IrnoError(f"{path}: {e}") from None


# ----------------------------------------------------------------------------- irno train


def cmd_train(args: argparse.Namespace) -> int:
    from irno.config import BaseConfig, RefinerConfig
    from irno.train import relaunch_with_torchrun, train_refiner

    cfg = _read_config(args.config, RefinerConfig)
    caches = (args.train_cache, args.valid_cache)
    base_given = (args.base_model, args.base_config)
    if not (all(caches) and not any(base_given)) and not (all(base_given) and not any(caches)):
        raise IrnoError("give either --train-cache and --valid-cache, or --base-model and --base-config (not a mix)")
    if args.nproc < 1:
        raise IrnoError(f"--nproc {args.nproc}: must be at least 1")
    if args.nproc > 1 and "LOCAL_RANK" not in os.environ:  # not yet under torchrun: start the N processes
        return relaunch_with_torchrun(args.nproc, args.argv)

    from irno.data.store import PreparedSplit

    train, valid = PreparedSplit(args.train), PreparedSplit(args.valid)
    base = None
    if all(caches):
        from irno.base.cache import BasePredictionCache, RefinementDataset

        train = RefinementDataset(train, BasePredictionCache.open(args.train_cache))
        valid = RefinementDataset(valid, BasePredictionCache.open(args.valid_cache))
    else:
        from irno.base import load_base

        base = load_base(_read_config(args.base_config, BaseConfig), args.base_model, "cpu")
    train_refiner(cfg, train, valid, args.out, base=base)
    return 0


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        allow_abbrev=False,  # --nproc is dropped by its exact spelling when re-launching (irno.train)
        help="train the refinement operator Phi (resumable; --nproc N for DDP)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Train Phi on a prepared training split with the objective of SPEC 1.3, validating every epoch.

h0 = T_base(x) comes from base-prediction caches (--train-cache, --valid-cache; the fast
path) or is recomputed per batch by the base model (--base-model, --base-config; the
reference behaviour). Give one pair or the other.

Writes into RUN_DIR after every epoch: checkpoint.pt (the best epoch's Phi, else the last),
train_log.csv (one row per epoch) and last.pt (the resume state). Started again on the same
RUN_DIR it resumes after the last complete epoch; a finished run does nothing; a changed
config or data starts afresh.""",
        epilog="""\
example:
  irno train --config runs/am/fno/irno/settings.yaml \\
      --train data/am/prepared/train --train-cache base/am/fno/cache/train \\
      --valid data/am/prepared/valid --valid-cache base/am/fno/cache/valid \\
      --out runs/am/fno/irno --nproc 2""",
    )
    p.add_argument("--config", required=True, type=Path, metavar="SETTINGS.yaml", help="the run's settings (phi, loss, train)")
    p.add_argument("--train", required=True, type=Path, metavar="STORE", help="prepared store of the training split")
    p.add_argument("--train-cache", type=Path, metavar="CACHE", help="base-prediction cache of the training split")
    p.add_argument("--valid", required=True, type=Path, metavar="STORE", help="prepared store of the validation split")
    p.add_argument("--valid-cache", type=Path, metavar="CACHE", help="base-prediction cache of the validation split")
    p.add_argument("--base-model", type=Path, metavar="MODEL_DIR", help="base model directory: h0 recomputed per batch")
    p.add_argument("--base-config", type=Path, metavar="BASE.yaml", help="the base model's settings (with --base-model)")
    p.add_argument("--out", required=True, type=Path, metavar="RUN_DIR", help="output folder of the run")
    p.add_argument(
        "--nproc", type=int, default=1, metavar="N", help="processes for DDP on this node (torchrun; nccl on GPUs, gloo on CPU)"
    )
    p.set_defaults(func=cmd_train)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="irno",
        description="IRNO reproduction pipeline: data, base operators, refinement training, evaluation, reports.",
    )
    parser.add_argument("--version", action="version", version=f"irno {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_train(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for commands that re-launch themselves
    setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except IrnoError as e:
        print(f"irno {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
