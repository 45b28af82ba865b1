"""Prepared stores: exactly WellDataset's tensors, from one memory-mapped array, atomically written."""

import pickle
import re
import shutil

import h5py
import numpy as np
import pytest
import torch

from irno import IrnoError
from irno.cli import main as irno_main
from irno.data.store import PreparedSplit, prepare_split
from irno.data.well import build_manifest, open_well_dataset, window_to_xy
from irno.files import file_sha256, read_json, write_json


@pytest.mark.parametrize("split", ["train", "valid"])
def test_store_yields_exactly_what_welldataset_yields(tiny_well, tiny_stores, split):
    ds = open_well_dataset(tiny_well, "active_matter", split)
    store = PreparedSplit(tiny_stores[split])
    assert len(store) == len(ds)
    for i in range(len(ds)):
        x, y = window_to_xy(ds[i])
        item = store[i]
        assert item["x"].dtype == torch.float32 and item["x"].shape == x.shape
        assert torch.equal(item["x"], x) and torch.equal(item["y"], y), f"sample {i}"


def test_batch_is_the_stacked_items(tiny_stores):
    store = PreparedSplit(tiny_stores["train"])
    idx = [5, 0, 31, 17, 17]
    x, y = store.batch(idx)
    assert x.shape == (5, 44, 32, 32) and y.shape == (5, 11, 32, 32)
    assert torch.equal(x, torch.stack([store[i]["x"] for i in idx]))
    assert torch.equal(y, torch.stack([store[i]["y"] for i in idx]))
    x_t, _ = store.batch(torch.tensor(idx))  # tensors of indices work too (samplers yield them)
    assert torch.equal(x_t, x)


def test_layout_attributes_and_denormalisation(tiny_well, tiny_stores):
    store = PreparedSplit(tiny_stores["train"])
    assert store.field_names[:3] == ["concentration", "velocity_x", "velocity_y"] and len(store.field_names) == 11
    assert store.n_steps_input == 4 and store.grid == (32, 32)
    traj = store.trajectories
    assert isinstance(traj, np.memmap) and traj.shape == (4, 12, 11, 32, 32)
    # windows are indices into the trajectories: 2 files x 2 trajectories x 8 windows
    assert store.windows.shape == (32, 2) and store.windows[:9].tolist()[8] == [1, 0]
    # physical = normalised * std + mean: the first file's raw concentration and D_xy come back
    first = sorted((tiny_well / "datasets/active_matter/data/train").glob("*.hdf5"))[0]
    with h5py.File(first) as f:
        conc, d_xy = f["t0_fields/concentration"][0], f["t2_fields/D"][0, ..., 0, 1]  # (T, H, W)
    physical = traj[0] * store.channel_std[None, :, None, None] + store.channel_mean[None, :, None, None]
    np.testing.assert_allclose(physical[:, 0], conc, rtol=1e-6)
    np.testing.assert_allclose(physical[:, 4], d_xy, atol=1e-5)


def test_store_pickles_without_its_data(tiny_stores):
    store = PreparedSplit(tiny_stores["train"])
    _ = store[0]  # opens the memory map
    blob = pickle.dumps(store)
    assert len(blob) < 10_000  # DataLoader workers reopen the map rather than copy 2 MB of frames
    again = pickle.loads(blob)
    assert torch.equal(again[3]["x"], store[3]["x"])


def test_identity_changes_with_the_data(tiny_stores):
    train, valid = PreparedSplit(tiny_stores["train"]), PreparedSplit(tiny_stores["valid"])
    assert train.identity["split"] == "train" and train.identity["n_samples"] == 32
    assert train.identity["manifest_hash"] != valid.identity["manifest_hash"]


