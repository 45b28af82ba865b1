"""Tables and figures of the ROMA study, from saved outputs only (metrics.json, train_log.csv,
attention.npz); the expanded study says which run belongs to which experiment.

Tables (.csv, .md, .tex; every sMSPE is the clean test score): ``results.csv`` (every run's
metrics), ``smspe`` (data_noise), ``effective_dynamics``, ``scaling`` (power laws of the test
losses against the parameter count, and of the sMSPE against the graph size) and ``ablations``
(positional, graph_encodings). Figures (.pdf, .png): ``training_curves``, ``scaling_law`` and
ROMA's fine-to-coarse ``attention``. What each holds: docs/roma.md, "Training and evaluation".
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from irno import IrnoError
from irno.files import read_json, write_figure, write_table
from irno.roma.settings import FIGURE_FORMATS, MODEL_KINDS, TABLE_FORMATS, StudyConfig
from irno.roma.study import ExpandedStudy, expand_study

# ----------------------------------------------------------------------------- analysis


def fit_power_law(x: np.ndarray, y: np.ndarray) -> dict:
    """Least squares on log y = a log x + b: the exponent alpha = -a and its standard error,
    N_c = exp(-b / a) (y = (N_c / x)^alpha) and its standard error (delta method), b, r^2."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.size < 3 or np.unique(x).size < 2:
        raise IrnoError(f"a power-law fit needs at least 3 points with distinct x; got x = {x.tolist()}")
    if (x <= 0).any() or (y <= 0).any():
        raise IrnoError(f"a power-law fit needs positive values; got x = {x.tolist()}, y = {y.tolist()}")
    design = np.stack([np.log(x), np.ones_like(x)], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, np.log(y), rcond=None)
    residual = np.log(y) - design @ np.array([a, b])
    covariance = residual @ residual / (x.size - 2) * np.linalg.inv(design.T @ design)
    total = np.square(np.log(y) - np.log(y).mean()).sum()
    nc = float(np.exp(-b / a)) if a != 0 else float("nan")
    gradient = np.array([nc * b / a**2, -nc / a]) if a != 0 else np.full(2, np.nan)  # d N_c / d(a, b)
    return {
        "exponent": -a,
        "exponent_se": float(np.sqrt(covariance[0, 0])),
        "critical_size": nc,
        "critical_size_se": float(np.sqrt(max(gradient @ covariance @ gradient, 0.0))),
        "intercept": b,
        "r2": 1 - residual @ residual / total if total > 0 else 1.0,
        "points": int(x.size),
    }


# ----------------------------------------------------------------------------- loading saved outputs


def load_metrics(paths: list[str | os.PathLike]) -> pd.DataFrame:
    rows = [read_json(p) for p in paths]
    for path, row in zip(paths, rows, strict=True):
        if not isinstance(row, dict) or "run_key" not in row:
            raise IrnoError(f"{path}: not a ROMA metrics.json (no run_key)")
    return pd.DataFrame(rows).set_index("run_key", drop=False)


def load_train_logs(paths: list[str | os.PathLike]) -> pd.DataFrame:
    frames = []
    for path in paths:
        if not Path(path).is_file():
            raise IrnoError(f"{path}: training log not found")
        frame = pd.read_csv(path)
        if "run_key" not in frame or "valid_smspe" not in frame:
            raise IrnoError(f"{path}: not a ROMA train_log.csv (needs run_key, valid_smspe)")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _experiment_frame(expanded: ExpandedStudy, metrics: pd.DataFrame, name: str) -> pd.DataFrame:
    """The experiment's grid entries joined with their runs' metrics."""
    entries = pd.DataFrame(expanded.experiments.get(name, []))
    if entries.empty:
        return entries
    missing = sorted(set(entries["run"]) - set(metrics.index))
    if missing:
        raise IrnoError(f"experiment '{name}': no metrics given for run(s) {', '.join(missing)}")
    joined = entries.join(metrics.drop(columns=["dataset", "model"]), on="run")
    joined["model"] = pd.Categorical(joined["model"], categories=[m for m in MODEL_KINDS if m in set(joined["model"])])
    return joined


