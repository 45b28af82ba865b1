"""Where Phi's training reads its data from: in place, or from node-local copies (staging).

The training reads its prepared stores and base caches memory-mapped, all of them every epoch.
Where the job's memory holds that working set, the page cache keeps it and the data are read in
place; where it does not, `data_folders` copies the folders to a staging folder on the node (the
job's $TMPDIR, or IRNO_STAGE_DIR) when that lies on another file system and has room, and the
training reads the copies, removed when it ends (also on an error or SIGTERM). One log line says
which. The copies change nothing but where the bytes are read from: a training resumes across
them, and trains bit-identically on the CPU.

Detail: docs/slurm.md#phis-training-data-in-memory-staged-or-read-in-place
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from irno import IrnoError, log
from irno.files import atomic_dir
from irno.runlock import sigterm_exits

GB = 1e9
# Free space a copy leaves in the staging folder beyond the working set: other files of the job
# (its logs, torch's compile cache) and other jobs on a shared node disk need some too.
MARGIN_FRACTION = 0.05
MARGIN_BYTES = 1e9


def gb(size: float) -> str:
    """Bytes as GB for a log line: 91.2, 0.0055."""
    return f"{size / GB:.3g}"


def folder_bytes(folder: Path) -> int:
    """The bytes of every file under `folder`."""
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


@dataclass(frozen=True)
class WorkingSet:
    """The folders a training reads, by name (e.g. "train store"), and their bytes on disk."""

    folders: dict[str, Path]
    sizes: dict[str, int]

    @classmethod
    def of(cls, folders: Mapping[str, Path]) -> WorkingSet:
        return cls(dict(folders), {name: folder_bytes(folder) for name, folder in folders.items()})

    @property
    def total(self) -> int:
        return sum(self.sizes.values())

    def describe(self) -> str:
        parts = ", ".join(f"{name} {gb(size)}" for name, size in self.sizes.items())
        return f"{gb(self.total)} GB ({parts})"


def copy_space(working: WorkingSet) -> float:
    """The free space a staging folder needs for the copy: the working set and the margin."""
    return working.total * (1 + MARGIN_FRACTION) + MARGIN_BYTES


def same_file_system(a: Path, b: Path) -> bool:
    return os.stat(a).st_dev == os.stat(b).st_dev


def free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def why_not_stage(working: WorkingSet, stage_dir: Path | None) -> str | None:
    """Why `working` cannot be copied to `stage_dir`; None when it can."""
    if stage_dir is None:
        return "no staging folder (IRNO_STAGE_DIR and TMPDIR are unset or empty)"
    if not stage_dir.is_dir():
        return f"the staging folder {stage_dir} does not exist"
    if not os.access(stage_dir, os.W_OK | os.X_OK):
        return f"the staging folder {stage_dir} is not writable"
    shared = [name for name, folder in working.folders.items() if same_file_system(folder, stage_dir)]
    if shared:
        return f"the staging folder {stage_dir} is on the file system of the {', '.join(shared)}"
    free, needed = free_bytes(stage_dir), copy_space(working)
    if free < needed:
        return (
            f"the staging folder {stage_dir} has {gb(free)} GB free, the copy needs {gb(needed)} GB "
            f"(the working set, {MARGIN_FRACTION:.0%} and {MARGIN_BYTES / GB:.0f} GB more)"
        )
    return None


def copy_folders(working: WorkingSet, root: Path) -> dict[str, Path]:
    """Copy every folder of `working` into `root` (each atomically: complete or absent) and check
    that every file has its source's size; name -> copy."""
    copies = {}
    for name, folder in working.folders.items():
        copy = root / name.replace(" ", "_")
        with atomic_dir(copy) as tmp:
            for source in sorted(folder.rglob("*")):
                target = tmp / source.relative_to(folder)
                if source.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                else:
                    shutil.copyfile(source, target)
        for source in folder.rglob("*"):
            if source.is_file() and (copy / source.relative_to(folder)).stat().st_size != source.stat().st_size:
                raise IrnoError(f"{copy / source.relative_to(folder)}: the copy's size differs from {source}'s")
        copies[name] = copy
    return copies


@contextlib.contextmanager
def data_folders(
    folders: Mapping[str, Path], *, memory_mb: int | None, own_mb: float, stage_dir: Path | None
) -> Iterator[dict[str, Path]]:
    """The folders to read the data from while the block runs: `folders` (name -> folder) in place,
    or copies in `stage_dir` when the working set does not fit in `memory_mb` beside the
    training's own `own_mb` (docs/slurm.md). Copies are removed when the block ends.

    Without `memory_mb` (a run outside the workflow that does not say) the data are read in place.
    """
    working = WorkingSet.of(folders)
    if memory_mb is None:
        log.info("working set %s: reading it in place (the job's memory is not given, --memory-mb)", working.describe())
        yield dict(folders)
        return
    needed = working.total + own_mb * 1e6
    memory = f"{gb(working.total)} + {gb(own_mb * 1e6)} GB for the training itself"
    if needed <= memory_mb * 1e6:
        log.info(
            "working set %s fits in the job's memory: %s <= %s GB (--memory-mb); reading it in place",
            working.describe(), memory, gb(memory_mb * 1e6),
        )  # fmt: skip
        yield dict(folders)
        return
    unfit = f"working set {working.describe()} does not fit in the job's memory: {memory} > {gb(memory_mb * 1e6)} GB"
    reason = why_not_stage(working, stage_dir)
    if reason is not None:
        log.warning("%s; reading it in place, part of it again every epoch: %s", unfit, reason)
        yield dict(folders)
        return
    log.info("%s; copying it to %s (%s GB free)", unfit, stage_dir, gb(free_bytes(stage_dir)))
    with sigterm_exits():
        root = Path(tempfile.mkdtemp(prefix="irno-stage-", dir=stage_dir))
        try:
            started = time.perf_counter()
            try:
                copies = copy_folders(working, root)
            except (OSError, IrnoError) as e:  # e.g. the node's disk filled up meanwhile
                log.warning("copying the working set to %s failed (%s); reading it in place", root, e)
                copies = dict(folders)
            else:
                seconds = time.perf_counter() - started
                log.info(
                    "staged the working set, %s GB, to %s in %.1f s (%s GB/s); training reads the copies",
                    gb(working.total), root, seconds, gb(working.total / max(seconds, 1e-9)),
                )  # fmt: skip
            yield copies
        finally:
            shutil.rmtree(root, ignore_errors=True)
            log.info("removed the staged copies in %s", root)
