"""The numbers tables and figures are made of: saved evaluation outputs and published numbers.

`load_run` reads one evaluated run (``eval/<dataset>/<base>/<experiment>[/seed_<n>]/``,
docs/outputs.md) into an `EvalRun`: metrics as a dict, ``per_step.csv`` as a DataFrame,
``spectra.npz`` as arrays (read on first use; tables never need it). A run the plan lists but the
disk lacks is an `EvalRun` with ``missing=True`` and a reason, so every table cell and figure
panel can say so. A file that exists but breaks the schema is an `IrnoError` naming the file and
the key. `load_runs` groups the runs of every seed of a (dataset, base, experiment) into a
`SeededRun`, which the tables and figures read: means and spreads over seeds.

`load_reported` reads ``config/reported.yaml``, the published numbers with their sources.
"""

from __future__ import annotations

import functools
import math
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from irno import IrnoError
from irno.bands import BANDS
from irno.config import ReportPlan
from irno.files import read_json, read_yaml
from irno.report.stats import Stat
from irno.settings import from_dict

EVAL_FILES = ("metrics.json", "per_step.csv", "spectra.npz")
METRICS_KEYS = (
    "dataset", "base", "experiment", "trained_on_base", "n_samples", "K", "alpha", "extra_steps", "field_names",
    "vrmse_base", "vrmse_refined", "vrmse_final", "gain_pct",
    "vrmse_pooled_cf_base", "vrmse_pooled_cf_refined", "vrmse_pooled_cf_final", "gain_pct_pooled_cf",
    "band_ratio_low", "band_ratio_mid", "band_ratio_high", "diverged", "first_diverged_step",
)  # fmt: skip
PER_STEP_COLUMNS = (
    "step", "vrmse", "vrmse_pooled_cf", "spectral_mse", "band_mse_low", "band_mse_mid", "band_mse_high",
    "band_ratio_low", "band_ratio_mid", "band_ratio_high", "diverged",
)  # fmt: skip
NPZ_ARRAYS = (  # the arrays of spectra.npz
    "steps", "K", "shells", "nyquist", "ratio_median", "ratio_q25", "ratio_q75", "error_spectrum_mean",
    "spectral_mse", "energy_wavenumber", "energy_truth", "energy_base", "energy_refined", "field_names",
    "example_index", "example_truth", "example_base", "example_refined",
)  # fmt: skip


def eval_dir(eval_root: str | os.PathLike, dataset: str, base: str, experiment: str, seed: str = "") -> Path:
    """eval/<dataset>/<base>/<experiment>[/seed_<n>] (`seed`: a folder of ReportPlan.seed_dirs)."""
    return Path(eval_root) / dataset / base / experiment / seed


@dataclass
class EvalRun:
    """One evaluated (dataset, base, experiment), or the explicit absence of it."""

    dataset: str
    base: str
    experiment: str
    directory: Path
    metrics: dict | None = None  # None when missing
    per_step: pd.DataFrame | None = None  # one row per step 0 .. K + extra, indexed by step
    missing_reason: str = ""
    label: str = ""  # the plan's display label; empty: the experiment name

    def __post_init__(self):
        self.label = self.label or self.experiment

    @property
    def missing(self) -> bool:
        return self.metrics is None

    @property
    def diverged(self) -> bool:
        return not self.missing and bool(self.metrics["diverged"])

    @property
    def K(self) -> int:
        return int(self.metrics["K"])

    @property
    def final_step(self) -> int:
        return self.K + int(self.metrics["extra_steps"])

    @property
    def status(self) -> str:
        """The status column of the tables: "missing", "diverged from k=9" or "ok"."""
        if self.missing:
            return "missing"
        if self.diverged:
            first = self.metrics["first_diverged_step"]
            return "diverged" if first is None else f"diverged from k={int(first)}"
        return "ok"

    def step_diverged(self, step: int) -> bool:
        """Whether the evaluation flagged this step as diverged (or its error is not finite)."""
        row = self.per_step.loc[step]
        return bool(row["diverged"]) or not math.isfinite(row["vrmse"])

    @functools.cached_property
    def spectra(self) -> dict[str, np.ndarray]:
        path = self.directory / "spectra.npz"
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise IrnoError(f"{path}: not a readable npz without pickled objects ({e})") from None
        absent = [name for name in NPZ_ARRAYS if name not in arrays]
        if absent:
            raise IrnoError(f"{path}: missing array(s) {', '.join(absent)} (docs/outputs.md, spectra.npz)")
        n_steps, n_shells = len(arrays["steps"]), len(arrays["shells"])
        for name in ("ratio_median", "ratio_q25", "ratio_q75", "error_spectrum_mean"):
            if arrays[name].shape != (n_steps, n_shells):
                raise IrnoError(
                    f"{path}: '{name}' has shape {arrays[name].shape}, expected (steps, shells) = {(n_steps, n_shells)}"
                )
        if arrays["spectral_mse"].ndim != 2 or arrays["spectral_mse"].shape[1] != n_steps:
            raise IrnoError(
                f"{path}: 'spectral_mse' has shape {arrays['spectral_mse'].shape}, expected (samples, {n_steps})"
            )
        n_fields = len(arrays["field_names"])
        for name in ("energy_truth", "energy_base", "energy_refined"):
            if arrays[name].shape != (n_fields, len(arrays["energy_wavenumber"])):
                raise IrnoError(f"{path}: '{name}' has shape {arrays[name].shape}, expected (fields, wavenumbers)")
        for name in ("example_truth", "example_base", "example_refined"):
            if arrays[name].ndim != 3 or arrays[name].shape[0] != n_fields:
                raise IrnoError(f"{path}: '{name}' has shape {arrays[name].shape}, expected ({n_fields}, H, W)")
        arrays["field_names"] = arrays["field_names"].astype(str)
        return arrays


