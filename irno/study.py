"""The study a workflow config describes: its datasets, bases and experiments, the runs they make
(dataset x base x experiment) and the resolved settings of every step.

The Snakefile validates the config's structure against its schema, then builds a `Study` here,
which checks what a schema cannot (settings against their dataclasses, cross references, each
dataset's source; an error names the config key). Phi's settings for one run are resolved in three
layers: the ``phi`` defaults, ``phi.by_base.<base>``, then the experiment's overrides (or a transfer,
evaluation only); ``seeds`` repeats every training and evaluation per seed. Light on purpose (no
torch, no The Well): the Snakefile imports it at parse time, and ``snakemake -n`` must stay fast.

Detail: docs/usage.md#how-a-config-becomes-the-study-irnostudy; where outputs land: docs/outputs.md
"""

from __future__ import annotations

import copy
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from irno import IrnoError
from irno.config import SIMULATED_DATASETS, SWEEP_KEYS, BaseConfig, EvalConfig, PhiConfig, SimulationConfig
from irno.files import read_yaml, stable_hash
from irno.settings import deep_merge, flatten, from_dict

RESULTS_ROOT = "results"  # the config's results_root by default
SPLITS = ("train", "valid", "test")
DATA_SOURCES = ("download", "local", "simulate")
TRANSFER_KEYS = ("transfer_from", "transfer_experiment")
EXPERIMENT_META = ("group", "label")  # how the report shows an experiment


@dataclass(frozen=True)
class Run:
    """One evaluated Phi: `experiment` on `base`'s predictions for `dataset`, trained with `seed`.

    For a transfer run, Phi comes from the run (dataset, trained_on_base, trained_experiment, seed);
    otherwise trained_on_base == base and trained_experiment == experiment. `seed` is None when
    the config has no `seeds:` list (each experiment then trains with its own train.seed).
    """

    dataset: str
    base: str
    experiment: str
    trained_on_base: str
    trained_experiment: str
    seed: int | None = None

    @property
    def is_transfer(self) -> bool:
        return self.trained_on_base != self.base


