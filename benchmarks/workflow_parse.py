"""Workflow overhead: Snakemake parsing the workflow and building the paper's full DAG.

    python -m benchmarks.workflow_parse [--quick] [--config config/config.yaml]

Runs `snakemake -n --quiet all --configfile config/config.yaml` (a dry run: no data needed) in a
temporary copy of the workflow, `--repeats` times, and reports the job count, the wall time of
each repeat and the CPU time it used (user + sys of the Snakemake process, which contention
inflates far less than wall time). Target: < 5 s.

At start-up the SLURM executor plugin (installed with the workflow) runs `scontrol show config`
when SLURM's tools are installed; with no controller answering (a machine where the SLURM test
cluster is down) that call waits for its 10 s time-out, on a cluster login node or a machine
without SLURM it takes milliseconds. The benchmark times that call on its own and, when it waited,
also reports the wall time without it.
"""

from __future__ import annotations

import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import common

NAME = "workflow_parse"
TARGET_S = 5.0


def workflow_copy(tmp: Path) -> Path:
    """The workflow's files (Snakefile, rules, configs, profiles) copied into `tmp`, to run from there."""
    import shutil

    for name in ("Snakefile", "workflow", "config", "envs", "profiles"):
        (shutil.copytree if (common.ROOT / name).is_dir() else shutil.copy2)(common.ROOT / name, tmp / name)
    return tmp


def snakemake(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, float, float]:
    """(process, wall seconds, CPU seconds) of `snakemake ARGS` in `cwd`; exits when it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", *args], cwd=cwd, env=common.child_env(), capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"snakemake {' '.join(args)} failed after {wall:.0f} s:\n{proc.stderr[-4000:]}")
    return proc, wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def slurm_probe_seconds() -> float | None:
    """Seconds of the SLURM plugin's start-up call `scontrol show config` (None: no SLURM tools)."""
    if shutil.which("scontrol") is None:
        return None
    start = time.perf_counter()
    try:
        subprocess.run(["scontrol", "show", "config"], capture_output=True, timeout=10)
    except subprocess.TimeoutExpired:
        pass
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    p = common.parser(NAME, __doc__)
    p.add_argument("--config", default="config/config.yaml")
    p.add_argument("--repeats", type=int, help="dry runs (default: 2 quick, 5 full)")
    args = p.parse_args(argv)
    args.repeats = args.repeats or (2 if args.quick else 5)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cwd = workflow_copy(Path(tmp))
        for repeat in range(args.repeats):
            proc, wall, cpu = snakemake(["-n", "--quiet", "all", "--configfile", args.config], cwd)
            jobs = re.search(r"^total\s+(\d+)$", proc.stdout + proc.stderr, re.M)
            rows.append(
                {"repeat": repeat + 1, "jobs": int(jobs.group(1)) if jobs else None, "wall_s": wall, "cpu_s": cpu}
            )
    wall = min(r["wall_s"] for r in rows)
    probe = slurm_probe_seconds()
    heads = [
        common.headline(
            f"snakemake -n of {args.config}'s full DAG ({rows[0]['jobs']} jobs), wall",
            wall,
            "s",
            f"< {TARGET_S:g} s",
            wall < TARGET_S,
        ),
        common.headline("the same, CPU", min(r["cpu_s"] for r in rows), "s"),
    ]
    notes = [f"best of {args.repeats} dry runs in a fresh copy of the workflow"]
    if probe is not None:
        heads.append(common.headline("of the wall time: the SLURM plugin's `scontrol show config`", probe, "s"))
        if probe > 1:
            notes.append(
                "SLURM's tools are installed but no controller answers: "
                "the plugin's start-up call waited for its time-out"
            )
            heads.append(
                common.headline(
                    "wall without that wait", wall - probe, "s", f"< {TARGET_S:g} s", wall - probe < TARGET_S
                )
            )
    return common.report(NAME, args, rows, heads, notes)


if __name__ == "__main__":
    main()
