"""The Snakemake profiles as Snakemake 9 reads them (no cluster needed; tests/slurm runs them on one).

Resources have one source: each rule states its runtime, memory and GPUs; the profiles hold site
settings only. profiles/slurm takes partition, account, GPU model and GPUs per training from
environment variables (through YTE, the template engine Snakemake applies to profiles) and derives
its GPU rules from the rules' gpu resource: 8 CPU cores per GPU, the GPU model, the training's GPU
count. profiles/local runs GPU jobs one at a time; profiles/default holds only keys that suit every
executor. The tests below fail wherever a rule and a profile could disagree.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.profiles import ProfileConfigFileParser
from workflow_copy import ROOT, SITE_VARIABLES, copy_workflow, gpu_rules, render_profile, snakemake, started_in

PROFILES = ("default", "local", "slurm")
RULE_FILES = sorted((ROOT / "workflow" / "rules").glob("*.smk"))


def parse_profile(name: str, **env: str) -> dict:
    """The profile's settings as Snakemake's own parser turns them into command-line values, started
    in the repository with the site variables `env`."""
    environment = {k: v for k, v in os.environ.items() if k not in SITE_VARIABLES} | env
    with started_in(ROOT, environment), open(ROOT / "profiles" / name / "config.yaml") as f:
        return dict(ProfileConfigFileParser().parse(f))


def resources(assignments: list[str]) -> dict[str, dict[str, str]]:
    """["rule:name=value", ...] (or ["name=value", ...] under the key "") -> {rule: {name: value}}."""
    out: dict[str, dict[str, str]] = {}
    for item in assignments:
        target, value = item.split("=", 1)
        rule, _, name = target.rpartition(":")
        out.setdefault(rule, {})[name] = value
    return out


def rule_blocks() -> dict[str, str]:
    """Rule name -> its text, for every rule of workflow/rules/*.smk."""
    text = "".join(f.read_text() for f in RULE_FILES)
    return {
        m.group(1): block
        for block in re.split(r"^(?=rule \w+:)", text, flags=re.M)
        if (m := re.match(r"rule (\w+):", block))
    }


def jobs_resources(dry_run_output: str) -> dict[str, dict[str, str]]:
    """Rule -> the resources of its jobs in a dry run (equal for every job of a rule here)."""
    out: dict[str, dict[str, str]] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", dry_run_output):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        found = re.search(r"^\s+resources: (.*)$", block, re.M)
        if rule and found:
            job = dict(kv.split("=", 1) for kv in found.group(1).split(", "))
            assert out.setdefault(rule.group(1), job) == job, (rule.group(1), job)
    return out


def test_every_rule_states_its_runtime_and_memory_growing_with_the_attempt():
    blocks = rule_blocks()
    assert len(blocks) > 20
    for rule, block in blocks.items():
        for name in ("runtime", "mem_mb"):
            assert re.search(rf"^\s+{name}=scaled\(\d+\),$", block, re.M), (rule, name)


@pytest.mark.parametrize("name", PROFILES)
def test_no_profile_sets_runtime_memory_or_rule_names(name):
    everything = {var: "x" for var in ("IRNO_SLURM_PARTITION", "IRNO_SLURM_ACCOUNT", "IRNO_SLURM_GPU_MODEL")}
    profile = parse_profile(name, IRNO_SLURM_TRAIN_GPUS="2", **everything)
    for key in ("default-resources", "set-resources", "resources"):
        assigned = {n for r in resources(profile.get(key, [])).values() for n in r}
        assert not assigned & {"runtime", "mem_mb", "mem", "disk_mb"}, (name, key, assigned)
    # The GPU rules are derived, never listed: no rule is named but the training (its GPU count).
    lines = (ROOT / "profiles" / name / "config.yaml").read_text().splitlines()
    text = "\n".join(line.split(" # ")[0] for line in lines if not line.lstrip().startswith("#"))
    assert [rule for rule in rule_blocks() if re.search(rf"\b{rule}\b", text)] in ([], ["train_refiner"])


def test_slurm_profile_site_settings_come_from_the_environment():
    unset = parse_profile("slurm")
    assert "default-resources" not in unset
    assert not any("gpu_model" in r for r in resources(unset["set-resources"]).values())

    site = parse_profile("slurm", IRNO_SLURM_PARTITION="all", IRNO_SLURM_ACCOUNT="123456", IRNO_SLURM_GPU_MODEL="a100")
    defaults = resources(site["default-resources"])[""]
    # Python string literals: Snakemake evaluates resource values, and `all` is a builtin.
    assert defaults == {"slurm_partition": "'all'", "slurm_account": "'123456'"}
    per_rule = resources(site["set-resources"])
    assert {rule for rule, r in per_rule.items() if r.get("gpu_model") == "'a100'"} == gpu_rules()


def test_slurm_profile_gives_gpu_jobs_cpu_cores_and_trainings_the_gpus_asked_for():
    one = parse_profile("slurm")
    assert one["executor"] == "slurm" and int(one["retries"]) >= 2
    assert one["slurm-status-command"] == "squeue"  # sacct's "CANCELLED by <uid>" hangs plugin 2.8
    threads = resources(one["set-threads"])  # {"": {rule: threads}}: RULE=THREADS has no resource name
    assert set(threads[""]) == gpu_rules() and set(threads[""].values()) == {"8"}
    assert resources(one["set-resources"]) == {"train_refiner": {"gpu": "1"}}

    four = parse_profile("slurm", IRNO_SLURM_TRAIN_GPUS="4", IRNO_SLURM_GPU_MODEL="h100")
    per_rule = resources(four["set-resources"])
    assert per_rule["train_refiner"] == {"gpu": "4", "gpu_model": "'h100'"}
    assert resources(four["set-threads"])[""]["train_refiner"] == "32"  # 8 per GPU


def test_the_rules_alone_decide_runtime_memory_and_gpus(tmp_path, monkeypatch):
    """The jobs of config/test.yaml through profiles/slurm ask for the runtime, memory and GPUs their
    rules state, with the site's GPU model on exactly the rules with a gpu."""
    workdir = copy_workflow(tmp_path)
    for var in SITE_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    bare = jobs_resources(snakemake(workdir, "-n", "all", "--configfile", "config/test.yaml").stdout)
    monkeypatch.setenv("IRNO_SLURM_GPU_MODEL", "h100")
    monkeypatch.setenv("IRNO_SLURM_TRAIN_GPUS", "2")
    slurm = jobs_resources(
        snakemake(workdir, "-n", "--profile", "profiles/slurm", "all", "--configfile", "config/test.yaml").stdout
    )
    assert bare.keys() == slurm.keys() and "train_refiner" in bare
    with_gpu = {rule for rule, r in bare.items() if "gpu" in r}
    assert with_gpu == {rule for rule, r in slurm.items() if "gpu_model" in r} == gpu_rules()
    assert [rule for rule, job in bare.items() if "runtime" not in job] == ["all"]  # a target, no job
    for rule, job in bare.items():
        if rule == "all":
            continue
        assert (slurm[rule]["runtime"], slurm[rule]["mem_mb"]) == (job["runtime"], job["mem_mb"]), rule
        gpus = int(slurm[rule].get("gpu", 0))
        assert gpus == (2 if rule == "train_refiner" else int(job.get("gpu", 0))), rule


def test_local_profile_runs_gpu_jobs_one_at_a_time():
    assert render_profile(ROOT / "profiles" / "local") == {"cores": "all", "resources": {"gpu": 1}}


def test_a_plain_run_needs_no_gpu(tmp_path):
    """Without a profile the rules' gpu resource limits nothing: the demo runs on a CPU-only machine."""
    out = snakemake(copy_workflow(tmp_path), "-n", "--cores", "2", "ablation", "--config", "ablation=irno")
    assert re.search(r"^rule train_refiner:", out.stdout, re.M) and "gpu=1" in out.stdout


def test_default_profile_holds_only_keys_safe_for_every_executor():
    keys = set(yaml.safe_load((ROOT / "profiles/default/config.yaml").read_text()))
    # Each of these would replace the --profile's own value on every run (docs/slurm.md).
    executor_specific = {"executor", "jobs", "cores", "default-resources", "set-resources", "resources", "retries"}
    assert keys and not keys & executor_specific and not any(k.startswith("slurm-") for k in keys)


def test_snakemake_accepts_the_slurm_profile(tmp_path: Path):
    """A dry run through the real profile: attempt expressions and YTE values as the jobs get them."""
    (tmp_path / "Snakefile").write_text(
        'localrules: tables\n'
        'rule tables:\n    input: "e.txt"\n    output: "t.txt"\n    shell: "cp {input} {output}"\n'
        'rule evaluate:\n    output: "e.txt"\n'
        '    resources: runtime=lambda wildcards, attempt: 120 * attempt, gpu=1\n    shell: "touch {output}"\n'
    )  # fmt: skip
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
    env.update(IRNO_SLURM_PARTITION="gpu", IRNO_SLURM_ACCOUNT="irno", IRNO_SLURM_GPU_MODEL="h100")
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--profile", str(ROOT / "profiles/slurm"), "t.txt"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    resources_line = next(line for line in run.stdout.splitlines() if "gpu_model=" in line)
    for expected in ("slurm_partition=gpu", "slurm_account=irno", "runtime=120", "gpu=1", "gpu_model=h100"):
        assert expected in resources_line, resources_line