def load_run(
    eval_root: str | os.PathLike, dataset: str, base: str, experiment: str, label: str = "", seed: str = ""
) -> EvalRun:
    """Read one run's evaluation outputs; a run without all three files is returned as missing."""
    directory = eval_dir(eval_root, dataset, base, experiment, seed)
    run = EvalRun(dataset, base, experiment, directory, label=label)
    absent = [name for name in EVAL_FILES if not (directory / name).is_file()]
    if absent:
        run.missing_reason = f"{directory}: no {', '.join(absent)}"
        return run
    metrics_path = directory / "metrics.json"
    metrics = read_json(metrics_path)
    if not isinstance(metrics, dict):
        raise IrnoError(f"{metrics_path}: expected a JSON object")
    absent_keys = [key for key in METRICS_KEYS if key not in metrics]
    if absent_keys:
        raise IrnoError(f"{metrics_path}: missing key(s) {', '.join(absent_keys)} (docs/outputs.md, metrics.json)")
    for key, expected in (("dataset", dataset), ("base", base), ("experiment", experiment)):
        if metrics[key] != expected:
            raise IrnoError(
                f"{metrics_path}: '{key}' is {metrics[key]!r} but the file lies in the folder of {expected!r}"
            )
    run.metrics = metrics
    run.per_step = _read_per_step(directory / "per_step.csv", metrics)
    return run


def _read_per_step(path: Path, metrics: dict) -> pd.DataFrame:
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise IrnoError(f"{path}: not a readable CSV ({e})") from None
    wanted = list(PER_STEP_COLUMNS) + [f"vrmse_{name}" for name in metrics["field_names"]]
    absent = [column for column in wanted if column not in table.columns]
    if absent:
        raise IrnoError(f"{path}: missing column(s) {', '.join(absent)} (docs/outputs.md, per_step.csv)")
    final = int(metrics["K"]) + int(metrics["extra_steps"])
    if table["step"].tolist() != list(range(final + 1)):
        raise IrnoError(f"{path}: steps {table['step'].tolist()} are not 0 .. K + extra_steps = 0 .. {final}")
    table["diverged"] = table["diverged"].astype(str).str.lower().isin(["true", "1", "1.0"])
    return table.set_index("step", drop=False)


