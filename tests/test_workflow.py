"""The Snakemake workflow as users meet it: lint and format, the paper's full DAG, bad configs
stopped before any job, the test config end to end, the HTML report and the one-variant rerun;
the same for the ROMA study (the roma: section) beside IRNO.

Each test runs Snakemake in a temporary copy of the workflow (Snakefile, workflow/, config/,
envs/, profiles/: the workflow profile applies as for users), importing this checkout's `irno`,
so results never land in the repository.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from workflow_copy import ROOT, copy_workflow, snakemake

from irno.roma.settings import EXPERIMENTS as ROMA_EXPERIMENTS
from irno.roma.settings import study_from_dict
from irno.roma.study import expand_study, report_outputs
from irno.study import load_study

PAPER_EXPERIMENTS = 19


@pytest.fixture
def workflow_copy(tmp_path) -> Path:
    return copy_workflow(tmp_path)


def scheduled_jobs(dry_run_output: str) -> list[tuple[str, dict]]:
    """(rule, wildcards) of every job a dry run lists."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?(?:rule|checkpoint) \w+:)", dry_run_output):
        m = re.match(r"(?:local)?(?:rule|checkpoint) (\w+):", block)
        if not m:
            continue
        w = re.search(r"^\s+wildcards: (.*)$", block, re.M)
        wildcards = dict(kv.split("=", 1) for kv in w.group(1).split(", ")) if w else {}
        jobs.append((m.group(1), wildcards))
    return jobs


def job_counts(dry_run_output: str) -> dict[str, int]:
    table = dry_run_output.split("Job stats:", 1)[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m.group(1) != "total"}


def expanded_roma_of(config_name: str):
    return expanded_roma(yaml.safe_load((ROOT / "config" / config_name).read_text()))


def expanded_roma(config: dict):
    """The ROMA study of a config as the workflow expands it (with the config's top-level device)."""
    return expand_study(study_from_dict(load_study(config).roma_section()))


# ----------------------------------------------------------------------------- static checks


def test_lint_is_clean(workflow_copy):
    out = snakemake(workflow_copy, "--lint", "--configfile", "config/config.yaml")
    assert "Congratulations, your workflow is in a good condition!" in out.stdout + out.stderr


def test_snakefmt_is_clean():
    proc = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


