"""Config validation, path templates, resources and input functions shared by every rule; those
of the ROMA study (workflow/rules/roma.smk) at the end.

Parse time stays small (the paper's full DAG dry-runs in seconds): only irno.study, irno.config
and irno.roma.study are imported here, never torch, pandas or the_well.
"""

import json
import os
import re
import sys
from pathlib import Path

import jsonschema

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

from irno.cluster import SiteSettings, held_bytes, job_resources
from irno.config import seed_dir
from irno.report.names import FIGURE_NAMES, TABLE_NAMES
from irno.roma.settings import study_from_dict
from irno.roma.study import expand_study, reads_encodings, report_outputs
from irno.settings import to_dict
from irno.study import SPLITS, load_study
from irno import IrnoError

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
    STUDY = load_study(config, workflow.basedir)
except IrnoError as e:
    raise invalid_config(e) from None

# Every output lands under RESULTS (<results_root>/<run_name>); the prepared data and the base
# operators under DATA_HOME, which is RESULTS or, with shared_root, a folder shared by run names. A
# dataset's and a base's folders are named by their ids (irno.study: the name, or under
# shared_root the name and a hash of what determines it).
RESULTS = str(STUDY.results_dir)
DATA_HOME = str(STUDY.data_home)
EVAL_ROOT = f"{RESULTS}/eval"


# The folders of the data, base and Phi rules. Called without arguments each gives the rules'
# wildcard pattern; with names, one job's folder.
def data_dir(data_id="{data_id}"):
    return f"{DATA_HOME}/data/{data_id}"


def store_dir(split="{split}", data_id="{data_id}"):
    """A dataset's prepared store of one split."""
    return f"{data_dir(data_id)}/prepared/{split}"


def base_dir(data_id="{data_id}", base_id="{base_id}"):
    return f"{DATA_HOME}/base/{data_id}/{base_id}"


def cache_dir(split="{split}", data_id="{data_id}", base_id="{base_id}"):
    """A base's cached predictions of one split of a dataset."""
    return f"{base_dir(data_id, base_id)}/cache/{split}"


def run_leaf(experiment="{experiment}", seed="{seed}"):
    """With several seeds every run and evaluation has a folder per seed (irno.study, "Seeds")."""
    return f"{experiment}/{seed_dir(seed)}" if STUDY.multi_seed else experiment


def run_dir(
    dataset="{dataset}", base="{base}", experiment="{experiment}", seed="{seed}"
):
    """One training of Phi."""
    return f"{RESULTS}/runs/{dataset}/{base}/{run_leaf(experiment, seed)}"


def eval_dir(
    dataset="{dataset}", base="{base}", experiment="{experiment}", seed="{seed}"
):
    return f"{EVAL_ROOT}/{dataset}/{base}/{run_leaf(experiment, seed)}"


DATA, STORE, BASE, CACHE = data_dir(), store_dir(), base_dir(), cache_dir()
RUNDIR, EVAL = run_dir(), eval_dir()
# a run's log and benchmark file name
RUN_TAG = (
    f"{{dataset}}_{{base}}_{{experiment}}_{seed_dir('{seed}')}"
    if STUDY.multi_seed
    else "{dataset}_{base}_{experiment}"
)
LOGS = f"{RESULTS}/logs"
BENCHMARKS = f"{RESULTS}/benchmarks"
ENV = "../../envs/irno.yaml"


def one_of(names):
    """A wildcard constraint matching exactly these names (nothing if there are none)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


wildcard_constraints:
    dataset=one_of(STUDY.datasets),
    base=one_of(STUDY.bases),
    data_id=one_of(STUDY.data_ids),
    base_id=one_of({base_id for _, base_id in STUDY.base_ids}),
    experiment=one_of(STUDY.experiments),
    split=one_of(SPLITS),
    seed=one_of(map(str, STUDY.seeds or ())),


def dataset_of(wildcards):
    """The dataset whose data folder a job of the data or base rules builds."""
    return STUDY.data_ids[wildcards.data_id]


def base_of(wildcards):
    """(dataset, base) of a job of the base rules."""
    return STUDY.base_ids[(wildcards.data_id, wildcards.base_id)]


def store(dataset, split):
    return store_dir(split, STUDY.data_id(dataset))


def cache(dataset, base, split):
    return cache_dir(split, STUDY.data_id(dataset), STUDY.base_id(dataset, base))


def run_inputs(wildcards):
    """What training Phi reads: the train and valid stores and the base's caches of them."""
    d, b = wildcards.dataset, wildcards.base
    return {
        "train": store(d, "train"),
        "train_cache": cache(d, b, "train"),
        "valid": store(d, "valid"),
        "valid_cache": cache(d, b, "valid"),
    }


def test_inputs(wildcards):
    """What evaluating Phi reads: the test store and the base's cache of it."""
    return {
        "store": store(wildcards.dataset, "test"),
        "cache": cache(wildcards.dataset, wildcards.base, "test"),
    }


