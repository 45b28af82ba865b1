"""The study plan: grids expand into validated, de-duplicated runs; bad config names its key."""

import pytest

from irno.roma.config import load_study, plan_study, study_from_dict, write_plan
from irno.utils import IrnoError, read_json, read_yaml


def study(**experiments):
    return study_from_dict(
        {
            "datasets": {"a": {"graph": {"nodes": 500}}, "b": {"graph": {"nodes": 900}, "seed": 2}},
            "model": {"width": 16, "heads": 4},
            "train": {"epochs": 2},
            "experiments": experiments,
        }
    )


def test_grid_expansion_and_deduplication():
    plan = plan_study(
        study(
            data_noise={
                "datasets": ["a", "b"],
                "models": ["deeponet", "roma"],
                "vary": {"train.noise_eta": [0.0, "4e-4"]},
            },
            positional={"datasets": ["b"], "models": ["roma"], "vary": {"model.positional": ["laplacian", "none"]}},
        )
    )
    assert len(plan.experiments["data_noise"]) == 8 and len(plan.experiments["positional"]) == 2
    # the default roma run on b (laplacian, eta 4e-4) is in both experiments: trained once
    assert len(plan.runs) == 9
    entry = plan.experiments["data_noise"][-1]
    assert entry["train.noise_eta"] == 4e-4  # validated value, not the YAML string
    settings = plan.runs[entry["run"]]
    assert settings["dataset"] == "b" and settings["model"]["kind"] == "roma" and settings["train"]["epochs"] == 2
    assert entry["run"].startswith("b-roma-")
    assert set(plan.datasets) == {"a", "b"} and plan.datasets["b"]["seed"] == 2


def test_write_plan_keeps_unchanged_files(tmp_path):
    plan = plan_study(study(positional={"datasets": ["a"], "vary": {"model.positional": ["laplacian", "none"]}}))
    write_plan(plan, tmp_path)
    key = next(iter(plan.runs))
    path = tmp_path / "runs" / key / "settings.yaml"
    assert read_yaml(path) == plan.runs[key] and read_yaml(tmp_path / "data" / "a" / "settings.yaml")
    assert read_json(tmp_path / "plan.json")["experiments"] == plan.experiments
    before = path.stat().st_mtime_ns
    write_plan(plan, tmp_path)
    assert path.stat().st_mtime_ns == before


@pytest.mark.parametrize(
    "experiments, message",
    [
        ({"data_noise": {"datasets": ["c"]}}, "unknown dataset 'c'"),
        ({"data_noise": {"datasets": ["a"], "models": ["gnn"]}}, "unknown model 'gnn'"),
        (
            {"positional": {"datasets": ["a"], "vary": {"model.positionl": ["none"]}}},
            "roma.experiments.positional.model.positionl",
        ),
        ({"positional": {"datasets": ["a"], "vary": {"model.positional": ["lap"]}}}, "'lap' is not one of"),
        ({"positional": {"datasets": ["a"], "vary": {"width": [8]}}}, "vary.width"),
        ({"parameter_scaling": {"datasets": ["a"], "vary": {"model.width": [8, 16]}}}, "at least 3"),
        ({"ablation": {"datasets": ["a"]}}, "roma.experiments.ablation"),
        ({}, "no experiment"),
    ],
)
def test_bad_study_names_the_key(experiments, message):
    with pytest.raises(IrnoError, match=message):
        plan_study(study(**experiments))


def test_model_and_train_validation():
    with pytest.raises(IrnoError, match="model.heads"):
        plan_study(study(positional={"datasets": ["a"], "vary": {"model.width": [10]}}))
    with pytest.raises(IrnoError, match="roma.train.lr"):
        study_from_dict({"datasets": {"a": {}}, "train": {"lr": "fast"}})
    with pytest.raises(IrnoError, match="roma.datasets.a.graph.nodes"):
        study_from_dict({"datasets": {"a": {"graph": {"nodes": "many"}}}})


def test_shipped_configs_plan(tmp_path):
    for name in ("test", "demo", "config"):
        plan = plan_study(load_study(f"config/{name}.yaml"))
        assert set(plan.experiments) == {"data_noise", "effective_dynamics", "positional", "parameter_scaling"}
    with pytest.raises(IrnoError, match="no 'roma:' section"):
        (tmp_path / "x.yaml").write_text("run_name: demo\n")
        load_study(tmp_path / "x.yaml")
