"""The study a workflow config describes (irno.study) and the settings files the rules write."""

import copy
import re
from pathlib import Path

import pytest
import yaml

from irno import IrnoError
from irno.cli import main
from irno.config import PhiConfig
from irno.files import read_yaml
from irno.settings import from_dict
from irno.study import load_study

ROOT = Path(__file__).resolve().parents[1]
PAPER_EXPERIMENTS = 19  # irno, 2 ablated terms, 4 K, 4 alpha, 4 fixed lambda, 2 norms, phi_fno, transfer


def config(name: str) -> dict:
    return yaml.safe_load((ROOT / "config" / f"{name}.yaml").read_text())


@pytest.fixture
def paper() -> dict:
    return config("config")


def test_paper_runs_are_the_full_product(paper):
    study = load_study(paper)
    assert len(study.experiments) == PAPER_EXPERIMENTS
    trained = [r for r in study.runs if not r.is_transfer]
    assert len(trained) == 2 * 2 * (PAPER_EXPERIMENTS - 1)
    transfers = [r for r in study.runs if r.is_transfer]
    # the TFNO-trained Phi on FNO's predictions, on both datasets
    assert {(r.dataset, r.base, r.trained_on_base, r.trained_experiment) for r in transfers} == {
        ("active_matter", "FNO", "TFNO", "irno"),
        ("turbulent_radiative_layer_2D", "FNO", "TFNO", "irno"),
    }
    assert study.well_root("active_matter") == Path("data/the_well")


def test_restricted_product(paper):
    paper["runs"] = {"datasets": ["active_matter"], "bases": None, "experiments": ["irno", "K_4"]}
    study = load_study(paper)
    assert sorted((r.base, r.experiment) for r in study.runs) == [
        ("FNO", "K_4"),
        ("FNO", "irno"),
        ("TFNO", "K_4"),
        ("TFNO", "irno"),
    ]
    assert all(r.dataset == "active_matter" for r in study.runs)


def test_experiment_settings_are_defaults_deep_merged_with_overrides(paper):
    study = load_study(paper)
    settings = from_dict(PhiConfig, study.phi_settings("alpha_0.5", "FNO"))
    assert settings.train.alpha == 0.5 and settings.train.K == 6 and settings.train.epochs == 150
    assert study.phi_settings("norm_batch", "FNO")["network"] == {
        "backbone": "unet",
        "base_channels": 16,
        "depth": 4,
        "norm": "batch",
    }
    assert "group" not in study.phi_settings("K_4", "FNO")
    # the defaults themselves are untouched by the merge
    assert study.phi_settings("irno", "FNO")["network"]["norm"] == "layer"


def test_base_settings_per_dataset(paper):
    study = load_study(paper)
    am = study.base_settings("active_matter", "TFNO")
    assert am["pretrained"] == "polymathic-ai/TFNO-active_matter"
    assert am["published_valid_vrmse"] == 0.3342 and am["forward"] == "auto"
    assert am["published_single_pass_pooled"] == 0.1981 and "model cards" in am["published_source"]
    assert "by_dataset" not in am
    trl = study.base_settings("turbulent_radiative_layer_2D", "TFNO")
    assert trl["pretrained"] == "polymathic-ai/TFNO-turbulent_radiative_layer_2D"
    assert (trl["published_valid_vrmse"], trl["published_single_pass_pooled"]) == (0.4938, 0.2371)
    assert study.bases_from("pretrained") == ["FNO", "TFNO"] and study.bases_from("train") == []


def test_by_base_sets_keys_before_the_experiments_overrides(paper):
    study = load_study(paper)
    K = {(e, b): study.phi_settings(e, b)["train"]["K"] for e in ("irno", "K_2", "alpha_0.5") for b in study.bases}
    # the paper's K per base: 6 on FNO, 4 on TFNO; K_2 sets K itself and wins on both
    assert K == {
        ("irno", "FNO"): 6, ("irno", "TFNO"): 4, ("K_2", "FNO"): 2, ("K_2", "TFNO"): 2,
        ("alpha_0.5", "FNO"): 6, ("alpha_0.5", "TFNO"): 4,
    }  # fmt: skip
    assert study.phi_settings("alpha_0.5", "TFNO")["train"]["alpha"] == 0.5


