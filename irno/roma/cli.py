"""``irno roma <verb>``: the ROMA study's steps (their settings files: ``irno write-settings``).

    summary   study YAML -> each model's parameter count and every experiment's runs (stdout)
    simulate  data settings -> dataset.h5
    encode    encoding settings + dataset -> encodings.h5 (Laplacian eigenvectors, node2vec)
    train     run settings + dataset (+ encodings) -> checkpoint.pt, train_log.csv (+ last.pt to resume),
              with --evaluation FOLDER also evaluate's outputs (one job trains and scores)
    evaluate  run settings + dataset + checkpoint -> metrics.json (+ attention.npz for roma)
    tables    study YAML + metrics.json... -> results.csv, smspe.*, effective_dynamics.*, scaling.*, ablations.*
    figures   study YAML + metrics, logs, attention -> training_curves.*, scaling_law.*, attention.*

Heavy imports (torch, matplotlib) happen inside the verbs, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger("irno.roma")


def add_roma_commands(subparsers) -> None:
    roma = subparsers.add_parser(
        "roma",
        help="the ROMA study (neural operators on Kuramoto and Burgers-like dynamics on graphs)",
        description="The ROMA study: Kuramoto and Burgers-like data on random hyperbolic graphs, ROMA and its "
        "baselines, the paper's experiments, tables and figures. Each verb is one workflow step.",
    )
    verbs = roma.add_subparsers(dest="roma_command", metavar="VERB", required=True)

    p = verbs.add_parser(
        "summary",
        help="parameter counts of the models and the runs of every experiment (no data needed)",
        description="Print one line per model kind, '<model> <parameters>', at the study's default settings "
        "(the count as the reference reports it: the trained parameters and the ones it builds but does not "
        "use), then every experiment's runs with their settings and counts. Builds no weights.",
    )
    p.add_argument("--config", required=True, help="YAML file with a roma: section (e.g. config/roma.yaml)")
    p.set_defaults(func=_summary)

    p = verbs.add_parser(
        "simulate",
        help="random hyperbolic graph + Kuramoto or Burgers-like dynamics -> HDF5",
        description="Generate the graph and the dynamics of one dataset; an interrupted Kuramoto "
        "simulation resumes from its last written block.",
    )
    p.add_argument("--config", required=True, help="data settings YAML (system, graph, kuramoto / burgers, seed)")
    p.add_argument("--out", required=True, help="HDF5 file to write, e.g. .../data/<dataset>/dataset.h5")
    p.set_defaults(func=_simulate)

    p = verbs.add_parser(
        "encode",
        help="graph encodings of a dataset's graph (Laplacian eigenvectors, node2vec) -> HDF5",
        description="Compute the graph encodings of every node of a dataset's graph.",
    )
    p.add_argument("--config", required=True, help="encoding settings YAML")
    p.add_argument("--data", required=True, help="the dataset's dataset.h5")
    p.add_argument("--out", required=True, help="HDF5 file to write, e.g. .../data/<dataset>/encodings/encodings.h5")
    _threads_option(p)
    p.set_defaults(func=_encode)

    p = verbs.add_parser(
        "train",
        help="train one run (resumes from OUT_DIR/last.pt)",
        description="Train one operator on random-walk subgraphs; writes OUT_DIR/checkpoint.pt "
        "(the last model) and OUT_DIR/train_log.csv.",
    )
    p.add_argument("--config", required=True, help="run settings YAML (dataset, model, train)")
    p.add_argument("--data", required=True, help="the dataset's dataset.h5")
    p.add_argument("--encodings", help="the dataset's encodings.h5 (models that read graph encodings)")
    p.add_argument("--out-dir", required=True, help="run folder")
    p.add_argument(
        "--evaluation",
        help="folder for the test metrics (and ROMA's attention maps) of the trained model, scored in the "
        "same process as 'irno roma evaluate' would",
    )
    _threads_option(p)
    p.set_defaults(func=_train)

    p = verbs.add_parser(
        "evaluate",
        help="test metrics of a trained run",
        description="Score a checkpoint on the run's held-out test subgraphs (clean, with the noisy-input "
        "score and the persistence forecast beside it).",
    )
    p.add_argument("--config", required=True, help="run settings YAML the checkpoint was trained with")
    p.add_argument("--data", required=True, help="the dataset's dataset.h5")
    p.add_argument("--encodings", help="the dataset's encodings.h5 (models that read graph encodings)")
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt from 'irno roma train'")
    p.add_argument("--metrics", required=True, help="metrics.json to write")
    p.add_argument("--attention", help="attention.npz to write (roma models only)")
    _threads_option(p)
    p.set_defaults(func=_evaluate)

    p = verbs.add_parser(
        "tables",
        help="tables from saved metrics",
        description="Write results.csv and the smspe / effective_dynamics / scaling / ablations tables "
        "(.csv, .md, .tex).",
    )
    p.add_argument("--config", required=True, help="the study YAML (roma: section) the runs come from")
    p.add_argument("--metrics", nargs="+", required=True, help="metrics.json of every run of the study")
    p.add_argument("--out-dir", required=True, help="folder for the tables")
    p.set_defaults(func=_tables)

    p = verbs.add_parser(
        "figures",
        help="figures from saved outputs",
        description="Write training_curves, scaling_law and attention figures (.pdf, .png).",
    )
    p.add_argument("--config", required=True, help="the study YAML (roma: section) the runs come from")
    p.add_argument("--metrics", nargs="+", required=True, help="metrics.json of every run of the study")
    p.add_argument("--train-logs", nargs="+", required=True, help="train_log.csv of every run")
    p.add_argument("--attention", nargs="*", default=[], help="attention.npz of the roma runs to show")
    p.add_argument("--out-dir", required=True, help="folder for the figures")
    p.set_defaults(func=_figures)


def _threads_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        type=int,
        help="CPU threads for torch (default: torch's choice); give the job's core count when jobs share a node",
    )


def _set_threads(args) -> None:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)


def _summary(args) -> int:
    from irno.roma.settings import read_study_config

    print(study_summary(read_study_config(args.config)))
    return 0


def study_summary(study) -> str:
    """Each model kind's parameter count at the study's defaults ('<model> <count>', the reference's
    convention), then every experiment's runs: dataset, model, settings, key and count."""
    from irno.files import stable_hash
    from irno.roma.models import parameter_counts
    from irno.roma.settings import MODEL_KINDS, RunConfig
    from irno.roma.study import expand_study, model_defaults
    from irno.settings import from_dict, to_dict

    expanded = expand_study(study)

    counts: dict[str, int] = {}

    def count(run: RunConfig) -> int:  # as the reference counts them; equal models counted once
        encodings = study.datasets[run.dataset].encodings
        dim = sum(getattr(encodings, kind) for kind in run.model.used_encodings)
        key = stable_hash([to_dict(run.model), run.train.history, run.train.subgraph_nodes, dim])
        if key not in counts:
            counts[key] = parameter_counts(run, dim)[1]
        return counts[key]

    dataset = next(iter(study.datasets))
    lines = [f"# parameters of each model at the study's defaults (dataset {dataset}; counted as the reference does)"]
    for kind in MODEL_KINDS:
        run = from_dict(RunConfig, model_defaults(study, kind, dataset), f"roma.per_model.{kind}")
        lines.append(f"{kind} {count(run)}")
    for name, entries in expanded.experiments.items():
        lines.append(f"# {name}: {len(entries)} runs (dataset model setting width pde steps run-key parameters)")
        for entry in entries:
            run = from_dict(RunConfig, expanded.runs[entry["run"]])
            pde = run.model.pde if run.model.learned_pde else "none"
            lines.append(
                f"{name} {entry['dataset']} {entry['model']} [{entry['setting']}] width={run.model.width} "
                f"pde={pde} steps={run.train.steps} {entry['run']} {count(run)}"
            )
    return "\n".join(lines)


