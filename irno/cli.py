"""The ``irno`` command: one subcommand per pipeline step, each a thin call into the package.

Workflow rules call these with a settings YAML and explicit paths. Errors the user can fix
(`IrnoError`) print one line naming the file, key or value and exit with status 1. Commands that
compute on a device choose it (`select_device`) right after reading their settings, before any
data: a GPU job without usable CUDA ends within seconds, saying why.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from irno import IrnoError, __version__
from irno.cluster import use_job_cpus
from irno.device import select_device
from irno.files import read_yaml, write_json
from irno.roma.cli import add_roma_commands
from irno.settings import from_dict, load_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="irno",
        description="IRNO reproduction pipeline: data, base operators, refinement training, evaluation, reports.",
    )
    parser.add_argument("--version", action="version", version=f"irno {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # In pipeline order, as `irno --help` lists them.
    _add_simulate(sub)
    _add_data_commands(sub)
    _add_base_commands(sub)
    _add_train(sub)
    _add_evaluate(sub)
    _add_report_commands(sub)
    add_roma_commands(sub)
    _add_estimate(sub)
    _add_write_settings(sub)  # plumbing for the workflow's settings rules
    return parser


def _add_estimate(sub) -> None:
    p = sub.add_parser(
        "estimate",
        help="what a config's run costs: GPU-hours (requested, expected) per rule, disk per folder",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
What `snakemake all` on CONFIG costs, before anything is submitted (no data, no GPU, seconds):
one row per rule with its jobs, GPUs per job, the GPU-hours they request at the first attempt
(the rules' own resources and your IRNO_SLURM_* settings, as sbatch will see them), the GPU-hours
they are expected to take (their work in FLOPs, counted by torch's FLOP counter at the data's
sizes, over the throughput printed below the table with its source) and the memory each job
requests; then the disk of every output folder and the free space where it will land.""",
        epilog="""\
examples:
  irno estimate --config config/config.yaml
  irno estimate --config config/roma.yaml --gpu a100
  irno estimate --config config/config.yaml --set results_root=/scratch/me/irno seeds='[42, 43, 44]'""",
    )
    p.add_argument("--config", required=True, nargs="+", type=Path, metavar="CONFIG", help="the run's config file(s)")
    p.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="config values on top, as snakemake's --config (VALUE read as YAML)",
    )
    p.add_argument("--gpu", choices=["h100", "a100"], default="h100", help="the GPU whose peak the bound uses")
    p.add_argument(
        "--utilisation",
        type=float,
        default=None,
        metavar="FRACTION",
        help="share of the GPU's peak assumed where nothing is measured (default 0.2)",
    )
    p.add_argument(
        "--measured",
        type=Path,
        default=Path("results/benchmarks/train.json"),
        help="benchmarks/train.py's JSON from a GPU, for Phi's measured throughput (used where it exists)",
    )
    p.set_defaults(func=_estimate)


def _estimate(args) -> None:
    import yaml

    from irno import estimate
    from irno.cluster import SiteSettings
    from irno.study import REPOSITORY, load_study, read_config

    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise IrnoError(f"--set {item!r}: expected KEY=VALUE")
        overrides[key] = yaml.safe_load(value)
    study = load_study(read_config(args.config, overrides), REPOSITORY)
    roma = estimate.roma_expanded(study)
    utilisation = args.utilisation if args.utilisation is not None else estimate.DEFAULT_UTILISATION
    if not 0 < utilisation <= 1:
        raise IrnoError(f"--utilisation {utilisation}: must be in (0, 1]")
    rates = estimate.Rates(args.gpu, utilisation, estimate.measured_training(args.measured))
    site = SiteSettings.from_environ(os.environ)
    result = estimate.estimate(study, roma, site, rates)
    print(estimate.render(result, estimate.memory_table(study, roma, site)), end="")


def _add_write_settings(sub) -> None:
    from irno.settings import settings_kinds

    p = sub.add_parser(
        "write-settings",
        help="validate a JSON mapping as a step's settings and write it as YAML",
        description="Validate a JSON mapping against the settings dataclass of KIND (unknown keys, wrong "
        "types and invalid values are named) and write it, complete with defaults, as YAML. The workflow "
        "writes every settings file of both studies this way (workflow/rules/settings.smk).",
    )
    p.add_argument("--kind", required=True, choices=sorted(settings_kinds()), help="which settings dataclass")
    p.add_argument("--json", required=True, help='the settings as a JSON mapping, e.g. \'{"train": {"K": 4}}\'')
    p.add_argument("--out", required=True, help="YAML file to write (atomically)")
    p.set_defaults(func=_write_settings)


