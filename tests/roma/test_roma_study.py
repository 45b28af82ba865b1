"""The expansion of a study: grids expand into validated, de-duplicated runs; per-model settings and
overrides apply in order; each settings file has its folder and kind; a bad study names its key."""

import pytest

from irno import IrnoError
from irno.roma.settings import SETTINGS_KINDS, read_study_config, study_from_dict
from irno.roma.study import expand_study, settings_files


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
    expanded = expand_study(
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
    assert len(expanded.experiments["data_noise"]) == 8 and len(expanded.experiments["positional"]) == 2
    # the default roma run on b (eta 4e-4) is in both experiments: trained once
    assert len(expanded.runs) == 9
    entry = expanded.experiments["data_noise"][-1]
    assert entry["train.noise_eta"] == 4e-4 and entry["setting"] == "noise_eta=0.0004"  # validated value
    settings = expanded.runs[entry["run"]]
    assert settings["dataset"] == "b" and settings["model"]["kind"] == "roma" and settings["train"]["steps"] == 20
    assert entry["run"].startswith("b-roma-")
    assert [e["setting"] for e in expanded.experiments["positional"]] == ["default", "level_embedding=0.0"]
    assert [e["grid"] for e in expanded.experiments["positional"]] == [0, 1]
    assert set(expanded.datasets) == {"a", "b"} and expanded.datasets["b"]["seed"] == 2
    assert "encodings" not in expanded.datasets["a"]  # the encodings have their own settings
    assert set(expanded.encodings) == {"a", "b"}  # roma runs read encodings on both


def test_per_model_settings_then_vary_then_overrides():
    expanded = expand_study(
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
    runs = {
        (e["dataset"], e["model"]): expanded.runs[e["run"]]["model"] for e in expanded.experiments["effective_dynamics"]
    }
    assert runs[("a", "deeponet")]["width"] == 24 and runs[("a", "deeponet")]["learned_pde"] is True
    assert runs[("a", "roma")]["width"] == 24 and runs[("b", "roma")]["width"] == 32
    assert expanded.encodings.keys() == {"a", "b"}
    files = settings_files(expanded)
    assert files["data/a/encodings"][0] == "roma_encodings" and files["data/a"][0] == "roma_data"
    assert files["data/a"][1] == expanded.datasets["a"] and files["data/a/encodings"][1] == expanded.encodings["a"]
    assert {kind for kind, _ in files.values()} == {"roma_data", "roma_encodings", "roma_run"} <= SETTINGS_KINDS.keys()
    assert {f"runs/{key}": ("roma_run", run) for key, run in expanded.runs.items()}.items() <= files.items()
    # without a run that reads encodings, no encodings settings
    baselines = expand_study(study(data_noise={"datasets": ["a"], "models": ["deeponet", "nomad_mp"]}))
    assert baselines.encodings == {} and "data/a/encodings" not in settings_files(baselines)


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


def test_model_and_train_validation_in_a_grid():
    with pytest.raises(IrnoError, match="model.heads"):
        expand_study(study(positional={"datasets": ["a"], "vary": {"model.width": [2]}}))
    with pytest.raises(IrnoError, match="train.checkpoint_every"):
        expand_study(study(positional={"datasets": ["a"], "vary": {"train.checkpoint_every": [150]}}))


def test_shipped_configs_expand():
    for name in ("test", "demo", "roma"):
        expanded = expand_study(read_study_config(f"config/{name}.yaml"))
        assert set(expanded.experiments) == {
            "data_noise",
            "effective_dynamics",
            "positional",
            "graph_encodings",
            "parameter_scaling",
        }, name
        systems = {settings["system"] for settings in expanded.datasets.values()}
        assert systems == {"kuramoto", "burgers"}, name


def test_paper_config_is_the_reference_study():
    """config/roma.yaml's runs as the reference's args/*.txt set them up."""
    expanded = expand_study(read_study_config("config/roma.yaml"))
    runs = {k: v for k, v in expanded.runs.items()}

    def of(experiment, dataset, model, **train):
        found = [
            runs[e["run"]]
            for e in expanded.experiments[experiment]
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
    assert expanded.datasets["bd3m"]["system"] == "burgers" and expanded.datasets["km3m"]["graph"]["nodes"] == 3_850_000