# ----------------------------------------------------------------------------- tables


def build_tables(expanded: ExpandedStudy, metrics: pd.DataFrame) -> dict[str, pd.DataFrame]:
    tables = {"results": metrics.reset_index(drop=True)}
    data_noise = _experiment_frame(expanded, metrics, "data_noise")
    if not data_noise.empty:
        table = data_noise.pivot_table(
            index="model", columns=["dataset", "nodes", "noise_eta"], values="smspe", observed=True
        )
        table.columns = [f"{d} (N={n}), eta={eta:g}" for d, n, eta in table.columns]
        tables["smspe"] = table.reset_index()
    effective = _experiment_frame(expanded, metrics, "effective_dynamics")
    if not effective.empty:
        columns = ["dataset", "model", "pde", "width", "reference_parameters", "smspe", "loss_pde", "loss_gpde"]
        tables["effective_dynamics"] = effective[columns].sort_values(["dataset", "model"]).reset_index(drop=True)
    if "parameter_scaling" in expanded.experiments:
        tables["scaling"] = _scaling_table(expanded, metrics, data_noise)
    ablations = []
    for name in ("positional", "graph_encodings"):
        frame = _experiment_frame(expanded, metrics, name)
        if frame.empty:
            continue
        frame["experiment"] = name
        columns = ["experiment", "dataset", "model", "setting", "reference_parameters", "smspe", "smspe_persistence"]
        ablations.append(frame[columns])
    if ablations:
        tables["ablations"] = pd.concat(ablations, ignore_index=True)
    return tables


def _scaling_table(expanded: ExpandedStudy, metrics: pd.DataFrame, data_noise: pd.DataFrame) -> pd.DataFrame:
    rows = []
    frame = _experiment_frame(expanded, metrics, "parameter_scaling")
    for (dataset, model), group in frame.groupby(["dataset", "model"], observed=True):
        for loss in ("smspe", "loss_pde"):
            values = group[loss].astype(float)
            if values.notna().all():
                rows.append(
                    {
                        "experiment": "parameter_scaling",
                        "loss": loss,
                        "against": "parameters",
                        "dataset": dataset,
                        "model": model,
                        "noise_eta": group["noise_eta"].iloc[0],
                        **fit_power_law(group["reference_parameters"], values),
                    }
                )
    if not data_noise.empty:
        for (model, eta), group in data_noise.groupby(["model", "noise_eta"], observed=True):
            if group["nodes"].nunique() >= 3:
                rows.append(
                    {
                        "experiment": "data_noise",
                        "loss": "smspe",
                        "against": "nodes",
                        "dataset": "all",
                        "model": model,
                        "noise_eta": eta,
                        **fit_power_law(group["nodes"], group["smspe"]),
                    }
                )
    return pd.DataFrame(rows)


def write_tables(study: StudyConfig, metrics_paths: list, out_dir: str | os.PathLike) -> list[Path]:
    expanded = expand_study(study)
    tables = build_tables(expanded, load_metrics(metrics_paths))
    written = []
    for name, table in tables.items():
        written += write_table(Path(out_dir) / name, table, ("csv",) if name == "results" else TABLE_FORMATS)
    return written


# ----------------------------------------------------------------------------- figures