def _write_settings(args) -> None:
    from irno.settings import parse_json_option, settings_kinds, write_settings

    write_settings(settings_kinds()[args.kind], parse_json_option(args.json), args.out)


# ----------------------------------------------------------------------------- data


def _add_data_commands(sub) -> None:
    p = sub.add_parser(
        "download",
        help="download a Well dataset, verify it against the registry, write its manifest",
        description="Download splits of a Well dataset with The Well's downloader (curl; interrupted "
        "downloads resume when run again), then verify that every file the package's registry lists "
        "exists, is non-empty, opens with h5py and with The Well's loader and holds the fields stats.yaml "
        "describes. Writes the manifest (files, sizes, SHA-256 hashes, fields) later steps depend on; any "
        "missing or bad file is an error naming it.",
    )
    _dataset_arguments(p, "folder that receives datasets/<name>/{stats.yaml,data/<split>/}", "manifest.json to write")
    p.set_defaults(func=_download)

    p = sub.add_parser(
        "index",
        help="verify an existing copy of a Well dataset in place (read only) and write its manifest",
        description="Check an existing copy of a Well dataset (e.g. a shared, read-only one) exactly as a download "
        "is checked: every file the package's registry lists is present, opens with h5py and The Well's loader and "
        "holds the fields stats.yaml describes. Writes the manifest (files, sizes, SHA-256 hashes, fields) to "
        "--manifest; nothing is written under --root and no network is used.",
    )
    _dataset_arguments(
        p, "folder that holds datasets/<name>/{stats.yaml,data/<split>/}", "manifest.json to write (outside the copy)"
    )
    p.add_argument(
        "--files-present",
        action="store_true",
        help="the files present are the dataset (a re-simulation in The Well's format); default: every file the "
        "registry lists must be there",
    )
    p.set_defaults(func=_index)

    p = sub.add_parser(
        "prepare",
        help="normalise one split into a memory-mappable prepared store",
        description="Read every trajectory of one split once through The Well's WellDataset (z-score "
        "normalised with the dataset's stats.yaml) and write a prepared store: trajectories.npy "
        "(N_traj, T, F, H, W) float32, windows.npy (the training windows, in WellDataset order) and meta.json. "
        "Every file must first have the size and SHA-256 the manifest recorded, and every value read must be "
        "finite; otherwise the error names the file (and trajectory, field and frame) and nothing is written.",
    )
    p.add_argument("--manifest", required=True, help="manifest.json written by `irno download` or `irno simulate`")
    p.add_argument("--split", required=True, choices=["train", "valid", "test"])
    p.add_argument("--out", required=True, help="store folder to create (replaced atomically)")
    p.add_argument("--n-steps-input", type=int, default=4, help="input frames per sample (default 4)")
    p.set_defaults(func=_prepare)


def _dataset_arguments(p, root_help: str, manifest_help: str) -> None:
    """The options `irno download` and `irno index` share: which dataset, where, which splits."""
    p.add_argument("--dataset", required=True, help="The Well dataset name, e.g. active_matter")
    p.add_argument("--root", required=True, help=root_help)
    p.add_argument("--manifest", required=True, help=manifest_help)
    p.add_argument("--splits", nargs="+", default=["train", "valid", "test"], choices=["train", "valid", "test"])
    p.add_argument("--registry", help="registry YAML of file URLs (default: the one shipped with the_well)")


def _download(args) -> None:
    from irno.data.download import download_dataset

    manifest = download_dataset(args.dataset, args.root, splits=tuple(args.splits), registry_path=args.registry)
    write_json(args.manifest, manifest)


