"""Workflow end to end: `all` for one config, in a temporary copy, from nothing.

    python -m benchmarks.workflow_run [--quick] [--config config/demo.yaml] [--cores 2] [--target all]

Runs `snakemake --cores N TARGET --configfile CONFIG` (TARGET: `all`, or e.g. `roma` alone;
CONFIG: the demo, config/demo.yaml, or with --quick config/test.yaml) and reports the wall time of
the whole run and, from the per-job benchmark files Snakemake wrote, the wall and CPU seconds per
rule. Targets on 2 cores: the demo
<= 15 min, config/test.yaml <= 3 min. CPU seconds are the steadier figure on a shared
machine, where wall times are pessimistic.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pandas as pd
import yaml

from benchmarks import common
from benchmarks.workflow_parse import snakemake, workflow_copy

NAME = "workflow_run"
TARGETS_S = {"config/demo.yaml": 15 * 60, "config/test.yaml": 3 * 60}


def main(argv: list[str] | None = None) -> dict:
    p = common.parser(NAME, __doc__)
    p.add_argument("--config", help="the config to run (default: config/demo.yaml; --quick: config/test.yaml)")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--target", default="all", help="the rule or file to build (default: %(default)s)")
    p.add_argument("--keep", type=Path, help="copy the run's results/ here afterwards")
    args = p.parse_args(argv)
    args.config = args.config or ("config/test.yaml" if args.quick else "config/demo.yaml")
    run_name = yaml.safe_load((common.ROOT / args.config).read_text())["run_name"]
    with tempfile.TemporaryDirectory() as tmp:
        cwd = workflow_copy(Path(tmp))
        _, wall, _ = snakemake(["--cores", str(args.cores), args.target, "--configfile", args.config], cwd)
        rows = []
        bench_dir = cwd / "results" / run_name / "benchmarks"  # <rule>/<job>.tsv or <rule>.tsv
        for path in bench_dir.rglob("*.tsv"):
            rel = path.relative_to(bench_dir)
            last = pd.read_csv(path, sep="\t").iloc[-1]
            rows.append(
                {
                    "rule": rel.parts[0] if len(rel.parts) > 1 else rel.stem,
                    "wall_s": last["s"],
                    "cpu_s": last["cpu_time"],
                }
            )
        if args.keep:
            shutil.copytree(cwd / "results", args.keep, dirs_exist_ok=True)
    per_rule = (
        pd.DataFrame(rows)
        .groupby("rule")
        .agg(jobs=("wall_s", "size"), wall_s=("wall_s", "sum"), cpu_s=("cpu_s", "sum"))
    )
    per_rule = per_rule.sort_values("cpu_s", ascending=False).reset_index()
    target = TARGETS_S.get(args.config) if args.target == "all" else None
    heads = [
        common.headline(
            f"{args.config} {args.target} on {args.cores} cores, wall", wall, "s",
            f"<= {target / 60:g} min" if target else "", wall <= target if target else None,
        ),
        common.headline("CPU seconds in jobs with a benchmark file", float(per_rule.cpu_s.sum()), "s"),
    ]  # fmt: skip
    return common.report(
        NAME, args, per_rule.to_dict("records"), heads, ["per rule: sums over its jobs' Snakemake benchmark files"]
    )


if __name__ == "__main__":
    main()
