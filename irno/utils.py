"""Shared utilities: atomic writes, YAML/JSON I/O, config dataclasses from dicts, seeding and RNG
state, devices, hashing.

Everything that writes a result goes through `atomic_path` / `atomic_dir`, so an interrupted job
never leaves a half-written file under its final name (Snakemake would otherwise take it as
done). Both the IRNO and the ROMA code use this module; it imports nothing from the rest of
the package.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import logging
import os
import random
import shutil
import tempfile
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import numpy as np
import yaml


class IrnoError(Exception):
    """A problem the user can fix (bad config, missing file, stale cache, ...).

    The CLI prints the message without a traceback; it must name the file, key or value.
    """


log = logging.getLogger("irno")


def setup_logging(verbose: bool = False) -> None:
    """Log to stderr (rules redirect it into their `log:` file)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


# ----------------------------------------------------------------------------- atomic writes


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file path beside `path`; move it onto `path` only if the block succeeds.

    The temporary name is hidden and ends in ``.tmp``, so that a file left by a killed job never
    matches a data glob such as ``*.hdf5``. Writers that append a suffix to a path they are given
    (numpy's save/savez) must be handed an open file instead.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp creates 0600; give the result the permissions of a normally created file
        # (results on a shared cluster must stay readable by the group).
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_dir(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Move the finished directory `src` onto `dst`, replacing any old `dst` (same file system)."""
    src, dst = Path(src), Path(dst)
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


def _to_plain(obj: Any) -> Any:
    """Numpy/torch scalars and arrays, tuples and Paths to plain JSON/YAML types."""
    if isinstance(obj, dict):
        return {str(k): _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "tolist") and hasattr(obj, "dtype"):  # torch tensors, without importing torch
        return obj.tolist()
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_to_plain(obj), indent=2, allow_nan=True) + "\n")


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Compressed ``.npz`` of named arrays, atomically (numpy gets a file: it appends .npz to names)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)


def _read(path: str | os.PathLike, parse, errors: type[Exception], language: str) -> Any:
    """`parse` of a file's text; an IrnoError naming the file when it is missing or not valid `language`."""
    path = Path(path)
    if not path.is_file():
        raise IrnoError(f"{path}: file not found")
    try:
        return parse(path.read_text())
    except errors as e:
        raise IrnoError(f"{path}: not valid {language} ({e})") from None


def read_json(path: str | os.PathLike) -> Any:
    return _read(path, json.loads, json.JSONDecodeError, "JSON")


def parse_json_option(text: str, option: str = "--json") -> Any:
    """A command-line option's JSON value; an error naming the option when it is not JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise IrnoError(f"{option}: not valid JSON ({e})") from None


def write_yaml(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(_to_plain(obj), sort_keys=False))


def read_yaml(path: str | os.PathLike) -> Any:
    return _read(path, yaml.safe_load, yaml.YAMLError, "YAML")


# ----------------------------------------------------------------------------- config dicts <-> dataclasses


def require(ok: bool, key: str, value: Any, rule: str) -> None:
    """Validation inside a config dataclass's ``__post_init__``: name the key, the value and the rule."""
    if not ok:
        raise IrnoError(f"config key '{key}': {value!r} is invalid (must be {rule})")


def load_settings(cls: type, path) -> Any:
    """Dataclass `cls` from a settings YAML (a mapping of its keys); errors name the file."""
    data = read_yaml(path)
    try:
        return from_dict(cls, data)
    except IrnoError as e:
        raise IrnoError(f"{path}: {e}") from None


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(cls: type, data: dict | None, where: str = "") -> Any:
    """Build dataclass `cls` from a plain dict, naming any unknown key or ill-typed value."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise IrnoError(f"{where or cls.__name__}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise IrnoError(f"unknown config key '{key}' (known keys: {', '.join(fields)})")
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        kwargs[name] = _coerce(hints[name], value, key)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    origin = get_origin(tp)
    if origin is Literal:
        if value not in get_args(tp):
            choices = ", ".join(repr(a) for a in get_args(tp))
            raise IrnoError(f"config key '{key}': {value!r} is not one of {choices}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return None if value is None else _coerce(args[0], value, key)
    if origin is dict and get_args(tp):  # dict[str, X]: every value an X
        if not isinstance(value, dict):
            raise IrnoError(f"config key '{key}': expected a mapping, got {value!r}")
        item = get_args(tp)[1]
        return {k: _coerce(item, v, f"{key}.{k}") for k, v in value.items()}
    if origin is list and get_args(tp):  # list[X]: every item an X
        if not isinstance(value, list):
            raise IrnoError(f"config key '{key}': expected a list, got {value!r}")
        item = get_args(tp)[0]
        return [_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise IrnoError(f"config key '{key}': expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise IrnoError(f"config key '{key}': expected an integer, got {value!r}")
        return value
    if tp is float:
        # PyYAML reads "3e-4" (no dot) as a string; accept it as the number it obviously is.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise IrnoError(f"config key '{key}': expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise IrnoError(f"config key '{key}': expected a string, got {value!r}")
        return value
    return value


def write_settings(kinds: Mapping[str, Any], kind: str, data: dict, path: str | os.PathLike) -> Any:
    """Validate `data` as the settings of `kind` and write them, complete with defaults, as YAML.

    `kinds` maps each kind to a config dataclass (built with `from_dict`, written with `to_dict`)
    or to a function that validates the mapping itself and returns what to write (settings checked
    as a whole, such as a study). Returns the dataclass, or the written mapping. The workflow passes
    each step's resolved settings as a rule parameter and writes them with this, so that a settings
    file changes (and the steps reading it rerun) exactly when its settings do.
    """
    if kind not in kinds:
        raise IrnoError(f"unknown settings kind {kind!r} (known: {', '.join(kinds)})")
    make = kinds[kind]
    if dataclasses.is_dataclass(make):
        settings = from_dict(make, data)
        written = to_dict(settings)
    else:
        settings = written = make(data)
    write_yaml(path, written)
    return settings


def flatten(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    """The non-mapping values of a nested mapping by their dotted keys: {"train": {"K": 4}} -> {"train.K": 4}."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def deep_merge(base: dict, overrides: dict | None) -> dict:
    """A copy of `base` with `overrides` applied recursively (dicts merge, other values replace)."""
    out = copy.deepcopy(base)
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# ----------------------------------------------------------------------------- hashing


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hash of a JSON-able object that does not depend on dict order or Python's hash seed."""
    text = json.dumps(_to_plain(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- seeds and RNG state


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def rng_state() -> dict:
    """Every RNG a training loop touches, for a bit-identical resume."""
    import torch

    # Plain types and tensors only, so that checkpoints load with torch.load(weights_only=True).
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------- devices


def select_device(preference: str = "auto"):
    """'auto' -> CUDA when available, else CPU; 'cpu', 'cuda', 'cuda:1' as given."""
    import torch

    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(preference)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise IrnoError(f"device '{preference}' was requested but CUDA is not available")
    return device