def _index(args) -> None:
    from irno.data.download import index_local_dataset

    manifest = index_local_dataset(
        args.dataset,
        args.root,
        splits=tuple(args.splits),
        registry_path=args.registry,
        complete=not args.files_present,
    )
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
        help="both forward modes vs the published numbers -> base_check.json (and the forward to use)",
        description="Measure the base under the 'fixed' and 'legacy' forward modes (FNO/TFNO): The Well's VRMSE on "
        "the valid split against base.published_valid_vrmse and, with --test, the paper's pooled VRMSE on the test "
        "split against base.published_single_pass_pooled. base.forward: auto takes the forward that reproduces the "
        "paper's number (else The Well's); an explicit forward wins. A miss beyond base.check_tolerance fails (exit "
        "1) as irno.base.check describes; base.strict: false warns instead. base_check.json records both forwards' "
        "numbers and the decided forward, which `irno base cache --check` runs.",
    )
    p.add_argument("--config", required=True, help="BASE.yaml")
    p.add_argument("--model", required=True, help="model directory (from `irno base fetch` or `irno base train`)")
    p.add_argument("--valid", required=True, help="prepared store of the valid split")
    p.add_argument(
        "--test", help="prepared store of the test split: the paper's single-pass number (pooled) is checked on it"
    )
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
    p.add_argument("--check", help="base_check.json: run the base in the forward the check decided (forward: auto)")
    p.add_argument("--out", required=True, help="cache folder to write")
    p.set_defaults(func=_base_cache)


def _base_fetch(args) -> None:
    from irno.base import fetch_base
    from irno.config import BaseConfig

    fetch_base(load_settings(BaseConfig, args.config), args.out)


def _base_train(args) -> None:
    from irno.base.train import train_base
    from irno.config import BaseConfig
    from irno.data.store import PreparedSplit

    cfg = load_settings(BaseConfig, args.config)
    select_device(cfg.device)
    train_base(cfg, PreparedSplit(args.train), PreparedSplit(args.valid), args.out)


def _base_check(args) -> None:
    from irno.base.check import check_base
    from irno.config import BaseConfig
    from irno.data.store import PreparedSplit

    cfg = load_settings(BaseConfig, args.config)
    select_device(cfg.device)
    test = PreparedSplit(args.test) if args.test else None
    check_base(cfg, args.model, PreparedSplit(args.valid), args.out, test=test)


def _base_cache(args) -> None:
    from irno.base.cache import cache_base
    from irno.base.check import checked_forward
    from irno.config import BaseConfig
    from irno.data.store import PreparedSplit

    cfg = load_settings(BaseConfig, args.config)
    select_device(cfg.device)
    forward = checked_forward(args.check) if args.check else None
    cache_base(cfg, args.model, PreparedSplit(args.store), args.out, forward)


# ----------------------------------------------------------------------------- train


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        allow_abbrev=False,  # --nproc is dropped by its exact spelling when re-launching (irno.refinement.train)
        help="train the refinement operator Phi (resumable; --nproc N for DDP)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Train Phi on a prepared training split with the objective of docs/method.md#the-objective, validating every epoch.

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
    p.add_argument(
        "--config", required=True, type=Path, metavar="SETTINGS.yaml", help="the run's settings (phi, loss, train)"
    )
    p.add_argument("--train", required=True, type=Path, metavar="STORE", help="prepared store of the training split")
    p.add_argument("--train-cache", type=Path, metavar="CACHE", help="base-prediction cache of the training split")
    p.add_argument("--valid", required=True, type=Path, metavar="STORE", help="prepared store of the validation split")
    p.add_argument("--valid-cache", type=Path, metavar="CACHE", help="base-prediction cache of the validation split")
    p.add_argument("--base-model", type=Path, metavar="MODEL_DIR", help="base model directory: h0 recomputed per batch")
    p.add_argument(
        "--base-config", type=Path, metavar="BASE.yaml", help="the base model's settings (with --base-model)"
    )
    p.add_argument("--out", required=True, type=Path, metavar="RUN_DIR", help="output folder of the run")
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        metavar="N",
        help="processes for DDP on this node (torchrun; nccl on GPUs, gloo on CPU)",
    )
    p.add_argument(
        "--memory-mb",
        type=int,
        metavar="MB",
        help="the job's memory (the workflow passes its mem_mb): whether the stores and caches fit in it beside "
        "the training, or are copied to --stage-dir",
    )
    p.add_argument(
        "--stage-dir",
        default="",
        metavar="DIR",
        help="node-local folder for copies of the stores and caches when they do not fit in --memory-mb (the "
        "workflow passes IRNO_STAGE_DIR, else $TMPDIR); empty: read them in place",
    )
    p.set_defaults(func=_train)