# Resources. Every rule that is a cluster job takes them from irno.cluster (its JOBS table, which
# irno estimate reads too): runtime and memory per attempt (memory from what the job holds, the
# data's sizes), GPUs, and the site's SLURM settings from IRNO_SLURM_* variables, read here once
# (docs/slurm.md). The localrules (settings, downloads, report) run beside Snakemake and state
# none. Without the SLURM executor the site settings do nothing and the gpu resource limits
# nothing: a plain `snakemake --cores 2` runs on a machine without GPU.
#
# One thread per job (two for the simulator), so a workstation runs as many jobs side by side
# as it has cores (--cores) and no job oversubscribes them (torch's OpenMP threads on a busy
# machine slow to a crawl). On a cluster, GPU jobs get IRNO_SLURM_CPUS_PER_GPU cores per GPU
# (cpus_per_task), which the `irno` commands use (irno.cluster.use_job_cpus).
try:
    SITE = SiteSettings.from_environ(os.environ)
except IrnoError as e:
    raise WorkflowError(f"SLURM site settings: {e}") from None


def job_names(wildcards):
    """A job's dataset, base and ROMA names, as irno.cluster.held_bytes takes them."""
    names = dict(wildcards.items())
    if "data_id" in names:
        names["dataset"] = dataset_of(wildcards)
    if "base_id" in names:
        names["dataset"], names["base"] = base_of(wildcards)
    return names


def cluster_resources(name):
    """The resources of the cluster jobs of `name` (irno.cluster.job_resources), the rule's name:
    runtime and memory at each attempt, GPUs, partition and the site's other settings.
    """
    return job_resources(
        name,
        lambda wildcards: held_bytes(name, STUDY, ROMA_STUDY, job_names(wildcards)),
        SITE,
    )


def base_checks():
    return [
        f"{base_dir(data_id, base_id)}/base_check.json"
        for data_id, base_id in STUDY.base_ids
    ]


def evaluations(runs):
    return [
        f"{eval_dir(r.dataset, r.base, r.experiment, r.seed)}/metrics.json"
        for r in runs
    ]


def run_seed(wildcards):
    """The training seed of a job's run: its seed folder's, the single configured one, or None
    (the experiment's own train.seed)."""
    if STUDY.multi_seed:
        return int(wildcards.seed)
    return STUDY.seeds[0] if STUDY.seeds else None


def trained_checkpoint(wildcards):
    """Phi for an evaluation: the run's own, or for a transfer the source base's (same seed)."""
    run = STUDY.run(
        wildcards.dataset, wildcards.base, wildcards.experiment, run_seed(wildcards)
    )
    trained = run_dir(
        run.dataset, run.trained_on_base, run.trained_experiment, run.seed
    )
    return f"{trained}/checkpoint.pt"


def irno_outputs():
    """What the IRNO study makes (nothing for a config without one): every base check, every
    run's evaluation, the tables and the figures."""
    if not STUDY.has_irno:
        return []
    return [
        *base_checks(),
        *evaluations(STUDY.runs),
        *rules.tables.output,
        *rules.figures.output,
    ]


def irno_target(wildcards):
    """The target `irno`: the IRNO study alone."""
    if not STUDY.has_irno:
        raise invalid_config(
            "the target 'irno' needs an IRNO study (datasets:, bases:, experiments:); this config "
            "has the ROMA study only (target 'roma')"
        )
    return irno_outputs()


def ablation_evaluations(wildcards):
    if not STUDY.ablation:
        raise invalid_config(
            "the target 'ablation' needs the experiment to build: --config ablation=<name>"
        )
    return evaluations(STUDY.runs_of(STUDY.ablation))


# ----------------------------------------------------------------------------- the ROMA study
# Optional: without a roma: section ROMA_STUDY is None, the ROMA rules match nothing and `all`
# gets no ROMA output.


def expand_roma_study(section):
    """The expanded ROMA study, None without a roma: section; a bad key stops the run here, named."""
    if section is None:
        return None
    try:
        return expand_study(study_from_dict(section))
    except IrnoError as e:
        raise invalid_config(e) from None


ROMA_STUDY = expand_roma_study(STUDY.roma_section())
ROMA_DATASETS = ROMA_STUDY.datasets if ROMA_STUDY else {}
ROMA_RUNS = ROMA_STUDY.runs if ROMA_STUDY else {}
ROMA = f"{RESULTS}/roma"
ROMA_DATA = f"{ROMA}/data/{{roma_dataset}}"
ROMA_RUNDIR = f"{ROMA}/runs/{{roma_run}}"


def roma_eval_dir(roma_run="{roma_run}"):
    return f"{ROMA}/eval/{roma_run}"


ROMA_EVAL = roma_eval_dir()