def test_conda_env_matches_pyproject():
    # pyproject's [project] dependencies (no tomllib: Python 3.10 is supported)
    block = re.search(r"^dependencies = \[\n(.*?)^\]", (ROOT / "pyproject.toml").read_text(), re.M | re.S).group(1)
    dependencies = re.findall(r'^\s*"([^"]+)",', block, re.M)
    env = yaml.safe_load((ROOT / "envs" / "irno.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert dependencies and sorted(pip) == sorted(dependencies)
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert python == "python=3.11"
    assert (ROOT / "envs" / "irno.post-deploy.sh").read_text().count("pip install --no-deps -e .") == 1


def test_ci_installs_and_tests_as_the_readme_says():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    install = "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'"
    test = ".venv/bin/python -m pytest"
    assert install in readme and test in readme
    assert install in ci and test in ci
    assert os.access(ROOT / ".ci" / "run", os.X_OK)


@pytest.mark.slow
def test_the_slurm_docs_commands_run_as_written(workflow_copy, tmp_path):
    """Every `snakemake` command of docs/slurm.md, pasted after its set-up (the profile installed
    as `slurm` in a fresh HOME), as a dry run: the paper's jobs through the SLURM profile."""
    docs = (ROOT / "docs" / "slurm.md").read_text()
    commands = re.findall(r"^ {4,}((?:IRNO_\w+=\S+ )?snakemake [^#\n]*?)\s*(?:#.*)?$", docs, re.M)
    commands += re.findall(r"`((?:IRNO_\w+=\S+ )?snakemake [^`]*)`", docs)
    assert len(commands) >= 10, commands
    home = tmp_path / "home"
    (home / ".config" / "snakemake").mkdir(parents=True)
    (home / ".config" / "snakemake" / "slurm").symlink_to(workflow_copy / "profiles" / "slurm")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IRNO_SLURM_", "XDG_"))}
    env.update(HOME=str(home), USER="researcher", PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    for command in sorted(set(commands)):
        run = subprocess.run(
            ["bash", "-c", f"{command} -n"], cwd=workflow_copy, env=env, capture_output=True, text=True, timeout=300
        )
        output = run.stdout + run.stderr
        if "profiles/redraw" in command:  # nothing is evaluated yet: named, not built
            # which of the two report rules Snakemake names first depends on Python's hash seed
            named = re.search(r"Missing input files for rule (tables|figures)\b", output)
            assert run.returncode != 0 and named, command
            assert "rule train_phi:" not in output, command
            continue
        assert run.returncode == 0, f"{command}:\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
        if "--unlock" in command:
            continue
        if "config/roma.yaml" in command:
            assert "results/paper_roma/roma/runs/" in output and "train_phi" not in output, command
            continue
        # the IRNO paper run's trainings, with the resources of irno.cluster
        assert "paper/runs/active_matter/" in output, command
        if "train_phi" in output and "runtime=2880" not in command:
            assert re.search(r"runtime=1440, .*\bgpu=\d", output), command
        if "train_phi:runtime=2880" in command:
            assert "runtime=2880" in output, command
        if command.startswith("IRNO_SLURM_TRAIN_GPUS=4 "):
            assert "--nproc 4 > " in output, command


# ----------------------------------------------------------------------------- the DAG


def test_paper_dry_run_builds_the_full_dag(workflow_copy):
    start = time.perf_counter()
    out = snakemake(workflow_copy, "-n", "all", "--configfile", "config/config.yaml")
    seconds = time.perf_counter() - start
    counts = job_counts(out.stdout)
    trained = 2 * 2 * (PAPER_EXPERIMENTS - 1)  # datasets x bases x experiments, less transfer
    assert counts["download_dataset"] == 2 and counts["prepare_split"] == 2 * 3
    assert counts["fetch_base"] == counts["check_base"] == counts["base_settings"] == 2 * 2
    assert counts["cache_base_predictions"] == 2 * 2 * 3
    assert counts["phi_settings"] == counts["train_phi"] == trained
    assert counts["evaluate"] == trained + 2  # transfer: TFNO's Phi on FNO, per dataset
    assert counts["tables"] == counts["figures"] == 1
    assert "train_base" not in counts and "simulate_dataset" not in counts
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    for dataset in config["datasets"]:
        for base in config["bases"]:
            for experiment in config["experiments"]:
                if (experiment, base) != ("transfer", "TFNO"):
                    assert f"results/paper/eval/{dataset}/{base}/{experiment}/metrics.json" in out.stdout
    assert not [rule for rule in counts if rule.startswith("roma")]  # the IRNO paper run alone
    # parse time, contended machines included; benchmarks/workflow_parse.py measures it properly
    assert seconds < 60


def test_roma_paper_dry_run_builds_its_study_alone(workflow_copy):
    out = snakemake(workflow_copy, "-n", "all", "--configfile", "config/roma.yaml")
    counts = job_counts(out.stdout)
    # every dataset simulated (the Burgers-like one too), the graph encodings of those ROMA reads
    # them on, every run trained and evaluated, one report; nothing of IRNO
    expanded = expanded_roma_of("roma.yaml")
    assert counts["roma_simulate"] == len(expanded.datasets) == 4
    assert "results/paper_roma/roma/data/bd3m/dataset.h5" in out.stdout
    assert counts["roma_encode"] == len(expanded.encodings) == 3  # not the Burgers-like data: ROMA reads none there
    assert counts["roma_train"] == len(expanded.runs) == 35  # each scores its model too
    assert (
        sum(run["dataset"] == "bd3m" for run in expanded.runs.values()) == 4 + 3
    )  # its effective dynamics and scaling
    assert counts["roma_data_settings"] == len(expanded.datasets)
    assert counts["roma_encodings_settings"] == len(expanded.encodings)
    assert counts["roma_run_settings"] == len(expanded.runs)
    assert counts["roma_study_settings"] == counts["roma_report"] == counts["report"] == 1
    assert set(counts) == {"roma_data_settings", "roma_encodings_settings", "roma_run_settings", "roma_study_settings",
                           "roma_simulate", "roma_encode", "roma_train", "roma_report", "report", "all"}  # fmt: skip
    for key in expanded.runs:
        assert f"results/paper_roma/roma/eval/{key}" in out.stdout
    for name in report_outputs(expanded)["figures"]:
        assert f"results/paper_roma/roma/figures/{name}" in out.stdout


@pytest.mark.parametrize(
    ("config", "target", "runs"),
    [
        ("demo", "irno", {"train_phi", "evaluate", "tables", "figures"}),
        ("demo", "roma", {"roma_train", "roma_report"}),
        ("config", "irno", {"train_phi", "evaluate", "tables", "figures"}),
        ("roma", "roma", {"roma_train", "roma_report"}),
    ],
)
def test_each_study_has_its_target(workflow_copy, config, target, runs):
    counts = job_counts(snakemake(workflow_copy, "-n", target, "--configfile", f"config/{config}.yaml").stdout)
    assert runs <= set(counts) and "report" not in counts
    other = "roma" if target == "irno" else "train_phi"
    assert not [rule for rule in counts if rule.startswith(other)], counts


@pytest.mark.parametrize(("config", "target", "message"), [
    ("roma", "irno", "the target 'irno' needs an IRNO study"),
    ("config", "roma", "the target 'roma' needs a roma: section"),
])  # fmt: skip
def test_a_target_the_config_has_no_study_for_is_named(workflow_copy, config, target, message):
    out = snakemake(workflow_copy, "-n", target, "--configfile", f"config/{config}.yaml", check=False)
    assert out.returncode != 0 and message in out.stdout + out.stderr


def test_results_root_moves_every_output(workflow_copy, tmp_path_factory):
    root = tmp_path_factory.mktemp("scratch")  # outside the checkout
    for config in ("test", "config", "roma"):
        out = snakemake(workflow_copy, "-n", "-p", "all", "--configfile", f"config/{config}.yaml", "--config",
                        f"results_root={root}")  # fmt: skip
        stray = re.findall(r"(?<![\w.-])results/\S*", out.stdout)
        assert not stray, sorted(set(stray))[:10]
        assert f"{root}/" in out.stdout
    # relative: to the repository (the Snakefile's folder), wherever Snakemake starts
    out = snakemake(workflow_copy, "-n", "irno", "--configfile", "config/test.yaml", "--config", "results_root=out")
    assert "out/test/runs/active_matter/FNO/irno/checkpoint.pt" in out.stdout and "results/" not in out.stdout


def test_paper_dag_trains_phi_with_K_6_on_FNO_and_K_4_on_TFNO(workflow_copy):
    out = snakemake(workflow_copy, "-n", "-p", "all", "--configfile", "config/config.yaml")
    settings = {}
    for command in re.findall(r"irno write-settings --kind phi --json '(\{.*?\})' --out (\S+)", out.stdout):
        run = Path(command[1]).parent  # results/paper/runs/<dataset>/<base>/<experiment>
        settings[(run.parent.name, run.name)] = json.loads(command[0])["train"]
    K = {key: train["K"] for key, train in settings.items()}
    assert {K[("FNO", e)] for e in ("irno", "no_spectral", "alpha_0.5", "norm_batch")} == {6}
    assert {K[("TFNO", e)] for e in ("irno", "no_spectral", "alpha_0.5", "norm_batch")} == {4}
    assert K[("TFNO", "K_2")] == K[("FNO", "K_2")] == 2 and K[("TFNO", "K_8")] == 8  # an experiment's own K wins
    assert {train["seed"] for train in settings.values()} == {42}
    # the bases run in the forward their check decides, the caches in the one it wrote down
    assert re.search(r"irno base check .* --test \S+/prepared/test ", out.stdout)
    assert re.search(r"irno base cache .* --check \S+/base_check.json ", out.stdout)


@pytest.mark.parametrize("name", ["cpu_study", "cpu_study_bases"])
def test_cpu_study_dry_runs(workflow_copy, name):
    out = snakemake(workflow_copy, "-n", "all", "--configfile", f"config/{name}.yaml")
    study = yaml.safe_load((ROOT / "config" / f"{name}.yaml").read_text())
    selected = study.get("runs", {})  # `all` builds the selected bases and experiments only
    bases, experiments = selected.get("bases", study["bases"]), selected.get("experiments", study["experiments"])
    n_runs = len(bases) * len(experiments) * len(study["seeds"])
    counts = job_counts(out.stdout)
    assert counts["train_phi"] == counts["evaluate"] == n_runs and counts["train_base"] == len(bases)
    assert not [rule for rule in counts if rule.startswith("roma")]
    seeds = [f"/seed_{seed}" for seed in study["seeds"]] if len(study["seeds"]) > 1 else [""]
    for seed in seeds:  # one seed keeps the plain layout
        assert f"results/{name}/eval/active_matter/{list(bases)[0]}/irno{seed}/metrics.json" in out.stdout


def test_ablation_target_builds_one_experiment_only(workflow_copy):
    out = snakemake(workflow_copy, "-n", "ablation", "--configfile", "config/config.yaml", "--config", "ablation=K_4")
    jobs = scheduled_jobs(out.stdout)
    per_run = [(rule, w["experiment"]) for rule, w in jobs if "experiment" in w]
    assert sorted(set(per_run)) == [("evaluate", "K_4"), ("phi_settings", "K_4"), ("train_phi", "K_4")]
    assert job_counts(out.stdout)["evaluate"] == 4
    assert "tables" not in job_counts(out.stdout)


@pytest.mark.parametrize(
    ("args", "train_gpus", "nproc"),
    [
        (["--cores", "1"], None, None),  # the rule's one GPU, not limited: a bare run
        (["--profile", "profiles/local"], None, None),  # one GPU job at a time
        (["--cores", "1", "--set-resources", "train_phi:gpu=2"], None, 2),  # a job with two GPUs
        (["--profile", "profiles/slurm"], None, None),
        (["--profile", "profiles/slurm"], "4", 4),  # the SLURM profile's IRNO_SLURM_TRAIN_GPUS
    ],
)
def test_training_runs_one_ddp_process_per_gpu_of_its_job(workflow_copy, monkeypatch, args, train_gpus, nproc):
    monkeypatch.delenv("IRNO_SLURM_TRAIN_GPUS", raising=False)
    if train_gpus:
        monkeypatch.setenv("IRNO_SLURM_TRAIN_GPUS", train_gpus)
    training = "results/test/runs/active_matter/FNO/irno/checkpoint.pt"
    out = snakemake(workflow_copy, "-n", "-p", training, "--configfile", "config/test.yaml", *args)
    commands = re.findall(r"irno train .*", out.stdout)
    option = f" --nproc {nproc}" if nproc else ""
    assert len(commands) == 1 and f" --out results/test/runs/active_matter/FNO/irno{option} > " in commands[0], commands


def test_the_published_numbers_come_from_the_configured_file(workflow_copy):
    config = yaml.safe_load((workflow_copy / "config" / "test.yaml").read_text())
    config.setdefault("report", {})["reported"] = "elsewhere/published.yaml"
    (workflow_copy / "elsewhere").mkdir()
    (workflow_copy / "elsewhere" / "published.yaml").write_text((ROOT / "config" / "reported.yaml").read_text())
    (workflow_copy / "moved.yaml").write_text(yaml.safe_dump(config))
    out = snakemake(workflow_copy, "-n", "-p", "tables", "--configfile", "moved.yaml")
    assert "--reported elsewhere/published.yaml " in out.stdout
    default = snakemake(workflow_copy, "-n", "-p", "tables", "--configfile", "config/test.yaml")
    assert "--reported config/reported.yaml " in default.stdout  # the schema's default


def test_without_configfile_the_demo_runs(workflow_copy):
    out = snakemake(workflow_copy, "-n", "ablation", "--config", "ablation=irno")
    assert "results/demo/eval/active_matter/FNO/irno/metrics.json" in out.stdout
    assert "simulate_dataset" in job_counts(out.stdout)
    assert "results/demo/tables/claims.md" in snakemake(workflow_copy, "-n", "all").stdout  # the claims table


BAD_CONFIGS = {
    "unknown_key": (lambda c: c["phi"]["train"].update(epochz=3), "phi.train.epochz"),
    "unknown_top_level_key": (lambda c: c.update(experimentz={}), "'experimentz' was unexpected"),
    "wrong_type": (lambda c: c["experiments"].update(K_six={"train": {"K": "six"}}), "experiments.K_six.train.K"),
    "K_below_1": (
        lambda c: c["experiments"].update(K_0={"train": {"K": 0}}),
        "experiments.K_0: config key 'train.K': 0 is invalid",
    ),
    "alpha_not_positive": (lambda c: c["phi"]["train"].update(alpha=0.0), "phi: config key 'train.alpha'"),
    "missing_data_root": (lambda c: c.pop("data_root"), "'data_root' is a dependency of 'datasets'"),
    "no_study": (lambda c: [c.pop(k) for k in ("datasets", "bases", "experiments", "roma")], "is not valid under any"),
    "local_without_path": (
        lambda c: c["datasets"]["active_matter"].update(source="local", simulate=None),
        "config key 'datasets.active_matter.path': a dataset with source: local needs",
    ),
    "empty_data_root": (lambda c: c.update(data_root=""), "config key 'data_root': '' should be non-empty"),
    "bad_source": (
        lambda c: c["datasets"]["active_matter"].update(source="simulated"),
        "datasets.active_matter.source",
    ),
    "roma_unknown_key": (lambda c: c["roma"]["train"].update(stepz=3), "roma.train.stepz"),
    "roma_unknown_experiment": (
        lambda c: c["roma"]["experiments"].update(ablation={"datasets": ["tiny"]}),
        "config key 'roma.experiments': Additional properties are not allowed ('ablation'",
    ),
    "roma_bad_value": (
        lambda c: c["roma"]["datasets"]["tiny"]["graph"].update(nodes=5),
        "config key 'graph.nodes': 5 is invalid",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_stops_before_any_job(workflow_copy, case):
    edit, named = BAD_CONFIGS[case]
    config = yaml.safe_load((workflow_copy / "config" / "test.yaml").read_text())
    edit(config)
    (workflow_copy / "bad.yaml").write_text(yaml.safe_dump(config))
    out = snakemake(workflow_copy, "--cores", "1", "all", "--configfile", "bad.yaml", check=False)
    assert out.returncode != 0
    assert "invalid config (" in out.stderr and named in out.stderr, out.stderr[-3000:]
    assert not (workflow_copy / "results").exists()  # no job ran


@pytest.mark.slow
def test_roma_is_optional(workflow_copy):
    config = yaml.safe_load((workflow_copy / "config" / "test.yaml").read_text())
    del config["roma"]
    (workflow_copy / "irno_only.yaml").write_text(yaml.safe_dump(config))
    out = snakemake(workflow_copy, "-n", "all", "--configfile", "irno_only.yaml")
    assert "evaluate" in job_counts(out.stdout)
    assert not [rule for rule in job_counts(out.stdout) if rule.startswith("roma")]
    out = snakemake(workflow_copy, "-n", "roma", "--configfile", "irno_only.yaml", check=False)
    assert out.returncode != 0 and "the target 'roma' needs a roma: section" in out.stdout + out.stderr


def test_roma_schema_knows_every_experiment():
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    assert tuple(schema["properties"]["roma"]["properties"]["experiments"]["properties"]) == ROMA_EXPERIMENTS


# ----------------------------------------------------------------------------- end to end

# `test_run` (tests/conftest.py): config/test.yaml run locally, once per session.


@pytest.mark.slow
def test_test_config_runs_end_to_end(test_run):
    run = test_run / "results" / "test"
    study = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    for base in study["bases"]:
        assert json.loads((run / "base" / "active_matter" / base / "base_check.json").read_text())
    evaluated = sorted(p.parent.relative_to(run / "eval").as_posix() for p in run.glob("eval/*/*/*/metrics.json"))
    assert evaluated == [
        "active_matter/FNO/irno",
        "active_matter/FNO/no_spectral",
        "active_matter/FNO/transfer",
        "active_matter/TFNO/irno",
        "active_matter/TFNO/no_spectral",
    ]
    transfer = json.loads((run / "eval/active_matter/FNO/transfer/metrics.json").read_text())
    assert transfer["base"] == "FNO" and transfer["trained_on_base"] == "TFNO"
    # exactly the files the rules declare (irno.report.names), nothing undeclared beside them
    from irno.report.names import FIGURE_NAMES, TABLE_NAMES

    assert sorted(p.name for p in (run / "tables").iterdir()) == sorted(
        f"{n}.{e}" for n in TABLE_NAMES for e in ("csv", "md", "tex")
    )
    assert sorted(p.name for p in (run / "figures").iterdir()) == sorted(
        f"{n}.{e}" for n in FIGURE_NAMES for e in ("pdf", "png")
    )
    assert (run / "report.html").stat().st_size > 0
    assert list((run / "logs").rglob("*.log")) and list((run / "benchmarks").rglob("*.tsv"))
    # nothing left to do: the run is complete and its record consistent
    out = snakemake(test_run, "-n", "all", "--configfile", "config/test.yaml")
    assert "Nothing to be done" in out.stdout + out.stderr


@pytest.mark.slow
def test_two_seeds_train_and_evaluate_each_and_the_tables_show_their_spread(test_run, tmp_path):
    work = tmp_path / "seeds"
    shutil.copytree(test_run, work, symlinks=True)
    config = yaml.safe_load((work / "config" / "test.yaml").read_text())
    config.pop("roma")
    config["seeds"] = [1, 2]
    # a training that diverges (every batch non-finite) is a result, not a failure of `all`
    config["experiments"]["diverging"] = {"train": {"lr": 1.0e6, "alpha": 5.0}}
    (work / "seeds.yaml").write_text(yaml.safe_dump(config))
    # the ablation target builds one experiment, once per seed
    out = snakemake(work, "-n", "ablation", "--configfile", "seeds.yaml", "--config", "ablation=no_spectral")
    evaluations = sorted(set(re.findall(r"results/test/eval/(\S+)/metrics\.json", out.stdout)))
    assert evaluations == [f"active_matter/{b}/no_spectral/seed_{s}" for b in ("FNO", "TFNO") for s in (1, 2)]
    out = snakemake(work, "--cores", "2", "all", "--configfile", "seeds.yaml")
    assert "rule train_base" not in out.stdout + out.stderr  # the seeds share the bases: nothing retrained there
    run = work / "results" / "test"
    for seed in (1, 2):
        settings = yaml.safe_load((run / f"runs/active_matter/FNO/irno/seed_{seed}/settings.yaml").read_text())
        assert settings["train"]["seed"] == seed
        assert (run / f"eval/active_matter/FNO/transfer/seed_{seed}/metrics.json").is_file()
    main = pd.read_csv(run / "tables" / "main.csv")
    gains = [json.loads((run / f"eval/active_matter/FNO/irno/seed_{s}/metrics.json").read_text())["gain_pct"]
             for s in (1, 2)]  # fmt: skip
    row = main[(main["base"] == "FNO") & (main["convention"] == "The Well")]
    assert row["gain %"].item() == pytest.approx(sum(gains) / 2)
    assert row["gain % sd"].item() == pytest.approx(abs(gains[0] - gains[1]) / 2**0.5)
    assert " ± " in (run / "tables" / "main.md").read_text()
    claims = pd.read_csv(run / "tables" / "claims.csv")
    assert set(claims["verdict"]) <= {"holds", "does not hold", "not significant", "not run"}
    ablations = pd.read_csv(run / "tables" / "ablations.csv", keep_default_na=False)
    status = ablations.loc[(ablations["base"] == "FNO") & (ablations["variant"] == "diverging"), "status"].item()
    assert status.startswith("training diverged at epoch 1 (2 of 2 seeds)"), status
    assert (run / "report.html").stat().st_size > 0


@pytest.mark.slow
def test_html_report_builds(test_run):
    snakemake(test_run, "all", "--configfile", "config/test.yaml", "--report", "results/test/report.html")
    assert (test_run / "results/test/report.html").stat().st_size > 0
    # the rule's report has the ROMA study too: its section of the description, its captions
    html = (test_run / "results/test/report.html").read_text(errors="replace")
    assert "The ROMA study" in html and "ROMA, data scaling and noise" in html and "ROMA, parameter scaling" in html


@pytest.mark.slow
def test_editing_one_variant_reruns_that_variant_only(test_run):
    config = yaml.safe_load((test_run / "config" / "test.yaml").read_text())
    config["experiments"]["no_spectral"]["train"] = {"lr": 5.0e-4}
    (test_run / "edited.yaml").write_text(yaml.safe_dump(config))
    out = snakemake(test_run, "-n", "all", "--configfile", "edited.yaml")
    jobs = scheduled_jobs(out.stdout)
    per_run = sorted({(rule, w["base"], w["experiment"]) for rule, w in jobs if "experiment" in w})
    variants = ("evaluate", "phi_settings", "train_phi")
    assert per_run == sorted((rule, base, "no_spectral") for rule in variants for base in ("FNO", "TFNO"))
    aggregates = {rule for rule, w in jobs if "experiment" not in w}
    aggregates_allowed = {"report_plan_settings", "tables", "figures", "report", "all"}
    assert {"tables", "figures", "report"} <= aggregates <= aggregates_allowed


@pytest.mark.slow
def test_roma_study_runs_end_to_end(test_run):
    roma = test_run / "results" / "test" / "roma"
    expanded = expanded_roma_of("test.yaml")
    expected = report_outputs(expanded)
    assert sorted(p.name for p in (roma / "tables").iterdir()) == sorted(expected["tables"])
    assert sorted(p.name for p in (roma / "figures").iterdir()) == sorted(expected["figures"])
    assert all(p.stat().st_size > 1000 for p in (roma / "figures").iterdir())
    results = pd.read_csv(roma / "tables" / "results.csv")
    assert sorted(results["run_key"]) == sorted(expanded.runs)
    assert results["smspe"].between(0, 1).all() and (results["steps"] > 0).all()
    assert set(results["system"]) == {"kuramoto", "burgers"}
    for key, run in expanded.runs.items():
        evaluation = sorted(p.name for p in (roma / "eval" / key).iterdir() if not p.name.startswith("."))
        assert evaluation == (["attention.npz", "metrics.json"] if run["model"]["kind"] == "roma" else ["metrics.json"])
    scaling = pd.read_csv(roma / "tables" / "scaling.csv")
    assert (scaling["against"] == "parameters").all() and scaling["exponent_se"].notna().all()
    # every job has its log and benchmark
    expected_jobs = {
        "roma_simulate": len(expanded.datasets),
        "roma_encode": len(expanded.encodings),
        "roma_train": len(expanded.runs),
    }
    for rule, jobs in expected_jobs.items():
        assert len(list((test_run / "results/test/logs" / rule).glob("*.log"))) == jobs, rule
        assert list((test_run / "results/test/benchmarks" / rule).glob("*.tsv"))


@pytest.mark.slow
def test_editing_one_roma_experiment_reruns_its_runs_only(test_run):
    expanded = expanded_roma_of("test.yaml")
    config = yaml.safe_load((test_run / "config" / "test.yaml").read_text())
    config["roma"]["experiments"]["graph_encodings"]["vary"]["model.encodings"] = [["laplacian", "node2vec"], []]
    (test_run / "edited_roma.yaml").write_text(yaml.safe_dump(config))
    out = snakemake(test_run, "-n", "all", "--configfile", "edited_roma.yaml")
    jobs = scheduled_jobs(out.stdout)
    new_runs = sorted(set(expanded_roma(config).runs) - set(expanded.runs))
    assert len(new_runs) == 1  # encodings=[]; the run with both is the default, shared and kept
    per_run = sorted((rule, w["roma_run"]) for rule, w in jobs if w)
    assert per_run == [
        ("roma_run_settings", new_runs[0]),
        ("roma_train", new_runs[0]),
    ]
    aggregates = {rule for rule, w in jobs if not w}
    assert aggregates == {"roma_study_settings", "roma_report", "report", "all"}

    # a dataset's settings reach its simulation, its encodings and every run on it, and nothing of IRNO
    config = yaml.safe_load((test_run / "config" / "test.yaml").read_text())
    config["roma"]["datasets"]["tiny"]["kuramoto"]["frames"] = 45
    (test_run / "edited_data.yaml").write_text(yaml.safe_dump(config))
    counts = job_counts(snakemake(test_run, "-n", "all", "--configfile", "edited_data.yaml").stdout)
    on_tiny = sum(run["dataset"] == "tiny" for run in expanded.runs.values())
    assert counts == {
        "roma_data_settings": 1,
        "roma_simulate": 1,
        "roma_encode": 1,
        "roma_train": on_tiny,
        "roma_study_settings": 1,
        "roma_report": 1,
        "report": 1,
        "all": 1,
    }


# ----------------------------------------------------------------------------- data read in place, shared


def snapshot(root: Path) -> dict[str, tuple[int, float, str]]:
    """Every file under root: size, modification time and SHA-256."""
    from irno.files import file_sha256

    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime, file_sha256(p))
            for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip


@pytest.mark.slow
def test_a_read_only_local_copy_is_read_in_place_and_shared_stores_are_reused(workflow_copy, tmp_path, tiny_well):
    copy = tmp_path / "group" / "the_well"  # a group's copy of The Well, read only
    shutil.copytree(tiny_well, copy)
    subprocess.run(["chmod", "-R", "a-w", str(copy)], check=True)
    before = snapshot(copy)
    config = yaml.safe_load((workflow_copy / "config" / "test.yaml").read_text())
    del config["roma"]
    config["datasets"] = {"active_matter": {"source": "local", "path": str(copy), "complete": False}}
    config["experiments"] = {"irno": {}}
    config["bases"] = {"FNO": config["bases"]["FNO"]}
    config["report"] = {"figure_base": "FNO"}
    config["shared_root"] = str(tmp_path / "shared")
    (workflow_copy / "local.yaml").write_text(yaml.safe_dump(config))
    try:
        first = snakemake(workflow_copy, "--cores", "2", "irno", "--configfile", "local.yaml", "--config", "run_name=a")
        # read in place: nothing written inside the copy, no download; the manifest with the run's data
        assert snapshot(copy) == before
        output = first.stdout + first.stderr
        assert "rule index_local_dataset:" in output and "download_dataset" not in output
        manifests = list((tmp_path / "shared" / "data").glob("active_matter-*/manifest.json"))
        assert len(manifests) == 1
        manifest = json.loads(manifests[0].read_text())
        assert manifest["source"] == "local copy" and manifest["root"] == str(copy)
        assert all(f["sha256"] for files in manifest["splits"].values() for f in files)
        assert (workflow_copy / "results/a/eval/active_matter/FNO/irno/metrics.json").is_file()
        # a second run name on the same data and base prepares and caches nothing again
        second = snakemake(
            workflow_copy, "--cores", "2", "irno", "--configfile", "local.yaml", "--config", "run_name=b"
        )
        ran = set(re.findall(r"^(?:local)?rule (\w+):", second.stdout + second.stderr, re.M))
        assert ran and ran <= {"phi_settings", "train_phi", "eval_settings", "evaluate", "report_plan_settings",
                               "tables", "figures", "irno"}, ran  # fmt: skip
        assert (workflow_copy / "results/b/eval/active_matter/FNO/irno/metrics.json").is_file()
        assert not (workflow_copy / "results/b/data").exists() and not (workflow_copy / "results/b/base").exists()
        assert snapshot(copy) == before
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(copy)], check=True)


# ----------------------------------------------------------------------------- redrawing without retraining


@pytest.mark.slow
def test_redrawing_tables_figures_and_report_runs_nothing_else(test_run, tmp_path):
    work = tmp_path / "redraw"
    shutil.copytree(test_run, work, symlinks=True)
    tables = work / "results/test/tables/main.csv"
    before = tables.stat().st_mtime
    out = snakemake(work, "report", "--profile", "profiles/redraw", "--configfile", "config/test.yaml")
    ran = set(re.findall(r"^(?:local)?rule (\w+):", out.stdout + out.stderr, re.M))
    redraw_rules = {"tables", "figures", "roma_report", "report", "report_plan_settings", "roma_study_settings"}
    assert {"tables", "figures", "roma_report", "report"} <= ran <= redraw_rules, ran
    assert tables.stat().st_mtime > before
    # whatever is missing is named, never built: no training, not even an evaluation
    missing = work / "results/test/eval/active_matter/TFNO/irno/metrics.json"
    missing.unlink()
    shutil.rmtree(work / "results/test/runs/active_matter/TFNO/irno")
    failed = snakemake(work, "report", "--profile", "profiles/redraw", "--configfile", "config/test.yaml", check=False)
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0 and "Missing input files" in output and str(missing.relative_to(work)) in output
    assert not re.search(r"^rule (train_phi|evaluate):", output, re.M)
    assert not (work / "results/test/runs/active_matter/TFNO/irno").exists()
