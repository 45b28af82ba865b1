"""The download runs The Well's real curl path offline, against a registry of file:// URLs."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from irno import IrnoError
from irno.cli import main as irno_main
from irno.data.download import download_dataset, index_local_dataset
from irno.data.wellfile import write_well_file
from irno.files import file_sha256, read_json

DATASET = "active_matter"


def _sources(tiny_well: Path) -> dict[str, list[Path]]:
    data = tiny_well / "datasets" / DATASET / "data"
    return {split: sorted((data / split).glob("*.hdf5")) for split in ("train", "valid", "test")}


def _registry(path: Path, stats: str, files: dict[str, list[str]]) -> Path:
    path.write_text(yaml.safe_dump({DATASET: {"stats": stats, **files}}))
    return path


@pytest.fixture
def registry(tiny_well, tmp_path) -> Path:
    """A registry whose URLs point at the tiny_well fixture's files."""
    stats = (tiny_well / "datasets" / DATASET / "stats.yaml").as_uri()
    return _registry(
        tmp_path / "registry.yaml", stats, {s: [p.as_uri() for p in f] for s, f in _sources(tiny_well).items()}
    )


def test_download_copies_verifies_and_describes(tiny_well, registry, tmp_path):
    root = tmp_path / "fresh"
    manifest = download_dataset(DATASET, root, splits=("train", "valid"), registry_path=registry)
    for split in ("train", "valid"):
        for src, entry in zip(_sources(tiny_well)[split], manifest["splits"][split], strict=True):
            assert (root / "datasets" / DATASET / "data" / split / src.name).read_bytes() == src.read_bytes()
            assert entry["file"] == src.name and entry["sha256"] == file_sha256(src)
    assert set(manifest["splits"]) == {"train", "valid"}
    entry = manifest["splits"]["train"][0]
    assert entry["bytes"] > 0 and entry["fields"]["t1"] == ["velocity"] and entry["n_steps"] == 12
    assert manifest["stats"]["sha256"] and manifest["registry"] == str(registry)


