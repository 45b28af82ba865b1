"""The settings of the ROMA study: each settings file's dataclass completes and validates its mapping
key by key, a study reads from a pipeline config's roma: section or from its own settings file,
and a bad value names its key."""

import pytest

from irno import IrnoError
from irno.files import read_yaml
from irno.roma.settings import (
    SETTINGS_KINDS,
    DataConfig,
    EncodingConfig,
    RunConfig,
    read_study_config,
    study_from_dict,
)
from irno.roma.study import expand_study
from irno.settings import from_dict, to_dict, write_settings

CONFIG = "config/test.yaml"


def test_settings_complete_and_validate():
    expanded = expand_study(read_study_config(CONFIG))
    run = next(iter(expanded.runs.values()))
    assert to_dict(from_dict(RunConfig, run)) == run  # a run's settings are complete already
    data = to_dict(from_dict(DataConfig, {"graph": {"nodes": 500}}))
    assert data["graph"]["nodes"] == 500 and data["kuramoto"]["coupling"] == 5.0
    assert to_dict(from_dict(EncodingConfig, {"laplacian": 8}))["node2vec"] == 512

    with pytest.raises(IrnoError, match="unknown config key 'train.epochz'"):
        from_dict(RunConfig, {**run, "train": {**run["train"], "epochz": 3}})
    with pytest.raises(IrnoError, match="config key 'graph.nodes': 5 is invalid"):
        from_dict(DataConfig, {"graph": {"nodes": 5}})
    with pytest.raises(IrnoError, match="unknown config key 'kuramoto.K'"):  # the coupling is `coupling`
        from_dict(DataConfig, {"kuramoto": {"K": 5.0}})


def test_model_and_train_validation():
    with pytest.raises(IrnoError, match="roma.train.lr"):
        study_from_dict({"datasets": {"a": {}}, "train": {"lr": "fast"}})
    with pytest.raises(IrnoError, match="roma.datasets.a.graph.nodes"):
        study_from_dict({"datasets": {"a": {"graph": {"nodes": "many"}}}})
    with pytest.raises(IrnoError, match="burgers.window"):
        study_from_dict({"datasets": {"a": {"system": "burgers", "burgers": {"window": 0}}}})
    with pytest.raises(IrnoError, match="roma.per_model.gnn"):
        study_from_dict({"datasets": {"a": {}}, "per_model": {"gnn": {"model.width": 8}}})


def test_a_study_reads_from_a_config_or_from_its_settings_file(tmp_path):
    """The study's settings file holds the StudyConfig mapping alone, complete: the same study."""
    study = read_study_config(CONFIG)
    path = tmp_path / "study.yaml"
    write_settings(SETTINGS_KINDS["roma_study"], to_dict(study), path)
    written = read_yaml(path)
    assert written["train"]["steps"] == 4 and written["experiments"]["data_noise"][0]["models"] == ["deeponet", "roma"]
    assert read_study_config(path) == study
    assert expand_study(read_study_config(path)).runs == expand_study(study).runs
    with pytest.raises(IrnoError, match="no 'roma:' section"):
        (tmp_path / "x.yaml").write_text("run_name: demo\n")
        read_study_config(tmp_path / "x.yaml")
