"""Markdown sections from a run's records (tabulate, pipe format)."""

from __future__ import annotations

from collections import Counter

from tabulate import tabulate

from .records_io import Run

MARK = {"pass": "✅", "fail": "❌", "measured": "", "skip": "⏭"}


def _table(rows: list[list], headers: list[str]) -> str:
    return tabulate(rows, headers=headers, tablefmt="pipe", floatfmt=".3f", missingval="–")


def _cell(figure: dict | None) -> str:
    if figure is None:
        return "–"
    text = f"{figure['value']:.3f}"
    if figure.get("threshold") is not None:
        text += f" {MARK[figure['outcome']]} (≥ {figure['threshold']:.2f})"
    return text


def environment(run: Run) -> str:
    env = run.environment
    versions = ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items() if v)
    rows = [
        ["run", run.run_id],
        ["device", f"{env.get('device', '?')} ({env.get('device_name') or 'unknown'})"
         + (f", CUDA {env['cuda']}" if env.get("cuda") else "")],
        ["python", env.get("python", "?")],
        ["packages", versions or "?"],
        ["git", env.get("git_sha") or "not a git checkout"],
        ["matrix", env.get("config", "?")],
    ]
    return _table(rows, ["", ""])


def summary(run: Run) -> str:
    counts = Counter((f["suite"], f["outcome"]) for f in run.figures if f["outcome"] != "measured")
    suites = sorted({s for s, _ in counts})
    rows = [[s, counts[(s, "pass")], counts[(s, "fail")], counts[(s, "skip")]] for s in suites]
    failed = [f for f in run.figures if f["outcome"] == "fail"]
    text = _table(rows, ["suite", "passed", "failed", "skipped"]) if rows else "No asserted figures in this run."
    if failed:
        text += "\n\n**Failures**\n\n" + "\n".join(
            f"- `{f['test_id']}`: {f['metric']} {f['value']:.4f} < {f['threshold']}" for f in failed
        )
    return text


def zero_shot(run: Run) -> str:
    top1 = run.select("zero_shot", "top1")
    if not top1:
        return "No zero-shot figures in this run."
    prompt_sets = sorted({f["prompt_set"] for f in top1}, key=lambda p: (p != "bare", p))
    by_key = {(f["model"], f["dataset"], f["prompt_set"]): f for f in top1}
    pairs = sorted({(f["model"], f["dataset"]) for f in top1}, key=lambda p: (p[1], p[0]))
    rows = [[m, d, *(_cell(by_key.get((m, d, p))) for p in prompt_sets)] for m, d in pairs]
    return _table(rows, ["model", "dataset", *prompt_sets])


def datasets(run: Run) -> str:
    described = {f["dataset"]: f.get("dataset_description") for f in run.select("zero_shot", "top1")}
    rows = [[name, text] for name, text in sorted(described.items()) if text]
    return _table(rows, ["dataset", "what it measures"]) if rows else ""


def secondary_metrics(run: Run) -> str:
    extra = {(f["test_id"], f["metric"]): f for f in run.select("zero_shot") if f["metric"] != "top1"}
    rows = []
    for f in run.select("zero_shot", "top1"):
        recall = extra.get((f["test_id"], "mean_per_class_recall"), {})
        worst = min(recall.get("per_class", {}).items(), key=lambda kv: kv[1], default=None)
        rows.append([f["test_id"], f["value"], extra.get((f["test_id"], "top5"), {}).get("value"),
                     recall.get("value"), f"{worst[0]} ({worst[1]:.2f})" if worst else None, f.get("n")])
    return _table(rows, ["check", "top-1", "top-5", "mean per-class recall", "worst class", "images"])


def prompt_gains(run: Run) -> str:
    gains = run.select("prompt_gain", "gain")
    if not gains:
        return "No prompt-gain figures in this run."
    rows = [
        [g["model"], g["dataset"], f"{g['candidate']} vs {g['baseline']}", g["baseline_top1"], g["candidate_top1"],
         f"{g['value']:+.3f} ± {g['stderr']:.3f}",
         "–" if g.get("threshold") is None else f"≥ {g['threshold']:+.2f} {MARK[g['outcome']]}"]
        for g in gains
    ]
    return _table(rows, ["model", "dataset", "prompts", "baseline top-1", "candidate top-1", "gain ± se", "expected"])


def skipped(run: Run) -> str:
    rows = [[f["test_id"], f.get("reason", "")] for f in run.figures if f["outcome"] == "skip"]
    return _table(rows, ["check", "why it was skipped"]) if rows else "Nothing was skipped for lack of weights or data."


def benchmarks(data: dict | None) -> str:
    """pytest-benchmark JSON: one row per benchmark with its median time and derived throughput."""
    if not data or not data.get("benchmarks"):
        return "No benchmark results in this run (run `pytest benchmarks --benchmark-json FILE`)."
    rows = [
        [b["name"], b["stats"]["median"] * 1000, b["stats"]["rounds"], b.get("extra_info", {}).get("images_per_s")]
        for b in data["benchmarks"]
    ]
    machine = data.get("machine_info", {})
    note = f"Machine: {machine.get('cpu', {}).get('brand_raw', machine.get('processor', '?'))}."
    return note + "\n\n" + _table(rows, ["benchmark", "median (ms)", "rounds", "images/s"])
