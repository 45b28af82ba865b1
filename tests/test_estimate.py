"""`irno estimate`: the cost of a config's run before submitting, without data or GPU.

Its job list must be Snakemake's (compared with a dry run for every shipped config), its requested
GPU-hours the rules' own resources, its expected GPU-hours the work counted in FLOPs over a stated
throughput, and its disk figures the bytes of the stores, caches and checkpoints.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from workflow_copy import copy_workflow, snakemake

from irno import IrnoError, estimate
from irno.cluster import SiteSettings
from irno.files import write_json
from irno.sizes import WELL_SHAPES, simulated_shape
from irno.study import load_study, read_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ["test", "demo", "config", "roma", "cpu_study", "cpu_study_bases"]


def study_and_roma(name: str, **overrides):
    study = load_study(read_config([ROOT / "config" / f"{name}.yaml"], overrides), ROOT)
    return study, estimate.roma_expanded(study)


def job_counts(dry_run_output: str) -> dict[str, int]:
    table = dry_run_output.split("Job stats:", 1)[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m.group(1) != "total"}


@pytest.fixture(scope="module")
def workflow(tmp_path_factory) -> Path:
    return copy_workflow(tmp_path_factory.mktemp("estimate"))


@pytest.mark.parametrize("name", CONFIGS)
def test_the_jobs_are_snakemakes(workflow, name):
    counts = job_counts(snakemake(workflow, "-n", "all", "--configfile", f"config/{name}.yaml").stdout)
    counts.pop("all")
    jobs = estimate.all_jobs(*study_and_roma(name))
    assert {rule: len(entries) for rule, entries in jobs.items() if entries} == counts


def test_requested_gpu_hours_are_the_rules_time_limits(workflow):
    """The dry run's runtime of every GPU job, summed, is the estimate's requested GPU-hours."""
    out = snakemake(workflow, "-n", "all", "--configfile", "config/config.yaml").stdout
    minutes: dict[str, float] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out):
        rule = re.match(r"rule (\w+):", block)
        found = re.search(r"^\s+resources: (.*)$", block, re.M)
        if rule and found:
            job = dict(kv.split("=", 1) for kv in found.group(1).split(", "))
            if "gpu" in job:
                minutes[rule.group(1)] = minutes.get(rule.group(1), 0) + int(job["gpu"]) * int(job["runtime"])
    result = estimate.estimate(*study_and_roma("config"), SiteSettings(), estimate.Rates())
    requested = {r.rule: r.requested_gpu_hours for r in result.rules if r.gpus}
    assert requested == pytest.approx({rule: m / 60 for rule, m in minutes.items()})
    assert requested["train_phi"] == 72 * 24  # 2 datasets x 2 bases x 18 trained experiments, 24 h each


def test_expected_hours_are_flops_over_the_stated_throughput():
    study, roma = study_and_roma("config")
    rates = estimate.Rates("h100", 0.2)
    result = estimate.estimate(study, roma, SiteSettings(), rates)
    train = next(r for r in result.rules if r.rule == "train_phi")
    # one run by hand: the paper's Phi on active_matter, FNO (K = 6), fp32 with TF32 convolutions
    am = WELL_SHAPES["active_matter"]
    step, forward = estimate.phi_flops('{"backbone": "unet", "base_channels": 16, "depth": 4}', 11, (256, 256), 6)
    assert 170e9 < step < 200e9  # the objective's 6 unrolled passes and the fixed-point pass, per sample
    flops = 150 * (am.samples("train") * step + am.samples("valid") * 6 * forward)
    hours = flops / (0.2 * 494.7e12) / 3600
    one = estimate.expected_work("train_phi", {"dataset": "active_matter", "base": "FNO", "experiment": "irno",
                                                   "seed": 42}, study, roma, rates)  # fmt: skip
    assert one[0] / one[1].flops_per_second / 3600 == pytest.approx(hours)
    assert "20% of the H100 tf32 peak" in one[1].source and "assumed" in one[1].source
    assert 0 < train.expected_gpu_hours < train.requested_gpu_hours
    # more seeds, proportionally more training
    three = estimate.estimate(*study_and_roma("config", seeds=[42, 43, 44]), SiteSettings(), rates)
    train3 = next(r for r in three.rules if r.rule == "train_phi")
    assert train3.jobs == 3 * train.jobs and train3.expected_gpu_hours == pytest.approx(3 * train.expected_gpu_hours)


def test_phi_flops_are_linear_in_the_refinement_steps():
    cfg = '{"backbone": "unet", "base_channels": 4, "depth": 2}'
    counts = [estimate.phi_flops(cfg, 11, (32, 32), K)[0] for K in (1, 2, 3)]
    direct = estimate._count_flops(  # K = 3 counted directly, not extended
        lambda: (estimate_objective(3), [__import__("torch").randn(1, c, 32, 32) for c in (44, 11, 11)]),
        lambda objective, tensors: objective(*tensors, 1.0, 1.0)[0].backward(),
    )
    assert counts[2] == pytest.approx(direct) and counts[1] - counts[0] == pytest.approx(counts[2] - counts[1])


def estimate_objective(K: int):
    from irno.config import LossConfig, NetworkConfig
    from irno.refinement.phi import build_phi
    from irno.refinement.train import Objective

    return Objective(build_phi(NetworkConfig(base_channels=4, depth=2), 55, 11), LossConfig(), K, 0.2)


def test_a_measured_gpu_benchmark_is_used_where_there_is_one(tmp_path):
    bench = tmp_path / "train.json"
    write_json(bench, {
        "machine": {"gpu": "NVIDIA H100 80GB HBM3"}, "params": {"grid": 256},
        "headlines": [{"metric": "training throughput, ours (256^2, batch 16, cuda bf16)", "value": 1200.0}],
    })  # fmt: skip
    measured = estimate.measured_training(bench)
    step, _ = estimate.phi_flops('{"backbone": "unet"}', 11, (256, 256), 6)
    assert measured.flops_per_second == pytest.approx(1200 * step) and "measured: 1200 samples/s" in measured.source
    rates = estimate.Rates("h100", 0.2, measured)
    assert rates.for_training(bf16=True) is measured
    assert rates.for_training(bf16=False).source.startswith("20% of the H100 tf32 peak")  # other precision: the bound
    write_json(bench, {"machine": {"gpu": ""}, "params": {"grid": 64}, "headlines": []})  # a CPU run
    assert estimate.measured_training(bench) is None and estimate.measured_training(tmp_path / "none.json") is None


def test_disk_is_the_stores_caches_and_checkpoints():
    study, roma = study_and_roma("config")
    folders = {f.what: f for f in estimate.folders(study, roma)}
    am, trl = WELL_SHAPES["active_matter"], WELL_SHAPES["turbulent_radiative_layer_2D"]
    assert folders["The Well's files (downloads)"].bytes == pytest.approx(51.3e9 + 6.9e9)
    stores = sum(shape.store_bytes(s) for shape in (am, trl) for s in ("train", "valid", "test"))
    assert folders["prepared stores"].bytes == pytest.approx(stores)
    assert folders["prepared stores"].path == Path("results/paper/data")
    caches = 2 * sum(shape.cache_bytes(s) for shape in (am, trl) for s in ("train", "valid", "test"))
    assert caches < folders["base models, checks and caches"].bytes < caches + 1e9  # + four 19M-parameter models
    roma = {f.what: f for f in estimate.folders(*study_and_roma("roma"))}
    assert 60e9 < roma["ROMA series and graphs"].bytes < 70e9  # two 3.85M-node, two smaller graphs, 2001 frames
    assert roma["ROMA graph encodings"].path == Path("results/paper_roma/roma/data")
    # results_root moves every folder but the downloads
    moved = {f.what: f for f in estimate.folders(*study_and_roma("config", results_root="/scratch/irno"))}
    assert moved["trainings (Phi, resume states)"].path == Path("/scratch/irno/paper/runs")
    assert moved["The Well's files (downloads)"].path == Path("data/the_well")


def test_simulated_data_are_sized_from_their_settings():
    study, _ = study_and_roma("demo")
    shape = simulated_shape(study.simulate_settings("active_matter"))
    folders = {f.what: f for f in estimate.folders(*study_and_roma("demo"))}
    assert folders["simulated datasets (The Well's format)"].bytes == shape.files_bytes > 0
    assert "The Well's files (downloads)" not in folders


def test_a_dataset_of_unknown_size_is_named(tmp_path):
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["datasets"] = {"MHD_64": {"source": "download"}}
    config["report"]["figure_dataset"] = ""
    config["bases"]["FNO"]["by_dataset"] = config["bases"]["TFNO"]["by_dataset"] = {}
    (tmp_path / "mhd.yaml").write_text(yaml.safe_dump(config))
    study = load_study(read_config([tmp_path / "mhd.yaml"]), ROOT)
    result = estimate.estimate(study, None, SiteSettings(), estimate.Rates())
    train = next(r for r in result.rules if r.rule == "train_phi")
    assert train.expected_gpu_hours == 0 and "36 job(s) on data of unknown size not counted" in train.basis
    assert "not counted: MHD_64" in next(f.note for f in result.folders if f.what == "prepared stores")


def test_read_config_validates_like_the_workflow(tmp_path):
    (tmp_path / "bad.yaml").write_text("run_name: x\nroma: {datasets: {a: {}}, experiments: {ablations: {}}}\n")
    with pytest.raises(IrnoError, match=r"invalid config \(.*bad.yaml\): config key 'roma.experiments'"):
        read_config([tmp_path / "bad.yaml"])
    config = read_config([ROOT / "config" / "config.yaml"], {"results_root": "/x"})
    assert config["results_root"] == "/x" and config["shared_root"] is None  # defaults filled


def test_the_command_prints_the_table_in_seconds(tmp_path):
    start = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "irno.cli", "estimate", "--config", "config/config.yaml", "--set",
         f"results_root={tmp_path}/out", "--measured", str(tmp_path / "none.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert re.search(r"^train_phi\s+72\s+1\s+1,728\.0\s+\d", out, re.M), out
    assert re.search(r"^total\s+255\s+1,904\.0", out, re.M), out
    assert (
        "check_base, cache_base_predictions, train_phi, evaluate: 98.9 TFLOP/s, 20% of the H100 tf32 peak "
        "(494.7 TFLOP/s dense, NVIDIA's datasheet): assumed" in out
    )
    assert f"{tmp_path}/out/paper/data" in out and "free there GB" in out
    assert seconds < 120  # seconds on an idle machine; loaded CI machines are slower


def test_flop_counts_are_kept_between_runs(tmp_path, monkeypatch):
    calls = []

    def count():
        calls.append(1)
        return [1.0, 2.0]

    first = estimate.FlopCounts(tmp_path)
    assert first.get("phi x", count) == [1.0, 2.0] and first.get("phi x", count) == [1.0, 2.0] and len(calls) == 1
    assert estimate.FlopCounts(tmp_path).get("phi x", count) == [1.0, 2.0] and len(calls) == 1  # from the file
    assert first.path.name == f"flop-counts-{estimate._code_fingerprint()}.json"  # another code: another file
    first.path.write_text("{not json")
    assert estimate.FlopCounts(tmp_path).get("phi x", count) == [1.0, 2.0] and len(calls) == 2  # counted again
    monkeypatch.setenv("IRNO_FLOP_CACHE", "off")
    assert estimate.flop_cache_folder() is None
    assert estimate.FlopCounts(None).get("phi x", count) == [1.0, 2.0] and len(calls) == 3


def test_roma_trainings_are_expected_at_tf32_as_the_reference_computes():
    from irno.roma.cost import train_step_flops

    study, roma = study_and_roma("roma")
    key, run = next(
        (k, r) for k, r in roma.runs.items() if r["dataset"] == "km38k" and r["model"]["kind"] == "deeponet"
    )
    flops, throughput = estimate.expected_work(
        "roma_train", {"roma_run": key}, study, roma, estimate.Rates("h100", 0.2)
    )
    assert flops == run["train"]["steps"] * train_step_flops(run, roma) == pytest.approx(50_000 * 1.28e12, rel=0.01)
    assert throughput.flops_per_second == pytest.approx(0.2 * 494.7e12) and "tf32" in throughput.source