class Study:
    """A validated workflow config; built by `load_study`.

    `repository` is the folder relative to which results_root and shared_root are read (the
    workflow's; None: the working directory). A path inside the working directory is kept
    relative to it, so that outputs read `results/<run>/...` when Snakemake runs in the checkout.
    """

    def __init__(self, config: dict, repository: str | os.PathLike | None = None):
        self.run_name: str = config["run_name"]
        self.results_root = output_root(config.get("results_root") or RESULTS_ROOT, repository)
        shared = config.get("shared_root")
        self.shared_root = output_root(shared, repository) if shared else None
        # None: each step's own device setting (default auto); else the device of every step that sets none
        self.device: str | None = config.get("device")
        self.data_root = Path(config.get("data_root") or "data/the_well")
        # a config without datasets has no IRNO study (e.g. the ROMA study alone)
        self.datasets: dict[str, dict] = config.get("datasets") or {}
        self.bases: dict[str, dict] = config.get("bases") or {}
        # label and group only shape the report; the rest defines what is trained and evaluated
        specs = {name: dict(spec or {}) for name, spec in (config.get("experiments") or {}).items()}
        self.experiment_meta = {
            name: {k: spec.pop(k) for k in EXPERIMENT_META if k in spec} for name, spec in specs.items()
        }
        self.experiments: dict[str, dict] = specs
        phi = dict(config.get("phi") or {})
        self.phi_by_base: dict[str, dict] = phi.pop("by_base", None) or {}
        self.phi_defaults: dict = phi
        # None: one training per run with the experiment's own train.seed (and no seed level in paths)
        self.seeds: list[int] | None = config.get("seeds")
        self.evaluate: dict = config.get("evaluate") or {}
        self._roma: dict | None = config.get("roma")
        self.ablation: str = config.get("ablation") or ""
        self.report: dict = config.get("report") or {}
        selected = config.get("runs") or {}
        self.selected_datasets = _selection(selected, "datasets", self.datasets)
        self.selected_bases = _selection(selected, "bases", self.bases)
        self.selected_experiments = _selection(selected, "experiments", self.experiments)

        self._simulate = {d: self._resolve_simulation(d) for d in self.datasets}
        self._base = {(d, b): self._resolve_base(d, b) for d in self.datasets for b in self.bases}
        # What determines a dataset's prepared data and a base's model and caches: the names of
        # their folders under shared_root.
        self._data_key = {d: self._data_identity(d) for d in self.datasets}
        self._base_key = {
            (d, b): stable_hash({"data": self._data_key[d], "base": self._base[(d, b)]}, 8)
            for d in self.datasets
            for b in self.bases
        }
        _validated(PhiConfig, self.phi_defaults, "phi")
        self._check_by_base()
        self._check_seeds()
        self._phi = {
            (e, b): self._resolve_phi(e, b) for e in self.experiments if not self.is_transfer(e) for b in self.bases
        }
        for e in self.experiments:
            if self.is_transfer(e):
                self._check_transfer(e)
        self.evaluate = self._with_device(self.evaluate, ())
        _validated(EvalConfig, self.evaluate, "evaluate")
        self.runs: list[Run] = [r for e in self.selected_experiments for r in self.runs_of(e)]
        if self.ablation and self.ablation not in self.experiments:
            raise IrnoError(
                f"config key 'ablation': {self.ablation!r} is not an experiment ({', '.join(self.experiments)})"
            )
        self.main_experiment = self._main_experiment() if self.has_irno else ""
        self._check_report()

    def roma_section(self) -> dict | None:
        """The config's roma: section (None without one), with the top-level device as the device of
        its trainings and graph encodings where they set none."""
        if self._roma is None or self.device is None:
            return self._roma
        section = self._with_device(self._roma, ("train",))
        datasets = {
            name: self._with_device(spec or {}, ("encodings",))
            for name, spec in (section.get("datasets") or {}).items()
        }
        return {**section, "datasets": datasets}

    @property
    def has_irno(self) -> bool:
        """Whether the config has an IRNO study (datasets, bases, experiments); else it is ROMA's alone."""
        return bool(self.datasets)

    # ------------------------------------------------------------------ where things live

    @property
    def results_dir(self) -> Path:
        return self.results_root / self.run_name

    @property
    def data_home(self) -> Path:
        """The folder holding data/ (prepared datasets) and base/ (base operators and caches)."""
        return self.shared_root or self.results_dir

    def data_id(self, dataset: str) -> str:
        """The folder name of a dataset's data under data_home/data/: its name, or under shared_root
        its name and the hash of what determines it."""
        return f"{dataset}-{self._data_key[dataset]}" if self.shared_root else dataset

    def base_id(self, dataset: str, base: str) -> str:
        """The folder name of a base under data_home/base/<data id>/, like `data_id`."""
        return f"{base}-{self._base_key[(dataset, base)]}" if self.shared_root else base

    def data_dir(self, dataset: str) -> Path:
        return self.data_home / "data" / self.data_id(dataset)

    def base_dir(self, dataset: str, base: str) -> Path:
        return self.data_home / "base" / self.data_id(dataset) / self.base_id(dataset, base)

    @property
    def data_ids(self) -> dict[str, str]:
        """Data folder name -> dataset, for every selected dataset."""
        return {self.data_id(d): d for d in self.selected_datasets}

    @property
    def base_ids(self) -> dict[tuple[str, str], tuple[str, str]]:
        """(data id, base id) -> (dataset, base), for every selected dataset and base."""
        return {
            (self.data_id(d), self.base_id(d, b)): (d, b) for d in self.selected_datasets for b in self.selected_bases
        }

    def well_root(self, dataset: str) -> Path:
        """Root of `dataset` in The Well's layout (<root>/datasets/<dataset>/...).

        Downloads go to the configured data_root; a local copy is read where it is (its `path`);
        simulations are written into the dataset's own data folder, so that a re-simulation can
        never overwrite downloaded data and differently simulated data never share a folder.
        """
        spec = self.datasets[dataset]
        if spec["source"] == "simulate":
            return self.data_dir(dataset) / "well"
        if spec["source"] == "local":
            return Path(spec["path"])
        return self.data_root

    def datasets_from(self, source: str) -> list[str]:
        return [d for d in self.selected_datasets if self.datasets[d]["source"] == source]

    def data_ids_from(self, source: str) -> list[str]:
        """The data folder names of the selected datasets with this source."""
        return [self.data_id(d) for d in self.datasets_from(source)]

    def base_ids_from(self, source: str) -> list[str]:
        """The base folder names of the selected bases with this source, on every selected dataset."""
        return [self.base_id(d, b) for d in self.selected_datasets for b in self.bases_from(source)]

    def bases_from(self, source: str) -> list[str]:
        return [b for b in self.selected_bases if self.bases[b]["source"] == source]

    @property
    def run_seeds(self) -> list[int | None]:
        """The seed of each repetition of a run: the config's seeds, or [None] (the experiment's own seed)."""
        return list(self.seeds) if self.seeds else [None]

    @property
    def multi_seed(self) -> bool:
        """Several seeds: run and evaluation folders gain a seed level (seed_<n>); one seed keeps the plain layout."""
        return len(self.seeds or ()) > 1

    def is_transfer(self, experiment: str) -> bool:
        return "transfer_from" in self.experiments[experiment]

    @property
    def trained_experiments(self) -> list[str]:
        return [e for e in self.experiments if not self.is_transfer(e)]

    def run(self, dataset: str, base: str, experiment: str, seed: int | None = None) -> Run:
        spec = self.experiments[experiment]
        if self.is_transfer(experiment):
            source = spec.get("transfer_experiment", "irno")
            return Run(dataset, base, experiment, spec["transfer_from"], source, seed)
        return Run(dataset, base, experiment, base, experiment, seed)

    def runs_of(self, experiment: str) -> list[Run]:
        """Every run of one experiment over the selected datasets and bases and every seed."""
        return [
            self.run(d, b, experiment, seed)
            for d in self.selected_datasets
            for b in self.selected_bases
            if not (self.is_transfer(experiment) and b == self.experiments[experiment]["transfer_from"])
            for seed in self.run_seeds
        ]

    # ------------------------------------------------------------------ resolved settings

    def simulate_settings(self, dataset: str) -> dict:
        return self._simulate[dataset]

    def base_settings(self, dataset: str, base: str) -> dict:
        return self._base[(dataset, base)]

    def phi_settings(self, experiment: str, base: str, seed: int | None = None) -> dict:
        """Phi's settings for `experiment` on `base`: phi defaults, then phi.by_base.<base>, then
        the experiment's overrides; with a seed, train.seed is that seed."""
        settings = self._phi[(experiment, base)]
        if seed is None:
            return settings
        return deep_merge(settings, {"train": {"seed": seed}})

    def eval_settings(self) -> dict:
        return self.evaluate

    def report_plan(self) -> dict:
        """The report plan (irno.config.ReportPlan): which runs the tables and figures show, the
        experiments' ablation groups and labels, the K and alpha sweeps and the seeds.

        The group of an experiment is its `group` key, else "transfer" for a transfer, "full
        method" for the main experiment and its own name for any other. The sweeps are
        `report.sweeps` where the config sets them, else, per key (K, alpha), every selected
        experiment that overrides nothing but train.<key>.
        """
        main = self.main_experiment
        experiments = []
        for name in self.selected_experiments:
            default_group = "transfer" if self.is_transfer(name) else "full method" if name == main else name
            meta = self.experiment_meta[name]
            experiments.append(
                {"name": name, "group": meta.get("group", default_group), "label": meta.get("label", "")}
            )
        return {
            "run_name": self.run_name,
            "datasets": self.selected_datasets,
            "bases": self.selected_bases,
            "seeds": list(self.seeds) if self.multi_seed else [],
            "main_experiment": main,
            "experiments": experiments,
            "band_experiments": [e for e in self.band_experiments if e in self.selected_experiments],
            "sweeps": self.sweeps,
            # when the selection leaves them out, the report takes the first selected ones
            "figure_dataset": _if_in(self.report.get("figure_dataset", ""), self.selected_datasets),
            "figure_base": _if_in(self.report.get("figure_base", ""), self.selected_bases),
            "simulated": self.datasets_from("simulate"),
            "reported_names": {b: self.bases[b]["model_class"] for b in self.selected_bases},
        }

    @property
    def band_experiments(self) -> list[str]:
        """`report.band_experiments`, else the main experiment and, where defined, no_spectral."""
        configured = self.report.get("band_experiments")
        if configured is not None:
            return list(configured)
        return [self.main_experiment] + [e for e in ("no_spectral",) if e in self.experiments]

    @property
    def sweeps(self) -> dict[str, list[str]]:
        """K / alpha -> the selected experiments of that sweep (see `plan`)."""
        configured = self.report.get("sweeps")
        if configured is not None:
            return {key: [e for e in names if e in self.selected_experiments] for key, names in configured.items()}
        sweeps = {}
        for key in SWEEP_KEYS:
            members = [e for e in self.selected_experiments if list(flatten(self.experiments[e])) == [f"train.{key}"]]
            if members:
                sweeps[key] = members
        return sweeps

    # ------------------------------------------------------------------ validation

    def _with_device(self, settings: dict, at: tuple[str, ...]) -> dict:
        """`settings` with the top-level device set at key path `at` (e.g. ("train",)), where the
        config sets a device and these settings set none of their own."""
        if self.device is None:
            return settings
        holder = settings
        for key in at:
            holder = holder.get(key) or {}
        if "device" in holder:
            return settings
        return deep_merge(settings, _nested(at, {"device": self.device}))

    def _data_identity(self, dataset: str) -> str:
        """A hash of what determines a dataset's files and prepared stores: its source and where the
        files are read from (downloads and local copies) or how they are made (simulations)."""
        spec = self.datasets[dataset]
        source = spec["source"]
        if source == "simulate":
            origin = self._simulate[dataset]
        else:
            origin = str((Path(spec["path"]) if source == "local" else self.data_root).resolve())
        return stable_hash({"dataset": dataset, "source": source, "origin": origin}, 8)

    def _resolve_simulation(self, dataset: str) -> dict:
        spec = self.datasets[dataset]
        where = f"datasets.{dataset}"
        if spec["source"] == "local" and not spec.get("path"):
            raise IrnoError(
                f"config key '{where}.path': a dataset with source: local needs the folder that holds "
                f"datasets/{dataset}/ (an existing copy of The Well, read in place)"
            )
        for key in ("path", "complete"):
            if key in spec and spec["source"] != "local":
                raise IrnoError(f"config key '{where}.{key}': only a dataset with source: local takes it")
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
        settings = self._with_device(deep_merge(spec, override), ())
        if isinstance(settings.get("pretrained"), str):
            settings["pretrained"] = settings["pretrained"].replace("{dataset}", dataset)
        try:
            _validated(BaseConfig, settings, f"bases.{base}")
        except IrnoError as e:
            raise IrnoError(f"{e} [bases.{base} with by_dataset.{dataset}]" if override else str(e)) from None
        return settings

    def _resolve_phi(self, experiment: str, base: str) -> dict:
        overrides = self.experiments[experiment]
        stray = [k for k in TRANSFER_KEYS if k in overrides]
        if stray:
            raise IrnoError(
                f"config key 'experiments.{experiment}.{stray[0]}': only a transfer experiment (with transfer_from) "
                "takes it"
            )
        by_base = self.phi_by_base.get(base) or {}
        settings = self._with_device(deep_merge(deep_merge(self.phi_defaults, by_base), overrides), ("train",))
        where = f"experiments.{experiment}" + (f" on base {base} (phi.by_base.{base})" if by_base else "")
        _validated(PhiConfig, settings, where)
        return settings

    def _check_by_base(self) -> None:
        for base, overrides in self.phi_by_base.items():
            if base not in self.bases:
                raise IrnoError(
                    f"config key 'phi.by_base.{base}': {base!r} is not one of the bases ({', '.join(self.bases)})"
                )
            _validated(PhiConfig, deep_merge(self.phi_defaults, overrides), f"phi.by_base.{base}")

    def _check_seeds(self) -> None:
        """With a `seeds:` list no other place may set train.seed: it would be silently overridden."""
        if not self.seeds:
            return
        places = {"phi": self.phi_defaults}
        places |= {f"phi.by_base.{b}": o for b, o in self.phi_by_base.items()}
        places |= {f"experiments.{e}": o for e, o in self.experiments.items()}
        for where, settings in places.items():
            if "seed" in ((settings or {}).get("train") or {}):
                raise IrnoError(
                    f"config key '{where}.train.seed': the top-level `seeds:` ({self.seeds}) sets every run's "
                    "training seed; remove this key (or the `seeds:` list)"
                )

    def _main_experiment(self) -> str:
        """`report.main_experiment`, else irno when it is a selected trained experiment, else the first such."""
        trained = [e for e in self.selected_experiments if not self.is_transfer(e)]
        main = self.report.get("main_experiment") or ("irno" if "irno" in trained else trained[0] if trained else "")
        if main not in trained:
            raise IrnoError(
                f"config key 'report.main_experiment': {main!r} is not a selected, trained experiment "
                f"({', '.join(trained) or 'none is selected'})"
            )
        return main

    def _check_report(self) -> None:
        for key, names in (("figure_dataset", self.datasets), ("figure_base", self.bases)):
            value = self.report.get(key, "")
            if value and value not in names:
                raise IrnoError(f"config key 'report.{key}': {value!r} is not one of them ({', '.join(names)})")
        for i, name in enumerate(self.report.get("band_experiments") or []):
            if name not in self.experiments:
                raise IrnoError(f"config key 'report.band_experiments[{i}]': {name!r} is not an experiment")
        for key, names in (self.report.get("sweeps") or {}).items():
            for i, name in enumerate(names):
                if name not in self.experiments or self.is_transfer(name):
                    raise IrnoError(
                        f"config key 'report.sweeps.{key}[{i}]': {name!r} is not a trained experiment "
                        f"({', '.join(self.trained_experiments)})"
                    )

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


