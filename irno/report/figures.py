"""Paper figures from saved evaluation outputs, each written as ``<name>.pdf`` and ``<name>.png``:
``spectral_error_ratio`` (the paper's figure (a)), ``spectral_mse_per_step`` (figure (b)),
``convergence`` (VRMSE against the step per sweep), ``energy_spectra`` and ``fields``.

Every figure function draws inside `figure_style()`, saves both files atomically (unless
``out_dir`` is None) and returns the `Figure`, whose artists carry the plotted arrays unchanged
(lines are tagged with a ``gid`` such as ``"median k=3"``). A missing run is a panel that says so;
a diverged curve is drawn as evaluated, every point beyond the axis marked ``^`` on the top edge.

Detail (panels, quantities): docs/outputs.md#tables-tables-and-figures-figures
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import matplotlib as mpl
import numpy as np
import seaborn as sns
from matplotlib.cm import ScalarMappable
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import LogFormatterSciNotation

from irno.config import ReportPlan
from irno.files import write_figure
from irno.report.names import FIGURE_NAMES
from irno.report.results import SeededRun, load_runs

log = logging.getLogger(__name__)
logging.getLogger("fontTools").setLevel(logging.WARNING)  # PDF font subsetting logs every glyph at INFO

PANEL = (5.0, 3.4)  # inches per line-plot panel
PALETTE = sns.color_palette("colorblind")
REFINED, BASE, TRUTH = PALETTE[0], PALETTE[1], "black"
SWEEP_SYMBOLS = {"alpha": "α", "K": "K"}
SWEEP_MARKERS = "osDvPXh"


@contextlib.contextmanager
def figure_style() -> Iterator[None]:
    """The one style of every figure: seaborn whitegrid/paper, colour-blind palette, sizes."""
    rc = {
        **sns.axes_style("whitegrid"),
        **sns.plotting_context("paper", font_scale=1.2),
        "axes.prop_cycle": mpl.cycler(color=PALETTE),
        "image.cmap": "viridis",
        "axes.titlepad": 9,  # room for the ▲ markers of diverged values on the top edge
        "legend.frameon": True,
        "legend.framealpha": 0.9,
        "legend.fontsize": 8.5,
        "savefig.dpi": 150,
        "pdf.fonttype": 42,  # TrueType: text stays editable and searchable in the PDF
    }
    with mpl.rc_context(rc):
        yield


def _new_figure(n_rows: int, n_cols: int, panel: tuple[float, float] = PANEL) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(panel[0] * n_cols, panel[1] * n_rows + 0.6), layout="constrained")
    return fig, fig.subplots(n_rows, n_cols, squeeze=False)


def _save(fig: Figure, out_dir: str | os.PathLike | None, name: str) -> Figure:
    """Write <name>.pdf and <name>.png (nothing when out_dir is None: the figure is only inspected)."""
    if out_dir is None:
        return fig
    fig.draw_without_rendering()  # constrained layout once, for both formats
    fig.set_layout_engine("none")
    write_figure(Path(out_dir) / name, fig)
    log.info("wrote %s/%s.{pdf,png}", out_dir, name)
    return fig


def _title(run: SeededRun) -> str:
    return f"{run.dataset} · {run.base}"


def _missing_panel(ax, run: SeededRun, what: str = "") -> None:
    text = f"missing run\n{run.dataset} / {run.base} / {run.experiment}" + (f"\n{what}" if what else "")
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.3", gid="missing")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(_title(run))


def _pairs(runs: list[SeededRun]) -> tuple[list[str], list[str]]:
    """Datasets (rows) and bases (columns) of the runs, in order of appearance."""
    return list(dict.fromkeys(r.dataset for r in runs)), list(dict.fromkeys(r.base for r in runs))


class _PlainLogFormatter(LogFormatterSciNotation):
    """Log-axis labels where matplotlib puts them, but 0.2 rather than 2 x 10^-1 in [0.001, 10^4)."""

    def __call__(self, x, pos=None):
        label = super().__call__(x, pos)
        return f"{x:g}" if label and 1e-3 <= x < 1e4 else label


def _log_axis(axis) -> None:
    axis.set_major_formatter(_PlainLogFormatter())
    axis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False))


def _log_limits(ax, converged: list[np.ndarray]) -> float:
    """Log y-axis spanning the finite positive values of the converged curves; returns the top."""
    values = np.concatenate([np.ravel(v) for v in converged]) if converged else np.array([])
    values = values[np.isfinite(values) & (values > 0)]
    lo, hi = (values.min(), values.max()) if values.size else (1e-3, 1.0)
    top = hi * 1.6
    ax.set_yscale("log")
    ax.set_ylim(lo / 1.6, top)
    _log_axis(ax.yaxis)
    return top


def _legend_below(ax, handles: list, ncols: int = 2) -> None:
    """A panel's legend under its x label, so it never hides a curve."""
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=ncols)


