"""Test metrics of a trained run, and ROMA's fine-to-coarse attention maps.

The test set is the run's held-out test subgraphs (the same split as in training) at
``eval_windows`` evenly spaced window ends. Inputs are scored twice: with the run's noise
(``smspe``: the paper's setting for a run trained at that eta; fixed seed) and clean
(``smspe_clean``). The persistence forecast y_hat = last input phase is scored the same way, so
every number has its trivial reference next to it.

``metrics.json`` (flat): run_key, dataset, nodes, edges, mean_degree, model, width, parameters,
positional, pe_dim, learned_pde, noise_eta, history, horizon, subgraph_nodes, test_subgraphs,
test_windows, epoch, valid_smspe, train_seconds; smspe, smspe_clean, smspe_persistence,
smspe_persistence_clean, mse, mse_clean, smspe_coarse (roma, else null), pde_residual_rms
(learned PDE, else null).

``attention.npz`` (roma): the last Transformer layer's attention of test subgraph 0, averaged
over heads and windows: ``fine_to_coarse`` (n, sum m) rows of fine tokens, columns of the coarse
tokens level by level; ``assignment`` (n, m_1) the first renormalisation's S; ``coarse_nodes``;
``degree`` (n,) of the fine nodes in the subgraph; ``run_key``.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from irno.roma.config import RunConfig
from irno.roma.kuramoto import load
from irno.roma.train import (
    assemble,
    coarse_targets,
    evaluation_ends,
    lead_times,
    load_checkpoint,
    predict,
    smspe,
    split_nodes,
)
from irno.utils import IrnoError, select_device, write_json, write_npz


def evaluate(
    cfg: RunConfig,
    data_path: str | os.PathLike,
    checkpoint_path: str | os.PathLike,
    metrics_out: str | os.PathLike,
    attention_out: str | os.PathLike | None = None,
) -> dict:
    if attention_out is not None and cfg.model.kind != "roma":
        raise IrnoError(f"--attention: model '{cfg.model.kind}' has no multiscale attention (roma only)")
    data = load(data_path)
    model, ckpt = load_checkpoint(checkpoint_path, cfg, data)
    t = cfg.train
    device = select_device(t.device)
    model.to(device)
    split = split_nodes(data, t)
    scale = ckpt["increment_scale"]
    ends = evaluation_ends(data, t)
    noise_rng = np.random.default_rng([t.seed, 1 << 21])
    scores = {
        name: []
        for name in (
            "smspe",
            "smspe_clean",
            "smspe_persistence",
            "smspe_persistence_clean",
            "mse",
            "mse_clean",
            "smspe_coarse",
            "pde_residual_ms",
        )
    }
    attention = None
    for index, nodes in enumerate(split.test):
        for noisy in (True, False):
            suffix = "" if noisy else "_clean"
            batch = assemble(
                data, [nodes], ends[None], cfg, scale, noise_eta=t.noise_eta if noisy else 0.0, rng=noise_rng
            ).to(device)
            want_attention = cfg.model.kind == "roma" and index == 0 and not noisy
            prediction, out = predict(model, batch, cfg, scale, attention=want_attention)
            persistence = batch.last.unsqueeze(-1).expand_as(batch.target)
            scores["smspe" + suffix].append(float(smspe(batch.target, prediction)))
            scores["smspe_persistence" + suffix].append(float(smspe(batch.target, persistence)))
            scores["mse" + suffix].append(float((batch.target - prediction).square().mean()))
            if noisy and out.levels:
                coarse = [smspe(y, last + scale * u) for (y, last), u in zip(coarse_targets(out, batch), out.coarse)]
                scores["smspe_coarse"].append(float(torch.stack(coarse).mean()))
            if noisy and cfg.model.learned_pde:
                with torch.enable_grad():
                    residual = model(
                        batch.history, batch.pe, batch.adj, lead_times(t, batch.history.device), pde=True
                    ).pde_residual
                scores["pde_residual_ms"].append(float(residual.detach().square().mean()))
            if want_attention:
                attention = _attention_maps(out, batch, nodes.size)
    mean = {k: (float(np.mean(v)) if v else None) for k, v in scores.items()}
    pde_ms = mean.pop("pde_residual_ms")
    metrics = {
        "run_key": ckpt["run_key"],
        "dataset": cfg.dataset,
        "nodes": data.num_nodes,
        "edges": int(data.edges.shape[0]),
        "mean_degree": 2.0 * data.edges.shape[0] / data.num_nodes,
        "model": cfg.model.kind,
        "width": cfg.model.width,
        "parameters": ckpt["parameters"],
        "positional": cfg.model.positional,
        "pe_dim": cfg.model.pe_dim,
        "learned_pde": cfg.model.learned_pde,
        "noise_eta": t.noise_eta,
        "history": t.history,
        "horizon": t.horizon,
        "subgraph_nodes": t.subgraph_nodes,
        "test_subgraphs": len(split.test),
        "test_windows": int(ends.size),
        "epoch": ckpt["epoch"],
        "valid_smspe": ckpt["valid_smspe"],
        "train_seconds": ckpt["train_seconds"],
        **mean,
        "pde_residual_rms": None if pde_ms is None else float(np.sqrt(pde_ms)),
    }
    if attention_out is not None:
        write_npz(
            attention_out,
            run_key=np.asarray(ckpt["run_key"]),
            coarse_nodes=np.asarray(cfg.model.coarse_nodes),
            **attention,
        )
    write_json(metrics_out, metrics)
    return metrics


def _attention_maps(out, batch, n: int) -> dict:
    weights = out.attention.mean(0).cpu().numpy()  # (T, T) mean over windows
    return {
        "fine_to_coarse": weights[:n, n:],  # (n, sum m)
        "assignment": out.levels[0].assignment.mean(0).cpu().numpy(),  # (n, m_1)
        "degree": batch.adj[0].sum(-1).cpu().numpy(),  # (n,)
    }
