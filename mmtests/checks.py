"""A figure and how it is judged: one type for every check the suites make.

A `Check` knows its metric's direction, its bound kind (min, max, against a baseline, or none:
measured only) and, where it has them, a standard error and a confidence interval. Suites build
checks from evaluation results; the plugin's runner judges, records and reports them all the same
way. No pytest and no model library here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

PASS, FAIL, MEASURED = "pass", "fail", "measured"


@dataclass
class Check:
    metric: str
    value: float | None
    kind: str = "measured"  # "min" | "max" | "baseline" | "measured"
    bound: float | None = None  # min / max: the bound; baseline: the tolerance the gate allows
    higher_is_better: bool = True
    baseline: float | None = None  # the known-good figure this one is compared with
    stderr: float | None = None
    ci: tuple[float, float] | None = None
    ok: bool | None = None  # baseline gates decide themselves (paired test); None for the others
    explain: str = ""  # why it failed (or what it shows), for the failure message and the report
    fields: dict = field(default_factory=dict)  # extra record fields (n, examples, per-layer curves...)

    @property
    def outcome(self) -> str:
        if self.kind == "measured" or self.value is None and self.ok is None:
            return MEASURED
        if self.ok is not None:
            return PASS if self.ok else FAIL
        if self.kind == "min":
            return PASS if self.value >= self.bound else FAIL
        if self.kind == "max":
            return PASS if self.value <= self.bound else FAIL
        raise ValueError(f"check {self.metric!r}: bound kind {self.kind!r} needs ok= set")

    def describe(self) -> str:
        """One line: value, bound and verdict, as the failure message and the summary table say it."""
        value = "n/a" if self.value is None else f"{self.value:.4g}"
        if self.kind in ("min", "max") and self.ok is not None:  # judged on something besides its bound
            text = f"{self.metric} {value} ({'min' if self.kind == 'min' else 'max'} {self.bound:g})"
        elif self.kind == "min":
            text = f"{self.metric} {value} {'>=' if self.outcome == PASS else '<'} {self.bound:g}"
        elif self.kind == "max":
            text = f"{self.metric} {value} {'<=' if self.outcome == PASS else '>'} {self.bound:g}"
        elif self.kind == "baseline":
            base = "" if self.baseline is None else f" (baseline {self.baseline:.4g})"
            text = f"{self.metric} {value}{base}"
        else:
            text = f"{self.metric} {value} (measured)"
        return f"{text}: {self.explain}" if self.explain else text

    def bound_text(self) -> str:
        if self.kind == "min":
            return f">= {self.bound:g}"
        if self.kind == "max":
            return f"<= {self.bound:g}"
        if self.kind == "baseline":
            return "vs baseline" + ("" if self.baseline is None else f" {self.baseline:.4g}")
        return ""

    def record_fields(self) -> dict:
        return {"metric": self.metric, "value": self.value, "bound_kind": self.kind, "bound": self.bound,
                "higher_is_better": self.higher_is_better, "baseline_value": self.baseline, "stderr": self.stderr,
                "ci": list(self.ci) if self.ci else None, "outcome": self.outcome, "explain": self.explain or None,
                **self.fields}


def at_least(metric: str, value: float, bound: float | None, **kw) -> Check:
    return Check(metric, value, "measured" if bound is None else "min", bound, True, **kw)


def at_most(metric: str, value: float, bound: float | None, **kw) -> Check:
    return Check(metric, value, "measured" if bound is None else "max", bound, False, **kw)


def measured(metric: str, value: float | None, higher_is_better: bool = True, **kw) -> Check:
    return Check(metric, value, "measured", None, higher_is_better, **kw)


# ----------------------------------------------------------------------------- paired statistics


def binomial_tail(k: int, n: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2): the one-sided exact McNemar p-value for k of n discordant pairs."""
    if k <= 0:
        return 1.0
    return sum(math.comb(n, i) for i in range(k, n + 1)) / 2**n


@dataclass(frozen=True)
class PairedDrop:
    """Candidate vs baseline on the same samples: how much worse, and how sure."""

    baseline: float  # baseline accuracy on these samples
    candidate: float
    drop: float  # baseline - candidate (positive: worse)
    ci: tuple[float, float]  # two-sided 95% interval of the drop
    lost: list[int]  # samples right in the baseline, wrong now
    gained: list[int]  # wrong in the baseline, right now
    p_value: float  # one-sided exact McNemar: P(at least this many losses | no real change)
    n: int

    def worse(self, max_drop: float, alpha: float) -> bool:
        """Red when worse by more than `max_drop` with confidence 1 - alpha: the drop is larger than the
        tolerance and the losses outnumber the gains beyond chance (exact McNemar)."""
        return self.drop > max_drop and self.p_value < alpha


def paired_drop(baseline_correct: list[bool], candidate_correct: list[bool]) -> PairedDrop:
    if len(baseline_correct) != len(candidate_correct):
        raise ValueError(f"{len(candidate_correct)} samples against a baseline of {len(baseline_correct)}")
    n = len(baseline_correct)
    lost = [i for i, (b, c) in enumerate(zip(baseline_correct, candidate_correct, strict=True)) if b and not c]
    gained = [i for i, (b, c) in enumerate(zip(baseline_correct, candidate_correct, strict=True)) if c and not b]
    drop = (len(lost) - len(gained)) / n if n else 0.0
    # Paired differences are -1/0/+1; their variance gives the interval (Wald, fine at these n).
    var = ((len(lost) + len(gained)) / n - drop**2) / n if n else 0.0
    half = 1.96 * math.sqrt(max(var, 0.0))
    return PairedDrop(sum(baseline_correct) / n if n else 0.0, sum(candidate_correct) / n if n else 0.0, drop,
                      (drop - half, drop + half), lost, gained, binomial_tail(len(lost), len(lost) + len(gained)), n)
