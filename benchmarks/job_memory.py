"""Memory of every cluster job: each rule's `irno` command at several data sizes, its peak memory
against what irno.cluster.held_bytes says the job holds, and a fit of fixed part + proportional part.

    python -m benchmarks.job_memory [--quick] [--sizes 64:81:2 64:81:12 128:81:2] [--roma-sizes 400:41 20000:401]

The data: simulated active_matter (irno.sim) of each size GRID:FRAMES:TRAIN (TRAIN training
trajectories, half as many, at least one, for valid and for test), and ROMA Kuramoto datasets
of each size NODES:FRAMES. The commands are the rules' (workflow/rules/*.smk), with settings from
a config like config/test.yaml (irno.study, irno.roma.study: as the settings rules write them),
small models and one epoch, on the CPU:

    simulate_dataset        irno simulate --workers 2 (the rule's threads)
    index_local_dataset     irno index --files-present, of the simulated dataset
    prepare_split           irno prepare, every split
    train_base              irno base train (an FNO of width 8, 1 epoch)
    check_base              irno base check --valid --test
    cache_base_predictions  irno base cache, every split
    train_phi           irno train (1 epoch; --memory-mb large: reads in place), and again with
                            train.num_workers 2: what a DataLoader worker adds
    evaluate                irno evaluate (the test split)
    roma_simulate, roma_encode, roma_train   irno roma simulate / encode / train (a roma model
                            that reads the encodings, 4 steps, then scored in the same job)

What is measured, per command: it runs in a fresh process while a thread reads
/proc/<pid>/status of it and of every process it started (the simulator's workers, DataLoader
workers) every 20 ms, and keeps the peaks of their sums of VmRSS (resident memory: anonymous
memory and the pages of mapped files it touched, e.g. the memory-mapped stores) and of RssAnon
(anonymous memory only: what the processes allocated themselves, which the kernel cannot drop).
Summed over processes, a page several of them map (a shared library, a forked worker's inherited
memory, a store they all read) counts once per process: an upper bound. `main_maxrss` is the
kernel's own peak RSS of the main process (ru_maxrss from wait4), a check on the sampling. A
SLURM job's cgroup is charged for both kinds, and also for the page cache of files read with
read() rather than mapped (HDF5 files), which is not in RSS: under its limit the kernel reclaims
file pages first, so anonymous memory is what must fit, and a working set of mapped files what
should fit to be read from memory.

The fit, per rule: peak = fixed + slope x bytes, least squares over the sizes of the first
size's grid, which differ in their data only (the ROMA sizes: all), where bytes is what
irno.cluster.held_bytes gives for the rule's job at that size, or, where that is the same at
every size of the grid (a batch's or a trajectory's worth: the grid's), the bytes of what the job
reads, so that the slope says whether the data's size matters. A slope near 1 against held bytes
says the formula counts what the job holds. A larger grid adds more than its data: every batch's
buffers and, on the CPU, the models' activations, which a GPU job keeps on the GPU; the table
gives that excess over the line ("beyond at G^2"). The fixed part is what `JOBS[rule].base_mb`
covers, with the headroom docs/slurm.md states.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks import common

NAME = "job_memory"
SAMPLE_S = 0.02
SPLITS = ("train", "valid", "test")
WORKERS = 2  # DataLoader workers of the second train_phi job: what a worker adds
IRNO = str(Path(sys.executable).parent / "irno")  # the command the rules call


# ----------------------------------------------------------------------------- measuring


def _status_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, RssAnon) of a process in KiB; zeros for one that is gone."""
    rss = anon = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("RssAnon:"):
                    anon = int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return rss, anon


