"""The study plan: grids expand into validated, de-duplicated runs; per-model settings and overrides
apply in order; bad config names its key."""

import pytest

from irno import IrnoError
from irno.files import read_json, read_yaml
from irno.roma.config import expand_study, read_study_config, settings_files, study_from_dict, write_expanded_study


def study(per_model=None, **experiments):
    return study_from_dict(
        {
            "datasets": {"a": {"graph": {"nodes": 500}}, "b": {"graph": {"nodes": 900}, "seed": 2}},
            "model": {"width": 16, "heads": 4},
            "per_model": per_model or {},
            "train": {"steps": 20},
            "experiments": experiments,
        }
    )


def test_grid_expansion_and_deduplication():
    plan = expand_study(
        study(
            data_noise={
                "datasets": ["a", "b"],
                "models": ["deeponet", "roma"],
                "vary": {"train.noise_eta": [0.0, "4e-4"]},
            },
            positional=[
                {"datasets": ["b"], "models": ["roma"]},
                {"datasets": ["b"], "models": ["roma"], "vary": {"model.level_embedding": [0.0]}},
            ],
        )
    )
    assert len(plan.experiments["data_noise"]) == 8 and len(plan.experiments["positional"]) == 2
    # the default roma run on b (eta 4e-4) is in both experiments: trained once
    assert len(plan.runs) == 9
    entry = plan.experiments["data_noise"][-1]
    assert entry["train.noise_eta"] == 4e-4 and entry["setting"] == "noise_eta=0.0004"  # validated value
    settings = plan.runs[entry["run"]]
    assert settings["dataset"] == "b" and settings["model"]["kind"] == "roma" and settings["train"]["steps"] == 20
    assert entry["run"].startswith("b-roma-")
    assert [e["setting"] for e in plan.experiments["positional"]] == ["default", "level_embedding=0.0"]
    assert [e["grid"] for e in plan.experiments["positional"]] == [0, 1]
    assert set(plan.datasets) == {"a", "b"} and plan.datasets["b"]["seed"] == 2
    assert "encodings" not in plan.datasets["a"]  # the encodings have their own settings
    assert set(plan.encodings) == {"a", "b"}  # roma runs read encodings on both


def test_per_model_settings_then_vary_then_overrides():
    plan = expand_study(
        study(
            per_model={"deeponet": {"model.width": 40, "model.learned_pde": False}},
            effective_dynamics=[
                {
                    "datasets": ["a", "b"],
                    "models": ["deeponet", "roma"],
                    "vary": {"model.width": [24]},
                    "overrides": {"deeponet": {"model.learned_pde": True}, "b/roma": {"model.width": 32}},
                }
            ],
        )
    )
    runs = {(e["dataset"], e["model"]): plan.runs[e["run"]]["model"] for e in plan.experiments["effective_dynamics"]}
    assert runs[("a", "deeponet")]["width"] == 24 and runs[("a", "deeponet")]["learned_pde"] is True
    assert runs[("a", "roma")]["width"] == 24 and runs[("b", "roma")]["width"] == 32
    assert plan.encodings.keys() == {"a", "b"}
    files = settings_files(plan)
    assert files["data/a/encodings"][0] == "encodings" and files["data/a"][0] == "data"
    # without a run that reads encodings, no encodings settings
    baselines = expand_study(study(data_noise={"datasets": ["a"], "models": ["deeponet", "nomad_mp"]}))
    assert baselines.encodings == {} and "data/a/encodings" not in settings_files(baselines)


def test_write_expanded_study_keeps_unchanged_files(tmp_path):
    plan = expand_study(study(positional={"datasets": ["a"], "vary": {"model.context_embedding": [True, False]}}))
    write_expanded_study(plan, tmp_path)
    key = next(iter(plan.runs))
    path = tmp_path / "runs" / key / "settings.yaml"
    assert read_yaml(path) == plan.runs[key] and read_yaml(tmp_path / "data" / "a" / "settings.yaml")
    assert read_yaml(tmp_path / "data" / "a" / "encodings" / "settings.yaml")["laplacian"] == 512
    assert read_json(tmp_path / "study.json")["experiments"] == plan.experiments
    before = path.stat().st_mtime_ns
    write_expanded_study(plan, tmp_path)
    assert path.stat().st_mtime_ns == before


