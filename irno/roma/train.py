"""Training of a graph operator on random-walk subgraphs of a Kuramoto dataset.

Data split (by nodes, as the reference code does; deterministic in ``train.split_seed``):
``valid_subgraphs`` + ``test_subgraphs`` random-walk subgraphs of ``subgraph_nodes`` nodes are
held out; training samples subgraphs of the graph induced on the remaining nodes. Every window
uses all frames of the series, so train and test differ in nodes, not in time.

One sample is a subgraph and a window end t: the input is each node's phases theta(t - kappa + 1
.. t) with multiplicative noise x exp(sqrt(eta) xi) (inputs only, as the reference code), the
target is theta(t + 1 .. t + horizon). Phases are unwrapped and grow like omega t, so the model
sees the history relative to its last (noisy) value, in units of s * kappa where s is the rms
frame-to-frame change of the training nodes, plus the phases on the circle, which the coupling
sin(theta_j - theta_i) depends on; it predicts the change:

    features = [(x - x_last) / (s kappa), cos x, sin x]   (B, n, 3 kappa)
    y_hat    = x_last + s u(tau / horizon)                (B, n, horizon)

The data loss is the paper's sMSPE on the phases themselves, mean((|y - y_hat| / (|y| + |y_hat|
+ 1e-4))^2). ROMA adds the same loss on coarse tokens (targets coarse-grained with the detached
assignment, so the assignment cannot make the targets easy), the assignment entropy and link
prediction losses, and, for the effective-dynamics experiment, the learned-PDE residual.

Checkpointing follows the IRNO trainer: ``last.pt`` (model, optimiser, scheduler, best weights,
log history, a hash of the settings and of the dataset) is replaced atomically after every epoch,
and a job started again on the same folder resumes from it; every epoch draws its samples from
its own generator (seed, epoch), so a resumed run is identical to an uninterrupted one.
Outputs: ``checkpoint.pt`` (best validation sMSPE) and ``train_log.csv``.
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

from irno.roma.config import RunConfig, TrainConfig, run_key
from irno.roma.graphs import induced_subgraph, positional_encoding, random_walk_subgraph
from irno.roma.kuramoto import KuramotoData, load
from irno.roma.models import Forecast, GraphOperator, build_model, count_parameters
from irno.utils import IrnoError, atomic_path, seed_everything, select_device, stable_hash, to_dict

log = logging.getLogger("irno.roma")

FEATURES_PER_FRAME = 3  # relative phase, cos, sin

LOG_COLUMNS = [
    "run_key",
    "epoch",
    "loss",
    "loss_data",
    "loss_coarse",
    "loss_entropy",
    "loss_link",
    "loss_pde",
    "valid_smspe",
    "lr",
    "seconds",
    "skipped_steps",
    "best",
]


def smspe(y: torch.Tensor, y_hat: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Symmetric mean squared percentage error, mean((|y - y_hat| / (|y| + |y_hat| + eps))^2)."""
    return ((y - y_hat).abs() / (y.abs() + y_hat.abs() + eps)).square().mean()


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up from 0 over warmup_fraction of the steps, then linear decay to final_lr_fraction."""
    total = cfg.total_steps
    warmup = int(cfg.warmup_fraction * total)
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 1.0 - (1.0 - cfg.final_lr_fraction) * min(1.0, progress)


# ----------------------------------------------------------------------------- data: split and batches


@dataclass
class Split:
    train_nodes: np.ndarray  # global ids of the training graph's nodes
    train_adjacency: sp.csr_matrix  # the graph induced on them (local ids)
    valid: list[np.ndarray]  # global ids, one array per held-out subgraph
    test: list[np.ndarray]


def split_nodes(data: KuramotoData, cfg: TrainConfig) -> Split:
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
    for _ in range(held_out):
        local = random_walk_subgraph(induced_subgraph(data.adjacency, remaining), size, cfg.walk_length, rng)
        sets.append(np.sort(remaining[local]))
        remaining = np.setdiff1d(remaining, remaining[local], assume_unique=True)
    return Split(
        remaining, induced_subgraph(data.adjacency, remaining), sets[: cfg.valid_subgraphs], sets[cfg.valid_subgraphs :]
    )


def window_ends(data: KuramotoData, cfg: TrainConfig) -> tuple[int, int]:
    """Smallest and largest last input frame of a window."""
    lo, hi = cfg.history - 1, data.num_frames - 1 - cfg.horizon
    if hi < lo:
        raise IrnoError(
            f"train.history + train.horizon = {cfg.history + cfg.horizon} frames exceed the "
            f"dataset's {data.num_frames} (dynamics.frames)"
        )
    return lo, hi


def evaluation_ends(data: KuramotoData, cfg: TrainConfig) -> np.ndarray:
    lo, hi = window_ends(data, cfg)
    return np.unique(np.linspace(lo, hi, cfg.eval_windows).round().astype(np.int64))


def increment_scale(data: KuramotoData, nodes: np.ndarray) -> float:
    """rms of theta(t + 1) - theta(t) over (up to 10^4 of) the given nodes and all frames."""
    sample = nodes[np.linspace(0, nodes.size - 1, min(nodes.size, 10_000)).astype(np.int64)]
    scale = float(np.sqrt(np.mean(np.diff(data.phases[sample].astype(np.float64), axis=1) ** 2)))
    if not math.isfinite(scale) or scale <= 0:
        raise IrnoError("the dataset's phases do not change between frames; nothing to forecast")
    return scale


@dataclass
class Batch:
    history: torch.Tensor  # (B, n, 3 kappa) features of the input phases
    pe: torch.Tensor  # (B, n, P)
    adj: torch.Tensor  # (B, n, n) 0/1
    last: torch.Tensor  # (B, n) last (noisy) input phase
    target: torch.Tensor  # (B, n, H) phases

    def to(self, device: torch.device) -> Batch:
        return Batch(*(t.to(device) for t in (self.history, self.pe, self.adj, self.last, self.target)))


def assemble(
    data: KuramotoData,
    node_sets: list[np.ndarray],
    ends: np.ndarray,
    cfg: RunConfig,
    scale: float,
    *,
    noise_eta: float = 0.0,
    rng: np.random.Generator | None = None,
    flip_signs: bool = False,
) -> Batch:
    """Windows ending at ends[g] (G, W) on subgraphs node_sets[g] -> a batch of G * W samples.

    `rng` draws the input noise (when noise_eta > 0) and, with `flip_signs` (training), random
    signs of the Laplacian eigenvectors.
    """
    t = cfg.train
    past = np.arange(-t.history + 1, 1)
    ahead = np.arange(1, t.horizon + 1)
    histories, targets, pes, adjs = [], [], [], []
    for nodes, window_end in zip(node_sets, ends):
        histories.append(data.phases[nodes[None, :, None], window_end[:, None, None] + past])  # (W, n, kappa)
        targets.append(data.phases[nodes[None, :, None], window_end[:, None, None] + ahead])  # (W, n, H)
        sub = induced_subgraph(data.adjacency, nodes)
        pe = positional_encoding(sub, cfg.model.pe_kinds, cfg.model.pe_dim, rng if flip_signs else None)  # (n, P)
        pes.append(np.broadcast_to(pe, (len(window_end), *pe.shape)))
        adjs.append(np.broadcast_to(sub.toarray(), (len(window_end), len(nodes), len(nodes))))
    history = np.concatenate(histories).astype(np.float64)
    if noise_eta > 0:
        history = history * np.exp(math.sqrt(noise_eta) * rng.standard_normal(history.shape))
    last = history[..., -1]
    features = np.concatenate(
        [(history - last[..., None]) / (scale * t.history), np.cos(history), np.sin(history)], axis=-1
    )
    as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    return Batch(
        as_tensor(features),
        as_tensor(np.concatenate(pes)),
        as_tensor(np.concatenate(adjs)),
        as_tensor(last),
        as_tensor(np.concatenate(targets)),
    )


def lead_times(cfg: TrainConfig, device: torch.device) -> torch.Tensor:
    return torch.arange(1, cfg.horizon + 1, device=device, dtype=torch.float32) / cfg.horizon  # (H,)


def coarse_targets(out: Forecast, batch: Batch) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """[(target, last)] coarse-grained level by level with the detached assignments: weighted
    means y_c = S^T y / S^T 1, shapes (B, m, H) and (B, m, 1)."""
    y, last, pairs = batch.target, batch.last.unsqueeze(-1), []
    for level in out.levels:
        s = level.assignment.detach()
        w = s / s.sum(dim=1, keepdim=True).clamp_min(1e-9)  # (B, n_l, m): columns sum to 1
        y, last = w.transpose(1, 2) @ y, w.transpose(1, 2) @ last
        pairs.append((y, last))
    return pairs


def objective(model: GraphOperator, batch: Batch, cfg: RunConfig, scale: float) -> tuple[torch.Tensor, dict]:
    """Training loss and its parts (detached floats)."""
    lead = lead_times(cfg.train, batch.history.device)
    out = model(batch.history, batch.pe, batch.adj, lead, pde=cfg.model.learned_pde)
    prediction = batch.last.unsqueeze(-1) + scale * out.fine  # (B, n, H)
    parts = {"data": smspe(batch.target, prediction)}
    loss = parts["data"]
    t = cfg.train
    if out.levels:
        coarse = [smspe(y, last + scale * u) for (y, last), u in zip(coarse_targets(out, batch), out.coarse)]
        parts["coarse"] = torch.stack(coarse).mean()
        parts["entropy"] = torch.stack([level.entropy for level in out.levels]).sum()
        parts["link"] = torch.stack([level.link for level in out.levels]).sum()
        loss = (
            loss
            + t.coarse_weight * parts["coarse"]
            + t.entropy_weight * parts["entropy"]
            + t.link_weight * parts["link"]
        )
    if out.pde_residual is not None:
        parts["pde"] = out.pde_residual.square().mean()
        loss = loss + t.pde_weight * parts["pde"]
    return loss, {k: float(v.detach()) for k, v in parts.items()}


@torch.no_grad()
def predict(model: GraphOperator, batch: Batch, cfg: RunConfig, scale: float, *, attention: bool = False):
    """(prediction (B, n, H), forecast) without gradients."""
    out = model(batch.history, batch.pe, batch.adj, lead_times(cfg.train, batch.history.device), attention=attention)
    return batch.last.unsqueeze(-1) + scale * out.fine, out


# ----------------------------------------------------------------------------- the training loop


def train(cfg: RunConfig, data_path: str | os.PathLike, out_dir: str | os.PathLike) -> dict:
    """Train (or resume) one run; write checkpoint.pt and train_log.csv into out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = load(data_path)
    key = run_key(to_dict(cfg))
    t = cfg.train
    device = select_device(t.device)
    split = split_nodes(data, t)
    lo, hi = window_ends(data, t)
    scale = increment_scale(data, split.train_nodes)
    valid_ends = evaluation_ends(data, t)
    valid_rng = np.random.default_rng([t.seed, 1 << 20])
    valid = [
        assemble(data, [nodes], valid_ends[None], cfg, scale, noise_eta=t.noise_eta, rng=valid_rng).to(device)
        for nodes in split.valid
    ]

    seed_everything(t.seed)
    model = build_model(cfg.model, FEATURES_PER_FRAME * t.history).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, t))
    resume_hash = stable_hash([to_dict(cfg), data.settings_hash])
    state = {"epoch": 0, "history": [], "best_state": None, "best_epoch": -1, "best_valid": math.inf}
    last_path = out_dir / "last.pt"
    if last_path.exists():
        saved = torch.load(last_path, map_location="cpu", weights_only=True)
        if saved.get("resume_hash") == resume_hash:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            state = {k: saved[k] for k in state}
            log.info("%s: resuming after epoch %d", key, state["epoch"])
        else:
            log.info("%s: %s is from other settings or data; starting afresh", key, last_path)

    log.info(
        "%s: %d parameters, %d training nodes, subgraphs of %d, increment scale %.3g",
        key,
        count_parameters(model),
        split.train_nodes.size,
        t.subgraph_nodes,
        scale,
    )
    for epoch in range(state["epoch"], t.epochs):
        started = time.time()
        rng = np.random.default_rng([t.seed, epoch])
        model.train()
        sums, steps, skipped = {}, 0, 0
        for _ in range(t.steps_per_epoch):
            node_sets = [
                split.train_nodes[random_walk_subgraph(split.train_adjacency, t.subgraph_nodes, t.walk_length, rng)]
                for _ in range(t.subgraphs_per_step)
            ]
            ends = rng.integers(lo, hi + 1, size=(t.subgraphs_per_step, t.windows_per_subgraph))
            batch = assemble(data, node_sets, ends, cfg, scale, noise_eta=t.noise_eta, rng=rng, flip_signs=True)
            batch = batch.to(device)
            loss, parts = objective(model, batch, cfg, scale)
            optimizer.zero_grad(set_to_none=True)
            if not torch.isfinite(loss):
                skipped += 1
                scheduler.step()  # keep the schedule aligned with the step count
                continue
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
            optimizer.step()
            scheduler.step()
            steps += 1
            for name, value in {"loss": float(loss.detach()), **parts}.items():
                sums[name] = sums.get(name, 0.0) + value
        if steps == 0:
            raise IrnoError(f"{key}: every step of epoch {epoch} had a non-finite loss (try a lower train.lr)")
        model.eval()
        valid_smspe = float(np.mean([float(smspe(b.target, predict(model, b, cfg, scale)[0])) for b in valid]))
        best = valid_smspe < state["best_valid"]
        if best:
            state.update(
                best_valid=valid_smspe,
                best_epoch=epoch,
                best_state={k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            )
        row = {
            "run_key": key,
            "epoch": epoch,
            "valid_smspe": valid_smspe,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.time() - started,
            "skipped_steps": skipped,
            "best": best,
        }
        row.update({("loss" if k == "loss" else f"loss_{k}"): v / steps for k, v in sums.items()})
        state["history"].append(row)
        state["epoch"] = epoch + 1
        log.info(
            "%s epoch %d: loss %.4g, valid sMSPE %.4g%s",
            key,
            epoch,
            row["loss"],
            valid_smspe,
            " (best)" if best else "",
        )
        with atomic_path(last_path) as tmp:
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "resume_hash": resume_hash,
                    **state,
                },
                tmp,
            )

    if state["best_state"] is None:
        raise IrnoError(f"{key}: no epoch reached a finite validation sMSPE (try a lower train.lr)")
    history = pd.DataFrame(state["history"]).reindex(columns=LOG_COLUMNS)
    checkpoint = {
        "model": state["best_state"],
        "settings": to_dict(cfg),
        "run_key": key,
        "data_hash": data.settings_hash,
        "increment_scale": scale,
        "epoch": state["best_epoch"],
        "valid_smspe": state["best_valid"],
        "parameters": count_parameters(model),
        "train_seconds": float(history["seconds"].sum()),
    }
    with atomic_path(out_dir / "checkpoint.pt") as tmp:
        torch.save(checkpoint, tmp)
    with atomic_path(out_dir / "train_log.csv") as tmp:
        history.to_csv(tmp, index=False)
    return {k: v for k, v in checkpoint.items() if k not in ("model", "settings")}


def load_checkpoint(path: str | os.PathLike, cfg: RunConfig, data: KuramotoData) -> tuple[GraphOperator, dict]:
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
    model = build_model(cfg.model, FEATURES_PER_FRAME * cfg.train.history)
    model.load_state_dict(ckpt["model"])
    return model.eval(), {k: v for k, v in ckpt.items() if k != "model"}