def _mark_beyond(ax, x: np.ndarray, y: np.ndarray, color, top: float) -> bool:
    """Put a ^ on the top edge above every point that is off the axis or not finite."""
    beyond = ~np.isfinite(y) | (y > top)
    if beyond.any():
        ax.plot(np.asarray(x)[beyond], np.full(beyond.sum(), top), linestyle="none", marker="^", markersize=7,
                color=color, markeredgecolor="black", markeredgewidth=0.5, clip_on=False, zorder=5,
                gid="beyond axis")  # fmt: skip
    return bool(beyond.any())


BEYOND_HANDLE = Line2D(
    [], [], linestyle="none", marker="^", color="0.5", markeredgecolor="black", label="diverged: beyond the axis"
)


def _shade_beyond(ax, K: int, last: int, label: str) -> Patch:
    ax.axvspan(K, last + 0.25, color="0.55", alpha=0.15, linewidth=0, gid="beyond K")
    return Patch(color="0.55", alpha=0.3, label=label)


# ----------------------------------------------------------------------------- figures


def spectral_error_ratio(runs: list[SeededRun], out_dir: str | os.PathLike | None) -> Figure:
    """Figure (a): median E_k/E_0 per shell, IQR band, one curve per step; one panel per run."""
    present = [r for r in runs if not r.missing]
    n_colors = max([len(r.first.spectra["steps"]) for r in present], default=1)
    colors = _step_colors(n_colors)
    with figure_style():
        datasets, bases = _pairs(runs)
        fig, axes = _new_figure(len(datasets), len(bases))
        any_beyond = False
        for run in runs:
            ax = axes[datasets.index(run.dataset), bases.index(run.base)]
            if run.missing:
                _missing_panel(ax, run)
                continue
            s = run.first.spectra
            steps, shells, K = s["steps"], s["shells"], int(s["K"])
            medians = run.spectra_stack("ratio_median")  # (seeds, steps, shells)
            median = medians.mean(0)
            # one seed: the inter-quartile range over samples; several: the range of the seeds' medians
            low, high = (s["ratio_q25"], s["ratio_q75"]) if run.n == 1 else (medians.min(0), medians.max(0))
            converged = [not run.step_diverged(int(k)) for k in steps]
            top = _log_limits(ax, [b[i] for b in (low, high) for i, ok in enumerate(converged) if ok])
            for i, k in enumerate(steps):
                if converged[i]:  # the band of a diverged step is off the axis and says nothing
                    ax.fill_between(
                        shells,
                        low[i],
                        high[i],
                        color=colors[i],
                        alpha=0.1,
                        linewidth=0,
                        gid=f"{'iqr' if run.n == 1 else 'seed range'} k={k}",
                    )
                ax.plot(
                    shells,
                    median[i],
                    color=colors[i],
                    linestyle="-" if k <= K else "--",
                    linewidth=1.4,
                    gid=f"median k={k}",
                )
                any_beyond |= _mark_beyond(ax, shells, median[i], colors[i], top)
            ax.axvline(float(s["nyquist"]), color="0.25", linestyle=":", linewidth=1.2, gid="nyquist")
            ax.text(
                float(s["nyquist"]),
                0.03,
                " Nyquist N/2",
                transform=ax.get_xaxis_transform(),
                rotation=90,
                ha="right",
                va="bottom",
                fontsize=8,
            )
            ax.set_title(f"{_title(run)} · {run.label} (K = {K})")
        for ax in axes[-1]:
            ax.set_xlabel("radial wavenumber m (cycles / domain)")
        for ax in axes[:, 0]:
            ax.set_ylabel("error ratio E$_k$(m) / E$_0$(m)")
        fig.colorbar(
            ScalarMappable(BoundaryNorm(np.arange(n_colors + 1) - 0.5, n_colors), ListedColormap(colors)),
            ax=axes, label="refinement step k", ticks=range(n_colors), fraction=0.04, pad=0.01,
        ).minorticks_off()  # fmt: skip
        seeds = max((r.n for r in present), default=1)
        spread = "inter-quartile range over samples and fields" if seeds == 1 else f"range over {seeds} seeds"
        handles = [
            Line2D(
                [],
                [],
                color="0.3",
                linestyle="-",
                label="median" + ("" if seeds == 1 else ", mean over seeds") + ", k ≤ K (trained)",
            ),
            Line2D([], [], color="0.3", linestyle="--", label="median, k > K (beyond training)"),
            Patch(color="0.3", alpha=0.25, label=spread),
            Line2D([], [], color="0.25", linestyle=":", label="Nyquist N/2"),
        ] + ([BEYOND_HANDLE] if any_beyond else [])
        fig.legend(handles=handles, loc="outside lower center", ncols=3 if len(bases) > 1 else 2)
        return _save(fig, out_dir, "spectral_error_ratio")