class TreePeak(threading.Thread):
    """Samples the summed VmRSS and RssAnon of a process and its descendants until stopped (MB)."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak_rss_mb, self.peak_anon_mb = pid, 0.0, 0.0
        self.processes = 1  # the most processes seen at once
        self._stop_event = threading.Event()

    def run(self) -> None:
        import psutil

        root = psutil.Process(self.pid)
        while not self._stop_event.is_set():
            try:
                pids = [self.pid, *(child.pid for child in root.children(recursive=True))]
            except psutil.NoSuchProcess:
                return
            rss, anon = (sum(column) for column in zip(*map(_status_kb, pids), strict=True))
            self.peak_rss_mb = max(self.peak_rss_mb, rss / 1024)
            self.peak_anon_mb = max(self.peak_anon_mb, anon / 1024)
            self.processes = max(self.processes, len(pids))
            self._stop_event.wait(SAMPLE_S)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def measure(cmd: list[str], log_file: Path, threads: int) -> dict:
    """Run `cmd` as a job would, sampling its memory; its figures (MB, seconds)."""
    env = {k: v for k, v in common.child_env().items() if not k.startswith("SLURM_")}
    env.update(OMP_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
    started = time.perf_counter()
    with open(log_file, "w") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=common.ROOT)
        sampler = TreePeak(process.pid)
        sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        sampler.stop()
    if process.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({process.returncode}); its output: {log_file}")
    return {
        "peak_rss_mb": sampler.peak_rss_mb,
        "peak_anon_mb": sampler.peak_anon_mb,
        "main_maxrss_mb": usage.ru_maxrss / 1024,
        "processes": sampler.processes,
        "seconds": time.perf_counter() - started,
    }


def bytes_under(*paths: Path) -> int:
    """The bytes of the files at `paths` (files, or every file in folders)."""
    return sum(f.stat().st_size for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file())


# ----------------------------------------------------------------------------- the jobs


def config(size: tuple[int, int, int], roma: tuple[int, int] | None) -> dict:
    """A workflow config like config/test.yaml's at one data size (IRNO and, with `roma`, ROMA)."""
    grid, frames, train = size
    held_out = max(1, train // 2)
    cfg = {
        "run_name": "job_memory",
        "data_root": "data/the_well",  # the schema wants one; no dataset here is downloaded
        "device": "cpu",
        "datasets": {
            "active_matter": {
                "source": "simulate",
                "simulate": {
                    "grid": grid,
                    "frames": frames,
                    "train": {"pairs": [[1, -1]], "trajectories": train},
                    "valid": {"pairs": [[7, -2]], "trajectories": held_out},
                    "test": {"pairs": [[3, -4]], "trajectories": held_out},
                },
            }
        },
        "bases": {
            "FNO": {
                "model_class": "FNO",
                "source": "train",
                "model_kwargs": {"modes1": 4, "modes2": 4, "hidden_channels": 8},
                "epochs": 1,
            }
        },
        "phi": {"network": {"base_channels": 4, "depth": 2}, "train": {"K": 2, "epochs": 1, "batch_size": 8}},
        "evaluate": {"extra_steps": 2},
        "experiments": {"irno": {}},
    }
    if roma:
        nodes, roma_frames = roma
        cfg["roma"] = {
            "datasets": {
                "km": {
                    "graph": {"nodes": nodes, "mean_degree": 7.6394},
                    "kuramoto": {"t_end": 1.0, "frames": roma_frames},
                    "encodings": {"laplacian": 4, "node2vec": 4, "epochs": 1, "batch_nodes": 128},
                    "seed": 1,
                }
            },
            "model": {"width": 8, "depth": 1, "heads": 2, "basis": 4, "fourier_features": 8, "input_functions": 4,
                      "function_grid": 32, "encoder_width": 8, "coarse_nodes": 4, "encoding_width": 4},
            "train": {"history": 8, "subgraph_nodes": 32, "walk_length": 4, "steps": 4, "warmup_steps": 1,
                      "log_every": 2, "checkpoint_every": 2, "eval_windows": 2, "device": "cpu"},
            "experiments": {"positional": {"datasets": ["km"], "models": ["roma"]}},
        }  # fmt: skip
    return cfg


def run_jobs(root: Path, jobs: list[tuple], held, threads: int) -> list[dict]:
    """Run and measure `jobs`, in order: (rule, job name, the command's arguments after `irno` as the
    rule's shell line has them, the files or folders it reads, its wildcards for `held`)."""
    rows = []
    for rule, name, command, reads, wildcards in jobs:
        log_file = root / f"{rule}{'_' * bool(name)}{name.replace(' ', '_')}.log"
        figures = measure([IRNO, *command.split()], log_file, threads)
        rows.append(
            {
                "rule": rule,
                "job": name,
                "reads_mb": bytes_under(*reads) / 1e6 if reads else float("nan"),
                "held_mb": held(rule, wildcards) / 1e6,
                **figures,
            }
        )
    return rows


def irno_jobs(root: Path, cfg: dict, threads: int) -> list[dict]:
    """Run and measure every IRNO rule's command on the data of `cfg`, in pipeline order (paths
    without spaces: the commands are split on them)."""
    from irno.cluster import held_bytes
    from irno.config import SETTINGS_KINDS
    from irno.files import write_yaml
    from irno.settings import deep_merge, write_settings
    from irno.study import load_study, read_config

    write_yaml(root / "config.yaml", cfg)
    study = load_study(read_config([root / "config.yaml"]), common.ROOT)
    d, b = "active_matter", "FNO"
    phi = study.phi_settings("irno", b)
    settings = {  # what the settings rules write
        "simulate": ("simulate", study.simulate_settings(d)),
        "base": ("base", study.base_settings(d, b)),
        "phi": ("phi", phi),
        "phi_workers": ("phi", deep_merge(phi, {"train": {"num_workers": WORKERS}})),
        "eval": ("eval", study.eval_settings()),
    }
    for name, (kind, values) in settings.items():
        write_settings(SETTINGS_KINDS[kind], values, root / f"{name}.yaml")
    manifest, model, check = root / "manifest.json", root / "base" / "model", root / "base" / "base_check.json"
    store, cache = (lambda s: root / "prepared" / s), (lambda s: root / "base" / "cache" / s)
    data = f"--train {store('train')} --train-cache {cache('train')} "
    data += f"--valid {store('valid')} --valid-cache {cache('valid')}"
    phi_reads = [store("train"), cache("train"), store("valid"), cache("valid")]
    jobs = [
        (
            "simulate_dataset",
            "",
            f"simulate --config {root}/simulate.yaml --root {root}/well --manifest {manifest} "
            "--workers 2 --no-progress",
            [],
            {},
        ),
        (
            "index_local_dataset",
            "",
            f"index --dataset {d} --root {root}/well --manifest {root}/index.json --splits train valid test "
            "--files-present",
            [root / "well"],
            {},
        ),
    ]
    jobs += [
        (
            "prepare_split",
            s,
            f"prepare --manifest {manifest} --split {s} --out {store(s)}",
            [root / "well" / "datasets" / d / "data" / s],
            {"split": s},
        )
        for s in SPLITS
    ]
    jobs += [
        (
            "train_base",
            "",
            f"base train --config {root}/base.yaml --train {store('train')} --valid {store('valid')} --out {model}",
            [store("train"), store("valid")],
            {},
        ),
        (
            "check_base",
            "",
            f"base check --config {root}/base.yaml --model {model} --valid {store('valid')} "
            f"--test {store('test')} --out {check}",
            [store("valid"), store("test")],
            {},
        ),
    ]
    jobs += [
        (
            "cache_base_predictions",
            s,
            f"base cache --config {root}/base.yaml --model {model} --store {store(s)} --check {check} --out {cache(s)}",
            [store(s)],
            {"split": s},
        )
        for s in SPLITS
    ]
    jobs += [
        ("train_phi", "", f"train --config {root}/phi.yaml {data} --out {root}/run --memory-mb 1000000",
         phi_reads, {}),
        ("train_phi", f"num_workers {WORKERS}", f"train --config {root}/phi_workers.yaml {data} "
         f"--out {root}/run_workers --memory-mb 1000000", phi_reads, {}),
        ("evaluate", "", f"evaluate --config {root}/eval.yaml --checkpoint {root}/run/checkpoint.pt "
         f"--store {store('test')} --cache {cache('test')} --out {root}/eval --dataset {d} --base {b} "
         "--experiment irno", [store("test"), cache("test")], {}),
    ]  # fmt: skip
    return run_jobs(
        root, jobs, lambda rule, wc: held_bytes(rule, study, None, {"dataset": d, "base": b, **wc}), threads
    )


def roma_jobs(root: Path, cfg: dict, threads: int) -> list[dict]:
    """Run and measure the ROMA rules' commands on the dataset of `cfg`'s roma: section."""
    from irno.cluster import held_bytes
    from irno.roma.settings import SETTINGS_KINDS, study_from_dict
    from irno.roma.study import expand_study, settings_files
    from irno.settings import write_settings

    expanded = expand_study(study_from_dict(cfg["roma"]))
    for folder, (kind, values) in settings_files(expanded).items():
        write_settings(SETTINGS_KINDS[kind], values, root / folder / "settings.yaml")
    (key,) = expanded.runs
    data = root / "data" / "km"
    jobs = [
        ("roma_simulate", "", f"roma simulate --config {data}/settings.yaml --out {data}/dataset.h5", [],
         {"roma_dataset": "km"}),
        ("roma_encode", "", f"roma encode --config {data}/encodings/settings.yaml --data {data}/dataset.h5 "
         f"--out {data}/encodings/encodings.h5", [data / "dataset.h5"], {"roma_dataset": "km"}),
        ("roma_train", "", f"roma train --config {root}/runs/{key}/settings.yaml --data {data}/dataset.h5 "
         f"--encodings {data}/encodings/encodings.h5 --out-dir {root}/runs/{key} --evaluation {root}/eval/{key}",
         [data / "dataset.h5", data / "encodings" / "encodings.h5"], {"roma_run": key}),
    ]  # fmt: skip
    return run_jobs(root, jobs, lambda rule, wc: held_bytes(rule, None, expanded, wc), threads)


# ----------------------------------------------------------------------------- the fit


def fit(rows: list[dict]) -> list[dict]:
    """Per rule: peak = fixed + slope x bytes (held bytes, or bytes read where what it holds is the
    same at every size of a grid) over the sizes that differ in their data only (the first size's
    grid; for ROMA every size), what a larger grid adds beyond that line (per-batch buffers and
    activations), and what one DataLoader worker adds to train_phi."""
    from irno.cluster import JOBS

    out = []
    plain = [r for r in rows if not r["job"].startswith("num_workers")]
    grid = plain[0]["grid"]
    for rule in dict.fromkeys(r["rule"] for r in plain):
        mine = [r for r in plain if r["rule"] == rule]
        at_grid = [r for r in mine if r["grid"] in (grid, None)]
        # against what it holds where that differs between sizes of one grid; else (a batch, a
        # trajectory: the grid's) against what it reads, whose slope says whether the data's size matters
        by_held = len({r["held_mb"] for r in at_grid}) > 1
        x = np.array([r["held_mb"] if by_held else r["reads_mb"] for r in at_grid])
        line = {"rule": rule, "x": "held" if by_held else "reads", "x_mb": f"{x.min():.4g}-{x.max():.4g}"}
        line["held_mb"] = "-".join(
            f"{v:.4g}" for v in sorted({min(r["held_mb"] for r in mine), max(r["held_mb"] for r in mine)})
        )
        for peak in ("peak_anon_mb", "peak_rss_mb"):
            y = np.array([r[peak] for r in at_grid])
            if np.ptp(x) > 0 and np.all(np.isfinite(x)):
                slope, fixed = np.polyfit(x, y, 1)
            else:  # one size only: its peak is the fixed part
                slope, fixed = 0.0, y.max()
            name = peak[5:-3]
            line[f"{name}_fixed_mb"], line[f"{name}_slope"] = fixed, slope
            for r in mine:
                if r["grid"] not in (grid, None):
                    excess = r[peak] - fixed - slope * (r["held_mb"] if by_held else r["reads_mb"])
                    line[f"{name}_beyond_at_{r['grid']}^2_mb"] = excess
        line["largest_rss_mb"] = max(r["peak_rss_mb"] for r in mine)
        # what JOBS[rule].measured_mb takes from this: the fixed peak RSS, rounded up to 50 MB
        line["measured_mb"] = int(50 * np.ceil(line["rss_fixed_mb"] / 50))
        line["JOBS_measured_mb"], line["JOBS_base_mb"] = JOBS[rule].measured_mb, JOBS[rule].base_mb
        out.append(line)
    for with_workers in (r for r in rows if r["job"] == f"num_workers {WORKERS}"):
        without = next(r for r in plain if r["rule"] == with_workers["rule"] and r["size"] == with_workers["size"])
        out.append(
            {
                "rule": f"{with_workers['rule']}: one DataLoader worker ({with_workers['size']})",
                **{f"{peak[5:-3]}_per_worker_mb": (with_workers[peak] - without[peak]) / WORKERS
                   for peak in ("peak_anon_mb", "peak_rss_mb")},
            }
        )  # fmt: skip
    return out


def parse_size(text: str, parts: int) -> tuple[int, ...]:
    try:
        size = tuple(int(v) for v in text.split(":"))
    except ValueError:
        size = ()
    if len(size) != parts:
        raise argparse.ArgumentTypeError(f"{text!r}: expected {parts} whole numbers separated by ':'")
    return size


def main(argv: list[str] | None = None) -> dict:
    p = common.parser(NAME, __doc__)
    p.add_argument(
        "--sizes",
        nargs="+",
        type=lambda t: parse_size(t, 3),
        metavar="GRID:FRAMES:TRAIN",
        help="simulated active_matter sizes, the first grid's differing in their data only (default: "
        "32:41:2 32:41:8 64:41:2 quick; 64:81:2 64:81:12 128:81:2)",
    )
    p.add_argument("--roma-sizes", nargs="*", type=lambda t: parse_size(t, 2), metavar="NODES:FRAMES",
                   help="ROMA Kuramoto sizes (default: 400:41 4000:201 quick; 400:41 20000:401 100000:401); "
                   "none: no ROMA jobs")  # fmt: skip
    args = p.parse_args(argv)
    if args.sizes is None:
        args.sizes = (
            [(32, 41, 2), (32, 41, 8), (64, 41, 2)] if args.quick else [(64, 81, 2), (64, 81, 12), (128, 81, 2)]
        )
    if args.roma_sizes is None:
        args.roma_sizes = [(400, 41), (4000, 201)] if args.quick else [(400, 41), (20000, 401), (100000, 401)]

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            root = Path(tmp) / "x".join(map(str, size))
            root.mkdir()
            for row in irno_jobs(root, config(size, None), args.threads):
                rows.append({"size": f"{size[0]}^2, {size[1]} frames, {size[2]} train", "grid": size[0], **row})
            print(f"measured size {size}", flush=True)
        for roma in args.roma_sizes:
            root = Path(tmp) / f"roma_{roma[0]}_{roma[1]}"
            root.mkdir()
            for row in roma_jobs(root, config(args.sizes[0], roma), args.threads):
                rows.append({"size": f"{roma[0]} nodes, {roma[1]} frames", "grid": None, **row})
            print(f"measured ROMA size {roma}", flush=True)

    fits = fit(rows)
    print(pd.DataFrame(fits).to_markdown(index=False, floatfmt=".4g") + "\n")
    heads = []
    for f in fits:
        if "x" in f:
            heads.append(common.headline(f"{f['rule']}: fixed peak RSS (fit)", f["rss_fixed_mb"], "MB"))
            heads.append(common.headline(f"{f['rule']}: peak RSS MB per {f['x']} MB (fit)", f["rss_slope"], ""))
        else:
            heads.append(common.headline(f"{f['rule']}, anonymous", f["anon_per_worker_mb"], "MB"))
    notes = [
        f"each command in a fresh process, {args.threads} threads (OMP_NUM_THREADS), its process tree sampled "
        f"every {SAMPLE_S * 1e3:.0f} ms from /proc/<pid>/status (VmRSS, RssAnon)",
        "fit per rule: peak = fixed + slope x bytes over the sizes (bytes: irno.cluster.held_bytes of the job, "
        "or the bytes it reads where that is 0)",
    ]
    result = common.report(NAME, args, rows, heads, notes)
    from irno.files import write_json

    write_json(args.out, {**result, "fits": fits})
    return {**result, "fits": fits}


if __name__ == "__main__":
    main()
