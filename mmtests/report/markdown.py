"""Markdown sections from a run's records (tabulate, pipe format)."""

from __future__ import annotations

from collections import Counter

from tabulate import tabulate

from ..figures.check import bound_text
from ..figures.metrics import HARNESS_TOLERANCE, LARGE_SPREAD
from ..figures.record_reader import Run, benchmark_sweeps
from ..figures.record_schema import bound_of
from .crashes import crash_headline, crashes
from .history import Comparison, Delta, Thresholds

MARK = {"pass": "✅", "fail": "❌", "measured": "", "skip": "⏭", "crashed": "💥"}


def _table(rows: list[list], headers: list[str], formatted: bool = False) -> str:
    """A pipe table; `formatted`: cells are already strings, to be shown as they are (signs kept)."""
    return tabulate(rows, headers=headers, tablefmt="pipe", floatfmt=".3f", missingval="–", disable_numparse=formatted)


def _cell(figure: dict | None) -> str:
    if figure is None:
        return "–"
    return f"{figure['value']:.3f}" + bounded(figure, ".2f")


def bounded(figure: dict, digits: str = "g") -> str:
    """" ✅ (≥ 0.80)": the verdict and the min or max bound a figure was judged against; "" when it had none."""
    kind, bound = bound_of(figure)
    if kind not in ("min", "max") or bound is None:
        return ""
    return f" {MARK[figure['outcome']]} ({bound_text(kind, bound, digits=digits)})"


def _checks(node_ids: list[str], limit: int = 10) -> str:
    names = [f"`{n.rpartition('::')[2]}`" for n in node_ids[:limit]]
    return ", ".join(names) + (f" and {len(node_ids) - limit} more" if len(node_ids) > limit else "")


def _newer(run: Run, later: Run) -> str:
    text = f"**This report shows run {run.run_id}, not the newer run {later.run_id}**: that run recorded no figure"
    if not later.ends or later.killed:
        return text + " and has no end line (killed or crashed before its first figure, or still running)."
    ending = later.ending()
    if ending:
        return text + f"; its session ended: {ending}."
    return text + " and ended normally."


def _unreadable(run: Run) -> str:
    count = len(run.unreadable)
    why = list(dict.fromkeys(problem for _, problem in run.unreadable))
    lines, outcome = (("figure line could not be read", "its outcome is unknown (a failed check?)") if count == 1 else
                      ("figure lines could not be read", "their outcomes are unknown (a failed check among them?)"))
    return (f"**{count} {lines}** ({'; '.join(why[:3])}{'; ...' if len(why) > 3 else ''}); see Problems below: "
            f"{outcome}, so the run cannot be judged.")


def _unfinished(run: Run) -> str:
    """Why the run's writers did not finish: killed (no end line), interrupted, or stopped by an exit status."""
    killed = run.killed
    if killed:
        return f"killed or crashed (no end line from {', '.join(killed)})"
    stopped = run.unended
    status = run.exit_status(stopped)
    if status == 2:
        return f"interrupted (no end line from {', '.join(stopped)})"
    return f"{run.ending(stopped)}, in {', '.join(stopped)}"