def _step_colors(n: int) -> list:
    return [mpl.colormaps["viridis"](v) for v in np.linspace(0.0, 0.9, n)]


def spectral_mse_per_step(runs: list[SeededRun], out_dir: str | os.PathLike | None, max_samples: int = 200) -> Figure:
    """Figure (b): per-sample spectral MSE against the step.

    Per (dataset, base) panel, the first run given (the full method) is drawn per sample (at most
    `max_samples` evenly spaced samples) with its median; later runs (e.g. no_spectral) by their
    median only.
    """
    with figure_style():
        datasets, bases = _pairs(runs)
        fig, axes = _new_figure(len(datasets), len(bases), panel=(5.0, 4.3))
        for dataset in datasets:
            for base in bases:
                ax = axes[datasets.index(dataset), bases.index(base)]
                group = [r for r in runs if (r.dataset, r.base) == (dataset, base)]
                _spectral_mse_panel(ax, group, max_samples)
        for ax in axes.flat:  # every row: the legends sit under the x labels
            ax.set_xlabel("refinement step k")
        for ax in axes[:, 0]:
            ax.set_ylabel("spectral MSE per sample (normalised fields)")
        return _save(fig, out_dir, "spectral_mse_per_step")


def _spectral_mse_panel(ax, group: list[SeededRun], max_samples: int) -> None:
    ax.set_title(_title(group[0]))
    present = [r for r in group if not r.missing]
    if not present:
        _missing_panel(ax, group[0], "\n".join(f"and {r.experiment}" for r in group[1:]))
        return
    handles = []
    converged = [
        r.first.spectra["spectral_mse"][:, [not r.step_diverged(int(k)) for k in r.first.spectra["steps"]]]
        for r in present
    ]
    top = _log_limits(ax, converged)
    any_beyond = False
    for j, run in enumerate(group):
        style = {"color": PALETTE[j % len(PALETTE)], "linestyle": "-" if j == 0 else "--"}
        if run.missing:
            handles.append(Line2D([], [], linestyle="none", label=f"{run.label}: missing"))
            continue
        steps, per_sample = run.first.spectra["steps"], run.first.spectra["spectral_mse"]  # (S,), (N, S)
        if j == 0:
            shown = np.unique(
                np.linspace(0, len(per_sample) - 1, min(len(per_sample), max_samples)).round().astype(int)
            )
            for i in shown:
                ax.plot(steps, per_sample[i], color=style["color"], alpha=0.18, linewidth=0.6, gid=f"sample {i}")
            handles.append(
                Line2D(
                    [],
                    [],
                    color=style["color"],
                    alpha=0.4,
                    linewidth=0.8,
                    label=f"per sample ({len(shown)} of {len(per_sample)}" + (", first seed)" if run.n > 1 else ")"),
                )
            )
        medians = np.median(run.spectra_stack("spectral_mse"), axis=1)  # (seeds, S): each seed's median
        median = medians.mean(0)
        ax.plot(steps, median, linewidth=2.2, marker="o", markersize=3.5, gid=f"median {run.experiment}", **style)
        label = f"median: {run.label}"
        if run.n > 1:
            ax.fill_between(steps, medians.min(0), medians.max(0), color=style["color"], alpha=0.2, linewidth=0,
                            gid=f"seed range {run.experiment}")  # fmt: skip
            label += f", mean of {run.n} seeds (band: range)"
        handles.append(Line2D([], [], linewidth=2.2, marker="o", markersize=3.5, label=label, **style))
        any_beyond |= _mark_beyond(ax, steps, median, style["color"], top)
        if j == 0:
            handles.append(_shade_beyond(ax, run.K, int(steps[-1]), f"beyond training horizon K = {run.K}"))
    _legend_below(ax, handles + ([BEYOND_HANDLE] if any_beyond else []), ncols=1)  # long labels: one column


