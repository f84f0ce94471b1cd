"""Write the Markdown report of a records file.

    python -m mmtests.report --records reports/records.jsonl --out reports

Writes `<out>/<run id>/report.md` with its plots and a copy of the records, and `<out>/latest.md`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from . import markdown
from .plots import accuracy_by_prompt_set
from .records_io import read_run


def _read_benchmarks(path: Path | None) -> tuple[dict | None, str | None]:
    if path is None or not path.is_file():
        return None, None
    try:
        return json.loads(path.read_text()), None
    except json.JSONDecodeError as err:
        return None, f"{path}: not valid JSON ({err.msg}); benchmark section left empty"


def build(records: Path, out: Path, benchmarks: Path | None = None) -> tuple[Path, bool]:
    """Write the report; returns its path and whether any asserted figure failed."""
    run = read_run(records)
    bench, problem = _read_benchmarks(benchmarks)
    if problem:
        run.problems.append(problem)
    run_dir = out / run.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(records, run_dir / "records.jsonl")
    plot = accuracy_by_prompt_set(run.select("zero_shot", "top1"), run_dir / "zero_shot_by_prompt_set.png")
    sections = [
        f"# mmtests report: {run.run_id}",
        "## Environment", markdown.environment(run),
        "## Summary", markdown.summary(run),
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
        "## Benchmarks", markdown.benchmarks(bench),
        "## Skipped", markdown.skipped(run),
    ]
    if run.problems:
        sections += ["## Problems reading the records", "\n".join(f"- {p}" for p in run.problems)]
    text = "\n\n".join(s for s in sections if s) + "\n"
    report = run_dir / "report.md"
    report.write_text(text)
    # latest.md sits one level up, so its links point into the run's folder.
    (out / "latest.md").write_text(text.replace(f"]({plot.name})", f"]({run.run_id}/{plot.name})") if plot else text)
    return report, any(f["outcome"] == "fail" for f in run.figures)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=Path, default=Path("reports/records.jsonl"))
    ap.add_argument("--out", type=Path, default=Path("reports"))
    ap.add_argument("--benchmarks", type=Path, default=None, help="pytest-benchmark JSON to tabulate")
    ap.add_argument("--fail-on-failure", action="store_true", help="exit 1 when any asserted figure failed")
    args = ap.parse_args(argv)
    if not args.records.is_file():
        print(f"mmtests.report: records file {args.records} does not exist; run pytest first "
              f"(it writes records to --mm-records, default reports/records.jsonl)", file=sys.stderr)
        return 2
    report, failed = build(args.records, args.out, args.benchmarks)
    print(f"report written to {report} and {args.out / 'latest.md'}")
    return 1 if failed and args.fail_on_failure else 0


if __name__ == "__main__":
    sys.exit(main())