def test_seeds_repeat_every_run_and_set_the_training_seed(paper):
    one = load_study(paper)
    assert one.seeds == [42] and not one.multi_seed and {r.seed for r in one.runs} == {42}
    paper["seeds"] = [42, 43, 44]
    study = load_study(paper)
    assert study.multi_seed and len(study.runs) == 3 * len(one.runs)
    assert [study.phi_settings("irno", "FNO", s)["train"]["seed"] for s in (42, 43, 44)] == [42, 43, 44]
    # a transfer evaluates the source base's Phi of the same seed
    transfers = [r for r in study.runs if r.is_transfer and r.dataset == "active_matter"]
    assert [(r.seed, r.trained_on_base) for r in transfers] == [(42, "TFNO"), (43, "TFNO"), (44, "TFNO")]
    assert study.report_plan()["seeds"] == [42, 43, 44] and one.report_plan()["seeds"] == []
    # without a seeds list, each experiment trains once with its own train.seed
    del paper["seeds"]
    paper["experiments"]["s7"] = {"train": {"seed": 7}}
    plain = load_study(paper)
    assert plain.seeds is None and plain.run_seeds == [None]
    assert plain.phi_settings("s7", "FNO")["train"]["seed"] == 7


def test_report_defaults_name_only_what_the_config_defines(paper):
    paper["experiments"] = {"irno": {}}
    paper["report"] = {}
    plan = load_study(paper).report_plan()
    assert plan["main_experiment"] == "irno" and plan["band_experiments"] == ["irno"] and plan["sweeps"] == {}
    paper["experiments"] = {"full": {}, "K_3": {"train": {"K": 3}}}
    plan = load_study(paper).report_plan()
    assert plan["main_experiment"] == "full" and plan["sweeps"] == {"K": ["K_3"]}


