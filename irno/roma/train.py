"""Training of a graph operator on random-walk subgraphs of a dataset (the reference's train.py, in torch).

The split is by nodes: held-out validation and test subgraphs, training subgraphs drawn from the
rest. A step takes one subgraph (kept for ``subgraph_reuse`` steps) and ``windows`` windows of
it, with multiplicative input and target noise; the loss is the sMSPE over the tokens plus the
learned PDE's and the renormalisation's losses (`training_loss`), under AdamW with element-wise
clipping and the reference's learning-rate schedule. The last model is kept (``checkpoint.pt``);
``train_log.csv`` gets the mean losses and the validation sMSPE every ``log_every`` steps.
Resume: ``last.pt`` (`irno.resume.TrainingState`, counting optimiser steps) every
``checkpoint_every`` steps; every step draws from generators seeded by (seed, step), so a resumed
run is identical to an uninterrupted one. Details: docs/roma.md, "Training and evaluation".
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from irno import IrnoError
from irno.device import select_device
from irno.files import atomic_path
from irno.resume import STATE_FILE, TrainingState, seed_everything
from irno.roma.datasets import Dataset, load, load_encodings
from irno.roma.graphs import induced_subgraph, initial_walk_roots, random_walk_subgraph
from irno.roma.models import GraphOperator, Output, build_model, count_parameters, reference_parameter_count
from irno.roma.settings import RunConfig, TrainConfig
from irno.roma.study import run_key
from irno.settings import to_dict

log = logging.getLogger("irno.roma")

CHECKPOINT_FILE = "checkpoint.pt"  # the trained model; last.pt beside it is the resume state
LOG_COLUMNS = [
    "run_key",
    "step",
    "loss",
    "loss_data",
    "loss_coarse",
    "loss_pde",
    "loss_gpde",
    "loss_entropy",
    "loss_coarse_entropy",
    "loss_link",
    "valid_smspe",
    "lr",
    "seconds",
    "zeroed_gradients",
]
POOL_LOSSES = ("entropy", "coarse_entropy", "link")
EVALUATION_SEED = 1 << 20  # the input functions of every evaluation (the reference's fixed key)


def smspe(y: torch.Tensor, y_hat: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Elementwise (|y - y_hat| / (|y| + |y_hat| + eps))^2; its mean is the sMSPE."""
    return ((y - y_hat).abs() / (y.abs() + y_hat.abs() + eps)).square()


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear 0 -> lr over w steps, lr -> min_lr until steps - w, min_lr -> final_lr over the last w."""
    w = min(cfg.warmup_steps, cfg.steps / 2)
    decay = cfg.steps - 2 * w
    if step < w:
        return cfg.lr * step / w
    if step < w + decay:
        return cfg.lr + (cfg.min_lr - cfg.lr) * (step - w) / decay
    return cfg.min_lr + (cfg.final_lr - cfg.min_lr) * min(1.0, (step - w - decay) / w) if w else cfg.final_lr


# ----------------------------------------------------------------------------- data: split and batches


@dataclass
class Split:
    train_nodes: np.ndarray  # global ids of the training graph's nodes
    train_adjacency: sp.csr_matrix  # the graph induced on them (local ids)
    valid: list[np.ndarray]  # global ids, ascending, one array per held-out subgraph
    test: list[np.ndarray]
    walk_roots: int  # the sampler's root count on the training graph, where every draw starts


def split_nodes(data: Dataset, cfg: TrainConfig) -> Split:
    n, size = data.num_nodes, cfg.subgraph_nodes
    held_out = cfg.valid_subgraphs + cfg.test_subgraphs
    if (held_out + 1) * size > n:
        raise IrnoError(
            f"train.subgraph_nodes = {size}: {held_out} held-out subgraphs plus one for training need "
            f"{(held_out + 1) * size} nodes, the dataset has {n} (fewer or smaller subgraphs, or a larger graph)"
        )
    rng = np.random.default_rng([cfg.split_seed, 7])
    remaining = np.arange(n)
    sets = []
    roots = initial_walk_roots(size, cfg.walk_length)
    for _ in range(held_out):
        local, roots = random_walk_subgraph(
            induced_subgraph(data.adjacency, remaining), size, cfg.walk_length, rng, roots
        )
        sets.append(remaining[local])
        remaining = np.setdiff1d(remaining, remaining[local], assume_unique=True)
    train_adjacency = induced_subgraph(data.adjacency, remaining)
    _, roots = random_walk_subgraph(
        train_adjacency, size, cfg.walk_length, rng, roots
    )  # as the reference's first batch
    return Split(remaining, train_adjacency, sets[: cfg.valid_subgraphs], sets[cfg.valid_subgraphs :], roots)


def window_ends(data: Dataset, cfg: TrainConfig) -> tuple[int, int]:
    """Smallest and largest last input frame of a training window (the reference's [kappa, T - kappa))."""
    lo, hi = cfg.history, data.num_frames - cfg.history - 1
    if hi < lo:
        raise IrnoError(
            f"train.history = {cfg.history}: windows need at least {2 * cfg.history + 1} frames, "
            f"the dataset has {data.num_frames}"
        )
    return lo, hi


def evaluation_ends(data: Dataset, cfg: TrainConfig) -> np.ndarray:
    """``eval_windows`` evenly spaced window ends from history to T - history (the reference's)."""
    window_ends(data, cfg)
    return np.unique(np.linspace(cfg.history, data.num_frames - cfg.history, cfg.eval_windows).astype(np.int64))


@dataclass
class Subgraph:
    nodes: np.ndarray  # (n,) global ids
    edges: torch.Tensor  # (2, E) senders, receivers (local ids), self loops included
    adjacency: torch.Tensor  # (n, n) 0/1 with self loops

    @classmethod
    def of(cls, data: Dataset, nodes: np.ndarray, device: torch.device) -> Subgraph:
        adj = induced_subgraph(data.adjacency, nodes) + sp.identity(nodes.size, format="csr")
        coo = adj.tocoo()
        edges = torch.as_tensor(np.stack([coo.col, coo.row]), dtype=torch.long, device=device)
        return cls(nodes, edges, torch.as_tensor((adj > 0).toarray(), dtype=torch.float32, device=device))


@dataclass
class Batch:
    history: torch.Tensor  # (B, n, k)
    target: torch.Tensor  # (B, n)
    time: torch.Tensor  # (B,) absolute time (frame index) of the last input frame
    encodings: torch.Tensor | None  # (B, n, P)


def make_batch(
    data: Dataset,
    sub: Subgraph,
    ends: np.ndarray,
    history: int,
    encodings: np.ndarray | None,
    device: torch.device,
    *,
    noise_eta: float = 0.0,
    noisy_targets: bool = True,
    rng: np.random.Generator | None = None,
) -> Batch:
    """Windows ending at `ends` (B,) on the subgraph; noise x exp(sqrt(eta) xi) from `rng`."""
    past = np.arange(-history + 1, 1)
    x = data.values[sub.nodes[None, :, None], ends[:, None, None] + past].astype(np.float64)  # (B, n, k)
    y = data.values[sub.nodes[None, :], ends[:, None] + 1].astype(np.float64)  # (B, n)
    if noise_eta > 0:
        x = x * np.exp(math.sqrt(noise_eta) * rng.standard_normal(x.shape))
        if noisy_targets:
            y = y * np.exp(math.sqrt(noise_eta) * rng.standard_normal(y.shape))
    as_tensor = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32), device=device)  # noqa: E731
    pe = None
    if encodings is not None:
        pe = as_tensor(encodings[sub.nodes]).expand(len(ends), -1, -1)
    return Batch(as_tensor(x), as_tensor(y), as_tensor(ends), pe)