@pytest.mark.parametrize(
    "experiments, message",
    [
        ({"data_noise": {"datasets": ["c"]}}, "unknown dataset 'c'"),
        ({"data_noise": {"datasets": ["a"], "models": ["gnn"]}}, "unknown model 'gnn'"),
        (
            {"positional": {"datasets": ["a"], "vary": {"model.level_embeding": [0.0]}}},
            "roma.experiments.positional.model.level_embeding",
        ),
        ({"positional": {"datasets": ["a"], "vary": {"model.manifold": ["lorentz"]}}}, "'lorentz' is not one of"),
        ({"positional": {"datasets": ["a"], "vary": {"width": [8]}}}, "vary.width"),
        ({"parameter_scaling": {"datasets": ["a"], "vary": {"model.width": [8, 16]}}}, "at least 3"),
        ({"ablation": {"datasets": ["a"]}}, "roma.experiments.ablation"),
        (
            {"effective_dynamics": {"datasets": ["a"], "overrides": {"nomad_mp": {"model.width": 8}}}},
            "overrides.nomad_mp",
        ),
        (
            {"effective_dynamics": [{"datasets": ["a"]}, {"datasets": ["a"], "overrides": {"roma": {"lr": 1}}}]},
            r"effective_dynamics\[1\].overrides.roma.lr",
        ),
        ({}, "no experiment"),
    ],
)
def test_bad_study_names_the_key(experiments, message):
    with pytest.raises(IrnoError, match=message):
        expand_study(study(**experiments))


def test_model_and_train_validation():
    with pytest.raises(IrnoError, match="model.heads"):
        expand_study(study(positional={"datasets": ["a"], "vary": {"model.width": [2]}}))
    with pytest.raises(IrnoError, match="train.checkpoint_every"):
        expand_study(study(positional={"datasets": ["a"], "vary": {"train.checkpoint_every": [150]}}))
    with pytest.raises(IrnoError, match="roma.train.lr"):
        study_from_dict({"datasets": {"a": {}}, "train": {"lr": "fast"}})
    with pytest.raises(IrnoError, match="roma.datasets.a.graph.nodes"):
        study_from_dict({"datasets": {"a": {"graph": {"nodes": "many"}}}})
    with pytest.raises(IrnoError, match="burgers.window"):
        study_from_dict({"datasets": {"a": {"system": "burgers", "burgers": {"window": 0}}}})
    with pytest.raises(IrnoError, match="roma.per_model.gnn"):
        study_from_dict({"datasets": {"a": {}}, "per_model": {"gnn": {"model.width": 8}}})


def test_shipped_configs_plan(tmp_path):
    for name in ("test", "demo", "roma"):
        plan = expand_study(read_study_config(f"config/{name}.yaml"))
        assert set(plan.experiments) == {
            "data_noise",
            "effective_dynamics",
            "positional",
            "graph_encodings",
            "parameter_scaling",
        }, name
        systems = {settings["system"] for settings in plan.datasets.values()}
        assert systems == {"kuramoto", "burgers"}, name
    with pytest.raises(IrnoError, match="no 'roma:' section"):
        (tmp_path / "x.yaml").write_text("run_name: demo\n")
        read_study_config(tmp_path / "x.yaml")


def test_paper_config_is_the_reference_study():
    """config/roma.yaml's runs as the reference's args/*.txt set them up."""
    plan = expand_study(read_study_config("config/roma.yaml"))
    runs = {k: v for k, v in plan.runs.items()}

    def of(experiment, dataset, model, **train):
        found = [
            runs[e["run"]]
            for e in plan.experiments[experiment]
            if e["dataset"] == dataset
            and e["model"] == model
            and all(runs[e["run"]]["train"][k] == v for k, v in train.items())
        ]
        assert found, (experiment, dataset, model, train)
        return found

    roma = of("data_noise", "km3m", "roma", noise_eta=4e-4)[0]
    assert roma["model"]["width"] == 1024 and roma["model"]["learned_pde"] and roma["train"]["steps"] == 50_000
    assert roma["train"]["lr"] == 2e-5 and roma["train"]["gpde_weight"] == 1e8
    assert of("data_noise", "km3m", "nomad_mp", noise_eta=1e-2)[0]["model"]["width"] == 1292
    assert not of("data_noise", "km38k", "deeponet_mp")[0]["model"]["edge_mlp"]
    dons = of("effective_dynamics", "bd3m", "deeponet")[0]
    assert dons["model"]["width"] == 2816 and dons["model"]["pde"] == "burgers" and dons["train"]["gpde_weight"] == 1
    widths = sorted(r["model"]["width"] for r in of("parameter_scaling", "bd3m", "roma"))
    assert widths == [1024, 2048, 2560]
    assert {r["train"]["steps"] for r in of("parameter_scaling", "km3m", "roma")} == {100_000}
    assert plan.datasets["bd3m"]["system"] == "burgers" and plan.datasets["km3m"]["graph"]["nodes"] == 3_850_000
