"""Reading The Well: one code path for the downloaded and the simulated datasets.

Everything downstream reads samples through The Well's own `WellDataset` with
`ZScoreNormalization` and converts them with `window_to_xy`:

    input_fields (T_in, H, W, F) -> x (T_in * F, H, W)   time-major channels, e.g. 4 x 11 = 44
    output_fields (1, H, W, F)   -> y (F, H, W)
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from einops import rearrange

from irno import IrnoError
from irno.files import file_sha256, read_yaml

SPLITS = ("train", "valid", "test")


def known_datasets() -> list[str]:
    from the_well.data.utils import WELL_DATASETS

    return list(WELL_DATASETS)


def dataset_dir(well_root: str | os.PathLike, name: str) -> Path:
    """``<well_root>/datasets/<name>``, the layout The Well's downloader produces."""
    return Path(well_root) / "datasets" / name


def split_dir(well_root: str | os.PathLike, name: str, split: str) -> Path:
    return dataset_dir(well_root, name) / "data" / split


def check_dataset_name(name: str) -> None:
    if name not in known_datasets():
        raise IrnoError(f"unknown dataset '{name}'; The Well's datasets are: {', '.join(known_datasets())}")


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise IrnoError(f"unknown split '{split}'; expected one of {', '.join(SPLITS)}")


# What h5py and The Well's loader raise on a file they cannot read: missing groups or attributes
# (KeyError), unreadable or truncated HDF5 (OSError), trajectory counts or shapes the data do not
# have (IndexError, ValueError), the loader's own consistency checks (AssertionError).
READ_ERRORS = (OSError, KeyError, IndexError, ValueError, AssertionError)


def open_well_dataset(
    well_root: str | os.PathLike,
    name: str,
    split: str,
    *,
    n_steps_input: int = 4,
    n_steps_output: int = 1,
    full_trajectory: bool = False,
):
    """`WellDataset` for one split, z-score normalised with the dataset's ``stats.yaml``.

    With ``full_trajectory=True`` each item is one whole trajectory (input: the first
    ``n_steps_input`` frames, output: all the rest), which is how prepared stores read a split
    in one pass per trajectory through the same loader. A file the loader cannot read is named.
    """
    check_dataset_name(name)
    check_split(split)
    root = dataset_dir(well_root, name)
    stats = root / "stats.yaml"
    if not stats.is_file():
        raise IrnoError(f"{stats}: missing; normalisation statistics are required (download or simulate the dataset)")
    folder = split_dir(well_root, name, split)
    files = sorted(p.name for p in [*folder.glob("*.hdf5"), *folder.glob("*.h5")])
    if not files:
        raise IrnoError(f"{folder}: no HDF5 files for split '{split}' of '{name}'")
    options = {"n_steps_input": n_steps_input, "n_steps_output": n_steps_output, "full_trajectory": full_trajectory}
    try:
        ds = _well_dataset(well_root, name, split, **options)
    except READ_ERRORS as e:
        # The loader's error does not say which file it was reading: ask it about each file alone.
        problems = loader_problems(well_root, name, split, files, **options)
        if problems:
            raise IrnoError("The Well's loader cannot read:\n  " + "\n  ".join(problems)) from None
        raise IrnoError(
            f"{folder}: The Well could not read this split ({type(e).__name__}: {e}); each of its files reads on its "
            "own, so they disagree with each other (dataset name, dimensions or grid)"
        ) from None
    if ds.norm is None:  # the pitfall in _well_dataset, guarded for good
        raise IrnoError(f"{folder}: WellDataset came up without normalisation")
    return ds


def loader_problems(
    well_root: str | os.PathLike,
    name: str,
    split: str,
    files: list[str],
    *,
    n_steps_input: int = 4,
    n_steps_output: int = 1,
    full_trajectory: bool = False,
) -> list[str]:
    """One message per file of `files` (names in the split's folder) that `WellDataset` cannot open alone.

    Opening reads a file's attributes, dimensions, boundary conditions, scalars and field
    attributes (not the field data), so a missing group or attribute shows up here.
    """
    folder = split_dir(well_root, name, split)
    problems = []
    for file_name in files:
        try:
            # include_filters keeps the paths containing the string: "/<name>" selects this file only.
            _well_dataset(
                well_root,
                name,
                split,
                n_steps_input=n_steps_input,
                n_steps_output=n_steps_output,
                full_trajectory=full_trajectory,
                only=os.sep + file_name,
            )
        except READ_ERRORS as e:
            problems.append(f"{folder / file_name}: The Well's loader cannot read this file ({type(e).__name__}: {e})")
    return problems


def _well_dataset(
    well_root, name: str, split: str, *, n_steps_input: int, n_steps_output: int, full_trajectory: bool, only=None
):
    from the_well.data import WellDataset
    from the_well.data.normalization import ZScoreNormalization

    return WellDataset(
        well_base_path=str(Path(well_root) / "datasets"),
        well_dataset_name=name,
        well_split_name=split,
        include_filters=[only] if only else [],
        n_steps_input=n_steps_input,
        n_steps_output=n_steps_output,
        use_normalization=True,
        # Without normalization_type, use_normalization=True silently normalises nothing.
        normalization_type=ZScoreNormalization,
        full_trajectory_mode=full_trajectory,
        # The default (100) would silently cut full trajectories longer than 100 + T_in frames.
        max_rollout_steps=1 << 30,
        return_grid=False,
        boundary_return_type=None,
    )


