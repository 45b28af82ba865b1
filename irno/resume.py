"""Resumable training: the state a trainer saves after every epoch, and whether to continue from it.

Every trainer (Phi's in `irno.train`, the base's in `irno.base.train`, the ROMA study's in
`irno.roma.train`, whose "epochs" are its optimiser steps) keeps what it needs to continue in one
file, replaced atomically after each epoch, so that a job killed at any moment (time limit,
pre-emption) and started again ends exactly as an uninterrupted one. The pattern:

    state = TrainingState(run_dir / STATE_FILE, settings={"config": ..., "data": ...}, epochs=n)
    seed_everything(seed)
    model, optimiser = ...                  # everything that draws random numbers at set-up
    saved = state.load()                    # None, or the saved dict, every RNG restored
    if saved is not None:
        model.load_state_dict(saved["model"]); optimiser.load_state_dict(saved["optimiser"])
    if not state.finished(saved):
        for epoch in state.epochs_to_run(saved):          # 1 .. n, or after the saved epoch
            ...                                           # one epoch of training
            state.save(epoch, {"model": ..., "optimiser": ...})

Conventions it owns:

- The file: ``last.pt`` (`STATE_FILE`) where the trainer puts it; torch.save of plain types and
  tensors, so that it loads with ``torch.load(weights_only=True)``.
- Settings: `settings` is everything that defines the training (config, identities of the data);
  its hash is stored, and a state saved for other settings is ignored ("written for another
  configuration (train.lr: 0.003 -> 0.001); starting afresh").
- Epochs count from 1; a state's ``epoch`` is its last completed epoch.
- Every RNG a training loop may touch (Python, numpy, torch, CUDA) is saved with the state and
  restored by `load`.
- The outcome: ``training`` is ``{"status": "running"}`` until the last epoch is saved, then
  ``{"status": "completed"}``; `save_diverged` ends a training early with ``{"status":
  "diverged", "epoch": E, "message": ...}``. A finished state (completed or diverged) is not
  trained further: started again, a trainer only rewrites its outputs from it.
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
FORMAT = 1  # version of the state's layout; a state of another version is ignored

RUNNING, COMPLETED, DIVERGED = "running", "completed", "diverged"


class TrainingState:
    """The resume state of one training: a file, the settings it must match, its number of epochs."""

    def __init__(self, path: str | os.PathLike, settings: dict, epochs: int):
        self.path = Path(path)
        self.settings = settings
        self.epochs = epochs
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

    def epochs_to_run(self, saved: dict | None) -> Iterable[int]:
        """The epochs left: 1 .. epochs, or those after the saved one."""
        return range(1 if saved is None else saved["epoch"] + 1, self.epochs + 1)

    def save(self, epoch: int, payload: dict[str, Any]) -> dict:
        """Write the state after `epoch` (atomically): `payload` plus settings, RNGs and outcome."""
        return self._write(epoch, {"status": COMPLETED if epoch >= self.epochs else RUNNING}, payload)

    def save_diverged(self, epoch: int, message: str, last_good_epoch: int, payload: dict[str, Any]) -> dict:
        """End the training at `epoch`, which diverged: `payload` is the state of `last_good_epoch`."""
        return self._write(last_good_epoch, {"status": DIVERGED, "epoch": epoch, "message": message}, payload)

    def _write(self, epoch: int, training: dict, payload: dict[str, Any]) -> dict:
        state = {
            "format": FORMAT,
            "settings_hash": self.settings_hash,
            "settings": self.settings,
            "epoch": epoch,
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
    return ", ".join(changes) or "no visible change (state format)"


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
