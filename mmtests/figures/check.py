"""A figure and how it is judged: one type for every check the suites make, built from the metric table.

A `Check` knows its metric's direction (from `METRICS`), its bound kind (min, max, against a baseline, or
none: measured only) and, where it has them, a standard error and a confidence interval. Suites build
checks from evaluation results; the plugin judges, records and reports them all the same way. The one
text rendering of a bound lives here too (`bound_text`), for failure messages, the summary and the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .metrics import metric

PASS, FAIL, MEASURED, SKIP = "pass", "fail", "measured", "skip"
CRASHED = "crashed"  # an exception in the check: no figure was measured (`mmtests.crashes`)
SYMBOLS = {"min": ("≥", ">=", "<"), "max": ("≤", "<=", ">")}  # report symbol, verdict text when passed / failed


def bound_text(kind: str, bound: float | None, *, digits: str = "g", words: bool = False,
               baseline: float | None = None) -> str:
    """A bound as text: "≥ 0.8" (or "min 0.8" with `words`), "≤ 0.1", "vs baseline 0.91"; "" when there is none."""
    if kind in SYMBOLS and bound is not None:
        return f"{kind if words else SYMBOLS[kind][0]} {bound:{digits}}"
    if kind == "baseline":
        if words:
            if baseline is None:
                return ""
            return f"baseline {baseline:.4g}" + ("" if bound is None else f", tolerance {bound:g}")
        return "vs baseline" + ("" if baseline is None else f" {baseline:.4g}")
    return ""


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
        if self.kind in SYMBOLS and self.ok is not None:  # judged on something besides its bound
            text = f"{self.metric} {value} ({bound_text(self.kind, self.bound, words=True)})"
        elif self.kind in SYMBOLS:
            passed, failed = SYMBOLS[self.kind][1:]
            text = f"{self.metric} {value} {passed if self.outcome == PASS else failed} {self.bound:g}"
        elif self.kind == "baseline":
            base = "" if self.baseline is None else f" (baseline {self.baseline:.4g})"
            text = f"{self.metric} {value}{base}"
        else:
            text = f"{self.metric} {value} (measured)"
        return f"{text}: {self.explain}" if self.explain else text

    def bound_text(self) -> str:
        return bound_text(self.kind, self.bound, baseline=self.baseline).replace("≥", ">=").replace("≤", "<=")

    def record_fields(self) -> dict:
        return {"metric": self.metric, "value": self.value, "bound_kind": self.kind, "bound": self.bound,
                "higher_is_better": self.higher_is_better, "baseline_value": self.baseline, "stderr": self.stderr,
                "ci": list(self.ci) if self.ci else None, "outcome": self.outcome, "explain": self.explain or None,
                **self.fields}


def judged(name: str, value: float | None, bound: float | None, *, trivial: float | None = None, **kw) -> Check:
    """A figure against its bound from the matrix: a floor when the metric is higher-is-better, else a ceiling;
    measured when the matrix sets none. `trivial`: what the metric's trivial strategy scores here; a floor
    that does not beat it fails, whatever the figure (a gate that a blind model passes catches nothing)."""
    spec = metric(name)
    check = Check(name, value, "measured" if bound is None else spec.bound_kind, bound, spec.higher_is_better, **kw)
    if bound is not None and trivial is not None and spec.higher_is_better and bound <= trivial:
        check.ok = False
        check.explain = (f"the floor {spec.matrix_key} {bound:g} does not beat {spec.trivial} ({trivial:.3f} here): "
                         "raise it above that, or gate against a baseline")
    return check


def measured(name: str, value: float | None, **kw) -> Check:
    """A figure recorded without a bound (its direction still from the table, for history and the report)."""
    return Check(name, value, "measured", None, metric(name).higher_is_better, **kw)


def baseline_check(name: str, value: float | None, tolerance: float, baseline: float | None, ok: bool,
                   **kw) -> Check:
    """A figure judged against the model's known-good self (the gate decides `ok`)."""
    return Check(name, value, "baseline", tolerance, metric(name).higher_is_better, baseline, ok=ok, **kw)