wildcard_constraints:
    roma_dataset=one_of(ROMA_DATASETS),
    roma_run=one_of(ROMA_RUNS),


def roma_dataset(wildcards):
    """The simulated dataset a run trains and is evaluated on."""
    return f"{ROMA}/data/{ROMA_RUNS[wildcards.roma_run]['dataset']}/dataset.h5"


def roma_encodings(wildcards):
    """The graph encodings a run reads: {"encodings": path}, or nothing (baselines, no encodings)."""
    run = ROMA_RUNS[wildcards.roma_run]
    if not reads_encodings(run):
        return {}
    return {"encodings": f"{ROMA}/data/{run['dataset']}/encodings/encodings.h5"}


def roma_evaluations():
    return [roma_eval_dir(key) for key in ROMA_RUNS]


def roma_attention_maps():
    """The attention maps the figure shows: ROMA's data_noise runs (one per graph size and noise),
    or, without that experiment, every ROMA run."""
    roma = [key for key, run in ROMA_RUNS.items() if run["model"]["kind"] == "roma"]
    shown = (
        {e["run"] for e in ROMA_STUDY.experiments.get("data_noise", [])}
        if ROMA_STUDY
        else set()
    )
    keys = [key for key in roma if key in shown] or roma
    return [f"{roma_eval_dir(key)}/attention.npz" for key in keys]


def roma_report_outputs(folder):
    """What roma_report writes into `folder` (tables or figures; irno.roma.study.report_outputs).
    Tables (.csv) and figures (.png) go into the HTML report, each with its caption."""
    outputs = []
    for name in report_outputs(ROMA_STUDY)[folder] if ROMA_STUDY else ():
        path = f"{ROMA}/{folder}/{name}"
        stem, ext = os.path.splitext(name)
        if ext in (".csv", ".png"):
            path = report(
                path,
                caption=f"../report/roma_{stem}.rst",
                category="ROMA",
                subcategory=folder.capitalize(),
            )
        outputs.append(path)
    return outputs


def roma_outputs(wildcards):
    """The target `roma`: the study's tables and figures (which of them: the experiments')."""
    if ROMA_STUDY is None:
        raise invalid_config(
            "the target 'roma' needs a roma: section (the ROMA study, docs/roma.md)"
        )
    return rules.roma_report.output


# ----------------------------------------------------------------------------- settings files
# Every kind of settings file of both studies; settings.smk makes one rule of each.


class SettingsFile:
    """Where one kind of settings file (workflow/rules/settings.smk) lives, its log's name
    (None: a single file) and the settings of a job (wildcards -> mapping)."""

    def __init__(self, path, log_name, settings_of, constraints=None):
        self.path, self.log_name, self.settings_of = path, log_name, settings_of
        self.constraints = constraints or {}

    def log(self, folder, kind, extension):
        """The job's log (or benchmark) file in `folder`: one per file of this kind."""
        name = (
            f"{kind}_settings/{self.log_name}" if self.log_name else f"{kind}_settings"
        )
        return f"{folder}/{name}.{extension}"


SETTINGS_FILES = {
    "simulate": SettingsFile(
        f"{DATA}/settings.yaml",
        "{data_id}",
        lambda wc: STUDY.simulate_settings(dataset_of(wc)),
    ),
    "base": SettingsFile(
        f"{BASE}/settings.yaml",
        "{data_id}_{base_id}",
        lambda wc: STUDY.base_settings(*base_of(wc)),
    ),
    "phi": SettingsFile(
        f"{RUNDIR}/settings.yaml",
        RUN_TAG,
        lambda wc: STUDY.phi_settings(wc.experiment, wc.base, run_seed(wc)),
        {"experiment": one_of(STUDY.trained_experiments)},
    ),
    "eval": SettingsFile(
        f"{EVAL_ROOT}/settings.yaml", None, lambda wc: STUDY.eval_settings()
    ),
    "report_plan": SettingsFile(
        f"{RESULTS}/report_plan.yaml", None, lambda wc: STUDY.report_plan()
    ),
    # the roma: section complete with defaults, for roma_report: rewritten on any edit of it
    "roma_study": SettingsFile(
        f"{ROMA}/study.yaml",
        None,
        lambda wc: to_dict(study_from_dict(STUDY.roma_section())),
    ),
    "roma_data": SettingsFile(
        f"{ROMA_DATA}/settings.yaml",
        "{roma_dataset}",
        lambda wc: ROMA_STUDY.datasets[wc.roma_dataset],
    ),
    "roma_encodings": SettingsFile(
        f"{ROMA_DATA}/encodings/settings.yaml",
        "{roma_dataset}",
        lambda wc: ROMA_STUDY.encodings[wc.roma_dataset],
    ),
    "roma_run": SettingsFile(
        f"{ROMA_RUNDIR}/settings.yaml",
        "{roma_run}",
        lambda wc: ROMA_STUDY.runs[wc.roma_run],
    ),
}
