"""config/README.md: every key of every workflow config section, with its type, default and meaning.

    python -m irno.configdoc > config/README.md

Generated, so that it cannot drift: the structure, types, defaults and descriptions come from the
config schema (workflow/schemas/config.schema.yaml); where the schema passes a settings mapping
through to a dataclass (`SETTINGS`), its keys come from the dataclass: field names, types and
defaults, and as meaning the comment on the field's line or the comment lines just above it.
tests/test_configdoc.py regenerates the file and fails when the committed one differs.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import json
import sys
import tokenize
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from irno import config as irno_config
from irno.roma import settings as roma_settings

SCHEMA = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"
COMMAND = "python -m irno.configdoc > config/README.md"

# The config keys whose mapping is a dataclass's keys (`<name>`: any name the config gives).
SETTINGS: dict[str, type] = {
    "datasets.<name>.simulate": irno_config.SimulationConfig,
    "bases.<name>": irno_config.BaseConfig,
    "phi.network": irno_config.NetworkConfig,
    "phi.loss": irno_config.LossConfig,
    "phi.train": irno_config.PhiTrainConfig,
    "evaluate": irno_config.EvalConfig,
    "roma.datasets.<name>": roma_settings.DataConfig,
    "roma.model": roma_settings.ModelConfig,
    "roma.train": roma_settings.TrainConfig,
}
# The config keys that take another key's settings (overrides of its defaults).
SAME_KEYS_AS = {
    "experiments.<name>.network": "phi.network",
    "experiments.<name>.loss": "phi.loss",
    "experiments.<name>.train": "phi.train",
    "bases.<name>.by_dataset.<name>": "bases.<name>",
}


@dataclass
class Key:
    """One row of a table: a dotted key, its type, default and meaning."""

    key: str
    type: str
    default: str
    meaning: str


# ----------------------------------------------------------------------------- dataclasses


def field_comments(cls: type) -> dict[str, str]:
    """Field name -> its comment: the comment lines just above the field, then the one on its line."""
    source = inspect.getsource(cls)
    comments: dict[int, str] = {}  # line -> comment text
    code_lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
        elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            code_lines.add(tok.start[0])
    lines = source.splitlines()
    out = {}
    for number, line in enumerate(lines, 1):
        name = line.strip().split(":", 1)[0]
        if not (line.startswith("    ") and not line.startswith("     ") and name.isidentifier() and ":" in line):
            continue
        above = []
        previous = number - 1
        while previous in comments and previous not in code_lines:
            above.insert(0, comments[previous])
            previous -= 1
        text = "; ".join(part for part in (" ".join(above), comments.get(number, "")) if part)
        out[name] = text
    return out


def type_name(tp: Any) -> str:
    """A type hint as a reader of a YAML config thinks of it."""
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return " or ".join(type_name(a) for a in args) + (" or null" if len(args) < len(get_args(tp)) else "")
    if origin is list:
        return f"list of {type_name(get_args(tp)[0])}" if get_args(tp) else "list"
    if origin is dict:
        return f"mapping of {type_name(get_args(tp)[1])}" if get_args(tp) else "mapping"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "mapping"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def show(value: Any) -> str:
    """A default as it would be written in YAML (a mapping whose keys follow: nothing)."""
    if dataclasses.is_dataclass(value):
        return ""
    if isinstance(value, str):
        return value or '""'
    return json.dumps(value)


def docstring(cls: type) -> str:
    """A dataclass's docstring on one line (none for a dataclass without its own)."""
    doc = cls.__doc__ or ""
    return "" if doc.startswith(f"{cls.__name__}(") else _one_line(doc)


def dataclass_keys(cls: type, prefix: str, defaults: Any = None) -> list[Key]:
    """The keys of dataclass `cls` under `prefix`, nested dataclasses expanded with their defaults.

    `defaults`: an instance giving the defaults (a parent's default_factory may differ from the
    class's own defaults); without it the fields' own defaults.
    """
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if defaults is not None:
            value = getattr(defaults, f.name)
        elif f.default is not dataclasses.MISSING:
            value = f.default
        else:
            value = f.default_factory()
        key = f"{prefix}.{f.name}"
        meaning = comments.get(f.name, "")
        if dataclasses.is_dataclass(hints[f.name]):
            meaning = "; ".join(part for part in (meaning, docstring(hints[f.name])) if part)
        rows.append(Key(key, type_name(hints[f.name]), show(value), meaning))
        if dataclasses.is_dataclass(hints[f.name]):
            rows.extend(dataclass_keys(hints[f.name], key, value))
    return rows


# ----------------------------------------------------------------------------- the schema


