"""Config validation, path templates, resources and input functions shared by every rule.

Parse time stays small (the paper's full DAG dry-runs in seconds): only irno.study and
irno.config are imported here, never torch or the_well.
"""

import json
import os
import re
import sys
from pathlib import Path

import jsonschema

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

from irno.study import SPLITS, load_study
from irno.utils import IrnoError

min_version("9.0")

# Rules call the `irno` command installed beside this Snakemake, also when its virtualenv is
# not activated. (A conda environment, --sdm conda, still puts its own first on PATH.)
os.environ.update(
    PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
)


def invalid_config(message):
    sources = ", ".join(map(str, workflow.configfiles)) or "--config"
    return WorkflowError(f"invalid config ({sources}): {message}")


# The schema checks the structure (and fills its defaults), irno.study the settings each step
# gets; either stops the run here, before any job starts, naming the key at fault.
try:
    validate(config, "../schemas/config.schema.yaml")
except WorkflowError as e:
    schema_error = e.__context__  # the jsonschema.ValidationError that validate() wraps
    if not isinstance(schema_error, jsonschema.ValidationError):
        raise
    key = ".".join(map(str, schema_error.absolute_path))
    raise invalid_config(
        f"config key '{key}': {schema_error.message}" if key else schema_error.message
    ) from None
try:
    STUDY = load_study(config)
except IrnoError as e:
    raise invalid_config(e) from None

RUN = str(STUDY.run_dir)
DATA = f"{RUN}/data/{{dataset}}"
STORE = f"{DATA}/prepared/{{split}}"
BASE = f"{RUN}/base/{{dataset}}/{{base}}"
CACHE = f"{BASE}/cache/{{split}}"
RUNDIR = f"{RUN}/runs/{{dataset}}/{{base}}/{{experiment}}"
EVAL = f"{RUN}/eval/{{dataset}}/{{base}}/{{experiment}}"
LOGS = f"{RUN}/logs"
BENCHMARKS = f"{RUN}/benchmarks"
ENV = "../../envs/irno.yaml"
# What `irno tables` and `irno figures` write (irno.report.tables.TABLE_NAMES and
# irno.report.figures.FIGURE_NAMES, not imported: pandas and matplotlib would slow every start)
TABLES = ("main", "ablations", "bands", "per_field")
FIGURES = (
    "spectral_error_ratio",
    "spectral_mse_per_step",
    "convergence",
    "energy_spectra",
    "fields",
)


def one_of(names):
    """A wildcard constraint matching exactly these names (nothing if there are none)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


wildcard_constraints:
    dataset=one_of(STUDY.datasets),
    base=one_of(STUDY.bases),
    experiment=one_of(STUDY.experiments),
    split=one_of(SPLITS),


def settings_json(settings):
    """Resolved settings as a parameter of a settings rule, so that editing them reruns exactly
    the jobs that read them (Snakemake's params rerun trigger). Always inside a lambda: a plain
    string parameter would have its "{...}" taken for wildcards."""
    return json.dumps(settings, sort_keys=True)


# One thread per job (two for the simulator), so a workstation runs as many jobs side by side
# as it has cores (--cores) and no job oversubscribes them (torch's OpenMP threads on a busy
# machine slow to a crawl). On a cluster, GPU jobs get their CPU cores from the profile
# (cpus_per_task); raise a rule's threads with --set-threads for CPU-only training.


def scaled(amount):
    """A resource that grows with each retry (a job killed for time or memory gets more)."""
    return lambda wildcards, attempt: amount * attempt


def base_checks():
    return expand(
        f"{BASE}/base_check.json",
        dataset=STUDY.selected_datasets,
        base=STUDY.selected_bases,
    )


def evaluations(runs):
    return [
        f"{EVAL}/metrics.json".format(
            dataset=r.dataset, base=r.base, experiment=r.experiment
        )
        for r in runs
    ]


def eval_root(evaluations):
    """results/<run>/eval, from its files <eval root>/<dataset>/<base>/<experiment>/metrics.json."""
    return Path(evaluations[0]).parents[3]


def trained_checkpoint(wildcards):
    """Phi for an evaluation: the run's own, or for a transfer the source base's."""
    run = STUDY.run(wildcards.dataset, wildcards.base, wildcards.experiment)
    return f"{RUNDIR}/checkpoint.pt".format(
        dataset=run.dataset, base=run.trained_on_base, experiment=run.trained_experiment
    )


def ablation_evaluations(wildcards):
    if not STUDY.ablation:
        raise invalid_config(
            "the target 'ablation' needs the experiment to build: --config ablation=<name>"
        )
    return evaluations(STUDY.runs_of(STUDY.ablation))