def convergence(
    sweeps: dict[str, list[SeededRun]], out_dir: str | os.PathLike | None, main_experiment: str = "irno"
) -> Figure:
    """VRMSE against the step for each sweep; rows: (dataset, base), columns: sweeps (alpha, K).

    Curves are ordered and coloured by the swept value read from metrics.json; a hollow circle
    marks each run's own K. The region beyond K is shaded (beyond the full method's K when
    the runs of a panel differ in K).
    """
    all_runs = [r for runs in sweeps.values() for r in runs]
    pairs = list(dict.fromkeys((r.dataset, r.base) for r in all_runs))
    with figure_style():
        fig, axes = _new_figure(max(len(pairs), 1), max(len(sweeps), 1), panel=(5.0, 4.6))
        if not sweeps:
            axes[0, 0].text(
                0.5,
                0.5,
                "the report plan defines no sweeps",
                ha="center",
                va="center",
                transform=axes[0, 0].transAxes,
                gid="missing",
            )
            axes[0, 0].set_axis_off()
        for col, (key, runs) in enumerate(sweeps.items()):
            for row, pair in enumerate(pairs):
                ax = axes[row, col]
                _convergence_panel(ax, key, [r for r in runs if (r.dataset, r.base) == pair], main_experiment)
                ax.set_title(f"{pair[0]} · {pair[1]} · {SWEEP_SYMBOLS.get(key, key)} sweep")
        for ax in axes.flat:
            ax.set_xlabel("refinement step k")
        for ax in axes[:, 0]:
            ax.set_ylabel("VRMSE (The Well, test)")
        return _save(fig, out_dir, "convergence")