def _train(args) -> int:
    from irno.cluster import JOBS
    from irno.config import PhiConfig
    from irno.refinement.ddp import relaunch_with_torchrun
    from irno.runlock import LOCK_FILE, RunFolderLock
    from irno.staging import data_folders

    cfg = load_settings(PhiConfig, args.config)
    caches = (args.train_cache, args.valid_cache)
    base_given = (args.base_model, args.base_config)
    if not (all(caches) and not any(base_given)) and not (all(base_given) and not any(caches)):
        raise IrnoError("give either --train-cache and --valid-cache, or --base-model and --base-config (not a mix)")
    if args.nproc < 1:
        raise IrnoError(f"--nproc {args.nproc}: must be at least 1")
    if args.memory_mb is not None and args.memory_mb < 1:
        raise IrnoError(f"--memory-mb {args.memory_mb}: must be at least 1")
    device = select_device(cfg.train.device)  # before torchrun starts N processes
    if "LOCAL_RANK" in os.environ:  # one of torchrun's processes: the launching one decided where the data are
        return _train_here(cfg, args, _data_folders(args))
    spec = JOBS["train_phi"]  # its measured needs, without the headroom of its request
    own_mb = (spec.own_mb if device.type == "cuda" else spec.measured_mb) * args.nproc
    # A run folder in use fails here, before data are copied or processes start; the training's
    # (rank 0's) process holds the lock while it trains.
    with RunFolderLock(args.out / LOCK_FILE):
        pass
    with data_folders(
        _data_folders(args),
        memory_mb=args.memory_mb,
        own_mb=own_mb,
        stage_dir=Path(args.stage_dir) if args.stage_dir else None,
    ) as folders:
        if args.nproc > 1:  # start the N processes, reading from `folders`
            options = {DATA_OPTIONS[name]: folder for name, folder in folders.items()}
            return relaunch_with_torchrun(args.nproc, with_option_values(args.argv, options))
        return _train_here(cfg, args, folders)


# The data folders of `irno train`, by name (irno.staging's), and their options.
DATA_OPTIONS = {
    "train store": "--train",
    "train cache": "--train-cache",
    "valid store": "--valid",
    "valid cache": "--valid-cache",
}


def _data_folders(args) -> dict[str, Path]:
    """The data folders `irno train` reads, by name: the stores, and the caches where given."""
    given = {name: getattr(args, option[2:].replace("-", "_")) for name, option in DATA_OPTIONS.items()}
    return {name: folder for name, folder in given.items() if folder is not None}


def with_option_values(argv: list[str], values: dict[str, os.PathLike]) -> list[str]:
    """`argv` with the values of the options named in `values` replaced ("--opt V" or "--opt=V")."""
    out, replace_next = [], None
    for arg in argv:
        name, equals, _ = arg.partition("=")
        if replace_next is not None:
            out.append(str(values[replace_next]))
            replace_next = None
        elif equals and name in values:
            out.append(f"{name}={values[name]}")
        else:
            out.append(arg)
            replace_next = arg if arg in values else None
    return out


def _train_here(cfg, args, folders: dict[str, Path]) -> int:
    """Train in this process (or as one of torchrun's) on the data in `folders` (`_data_folders`)."""
    from irno.config import BaseConfig
    from irno.data.store import PreparedSplit
    from irno.refinement.train import train_phi

    train, valid = PreparedSplit(folders["train store"]), PreparedSplit(folders["valid store"])
    base = None
    if "train cache" in folders:
        from irno.base.cache import BasePredictionCache, RefinementDataset

        train = RefinementDataset(train, BasePredictionCache.open(folders["train cache"]))
        valid = RefinementDataset(valid, BasePredictionCache.open(folders["valid cache"]))
    else:
        from irno.base import load_base

        base = load_base(load_settings(BaseConfig, args.base_config), args.base_model, "cpu")
    train_phi(cfg, train, valid, args.out, base=base)
    return 0


# ----------------------------------------------------------------------------- evaluate