def test_changed_data_or_bad_manifest_is_refused(tiny_well, tiny_manifest, tmp_path):
    well = tmp_path / "well"
    shutil.copytree(tiny_well, well)
    manifest = read_json(tiny_manifest)
    manifest["root"] = str(well)
    write_json(tmp_path / "m.json", manifest)
    valid = well / "datasets/active_matter/data/valid"
    extra = valid / "active_matter_L_10.0_zeta_9.0_alpha_-1.0.hdf5"
    shutil.copy(next(valid.glob("*.hdf5")), extra)
    out = tmp_path / "store"
    with pytest.raises(IrnoError, match="zeta_9.0_alpha_-1.0.hdf5: present but not in the manifest"):
        prepare_split(tmp_path / "m.json", "valid", out)
    extra.unlink()
    target = next(valid.glob("*.hdf5"))
    target.write_bytes(target.read_bytes() + b"\0")
    with pytest.raises(IrnoError, match=r"zeta_5.0_alpha_-3.0.hdf5: \d+ bytes, the manifest says"):
        prepare_split(tmp_path / "m.json", "valid", out)
    assert not out.exists() and not list(tmp_path.glob(".store*"))  # nothing half-written left behind
    with pytest.raises(IrnoError, match="m.json: no split 'valid'"):
        write_json(tmp_path / "m.json", {**manifest, "splits": {"train": manifest["splits"]["train"]}})
        prepare_split(tmp_path / "m.json", "valid", out)
    with pytest.raises(IrnoError, match="nope.json: file not found"):
        prepare_split(tmp_path / "nope.json", "valid", out)


def test_prepare_cli_and_n_steps_input(tiny_well, tmp_path, capsys):
    manifest = tmp_path / "manifest.json"
    write_json(manifest, build_manifest(tiny_well, "active_matter", source="test"))
    out = tmp_path / "prepared" / "test"
    assert (
        irno_main(
            ["prepare", "--manifest", str(manifest), "--split", "test", "--out", str(out), "--n-steps-input", "2"]
        )
        == 0
    )
    store = PreparedSplit(out)
    ds = open_well_dataset(tiny_well, "active_matter", "test", n_steps_input=2)
    assert len(store) == len(ds) == 2 * (12 - 2)
    x, y = window_to_xy(ds[13])
    assert torch.equal(store[13]["x"], x) and torch.equal(store[13]["y"], y)
    assert (
        irno_main(["prepare", "--manifest", str(tmp_path / "missing.json"), "--split", "test", "--out", str(out)]) == 1
    )
    assert "missing.json: file not found" in capsys.readouterr().err


# ----------------------------------------------------------------------------- damaged data


def _copy_dataset(tiny_well, tiny_manifest, tmp_path):
    """A copy of the tiny dataset to damage, and its manifest (written before the damage)."""
    well = tmp_path / "well"
    shutil.copytree(tiny_well, well)
    manifest = {**read_json(tiny_manifest), "root": str(well)}
    write_json(tmp_path / "manifest.json", manifest)
    return well / "datasets/active_matter/data", tmp_path / "manifest.json"


def _write_nan_frame(path, field, trajectory, frame, component=()):
    """Overwrite one frame of one field's component with NaN in the file's bytes, as bit rot would (size unchanged)."""
    with h5py.File(path, "r") as f:
        data = f[field]
        assert data.chunks is None and data.compression is None  # contiguous: the bytes are the array's
        first = (trajectory, frame) + (0,) * (data.ndim - 2)
        start = data.id.get_offset() + data.dtype.itemsize * int(np.ravel_multi_index(first, data.shape))
        frame_shape, dtype = data.shape[2:], data.dtype
    with open(path, "r+b") as raw:
        raw.seek(start)
        values = np.frombuffer(raw.read(dtype.itemsize * int(np.prod(frame_shape))), dtype).reshape(frame_shape).copy()
        values[(..., *component)] = np.nan  # (X, Y[, 2[, 2]])
        raw.seek(start)
        raw.write(values.tobytes())


def _record_as_is(manifest_path, folder, split):
    """Make the manifest record the split's files as they now are (size and hash), damage included."""
    manifest = read_json(manifest_path)
    for entry in manifest["splits"][split]:
        entry.update(
            bytes=(folder / split / entry["file"]).stat().st_size, sha256=file_sha256(folder / split / entry["file"])
        )
    write_json(manifest_path, manifest)