def _convergence_panel(ax, key: str, runs: list[SeededRun], main_experiment: str) -> None:
    present = sorted((r for r in runs if not r.missing), key=lambda r: float(r.metrics[key]))
    missing = [r for r in runs if r.missing]
    if not present:
        ax.text(
            0.5,
            0.5,
            "missing runs:\n" + "\n".join(r.experiment for r in missing),
            ha="center",
            va="center",
            transform=ax.transAxes,
            gid="missing",
        )
        ax.set_xticks([])
        ax.set_yticks([])
        return
    colors = [mpl.colormaps["viridis"](v) for v in np.linspace(0.0, 0.85, len(present))]
    curves = {run.experiment: run.curve("vrmse") for run in present}  # (steps, mean, min, max) over seeds
    top = _log_limits(
        ax,
        [np.concatenate([c[i][[not r.step_diverged(int(k)) for k in c[0]]] for i in (1, 2, 3)])
         for r, c in ((r, curves[r.experiment]) for r in present)],
    )  # fmt: skip
    handles, any_beyond = [], False
    for i, run in enumerate(present):
        steps, vrmse, low, high = curves[run.experiment]
        if run.n > 1:
            ax.fill_between(
                steps, low, high, color=colors[i], alpha=0.18, linewidth=0, gid=f"seed range {run.experiment}"
            )
        label = f"{SWEEP_SYMBOLS.get(key, key)} = {float(run.metrics[key]):g}"
        label += " (full method)" if run.experiment == main_experiment else ""
        label += f", {run.status}" if run.diverged else ""
        marker = SWEEP_MARKERS[i % len(SWEEP_MARKERS)]
        ax.plot(
            steps, vrmse, color=colors[i], marker=marker, markersize=3.5, linewidth=1.6, gid=f"vrmse {run.experiment}"
        )
        ax.plot(
            [run.K],
            [vrmse[run.K]],
            linestyle="none",
            marker="o",
            markersize=10,
            markerfacecolor="none",
            color=colors[i],
            gid=f"K {run.experiment}",
        )
        handles.append(Line2D([], [], color=colors[i], marker=marker, markersize=3.5, linewidth=1.6, label=label))
        any_beyond |= _mark_beyond(ax, steps, vrmse, colors[i], top)
    Ks = {r.K for r in present}
    main = next((r for r in present if r.experiment == main_experiment), present[0])
    last = max(r.final_step for r in present)
    shade = f"beyond training horizon K = {main.K}" if len(Ks) == 1 else f"beyond K = {main.K} of {main.label}"
    handles.append(_shade_beyond(ax, main.K, last, shade))
    handles.append(
        Line2D(
            [],
            [],
            linestyle="none",
            marker="o",
            markersize=8,
            markerfacecolor="none",
            color="0.3",
            label="each run's own K",
        )
    )
    seeds = max(r.n for r in present)
    if seeds > 1:
        handles.append(Patch(color="0.5", alpha=0.3, label=f"range over {seeds} seeds (line: mean)"))
    handles += [Line2D([], [], linestyle="none", label=f"{r.label}: missing") for r in missing]
    _legend_below(ax, handles + ([BEYOND_HANDLE] if any_beyond else []))


def field_quantities(field_names: list[str]) -> list[tuple[str, list[int]]]:
    """Up to three quantities to show: the first field, velocity (x and y together), the second field.

    For active_matter: concentration, velocity, D_xx.
    """
    names = list(field_names)
    velocity = [names.index(n) for n in ("velocity_x", "velocity_y") if n in names]
    others = [i for i, n in enumerate(names) if i not in velocity]
    quantities = [(names[others[0]], [others[0]])] if others else []
    if len(velocity) == 2:
        quantities.append(("velocity", velocity))
    quantities += [(names[i], [i]) for i in others[1:2]]
    return quantities


def energy_spectra(runs: list[SeededRun], out_dir: str | os.PathLike | None) -> Figure:
    """Isotropic power spectra of truth, base (k=0) and refined (k=K); velocity sums both components."""
    n_cols = max([len(field_quantities(r.first.spectra["field_names"])) for r in runs if not r.missing], default=1)
    with figure_style():
        fig, axes = _new_figure(len(runs), n_cols, panel=(4.0, 3.2))
        for row, run in enumerate(runs):
            if run.missing:
                _missing_panel(axes[row, 0], run)
                for ax in axes[row, 1:]:
                    ax.set_axis_off()
                continue
            s = run.first.spectra
            k = s["energy_wavenumber"]
            quantities = field_quantities(s["field_names"])
            mean = {key: run.spectra_stack(key).mean(0) for key in ("energy_truth", "energy_base", "energy_refined")}
            for col, (name, idx) in enumerate(quantities):
                ax = axes[row, col]
                for key, label, color, style in (
                    ("energy_truth", "truth", TRUTH, "-"),
                    ("energy_base", "base (k = 0)", BASE, "--"),
                    ("energy_refined", f"refined (k = {run.K})", REFINED, "-"),
                ):
                    ax.plot(
                        k,
                        mean[key][idx].sum(0),
                        color=color,
                        linestyle=style,
                        linewidth=1.6,
                        label=label,
                        gid=f"{key} {name}",
                    )
                ax.set_xscale("log")
                ax.set_yscale("log")
                _log_axis(ax.xaxis)
                ax.yaxis.minorticks_off()  # spectra span many decades: minor ticks only cost layout time
                ax.set_title(f"{_title(run)} · {name}" + (" (x + y)" if len(idx) > 1 else ""))
                ax.set_xlabel("wavenumber |κ| (cycles per domain)")
                ax.legend(loc="lower left")
            for ax in axes[row, len(quantities) :]:
                ax.set_axis_off()
            axes[row, 0].set_ylabel("power spectrum (normalised fields)")
        return _save(fig, out_dir, "energy_spectra")