def run_status(run: Run) -> str:
    """Which run this is, whether it finished, and the planned checks it left without a figure."""
    parts = [_newer(run, later) for later in run.newer]
    if run.apart:
        parts.append(f"**Sessions kept apart**: {run.apart}.")
    for other in run.overlapping:
        parts.append(f"**Another session wrote to these records at the same time**: run {other.run_id} "
                     f"({len(other.figures)} figures) ran while this run {run.run_id} did; its figures are not in this "
                     f"report, nor in the merged records file or this run's history entry. Report it with "
                     f"`python -m mmtests.report --run {other.run_id}`; give sessions that run at once their own "
                     "--mm-records.")
    if run.unreadable:
        parts.append(_unreadable(run))
    if run.crashed:
        parts.append(crash_headline(run))
    planned, missing = len(dict.fromkeys(run.planned)), run.unmeasured()
    others = ("skipped by a marker, failed before measuring, or are on the unreadable lines" if run.unreadable
              else "skipped by a marker or failed before measuring")
    if run.complete is None and not (run.figures or run.unreadable or run.planned or run.headed):
        parts.append("**Nothing recorded**: the records hold no run (did the session run any mmtests check?).")
    elif run.complete is None:
        parts.append("Records of an older format: whether this run finished is not recorded.")
    elif run.complete is False and not run.unended:
        parts.append(f"**Incomplete run**: shard(s) {', '.join(run.missing_shards)} wrote no records (a CI job lost, "
                     "or its records not gathered into this folder); the other shards' writers all ended"
                     + (f"; {len(missing)} of {planned} checks the present shards planned have no figure: "
                        f"{_checks(missing)}." if missing else "."))
    elif run.complete is False:
        text = f"**Incomplete run**: {_unfinished(run)}"
        parts.append(text + (f": {len(missing)} of {planned} planned checks have no figure"
                             + (f": {_checks(missing)}." if missing else ".") if planned else "; its plan was not recorded."))
        if run.missing_shards:
            parts.append(f"Shard(s) {', '.join(run.missing_shards)} wrote no records.")
    elif not (run.figures or run.unreadable) and run.ending():
        parts.append(f"**Run {run.run_id} recorded no figure**: its session ended: {run.ending()}.")
    else:
        text = f"Complete: every writer of the run ({', '.join(run.ends)}) recorded its end"
        if run.shards:
            text += f", from {', '.join(f'{len(seen)} shards of {n}' for n, seen in run.shards.items())}"
        if planned:
            text += f"; {planned - len(missing)} of {planned} planned checks have figures"
            text += f" ({len(run.crashed)} of them crashed)" if run.crashed else ""
            if missing:
                text += f" (the others were {others}: {_checks(missing)})"
        parts.append(text + ".")
    return "\n\n".join(parts)


def environment(run: Run) -> str:
    env = run.environment
    if not env:  # no run header: nothing is known, and nothing may be said (not even "not a git checkout")
        rows = [["run", run.run_id], *([k, "unknown"] for k in ("device", "python", "packages", "git", "matrix"))]
        return ("No run header (environment) line was recorded: see Problems below.\n\n" if not run.headed else "") \
            + _table(rows, ["", ""])
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
    rows = [[s, counts[(s, "pass")], counts[(s, "fail")], counts[(s, "skip")], counts[(s, "crashed")]] for s in suites]
    failed = [f for f in run.figures if f["outcome"] == "fail"]
    text = (_table(rows, ["suite", "passed", "failed", "skipped", "crashed"]) if rows
            else "No asserted figures in this run.")
    if run.crashed:
        text += "\n\n**Crashes** (each exception once)\n\n" + crashes(run)
    if failed:
        text += "\n\n**Failures**\n\n" + "\n".join(f"- `{f['test_id']}`: {describe(f)}" for f in failed)
    return text


def describe(figure: dict) -> str:
    """A figure in one line: value, its bound (min, max, or the baseline and tolerance), and why."""
    value = "n/a" if figure.get("value") is None else f"{figure['value']:.4g}"
    text = bound_text(*bound_of(figure), words=True, baseline=figure.get("baseline_value"))
    bound = f" ({text})" if text else ""
    why = figure.get("explain") or figure.get("reason")
    return f"{figure['metric']} {value}{bound}" + (f": {why}" if why else "")


def baseline_gates(run: Run, samples: str | None) -> str:
    """Every gate against a known-good baseline: agreement, probabilities, embeddings, paired accuracy."""
    gates = [f for f in run.figures if f.get("bound_kind") == "baseline"]
    if not gates:
        return "No model of this run was gated against a baseline (no `baseline` in its entry)."
    groups: dict[tuple[str, str], list[dict]] = {}
    for f in gates:
        groups.setdefault((f["model"], f["metric"]), []).append(f)
    rows = []
    for (model, metric), figs in groups.items():
        if metric.endswith("_vs_baseline"):  # accuracy gates: the largest drop
            values, pick = [f["drop"] for f in figs if f.get("drop") is not None], max
        else:
            values = [f["value"] for f in figs if f["value"] is not None]
            pick = min if figs[0].get("higher_is_better", True) else max
        worst = pick(values) if values else None
        passed = sum(f["outcome"] == "pass" for f in figs)
        tol = figs[0].get("tolerance")
        rows.append([model, metric, len(figs), "n/a" if worst is None else f"{worst:.6g}",
                     "" if tol is None else f"{tol:g}", figs[0].get("precision") or "",
                     f"{passed}/{len(figs)} " + (MARK["pass"] if passed == len(figs) else MARK["fail"])])
    failed = [f for f in gates if f["outcome"] == "fail"]
    text = (f"{len(gates) - len(failed)} of {len(gates)} gates agree with the committed baselines. Accuracy gates "
            "compare the same samples (exact McNemar on the flipped ones, 95%); agreement, probability, embedding "
            "and first-token KL gates use the tolerances of the run's precision (for accuracy: the drop allowed). "
            "Worst: the lowest agreement or cosine, the largest change, KL or accuracy drop over the checks."
            "\n\n" + _table(rows, ["model", "gate", "checks", "worst", "tolerance", "precision", "passed"],
                             formatted=True))
    if failed:
        text += "\n\n**Red gates, with the samples that flipped**\n\n" + "\n".join(
            f"- `{f['test_id']}`: {describe(f)}" for f in failed)
    if samples:
        text += f"\n\nPer-sample outcomes of this run (one JSON line per check, to compare item by item): `{samples}`."
    return text


