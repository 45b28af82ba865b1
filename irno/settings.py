"""Settings: config mappings <-> dataclasses, checked key by key (errors name the key), and the
one writer of every step's settings file (`write_settings`), for both studies."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, get_args, get_origin

from irno import IrnoError
from irno.files import read_yaml, write_yaml


def parse_json_option(text: str, option: str = "--json") -> Any:
    """A command-line option's JSON value; an error naming the option when it is not JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise IrnoError(f"{option}: not valid JSON ({e})") from None


def require(ok: bool, key: str, value: Any, rule: str) -> None:
    """Validation inside a config dataclass's ``__post_init__``: name the key, the value and the rule."""
    if not ok:
        raise IrnoError(f"config key '{key}': {value!r} is invalid (must be {rule})")


def require_at_least(cfg: Any, section: str, minimum: float, *keys: str) -> None:
    """`require` each of `keys` of config dataclass `cfg` to be >= `minimum`, named ``<section>.<key>``."""
    for key in keys:
        value = getattr(cfg, key)
        require(value >= minimum, f"{section}.{key}", value, f">= {minimum}")


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


def settings_kinds() -> dict[str, type]:
    """Every kind of settings file of both studies -> the dataclass it holds (the workflow makes
    one rule per kind, `<kind>_settings`, in workflow/rules/settings.smk)."""
    from irno.config import SETTINGS_KINDS
    from irno.roma.settings import SETTINGS_KINDS as ROMA_SETTINGS_KINDS

    return SETTINGS_KINDS | ROMA_SETTINGS_KINDS


def write_settings(cls: type, data: dict, path: str | os.PathLike) -> Any:
    """Validate `data` as settings of dataclass `cls` and write them, complete with defaults, as YAML.

    The workflow passes each step's resolved settings as a rule parameter and writes them with this
    (`irno write-settings`), so that a settings file changes, and the steps reading it rerun,
    exactly when its settings do. Returns the dataclass.
    """
    settings = from_dict(cls, data)
    write_yaml(path, to_dict(settings))
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
