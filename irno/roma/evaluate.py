"""Test metrics of a trained run, and ROMA's fine-to-coarse attention maps.

The test set is the run's held-out test subgraphs (the split of its training) at ``eval_windows``
evenly spaced window ends, scored clean with fixed input functions, as the reference tests
(``smspe``, the headline number); beside it the score with the run's input noise, the
persistence forecast's and the losses the reference reports. ``metrics.json`` is flat (null
where the model has no such part); ``attention.npz`` (roma) holds the last Transformer block's
attention of the fine tokens on the coarse ones on test subgraph 0. Every key: docs/roma.md,
"Training and evaluation".
"""

from __future__ import annotations

import os

import numpy as np
import torch

from irno import IrnoError
from irno.device import select_device
from irno.files import write_json, write_npz
from irno.roma.settings import RunConfig
from irno.roma.train import (
    EVALUATION_SEED,
    POOL_LOSSES,
    RunInputs,
    Subgraph,
    coarse_targets,
    evaluation_ends,
    load_checkpoint,
    make_batch,
    run,
    smspe,
    split_nodes,
)


def evaluate(
    cfg: RunConfig,
    inputs: RunInputs,
    checkpoint_path: str | os.PathLike,
    metrics_out: str | os.PathLike,
    attention_out: str | os.PathLike | None = None,
) -> dict:
    """Score the checkpoint of run `cfg` on its test subgraphs and write ``metrics.json`` to
    `metrics_out` (and, for ROMA, the attention maps to `attention_out`); returns the metrics.

    `inputs` is the run's dataset and graph encodings (`irno.roma.train.read_inputs`). Each test
    subgraph is scored one window at a time (the learned PDE's derivatives need a step's memory
    only), with the input functions of a fixed seed per window: clean (``smspe``, ``mse``, the
    coarse tokens', the PDE's and the pooling losses), with the run's input noise on clean
    targets (``smspe_noisy_inputs``) and as the persistence forecast (``smspe_persistence``);
    each metric is the mean over subgraphs and windows. The attention maps come from test
    subgraph 0, in a pass of their own, averaged over heads and windows.
    """
    if attention_out is not None and cfg.model.kind != "roma":
        raise IrnoError(f"--attention: model '{cfg.model.kind}' has no multiscale attention (roma only)")
    data, encodings = inputs.data, inputs.encodings
    model, ckpt = load_checkpoint(checkpoint_path, cfg, data)
    t = cfg.train
    device = select_device(t.device)
    model.to(device)
    split = split_nodes(data, t)
    ends = evaluation_ends(data, t)
    noise_rng = np.random.default_rng([t.seed, 1 << 21])
    scores: dict[str, list[float]] = {}

    def add(name: str, value) -> None:
        scores.setdefault(name, []).append(float(value))

    attention = []
    with torch.no_grad():  # the learned PDE's derivatives are forward-mode: no graph needed
        for index, nodes in enumerate(split.test):
            sub = Subgraph.of(data, nodes, device)
            for window, end in enumerate(ends):  # one window at a time: the PDE terms' memory stays a step's
                clean = make_batch(data, sub, end[None], t.history, encodings, device)
                seed = EVALUATION_SEED + window
                out = run(model, sub, clean, seed=seed, pde=cfg.model.learned_pde)
                add("smspe", smspe(clean.target, out.fine).mean())
                add("smspe_persistence", smspe(clean.target, clean.history[..., -1]).mean())
                add("mse", (clean.target - out.fine).square().mean())
                if out.renormalised is not None:
                    add("smspe_coarse", smspe(coarse_targets(out, clean), out.coarse).mean())
                    for name, value in zip(POOL_LOSSES, out.renormalised.losses, strict=True):
                        add(f"loss_{name}", value)
                if out.pde_loss is not None:
                    add("loss_pde", out.pde_loss)
                    add("loss_gpde", out.pde_gradient_loss)
                if attention_out is not None and index == 0:
                    # a pass of its own: the explicit attention weights are another kernel than the
                    # fused one of the scores, which would otherwise differ in the last digits
                    # with and without --attention
                    maps = run(model, sub, clean, seed=seed, pde=False, attention=True)
                    attention.append(_attention_maps(maps, sub))
                noisy = make_batch(
                    data, sub, end[None], t.history, encodings, device,
                    noise_eta=t.noise_eta, noisy_targets=False, rng=noise_rng,
                )  # fmt: skip
                add("smspe_noisy_inputs", smspe(noisy.target, run(model, sub, noisy, seed=seed, pde=False).fine).mean())
    mean = {k: float(np.mean(v)) for k, v in scores.items()}
    m = cfg.model
    metrics = {
        "run_key": ckpt["run_key"],
        "dataset": cfg.dataset,
        "system": data.system,
        "nodes": data.num_nodes,
        "edges": int(data.edges.shape[0]),
        "mean_degree": 2.0 * data.edges.shape[0] / data.num_nodes,
        "model": m.kind,
        "width": m.width,
        "depth": m.depth,
        "parameters": ckpt["parameters"],
        "reference_parameters": ckpt["reference_parameters"],
        "learned_pde": m.learned_pde,
        "pde": m.pde if m.learned_pde else None,
        "manifold": m.manifold if m.kind == "roma" else "euclidean",
        "encodings": "+".join(m.used_encodings) or "none",
        "index_embedding": m.index_embedding if m.kind == "roma" else [1.0, 1.0],
        "level_embedding": m.level_embedding if m.kind == "roma" else 0.0,
        "context_embedding": m.context_embedding and m.kind == "roma",
        "noise_eta": t.noise_eta,
        "history": t.history,
        "steps": t.steps,
        "subgraph_nodes": t.subgraph_nodes,
        "test_subgraphs": len(split.test),
        "test_windows": int(ends.size),
        "valid_smspe": ckpt["valid_smspe"],
        "train_seconds": ckpt["train_seconds"],
        **{
            name: mean.get(name)
            for name in (
                "smspe",
                "smspe_noisy_inputs",
                "smspe_persistence",
                "mse",
                "smspe_coarse",
                "loss_pde",
                "loss_gpde",
                *(f"loss_{n}" for n in POOL_LOSSES),
            )
        },
    }
    if attention_out is not None:
        maps = {k: np.mean([a[k] for a in attention], axis=0) for k in attention[0]}  # mean over the windows
        write_npz(attention_out, run_key=np.asarray(ckpt["run_key"]), coarse_nodes=np.asarray(m.coarse_nodes), **maps)
    write_json(metrics_out, metrics)
    return metrics


def _attention_maps(out, sub: Subgraph) -> dict:
    n = out.num_fine
    weights = out.attention.mean((0, 1)).cpu().numpy()  # (T, T): mean over the heads
    return {
        "fine_to_coarse": weights[:n, n:],  # (n, m)
        "assignment": out.renormalised.assignment[0].cpu().numpy(),  # (n, m)
        "degree": (sub.adjacency.sum(-1) - 1).cpu().numpy(),  # (n,) without the self loop
    }
