"""The Snakemake profiles and the jobs' resources, as Snakemake reads them (no cluster needed;
tests/slurm runs them on one).

Resources have one source: every cluster rule takes its runtime, memory, GPUs and the site's SLURM
settings from irno.cluster (its JOBS table and the IRNO_SLURM_* variables), and the localrules
state none. The profiles hold how jobs run, never what a rule asks for: profiles/slurm the
executor, retries, status checks and the paper's config; profiles/local one GPU job at a time;
profiles/redraw the report rules alone; profiles/default only keys that suit every executor. The
tests below fail wherever a rule, irno.cluster and a profile could disagree.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from snakemake.profiles import ProfileConfigFileParser
from workflow_copy import (
    ROOT,
    SITE_VARIABLES,
    copy_workflow,
    dry_run_resources,
    gpu_rules,
    render_profile,
    snakemake,
    started_in,
)

from irno.cluster import JOBS, SiteSettings, site_resources
from irno.settings import settings_kinds

PROFILES = ("default", "local", "slurm", "redraw")
RULE_FILES = ("Snakefile", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "workflow" / "rules").glob("*.smk")))


def parse_profile(name: str, **env: str) -> dict:
    """The profile's settings as Snakemake's own parser turns them into command-line values, started
    in the repository with the site variables `env`."""
    environment = {k: v for k, v in os.environ.items() if k not in SITE_VARIABLES} | env
    with started_in(ROOT, environment), open(ROOT / "profiles" / name / "config.yaml") as f:
        return dict(ProfileConfigFileParser().parse(f))


@pytest.fixture(scope="module")
def workflow(tmp_path_factory) -> Path:
    return copy_workflow(tmp_path_factory.mktemp("profiles"))


@pytest.fixture
def no_site(monkeypatch):
    for var in SITE_VARIABLES:
        monkeypatch.delenv(var, raising=False)


def test_cluster_rules_take_their_resources_from_irno_cluster_local_rules_state_none(workflow, no_site):
    slurm = ("--profile", "profiles/slurm", "all")
    jobs = dry_run_resources(workflow, *slurm, "--configfile", "config/test.yaml")
    jobs.update(dry_run_resources(workflow, *slurm))  # the paper's config
    local = set(re.findall(r"(?m)^    (\w+),$", "".join(re.findall(r"(?ms)^localrules:\n.*?\n\n", rules_text()))))
    local |= {f"{kind}_settings" for kind in settings_kinds()}  # settings.smk: `localrule: True`, one per kind
    assert local and not local & set(JOBS)
    assert {f"{kind}_settings" for kind in settings_kinds()} <= set(jobs)  # a rule for every kind the writer knows
    for rule, resources in jobs.items():
        if rule in local or rule == "all":
            assert all(set(r) <= {"tmpdir"} for r in resources), (rule, resources)
            continue
        assert rule in JOBS, rule
        for r in resources:  # attempt 1: the table's runtime, its memory and GPUs
            assert int(r["runtime"]) == JOBS[rule].runtime and int(r["mem_mb"]) >= JOBS[rule].base_mb, (rule, r)
            assert int(r.get("gpu", 0)) == JOBS[rule].gpus, (rule, r)
    # every table entry is a rule of the workflow
    assert all(re.search(rf"^rule {rule}:", rules_text(), re.M) for rule in JOBS)


def rules_text() -> str:
    return "".join((ROOT / f).read_text() for f in RULE_FILES)


def test_the_verdict_rules_are_not_retried():
    blocks = {m.group(1): block for block in re.split(r"(?m)^(?=rule \w+:)", rules_text())
              if (m := re.match(r"rule (\w+):", block))}  # fmt: skip
    for rule, spec in JOBS.items():
        assert ("    retries: 0\n" in blocks[rule]) == (not spec.retried), rule


@pytest.mark.parametrize("name", PROFILES)
def test_no_profile_states_resources_or_names_a_rule(name):
    everything = {var: "2" for var in SITE_VARIABLES}
    profile = parse_profile(name, **everything)
    for key in ("default-resources", "set-resources", "set-threads"):
        assert key not in profile, (name, key)
    assert profile.get("resources", []) == (["gpu=1"] if name == "local" else [])
    text = (ROOT / "profiles" / name / "config.yaml").read_text()
    code = "\n".join(line.split(" # ")[0] for line in text.splitlines() if not line.lstrip().startswith("#"))
    named = [rule for rule in JOBS if re.search(rf"\b{rule}\b", code)]
    assert named == [], (name, named)


def test_the_slurm_profile_runs_the_paper_config_unless_another_is_given(workflow, no_site):
    profile = parse_profile("slurm")
    assert profile["executor"] == "slurm" and profile["configfile"] == "config/config.yaml"
    assert int(profile["retries"]) >= 2 and profile["slurm-status-command"] == "squeue"
    paper = snakemake(workflow, "-n", "--profile", "profiles/slurm", "all")
    assert "config/config.yaml" in paper.stdout and "results/paper/runs/" in paper.stdout
    assert "roma_train" not in paper.stdout
    roma = snakemake(workflow, "-n", "--profile", "profiles/slurm", "all", "--configfile", "config/roma.yaml")
    assert "results/paper_roma/roma/" in roma.stdout and "config/config.yaml" not in roma.stdout


def test_the_site_settings_reach_every_job(workflow, no_site, monkeypatch):
    site = {
        "IRNO_SLURM_PARTITION": "gpu", "IRNO_SLURM_CPU_PARTITION": "cpu", "IRNO_SLURM_ACCOUNT": "proj",
        "IRNO_SLURM_QOS": "high", "IRNO_SLURM_CONSTRAINT": "a100", "IRNO_SLURM_EXTRA": "--mail-type=FAIL",
        "IRNO_SLURM_GPU_MODEL": "a100", "IRNO_SLURM_TRAIN_GPUS": "2", "IRNO_SLURM_CPUS_PER_GPU": "6",
        "IRNO_SLURM_MAX_RUNTIME": "600", "IRNO_SLURM_MAX_MEM_MB": "7000",
    }  # fmt: skip
    for name, value in site.items():
        monkeypatch.setenv(name, value)
    jobs = dry_run_resources(workflow, "--profile", "profiles/slurm", "all", "--configfile", "config/test.yaml")
    expected = SiteSettings.from_environ(site)
    gpu = gpu_rules(workflow)
    assert gpu == {rule for rule, spec in JOBS.items() if spec.gpus} & set(jobs)
    for rule in set(jobs) & set(JOBS):
        for r in jobs[rule]:
            for key, value in site_resources(rule, expected).items():
                assert r[key] == str(value), (rule, key, r)
            assert int(r["runtime"]) <= 600 and int(r["mem_mb"]) <= 7000, (rule, r)
            assert r["slurm_partition"] == ("gpu" if rule in gpu else "cpu"), (rule, r)
    assert jobs["train_phi"][0]["gpu"] == "2" and jobs["train_phi"][0]["cpus_per_task"] == "12"


def test_one_rules_request_changes_on_the_command_line_without_losing_the_rest(workflow, no_site, monkeypatch):
    monkeypatch.setenv("IRNO_SLURM_GPU_MODEL", "h100")
    monkeypatch.setenv("IRNO_SLURM_TRAIN_GPUS", "2")
    args = ("--profile", "profiles/slurm", "all", "--configfile", "config/test.yaml")
    plain = dry_run_resources(workflow, *args)
    changed = dry_run_resources(workflow, *args, "--set-resources", "train_phi:runtime=2880")
    assert {r["runtime"] for r in changed["train_phi"]} == {"2880"}
    for r, before in zip(changed["train_phi"], plain["train_phi"], strict=True):
        assert {k: v for k, v in r.items() if k != "runtime"} == {k: v for k, v in before.items() if k != "runtime"}
        assert (r["gpu"], r["gpu_model"]) == ("2", "h100")
    assert changed["evaluate"] == plain["evaluate"]


def test_local_profile_runs_gpu_jobs_one_at_a_time():
    assert render_profile(ROOT / "profiles" / "local") == {"cores": "all", "resources": {"gpu": 1}}


def test_a_plain_run_needs_no_gpu(workflow):
    """Without a profile the rules' gpu resource limits nothing: the demo runs on a CPU-only machine."""
    out = snakemake(workflow, "-n", "--cores", "2", "ablation", "--config", "ablation=irno")
    assert re.search(r"^rule train_phi:", out.stdout, re.M) and "gpu=1" in out.stdout


def test_default_profile_holds_only_keys_safe_for_every_executor():
    keys = set(yaml.safe_load((ROOT / "profiles/default/config.yaml").read_text()))
    # Each of these would replace the --profile's own value on every run (docs/slurm.md).
    executor_specific = {"executor", "jobs", "cores", "default-resources", "set-resources", "resources", "retries",
                         "configfile"}  # fmt: skip
    assert keys and not keys & executor_specific and not any(k.startswith("slurm-") for k in keys)


def test_the_redraw_profile_allows_the_report_rules_only():
    profile = parse_profile("redraw")
    assert set(profile["allowed-rules"]) == {
        "report_plan_settings",
        "roma_study_settings",
        "tables",
        "figures",
        "roma_report",
        "report",
    }
    assert set(profile["forcerun"]) == {"tables", "figures", "roma_report", "report"}
