"""Download a Well dataset (or take an existing copy) and verify every file against the package's
own registry.

The Well's `well_download` exits quietly when the network fails, so a download is only trusted
after `build_manifest` has checked that every file the registry lists for the split arrived, is
non-empty, opens with h5py and with The Well's loader and holds the fields of ``stats.yaml``. The
manifest records each file's SHA-256, which `irno prepare` checks before reading; an interrupted
download resumes where it stopped. `index_local_dataset` does the same checks on a copy already on
disk, reading only, with no network.

Detail: docs/outputs.md#data-datadataset, docs/outputs.md#a-local-copy-of-the-well-source-local
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from irno import IrnoError, log
from irno.data.well import SPLITS, build_manifest, check_split, dataset_dir
from irno.files import read_yaml


def well_registry_path() -> str:
    from the_well.utils.download import WELL_REGISTRY

    return WELL_REGISTRY


def registry_files(name: str, splits: tuple[str, ...], registry_path: str) -> dict[str, list[str]]:
    """Split -> the file names the registry lists for dataset `name`."""
    registry = read_yaml(registry_path)
    if not isinstance(registry, dict) or name not in registry:
        known = ", ".join(sorted(registry)) if isinstance(registry, dict) else "none"
        raise IrnoError(f"unknown dataset '{name}' in the registry {registry_path}; it lists: {known}")
    entry = registry[name]
    missing = [key for key in ("stats", *splits) if key not in entry]
    if missing:
        raise IrnoError(f"{registry_path}: dataset '{name}' has no key(s) {', '.join(missing)}")
    return {split: [os.path.basename(url) for url in entry[split]] for split in splits}


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise IrnoError(f"cannot write to the output folder {folder}: {e.strerror or e}") from None


def download_dataset(
    name: str,
    well_root: str | os.PathLike,
    *,
    splits: tuple[str, ...] = SPLITS,
    registry_path: str | None = None,
) -> dict:
    """Download `splits` of Well dataset `name` under `well_root`, verify them, return the manifest.

    Files already complete are left as they are and partial ones are resumed, so running it
    again after an interruption or a failure is always the fix for a network problem. A file
    that is not a prefix of the real one (foreign or corrupted) must be deleted by hand; the
    error names it.
    """
    from the_well.utils.download import well_download

    from irno.data.well import check_dataset_name

    check_dataset_name(name)
    for split in splits:
        check_split(split)
    registry_path = str(registry_path or well_registry_path())
    expected = registry_files(name, tuple(splits), registry_path)
    _check_writable(dataset_dir(well_root, name))
    for split in splits:
        log.info("downloading %s/%s (%d files) under %s", name, split, len(expected[split]), well_root)
        try:
            well_download(str(well_root), dataset=name, split=split, registry_path=registry_path)
        except FileNotFoundError as e:  # no curl on this machine
            raise IrnoError(f"the download needs curl on the PATH ({e})") from None
    try:
        return build_manifest(
            well_root,
            name,
            source="the_well download",
            splits=tuple(splits),
            expected_files=expected,
            extra={"registry": registry_path},
        )
    except IrnoError as e:
        raise IrnoError(
            f"{e}\nRun the download again to fetch missing files and resume partial ones (offline nodes cannot "
            "download: run it where the internet is reachable); delete a file named above as not readable if it "
            "stays so after a complete download."
        ) from None


def index_local_dataset(
    name: str,
    well_root: str | os.PathLike,
    *,
    splits: tuple[str, ...] = SPLITS,
    registry_path: str | None = None,
    complete: bool = True,
) -> dict:
    """Verify an existing copy of Well dataset `name` under `well_root` (<well_root>/datasets/<name>/),
    read-only, and return its manifest (sizes and SHA-256 of every file).

    With `complete` every file the registry lists for `splits` must be there; without, the files
    present are the dataset (e.g. a re-simulation in The Well's format). Either way every file must
    be readable. The copy is never modified, so a read-only copy works."""
    from irno.data.well import check_dataset_name

    check_dataset_name(name)
    for split in splits:
        check_split(split)
    root = dataset_dir(well_root, name)
    if not root.is_dir():
        raise IrnoError(
            f"{root}: no such folder; a local copy (source: local) must be in The Well's layout, "
            f"<path>/datasets/{name}/{{stats.yaml,data/<split>/*.hdf5}}, with `path` the folder holding datasets/"
        )
    registry_path = str(registry_path or well_registry_path())
    expected = registry_files(name, tuple(splits), registry_path) if complete else None
    log.info("indexing the local copy of %s under %s (read only)", name, well_root)
    return build_manifest(
        well_root,
        name,
        source="local copy",
        splits=tuple(splits),
        expected_files=expected,
        extra={"registry": registry_path if complete else None},
    )
