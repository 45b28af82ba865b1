"""The claims table: each claim of the paper that the study's outputs can test, with a verdict.

The claims live in a data file (``config/claims.yaml``): per claim, its text, the paper's number
with its source and a test of one of the kinds in `TESTS` (at_least, at_most, below, order, steps,
monotone, diverges, converges). Each test reads the evaluated runs of one dataset x base (means
over seeds, and their spread) and gives one row per dataset x base with a verdict: ``holds``,
``does not hold``, ``not significant`` (within the seeds' spread, or one seed only:
irno.report.stats, t-tests at the 5 % level) or ``not run``.

Detail (every test kind, the derived quantities): docs/outputs.md#claims-configclaimsyaml-tablesclaims
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from irno import IrnoError
from irno.config import ReportPlan
from irno.files import read_yaml
from irno.report.results import Reported, SeededRun
from irno.report.stats import Stat, Test, against, compare

VERDICTS = ("holds", "does not hold", "not significant", "not run")
TESTS = ("at_least", "at_most", "below", "order", "steps", "monotone", "diverges", "converges")
DERIVED: dict[str, Callable[[dict], float]] = {
    "drift_beyond_K": lambda m: float(m["vrmse_final"]) - float(m["vrmse_refined"]),
    "excess_over_base": lambda m: float(m["vrmse_final"]) - float(m["vrmse_base"]),
}
MAIN = "main"  # an experiment name in a claim's test: the plan's main experiment


@dataclass
class Claim:
    """One claim of the paper (config/claims.yaml)."""

    id: str
    claim: str  # what the paper says
    paper: str  # the paper's number(s), as text
    source: str  # a key of reported.yaml's sources
    test: dict  # kind and parameters (docs/outputs.md#claims)
    note: str = ""


@dataclass
class Verdict:
    """One row of the claims table."""

    claim: Claim
    dataset: str
    base: str
    ours: str  # our number(s), as text
    test: str  # what was compared, and the test's statistic
    verdict: str
    details: dict = field(default_factory=dict)


def load_claims(path: str | os.PathLike, reported: Reported) -> list[Claim]:
    """Read config/claims.yaml; an unknown test kind, key or source is an IrnoError naming the claim."""
    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("claims"), list):
        raise IrnoError(f"{path}: expected a mapping with a 'claims' list")
    claims, seen = [], set()
    for i, entry in enumerate(data["claims"]):
        where = f"{path}: claims[{i}]"
        if not isinstance(entry, dict):
            raise IrnoError(f"{where}: expected a mapping")
        absent = [k for k in ("id", "claim", "paper", "source", "test") if k not in entry]
        if absent:
            raise IrnoError(f"{where}: missing key(s) {', '.join(absent)}")
        unknown = sorted(set(entry) - {"id", "claim", "paper", "source", "test", "note"})
        if unknown:
            raise IrnoError(f"{where} ({entry['id']}): unknown key '{unknown[0]}'")
        if entry["id"] in seen:
            raise IrnoError(f"{where}: id '{entry['id']}' is used twice")
        seen.add(entry["id"])
        if entry["source"] not in reported.sources:
            raise IrnoError(
                f"{where} ({entry['id']}): source '{entry['source']}' is not one of the sources of {reported.path} "
                f"({', '.join(reported.sources)})"
            )
        test = entry["test"]
        if not isinstance(test, dict) or test.get("kind") not in TESTS:
            raise IrnoError(f"{where} ({entry['id']}): test.kind must be one of {', '.join(TESTS)}, got {test!r}")
        _check_test(test, f"{where} ({entry['id']})")
        claims.append(
            Claim(**{k: entry[k] for k in ("id", "claim", "paper", "source", "test")}, note=entry.get("note", ""))
        )
    return claims


_TEST_KEYS = {  # kind -> (required keys, optional keys)
    "at_least": ({"metric", "threshold"}, {"experiment", "scale"}),
    "at_most": ({"metric", "threshold"}, {"experiment", "scale"}),
    "below": ({"metric", "reference"}, {"experiment", "scale"}),
    "order": ({"metrics"}, {"experiment", "scale"}),
    "steps": ({"metric"}, {"experiment"}),
    "monotone": ({"metric", "sweep"}, {"scale"}),
    "diverges": ({"alpha"}, set()),
    "converges": ({"alpha"}, set()),
}


def _check_test(test: dict, where: str) -> None:
    required, optional = _TEST_KEYS[test["kind"]]
    keys = set(test) - {"kind"}
    if required - keys:
        raise IrnoError(f"{where}: test kind '{test['kind']}' needs {', '.join(sorted(required - keys))}")
    if keys - required - optional:
        raise IrnoError(f"{where}: test kind '{test['kind']}' takes no '{sorted(keys - required - optional)[0]}'")


# ----------------------------------------------------------------------------- evaluation


def _values(run: SeededRun, metric: str, scale: float = 1.0) -> Stat:
    compute = DERIVED.get(metric, lambda m: float(m[metric]))
    return Stat.of(scale * compute(r.metrics) for r in run.present)


def _fmt(stat: Stat) -> str:
    if not all(math.isfinite(v) for v in stat.values):
        return "not finite" + (f" (n = {stat.n})" if stat.n > 1 else "")
    text = f"{stat.mean:.4g}"
    return text + (f" ± {stat.sd:.2g} (n = {stat.n})" if stat.sd is not None else " (n = 1)")


def _p(test: Test) -> str:
    return f"{test.kind}, p = {test.p_value:.2g}" if test.p_value is not None else test.kind


def _direction(test: Test, wanted_positive: bool) -> str:
    """holds / does not hold / not significant for a difference whose claimed sign is `wanted_positive`."""
    if not test.significant:
        return "not significant"
    return "holds" if (test.difference > 0) == wanted_positive else "does not hold"


def _experiment(plan: ReportPlan, test: dict, key: str = "experiment") -> str:
    name = test.get(key, MAIN)
    return plan.main_experiment if name == MAIN else name


def _run_of(plan: ReportPlan, runs: dict, dataset: str, base: str, name: str) -> SeededRun | None:
    run = runs.get((dataset, base, name))
    return None if run is None or run.missing else run


def evaluate_claim(
    claim: Claim, plan: ReportPlan, runs: dict[tuple, SeededRun], dataset: str, base: str
) -> list[Verdict]:
    """The verdict rows of one claim on one dataset x base."""
    t, kind = claim.test, claim.test["kind"]
    scale = float(t.get("scale", 1.0))

    def row(ours: str, test: str, verdict: str, **details) -> Verdict:
        return Verdict(claim, dataset, base, ours, test, verdict, details)

    def not_run(what: str) -> list[Verdict]:
        return [row("—", what, "not run")]

    if kind in ("at_least", "at_most"):
        name = _experiment(plan, t)
        run = _run_of(plan, runs, dataset, base, name)
        if run is None:
            return not_run(f"needs the experiment {name}")
        stat = _values(run, t["metric"], scale)
        test = against(stat, float(t["threshold"]))
        sign = "≥" if kind == "at_least" else "≤"
        scaled = f" × {scale:g}" if scale != 1 else ""
        what = f"{t['metric']}{scaled} of {name} {sign} {t['threshold']:g} ({_p(test)})"
        return [row(_fmt(stat), what, _direction(test, kind == "at_least"), p=test.p_value)]

    if kind == "below":
        name, ref = _experiment(plan, t), _experiment(plan, t, "reference")
        run, other = _run_of(plan, runs, dataset, base, name), _run_of(plan, runs, dataset, base, ref)
        if run is None or other is None:
            return not_run(f"needs the experiments {name} and {ref}")
        a, b = _values(run, t["metric"], scale), _values(other, t["metric"], scale)
        test = compare(a, b)
        what = f"{t['metric']} of {name} < of {ref} ({_p(test)})"
        return [row(f"{name} {_fmt(a)}; {ref} {_fmt(b)}", what, _direction(test, False), p=test.p_value)]

    if kind == "order":
        name = _experiment(plan, t)
        run = _run_of(plan, runs, dataset, base, name)
        if run is None:
            return not_run(f"needs the experiment {name}")
        stats = [_values(run, m, scale) for m in t["metrics"]]
        tests = [compare(a, b) for a, b in zip(stats, stats[1:])]  # each should be > 0
        verdict = _chain(tests)
        what = " > ".join(t["metrics"]) + f" of {name} (" + "; ".join(_p(x) for x in tests) + ")"
        ours = "; ".join(f"{m} {_fmt(s)}" for m, s in zip(t["metrics"], stats, strict=True))
        return [row(ours, what, verdict)]

    if kind == "steps":
        name = _experiment(plan, t)
        run = _run_of(plan, runs, dataset, base, name)
        if run is None:
            return not_run(f"needs the experiment {name}")
        stats = [run.step_stat(k, t["metric"]) for k in range(run.K + 1)]
        tests = [compare(a, b) for a, b in zip(stats, stats[1:])]  # step k minus step k+1: each > 0
        end_to_end = compare(stats[0], stats[-1])
        verdict = _chain(tests, end_to_end)
        values = ", ".join(f"{s.mean:.4g}" for s in stats)
        rising = [k + 1 for k, x in enumerate(tests) if x.difference <= 0]
        what = f"{t['metric']} of {name} at k = 0 .. {run.K} decreasing (k = 0 vs K: {_p(end_to_end)})"
        if rising:
            what += f"; rises at k = {', '.join(map(str, rising))}"
        return [row(values, what, verdict, p=end_to_end.p_value)]

    if kind == "monotone":
        members = [n for n in plan.sweep(t["sweep"])] if t["sweep"] in plan.sweeps else []
        present = [r for r in (_run_of(plan, runs, dataset, base, n) for n in members) if r is not None]
        if len(present) < 2:
            return not_run(f"needs at least two runs of the {t['sweep']} sweep")
        present.sort(key=lambda r: float(r.metrics[t["sweep"]]))
        stats = [_values(r, t["metric"], scale) for r in present]
        tests = [compare(a, b) for a, b in zip(stats, stats[1:])]  # smaller swept value first: each > 0
        end_to_end = compare(stats[0], stats[-1])
        verdict = _chain(tests, end_to_end)
        values = ", ".join(
            f"{t['sweep']}={float(r.metrics[t['sweep']]):g}: {s.mean:.4g}" for r, s in zip(present, stats)
        )
        what = f"{t['metric']} decreasing in {t['sweep']} (end to end: {_p(end_to_end)})"
        return [row(values, what, verdict, p=end_to_end.p_value)]

    # diverges / converges: one row per run of the alpha sweep on the claimed side
    members = plan.sweep("alpha") if "alpha" in plan.sweeps else [plan.main_experiment]
    chosen = []
    for n in members:
        run = _run_of(plan, runs, dataset, base, n)
        if run is None:
            continue
        alpha = float(run.metrics["alpha"])
        if (kind == "diverges" and alpha >= float(t["alpha"])) or (kind == "converges" and alpha <= float(t["alpha"])):
            chosen.append(run)
    if not chosen:
        sign = "≥" if kind == "diverges" else "≤"
        return not_run(f"needs runs with alpha {sign} {t['alpha']:g}")
    rows = []
    for run in chosen:
        excess = _values(run, "excess_over_base")
        flagged = all(r.diverged for r in run.present)
        test = against(excess, 0.0)
        if kind == "diverges" and flagged:
            verdict, how = "holds", "flagged diverged in every seed"
        elif not all(math.isfinite(v) for v in excess.values):
            verdict = "holds" if kind == "diverges" else "does not hold"
            how = "non-finite error beyond K"
        else:
            verdict, how = _direction(test, kind == "diverges"), _p(test)
        what = (
            f"{run.experiment} (α = {float(run.metrics['alpha']):g}): VRMSE at K+{int(run.metrics['extra_steps'])} "
            f"{'>' if kind == 'diverges' else '<'} the base's ({how})"
        )
        rows.append(row(f"excess over the base {_fmt(excess)}", what, verdict, p=test.p_value))
    return rows


def _chain(tests: list[Test], end_to_end: Test | None = None) -> str:
    """A chain of differences that should all be positive: holds if every step is in the claimed
    direction and the whole chain (or every step, without `end_to_end`) is significant."""
    if any(x.significant and x.difference < 0 for x in tests):
        return "does not hold"
    if all(x.difference > 0 for x in tests):
        decisive = [end_to_end] if end_to_end is not None else tests
        if all(x.significant for x in decisive):
            return "holds"
    return "not significant"


def evaluate_claims(claims: list[Claim], plan: ReportPlan, runs: dict[tuple, SeededRun]) -> list[Verdict]:
    """Every claim on every dataset x base of the plan, in claim order."""
    return [
        verdict
        for claim in claims
        for dataset in plan.datasets
        for base in plan.bases
        for verdict in evaluate_claim(claim, plan, runs, dataset, base)
    ]
