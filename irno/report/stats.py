"""Numbers over seeds: mean, spread and whether a difference is larger than that spread.

A run repeated with several training seeds gives one value per seed; tables show their mean and
sample standard deviation (``0.4970 ± 0.0012``) and n. Whether two experiments differ, or a
quantity differs from a threshold, is decided by a t-test at the level `SIGNIFICANCE` (Welch's for two
groups, one-sample against a threshold): a difference that fails it is "within the spread" and
the tables mark it so. With one seed there is no spread, and nothing can be called significant.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import stats

SIGNIFICANCE = 0.05  # two-sided significance level of every test here


@dataclass(frozen=True)
class Stat:
    """A quantity over seeds: its values, mean and sample standard deviation (None for one value)."""

    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Iterable[float]) -> Stat:
        return cls(tuple(float(v) for v in values))

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def sd(self) -> float | None:
        return float(np.std(self.values, ddof=1)) if self.n > 1 else None

    def __sub__(self, other: Stat | float) -> float:
        return self.mean - (other.mean if isinstance(other, Stat) else float(other))


@dataclass(frozen=True)
class Test:
    """The outcome of comparing a quantity with a reference: the difference and its p-value."""

    difference: float  # mean of the quantity minus the reference (a threshold or another mean)
    p_value: float | None  # None: not testable (one seed, no spread, or a non-finite value)
    kind: str  # "Welch t-test", "one-sample t-test", or why there is no test

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < SIGNIFICANCE


def _finite(s: Stat) -> bool:
    return all(math.isfinite(v) for v in s.values)


def compare(a: Stat, b: Stat) -> Test:
    """a - b with Welch's t-test (unequal variances) where both have at least two finite values."""
    difference = a.mean - b.mean
    if a.n < 2 or b.n < 2:
        return Test(difference, None, "one seed: no spread")
    if not (_finite(a) and _finite(b)):
        return Test(difference, None, "non-finite values")
    if a.sd == 0 and b.sd == 0:
        return Test(difference, 0.0 if difference else 1.0, "no spread (identical seeds)")
    p = float(stats.ttest_ind(a.values, b.values, equal_var=False).pvalue)
    return Test(difference, p, "Welch t-test")


def against(a: Stat, threshold: float) -> Test:
    """a - threshold with a one-sample t-test where a has at least two finite values."""
    difference = a.mean - threshold
    if a.n < 2:
        return Test(difference, None, "one seed: no spread")
    if not _finite(a):
        return Test(difference, None, "non-finite values")
    if a.sd == 0:
        return Test(difference, 0.0 if difference else 1.0, "no spread (identical seeds)")
    p = float(stats.ttest_1samp(a.values, threshold).pvalue)
    return Test(difference, p, "one-sample t-test")