def window_to_xy(sample: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """One `WellDataset` item -> (x, y) channel-first float32 tensors."""
    x = rearrange(sample["input_fields"], "T H W F -> (T F) H W")  # (T_in * F, H, W)
    y = rearrange(sample["output_fields"], "T H W F -> (T F) H W")  # (F, H, W) for T_out = 1
    return x.float().contiguous(), y.float().contiguous()


def field_names(ds) -> list[str]:
    """Flattened channel names in loader order, e.g. concentration, velocity_x, ..., E_yy."""
    return [n for order in range(3) for n in ds.metadata.field_names[order]]


def describe_file(path: str | os.PathLike) -> dict:
    """Size, SHA-256, trajectories, frames, grid and field names of one Well HDF5 file.

    Raises IrnoError naming the file when it is empty, truncated or not in The Well's format.
    The hash is what `irno prepare` checks the file against before reading it.
    """
    import h5py

    path = Path(path)
    size = path.stat().st_size if path.exists() else 0
    if size == 0:
        raise IrnoError(f"{path}: missing or empty")
    try:
        with h5py.File(path, "r") as f:
            dims = [str(d) for d in f["dimensions"].attrs["spatial_dims"]]
            description = {
                "n_trajectories": int(f.attrs["n_trajectories"]),
                "n_steps": int(f["dimensions"]["time"].shape[-1]),
                "grid": [int(f["dimensions"][d].shape[-1]) for d in dims],
                "fields": {f"t{o}": [str(n) for n in f[f"t{o}_fields"].attrs["field_names"]] for o in range(3)},
            }
    except (OSError, KeyError) as e:
        raise IrnoError(f"{path}: not a readable Well HDF5 file ({type(e).__name__}: {e})") from None
    return {"file": path.name, "bytes": size, "sha256": file_sha256(path), **description}


def build_manifest(
    well_root: str | os.PathLike,
    name: str,
    *,
    source: str,
    splits: tuple[str, ...] = SPLITS,
    expected_files: dict[str, list[str]] | None = None,
    expected_fields: dict[str, list[str]] | None = None,
    extra: dict | None = None,
) -> dict:
    """Verify a dataset on disk and describe it (the manifest later rules depend on).

    Every file of every split must open with h5py and with The Well's loader, and hold the same
    fields as the first. With `expected_files` (split -> file names, e.g. from The Well's
    registry) a missing file is an error; with `expected_fields` (t0/t1/t2 -> names) so is a file
    with other fields. All problems are collected and reported together, each naming its file.
    Each file's size and SHA-256 are recorded: later steps read a file only if it still has them.
    """
    check_dataset_name(name)
    root = dataset_dir(well_root, name)
    problems: list[str] = []
    manifest: dict = {"dataset": name, "source": source, "root": str(Path(well_root).resolve()), "splits": {}}
    stats = root / "stats.yaml"
    stats_fields = None  # field -> statistics present, from stats.yaml
    if not stats.is_file() or stats.stat().st_size == 0:
        problems.append(f"{stats}: missing or empty")
    else:
        manifest["stats"] = {"file": "stats.yaml", "sha256": file_sha256(stats)}
        table = read_yaml(stats)
        if not isinstance(table, dict) or not all(isinstance(table.get(k), dict) for k in ("mean", "std")):
            problems.append(f"{stats}: no 'mean' and 'std' statistics per field")
        else:
            stats_fields = set(table["mean"]) & set(table["std"])
    reference = None  # fields every file must hold: expected_fields, else the first file's
    for split in splits:
        folder = split_dir(well_root, name, split)
        present = sorted(p.name for p in folder.glob("*.hdf5")) + sorted(p.name for p in folder.glob("*.h5"))
        wanted = sorted(expected_files[split]) if expected_files else present
        if not wanted:
            problems.append(f"{folder}: no HDF5 files")
        entries, sound = [], []  # sound: the files without a problem so far
        for file_name in wanted:
            try:
                entry = describe_file(folder / file_name)
            except IrnoError as e:
                problems.append(str(e))
                continue
            entries.append(entry)
            known = len(problems)
            if stats_fields is not None:  # WellDataset would fail later with a bare KeyError
                unknown = [n for names in entry["fields"].values() for n in names if n not in stats_fields]
                if unknown:
                    problems.append(
                        f"{folder / file_name}: field(s) {', '.join(unknown)} have no 'mean'/'std' in {stats}"
                    )
            reference = expected_fields or reference or entry["fields"]
            if entry["fields"] != reference:
                problems.append(f"{folder / file_name}: fields {entry['fields']} differ from {reference}")
            if len(problems) == known:
                sound.append(file_name)
        if stats_fields is not None:  # one input and one output frame: the structure, whatever the length
            problems += loader_problems(well_root, name, split, sound, n_steps_input=1)
        manifest["splits"][split] = entries
    if problems:
        raise IrnoError(f"dataset '{name}' under {root} failed verification:\n  " + "\n  ".join(problems))
    manifest.update(extra or {})
    return manifest
