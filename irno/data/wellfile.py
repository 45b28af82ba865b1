"""The Well's on-disk format: write an HDF5 file `WellDataset` reads, and the split statistics.

Schema (docs/method.md#the-well, as read by ``the_well/data/datasets.py``): root attributes ``dataset_name,
grid_type, n_spatial_dims, n_trajectories`` (plus the simulation parameters); group
``dimensions`` (``time``, ``x``, ``y``); group ``boundary_conditions``; group ``scalars``;
groups ``t0_fields``, ``t1_fields``, ``t2_fields`` whose arrays are ``(B, T, X, Y[, 2[, 2]])``
float32. Field order inside a group is the order of its ``field_names`` attribute, and that is
the channel order the loader produces (t0 fields, then t1, then t2; tensor components
row-major: ``D_xx, D_xy, D_yx, D_yy``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import h5py
import numpy as np

from irno import IrnoError
from irno.files import atomic_path, write_yaml

SPATIAL_DIMS = ("x", "y")


def write_well_file(
    path: str | os.PathLike,
    *,
    dataset_name: str,
    time: np.ndarray,
    coords: Mapping[str, np.ndarray],
    fields: Mapping[int, Mapping[str, np.ndarray]],
    scalars: Mapping[str, float] | None = None,
    bc_type: str = "PERIODIC",
    attrs: Mapping[str, object] | None = None,
) -> None:
    """Write one Well HDF5 file atomically.

    Args:
        time: (T,) times of the saved frames.
        coords: spatial coordinate arrays in axis order, e.g. ``{"x": (X,), "y": (Y,)}``.
        fields: tensor order -> {name: array}. Order 0: (B, T, X, Y); order 1: (B, T, X, Y, 2);
            order 2: (B, T, X, Y, 2, 2). Every field is time- and sample-varying; order-2 fields
            get ``symmetric`` / ``antisymmetric`` attributes from their values, as in the real files.
        scalars: constant scalars (e.g. ``L``, ``zeta``, ``alpha``), also root attributes.
        bc_type: boundary type on every axis (PERIODIC, WALL or OPEN).
        attrs: further root attributes (provenance).
    """
    scalars = dict(scalars or {})
    dims = list(coords)
    n_traj = None
    for order, group in fields.items():
        for name, arr in group.items():
            want = 2 + len(dims) + order
            if arr.ndim != want:
                raise IrnoError(f"field '{name}' (order {order}) must have {want} dims, got {arr.shape}")
            if n_traj is None:
                n_traj = arr.shape[0]
            if arr.shape[0] != n_traj or arr.shape[1] != len(time):
                raise IrnoError(f"field '{name}': shape {arr.shape} disagrees with B={n_traj}, T={len(time)}")
    if n_traj is None:
        raise IrnoError("write_well_file: no fields given")

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["dataset_name"] = dataset_name
        f.attrs["grid_type"] = "cartesian"
        f.attrs["n_spatial_dims"] = len(dims)
        f.attrs["n_trajectories"] = n_traj
        f.attrs["simulation_parameters"] = list(scalars)
        for key, value in scalars.items():
            f.attrs[key] = value
        for key, value in (attrs or {}).items():
            f.attrs[key] = value

        g = f.create_group("dimensions")
        g.attrs["spatial_dims"] = dims
        d = g.create_dataset("time", data=np.asarray(time, dtype=np.float32))
        d.attrs["sample_varying"] = False
        d.attrs["time_varying"] = True
        for dim, values in coords.items():
            d = g.create_dataset(dim, data=np.asarray(values, dtype=np.float32))
            d.attrs["sample_varying"] = False
            d.attrs["time_varying"] = False

        g = f.create_group("boundary_conditions")
        for dim, values in coords.items():
            sub = g.create_group(f"{dim}_{bc_type.lower()}")
            sub.attrs["associated_dims"] = [dim]
            sub.attrs["associated_fields"] = []
            sub.attrs["bc_type"] = bc_type.upper()
            sub.attrs["sample_varying"] = False
            sub.attrs["time_varying"] = False
            mask = np.zeros(len(values), dtype=bool)
            mask[[0, -1]] = True
            sub.create_dataset("mask", data=mask)

        g = f.create_group("scalars")
        g.attrs["field_names"] = list(scalars)
        for key, value in scalars.items():
            d = g.create_dataset(key, data=np.array(value, dtype=np.float32))
            d.attrs["time_varying"] = False
            d.attrs["sample_varying"] = False

        for order in range(3):
            g = f.create_group(f"t{order}_fields")
            group = fields.get(order, {})
            g.attrs["field_names"] = list(group)
            for name, arr in group.items():
                d = g.create_dataset(name, data=np.asarray(arr, dtype=np.float32))
                d.attrs["dim_varying"] = [True] * len(dims)
                d.attrs["sample_varying"] = True
                d.attrs["time_varying"] = True
                if order == 2:  # the real files say whether each tensor is (anti)symmetric
                    transposed = np.swapaxes(arr, -1, -2)
                    d.attrs["symmetric"] = bool(np.array_equal(arr, transposed))
                    d.attrs["antisymmetric"] = bool(np.array_equal(arr, -transposed))


def compute_stats(files: Iterable[str | os.PathLike]) -> dict:
    """Per-field mean, std, rms and the same of the frame-to-frame change, over all files.

    The result has the layout of The Well's ``stats.yaml``: ``{stat: {field: value}}`` with a
    float for scalar fields, a list of 2 for vectors and a 2x2 nested list for tensors, reduced
    over trajectories, time and space (population statistics, accumulated in float64).
    """
    sums: dict[str, dict[str, np.ndarray]] = {}
    counts: dict[str, dict[str, int]] = {}
    files = list(files)
    if not files:
        raise IrnoError("compute_stats: no files given")
    for path in files:
        with h5py.File(path, "r") as f:
            for order in range(3):
                group = f[f"t{order}_fields"]
                for name in group.attrs["field_names"]:
                    arr = group[name][...].astype(np.float64)  # (B, T, X, Y, *tensor)
                    reduce = tuple(range(arr.ndim - order))
                    delta = arr[:, 1:] - arr[:, :-1]
                    s = sums.setdefault(name, {})
                    c = counts.setdefault(name, {"x": 0, "d": 0})
                    for key, a in (("x", arr), ("d", delta)):
                        s[key + "1"] = s.get(key + "1", 0) + a.sum(axis=reduce)
                        s[key + "2"] = s.get(key + "2", 0) + (a * a).sum(axis=reduce)
                        c[key] += int(np.prod([a.shape[i] for i in reduce]))
    stats: dict[str, dict] = {k: {} for k in ("mean", "std", "rms", "mean_delta", "std_delta", "rms_delta")}
    for name, s in sums.items():
        for key, suffix in (("x", ""), ("d", "_delta")):
            n = counts[name][key]
            mean = s[key + "1"] / n
            ms = s[key + "2"] / n
            stats["mean" + suffix][name] = _plain(mean)
            stats["std" + suffix][name] = _plain(np.sqrt(np.maximum(ms - mean**2, 0.0)))
            stats["rms" + suffix][name] = _plain(np.sqrt(ms))
    return stats


def write_stats(dataset_dir: str | os.PathLike, split: str = "train") -> Path:
    """Compute the statistics of one split and write ``<dataset_dir>/stats.yaml``."""
    dataset_dir = Path(dataset_dir)
    files = sorted((dataset_dir / "data" / split).glob("*.hdf5"))
    if not files:
        raise IrnoError(f"{dataset_dir / 'data' / split}: no .hdf5 files to compute statistics from")
    out = dataset_dir / "stats.yaml"
    write_yaml(out, compute_stats(files))
    return out


def _plain(a: np.ndarray) -> float | list:
    return float(a) if np.ndim(a) == 0 else np.asarray(a, dtype=float).tolist()
