"""Write the Markdown report of a records file.

    python -m mmtests.report --records reports/records.jsonl --benchmarks reports/benchmarks.json --out reports

Writes `<out>/<run id>/report.md` with its plots and a copy of the records, and `<out>/latest.md`;
adds the run to the history (`<out>/history/<run id>.json`) and shows what changed since the run before.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path
from typing import NamedTuple

from . import llava, markdown
from .history import DEFAULT_THRESHOLDS, Thresholds, record_and_compare
from .plots import accuracy_by_prompt_set, throughput_by_batch_size
from .records_io import benchmark_sweeps, read_run


class Built(NamedTuple):
    report: Path
    failed: bool  # an asserted figure failed
    regressions: int  # figures that got worse than the previous run beyond the thresholds


def _read_benchmarks(path: Path | None) -> tuple[dict | None, str | None]:
    if path is None or not path.is_file():
        return None, None
    try:
        return json.loads(path.read_text()), None
    except json.JSONDecodeError as err:
        return None, f"{path}: not valid JSON ({err.msg}); benchmark section left empty"


def build(records: Path, out: Path, benchmarks: Path | None = None, history: Path | None = None,
          thresholds: Thresholds = DEFAULT_THRESHOLDS, faults: Path | None = None) -> Built:
    """Write the report and add the run to the history (default `<out>/history`)."""
    run = read_run(records)
    bench, problem = _read_benchmarks(benchmarks)
    if problem:
        run.problems.append(problem)
    detection, problem = _read_benchmarks(faults)
    if problem:
        run.problems.append(problem)
    run_dir = out / run.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(records, run_dir / "records.jsonl")
    samples = records.with_name(f"{records.stem}-samples.jsonl")
    if samples.is_file():
        shutil.copyfile(samples, run_dir / samples.name)
    comparison = record_and_compare(history or out / "history", run, bench, thresholds)
    plot = accuracy_by_prompt_set(run.select("zero_shot", "top1"), run_dir / "zero_shot_by_prompt_set.png")
    sweeps = benchmark_sweeps(bench)
    throughput_plot = throughput_by_batch_size([r for r in sweeps if not r["modality"].startswith("llava")],
                                               run_dir / "throughput_by_batch_size.png")
    generation_plot = throughput_by_batch_size(
        [r for r in sweeps if r["modality"].startswith("llava")], run_dir / "llava_generation_by_batch_size.png",
        "LLaVA generation", "prompts/s (prefill, dashed), decoded tokens/s (solid)")
    sections = [
        f"# mmtests report: {run.run_id}",
        "## Environment", markdown.environment(run),
        "## Summary", markdown.summary(run),
        "## Gates against the known-good baselines",
        markdown.baseline_gates(run, samples.name if samples.is_file() else None),
        "## Changes since the previous run", markdown.deltas(comparison, thresholds),
        "## CLIP zero-shot top-1",
        "Rows: model and dataset; columns: prompt sets. ✅/❌ mark figures checked against a threshold.",
        markdown.zero_shot(run),
        markdown.datasets(run),
    ]
    if plot:
        sections.append(f"![zero-shot accuracy by prompt set]({plot.name})")
    sections += [
        "## Prompt-engineering gains",
        "Paired top-1 difference on the same images, with its standard error.",
        markdown.prompt_gains(run),
        "## Zero-shot details", markdown.secondary_metrics(run),
        *llava.section(run, run_dir),
        "## Benchmarks", markdown.benchmarks(bench),
    ]
    if throughput_plot:
        sections.append(f"![embedding throughput vs batch size]({throughput_plot.name})")
    if generation_plot:
        sections.append(f"![LLaVA generation vs batch size]({generation_plot.name})")
    if detection:
        sections += ["## Detection power", markdown.detection_power(detection)]
    sections += [
        "## Skipped", markdown.skipped(run),
    ]
    if run.problems:
        sections += ["## Problems reading the records", "\n".join(f"- {p}" for p in run.problems)]
    text = "\n\n".join(s for s in sections if s) + "\n"
    report = run_dir / "report.md"
    report.write_text(text)
    # latest.md sits one level up, so its links point into the run's folder.
    text = re.sub(r"\]\(([^)/]+\.png)\)", lambda m: f"]({run.run_id}/{m.group(1)})", text)
    (out / "latest.md").write_text(text)
    return Built(report, any(f["outcome"] == "fail" for f in run.figures), len(comparison.regressions))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=Path, default=Path("reports/records.jsonl"))
    ap.add_argument("--out", type=Path, default=Path("reports"))
    ap.add_argument("--benchmarks", type=Path, default=None, help="pytest-benchmark JSON to tabulate")
    ap.add_argument("--faults", type=Path, default=None, help="results of `python -m mmtests.faults` (JSON) to show")
    ap.add_argument("--fail-on-failure", action="store_true", help="exit 1 when any asserted figure failed")
    ap.add_argument("--history", type=Path, default=None,
                    help="folder of one JSON per run; this run is added and compared with the previous (default: <out>/history)")
    ap.add_argument("--max-throughput-drop", type=float, default=DEFAULT_THRESHOLDS.max_throughput_drop, metavar="FRACTION",
                    help="flag a benchmark whose items/s fell by more than this fraction since the previous run (default 0.05)")
    ap.add_argument("--max-accuracy-drop", type=float, default=DEFAULT_THRESHOLDS.max_accuracy_drop, metavar="ABSOLUTE",
                    help="flag a figure that fell by more than this since the previous run (default 0.01: one point)")
    ap.add_argument("--compare-fail", action="store_true", help="exit 3 when any figure regressed beyond the thresholds")
    args = ap.parse_args(argv)
    if not args.records.is_file():
        print(f"mmtests.report: records file {args.records} does not exist; run pytest first "
              f"(it writes records to --mm-records, default reports/records.jsonl)", file=sys.stderr)
        return 2
    built = build(args.records, args.out, args.benchmarks, args.history,
                  Thresholds(args.max_throughput_drop, args.max_accuracy_drop), args.faults)
    print(f"report written to {built.report} and {args.out / 'latest.md'}")
    if built.failed and args.fail_on_failure:
        return 1
    if built.regressions and args.compare_fail:
        print(f"mmtests.report: {built.regressions} figures regressed since the previous run (see the report)", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