def schema_type(node: dict) -> str:
    if "enum" in node:
        return "one of " + ", ".join(str(v) for v in node["enum"])
    names = node.get("type", "")
    names = names if isinstance(names, list) else [names]
    words = {"object": "mapping", "array": "list", "null": "null"}
    return " or ".join(words.get(n, n) for n in names if n) or "any"


def schema_keys(node: dict, key: str, defs: dict, required: bool | str = False) -> list[Key]:
    """The rows of schema `node` at `key`: itself, then its properties and named entries.

    `required`: whether the key must be given, or the words that say when (e.g. "Required with
    `datasets`. ")."""
    own_description = node.get("description", "")
    node = _resolved(node, defs)
    marker = required if isinstance(required, str) else "Required. " if required else ""
    if key in SETTINGS:
        cls = SETTINGS[key]
        name = f"{cls.__module__}.{cls.__name__}"
        meaning = _one_line(own_description) or docstring(cls)
        meaning = meaning if name in meaning else f"{meaning} ({name})"
        rows = [Key(key, "mapping", "{}", marker + meaning)]
        rows += dataclass_keys(cls, key)
        known = {f.name for f in dataclasses.fields(cls)}
        for sub_name, sub in node.get("properties", {}).items():
            if sub_name not in known:
                rows += schema_keys(sub, f"{key}.{sub_name}", defs, sub_name in node.get("required", []))
        return rows
    if key in SAME_KEYS_AS:
        return [Key(key, "mapping", "{}", f"{marker}the keys of `{SAME_KEYS_AS[key]}`, overriding its values")]
    default = show(node["default"]) if "default" in node else ""
    kind = schema_type(node)
    alternatives = [_resolved(alt, defs) for alt in node.get("oneOf", [])]
    if alternatives and "properties" not in node:
        # e.g. one mapping or a list of them: the type names both, the keys are the mapping's
        kind = " or ".join(schema_type(alt) for alt in alternatives)
        mappings = [_resolved(alt.get("items", {}), defs) if "items" in alt else alt for alt in alternatives]
        node = {**node, "properties": next((m["properties"] for m in mappings if "properties" in m), {})}
    rows = [Key(key, kind, default, (marker + _one_line(node.get("description", ""))).strip())]
    for sub_name, sub in node.get("properties", {}).items():
        rows += schema_keys(sub, f"{key}.{sub_name}", defs, sub_name in node.get("required", []))
    entries = node.get("additionalProperties")
    if isinstance(entries, dict):
        rows += schema_keys(entries, f"{key}.<name>", defs)
    return rows


def _resolved(node: dict, defs: dict) -> dict:
    """`node` with a $ref to $defs merged in (the node's own keys win)."""
    ref = node.get("$ref", "")
    if not ref.startswith("#/$defs/"):
        return node
    return {**_resolved(defs[ref.removeprefix("#/$defs/")], defs), **{k: v for k, v in node.items() if k != "$ref"}}


def _one_line(text: str) -> str:
    return " ".join(text.split())


# ----------------------------------------------------------------------------- the document


def render(schema_path: Path = SCHEMA) -> str:
    """config/README.md as Markdown."""
    schema = yaml.safe_load(schema_path.read_text())
    defs = schema.get("$defs", {})
    required = set(schema.get("required", []))
    out = [
        "# Config keys",
        "",
        f"Generated by `{COMMAND}` from `workflow/schemas/config.schema.yaml` and the",
        "dataclasses of `irno/config.py` and `irno/roma/settings.py`; do not edit it by hand",
        "(`tests/test_configdoc.py` fails when it is not what the command writes).",
        "",
        _one_line(schema.get("description", "")),
        "",
        "A workflow config is a YAML file (`config/config.yaml`: the IRNO paper run; `config/roma.yaml`:",
        "the ROMA paper study; `config/demo.yaml`: the default run, both studies; `config/test.yaml`:",
        "the tests' smallest run). A config holds the IRNO study (`datasets`, `bases`, `experiments`),",
        "the ROMA study (`roma`), or both. `<name>` stands for a name the config chooses (a dataset, a",
        "base, an experiment); an empty default means none.",
        "",
    ]
    needed_with = {  # key -> the keys it comes with (the schema's dependentRequired)
        name: [key for key, needs in schema.get("dependentRequired", {}).items() if name in needs]
        for name in schema["properties"]
    }
    for name, node in schema["properties"].items():
        out += [f"## `{name}`", ""]
        out += ["| key | type | default | meaning |", "|---|---|---|---|"]
        marker = name in required or (
            f"Required with {', '.join(f'`{k}`' for k in needed_with[name])}. " if needed_with[name] else False
        )
        for row in schema_keys(node, name, defs, marker):
            cells = [f"`{row.key}`", row.type, f"`{row.default}`" if row.default else "", row.meaning]
            out.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
        out.append("")
    return "\n".join(out)


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
