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
import importlib.metadata
import json
import logging
import os
import random
import re
import shutil
import socket
import subprocess
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

# Environment variables that say this process was given GPUs. SLURM sets the first two in a job
# with GPUs (indices; a count); SLURM and other schedulers set CUDA_VISIBLE_DEVICES.
GPU_ALLOTMENT_VARIABLES = ("SLURM_JOB_GPUS", "SLURM_GPUS_ON_NODE", "CUDA_VISIBLE_DEVICES")

# The oldest NVIDIA driver branch (Linux) that runs each CUDA major version: NVIDIA's CUDA Toolkit
# release notes, table "CUDA Toolkit and Minimum Required Driver Version for CUDA Minor Version
# Compatibility" (11.x: 450.80.02, 12.x: 525.60.13, 13.x: 580). PyTorch's wheels bring their own
# CUDA runtime and libraries, so the driver is all they need of the machine.
CUDA_MIN_DRIVER = {11: 450, 12: 525, 13: 580}

NVIDIA_DRIVER_FILE = Path("/proc/driver/nvidia/version")
PYTORCH_PREVIOUS_VERSIONS = "https://pytorch.org/get-started/previous-versions/"


class CudaUnavailableError(IrnoError):
    """CUDA was asked for, or this job was given GPUs, but torch can use no CUDA device."""


def gpu_allotment() -> tuple[str, str] | None:
    """(variable, value) of the first environment variable that says this process was given GPUs."""
    for name in GPU_ALLOTMENT_VARIABLES:
        value = os.environ.get(name, "").strip()
        # "-1" is the usual way of hiding every GPU from CUDA; SLURM_GPUS_ON_NODE is a count.
        if value and value != "-1" and not (name == "SLURM_GPUS_ON_NODE" and value == "0"):
            return name, value
    return None


def nvidia_driver_version() -> str | None:
    """The NVIDIA kernel driver's version (e.g. "580.65.06"), found without CUDA; None without one."""
    with contextlib.suppress(OSError):
        # "NVRM version: NVIDIA UNIX [Open] Kernel Module [for x86_64]  580.65.06  Release Build ..."
        found = re.search(r"Kernel Module.*?\s(\d+\.\d+(?:\.\d+)*)\s", NVIDIA_DRIVER_FILE.read_text())
        if found:
            return found.group(1)
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=15,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = result.stdout.split()
    return lines[0] if result.returncode == 0 and lines else None


def no_cuda_message(why: str) -> str:
    """One line: `why` CUDA is expected, torch's CUDA build, the NVIDIA driver found, and what to do."""
    import torch

    cuda, driver = torch.version.cuda, nvidia_driver_version()
    problem = f"{why}, but torch finds no usable CUDA device on {socket.gethostname()}"
    cpu = (
        "set `device: cpu` in the config (top-level: every step; or the step's own `device` key) "
        "to run on the CPU deliberately"
    )
    release = torch.__version__.split("+")[0]
    if cuda is None:
        return (
            f"{problem}: torch {torch.__version__} is built without CUDA. Install a CUDA build of torch {release} "
            f"({PYTORCH_PREVIOUS_VERSIONS}), or {cpu}."
        )
    needed = CUDA_MIN_DRIVER.get(int(cuda.split(".")[0]))
    build = f"torch {torch.__version__} is built for CUDA {cuda}" + (
        f", which needs an NVIDIA driver of version {needed} or newer" if needed else ""
    )
    if driver is None:
        return (
            f"{problem}: {build}, and no NVIDIA driver was found (no {NVIDIA_DRIVER_FILE}, no nvidia-smi). "
            f"Run on a node with an NVIDIA GPU and its driver (`nvidia-smi` shows both), or {cpu}."
        )
    branch = int(driver.split(".")[0])
    if needed and branch >= needed:
        return (
            f"{problem}: {build}, and driver {driver} is new enough, so this process sees no GPU. "
            f"Check `nvidia-smi` and CUDA_VISIBLE_DEVICES inside the job, or {cpu}."
        )
    runnable = [major for major, oldest in CUDA_MIN_DRIVER.items() if oldest <= branch]
    if not runnable:
        return f"{problem}: {build}, and the driver found is {driver}. Ask for a newer NVIDIA driver, or {cpu}."
    major = max(runnable)
    try:
        vision = f" torchvision=={importlib.metadata.version('torchvision').split('+')[0]}"
    except importlib.metadata.PackageNotFoundError:
        vision = ""
    return (
        f"{problem}: {build}, and the driver found is {driver}. Install a build of torch {release} for CUDA "
        f"{major}.x, which this driver runs: pip install torch=={release}{vision} --index-url "
        f"https://download.pytorch.org/whl/cu{major}N, with a cu{major}N that {PYTORCH_PREVIOUS_VERSIONS} lists "
        f"for torch {release}; or {cpu}."
    )


def select_device(preference: str = "auto"):
    """The torch device of `preference`: "cpu", "cuda", "cuda:N" or "auto".

    "cpu" is the CPU, deliberately, also in a job with GPUs. "cuda" and "cuda:N" need a usable
    CUDA device. "auto" takes CUDA when usable; without it, a job that was given GPUs
    (`gpu_allotment`) must not quietly train on the CPU for days, so it fails too, and elsewhere
    (a local run) it takes the CPU. The failure, `CudaUnavailableError`, names torch's CUDA, the
    driver found and what to do; the CLI chooses the device before it reads any data.
    """
    import torch

    preference = str(preference)
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        allotment = gpu_allotment()
        if allotment is None:
            return torch.device("cpu")
        name, value = allotment
        raise CudaUnavailableError(
            no_cuda_message(f"this job was given GPUs ({name}={value}) and `device: auto` wants them")
        )
    try:
        device = torch.device(preference)
    except RuntimeError:
        raise IrnoError(f"device {preference!r} is not a device (auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CudaUnavailableError(no_cuda_message(f"the config asks for device {preference!r}"))
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise IrnoError(
                f"device {preference!r}: this process sees {torch.cuda.device_count()} CUDA device(s) "
                f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})"
            )
    return device


def log_device(device, precision: str) -> None:
    """Log where a command computes, as one of its first lines: the device (the GPU's name, torch's
    CUDA, the NVIDIA driver; or the CPU's torch threads) and `precision` (e.g. "fp32", "bf16 autocast")."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        index = torch.cuda.current_device() if device.index is None else device.index
        log.info(
            "device cuda:%d (%s), torch %s for CUDA %s, NVIDIA driver %s; precision %s",
            index, torch.cuda.get_device_name(index), torch.__version__, torch.version.cuda,
            nvidia_driver_version() or "not found", precision,
        )  # fmt: skip
    else:
        log.info(
            "device %s (%d torch threads), torch %s; precision %s",
            device, torch.get_num_threads(), torch.__version__, precision,
        )  # fmt: skip
