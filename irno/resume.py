"""Resumable training: the state a trainer saves after every unit of training (an epoch, or for ROMA
an optimiser step), and whether to continue from it.

Every trainer (Phi's, the base's, the ROMA study's) keeps what it needs to continue in one file,
``last.pt`` (`STATE_FILE`), replaced atomically after each unit, so that a job killed at any
moment and started again ends exactly as an uninterrupted one: the trainer's states, every RNG,
the hash of its settings (a state saved for other settings is ignored) and the outcome (running,
completed or diverged; a finished state is not trained further). A trainer uses `TrainingState`:
``load``, ``finished``, ``units_to_run``, ``save`` after each unit, ``save_diverged``.

Detail (the pattern, every convention): docs/training.md#resuming-irnoresume
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from irno import IrnoError, log
from irno.files import atomic_path, stable_hash
from irno.settings import flatten

STATE_FILE = "last.pt"
# Version of the state's layout; a state of another version is ignored. 2: ``done`` (units completed)
# replaced 1's ``epoch``.
FORMAT = 2

RUNNING, COMPLETED, DIVERGED = "running", "completed", "diverged"


class TrainingState:
    """The resume state of one training: a file, the settings it must match, and `total`, the number
    of units the training runs (its unit is the trainer's: Phi's and the base's are epochs, ROMA's
    optimiser steps). The state holds ``done``, the units completed."""

    def __init__(self, path: str | os.PathLike, settings: dict, total: int):
        self.path = Path(path)
        self.settings = settings
        self.total = total
        self.settings_hash = stable_hash({"settings": settings, "format": FORMAT})

    def load(self) -> dict | None:
        """The saved state for these settings, with every RNG restored as it was saved; else None.

        Call it after everything that draws random numbers while setting up (model
        initialisation), so that the training continues with the random numbers it had.
        """
        if not self.path.is_file():
            return None
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as e:  # a truncated or foreign file: say which, do not guess
            raise IrnoError(
                f"{self.path}: unreadable resume state ({type(e).__name__}: {e}); delete it to start afresh"
            ) from None
        if saved.get("format") != FORMAT:
            log.info(
                "%s is a resume state of format %s, written by another version of irno (this one reads format %d); "
                "starting afresh",
                self.path,
                saved.get("format"),
                FORMAT,
            )
            return None
        if saved.get("settings_hash") != self.settings_hash:
            log.info(
                "%s was written for another configuration (%s); starting afresh",
                self.path,
                what_changed(saved.get("settings") or {}, self.settings),
            )
            return None
        set_rng_state(saved["rng"])
        return saved

    def finished(self, saved: dict | None) -> bool:
        """Whether `saved` (from `load`) ends the training: completed or diverged."""
        return saved is not None and saved["training"]["status"] != RUNNING

    def units_to_run(self, saved: dict | None) -> Iterable[int]:
        """The units left, numbered from 1: 1 .. total, or those after the saved state's."""
        return range(1 if saved is None else saved["done"] + 1, self.total + 1)

    def save(self, done: int, payload: dict[str, Any]) -> dict:
        """Write the state after unit `done` (atomically): `payload` plus settings, RNGs and outcome."""
        return self._write(done, {"status": COMPLETED if done >= self.total else RUNNING}, payload)

    def save_diverged(self, last_good: int, outcome: dict[str, Any], payload: dict[str, Any]) -> dict:
        """End the training, which diverged: `outcome` says where and why (the trainer's words, e.g.
        ``{"epoch": 7, "message": ...}``), `payload` is the state after unit `last_good`."""
        return self._write(last_good, {"status": DIVERGED, **outcome}, payload)

    def _write(self, done: int, training: dict, payload: dict[str, Any]) -> dict:
        state = {
            "format": FORMAT,
            "settings_hash": self.settings_hash,
            "settings": self.settings,
            "done": done,
            "training": training,
            "rng": rng_state(),
            **payload,
        }
        with atomic_path(self.path) as tmp:
            torch.save(state, tmp)
        return state

    def remove(self) -> None:
        """Delete the state (a trainer whose output holds everything the state had)."""
        self.path.unlink(missing_ok=True)


def what_changed(old: dict, new: dict) -> str:
    """The settings that differ, by dotted key: "train.lr: 0.003 -> 0.001, ..."."""
    old, new = flatten(old), flatten(new)
    changes = [
        f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)
    ]
    return ", ".join(changes) or "no visible change"


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
