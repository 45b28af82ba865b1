"""The expansion of a ROMA study into datasets and runs, and what follows from it.

`expand_study` turns every experiment's grids (``datasets x models x vary``, then ``overrides``)
into resolved, validated runs. A run is identified by its settings (`run_key`:
``<dataset>-<model>-<hash>``), so the same settings reached from two experiments train once.
`settings_files` names each step's settings file and `report_outputs` the tables and figures of
the report. No torch, no pandas: the workflow imports it at parse time.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from irno import IrnoError
from irno.files import stable_hash
from irno.roma.settings import (
    EXPERIMENTS,
    FIGURE_FORMATS,
    MODEL_KINDS,
    TABLE_FORMATS,
    ExperimentConfig,
    ModelConfig,
    RunConfig,
    StudyConfig,
    StudyDataset,
    check_dotted_settings,
)
from irno.settings import from_dict, to_dict


@dataclass
class ExpandedStudy:
    """The expanded study: resolved settings of every dataset and run, and who belongs where."""

    datasets: dict[str, dict]  # name -> DataConfig as a dict
    encodings: dict[str, dict]  # name -> EncodingConfig, for the datasets whose runs read encodings
    runs: dict[str, dict]  # run key -> RunConfig as a dict
    experiments: dict[str, list[dict]]  # experiment -> [{"run", "dataset", "model", "setting", <vary key>: value}]


def run_key(settings: dict) -> str:
    """``<dataset>-<model>-<hash of the resolved settings>``: equal settings, equal key."""
    return f"{settings['dataset']}-{settings['model']['kind']}-{stable_hash(settings, 8)}"


def model_defaults(study: StudyConfig, kind: str, dataset: str) -> dict:
    """A run's settings before its experiment: the study's model and train defaults, the kind,
    and the study's ``per_model`` settings of that kind (as a RunConfig dict, not yet validated)."""
    settings = {"dataset": dataset, "model": to_dict(study.model), "train": to_dict(study.train)}
    settings["model"]["kind"] = kind
    return apply_settings(settings, study.per_model.get(kind, {}))


def apply_settings(settings: dict, dotted: dict) -> dict:
    """A copy of a RunConfig dict with ``{"model.width": 64, "train.lr": 1e-3}`` set."""
    out = {**settings, "model": dict(settings["model"]), "train": dict(settings["train"])}
    for key, value in dotted.items():
        section, leaf = key.split(".")
        out[section][leaf] = value
    return out


def expand_study(study: StudyConfig) -> ExpandedStudy:
    """Expand every experiment's grids into resolved, validated, de-duplicated runs."""
    runs: dict[str, dict] = {}
    experiments: dict[str, list[dict]] = {}
    for name in EXPERIMENTS:
        grids = getattr(study.experiments, name)
        if grids is None:
            continue
        entries = []
        for index, grid in enumerate(grids):
            where = f"roma.experiments.{name}" + (f"[{index}]" if len(grids) > 1 else "")
            entries += _expand_grid(study, grid, name, index, where, runs)
        if name == "parameter_scaling":
            _check_scaling(entries, runs)
        experiments[name] = entries
    if not runs:
        raise IrnoError("config key 'roma.experiments': no experiment is configured")
    used = sorted({r["dataset"] for r in runs.values()})
    datasets = {name: _data_settings(study.datasets[name]) for name in used}
    encoded = sorted({r["dataset"] for r in runs.values() if reads_encodings(r)})
    encodings = {name: to_dict(study.datasets[name].encodings) for name in encoded}
    return ExpandedStudy(datasets=datasets, encodings=encodings, runs=runs, experiments=experiments)


def reads_encodings(run: dict) -> bool:
    """Whether a run (its RunConfig as a dict) reads its dataset's graph encodings."""
    return bool(ModelConfig(**run["model"]).used_encodings)


def _expand_grid(study, grid: ExperimentConfig, name: str, index: int, where: str, runs: dict) -> list[dict]:
    _check_experiment(grid, study, where)
    axes = list(grid.vary)
    entries = []
    for dataset, kind, combo in itertools.product(
        grid.datasets, grid.models, itertools.product(*(grid.vary[k] for k in axes))
    ):
        settings = apply_settings(model_defaults(study, kind, dataset), dict(zip(axes, combo, strict=True)))
        for target in (kind, f"{dataset}/{kind}"):
            settings = apply_settings(settings, grid.overrides.get(target, {}))
        settings = to_dict(from_dict(RunConfig, settings, where))  # validates and normalises types
        key = run_key(settings)
        runs[key] = settings
        values = {k: settings[k.split(".")[0]][k.split(".")[1]] for k in axes}  # as validated
        label = ", ".join(f"{k.split('.')[1]}={v}" for k, v in values.items()) or "default"
        entries.append({"run": key, "dataset": dataset, "model": kind, "grid": index, "setting": label, **values})
    return entries