def write_figures(
    study: StudyConfig,
    metrics_paths: list,
    train_log_paths: list,
    attention_paths: list,
    out_dir: str | os.PathLike,
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", palette="colorblind", context="paper")
    expanded = expand_study(study)
    metrics = load_metrics(metrics_paths)
    out_dir = Path(out_dir)
    written = []

    def save(fig, name: str) -> None:
        fig.tight_layout()
        written.extend(write_figure(out_dir / name, fig, FIGURE_FORMATS, dpi=150))
        plt.close(fig)

    save(_training_curves(expanded, metrics, load_train_logs(train_log_paths), plt, sns), "training_curves")
    if "parameter_scaling" in expanded.experiments:
        save(_scaling_figure(expanded, metrics, plt, sns), "scaling_law")
    if attention_paths:
        save(_attention_figure(attention_paths, metrics, plt), "attention")
    return written


def _training_curves(expanded, metrics, logs, plt, sns):
    names = list(expanded.experiments)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        frame = _experiment_frame(expanded, metrics, name)
        frame["setting"] = frame["dataset"] + " " + frame["setting"]
        curves = logs.merge(frame[["run", "model", "setting"]], left_on="run_key", right_on="run")
        sns.lineplot(
            data=curves,
            x="step",
            y="valid_smspe",
            hue="model",
            style="setting",
            ax=ax,
            marker="o",
            markersize=3,
            hue_order=list(frame["model"].cat.categories),
        )
        ax.set_yscale("log")
        ax.set_title(name.replace("_", " "))
        ax.set_ylabel("validation sMSPE")
        # below the panel: a dozen model x setting entries would hide the curves inside it
        ax.legend(fontsize=7, title=None, loc="upper center", bbox_to_anchor=(0.5, -0.27), ncols=2, frameon=False)
    return fig


def _scaling_figure(expanded, metrics, plt, sns):
    from matplotlib.ticker import LogLocator

    frame = _experiment_frame(expanded, metrics, "parameter_scaling")
    fig, ax = plt.subplots(figsize=(4.8, 3.6))
    palette = sns.color_palette("colorblind")
    for i, ((dataset, model), group) in enumerate(frame.groupby(["dataset", "model"], observed=True)):
        parameters = group["reference_parameters"]
        fit = fit_power_law(parameters, group["smspe"])
        x = np.geomspace(parameters.min(), parameters.max(), 50)
        label = f"{dataset} {model}: exponent {fit['exponent']:.3f} ± {fit['exponent_se']:.3f}"
        ax.plot(parameters, group["smspe"], "o", color=palette[i % len(palette)])
        ax.plot(
            x, np.exp(fit["intercept"]) * x ** (-fit["exponent"]), "-", color=palette[i % len(palette)], label=label
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    # An axis spanning less than a decade has no major tick: label the minor ones at 2 and 5 x 10^n
    # (matplotlib's default minor labels) and have no others, which would overlap.
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
    ax.set_xlabel("parameters (as the reference counts them)")
    ax.set_ylabel("test sMSPE (clean)")
    ax.legend(fontsize=6)
    return fig


def _attention_figure(paths, metrics, plt):
    maps = []
    for path in paths:
        if not Path(path).is_file():
            raise IrnoError(f"{path}: attention file not found")
        with np.load(path) as f:
            maps.append({k: f[k] for k in f.files})
    cols = min(3, len(maps))
    rows = -(-len(maps) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.ravel()[len(maps) :]:
        ax.set_visible(False)
    for ax, item in zip(axes.ravel(), maps, strict=False):  # a grid cell per map, spare cells hidden
        key = str(item["run_key"])
        # fine nodes grouped by their coarse node, hubs first inside a group
        order = np.lexsort((-item["degree"], item["assignment"].argmax(axis=1)))
        image = ax.imshow(item["fine_to_coarse"][order], aspect="auto", cmap="viridis", interpolation="nearest")
        ax.grid(False)
        row = metrics.loc[key] if key in metrics.index else None
        ax.set_title(
            key if row is None else f"{row['dataset']} (N={row['nodes']}), eta={row['noise_eta']:g}", fontsize=8
        )
        ax.set_xlabel("coarse token")
        ax.set_ylabel("fine node (by coarse assignment)")
        fig.colorbar(image, ax=ax, label="attention")
    return fig