REPOSITORY = Path(__file__).resolve().parents[1]  # the checkout (the package is installed editable)
SCHEMA = REPOSITORY / "workflow" / "schemas" / "config.schema.yaml"


def read_config(paths: list[str | os.PathLike], overrides: dict | None = None) -> dict:
    """A workflow config as the Snakefile sees it, outside Snakemake: the config files merged in order
    (later keys win, mappings merged), `overrides` on top (as --config), checked against the
    workflow's schema with its defaults filled in. Errors name the file and the key."""
    import jsonschema

    config: dict = {}
    for path in paths:
        data = read_yaml(path)
        if not isinstance(data, dict):
            raise IrnoError(f"{path}: not a mapping of config keys")
        config = deep_merge(config, data)
    config = deep_merge(config, overrides or {})
    if not SCHEMA.is_file():
        raise IrnoError(f"{SCHEMA}: the workflow's config schema is missing (run from a checkout of the workflow)")
    schema = read_yaml(SCHEMA)
    validator = _defaults_filling(jsonschema.validators.validator_for(schema))(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        key = ".".join(map(str, error.absolute_path))
        sources = ", ".join(map(str, paths)) or "--config"
        raise IrnoError(
            f"invalid config ({sources}): " + (f"config key '{key}': {error.message}" if key else error.message)
        )
    return config


def _defaults_filling(validator_class):
    """A jsonschema validator class that also sets every property's default where it is missing, as
    snakemake.utils.validate(set_default=True) does for the workflow."""
    import jsonschema

    validate_properties = validator_class.VALIDATORS["properties"]

    def properties(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": properties})


def load_study(config: dict, repository: str | os.PathLike | None = None) -> Study:
    """Validate a (schema-checked) workflow config and resolve it; IrnoError names the bad key.

    `repository`: the folder relative paths of results_root and shared_root start from (the
    workflow's folder; None: the working directory)."""
    return Study(config, repository)


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


def output_root(path: str | os.PathLike, repository: str | os.PathLike | None) -> Path:
    """A configured output folder: absolute as given; relative to `repository` (None: the working
    directory); and relative to the working directory when it lies inside it."""
    path = Path(os.path.abspath(Path(repository or ".") / Path(path).expanduser()))
    try:
        return path.relative_to(os.getcwd())
    except ValueError:
        return path


def _nested(keys: tuple[str, ...], leaf: dict) -> dict:
    """{k1: {k2: ... leaf}} for keys (k1, k2, ...)."""
    for key in reversed(keys):
        leaf = {key: leaf}
    return leaf


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