def detection_power(faults: dict | None) -> str:
    """`python -m mmtests.faults`'s results: which silent faults the gates catch, and false alarms."""
    if not faults:
        return ""
    rows = [[f["name"], f["what"], len(f["red"]), "; ".join(f["red"][:2]) + (" …" if len(f["red"]) > 2 else ""),
             "✅" if f["caught"] else "❌ missed"] for f in faults.get("faults", [])]
    clean = faults.get("clean") or []
    alarms = "" if not clean else (f" False alarms on {len(clean)} clean reruns (other batch sizes and thread "
                                   f"counts): **{faults.get('false_alarms')}**.")
    where = (f"copies of the model folders of `{faults['matrix']}`, run against their baselines "
             f"(`python -m mmtests.faults --mm-config {faults['matrix']}`)" if faults.get("matrix") else
             "the embedded zoo, default matrix run against the committed baselines (`python -m mmtests.faults`)")
    return (f"Silent faults applied to {where}. Detection rate: **{faults['detection_rate']:.0%}**.{alarms}\n\n"
            + _table(rows, ["fault", "what", "red checks", "e.g.", "caught"], formatted=True))


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
         bounded(g, "+.2f").strip() or "–"]
        for g in gains
    ]
    return _table(rows, ["model", "dataset", "prompts", "baseline top-1", "candidate top-1", "gain ± se", "expected"])


def skipped(run: Run) -> str:
    rows = [[f["test_id"], f.get("reason", "")] for f in run.figures if f["outcome"] == "skip"]
    return _table(rows, ["check", "why it was skipped"]) if rows else "Nothing was skipped for lack of weights or data."


def _rate(value: float | None) -> str | None:
    if value is None:
        return None
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _utilisation(value: float | None) -> str | None:
    """MFU/MBU: above 100% is impossible, so such a value is shown only with a flag (its cause is listed)."""
    if value is None:
        return None
    return f"⚠ {value:.0%}" if value > 1 else f"{value:.2%}"


def _ratio(value: float | None) -> str | None:
    return None if value is None else f"{value:.2f}x"


def _spread(value: float | None) -> str | None:
    if value is None:
        return None
    return f"⚠ {value:.0%}" if value > LARGE_SPREAD else f"{value:.1%}"


def _mib(value: float | None) -> str | None:
    return None if value is None else f"{value / 2**20:,.0f}"


# Rows of a model's table: (extra_info key, label, format); one column per batch size.
def _ms(value: float | None) -> str | None:
    return None if value is None else f"{value * 1000:,.1f}"


SWEEP_ROWS = (  # rows with no value in any column are left out
    ("items_per_s", "items/s", _rate),
    ("ttft_s", "time to first token (ms)", _ms),
    ("per_token_latency_s", "per-token latency (ms)", _ms),
    ("spread", "spread (IQR/median)", _spread),
    ("mfu", "MFU", _utilisation),
    ("mbu", "MBU", _utilisation),
    ("pass_memory_bytes", "pass memory (MiB)", _mib),
    ("peak_memory_bytes", "peak memory (MiB)", _mib),
)


