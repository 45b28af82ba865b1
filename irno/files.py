"""Files every step writes and reads: atomic writes (a file under its final name is complete),
JSON, YAML and NPZ, tables as csv/md/tex, figures, the format check of a store's or cache's meta.json,
and hashes of files and settings."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from irno import IrnoError


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


def write_table(
    path_stem: str | os.PathLike,
    frame: Any,
    formats: Sequence[str] = ("csv", "md", "tex"),
    *,
    title: str = "",
    markdown: str | None = None,
    latex: str | None = None,
) -> list[Path]:
    """A pandas DataFrame as ``<path_stem>.<format>`` for each of `formats` (csv, md, tex), each atomically.

    The CSV holds the frame as it is. The Markdown holds `title` (if any) above pandas' table and the
    LaTeX pandas' tabular, numbers to 4 significant digits, unless `markdown` or `latex` give those
    files' whole text (a table that renders its cells, alignment and notes itself)."""
    paths = []
    for fmt in formats:
        path = Path(f"{path_stem}.{fmt}")
        with atomic_path(path) as tmp:
            if fmt == "csv":
                frame.to_csv(tmp, index=False)
            elif fmt == "md":
                if markdown is None:
                    heading = f"{title}\n\n" if title else ""
                    markdown = heading + frame.to_markdown(index=False, floatfmt=".4g") + "\n"
                tmp.write_text(markdown)
            elif fmt == "tex":
                if latex is None:
                    latex = frame.to_latex(index=False, float_format="%.4g", na_rep="--")
                tmp.write_text(latex)
            else:
                raise ValueError(f"table format {fmt!r}: not csv, md or tex")
        paths.append(path)
    return paths


def write_figure(
    path_stem: str | os.PathLike, fig: Any, formats: Sequence[str] = ("pdf", "png"), **savefig
) -> list[Path]:
    """A matplotlib figure as ``<path_stem>.<format>`` for each of `formats`, each atomically.

    Saved tight: a legend or label that overhangs the canvas widens the file instead of being
    clipped. `savefig` are further arguments of ``Figure.savefig`` (e.g. ``dpi``)."""
    paths = []
    for fmt in formats:
        path = Path(f"{path_stem}.{fmt}")
        with atomic_path(path) as tmp:  # the temporary name hides the format: it is given
            fig.savefig(tmp, format=fmt, bbox_inches="tight", pad_inches=0.05, **savefig)
        paths.append(path)
    return paths


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


def read_meta(folder: str | os.PathLike, kind: str, version: int, advice: str) -> dict:
    """The ``meta.json`` of a folder of `kind` (a prepared store, a cache); an IrnoError, ending in
    `advice`, when it records another format than `version`: the code that wrote it lays such a
    folder out differently."""
    path = Path(folder) / "meta.json"
    meta = read_json(path)
    if meta.get("format") != version:
        raise IrnoError(f"{path}: {kind} format {meta.get('format')!r}, expected {version} ({advice})")
    return meta


def write_yaml(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(_to_plain(obj), sort_keys=False))


def read_yaml(path: str | os.PathLike) -> Any:
    return _read(path, yaml.safe_load, yaml.YAMLError, "YAML")


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