def _check_experiment(exp: ExperimentConfig, study: StudyConfig, where: str) -> None:
    if not exp.datasets:
        raise IrnoError(f"config key '{where}.datasets': at least one dataset is required")
    for name in exp.datasets:
        if name not in study.datasets:
            raise IrnoError(
                f"config key '{where}.datasets': unknown dataset '{name}' "
                f"(roma.datasets has: {', '.join(study.datasets)})"
            )
    for kind in exp.models:
        if kind not in MODEL_KINDS:
            raise IrnoError(f"config key '{where}.models': unknown model '{kind}' (one of {', '.join(MODEL_KINDS)})")
    check_dotted_settings(exp.vary, f"{where}.vary")
    for key, values in exp.vary.items():
        if not isinstance(values, list) or not values:
            raise IrnoError(f"config key '{where}.vary.{key}': expected a non-empty list of values, got {values!r}")
    for target, settings in exp.overrides.items():
        dataset, _, kind = target.rpartition("/")
        if kind not in exp.models or (dataset and dataset not in exp.datasets):
            raise IrnoError(
                f"config key '{where}.overrides.{target}': expected '<model>' or '<dataset>/<model>' "
                f"of this grid (models: {', '.join(exp.models)}; datasets: {', '.join(exp.datasets)})"
            )
        check_dotted_settings(settings, f"{where}.overrides.{target}")


def _check_scaling(entries: list[dict], runs: dict) -> None:
    """Each dataset x model of parameter_scaling needs 3 widths (a power-law fit with an error)."""
    widths: dict[tuple, set] = {}
    for entry in entries:
        run = runs[entry["run"]]
        widths.setdefault((entry["dataset"], entry["model"]), set()).add(run["model"]["width"])
    for (dataset, kind), values in widths.items():
        if len(values) < 3:
            raise IrnoError(
                f"config key 'roma.experiments.parameter_scaling': {dataset} x {kind} has {len(values)} "
                "width(s); a power-law fit with an uncertainty needs at least 3 (e.g. model.width: [16, 32, 64])"
            )


def _data_settings(dataset: StudyDataset) -> dict:
    """The DataConfig part of a study's dataset (its encodings have their own settings file)."""
    settings = to_dict(dataset)
    del settings["encodings"]
    return settings


def report_outputs(expanded: ExpandedStudy) -> dict[str, list[str]]:
    """File names ``irno roma tables`` and ``figures`` write for this study (the workflow's outputs)."""
    has = expanded.experiments.keys()
    tables = ["results.csv"]
    if "data_noise" in has:
        tables += [f"smspe.{f}" for f in TABLE_FORMATS]
    if "effective_dynamics" in has:
        tables += [f"effective_dynamics.{f}" for f in TABLE_FORMATS]
    if "parameter_scaling" in has:
        tables += [f"scaling.{f}" for f in TABLE_FORMATS]
    if has & {"positional", "graph_encodings"}:
        tables += [f"ablations.{f}" for f in TABLE_FORMATS]
    figures = ["training_curves"]
    if "parameter_scaling" in has:
        figures.append("scaling_law")
    if any(run["model"]["kind"] == "roma" for run in expanded.runs.values()):
        figures.append("attention")
    return {"tables": tables, "figures": [f"{name}.{f}" for name in figures for f in FIGURE_FORMATS]}


def settings_files(expanded: ExpandedStudy) -> dict[str, tuple[str, dict]]:
    """Folder (relative to the study's) -> (settings kind, settings) of every settings.yaml, the
    kind as ``irno write-settings --kind`` names it (`irno.roma.settings.SETTINGS_KINDS`)."""
    return {
        **{f"data/{name}": ("roma_data", s) for name, s in expanded.datasets.items()},
        **{f"data/{name}/encodings": ("roma_encodings", s) for name, s in expanded.encodings.items()},
        **{f"runs/{key}": ("roma_run", s) for key, s in expanded.runs.items()},
    }