def run(model: GraphOperator, sub: Subgraph, batch: Batch, *, seed: int, pde: bool, attention: bool = False) -> Output:
    """The model on a batch, its input functions drawn from `seed`."""
    generator = torch.Generator(device=batch.history.device).manual_seed(seed)
    return model(
        batch.history,
        batch.time,
        sub.edges,
        sub.adjacency,
        batch.encodings,
        generator=generator,
        pde=pde,
        attention=attention,
    )


def coarse_targets(out: Output, batch: Batch) -> torch.Tensor:
    """(B, m) targets of the coarse tokens: y S (m / n), as their inputs are coarse-grained."""
    s = out.renormalised.assignment
    return (batch.target.unsqueeze(1) @ s).squeeze(1) * (s.shape[-1] / s.shape[1])


def training_loss(out: Output, batch: Batch, cfg: RunConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The training loss of the model's output on a batch, and its parts (``data`` and ``coarse``
    are sMSPE means)."""
    t = cfg.train
    fine = smspe(batch.target, out.fine)  # (B, n)
    parts = {"data": fine.mean()}
    total, count = fine.sum(), fine.numel()
    if out.renormalised is not None:
        coarse = smspe(coarse_targets(out, batch), out.coarse)  # (B, m)
        parts["coarse"] = coarse.mean()
        total, count = total + t.coarse_weight * coarse.sum(), count + coarse.numel()
    loss = total / count
    if out.pde_loss is not None:
        parts["pde"], parts["gpde"] = out.pde_loss, out.pde_gradient_loss
        loss = loss + t.pde_weight * out.pde_loss + t.gpde_weight * out.pde_gradient_loss
    if out.renormalised is not None:
        losses = out.renormalised.losses
        parts.update(zip(POOL_LOSSES, losses, strict=True))
        loss = loss + t.multiscale_weight * (torch.as_tensor(t.pool_weights, device=losses.device) * losses).sum()
    return loss, parts


def objective(model: GraphOperator, sub: Subgraph, batch: Batch, cfg: RunConfig, seed: int):
    """Training loss and its parts (floats), the input functions drawn from `seed`."""
    loss, parts = training_loss(run(model, sub, batch, seed=seed, pde=cfg.model.learned_pde), batch, cfg)
    return loss, {k: float(v.detach()) for k, v in parts.items()}


def sanitise_gradients(model: torch.nn.Module, clip: float) -> int:
    """Zero the gradient of every parameter whose gradient has a NaN, clip the rest element-wise;
    the number zeroed."""
    zeroed = 0
    for p in model.parameters():
        if p.grad is None:
            continue
        if torch.isnan(p.grad).any():
            p.grad.zero_()
            zeroed += 1
        p.grad.clamp_(-clip, clip)
    return zeroed


# ----------------------------------------------------------------------------- the training loop


def make_optimizer(model: torch.nn.Module, t) -> torch.optim.Optimizer:
    """AdamW over the trained parameters with the run's settings (`t`: its TrainConfig)."""
    return torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=t.lr,
        betas=tuple(t.betas),
        eps=t.eps,
        weight_decay=t.weight_decay,
    )


