"""Train a base operator locally (the demo, and users whose Hub access is blocked).

One-step prediction on a prepared store's windows: MSE in normalised units, Adam, seeded
shuffles. The weights after the last epoch are saved with `save_pretrained` into a model
directory that loads through the same path as a fetched Hub checkpoint (`irno.base.load_base`).
After every epoch the resume state (`irno.resume`) goes to a hidden file beside the model
directory, ``.<name>.last.pt`` (the directory itself is replaced whole when saved), so a pre-empted
job continues from the last finished epoch; a changed config or dataset starts afresh. The state
is removed once the model directory, which holds the weights and the per-epoch history, is saved.
While it trains, the lock ``.<name>.run.lock`` beside the model directory (`irno.runlock`) keeps a
second process from training the same base.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from irno import IrnoError, log
from irno.base.operator import BaseOperator, build_model, save_base, training_forward
from irno.config import BaseConfig
from irno.data.store import PreparedSplit
from irno.device import log_device, select_device
from irno.resume import STATE_FILE, TrainingState, seed_everything
from irno.runlock import LOCK_FILE, RunFolderLock
from irno.settings import to_dict


@torch.no_grad()
def one_step_mse(predict, split: PreparedSplit, batch_size: int, device: torch.device) -> float:
    """Mean over samples, channels and pixels of (predict(x) - y)^2 on a whole split."""
    total = 0.0
    for idx in torch.arange(len(split)).split(batch_size):
        x, y = split.batch(idx)
        total += F.mse_loss(predict(x.to(device)), y.to(device), reduction="sum").item()
    return total / (len(split) * split[0]["y"].numel())


def persistence(x: torch.Tensor, n_fields: int) -> torch.Tensor:
    """The trivial baseline h0 = the last input frame: (B, T_in*F, H, W) -> (B, F, H, W)."""
    return x[:, -n_fields:]


def train_base(cfg: BaseConfig, train: PreparedSplit, valid: PreparedSplit, out_dir: str | os.PathLike) -> Path:
    """Train `cfg.model_class` on `train`, report valid MSE per epoch, save a model directory."""
    out_dir = Path(out_dir)
    if (valid.field_names, valid.grid, valid.n_steps_input) != (train.field_names, train.grid, train.n_steps_input):
        raise IrnoError(f"{valid.path} and {train.path} hold different fields, grids or input lengths")
    device = select_device(cfg.device)
    log_device(device, "fp32")
    # The model directory is replaced whole when saved: its lock and resume state lie beside it.
    with RunFolderLock(out_dir.with_name(f".{out_dir.name}.{LOCK_FILE}")):
        return _train_base(cfg, train, valid, out_dir, device)


def _train_base(cfg: BaseConfig, train: PreparedSplit, valid: PreparedSplit, out_dir: Path, device) -> Path:
    settings = {"config": to_dict(cfg), "train": train.identity, "valid": valid.identity}
    resume = TrainingState(out_dir.with_name(f".{out_dir.name}.{STATE_FILE}"), settings, cfg.epochs)
    seed_everything(cfg.seed)
    n_fields = len(train.field_names)
    model = build_model(cfg, train.n_steps_input * n_fields, n_fields, train.grid)
    op = BaseOperator(model, training_forward(cfg)).to(device)
    optimiser = torch.optim.Adam(op.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    saved = resume.load()
    history: list[dict] = []
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimiser.load_state_dict(saved["optimiser"])
        history = saved["history"]
        log.info("resuming base training after epoch %d from %s", saved["done"], resume.path)

    for epoch in resume.units_to_run(saved):
        op.train()
        # Seeded per epoch (epochs from 1), so a resumed run visits the batches a continuous one would.
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.seed * 100_003 + epoch - 1))
        total = 0.0
        for idx in tqdm(
            order.split(cfg.batch_size), desc=f"base {cfg.model_class} epoch {epoch}/{cfg.epochs}", unit="batch"
        ):
            x, y = (t.to(device) for t in train.batch(idx))
            loss = F.mse_loss(op(x), y)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += loss.item() * len(idx)
        op.eval()
        history.append(
            {
                "epoch": epoch,
                "train_mse": total / len(train),
                "valid_mse": one_step_mse(op, valid, cfg.batch_size, device),
            }
        )
        log.info(
            "base epoch %d: train MSE %.4g, valid MSE %.4g", epoch, history[-1]["train_mse"], history[-1]["valid_mse"]
        )
        resume.save(epoch, {"model": model.state_dict(), "optimiser": optimiser.state_dict(), "history": history})

    baseline = one_step_mse(lambda x: persistence(x, n_fields), valid, cfg.batch_size, device)
    log.info("valid MSE: base %.4g, persistence (last input frame) %.4g", history[-1]["valid_mse"], baseline)
    provenance = {
        "model_class": cfg.model_class,
        "source": "train",
        "pretrained": "",
        "revision": None,
        "resolved_revision": None,
        "training": {
            "forward": training_forward(cfg),
            "config": to_dict(cfg),
            "train_store": train.identity,
            "valid_store": valid.identity,
            "history": history,
            "valid_mse_persistence": baseline,
        },
    }
    save_base(model.cpu(), out_dir, provenance)
    resume.remove()
    return out_dir