def test_sweeps_can_be_set_explicitly(paper):
    paper["report"] = {"sweeps": {"K": ["K_2", "K_8"]}}
    assert load_study(paper).report_plan()["sweeps"] == {"K": ["K_2", "K_8"]}
    paper["report"] = {"sweeps": {"alpha": ["transfer"]}}
    with pytest.raises(IrnoError, match=r"'report\.sweeps\.alpha\[0\]': 'transfer' is not a trained experiment"):
        load_study(paper)


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda c: c["experiments"].update(K_0={"train": {"K": 0}}),
            r"experiments\.K_0: config key 'train\.K': 0 is invalid \(must be >= 1\)",
        ),
        (
            lambda c: c["experiments"].update(a0={"train": {"alpha": 0}}),
            r"experiments\.a0: config key 'train\.alpha'.*> 0",
        ),
        (
            lambda c: c["experiments"].update(bad={"train": {"K": "six"}}),
            r"'experiments\.bad\.train\.K': expected an integer, got 'six'",
        ),
        (
            lambda c: c["experiments"].update(bad={"network": {"norm": "instance"}}),
            r"'experiments\.bad\.network\.norm': 'instance' is not one of",
        ),
        (lambda c: c["phi"]["train"].update(Kx=1), r"unknown config key 'phi\.train\.Kx'"),
        (lambda c: c["evaluate"].update(extra_steps=-1), r"config key 'evaluate\.extra_steps': -1 is invalid"),
        (lambda c: c["bases"]["FNO"].update(lr=-1.0), r"bases\.FNO: config key 'base\.lr'"),
        (lambda c: c["bases"]["FNO"].update(pretrained=""), r"bases\.FNO: config key 'base\.pretrained'"),
        (
            lambda c: c["bases"]["FNO"]["by_dataset"].update(active_matter={"source": "train"}),
            r"'bases\.FNO\.by_dataset\.active_matter\.source'",
        ),
        (lambda c: c["bases"]["FNO"]["by_dataset"].update(burgers={}), r"'bases\.FNO\.by_dataset\.burgers'"),
        (
            lambda c: c["datasets"].update(turbulent_radiative_layer_2D={"source": "simulate"}),
            r"'datasets\.turbulent_radiative_layer_2D\.source'.*only produces active_matter",
        ),
        (
            lambda c: c["datasets"].update(active_mater={"source": "download"}),
            r"'active_mater' is not a dataset of The Well",
        ),
        (
            lambda c: c["datasets"]["active_matter"].update(simulate={"grid": 32}),
            r"'datasets\.active_matter\.simulate'.*source: simulate",
        ),
        (lambda c: c.update(runs={"bases": ["FNO", "XFNO"]}), r"'runs\.bases\[1\]': 'XFNO' is not defined"),
        (
            lambda c: c.update(runs={"bases": ["FNO", "TFNO"], "experiments": ["irno", "K_9"]}),
            r"'runs\.experiments\[1\]': 'K_9'",
        ),
        (lambda c: c.update(ablation="K_9"), r"'ablation': 'K_9' is not an experiment"),
        (
            lambda c: c["experiments"].update(transfer={"transfer_from": "UNet"}),
            r"'experiments\.transfer\.transfer_from': 'UNet' is not one of the bases",
        ),
        (
            lambda c: c["experiments"].update(transfer={"transfer_from": "TFNO", "transfer_experiment": "transfer"}),
            r"'experiments\.transfer\.transfer_experiment'",
        ),
        (
            lambda c: c["experiments"].update(transfer={"transfer_from": "TFNO", "train": {"K": 2}}),
            r"'experiments\.transfer\.train': a transfer experiment",
        ),
        (
            lambda c: c["experiments"].update(K_2={"train": {"K": 2}, "transfer_experiment": "irno"}),
            r"'experiments\.K_2\.transfer_experiment'",
        ),
        (
            lambda c: c.update(runs={"bases": ["FNO"]}),
            r"'experiments\.transfer\.transfer_from': base 'TFNO' is not among the selected bases",
        ),
        (lambda c: c.update(runs={"bases": ["TFNO"]}), r"'experiments\.transfer': a transfer needs at least two bases"),
        (
            lambda c: c["phi"]["by_base"].update(UNet={"train": {"K": 2}}),
            r"'phi\.by_base\.UNet': 'UNet' is not one of the bases",
        ),
        (
            lambda c: c["phi"]["by_base"].update(TFNO={"train": {"K": 0}}),
            r"phi\.by_base\.TFNO: config key 'train\.K': 0 is invalid",
        ),
        (
            lambda c: c["experiments"].update(s7={"train": {"seed": 7}}),
            r"'experiments\.s7\.train\.seed': the top-level `seeds:` \(\[42\]\) sets every run's training seed",
        ),
        (
            lambda c: c["phi"]["train"].update(seed=1),
            r"'phi\.train\.seed': the top-level `seeds:`",
        ),
    ],
)
def test_bad_configs_are_rejected_naming_the_key(paper, edit, message):
    edit(paper)
    with pytest.raises(IrnoError, match=message):
        load_study(paper)


def test_transfer_can_be_left_out_when_one_base_is_selected(paper):
    paper["runs"] = {"bases": ["FNO"], "experiments": ["irno", "K_4"]}
    study = load_study(paper)
    assert {r.base for r in study.runs} == {"FNO"}
    assert study.report_plan()["figure_base"] == ""  # TFNO is not selected: the report takes the first base


@pytest.mark.parametrize("name", ["demo", "test", "cpu_study", "cpu_study_bases"])
def test_shipped_configs_resolve(name):
    study = load_study(config(name))
    assert study.results_dir == Path("results") / name
    assert study.datasets_from("simulate") == ["active_matter"]
    assert study.well_root("active_matter") == Path("results") / name / "data" / "active_matter" / "well"
    assert study.runs and all(study.base_settings("active_matter", b)["source"] == "train" for b in study.bases)


def test_report_plan(paper):
    plan = load_study(paper).report_plan()
    assert plan["datasets"] == ["active_matter", "turbulent_radiative_layer_2D"] and plan["bases"] == ["FNO", "TFNO"]
    assert len(plan["experiments"]) == PAPER_EXPERIMENTS
    groups = {e["name"]: e["group"] for e in plan["experiments"]}
    assert groups["irno"] == "full method" and groups["K_4"] == "K" and groups["transfer"] == "transfer"
    # sweeps: the experiments that change train.K (alpha) and nothing else
    assert plan["sweeps"] == {
        "K": ["K_1", "K_2", "K_4", "K_8"],
        "alpha": ["alpha_0.1", "alpha_0.3", "alpha_0.4", "alpha_0.5"],
    }
    assert plan["main_experiment"] == "irno" and plan["band_experiments"] == ["irno", "no_spectral"]
    assert plan["simulated"] == [] and plan["reported_names"] == {"FNO": "FNO", "TFNO": "TFNO"}