def _sweep_table(rows: list[dict]) -> str:
    first = rows[0]
    batches = sorted({r["batch_size"] for r in rows})
    cell = {(r["modality"], r["batch_size"]): r for r in rows}
    modalities = list(dict.fromkeys(r["modality"] for r in rows))
    per_item = {m: next(r for r in rows if r["modality"] == m).get("flops_per_item") for m in modalities}
    flops = ", ".join(f"{m} {f / 1e9:.3g}" for m, f in per_item.items() if f) or "–"
    head = (f"**{first['model']}** ({first.get('weights', '?')} weights; {first.get('device_name') or first.get('device', '?')}, "
            f"{first.get('dtype', '?')}; GFLOP per item: {flops})")
    table = [[m, label, *values] for m in modalities for key, label, fmt in SWEEP_ROWS
             for values in [[_contended(fmt(cell.get((m, b), {}).get(key)), cell.get((m, b), {}), key)
                             for b in batches]] if any(v is not None for v in values)]
    return head + "\n\n" + _table(table, ["", "batch size", *map(str, batches)], formatted=True) + _flags(rows)


def _contended(text: str | None, row: dict, key: str) -> str | None:
    return f"{text} ⚠" if text is not None and key == "items_per_s" and row.get("contended") else text


def _flags(rows: list[dict]) -> str:
    """Below a table: why each flagged figure cannot be taken at face value."""
    lines = [f"- ⚠ `{r['name']}`: {'; '.join(r['flags'])}" for r in rows if r.get("flags")]
    return "\n\n" + "\n".join(lines) if lines else ""


def benchmarks(data: dict | None) -> str:
    """pytest-benchmark JSON: conditions, a table per model with batch sizes as columns, then the other benchmarks."""
    if not data or not data.get("benchmarks"):
        return "No benchmark results in this run (run `mmtests bench`, or pytest `--pyargs mmtests.benchmarks`)."
    parts = [benchmark_conditions(data)]
    sweeps = benchmark_sweeps(data)
    for model, dtype in dict.fromkeys((r["model"], r.get("dtype")) for r in sweeps):  # a table per model and dtype
        parts.append(_sweep_table([r for r in sweeps if r["model"] == model and r.get("dtype") == dtype]))
    in_sweeps = {r["name"] for r in sweeps}
    others = [b for b in data["benchmarks"] if b["name"] not in in_sweeps]
    if others:
        rows = [[b["name"], _ms(b["stats"]["median"]), _spread(b.get("extra_info", {}).get("spread")),
                 str(b["stats"]["rounds"]), _contended(_rate(b.get("extra_info", {}).get("items_per_s")),
                                                       b.get("extra_info", {}), "items_per_s"),
                 _ratio(b.get("extra_info", {}).get("ratio_to_raw_forward"))]
                for b in others]
        parts.append(_table(rows, ["benchmark", "median (ms)", "spread (IQR/median)", "rounds", "items/s",
                                   "end to end / raw forward"], formatted=True)
                     + _flags([{"name": b["name"], **b.get("extra_info", {})} for b in others]))
    parts += [_harness_check(b["extra_info"]) for b in others if "harness_ratio" in b.get("extra_info", {})]
    return "\n\n".join(parts)


def _load(value) -> str:
    return "/".join(f"{v:.2f}" for v in value) if value else "?"


def benchmark_conditions(data: dict) -> str:
    """The machine, the peaks MFU is taken against, and how busy the machine was (load, other processes)."""
    machine = data.get("machine_info", {})
    infos = [b.get("extra_info", {}) for b in data["benchmarks"]]
    lines = [f"Machine: {machine.get('cpu', {}).get('brand_raw', machine.get('processor', '?'))}. "
             "Items/s from the median round (items: images or captions embedded, prompts prefilled, tokens decoded); "
             "spread = interquartile range over median of the rounds; memory from a separate pass in a fresh process."]
    for device, peak in (data.get("mmtests", {}).get("peaks") or {}).items():
        if peak:
            lines.append(f"- Peak ({device}, MFU and MBU are against it): "
                         f"{', '.join(f'{k} {v / 1e12:.3g} TFLOP/s' for k, v in peak['flops'].items())}, "
                         f"{peak['bandwidth'] / 1e9:,.0f} GB/s; {peak['source']}.")
    loads = [i for i in infos if i.get("load_avg_before") or i.get("load_avg_after")]
    if loads:
        lines.append(f"- Load average (1/5/15 min): {_load(loads[0].get('load_avg_before'))} before the first benchmark, "
                     f"{_load(loads[-1].get('load_avg_after'))} after the last.")
    shares = [i["other_cpu_share"] for i in infos if i.get("other_cpu_share") is not None]
    if shares:
        contended = sum(1 for i in infos if i.get("contended"))
        limit = data.get("mmtests", {}).get("contended_share", 0.1)
        lines.append(f"- Other processes' share of the CPUs during the benchmarks: at most {max(shares):.0%} "
                     f"(median {sorted(shares)[len(shares) // 2]:.0%}); {contended} of {len(infos)} benchmarks "
                     f"contended (above {limit:.0%}, marked ⚠: not compared with earlier runs)."
                     + (" ⚠ **Figures taken on a busy machine.**" if contended else ""))
    gpu = [i["gpu_other_processes"] for i in infos if i.get("gpu_other_processes") is not None]
    if gpu:
        lines.append(f"- Other processes computing on the GPU: at most {max(gpu)}.")
    return "\n".join(lines)


