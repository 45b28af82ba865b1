"""Time a whole workflow run: `all` for one config, in a temporary copy, from nothing.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/workflow_run.py config/demo.yaml --cores 2

Prints the wall time of the run and, from the per-job benchmark files Snakemake wrote, the
wall and CPU seconds per rule. Budgets: config/test.yaml <= 3 min, the demo's IRNO part
<= 10 min on 2 cores. CPU seconds are the steadier figure on a shared machine: there the wall
times are pessimistic.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="e.g. config/demo.yaml")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--keep", help="copy the run's results/ here afterwards")
    args = parser.parse_args()
    run_name = yaml.safe_load((ROOT / args.config).read_text())["run_name"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("Snakefile", "workflow", "config", "envs", "profiles"):
            (shutil.copytree if (ROOT / name).is_dir() else shutil.copy2)(ROOT / name, Path(tmp) / name)
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "snakemake", "--cores", str(args.cores), "all", "--configfile", args.config],
            cwd=tmp, env=env, capture_output=True, text=True,
        )
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"snakemake failed after {wall:.0f} s:\n{proc.stderr[-4000:]}")
        rows = []
        bench_dir = Path(tmp) / "results" / run_name / "benchmarks"  # <rule>/<job>.tsv or <rule>.tsv
        for path in bench_dir.rglob("*.tsv"):
            rel = path.relative_to(bench_dir)
            row = pd.read_csv(path, sep="\t").iloc[-1]
            rows.append({"rule": rel.parts[0] if len(rel.parts) > 1 else rel.stem, "wall_s": row["s"], "cpu_s": row["cpu_time"]})
        if args.keep:
            shutil.copytree(Path(tmp) / "results", args.keep, dirs_exist_ok=True)
    per_rule = pd.DataFrame(rows).groupby("rule").agg(jobs=("wall_s", "size"), wall_s=("wall_s", "sum"), cpu_s=("cpu_s", "sum"))
    print(per_rule.sort_values("cpu_s", ascending=False).round(1).to_string())
    print(f"\n{args.config} on {args.cores} cores: {wall:.0f} s wall for the whole run; "
          f"{per_rule.cpu_s.sum():.0f} CPU s in jobs with a benchmark file")


if __name__ == "__main__":
    main()
