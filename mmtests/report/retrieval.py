"""The report's retrieval table: recall@1/5/10 both ways per (model, dataset), and how the run compares with the
model's known-good baseline."""

from __future__ import annotations

from ..figures.metrics import metric
from ..figures.record_reader import Run
from .markdown import MARK, _cell, _table

WAYS = ("image_to_text", "text_to_image")
KS = (1, 5, 10)


def _against_baseline(gates: list[dict]) -> str:
    """"✅ R@1 0.184 / 0.185 (6 gates)", or the gates that failed; "–" when nothing was compared."""
    if not gates:
        return "–"
    failed = [f for f in gates if f["outcome"] == "fail"]
    base = {f["metric"]: f.get("baseline_value") for f in gates}
    r1 = [base.get(f"{way}_r1_vs_baseline") for way in WAYS]
    shown = " / ".join("–" if v is None else f"{v:.3f}" for v in r1)
    if failed:
        return f"{MARK['fail']} " + ", ".join(metric(f["metric"]).shown for f in failed)
    return f"{MARK['pass']} baseline R@1 {shown} ({len(gates)} gates)"


def table(run: Run) -> str:
    figures = run.select("retrieval")
    recalls = [f for f in figures if f["metric"].endswith(("_r1", "_r5", "_r10"))]
    if not recalls:
        return "No retrieval figures in this run."
    by_key = {(f["test_id"], f["metric"]): f for f in figures}
    checks = sorted({(f["test_id"], f["model"], f["dataset"]) for f in recalls}, key=lambda c: (c[2], c[1]))
    rows = []
    for test_id, model, dataset in checks:
        gates = [f for f in figures if f["test_id"] == test_id and f.get("bound_kind") == "baseline"]
        chance = by_key.get((test_id, "image_to_text_r10"), {}).get("chance")
        rows.append([model, dataset, *(_cell(by_key.get((test_id, f"{way}_r{k}"))) for way in WAYS for k in KS),
                     "–" if chance is None else f"{chance:.3f}", _against_baseline(gates)])
    headers = ["model", "dataset", *(metric(f"{way}_r{k}").shown for way in WAYS for k in KS), "chance i→t R@10",
               "vs baseline"]
    return _table(rows, headers, formatted=True)
