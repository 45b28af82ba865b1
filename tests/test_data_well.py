"""The Well format writer and loader: the fixture dataset reads through WellDataset as docs/method.md#the-well says."""

import numpy as np
import pytest
import torch

from irno import IrnoError
from irno.data.well import field_names, open_well_dataset, window_to_xy
from irno.files import file_sha256

ACTIVE_MATTER_FIELDS = [
    "concentration",
    "velocity_x",
    "velocity_y",
    "D_xx",
    "D_xy",
    "D_yx",
    "D_yy",
    "E_xx",
    "E_xy",
    "E_yx",
    "E_yy",
]


def test_loader_shapes_and_channel_order(tiny_well):
    ds = open_well_dataset(tiny_well, "active_matter", "train")
    assert field_names(ds) == ACTIVE_MATTER_FIELDS
    x, y = window_to_xy(ds[0])
    assert x.shape == (44, 32, 32) and y.shape == (11, 32, 32)
    assert x.dtype == torch.float32
    # 2 files x 2 trajectories x (12 - 5 + 1) windows
    assert len(ds) == 2 * 2 * 8


def test_time_major_channels(tiny_well):
    ds = open_well_dataset(tiny_well, "active_matter", "train")
    x0, _ = window_to_xy(ds[0])
    x1, y1 = window_to_xy(ds[1])  # the next window of the same trajectory
    # frame t of window 1 is frame t+1 of window 0: channels (t, f) -> t * 11 + f
    assert torch.equal(x1[:33], x0[11:])
    x2, _ = window_to_xy(ds[4])
    assert torch.equal(x2[3 * 11 : 4 * 11], window_to_xy(ds[3])[1])


def test_normalised_train_split_is_standardised(tiny_well):
    ds = open_well_dataset(tiny_well, "active_matter", "train", full_trajectory=True)
    frames = torch.cat([torch.cat([s["input_fields"], s["output_fields"]]) for s in (ds[i] for i in range(len(ds)))])
    flat = frames.reshape(-1, frames.shape[-1]).double()
    assert np.allclose(flat.mean(0), 0.0, atol=1e-3)
    assert np.allclose(flat.std(0), 1.0, atol=1e-3)


def test_missing_stats_and_unknown_dataset(tmp_path, tiny_well):
    with pytest.raises(IrnoError, match="unknown dataset 'active_mater'.*active_matter"):
        open_well_dataset(tiny_well, "active_mater", "train")
    with pytest.raises(IrnoError, match="stats.yaml"):
        open_well_dataset(tmp_path, "active_matter", "train")
    with pytest.raises(IrnoError, match="unknown split"):
        open_well_dataset(tiny_well, "active_matter", "training")


def test_manifest_describes_and_verifies(tiny_well, tmp_path):
    import shutil

    from irno.data.well import build_manifest

    m = build_manifest(tiny_well, "active_matter", source="test")
    assert [e["file"] for e in m["splits"]["valid"]] == ["active_matter_L_10.0_zeta_5.0_alpha_-3.0.hdf5"]
    assert m["splits"]["train"][0]["n_trajectories"] == 2 and m["splits"]["train"][0]["grid"] == [32, 32]
    assert m["splits"]["train"][0]["fields"]["t2"] == ["D", "E"]
    for split, entries in m["splits"].items():
        for e in entries:
            assert e["sha256"] == file_sha256(tiny_well / "datasets/active_matter/data" / split / e["file"])

    broken = tmp_path / "well"
    shutil.copytree(tiny_well, broken)
    bad = broken / "datasets/active_matter/data/test/active_matter_L_10.0_zeta_7.0_alpha_-4.0.hdf5"
    bad.write_bytes(bad.read_bytes()[:1000])  # a truncated download
    with pytest.raises(IrnoError, match="zeta_7.0_alpha_-4.0.hdf5: not a readable Well HDF5"):
        build_manifest(broken, "active_matter", source="test")
    with pytest.raises(IrnoError, match="extra.hdf5: missing or empty"):
        build_manifest(
            tiny_well,
            "active_matter",
            source="test",
            expected_files={
                "train": [e["file"] for e in m["splits"]["train"]],
                "valid": ["extra.hdf5"],
                "test": [e["file"] for e in m["splits"]["test"]],
            },
        )


def test_a_file_the_loader_cannot_read_is_named(tiny_well, tmp_path):
    import shutil

    import h5py

    from irno.data.well import build_manifest

    broken = tmp_path / "well"
    shutil.copytree(tiny_well, broken)
    bad = broken / "datasets/active_matter/data/train/active_matter_L_10.0_zeta_3.0_alpha_-2.0.hdf5"
    with h5py.File(bad, "r+") as f:
        del f["boundary_conditions"]  # h5py still opens it and reads its fields; The Well's loader cannot
    expected = f"{bad}: The Well's loader cannot read this file (KeyError: "
    with pytest.raises(IrnoError) as err:
        open_well_dataset(broken, "active_matter", "train")
    assert expected in str(err.value) and "zeta_1.0" not in str(err.value)  # the damaged file, and it alone
    with pytest.raises(IrnoError) as err:
        build_manifest(broken, "active_matter", source="test")
    assert expected in str(err.value) and str(err.value).count("cannot read") == 1


def test_atomic_outputs_get_normal_permissions(tmp_path):
    import os

    from irno.files import atomic_dir, write_json

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        with atomic_dir(tmp_path / "d") as d:
            (d / "f").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
