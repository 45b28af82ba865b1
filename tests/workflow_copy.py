"""The Snakemake workflow in a temporary copy, run locally, and its profiles as Snakemake reads
them: what tests/test_workflow.py, tests/test_profiles.py and the SLURM tests (tests/slurm) build on.

A copy holds the Snakefile, workflow/, config/, envs/ and profiles/ (so the workflow profile
applies as for users) and imports this checkout's `irno`, so results never land in the repository.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import yte

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ("Snakefile", "workflow", "config", "envs", "profiles")
# The site settings the workflow reads from the environment (irno.cluster.SiteSettings).
SITE_VARIABLES = tuple(
    f"IRNO_SLURM_{name}"
    for name in (
        "PARTITION", "CPU_PARTITION", "ACCOUNT", "QOS", "CONSTRAINT", "EXTRA", "GPU_MODEL", "TRAIN_GPUS",
        "CPUS_PER_GPU", "MAX_RUNTIME", "MAX_MEM_MB",
    )
)  # fmt: skip


@contextlib.contextmanager
def started_in(workdir: Path, env: Mapping[str, str]) -> Iterator[None]:
    """This process as Snakemake started in `workdir` with `env` sees it (what a profile's YTE reads)."""
    cwd, saved = Path.cwd(), dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(workdir)
    try:
        yield
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(saved)


def render_profile(profile: Path, workdir: Path = ROOT, env: Mapping[str, str] | None = None) -> dict:
    """A profile's config.yaml with its YTE templates applied, as Snakemake started in `workdir` with
    `env` reads it (default: this environment without the site variables)."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if k not in SITE_VARIABLES}
    with started_in(workdir, env), open(profile / "config.yaml") as f:
        return yte.process_yaml(f, require_use_yte=True)


def dry_run_resources(workdir: Path, *args: str) -> dict[str, list[dict[str, str]]]:
    """Rule -> the resources of each of its jobs, as a Snakemake dry run in `workdir` lists them."""
    out = snakemake(workdir, "-n", *args).stdout
    jobs: dict[str, list[dict[str, str]]] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        found = re.search(r"^\s+resources: (.*)$", block, re.M)
        if rule and found:
            jobs.setdefault(rule.group(1), []).append(dict(kv.split("=", 1) for kv in found.group(1).split(", ")))
    return jobs


def gpu_rules(workdir: Path, config: str = "config/test.yaml") -> set[str]:
    """The rules whose jobs ask for a GPU, as Snakemake evaluates the rules' resources for `config`."""
    jobs = dry_run_resources(workdir, "all", "--forceall", "--configfile", config)  # every job, done or not
    return {rule for rule, resources in jobs.items() if any(int(r.get("gpu", 0)) for r in resources)}


def copy_workflow(dest: Path) -> Path:
    for name in WORKFLOW_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`snakemake ARGS` in workdir with this checkout's `irno`; fails the test when it fails (check)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc
