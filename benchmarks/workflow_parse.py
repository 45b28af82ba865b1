"""How long Snakemake takes to parse the workflow and build the paper's full DAG (target: < 5 s).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/workflow_parse.py [--repeats 5]

Runs `snakemake -n all --configfile config/config.yaml` (no data needed) in a temporary copy
and reports the job count, the wall time of each repeat and the CPU time it used (user + sys,
which contention inflates far less). On a shared, busy machine the wall times are pessimistic.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--config", default="config/config.yaml")
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("Snakefile", "workflow", "config", "envs", "profiles"):
            (shutil.copytree if (ROOT / name).is_dir() else shutil.copy2)(ROOT / name, Path(tmp) / name)
        times, cpu_times = [], []
        for _ in range(args.repeats):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "snakemake", "-n", "--quiet", "all", "--configfile", args.config],
                cwd=tmp, env=env, capture_output=True, text=True,
            )
            times.append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu_times.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            if proc.returncode != 0:
                sys.exit(f"snakemake failed:\n{proc.stderr[-3000:]}")
        jobs = re.search(r"^total\s+(\d+)$", proc.stdout + proc.stderr, re.M)
    print(
        f"{args.config}: {jobs.group(1) if jobs else '?'} jobs; dry run (parse + DAG) over {len(times)} repeats: "
        f"wall min {min(times):.2f} s, median {sorted(times)[len(times) // 2]:.2f} s; "
        f"CPU min {min(cpu_times):.2f} s"
    )


if __name__ == "__main__":
    main()
