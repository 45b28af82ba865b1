"""The study a workflow config describes: its datasets, bases and experiments, the runs they make
(dataset x base x experiment) and the resolved settings of every step.

The Snakefile first validates the config's structure against
``workflow/schemas/config.schema.yaml``, then builds a `Study` here, which checks what a schema
cannot: every settings mapping against its dataclass in `irno.config`, cross references
(``runs.bases``, ``experiments.<name>.transfer_from``, ...) and the source of each dataset. An
error names the config key. Light on purpose (no torch, no The Well): the Snakefile imports it
at parse time, and ``snakemake -n`` of the paper's full DAG must stay fast.

An experiment is either a training variant, a (possibly empty) set of overrides of the
``refiner`` defaults:

    K_4:       {train: {K: 4}}

or a transfer, evaluation only: the Phi trained on ``transfer_from``'s predictions (experiment
``transfer_experiment``, default ``irno``) applied to every other base's predictions:

    transfer:  {transfer_from: TFNO}

Either may carry ``group`` and ``label``, which only shape the report (`Study.plan`).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import yaml

from irno.config import SIMULATED_DATASETS, SWEEP_KEYS, BaseConfig, EvalConfig, RefinerConfig, SimulationConfig
from irno.utils import IrnoError, deep_merge, flatten, from_dict

RESULTS = Path("results")
SPLITS = ("train", "valid", "test")
TRANSFER_KEYS = ("transfer_from", "transfer_experiment")
EXPERIMENT_META = ("group", "label")  # how the report shows an experiment


@dataclass(frozen=True)
class Run:
    """One evaluated Phi: `experiment` on `base`'s predictions for `dataset`.

    For a transfer run, Phi comes from the run (dataset, trained_on_base, trained_experiment);
    otherwise trained_on_base == base and trained_experiment == experiment.
    """

    dataset: str
    base: str
    experiment: str
    trained_on_base: str
    trained_experiment: str

    @property
    def is_transfer(self) -> bool:
        return self.trained_on_base != self.base


class Study:
    """A validated workflow config; built by `load_study`."""

    def __init__(self, config: dict):
        self.run_name: str = config["run_name"]
        self.data_root = Path(config["data_root"])
        self.datasets: dict[str, dict] = config["datasets"]
        self.bases: dict[str, dict] = config["bases"]
        # label and group only shape the report; the rest defines what is trained and evaluated
        specs = {name: dict(spec or {}) for name, spec in config["experiments"].items()}
        self.experiment_meta = {
            name: {k: spec.pop(k) for k in EXPERIMENT_META if k in spec} for name, spec in specs.items()
        }
        self.experiments: dict[str, dict] = specs
        self.refiner_defaults: dict = config.get("refiner") or {}
        self.evaluate: dict = config.get("evaluate") or {}
        self.ablation: str = config.get("ablation") or ""
        self.report: dict = config.get("report") or {}
        selected = config.get("runs") or {}
        self.selected_datasets = _selection(selected, "datasets", self.datasets)
        self.selected_bases = _selection(selected, "bases", self.bases)
        self.selected_experiments = _selection(selected, "experiments", self.experiments)

        self._simulate = {d: self._resolve_simulation(d) for d in self.datasets}
        self._base = {(d, b): self._resolve_base(d, b) for d in self.datasets for b in self.bases}
        _validated(RefinerConfig, self.refiner_defaults, "refiner")
        self._refiner = {e: self._resolve_refiner(e) for e in self.experiments if not self.is_transfer(e)}
        for e in self.experiments:
            if self.is_transfer(e):
                self._check_transfer(e)
        _validated(EvalConfig, self.evaluate, "evaluate")
        self.runs: list[Run] = [r for e in self.selected_experiments for r in self.runs_of(e)]
        if self.ablation and self.ablation not in self.experiments:
            raise IrnoError(
                f"config key 'ablation': {self.ablation!r} is not an experiment ({', '.join(self.experiments)})"
            )
        self._check_report()

    # ------------------------------------------------------------------ where things live

    @property
    def run_dir(self) -> Path:
        return RESULTS / self.run_name

    def well_root(self, dataset: str) -> Path:
        """Root of `dataset` in The Well's layout (<root>/datasets/<dataset>/...).

        Downloads go to the configured data_root; simulations to the run's own folder, so that a
        re-simulation can never overwrite downloaded data and two runs never share simulated data.
        """
        if self.datasets[dataset]["source"] == "simulate":
            return self.run_dir / "data" / "well"
        return self.data_root

    def datasets_from(self, source: str) -> list[str]:
        return [d for d in self.selected_datasets if self.datasets[d]["source"] == source]

    def bases_from(self, source: str) -> list[str]:
        return [b for b in self.selected_bases if self.bases[b]["source"] == source]

    def is_transfer(self, experiment: str) -> bool:
        return "transfer_from" in self.experiments[experiment]

    @property
    def trained_experiments(self) -> list[str]:
        return [e for e in self.experiments if not self.is_transfer(e)]

    def run(self, dataset: str, base: str, experiment: str) -> Run:
        spec = self.experiments[experiment]
        if self.is_transfer(experiment):
            return Run(dataset, base, experiment, spec["transfer_from"], spec.get("transfer_experiment", "irno"))
        return Run(dataset, base, experiment, base, experiment)

    def runs_of(self, experiment: str) -> list[Run]:
        """Every run of one experiment over the selected datasets and bases, selected or not."""
        return [
            self.run(d, b, experiment)
            for d in self.selected_datasets
            for b in self.selected_bases
            if not (self.is_transfer(experiment) and b == self.experiments[experiment]["transfer_from"])
        ]

    # ------------------------------------------------------------------ resolved settings

    def simulate_settings(self, dataset: str) -> dict:
        return self._simulate[dataset]

    def base_settings(self, dataset: str, base: str) -> dict:
        return self._base[(dataset, base)]

    def refiner_settings(self, experiment: str) -> dict:
        return self._refiner[experiment]

    def eval_settings(self) -> dict:
        return self.evaluate

    def plan(self) -> dict:
        """The report plan (irno.config.ReportPlan): which runs the tables and figures show, the
        experiments' ablation groups and labels, and the K and alpha sweeps.

        A sweep is every selected experiment that overrides nothing but train.K (or train.alpha).
        The group of an experiment is its `group` key, else "transfer" for a transfer, "full
        method" for the main experiment and its own name for any other.
        """
        main = self.report.get("main_experiment", "irno")
        experiments = []
        for name in self.selected_experiments:
            default_group = "transfer" if self.is_transfer(name) else "full method" if name == main else name
            meta = self.experiment_meta[name]
            experiments.append(
                {"name": name, "group": meta.get("group", default_group), "label": meta.get("label", "")}
            )
        sweeps = {}
        for key in SWEEP_KEYS:
            members = [e for e in self.selected_experiments if list(flatten(self.experiments[e])) == [f"train.{key}"]]
            if members:
                sweeps[key] = members
        band = self.report.get("band_experiments", ["irno", "no_spectral"])
        return {
            "run_name": self.run_name,
            "datasets": self.selected_datasets,
            "bases": self.selected_bases,
            "main_experiment": main,
            "experiments": experiments,
            "band_experiments": [e for e in band if e in self.selected_experiments],
            "sweeps": sweeps,
            # when the selection leaves them out, the report takes the first selected ones
            "figure_dataset": _if_in(self.report.get("figure_dataset", ""), self.selected_datasets),
            "figure_base": _if_in(self.report.get("figure_base", ""), self.selected_bases),
            "simulated": self.datasets_from("simulate"),
            "reported_names": {b: self.bases[b]["model_class"] for b in self.selected_bases},
        }

    # ------------------------------------------------------------------ validation

    def _resolve_simulation(self, dataset: str) -> dict:
        spec = self.datasets[dataset]
        where = f"datasets.{dataset}"
        if spec["source"] == "simulate":
            if dataset not in SIMULATED_DATASETS:
                raise IrnoError(
                    f"config key '{where}.source': the embedded simulator only produces "
                    f"{', '.join(SIMULATED_DATASETS)}, not {dataset!r} (use source: download)"
                )
            settings = spec.get("simulate") or {}
            _validated(SimulationConfig, settings, f"{where}.simulate")
            return settings
        if spec.get("simulate"):
            raise IrnoError(
                f"config key '{where}.simulate': only a dataset with source: simulate takes simulation settings"
            )
        known = well_dataset_names()
        if dataset not in known:
            raise IrnoError(f"config key 'datasets': {dataset!r} is not a dataset of The Well ({', '.join(known)})")
        return {}

    def _resolve_base(self, dataset: str, base: str) -> dict:
        spec = dict(self.bases[base])
        by_dataset = spec.pop("by_dataset", None) or {}
        for name in by_dataset:
            if name not in self.datasets:
                raise IrnoError(f"config key 'bases.{base}.by_dataset.{name}': {name!r} is not one of the datasets")
        override = by_dataset.get(dataset) or {}
        if "source" in override:
            raise IrnoError(
                f"config key 'bases.{base}.by_dataset.{dataset}.source': a base's source applies to every "
                "dataset; define another base (e.g. FNO_local) instead"
            )
        settings = deep_merge(spec, override)
        if isinstance(settings.get("pretrained"), str):
            settings["pretrained"] = settings["pretrained"].replace("{dataset}", dataset)
        try:
            _validated(BaseConfig, settings, f"bases.{base}")
        except IrnoError as e:
            raise IrnoError(f"{e} [bases.{base} with by_dataset.{dataset}]" if override else str(e)) from None
        return settings

    def _resolve_refiner(self, experiment: str) -> dict:
        overrides = self.experiments[experiment]
        stray = [k for k in TRANSFER_KEYS if k in overrides]
        if stray:
            raise IrnoError(
                f"config key 'experiments.{experiment}.{stray[0]}': "
                "only a transfer experiment (with transfer_from) takes it"
            )
        settings = deep_merge(self.refiner_defaults, overrides)
        _validated(RefinerConfig, settings, f"experiments.{experiment}")
        return settings

    def _check_report(self) -> None:
        main = self.report.get("main_experiment", "irno")
        if main not in self.selected_experiments or self.is_transfer(main):
            raise IrnoError(
                f"config key 'report.main_experiment': {main!r} is not a selected, trained experiment "
                f"({', '.join(e for e in self.selected_experiments if not self.is_transfer(e))})"
            )
        for key, names in (("figure_dataset", self.datasets), ("figure_base", self.bases)):
            value = self.report.get(key, "")
            if value and value not in names:
                raise IrnoError(f"config key 'report.{key}': {value!r} is not one of them ({', '.join(names)})")
        for i, name in enumerate(self.report.get("band_experiments", [])):
            if name not in self.experiments:
                raise IrnoError(f"config key 'report.band_experiments[{i}]': {name!r} is not an experiment")

    def _check_transfer(self, experiment: str) -> None:
        spec = self.experiments[experiment]
        where = f"experiments.{experiment}"
        extra = sorted(set(spec) - set(TRANSFER_KEYS))
        if extra:
            raise IrnoError(
                f"config key '{where}.{extra[0]}': a transfer experiment evaluates an existing Phi and takes no "
                "training overrides (only transfer_from, transfer_experiment)"
            )
        source_base = spec["transfer_from"]
        if source_base not in self.bases:
            raise IrnoError(
                f"config key '{where}.transfer_from': {source_base!r} is not one of the bases ({', '.join(self.bases)})"
            )
        source_experiment = spec.get("transfer_experiment", "irno")
        if source_experiment not in self.experiments or self.is_transfer(source_experiment):
            raise IrnoError(
                f"config key '{where}.transfer_experiment': {source_experiment!r} is not a trained experiment "
                f"({', '.join(self.trained_experiments)})"
            )
        if experiment in self.selected_experiments:
            if source_base not in self.selected_bases:
                raise IrnoError(
                    f"config key '{where}.transfer_from': base {source_base!r} is not among the selected bases "
                    f"({', '.join(self.selected_bases)}); select it or leave {experiment!r} out of runs.experiments"
                )
            if len(self.selected_bases) < 2:
                raise IrnoError(
                    f"config key '{where}': a transfer needs at least two bases, the selected ones are "
                    f"{', '.join(self.selected_bases)}; add a base or leave {experiment!r} out of runs.experiments"
                )


def load_study(config: dict) -> Study:
    """Validate a (schema-checked) workflow config and resolve it; IrnoError names the bad key."""
    return Study(config)


def _selection(selected: dict, key: str, defined: dict) -> list[str]:
    names = selected.get(key)
    if names is None:
        return list(defined)
    for i, name in enumerate(names):
        if name not in defined:
            raise IrnoError(
                f"config key 'runs.{key}[{i}]': {name!r} is not defined under '{key}' ({', '.join(defined)})"
            )
    return list(names)


def _if_in(name: str, names: list[str]) -> str:
    return name if name in names else ""


def _validated(cls: type, settings: dict, where: str) -> None:
    """Check `settings` against dataclass `cls`, naming `where` (the config key) on error."""
    try:
        from_dict(cls, settings, where)
    except IrnoError as e:
        message = str(e)
        # from_dict names nested keys itself; __post_init__ checks name the field only.
        raise IrnoError(message if f"'{where}." in message else f"{where}: {message}") from None


def well_dataset_names() -> list[str]:
    """The Well's dataset names, from its download registry (read without importing the_well,
    which would pull in torch at parse time)."""
    spec = importlib.util.find_spec("the_well")
    if spec is None or not spec.submodule_search_locations:
        raise IrnoError("the_well is not installed; install this package (see README.md)")
    registry = Path(next(iter(spec.submodule_search_locations))) / "utils" / "registry.yaml"
    with open(registry) as f:
        return list(yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