def train(cfg: RunConfig, inputs: RunInputs, out_dir: str | os.PathLike) -> dict:
    """Train (or resume) one run; write checkpoint.pt and train_log.csv into out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data, encodings = inputs.data, inputs.encodings
    key = run_key(to_dict(cfg))
    t = cfg.train
    device = select_device(t.device)
    split = split_nodes(data, t)
    lo, hi = window_ends(data, t)
    valid_ends = evaluation_ends(data, t)
    valid = []
    for nodes in split.valid:
        sub = Subgraph.of(data, nodes, device)
        valid.append((sub, make_batch(data, sub, valid_ends, t.history, encodings, device)))

    seed_everything(t.seed)
    encoding_dim = 0 if encodings is None else encodings.shape[1]
    model = build_model(cfg.model, t.history, t.subgraph_nodes, encoding_dim).to(device)
    optimizer = make_optimizer(model, t)
    # the resume state counts optimiser steps: its "done" is the number of steps done
    state = TrainingState(out_dir / STATE_FILE, {"config": to_dict(cfg), "data": data.settings_hash}, t.steps)
    saved = state.load()
    rows = []
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        rows = saved["rows"]
        log.info("resuming after step %d", saved["done"])
    log.info(
        "%s: %d parameters (%d as the reference counts them), %d training nodes, subgraphs of %d",
        key,
        count_parameters(model),
        reference_parameter_count(model),
        split.train_nodes.size,
        t.subgraph_nodes,
    )
    sums, steps_since_log, zeroed, started, sub = {}, 0, 0, time.time(), None
    for step in (unit - 1 for unit in state.units_to_run(saved)):  # 0-based indices of the steps left
        if sub is None or step % t.subgraph_reuse == 0:
            draw = np.random.default_rng([t.seed, step // t.subgraph_reuse, 1])
            local, _ = random_walk_subgraph(
                split.train_adjacency, t.subgraph_nodes, t.walk_length, draw, split.walk_roots
            )
            sub = Subgraph.of(data, split.train_nodes[local], device)
        rng = np.random.default_rng([t.seed, step])
        ends = rng.integers(lo, hi + 1, size=t.windows)
        batch = make_batch(data, sub, ends, t.history, encodings, device, noise_eta=t.noise_eta, rng=rng)
        lr = learning_rate(step, t)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        loss, parts = objective(model, sub, batch, cfg, seed=int(rng.integers(1 << 62)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        zeroed += sanitise_gradients(model, t.grad_clip)
        optimizer.step()
        steps_since_log += 1
        for name, value in {"loss": float(loss.detach()), **parts}.items():
            sums[name] = sums.get(name, 0.0) + value
        if (step + 1) % t.log_every == 0 or step + 1 == t.steps:
            row = {"run_key": key, "step": step + 1, "valid_smspe": validate(model, valid, cfg), "lr": lr}
            row.update({("loss" if k == "loss" else f"loss_{k}"): v / steps_since_log for k, v in sums.items()})
            row.update(seconds=time.time() - started, zeroed_gradients=zeroed)
            rows.append(row)
            log.info("%s step %d: loss %.4g, valid sMSPE %.4g", key, step + 1, row["loss"], row["valid_smspe"])
            sums, steps_since_log, zeroed, started = {}, 0, 0, time.time()
            if (step + 1) % t.checkpoint_every == 0 or step + 1 == t.steps:
                state.save(step + 1, {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "rows": rows})

    history = pd.DataFrame(rows).reindex(columns=LOG_COLUMNS)
    checkpoint = {
        "model": model.state_dict(),
        "settings": to_dict(cfg),
        "run_key": key,
        "data_hash": data.settings_hash,
        "encoding_dim": encoding_dim,
        "step": t.steps,
        "valid_smspe": float(history["valid_smspe"].iloc[-1]),
        "parameters": count_parameters(model),
        "reference_parameters": reference_parameter_count(model),
        "train_seconds": float(history["seconds"].sum()),
    }
    with atomic_path(out_dir / CHECKPOINT_FILE) as tmp:
        torch.save(checkpoint, tmp)
    with atomic_path(out_dir / "train_log.csv") as tmp:
        history.to_csv(tmp, index=False)
    return {k: v for k, v in checkpoint.items() if k not in ("model", "settings")}


@torch.no_grad()
def validate(model: GraphOperator, valid: list[tuple[Subgraph, Batch]], cfg: RunConfig) -> float:
    """Clean sMSPE of the fine tokens on the validation subgraphs (fixed input functions)."""
    model.eval()
    scores = [float(smspe(b.target, run(model, s, b, seed=EVALUATION_SEED, pde=False).fine).mean()) for s, b in valid]
    return float(np.mean(scores))


@dataclass
class RunInputs:
    """What a run reads: the dataset and, for models that read them, the graph encodings; read
    once by a job that trains and then scores."""

    data: Dataset
    encodings: np.ndarray | None  # (N, P) or None


def read_inputs(
    cfg: RunConfig, data_path: str | os.PathLike, encodings_path: str | os.PathLike | None = None
) -> RunInputs:
    """The dataset and the graph encodings `cfg`'s model reads; names the missing option."""
    data = load(data_path)
    kinds = cfg.model.used_encodings
    if not kinds:
        return RunInputs(data, None)
    if encodings_path is None:
        raise IrnoError(f"model '{cfg.model.kind}' reads graph encodings ({', '.join(kinds)}): pass --encodings")
    return RunInputs(data, load_encodings(encodings_path, kinds, data))


def load_checkpoint(path: str | os.PathLike, cfg: RunConfig, data: Dataset) -> tuple[GraphOperator, dict]:
    """The trained model (eval mode, CPU) and the checkpoint's metadata; checks they belong together."""
    path = Path(path)
    if not path.is_file():
        raise IrnoError(f"{path}: checkpoint not found (run 'irno roma train')")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt["settings"] != to_dict(cfg):
        raise IrnoError(f"{path}: trained with other settings (run {ckpt['run_key']}) than the ones given")
    if ckpt["data_hash"] != data.settings_hash:
        raise IrnoError(
            f"{path}: trained on another dataset (settings hash {ckpt['data_hash']}, this one is {data.settings_hash})"
        )
    model = build_model(cfg.model, cfg.train.history, cfg.train.subgraph_nodes, ckpt["encoding_dim"])
    model.load_state_dict(ckpt["model"])
    return model.eval(), {k: v for k, v in ckpt.items() if k != "model"}
