"""Paper tables from saved evaluation outputs: ``main``, ``ablations``, ``bands``, ``per_field`` and
``claims`` (the paper's claims with a verdict each, irno.report.claims).

Each is written as ``<name>.csv`` (full precision), ``<name>.md`` and ``<name>.tex`` (booktabs,
rounded). Every row comes from one evaluated run; cells say what they are in every format: a
number, a number marked ``†`` (CSV: ``(diverged)``), ``missing``, ``not reported`` or ``not
compared (simulated)``. VRMSE appears in two conventions (docs/method.md#vrmse-two-conventions):
``The Well`` and ``pooled (reference)``.

Detail: docs/outputs.md#tables-tables-and-figures-figures
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from irno.bands import BANDS
from irno.config import ReportPlan
from irno.files import write_table
from irno.report.claims import Verdict, evaluate_claims, load_claims
from irno.report.results import Reported, SeededRun, load_reported, load_runs
from irno.report.stats import SIGNIFICANCE, Stat, compare

log = logging.getLogger(__name__)

VRMSE, PERCENT, DELTA, BAND_PERCENT = ".4f", ".2f", "+.4f", ".1f"
MISSING, NOT_REPORTED, SIMULATED = "missing", "not reported", "not compared (simulated)"
DIVERGED_MARK = {"csv": " (diverged)", "md": " †", "tex": " †"}
DIVERGED_NOTE = (
    "† diverged: the evaluation flagged this step (non-finite, or error above divergence_factor × the base's)."
)
MISSING_NOTE = "missing: listed in the report plan, but eval/<dataset>/<base>/<experiment>/ has no complete output."
NOT_SIGNIFICANT = " (ns)"
NOT_SIGNIFICANT_NOTE = (
    f"(ns): within the seeds' spread: the difference is not significant (Welch's t-test, p ≥ {SIGNIFICANCE}), or there "
    "is only one seed."
)


@dataclass(frozen=True)
class Cell:
    """One table cell: a number (rounded by `fmt` in Markdown/LaTeX), a `Stat` over seeds or a text.

    A Stat of several seeds renders as ``mean ± sd`` in Markdown and LaTeX; CSV keeps the mean in
    the column and the standard deviation in a column of its own (`Table.frame`). `mark` follows
    the number (e.g. " (ns)": a difference within the seeds' spread).
    """

    value: Any
    fmt: str = ""
    diverged: bool = False
    mark: str = ""

    def render(self, style: str) -> str:
        """Text of the cell in `style` ("csv", "md" or "tex"; LaTeX escaping comes later)."""
        value = self.value
        if isinstance(value, str):
            text = value
        elif isinstance(value, int):
            text = str(value)
        elif isinstance(value, Stat):
            text = repr(value.mean) if style == "csv" else _round(value.mean, self.fmt)
            if style != "csv" and value.sd is not None:
                text += f" ± {_round(value.sd, self.fmt.lstrip('+'))}"
        elif style == "csv":
            text = repr(float(value))  # shortest text that reads back as the same float
        else:
            text = _round(float(value), self.fmt)
        return text + self.mark + (DIVERGED_MARK[style] if self.diverged else "")

    @property
    def sd(self) -> float | None:
        return self.value.sd if isinstance(self.value, Stat) else None


def _round(value: float, fmt: str) -> str:
    if not math.isfinite(value):
        return str(value)  # nan, inf, -inf
    if abs(value) >= 1e4:  # a blown-up error: its magnitude is what matters
        return f"{value:.2e}"
    return format(value, fmt)


@dataclass
class Table:
    name: str
    title: str
    columns: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # footnotes of the Markdown and LaTeX versions

    def frame(self, style: str) -> pd.DataFrame:
        """The table as text in one style: what the files hold. In CSV a column with a spread over
        seeds is followed by "<column> sd"."""
        frame = pd.DataFrame([[cell.render(style) for cell in row] for row in self.rows], columns=self.columns)
        if style != "csv":
            return frame
        for i in reversed(range(len(self.columns))):
            spreads = [row[i].sd for row in self.rows]
            if any(sd is not None for sd in spreads):
                frame.insert(i + 1, f"{self.columns[i]} sd", ["" if sd is None else repr(sd) for sd in spreads])
        return frame

    def write(self, out_dir: str | os.PathLike) -> list[Path]:
        numeric = [any(not isinstance(row[i].value, str) for row in self.rows) for i in range(len(self.columns))]
        align = ["right" if n else "left" for n in numeric]
        body = self.frame("md").to_markdown(index=False, colalign=align, disable_numparse=True)  # keep our rounding
        tex = self.frame("tex").map(_latex)
        tex.columns = [_latex(c) for c in self.columns]
        latex = tex.to_latex(
            index=False,
            escape=False,
            column_format="".join("r" if n else "l" for n in numeric),
            caption=_latex(self.title),
            label=f"tab:irno-{self.name.replace('_', '-')}",
            position="htbp",
        )
        notes = "".join(f"\\par{{\\footnotesize {_latex(note)}}}\n" for note in self.notes)
        return write_table(
            Path(out_dir) / self.name,
            self.frame("csv"),
            markdown=f"**{self.title}**\n\n{body}\n" + "".join(f"\n{note}\n" for note in self.notes),
            latex=latex.replace("\\end{tabular}\n", "\\end{tabular}\n" + notes),
        )


_TEX = {
    **{c: "\\" + c for c in "&%$#_{}"},
    "\\": r"\textbackslash{}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "<": r"$<$", ">": r"$>$", "†": r"$^{\dagger}$", "Δ": r"$\Delta$", "α": r"$\alpha$",
    "λ": r"$\lambda$", "Φ": r"$\Phi$", "κ": r"$\kappa$", "×": r"$\times$", "≤": r"$\leq$", "→": r"$\to$",
    "·": r"$\cdot$", "−": r"$-$", "–": "--", "—": "---", "≥": r"$\geq$", "±": r"$\pm$",
}  # fmt: skip


def _latex(text: str) -> str:
    return "".join(_TEX.get(c, c) for c in text)


# ----------------------------------------------------------------------------- cells from runs


def _number(run: SeededRun, value: Stat | float, fmt: str, step: int | None = None) -> Cell:
    """A number of `run` (a Stat over its seeds), marked diverged when `step` is one the evaluation flagged."""
    if isinstance(value, Stat) and value.n == 1:
        value = value.mean  # one seed: the number itself, as evaluated
    return Cell(value, fmt, diverged=step is not None and run.step_diverged(step))


def _seed_note(plan: ReportPlan) -> list[str]:
    if not plan.seeds:
        return []
    seeds = ", ".join(map(str, plan.seeds))
    return [f"mean ± standard deviation over the seeds {seeds} (CSV: the sd in a column of its own)."]


def _text(value: str) -> Cell:
    return Cell(value)


def _published(plan: ReportPlan, dataset: str, value: float | None, fmt: str) -> Cell:
    if dataset in plan.simulated:
        return _text(SIMULATED)
    return _text(NOT_REPORTED) if value is None else Cell(value, fmt)


def _difference(ours: Cell, published: Cell, fmt: str) -> Cell:
    """ours - published (the mean over seeds), or the reason it cannot be computed (the operand's own text)."""
    if isinstance(ours.value, str):
        return ours
    if isinstance(published.value, str):
        return published
    mean = ours.value.mean if isinstance(ours.value, Stat) else float(ours.value)
    return Cell(mean - float(published.value), fmt, ours.diverged)


# ----------------------------------------------------------------------------- tables


def main_table(plan: ReportPlan, runs: dict[tuple, SeededRun], reported: Reported) -> Table:
    """Single pass vs IRNO at K per dataset x base, in both conventions, published numbers beside."""
    table = Table(
        "main",
        f"Single-pass base vs IRNO at the training horizon K: VRMSE on the test split ({plan.main_experiment})",
        ["dataset", "base", "forward", "K", "convention", "single pass", "IRNO @ K", "gain %",
         "reported single pass", "reported IRNO", "reported gain %",
         "Δ single pass", "Δ IRNO", "Δ gain (pp)", "reported source", "status"],
    )  # fmt: skip
    conventions = {  # convention -> (metrics keys of ours, published numbers)
        "The Well": (("vrmse_base", "vrmse_refined", "gain_pct"), _well_published),
        "pooled (reference)": (
            ("vrmse_pooled_cf_base", "vrmse_pooled_cf_refined", "gain_pct_pooled_cf"),
            _readme_published,
        ),
    }
    sources, bases = set(), {}
    for dataset in plan.datasets:
        for base in plan.bases:
            run = runs[(dataset, base, plan.main_experiment)]
            model = plan.reported_names.get(base, base)
            if not run.missing and run.metrics.get("base_pretrained"):
                bases[(dataset, base)] = run.metrics
            for convention, (keys, published_of) in conventions.items():
                values, source = published_of(reported, dataset, model)
                formats = (VRMSE, VRMSE, PERCENT)
                theirs = [_published(plan, dataset, v, f) for v, f in zip(values, formats, strict=True)]
                if run.missing:
                    ours = [_text(MISSING)] * 3
                else:
                    single = _number(run, run.stat(keys[0]), VRMSE)
                    refined = [_number(run, run.stat(k), f, run.K) for k, f in zip(keys[1:], formats[1:], strict=True)]
                    ours = [single, *refined]
                shown_source = None if dataset in plan.simulated else source
                sources.add(shown_source)
                deltas = [_difference(o, t, f) for o, t, f in zip(ours, theirs, (DELTA, DELTA, "+.2f"), strict=True)]
                head = [_text(dataset), _text(base)]
                if run.missing:
                    head += [_text(MISSING), _text(MISSING)]
                else:
                    head += [_text(run.metrics.get("base_forward") or "not recorded"), Cell(run.K)]
                table.rows.append(
                    [*head, _text(convention), *ours, *theirs, *deltas,
                     _text(theirs[0].value if shown_source is None else shown_source), _text(run.status)]
                )  # fmt: skip
    table.notes = [
        "Δ = ours − reported, in the same convention. The Well: VRMSE per field on channel-last tensors; "
        "pooled (reference): the IRNO reference implementation's channel-first pooled VRMSE, the paper's convention "
        "(docs/method.md#vrmse-two-conventions).",
        "forward: the FNO/TFNO forward the base ran in (legacy: lifting → projection, as the published checkpoints "
        "were trained; fixed: the_well 1.2.0), as the base check decided (base_check.json).",
        *_seed_note(plan),
        *(
            f"{key}: {reported.source_title(key)} ({reported.sources[key].get('where', '')})."
            for key in sorted(sources - {None})
        ),
        *(
            f"base {base} on {dataset}: {m['base_pretrained']} at Hub revision "
            f"{m.get('base_revision') or 'not recorded'}."
            for (dataset, base), m in bases.items()
        ),
        DIVERGED_NOTE,
        MISSING_NOTE,
    ]
    return table


def _well_published(reported: Reported, dataset: str, model: str) -> tuple[tuple, str | None]:
    value = reported.well_vrmse(dataset, model, "test")
    entry = reported.well_entry(dataset, "test")
    return (value, None, None), (entry["source"] if value is not None else None)


def _readme_published(reported: Reported, dataset: str, model: str) -> tuple[tuple, str | None]:
    entry = reported.main_entry(dataset, model)
    if entry is None:
        return (None, None, None), None
    return (entry["single_pass"], entry["irno"], entry["gain_pct"]), entry["source"]


def ablation_table(plan: ReportPlan, runs: dict[tuple, SeededRun], reported: Reported) -> Table:
    """Every variant per dataset x base, grouped, with the error at K and at the last step, and its
    difference from the full method at K (marked where it is within the seeds' spread)."""
    present = [run for run in runs.values() if not run.missing]
    extras = {int(run.metrics["extra_steps"]) for run in present}
    final = f"K+{extras.pop()}" if len(extras) == 1 else "K+extra"
    table = Table(
        "ablations",
        "Ablations: VRMSE (The Well) at the training horizon K and beyond it, per variant",
        ["dataset", "base", "group", "variant", "K", "α", "VRMSE @ K", f"VRMSE @ {final}", "gain %",
         f"Δ VRMSE @ K vs {plan.main_experiment}", "pooled VRMSE @ K", "reported pooled @ K", "status"],
    )  # fmt: skip
    main = plan.experiment(plan.main_experiment)
    groups = list(dict.fromkeys([main.group] + [e.group for e in plan.experiments]))
    for dataset in plan.datasets:
        for base in plan.bases:
            model = plan.reported_names.get(base, base)
            reference = runs[(dataset, base, main.name)]
            for group in groups:
                members = [main] if group == main.group else []
                members += [e for e in plan.experiments if e.group == group and e is not main]
                for experiment in members:
                    run = runs[(dataset, base, experiment.name)]
                    entry = reported.ablation_entry(dataset, model, experiment.name)
                    published = _published(plan, dataset, None if entry is None else entry["vrmse_pooled_cf"], VRMSE)
                    head = [_text(dataset), _text(base), _text(group), _text(_variant_label(run, experiment.label))]
                    if run.missing:
                        table.rows.append([*head, *[_text(MISSING)] * 7, published, _text(run.status)])
                        continue
                    table.rows.append(
                        [*head, Cell(run.K), Cell(float(run.metrics["alpha"]), ".2g"),
                         _number(run, run.stat("vrmse_refined"), VRMSE, run.K),
                         _number(run, run.stat("vrmse_final"), VRMSE, run.final_step),
                         _number(run, run.stat("gain_pct"), PERCENT, run.K),
                         _versus(run, reference), _number(run, run.stat("vrmse_pooled_cf_refined"), VRMSE, run.K),
                         published, _text(run.status)]
                    )  # fmt: skip
    sources = {e["source"] for e in reported.ablations}
    table.notes = [
        f"gain % = single pass → K (The Well). {final}: the last evaluated step, beyond the training horizon; "
        "status names the first diverged step.",
        f"Δ VRMSE @ K vs {plan.main_experiment}: this variant's mean minus the full method's (negative: lower error).",
        NOT_SIGNIFICANT_NOTE,
        *_seed_note(plan),
        *(f"reported pooled: {reported.source_title(key)}." for key in sorted(sources)),
        DIVERGED_NOTE,
        MISSING_NOTE,
    ]
    return table


def _versus(run: SeededRun, reference: SeededRun) -> Cell:
    """run's VRMSE at its K minus the reference's, marked (ns) when within the seeds' spread."""
    if run.experiment == reference.experiment:
        return _text("—")
    if reference.missing:
        return _text(MISSING)
    test = compare(run.stat("vrmse_refined"), reference.stat("vrmse_refined"))
    return Cell(test.difference, DELTA, mark="" if test.significant else NOT_SIGNIFICANT)


def _variant_label(run: SeededRun, label: str) -> str:
    if not run.missing and run.metrics["trained_on_base"] != run.base:
        return f"{label} (Φ trained on {run.metrics['trained_on_base']})"
    return label


def band_table(plan: ReportPlan, runs: dict[tuple, SeededRun], reported: Reported) -> Table:
    """Band error over the base's band error, per step, for each band experiment side by side."""
    labels = [plan.experiment(name).label for name in plan.band_experiments]
    table = Table(
        "bands",
        "Low / mid / high-frequency band error at step k, in % of the base's (step 0)",
        ["dataset", "base", "step", *(f"{label}: {band} %" for label in labels for band in BANDS)],
    )
    for dataset in plan.datasets:
        for base in plan.bases:
            band_runs = [runs[(dataset, base, name)] for name in plan.band_experiments]
            steps = sorted({s for run in band_runs if not run.missing for s in range(run.final_step + 1)})
            for step in steps or [None]:
                row = [_text(dataset), _text(base), _text(MISSING) if step is None else Cell(step)]
                for run in band_runs:
                    if run.missing:
                        row += [_text(MISSING)] * len(BANDS)
                    elif step > run.final_step:
                        row += [_text("not evaluated")] * len(BANDS)
                    else:
                        row += [
                            _number(run, _percent(run.step_stat(step, f"band_ratio_{b}")), BAND_PERCENT, step)
                            for b in BANDS
                        ]
                table.rows.append(row)
    table.notes = [
        "Band errors: The Well's binned_spectral_mse (3 log-spaced bins of |κ|), averaged over samples and fields; "
        "100 % at step 0 by construction. Steps beyond K lie outside the training horizon.",
        *_seed_note(plan),
        *(
            f"Published for {entry['dataset']} ({reported.source_title(entry['source'])}): "
            + ", ".join(f"{band} {entry[band][0]}–{entry[band][1]} %" for band in BANDS)
            + "."
            for entry in reported.band_ratios
            if entry["dataset"] in plan.datasets and entry["dataset"] not in plan.simulated
        ),
        DIVERGED_NOTE,
        MISSING_NOTE,
    ]
    return table


def _percent(stat: Stat) -> Stat:
    return Stat.of(100 * v for v in stat.values)


def per_field_table(plan: ReportPlan, runs: dict[tuple, SeededRun]) -> Table:
    """VRMSE (The Well) per field, base alone vs refined at K, for the main experiment."""
    table = Table(
        "per_field",
        f"VRMSE per field (The Well), single-pass base vs refined at K ({plan.main_experiment})",
        ["dataset", "base", "field", "single pass", "refined @ K", "gain %", "status"],
    )
    for dataset in plan.datasets:
        for base in plan.bases:
            run = runs[(dataset, base, plan.main_experiment)]
            if run.missing:
                table.rows.append([_text(dataset), _text(base), *[_text(MISSING)] * 4, _text(run.status)])
                continue
            for name in run.metrics["field_names"]:
                single = run.step_stat(0, f"vrmse_{name}")
                refined = run.step_stat(run.K, f"vrmse_{name}")
                gain = Stat.of(100 * (s - r) / s for s, r in zip(single.values, refined.values, strict=True))
                table.rows.append(
                    [_text(dataset), _text(base), _text(name), _number(run, single, VRMSE),
                     _number(run, refined, VRMSE, run.K), _number(run, gain, PERCENT, run.K), _text(run.status)]
                )  # fmt: skip
    table.notes = [
        "gain % = 100 × (single pass − refined) / single pass.",
        *_seed_note(plan),
        DIVERGED_NOTE,
        MISSING_NOTE,
    ]
    return table


def claims_table(verdicts: list[Verdict], reported: Reported) -> Table:
    """One row per claim x dataset x base (x run): the paper's number, ours, the test and the verdict."""
    table = Table(
        "claims",
        "The paper's claims, tested on this study's outputs",
        ["claim", "dataset", "base", "paper", "source", "ours", "test", "verdict"],
    )
    for v in verdicts:
        table.rows.append(
            [_text(v.claim.claim), _text(v.dataset), _text(v.base), _text(v.claim.paper), _text(v.claim.source),
             _text(v.ours), _text(v.test), _text(v.verdict)]
        )  # fmt: skip
    table.notes = [
        "holds: on the claimed side, significantly; does not hold: on the other side, significantly; not "
        f"significant: within the seeds' spread, or one seed only (t-tests, p < {SIGNIFICANCE}); not run: the study "
        "lacks the runs the test needs. Claims, thresholds and tests: the claims file (irno.report.claims).",
        *(f"{key}: {reported.source_title(key)}." for key in dict.fromkeys(v.claim.source for v in verdicts)),
        *(f"{v.claim.id}: {v.claim.note}" for v in {v.claim.id: v for v in verdicts if v.claim.note}.values()),
    ]
    return table


def write_tables(
    plan: ReportPlan,
    eval_root: str | os.PathLike,
    reported_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    claims_path: str | os.PathLike,
) -> list[Path]:
    """Write tables/{main,ablations,bands,per_field,claims}.{csv,md,tex} from the evaluation outputs."""
    runs = load_runs(plan, eval_root)
    reported = load_reported(reported_path)
    claims = load_claims(claims_path, reported)
    for run in runs.values():
        if run.missing:
            log.warning("missing run, shown as such: %s", run.missing_reason)
    tables = [
        main_table(plan, runs, reported),
        ablation_table(plan, runs, reported),
        band_table(plan, runs, reported),
        per_field_table(plan, runs),
        claims_table(evaluate_claims(claims, plan, runs), reported),
    ]
    return [path for table in tables for path in table.write(out_dir)]