def _add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="metrics of every refinement step k = 0 .. K + extra on a split",
        description=(
            "Run a trained Phi for K + extra_steps refinement steps on every sample of a prepared split "
            "(base predictions h0 from its cache) and write metrics.json, per_step.csv and spectra.npz "
            "(docs/outputs.md): The Well's VRMSE, the reference's pooled VRMSE, band errors, radial error "
            "spectra, per-sample spectral MSE, energy spectra and divergence flags. K and alpha come from "
            "the checkpoint."
        ),
    )
    p.add_argument(
        "--config",
        required=True,
        type=Path,
        metavar="EVAL.yaml",
        help="evaluation settings (EvalConfig: extra_steps, batch_size, divergence_factor, example_index, device)",
    )
    p.add_argument("--checkpoint", required=True, type=Path, metavar="RUN_DIR/checkpoint.pt", help="the trained Phi")
    p.add_argument(
        "--store",
        required=True,
        type=Path,
        metavar="STORE_DIR",
        help="prepared store of the evaluated split (irno prepare)",
    )
    p.add_argument(
        "--cache",
        required=True,
        type=Path,
        metavar="CACHE_DIR",
        help="the base's predictions for that store (irno base cache)",
    )
    p.add_argument("--out", required=True, type=Path, metavar="EVAL_DIR", help="output folder")
    p.add_argument("--dataset", required=True, metavar="NAME", help="dataset name, recorded in metrics.json")
    p.add_argument("--base", required=True, metavar="NAME", help="base operator whose predictions are refined")
    p.add_argument("--experiment", required=True, metavar="NAME", help="experiment name, recorded in metrics.json")
    p.add_argument(
        "--trained-on-base",
        metavar="NAME",
        help="base whose predictions Phi was trained on (default: --base; differs for transfer experiments)",
    )
    p.add_argument(
        "--split",
        default="test",
        metavar="SPLIT",
        help="name of the evaluated split, recorded in metrics.json (default: test)",
    )
    p.set_defaults(func=_evaluate)


def _evaluate(args) -> None:
    from irno.config import EvalConfig
    from irno.refinement.evaluate import evaluate_checkpoint

    cfg = load_settings(EvalConfig, args.config)
    select_device(cfg.device)
    # The data layer loads only for the commands that read data (keeps `irno --help` fast).
    from irno.base.cache import BasePredictionCache, RefinementDataset
    from irno.data.store import PreparedSplit

    dataset = RefinementDataset(PreparedSplit(args.store), BasePredictionCache.open(args.cache))
    if len(dataset) == 0:
        raise IrnoError(f"{args.store}: no samples to evaluate")
    evaluate_checkpoint(
        cfg,
        args.checkpoint,
        dataset,
        args.out,
        dataset_name=args.dataset,
        base=args.base,
        experiment=args.experiment,
        trained_on_base=args.trained_on_base,
        split=args.split,
    )


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
    p.add_argument("--claims", required=True, help="the paper's claims and their tests (config/claims.yaml)")
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

    write_tables(load_plan(args.plan), args.eval_root, args.reported, args.out, args.claims)


def _figures(args) -> None:
    from irno.report.figures import write_figures
    from irno.report.results import load_plan

    write_figures(load_plan(args.plan), args.eval_root, args.out)


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

    from irno.config import SimulationConfig
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
        args.out,
        grid=args.grid,
        sweep_grid=args.sweep_grid,
        trajectories=args.trajectories,
        seed=args.seed,
        workers=args.workers,
        progress=not args.no_progress,
    )
    print((args.out / "statistics.md").read_text())
    sweep = "all passed" if summary["sweep_all_passed"] else f"FAILED for {summary['sweep_failed']}"
    print(f"stability sweep at {args.sweep_grid}^2: {sweep} ({args.out / f'sweep_{args.sweep_grid}.md'})")
    print(f"validation {'passed' if summary['passed'] else 'FAILED'}: {args.out / 'validation.json'}")
    return 0 if summary["passed"] else 1


def setup_logging(verbose: bool = False) -> None:
    """Log to stderr (rules redirect it into their `log:` file)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for commands that re-launch themselves
    setup_logging(args.verbose)
    use_job_cpus(os.environ)  # inside a SLURM job: every core it was given (before torch starts)
    try:
        return int(args.func(args) or 0)
    except IrnoError as e:
        print(f"irno {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