def _simulate(args) -> int:
    from irno.roma.datasets import describe, simulate
    from irno.roma.settings import load_data_config

    path = simulate(load_data_config(args.config), args.out)
    log.info("%s: %s", path, json.dumps(describe(path)))
    return 0


def _device(preference: str) -> None:
    """Choose and log the device before any data is read: a job given GPUs that finds no usable CUDA
    stops here, within seconds (irno.device.select_device). On a GPU, float32 matrix products run in
    TF32, the precision JAX gives them on NVIDIA GPUs by default (the reference's)."""
    import torch

    from irno.device import log_device, select_device

    device = select_device(preference)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    log_device(device, "fp32, TF32 matrix products" if device.type == "cuda" else "fp32")


def _encode(args) -> int:
    from irno.roma.datasets import encode
    from irno.roma.settings import load_encoding_config

    _set_threads(args)
    cfg = load_encoding_config(args.config)
    if cfg.node2vec:  # node2vec runs on the device, after the Laplacian's eigenvectors on the CPU
        _device(cfg.device)
    log.info("%s written", encode(cfg, args.data, args.out))
    return 0


def _train(args) -> int:
    from irno.roma.settings import load_run_config
    from irno.roma.train import CHECKPOINT_FILE, read_inputs, train
    from irno.runlock import LOCK_FILE, RunFolderLock

    _set_threads(args)
    cfg = load_run_config(args.config)
    _device(cfg.train.device)
    # one process per run folder: a second start (a head restarted while this job runs) stops at once
    with RunFolderLock(Path(args.out_dir) / LOCK_FILE):
        inputs = read_inputs(cfg, args.data, args.encodings)
        summary = train(cfg, inputs, args.out_dir)
        log.info("%d steps, validation sMSPE %.4g", summary["step"], summary["valid_smspe"])
        if args.evaluation:
            # scored by the training job itself, on the data it has read: a second job would read
            # the series again, pay torch's start-up and, on a cluster, a second GPU allocation
            folder = Path(args.evaluation)
            attention = folder / "attention.npz" if cfg.model.kind == "roma" else None
            _score(cfg, inputs, Path(args.out_dir) / CHECKPOINT_FILE, folder / "metrics.json", attention)
    return 0


def _evaluate(args) -> int:
    from irno.roma.settings import load_run_config
    from irno.roma.train import read_inputs

    _set_threads(args)
    cfg = load_run_config(args.config)
    _device(cfg.train.device)
    _score(cfg, read_inputs(cfg, args.data, args.encodings), args.checkpoint, args.metrics, args.attention)
    return 0


def _score(cfg, inputs, checkpoint, metrics_out, attention_out) -> None:
    """Test metrics of a checkpoint (irno.roma.evaluate), with the headline numbers logged."""
    from irno.roma.evaluate import evaluate

    metrics = evaluate(cfg, inputs, checkpoint, metrics_out, attention_out)
    log.info(
        "test sMSPE %.4g (noisy inputs %.4g; persistence %.4g)",
        metrics["smspe"],
        metrics["smspe_noisy_inputs"],
        metrics["smspe_persistence"],
    )


def _tables(args) -> int:
    from irno.roma.report import write_tables
    from irno.roma.settings import read_study_config

    write_tables(read_study_config(args.config), args.metrics, args.out_dir)
    return 0


def _figures(args) -> int:
    from irno.roma.report import write_figures
    from irno.roma.settings import read_study_config

    write_figures(read_study_config(args.config), args.metrics, args.train_logs, args.attention, args.out_dir)
    return 0
