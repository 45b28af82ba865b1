"""Run the benchmarks, each in a fresh process, and print one table of their headline figures.

    python -m benchmarks                 # the figures of benchmarks/README.md (about 30 min on 2 idle cores)
    python -m benchmarks --quick         # smaller problems and no end-to-end run: a few minutes
    python -m benchmarks --only train evaluate

Each benchmark writes OUT/<name>.json (default OUT: results/benchmarks); this writes
OUT/summary.json and OUT/summary.md (the machine, the load before and after, every headline
figure against its target). A benchmark that fails is reported and the others still run; the
exit status is then 1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import common

BENCHMARKS = [
    "train",
    "evaluate",
    "base_cache",
    "memory",
    "workflow_parse",
    "workflow_run",
    "simulate",
    "report_speed",
    "roma_graphs",
    "roma_train",
    "hashing",
    "job_memory",
    "workers",
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="smaller problems: a few minutes in all")
    p.add_argument(
        "--only", nargs="+", choices=BENCHMARKS, metavar="NAME", help=f"run these only ({', '.join(BENCHMARKS)})"
    )
    p.add_argument("--out", type=Path, default=common.RESULTS, help="folder for the JSON files (default: %(default)s)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads of every benchmark (default: %(default)s)")
    args = p.parse_args(argv)
    # --quick leaves the end-to-end run out (minutes even for config/test.yaml, which the tests run anyway)
    names = args.only or [name for name in BENCHMARKS if not (args.quick and name == "workflow_run")]
    load_before = [round(v, 2) for v in os.getloadavg()]
    env = dict(common.child_env(), PYTHONWARNINGS="ignore")
    runs = []
    for name in names:
        out = args.out / f"{name}.json"
        cmd = [sys.executable, "-m", f"benchmarks.{name}", "--out", str(out), "--threads", str(args.threads)] + [
            "--quick"
        ] * args.quick
        print(f"\n=== {' '.join(cmd[1:])}", flush=True)
        start = time.perf_counter()
        code = subprocess.run(cmd, cwd=common.ROOT, env=env).returncode
        runs.append({"benchmark": name, "seconds": time.perf_counter() - start, "exit_status": code, "json": str(out)})

    headlines, failed = [], [r["benchmark"] for r in runs if r["exit_status"]]
    for run in runs:
        if not run["exit_status"]:
            headlines += json.loads(Path(run["json"]).read_text())["headlines"]
    machine = {**common.machine(), "load_average_before": load_before}
    summary = {
        "command": " ".join(["python -m benchmarks", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine,
        "runs": runs,
        "headlines": headlines,
    }
    m = machine
    text = "\n".join(
        [
            common.headline_table(headlines) if headlines else "(no figures)",
            "",
            f"Machine: {m['cpu']}, {m['cores']} cores, {args.threads} torch threads, GPU: {m['gpu'] or 'none'}; "
            f"torch {m['torch']}, "
            f"Python {m['python']}. Load average (1, 5, 15 min) before: {load_before}, after: {m['load_average']}.",
            f"Command: `{summary['command']}`; {sum(r['seconds'] for r in runs) / 60:.1f} min in all."
            + (f" Failed: {', '.join(failed)}." if failed else ""),
        ]
    )
    print("\n" + text)
    from irno.files import atomic_path, write_json

    write_json(args.out / "summary.json", summary)
    with atomic_path(args.out / "summary.md") as tmp:
        tmp.write_text(text + "\n")
    print(f"wrote {args.out / 'summary.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