def _harness_check(info: dict) -> str:
    ratio, tolerance = info["harness_ratio"], info.get("harness_tolerance", HARNESS_TOLERANCE)
    verdict = "within" if abs(ratio - 1) <= tolerance else "⚠ **outside**"
    return (f"Harness overhead: {_rate(info.get('harness_items_per_s'))} items/s through pytest-benchmark against "
            f"{_rate(info.get('bare_items_per_s'))} items/s in a bare loop (fastest rounds): ratio {ratio:.3f}, "
            f"{verdict} 1 ± {tolerance:.0%}.")


def deltas(comparison: Comparison, thresholds: Thresholds) -> str:
    """Changes since the previous run: regressions and improvements beyond the thresholds, and why none, if none."""
    parts = [f"- {note}" for note in comparison.notes]
    if comparison.versions_changed:
        parts.append(f"- {versions_changed(comparison)}")
    if comparison.previous_run is None or not (comparison.deltas or comparison.new or comparison.gone):
        return "\n".join(parts)
    changed = sorted((d for d in comparison.deltas if d.verdict != "same"),
                     key=lambda d: (d.verdict != "regression", d.verdict == "not judged", d.kind))
    unjudged = sum(1 for d in changed if d.verdict == "not judged")
    summary = (f"Compared with run {comparison.previous_run}: {len(comparison.regressions)} regressions, "
               f"{len(changed) - len(comparison.regressions) - unjudged} improvements, "
               f"{unjudged} changes not judged (contended or widely spread figures), "
               f"{len(comparison.deltas) - len(changed)} within "
               f"thresholds (accuracy ± {thresholds.max_accuracy_drop:.3f} absolute, throughput ± "
               f"{thresholds.max_throughput_drop:.0%}); {comparison.new} new figures, {comparison.gone} gone.")
    runs = comparison.throughput_runs
    if any(d.kind == "throughput" for d in comparison.deltas):
        summary += (f" Throughput is compared with the median of the last {len(runs)} runs on this machine "
                    f"({', '.join(runs)}; at most {thresholds.throughput_nights}, contended or widely spread figures "
                    "left out of the median)." if len(runs) > 1 else f" Throughput is compared with run {runs[0]}.")
    parts.insert(0, summary)
    if changed:
        rows = [[FLAG[d.verdict], d.kind, d.name, *_delta_cells(d), d.reference or "previous run"] for d in changed]
        parts.append("\n" + _table(rows, ["", "kind", "figure", "reference", "current", "change", "against"],
                                    formatted=True))
    return "\n".join(parts)


def versions_changed(comparison: Comparison) -> str:
    """One line naming each package whose version changed since the previous run: the first suspect of a change."""
    changes = ", ".join(f"{name} {before or '(absent)'} -> {now or '(absent)'}"
                        for name, before, now in comparison.versions_changed)
    return f"versions changed since run {comparison.previous_run}: {changes}"


FLAG = {"regression": "❌ regression", "improvement": "⬆ improvement", "not judged": "⚠ not judged"}


def _delta_cells(d: Delta) -> list[str]:
    if d.kind == "throughput":
        return [_rate(d.previous), _rate(d.current), f"{d.change:+.1%}"]
    return [f"{d.previous:.3f}", f"{d.current:.3f}", f"{d.change:+.3f}"]