SHIPPED = sorted(p.stem for p in (ROOT / "config").glob("*.yaml") if p.stem not in ("reported", "claims"))


def test_every_shipped_config_takes_seeds():
    assert {"config", "demo", "test", "cpu_study", "cpu_study_bases"} <= set(SHIPPED)
    for name in SHIPPED:
        cfg = config(name)
        if "datasets" not in cfg:  # the ROMA study alone (config/roma.yaml): no IRNO trainings
            continue
        cfg["phi"].get("train", {}).pop("seed", None)
        for spec in cfg["experiments"].values():
            (spec or {}).get("train", {}).pop("seed", None)
        cfg["seeds"] = [7, 8]
        study = load_study(cfg)
        assert study.multi_seed and {r.seed for r in study.runs} == {7, 8}, name
        run = study.runs[0]
        if not run.is_transfer:
            assert study.phi_settings(run.experiment, run.base, 8)["train"]["seed"] == 8


def test_the_cpu_study_is_the_papers_method_with_three_seeds():
    study = load_study(config("cpu_study"))
    assert study.seeds == [42, 43, 44]
    assert set(study.experiments) == {"irno", "no_spectral", "no_fixed_point", "K_2", "K_4", "alpha_0.4", "alpha_0.5"}
    irno = from_dict(PhiConfig, study.phi_settings("irno", "FNO", 42))
    paper = PhiConfig()  # the dataclass defaults are the paper's
    assert (irno.network.base_channels, irno.network.depth, irno.network.norm) == (16, 4, "layer")
    assert (irno.train.K, irno.train.alpha) == (paper.train.K, paper.train.alpha)
    assert (irno.loss.spectral_weight, irno.loss.lambda_start, irno.loss.lambda_end, irno.loss.fixed_point_weight) == (
        paper.loss.spectral_weight, paper.loss.lambda_start, paper.loss.lambda_end, paper.loss.fixed_point_weight,
    )  # fmt: skip
    # the base resolves 1/8 of the Nyquist range, as the paper's FNO (16 of 128 modes)
    base = study.base_settings("active_matter", "FNO")
    grid = study.simulate_settings("active_matter")["grid"]
    assert base["model_kwargs"]["modes1"] / (grid // 2) == 16 / 128


def test_the_demo_is_set_up_like_the_papers_run():
    study = load_study(config("demo"))
    irno = from_dict(PhiConfig, study.phi_settings("irno", "FNO", study.runs[0].seed))
    paper = PhiConfig()
    assert (irno.network.base_channels, irno.network.depth, irno.network.norm) == (16, 4, "layer")
    assert (irno.train.alpha, irno.loss.spectral_weight, irno.loss.fixed_point_weight) == (
        paper.train.alpha, paper.loss.spectral_weight, paper.loss.fixed_point_weight,
    )  # fmt: skip
    # 1/8 of the Nyquist range, trained as the published checkpoints were; run as the base check decides
    base = study.base_settings("active_matter", "FNO")
    assert base["model_kwargs"]["modes1"] / (study.simulate_settings("active_matter")["grid"] // 2) == 16 / 128
    assert (base["train_forward"], base["forward"]) == ("legacy", "auto")


@pytest.mark.parametrize("name", ["config", "demo", "test", "cpu_study", "cpu_study_bases"])
def test_report_plan_is_a_valid_report_plan(name):
    from irno.config import ReportPlan

    study = load_study(config(name))
    plan = from_dict(ReportPlan, study.report_plan())
    assert plan.main_experiment in [e.name for e in plan.experiments]
    assert plan.simulated == study.datasets_from("simulate")


def test_report_plan_follows_the_selection(paper):
    paper["runs"] = {"experiments": ["irno", "K_4", "alpha_0.5"]}
    paper["experiments"]["K_4"]["label"] = "K = 4"
    plan = load_study(paper).report_plan()
    assert [e["name"] for e in plan["experiments"]] == ["irno", "K_4", "alpha_0.5"]
    assert plan["experiments"][1] == {"name": "K_4", "group": "K", "label": "K = 4"}
    assert plan["band_experiments"] == ["irno"] and plan["sweeps"] == {"K": ["K_4"], "alpha": ["alpha_0.5"]}


def test_group_and_label_do_not_change_what_is_trained(paper):
    before = load_study(paper).phi_settings("K_4", "FNO")
    paper["experiments"]["K_4"].update(group="horizon", label="K = 4")
    assert load_study(paper).phi_settings("K_4", "FNO") == before


@pytest.mark.parametrize(
    "report, message",
    [
        ({"main_experiment": "K_9"}, r"'report\.main_experiment': 'K_9' is not a selected, trained experiment"),
        ({"main_experiment": "transfer"}, r"'report\.main_experiment': 'transfer'"),
        ({"figure_base": "UNet"}, r"'report\.figure_base': 'UNet' is not one of them"),
        ({"band_experiments": ["irno", "no_spectrum"]}, r"'report\.band_experiments\[1\]': 'no_spectrum'"),
    ],
)
def test_bad_report_settings(paper, report, message):
    paper["report"] = report
    with pytest.raises(IrnoError, match=message):
        load_study(paper)


# ----------------------------------------------------------------------------- irno write-settings


def test_write_settings_writes_complete_validated_yaml(tmp_path):
    out = tmp_path / "run" / "settings.yaml"
    assert (
        main(["write-settings", "--kind", "phi", "--json", '{"train": {"K": 4, "lr": "3e-4"}}', "--out", str(out)]) == 0
    )
    written = read_yaml(out)
    cfg = from_dict(PhiConfig, written)
    assert cfg.train.K == 4 and cfg.train.lr == 3e-4 and cfg.train.alpha == 0.2  # defaults filled in
    assert written["network"]["norm"] == "layer"
    assert [p.name for p in out.parent.iterdir()] == ["settings.yaml"]  # no temporary left behind


@pytest.mark.parametrize(
    "kind, payload, message",
    [
        ("phi", '{"train": {"K": 0}}', "config key 'train.K': 0 is invalid"),
        ("phi", '{"trian": {}}', "unknown config key 'trian'"),
        ("eval", '{"extra_steps": "six"}', "config key 'extra_steps': expected an integer"),
        ("base", '{"source": "pretrained"}', "config key 'base.pretrained'"),
        ("simulate", '{"grid": 4}', "config key 'simulate.grid'"),
        ("phi", "{train: }", "--json: not valid JSON"),
    ],
)
def test_write_settings_rejects_bad_settings(tmp_path, capsys, kind, payload, message):
    out = tmp_path / "settings.yaml"
    out.write_text("previous: kept\n")
    assert main(["write-settings", "--kind", kind, "--json", payload, "--out", str(out)]) == 1
    assert message in capsys.readouterr().err
    assert out.read_text() == "previous: kept\n"  # nothing half-written


def test_every_settings_kind_round_trips(tmp_path, paper):
    from irno.config import SETTINGS_KINDS
    from irno.settings import to_dict, write_settings

    payloads = {
        "base": {"pretrained": "polymathic-ai/FNO-active_matter"},
        "report_plan": load_study(paper).report_plan(),
    }
    for kind, cls in SETTINGS_KINDS.items():
        payload = payloads.get(kind, {})
        out = tmp_path / f"{kind}.yaml"
        cfg = write_settings(SETTINGS_KINDS[kind], copy.deepcopy(payload), out)
        assert from_dict(cls, read_yaml(out)) == cfg
        assert read_yaml(out) == to_dict(cfg)


# ----------------------------------------------------------------------------- where outputs land


def test_results_root_moves_the_run_and_is_read_relative_to_the_repository(paper, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    paper["results_root"] = "/scratch/me/irno"
    assert load_study(paper).results_dir == Path("/scratch/me/irno/paper")
    paper["results_root"] = "results"
    # relative: to the repository; kept relative where that is inside the working directory
    assert load_study(paper, ROOT).results_dir == ROOT / "results" / "paper"
    assert load_study(paper, tmp_path).results_dir == Path("results/paper")


def test_shared_root_names_data_and_bases_by_what_determines_them(paper):
    plain = load_study(paper)
    assert plain.data_dir("active_matter") == Path("results/paper/data/active_matter")
    assert plain.base_dir("active_matter", "FNO") == Path("results/paper/base/active_matter/FNO")
    paper["shared_root"] = "/shared/irno"
    shared = load_study(paper)
    data_id, base_id = shared.data_id("active_matter"), shared.base_id("active_matter", "FNO")
    assert re.fullmatch(r"active_matter-[0-9a-f]{8}", data_id) and re.fullmatch(r"FNO-[0-9a-f]{8}", base_id)
    assert shared.base_dir("active_matter", "FNO") == Path("/shared/irno/base") / data_id / base_id
    assert shared.results_dir == Path("results/paper")  # the runs stay the run's own
    # another run name, the same data and base: the same folders; other Phi settings do not matter
    other = copy.deepcopy(paper)
    other["run_name"] = "paper_v2"
    other["phi"]["train"]["epochs"] = 50
    assert load_study(other).base_dir("active_matter", "FNO") == shared.base_dir("active_matter", "FNO")
    # another data_root or another base setting: other folders
    moved = copy.deepcopy(paper)
    moved["data_root"] = "/elsewhere/the_well"
    assert load_study(moved).data_id("active_matter") != data_id
    changed = copy.deepcopy(paper)
    changed["bases"]["FNO"]["cache_dtype"] = "bfloat16"
    assert load_study(changed).base_id("active_matter", "FNO") != base_id
    assert load_study(changed).base_id("active_matter", "TFNO") == shared.base_id("active_matter", "TFNO")


def test_a_local_copy_is_read_at_its_path(paper):
    paper["datasets"]["active_matter"] = {"source": "local", "path": "/projects/the_well"}
    study = load_study(paper)
    assert study.well_root("active_matter") == Path("/projects/the_well")
    assert study.datasets_from("local") == ["active_matter"] and study.data_ids_from("local") == ["active_matter"]
    for spec, message in [
        ({"source": "local"}, "config key 'datasets.active_matter.path': a dataset with source: local needs"),
        ({"source": "download", "path": "/x"}, "config key 'datasets.active_matter.path': only a dataset with"),
        ({"source": "download", "complete": False}, "config key 'datasets.active_matter.complete': only a"),
    ]:
        paper["datasets"]["active_matter"] = spec
        with pytest.raises(IrnoError, match=re.escape(message)):
            load_study(paper)


def test_the_top_level_device_is_every_steps_that_sets_none(paper):
    paper["device"] = "cpu"
    paper["bases"]["TFNO"]["device"] = "cuda"  # a step's own wins
    study = load_study(paper)
    assert study.base_settings("active_matter", "FNO")["device"] == "cpu"
    assert study.base_settings("active_matter", "TFNO")["device"] == "cuda"
    assert study.phi_settings("irno", "FNO")["train"]["device"] == "cpu"
    assert study.eval_settings()["device"] == "cpu"
    demo = config("demo")
    demo["device"] = "cuda"
    roma = load_study(demo).roma_section()
    assert roma["train"]["device"] == "cpu"  # the demo's ROMA trainings say cpu themselves
    own = {name for name, d in demo["roma"]["datasets"].items() if "device" in (d.get("encodings") or {})}
    assert own and all(roma["datasets"][name]["encodings"]["device"] == "cpu" for name in own)
    others = set(roma["datasets"]) - own
    assert others and all(roma["datasets"][name]["encodings"]["device"] == "cuda" for name in others)
    without = load_study(config("demo"))
    assert "device" not in without.phi_settings("irno", "FNO")["train"]  # nothing set: nothing changes


def test_a_config_may_hold_the_roma_study_alone():
    study = load_study(config("roma"))
    assert not study.has_irno and study.runs == [] and study.main_experiment == ""
    assert study.roma_section() is not None and study.results_dir == Path("results/paper_roma")
    assert not load_study(config("config")).roma_section()  # and the IRNO paper run has no ROMA