def _nothing_written(out):
    return not out.exists() and not list(out.parent.glob(f".{out.name}*"))


def test_damaged_bytes_fail_the_hash_check(tiny_well, tiny_manifest, tmp_path, capsys):
    data, manifest = _copy_dataset(tiny_well, tiny_manifest, tmp_path)
    damaged = data / "train/active_matter_L_10.0_zeta_3.0_alpha_-2.0.hdf5"
    size, recorded = damaged.stat().st_size, file_sha256(damaged)
    _write_nan_frame(damaged, "t2_fields/D", trajectory=1, frame=7, component=(0, 1))
    assert damaged.stat().st_size == size
    out = tmp_path / "prepared" / "train"
    assert irno_main(["prepare", "--manifest", str(manifest), "--split", "train", "--out", str(out)]) == 1
    message = capsys.readouterr().err
    assert f"{damaged}: sha256 {file_sha256(damaged)}, the manifest says {recorded}" in message
    assert "delete the files named above and run the download or simulation again" in message
    assert f"--forcerun {manifest}" in message
    assert _nothing_written(out)


def test_non_finite_values_are_refused(tiny_well, tiny_manifest, tmp_path):
    data, manifest = _copy_dataset(tiny_well, tiny_manifest, tmp_path)
    damaged = data / "train/active_matter_L_10.0_zeta_3.0_alpha_-2.0.hdf5"
    _write_nan_frame(damaged, "t2_fields/D", trajectory=1, frame=7, component=(0, 1))
    # A manifest written after the damage: the hash matches, the values must be refused.
    write_json(manifest, build_manifest(data.parent.parent.parent, "active_matter", source="simulated"))
    out = tmp_path / "prepared" / "train"
    with pytest.raises(IrnoError) as err:
        prepare_split(manifest, "train", out)
    message = str(err.value)
    assert f"{damaged}: trajectory 1, field 'D_xy', frame 7: nan" in message
    assert "1024 non-finite values in this trajectory, in 1 of its 12 frames" in message  # one 32 x 32 frame
    assert "run the simulation (irno simulate) again" in message
    assert _nothing_written(out)


def test_damaged_structure_names_the_file(tiny_well, tiny_manifest, tmp_path):
    data, manifest = _copy_dataset(tiny_well, tiny_manifest, tmp_path)
    out = tmp_path / "prepared" / "split"
    truncated = data / "test/active_matter_L_10.0_zeta_7.0_alpha_-4.0.hdf5"
    truncated.write_bytes(truncated.read_bytes()[:4000])
    with pytest.raises(IrnoError, match=rf"{re.escape(str(truncated))}: 4000 bytes, the manifest says \d+"):
        prepare_split(manifest, "test", out)

    no_bcs = data / "valid/active_matter_L_10.0_zeta_5.0_alpha_-3.0.hdf5"
    with h5py.File(no_bcs, "r+") as f:
        del f["boundary_conditions"]  # HDF5 keeps the file's size: the hash notices
    with pytest.raises(IrnoError, match=rf"{re.escape(str(no_bcs))}: sha256 "):
        prepare_split(manifest, "valid", out)
    # Recorded as it is, the file reaches The Well's loader, whose error must name it.
    _record_as_is(manifest, data, "valid")
    with pytest.raises(
        IrnoError,
        match=rf"{re.escape(str(no_bcs))}: The Well's loader cannot read this file \(KeyError: .*boundary_conditions",
    ):
        prepare_split(manifest, "valid", out)

    # A missing field's data shows only when a trajectory of that file is read.
    no_velocity = data / "train/active_matter_L_10.0_zeta_3.0_alpha_-2.0.hdf5"
    with h5py.File(no_velocity, "r+") as f:
        del f["t1_fields/velocity"]
    _record_as_is(manifest, data, "train")
    with pytest.raises(
        IrnoError, match=rf"{re.escape(str(no_velocity))}: The Well's loader could not read trajectory 0 \(KeyError"
    ):
        prepare_split(manifest, "train", out)
    assert _nothing_written(out)