@dataclass
class SeededRun:
    """One (dataset, base, experiment) of the plan over its seeds: an `EvalRun` per seed, and their
    aggregates. Without seeds in the plan it holds one run, and every aggregate is that run's number.

    Seeds whose evaluation is missing are left out of the aggregates (n counts the present ones)
    and named by `status`; the run is `missing` only when every seed is.
    """

    dataset: str
    base: str
    experiment: str
    label: str
    seeds: list[EvalRun]  # in the plan's seed order
    seed_names: list[str] = field(default_factory=list)  # "seed_42", ... ("" without seeds)

    @property
    def present(self) -> list[EvalRun]:
        return [run for run in self.seeds if not run.missing]

    @property
    def missing(self) -> bool:
        return not self.present

    @property
    def missing_reason(self) -> str:
        return "; ".join(run.missing_reason for run in self.seeds if run.missing)

    @property
    def n(self) -> int:
        return len(self.present)

    @property
    def first(self) -> EvalRun:
        """The first present seed's run (labels, field names, the example sample), else the first seed's."""
        return (self.present or self.seeds)[0]

    @property
    def metrics(self) -> dict:
        """The first present seed's metrics.json (for what every seed shares: K, alpha, field names)."""
        return self.first.metrics

    @property
    def K(self) -> int:
        Ks = {run.K for run in self.present}
        if len(Ks) > 1:
            raise IrnoError(f"{self.first.directory.parent}: the seeds were trained with different K ({sorted(Ks)})")
        return Ks.pop()

    @property
    def final_step(self) -> int:
        return min(run.final_step for run in self.present)

    @property
    def diverged(self) -> bool:
        return any(run.diverged for run in self.present)

    def stat(self, key: str) -> Stat:
        """metrics.json's `key` over the present seeds."""
        return Stat.of(float(run.metrics[key]) for run in self.present)

    def step_stat(self, step: int, column: str) -> Stat:
        """per_step.csv's `column` at `step` over the present seeds."""
        return Stat.of(float(run.per_step.loc[step, column]) for run in self.present)

    def step_diverged(self, step: int) -> bool:
        """Whether any seed's evaluation flagged this step as diverged (or its error is not finite)."""
        return any(run.step_diverged(step) for run in self.present)

    def curve(self, column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(steps, mean, min, max) of a per_step.csv column over the present seeds, steps 0 .. final_step."""
        steps = np.arange(self.final_step + 1)
        values = np.stack([run.per_step[column].to_numpy(dtype=float)[: len(steps)] for run in self.present])
        with np.errstate(invalid="ignore"):
            return steps, values.mean(0), values.min(0), values.max(0)

    def spectra_stack(self, name: str) -> np.ndarray:
        """One spectra.npz array of every present seed, stacked: (seeds, ...)."""
        return np.stack([run.spectra[name] for run in self.present])

    @property
    def status(self) -> str:
        """The status column of the tables: "ok", "missing", "diverged from k=9" (with how many seeds),
        "training diverged at epoch 4", "missing seed_43" ..."""
        if self.missing:
            return "missing"
        parts = []
        trainings = [run for run in self.present if run.metrics.get("training_status") == "diverged"]
        if trainings:
            epochs = sorted({run.metrics.get("training_diverged_epoch") for run in trainings}, key=str)
            part = "training diverged at epoch " + ", ".join(str(e) for e in epochs)
            parts.append(part + (f" ({len(trainings)} of {self.n} seeds)" if len(self.seeds) > 1 else ""))
        diverged = [run for run in self.present if run.diverged]
        if diverged:
            steps = sorted({run.metrics["first_diverged_step"] for run in diverged}, key=lambda k: (k is None, k))
            first = steps[0]
            part = "diverged" if first is None else f"diverged from k={int(first)}"
            parts.append(part + (f" ({len(diverged)} of {self.n} seeds)" if len(self.seeds) > 1 else ""))
        absent = (
            [name for name, run in zip(self.seed_names, self.seeds, strict=True) if run.missing]
            if self.seed_names
            else []
        )
        if absent:
            parts.append("missing " + ", ".join(absent))
        return "; ".join(parts) or "ok"


def load_plan(path: str | os.PathLike) -> ReportPlan:
    """Read a report plan YAML (docs/outputs.md, "Report plan"); errors name the file and key."""
    data = read_yaml(path)
    try:
        return from_dict(ReportPlan, data, "plan")
    except IrnoError as e:
        raise IrnoError(f"{path}: {e}") from None


def load_runs(plan: ReportPlan, eval_root: str | os.PathLike) -> dict[tuple[str, str, str], SeededRun]:
    """Every (dataset, base, experiment) of the plan over its seeds, present or missing, in plan order."""
    return {
        (dataset, base, e.name): SeededRun(
            dataset,
            base,
            e.name,
            e.label,
            [load_run(eval_root, dataset, base, e.name, e.label, seed) for seed in plan.seed_dirs],
            [seed for seed in plan.seed_dirs if seed],
        )
        for dataset in plan.datasets
        for base in plan.bases
        for e in plan.experiments
    }


# ----------------------------------------------------------------------------- published numbers


@dataclass
class Reported:
    """Published numbers (config/reported.yaml), each entry tied to a named source."""

    path: Path
    sources: dict[str, dict]  # key -> {title, where, paper, convention, standing}
    main: list[dict] = field(default_factory=list)  # {source, dataset, base, single_pass, irno, gain_pct}
    ablations: list[dict] = field(default_factory=list)  # {source, dataset, base, experiment, vrmse_pooled_cf}
    band_ratios: list[dict] = field(default_factory=list)  # {source, dataset, low/mid/high: [min %, max %]}
    claims: list[dict] = field(default_factory=list)  # {source, text}: qualitative, not compared
    well_benchmark: list[dict] = field(default_factory=list)  # {source, dataset, split, horizon, <model>: vrmse}

    def main_entry(self, dataset: str, model: str) -> dict | None:
        return next((e for e in self.main if (e["dataset"], e["base"]) == (dataset, model)), None)

    def ablation_entry(self, dataset: str, model: str, experiment: str) -> dict | None:
        key = (dataset, model, experiment)
        return next((e for e in self.ablations if (e["dataset"], e["base"], e["experiment"]) == key), None)

    def well_entry(self, dataset: str, split: str = "test", horizon: str = "one_step") -> dict | None:
        """The Well benchmark row: model name -> VRMSE (numbers, or text such as "> 10")."""
        key = (dataset, split, horizon)
        return next((e for e in self.well_benchmark if (e["dataset"], e["split"], e["horizon"]) == key), None)

    def well_vrmse(self, dataset: str, model: str, split: str = "test") -> float | None:
        """The Well's one-step VRMSE of a model (``split="valid"`` for the base check)."""
        entry = self.well_entry(dataset, split)
        value = None if entry is None else entry.get(model)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def source_title(self, key: str) -> str:
        return self.sources[key]["title"]


# section -> keys every entry needs (besides "source"), and which of them are numbers / [min, max] ranges
_REPORTED_SECTIONS = {
    "main": (("dataset", "base", "single_pass", "irno", "gain_pct"), ("single_pass", "irno", "gain_pct"), ()),
    "ablations": (("dataset", "base", "experiment", "vrmse_pooled_cf"), ("vrmse_pooled_cf",), ()),
    "band_ratios": (("dataset", *BANDS), (), BANDS),
    "claims": (("text",), (), ()),
    "well_benchmark": (("dataset", "split", "horizon"), (), ()),
}


def load_reported(path: str | os.PathLike) -> Reported:
    """Read config/reported.yaml; an entry without a known source or with a non-number is an IrnoError."""
    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("sources"), dict):
        raise IrnoError(f"{path}: expected a mapping with a 'sources' mapping")
    for key, source in data["sources"].items():
        if not isinstance(source, dict) or not source.get("title"):
            raise IrnoError(f"{path}: sources.{key} needs a 'title'")
    unknown = sorted(set(data) - {"sources", *_REPORTED_SECTIONS})
    if unknown:
        raise IrnoError(f"{path}: unknown section '{unknown[0]}' (known: sources, {', '.join(_REPORTED_SECTIONS)})")
    reported = Reported(path, data["sources"])
    for section, (keys, numbers, ranges) in _REPORTED_SECTIONS.items():
        entries = data.get(section) or []
        if not isinstance(entries, list):
            raise IrnoError(f"{path}: '{section}' must be a list of entries")
        for i, entry in enumerate(entries):
            where = f"{path}: {section}[{i}]"
            if not isinstance(entry, dict):
                raise IrnoError(f"{where}: expected a mapping")
            absent = [key for key in ("source", *keys) if key not in entry]
            if absent:
                raise IrnoError(f"{where}: missing key(s) {', '.join(absent)}")
            if entry["source"] not in data["sources"]:
                raise IrnoError(
                    f"{where}: source '{entry['source']}' is not one of sources: {', '.join(data['sources'])}"
                )
            for key in numbers:
                if not _is_number(entry[key]):
                    raise IrnoError(f"{where}: '{key}' must be a number, got {entry[key]!r}")
            for key in ranges:
                value = entry[key]
                if not (isinstance(value, list) and len(value) == 2 and all(_is_number(v) for v in value)):
                    raise IrnoError(f"{where}: '{key}' must be a [min, max] pair of numbers, got {value!r}")
        setattr(reported, section, entries)
    return reported


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