def fields(run: SeededRun, out_dir: str | os.PathLike | None) -> Figure:
    """One test sample: truth, base, refined, |base − truth|, |refined − truth| per quantity.

    Images are the (X, Y) arrays transposed with the origin at the bottom left, so x runs to the
    right; the fields share one colour scale per row (the truth's range), the errors another.
    """
    with figure_style():
        if run.missing:
            fig, axes = _new_figure(1, 1)
            _missing_panel(axes[0, 0], run)
            return _save(fig, out_dir, "fields")
        s = run.first.spectra  # one sample of one seed
        quantities = field_quantities(s["field_names"])
        fig, axes = _new_figure(len(quantities), 5, panel=(2.6, 2.5))
        columns = ["truth", "base (k = 0)", f"refined (k = {run.K})", "|base − truth|", "|refined − truth|"]
        for row, (name, idx) in enumerate(quantities):
            truth, base, refined = (
                _quantity(s[key], idx) for key in ("example_truth", "example_base", "example_refined")
            )
            errors = np.abs(base - truth), np.abs(refined - truth)
            field_range = {"vmin": float(truth.min()), "vmax": float(truth.max()), "cmap": "viridis"}
            error_range = {"vmin": 0.0, "vmax": float(max(e.max() for e in errors)), "cmap": "magma"}
            for col, (image, scale) in enumerate(
                zip((truth, base, refined, *errors), [field_range] * 3 + [error_range] * 2)
            ):
                ax = axes[row, col]
                shown = ax.imshow(image.T, origin="lower", interpolation="nearest", **scale)
                ax.set_xticks([])
                ax.set_yticks([])
                ax.grid(False)
                if row == 0:
                    ax.set_title(columns[col])
                if col in (2, 4):  # one colour bar for the three fields, one for the two errors
                    span = slice(0, 3) if col == 2 else slice(3, 5)
                    fig.colorbar(shown, ax=axes[row, span], shrink=0.85, pad=0.02)
            label = f"|{name}|" if len(idx) > 1 else name
            axes[row, 0].set_ylabel(f"{label}\n(physical units)")
        fig.suptitle(f"{_title(run)} · {run.label} · test sample {int(s['example_index'])}")
        return _save(fig, out_dir, "fields")


def _quantity(arrays: np.ndarray, idx: list[int]) -> np.ndarray:
    """(F, H, W) -> (H, W): the field itself, or the magnitude of a vector's components."""
    return arrays[idx[0]] if len(idx) == 1 else np.sqrt((arrays[idx] ** 2).sum(0))


def write_figures(plan: ReportPlan, eval_root: str | os.PathLike, out_dir: str | os.PathLike) -> list[Path]:
    """Write figures/{spectral_error_ratio,spectral_mse_per_step,convergence,energy_spectra,fields}.{pdf,png}."""
    runs = load_runs(plan, eval_root)
    pairs = [(d, b) for d in plan.datasets for b in plan.bases]
    main = [runs[(d, b, plan.main_experiment)] for d, b in pairs]
    spectral_error_ratio(main, out_dir)
    spectral_mse_per_step([runs[(d, b, e)] for d, b in pairs for e in plan.band_experiments], out_dir)
    convergence(
        {key: [runs[(d, b, e)] for d, b in pairs for e in plan.sweep(key)] for key in plan.sweeps},
        out_dir,
        plan.main_experiment,
    )
    energy_spectra(main, out_dir)
    fields(runs[(plan.figure_dataset, plan.figure_base, plan.main_experiment)], out_dir)
    return [Path(out_dir) / f"{name}.{suffix}" for name in FIGURE_NAMES for suffix in ("pdf", "png")]
