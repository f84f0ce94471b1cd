"""Two runs' records, or two models of one run, side by side.

Per figure both share: both values and the difference (second minus first). Per set of samples both scored
(`records-samples.jsonl`, the same samples by their ground-truth digest): the paired difference in accuracy and
its two-sided exact McNemar p-value, from the samples one got right and the other wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from ..figures.paired import binomial_tail, paired_drop
from ..figures.record_reader import Run


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a run, and the model whose figures it gives (None: every model)."""

    run: Run
    model: str | None = None

    @property
    def label(self) -> str:
        return f"{self.model} ({self.run.run_id})" if self.model else self.run.run_id


def _key(record: dict, model: str | None) -> tuple | None:
    """What a figure is about, the model left out when one model of the run is compared with another."""
    if model is None:
        return record.get("suite"), record.get("test_id"), record.get("metric")
    if record.get("model") != model:
        return None
    return record.get("suite"), str(record.get("test_id", "")).removeprefix(f"{model}/"), record.get("metric")


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def figures(side: Side) -> dict[tuple, float]:
    out = {}
    for f in side.run.figures:
        key = _key(f, side.model)
        if key is not None and _number(f.get("value")):
            out[key] = float(f["value"])
    return out


def samples(side: Side) -> dict[tuple, dict]:
    """(model or '', key) -> the `samples` object of the run's per-sample outcomes."""
    out = {}
    for path in side.run.samples:
        for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # the report names unreadable lines; here a missing pair is just not compared
            if not isinstance(row, dict) or row.get("run_id") != side.run.run_id or not isinstance(row.get("samples"), dict):
                continue
            if side.model is not None and row.get("model") != side.model:
                continue
            out[("" if side.model else row.get("model"), row.get("key"))] = row["samples"]
    return out


def two_sided_mcnemar(lost: int, gained: int) -> float:
    """Exact McNemar: twice the tail of the larger count of discordant pairs, at most 1."""
    return min(1.0, 2 * binomial_tail(max(lost, gained), lost + gained))


def figure_rows(one: Side, two: Side) -> list[list]:
    a, b = figures(one), figures(two)
    return [[f"{test_id} {metric}", a[k], b[k], b[k] - a[k]]
            for k in sorted(a.keys() & b.keys(), key=str) for _, test_id, metric in [k]]


def sample_rows(one: Side, two: Side) -> tuple[list[list], list[str]]:
    """Paired rows, and notes on sets of samples that cannot be paired (other samples, other counts)."""
    a, b = samples(one), samples(two)
    rows, notes = [], []
    for k in sorted(a.keys() & b.keys(), key=str):
        x, y = a[k], b[k]
        name = "/".join(p for p in k if p)
        if x.get("digest") != y.get("digest") or len(x.get("correct", [])) != len(y.get("correct", [])):
            notes.append(f"{name}: not the same samples (ground-truth digests differ); not paired")
            continue
        d = paired_drop([bool(c) for c in x["correct"]], [bool(c) for c in y["correct"]])
        rows.append([name, d.n, d.baseline, d.candidate, -d.drop, len(d.gained), len(d.lost),
                     two_sided_mcnemar(len(d.lost), len(d.gained))])
    return rows, notes


def comparison(one: Side, two: Side) -> tuple[str, bool]:
    """The text of the comparison, and whether the two sides shared anything at all."""
    fig = figure_rows(one, two)
    paired, notes = sample_rows(one, two)
    lines = [f"first: {one.label}", f"second: {two.label}", ""]
    if fig:
        lines += ["figures both have (difference: second - first):",
                  tabulate(fig, headers=["figure", "first", "second", "difference"], floatfmt=".4g"), ""]
    if paired:
        lines += ["per-sample outcomes, paired (difference in accuracy: second - first; p: two-sided exact McNemar):",
                  tabulate(paired, headers=["samples", "n", "first", "second", "difference", "second only right",
                                            "first only right", "p"], floatfmt=".4g"), ""]
    lines += notes
    if not (fig or paired):
        lines.append("nothing to compare: the two sides share no figure and no set of samples")
    return "\n".join(lines).rstrip() + "\n", bool(fig or paired)
