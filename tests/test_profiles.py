"""The Snakemake profiles as Snakemake 9 reads them (no cluster needed; tests/slurm runs them on one).

profiles/slurm takes partition, account, GPU model and GPUs per training from environment
variables (through YTE, the template engine Snakemake applies to profiles), gives every other GPU
rule one GPU and every GPU rule 8 CPU cores per GPU, and lets runtime and memory grow with the
attempt; profiles/default holds only keys that suit every executor.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.profiles import ProfileConfigFileParser

REPO = Path(__file__).resolve().parents[1]
GPU_RULES = {
    "train_base",
    "check_base",
    "cache_base_predictions",
    "train_refiner",
    "evaluate",
    "roma_encode",
    "roma_train",
    "roma_evaluate",
}
CPU_RULES = {"simulate_dataset", "prepare_split", "roma_simulate"}
LOCAL_RULES = {"download_dataset", "fetch_base", "tables", "figures", "roma_report"}  # the workflow's localrules


def parse_profile(name: str, monkeypatch: pytest.MonkeyPatch, **env: str) -> dict:
    """The profile's settings as Snakemake's own parser turns them into command-line values."""
    for var in ("IRNO_SLURM_PARTITION", "IRNO_SLURM_ACCOUNT", "IRNO_SLURM_GPU_MODEL", "IRNO_SLURM_TRAIN_GPUS"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    with open(REPO / "profiles" / name / "config.yaml") as f:
        return dict(ProfileConfigFileParser().parse(f))


def resources(assignments: list[str]) -> dict[str, dict[str, str]]:
    """["rule:name=value", ...] (or ["name=value", ...] under the key "") -> {rule: {name: value}}."""
    out: dict[str, dict[str, str]] = {}
    for item in assignments:
        target, value = item.split("=", 1)
        rule, _, name = target.rpartition(":")
        out.setdefault(rule, {})[name] = value
    return out


def test_slurm_profile_site_settings_come_from_the_environment(monkeypatch):
    unset = parse_profile("slurm", monkeypatch)
    defaults = resources(unset["default-resources"])[""]
    assert "slurm_partition" not in defaults and "slurm_account" not in defaults
    assert not any("gpu_model" in r for r in resources(unset["set-resources"]).values())

    site = parse_profile(
        "slurm", monkeypatch, IRNO_SLURM_PARTITION="all", IRNO_SLURM_ACCOUNT="123456", IRNO_SLURM_GPU_MODEL="a100"
    )
    defaults = resources(site["default-resources"])[""]
    # Python string literals: Snakemake evaluates resource values, and `all` is a builtin.
    assert (defaults["slurm_partition"], defaults["slurm_account"]) == ("'all'", "'123456'")
    per_rule = resources(site["set-resources"])
    assert {rule for rule, r in per_rule.items() if r.get("gpu_model") == "'a100'"} == GPU_RULES


def test_slurm_profile_gives_gpus_and_more_time_and_memory_per_attempt(monkeypatch):
    profile = parse_profile("slurm", monkeypatch)
    assert profile["executor"] == "slurm" and int(profile["retries"]) >= 2
    assert profile["slurm-status-command"] == "squeue"  # sacct's "CANCELLED by <uid>" hangs plugin 2.8
    per_rule = resources(profile["set-resources"])
    assert set(per_rule) == GPU_RULES | CPU_RULES and not set(per_rule) & LOCAL_RULES
    assert {rule for rule, r in per_rule.items() if r.get("gpu") == "1"} == GPU_RULES
    for rule, r in [("", resources(profile["default-resources"])[""]), *per_rule.items()]:
        for name in ("runtime", "mem_mb"):
            first, second = (eval(r[name], {"attempt": attempt}) for attempt in (1, 2))
            assert 0 < first < second, (rule, name, r[name])


def test_slurm_profile_gives_gpu_jobs_cpu_cores_and_trainings_the_gpus_asked_for(monkeypatch):
    one = parse_profile("slurm", monkeypatch)
    threads = resources(one["set-threads"])  # {"": {rule: threads}}: RULE=THREADS has no resource name
    assert set(threads[""]) == GPU_RULES and set(threads[""].values()) == {"8"}
    assert resources(one["set-resources"])["train_refiner"]["gpu"] == "1"

    four = parse_profile("slurm", monkeypatch, IRNO_SLURM_TRAIN_GPUS="4", IRNO_SLURM_GPU_MODEL="h100")
    per_rule = resources(four["set-resources"])
    assert (per_rule["train_refiner"]["gpu"], per_rule["train_refiner"]["gpu_model"]) == ("4", "'h100'")
    assert {rule for rule, r in per_rule.items() if r.get("gpu") == "1"} == GPU_RULES - {"train_refiner"}
    assert resources(four["set-threads"])[""]["train_refiner"] == "32"  # 8 per GPU


def test_local_profile_runs_gpu_jobs_one_at_a_time(monkeypatch):
    profile = parse_profile("local", monkeypatch)
    assert profile["resources"] == ["gpu=1"]
    per_rule = resources(profile["set-resources"])
    assert {rule for rule, r in per_rule.items() if r == {"gpu": "1"}} == GPU_RULES == set(per_rule)


def test_default_profile_holds_only_keys_safe_for_every_executor():
    keys = set(yaml.safe_load((REPO / "profiles/default/config.yaml").read_text()))
    # Each of these would replace the --profile's own value on every run (SPEC 6).
    executor_specific = {"executor", "jobs", "cores", "default-resources", "set-resources", "resources", "retries"}
    assert keys and not keys & executor_specific and not any(k.startswith("slurm-") for k in keys)


def test_snakemake_accepts_the_slurm_profile(tmp_path: Path):
    """A dry run through the real profile: attempt expressions and YTE values as the jobs get them."""
    (tmp_path / "Snakefile").write_text(
        'localrules: tables\n'
        'rule tables:\n    input: "e.txt"\n    output: "t.txt"\n    shell: "cp {input} {output}"\n'
        'rule evaluate:\n    output: "e.txt"\n    shell: "touch {output}"\n'
    )  # fmt: skip
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
    env.update(IRNO_SLURM_PARTITION="gpu", IRNO_SLURM_ACCOUNT="irno", IRNO_SLURM_GPU_MODEL="h100")
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--profile", str(REPO / "profiles/slurm"), "t.txt"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    resources_line = next(line for line in run.stdout.splitlines() if "gpu_model=" in line)
    for expected in ("slurm_partition=gpu", "slurm_account=irno", "runtime=120", "gpu=1", "gpu_model=h100"):
        assert expected in resources_line, resources_line