def test_interrupted_download_resumes(tiny_well, registry, tmp_path):
    root = tmp_path / "partial"
    src = _sources(tiny_well)["valid"][0]
    part = root / "datasets" / DATASET / "data" / "valid" / src.name
    part.parent.mkdir(parents=True)
    part.write_bytes(src.read_bytes()[: src.stat().st_size // 3])  # what an interrupted curl leaves
    download_dataset(DATASET, root, splits=("valid",), registry_path=registry)
    assert part.read_bytes() == src.read_bytes()


@pytest.mark.parametrize("url", ["file:///nonexistent/well", "http://127.0.0.1:9/well"])
def test_unreachable_server_names_the_missing_files(tiny_well, tmp_path, url):
    names = [p.name for p in _sources(tiny_well)["test"]]
    registry = _registry(tmp_path / "r.yaml", f"{url}/stats.yaml", {"test": [f"{url}/{n}" for n in names]})
    with pytest.raises(IrnoError) as err:
        download_dataset(DATASET, tmp_path / "root", splits=("test",), registry_path=registry)
    message = str(err.value)
    assert "stats.yaml: missing or empty" in message
    assert all(f"{n}: missing or empty" in message for n in names)
    assert "Run the download again" in message


def test_truncated_or_foreign_files_are_named(tiny_well, tmp_path):
    sources = _sources(tiny_well)
    served = tmp_path / "served"
    served.mkdir()
    truncated = served / sources["train"][0].name
    truncated.write_bytes(sources["train"][0].read_bytes()[:5000])  # the server has a broken file
    foreign = served / sources["train"][1].name  # another dataset's file under the expected name
    write_well_file(
        foreign,
        dataset_name="active_matter",
        time=np.arange(6, dtype=np.float32),
        coords={"x": np.arange(32, dtype=np.float32), "y": np.arange(32, dtype=np.float32)},
        fields={0: {"pressure": np.zeros((1, 6, 32, 32), np.float32)}},
    )
    stats = (tiny_well / "datasets" / DATASET / "stats.yaml").as_uri()
    registry = _registry(tmp_path / "r.yaml", stats, {"train": [truncated.as_uri(), foreign.as_uri()]})
    with pytest.raises(IrnoError) as err:
        download_dataset(DATASET, tmp_path / "root", splits=("train",), registry_path=registry)
    message = str(err.value)
    assert f"{truncated.name}: not a readable Well HDF5 file" in message
    assert f"{foreign.name}: field(s) pressure have no 'mean'/'std' in" in message


def test_stats_without_a_field_is_named(tiny_well, tmp_path):
    table = yaml.safe_load((tiny_well / "datasets" / DATASET / "stats.yaml").read_text())
    for stat in table.values():
        del stat["velocity"]
    (tmp_path / "stats.yaml").write_text(yaml.safe_dump(table))
    registry = _registry(
        tmp_path / "r.yaml",
        (tmp_path / "stats.yaml").as_uri(),
        {"valid": [p.as_uri() for p in _sources(tiny_well)["valid"]]},
    )
    with pytest.raises(
        IrnoError, match=r"zeta_5.0_alpha_-3.0.hdf5: field\(s\) velocity have no 'mean'/'std' in .*stats.yaml"
    ):
        download_dataset(DATASET, tmp_path / "root", splits=("valid",), registry_path=registry)


def test_bad_names_and_unwritable_folder(registry, tmp_path):
    with pytest.raises(IrnoError, match="unknown dataset 'active_mater'.*turbulent_radiative_layer_2D"):
        download_dataset("active_mater", tmp_path, registry_path=registry)
    with pytest.raises(
        IrnoError, match="unknown dataset 'MHD_64' in the registry .*registry.yaml; it lists: active_matter"
    ):
        download_dataset("MHD_64", tmp_path, registry_path=registry)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(IrnoError, match="cannot write to the output folder .*a_file/datasets/active_matter"):
        download_dataset(DATASET, blocker, registry_path=registry)


def test_download_cli_writes_the_manifest(registry, tmp_path, capsys):
    out = tmp_path / "manifest.json"
    args = [
        "download",
        "--dataset",
        DATASET,
        "--root",
        str(tmp_path / "w"),
        "--manifest",
        str(out),
        "--registry",
        str(registry),
    ]
    assert irno_main([*args, "--splits", "valid", "test"]) == 0
    assert set(read_json(out)["splits"]) == {"valid", "test"}
    shutil.rmtree(tmp_path / "w" / "datasets" / DATASET / "data" / "test")
    bad = _registry(tmp_path / "bad.yaml", "file:///nonexistent/stats.yaml", {"test": ["file:///nonexistent/x.hdf5"]})
    assert irno_main([*args[:-1], str(bad), "--splits", "test"]) == 1
    assert "x.hdf5: missing or empty" in capsys.readouterr().err


def test_a_local_copy_is_indexed_in_place(tiny_well, registry, tmp_path, capsys):
    """`irno index`: the checks of a download on a copy already on disk, writing nothing beside it."""
    before = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in tiny_well.rglob("*")}
    manifest = index_local_dataset(DATASET, tiny_well, registry_path=registry)
    assert manifest["source"] == "local copy" and manifest["root"] == str(tiny_well.resolve())
    assert [e["sha256"] for e in manifest["splits"]["train"]] == [file_sha256(p) for p in _sources(tiny_well)["train"]]
    assert {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in tiny_well.rglob("*")} == before
    # every file the registry lists must be there, unless the files present are the dataset
    longer = _registry(tmp_path / "longer.yaml", "stats.yaml", {
        s: [p.as_uri() for p in f] + ([f"file:///x/{s}_more.hdf5"] if s == "valid" else [])
        for s, f in _sources(tiny_well).items()
    })  # fmt: skip
    with pytest.raises(IrnoError, match="valid_more.hdf5: missing or empty"):
        index_local_dataset(DATASET, tiny_well, registry_path=longer)
    assert index_local_dataset(DATASET, tiny_well, registry_path=longer, complete=False)["registry"] is None
    out = tmp_path / "manifest.json"
    args = ["index", "--dataset", DATASET, "--root", str(tmp_path / "nothing"), "--manifest", str(out)]
    assert irno_main(args) == 1 and not out.exists()
    assert "nothing/datasets/active_matter: no such folder" in capsys.readouterr().err
    assert irno_main([*args[:4], str(tiny_well), *args[5:], "--registry", str(registry)]) == 0
    assert read_json(out)["splits"]["test"]
