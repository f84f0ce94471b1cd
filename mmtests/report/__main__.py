"""Write the Markdown report of a records file.

    mmtests report --records reports/records.jsonl --benchmarks reports/benchmarks.json --out reports
    (or python -m mmtests.report)

Writes `<out>/<run id>/report.md` with its plots and a copy of the records, and `<out>/latest.md` (unless
it shows a newer run); adds a finished run to the history (`<out>/history/<run id>.json`) and shows what
changed since the run before. Reads the newest run of FILE's folder `<FILE stem>.d/`, every writer merged.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import sys
from pathlib import Path
from typing import NamedTuple

from ..figures.record_files import anchored, atomic_write, merged, run_folders
from ..figures.record_reader import Run, benchmark_sweeps, read_run
from . import llava, markdown, retrieval
from .history import DEFAULT_THRESHOLDS, Thresholds, append, compare_with_previous, snapshot
from .plots import accuracy_by_prompt_set, prompt_gains, throughput_by_batch_size
from .trend import recent, trend_plot


class Built(NamedTuple):
    report: Path
    failed: bool  # an asserted figure failed, or a check crashed
    regressions: int  # figures that got worse than the previous run beyond the thresholds
    incomplete: bool  # the run shown, or a later one, did not finish (killed, crashed, interrupted)
    latest: bool  # latest.md now shows this run (False: it shows a newer one, left as it was)
    unreadable: tuple[str, ...] = ()  # "file:line: why" of figure lines skipped: their outcomes are unknown
    measured_nothing: tuple[str, ...] = ()  # sessions (the newest, or the run shown) that recorded no figure and
    # did not end cleanly (exit status 1-5): why, one line each
    apart: str | None = None  # the run id was written by sessions that are not one run: one session shown
    overlapping: tuple[str, ...] = ()  # run ids of other sessions on these records that ran at the same time
    crashed: int = 0  # checks that crashed (an exception instead of a figure)


def _read_json(path: Path | None, problems: list[str], consequence: str) -> dict | None:
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, OSError) as err:  # JSON and UTF-8 errors are ValueErrors
        problems.append(f"{path}: not readable JSON ({err.__class__.__name__}: {err}); {consequence}")
        return None
    if not isinstance(data, dict):
        problems.append(f"{path}: a JSON {type(data).__name__}, not an object; {consequence}")
        return None
    return data


def _safe(run: Run, name: str, render, *args, default=""):
    """A section, or a problem saying why it is missing: one odd record never costs the rest of the report."""
    try:
        return render(*args)
    except Exception as err:  # noqa: BLE001 - any record may lack any field; the report must still be written
        run.problems.append(f"the {name} could not be written ({err.__class__.__name__}: {err}): a record lacks "
                            "a field it needs, or has one of another type (an older record format?)")
        return default


def build(records: Path, out: Path, benchmarks: Path | None = None, history: Path | None = None,
          thresholds: Thresholds = DEFAULT_THRESHOLDS, faults: Path | None = None, run_id: str | None = None) -> Built:
    """Write the report and add the run to the history (default `<out>/history`) if it finished.

    The run's folder is made aside and renamed into place: an error leaves no partial folder behind."""
    run = read_run(records, run_id)
    bench = _read_json(benchmarks, run.problems, "benchmark section left empty")
    detection = _read_json(faults, run.problems, "detection-power section left out")
    history = history or out / "history"
    snap = _safe(run, "history snapshot of the benchmarks", snapshot, run, bench, default=None) or snapshot(run, None)
    comparison = compare_with_previous(history, run, snap, thresholds)
    if run.complete is False:
        comparison.notes.append("this run did not finish: it is not added to the history")
    elif (history / f"{run.run_id}.json").exists():
        comparison.notes.append(f"{history / (run.run_id + '.json')} already existed and was left as it was")
    out.mkdir(parents=True, exist_ok=True)
    staging = out / f".{run.run_id}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
    staging.mkdir()
    try:
        samples = f"{records.stem}-samples.jsonl" if run.samples else None
        (staging / "records.jsonl").write_bytes(merged(run.sources))
        if samples:
            (staging / samples).write_bytes(merged(run.samples))
        trend = _safe(run, "trend plot", trend_plot, recent(history, snap), _gate_metrics(run),
                      staging / "trend.png", default=None)
        text = _render(run, staging, bench, detection, comparison, thresholds, samples, trend)
        (staging / "report.md").write_text(text)
        if run.complete is not False:
            append(history, snap)
        _put_in_place(staging, out / run.run_id)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    # latest.md sits one level up, so its links point into the run's folder.
    text = re.sub(r"\]\(([^)/]+\.png)\)", lambda m: f"]({run.run_id}/{m.group(1)})", text)
    latest = _update_latest(out, run.run_id, text)
    nothing = {r.run_id: _measured_nothing(run, r) for r in (run, *run.newer)
               if not (r.figures or r.unreadable) and r.ends and not r.killed and r.ending()}
    incomplete = any(r.complete is False and r.run_id not in nothing for r in (run, *run.newer))
    return Built(out / run.run_id / "report.md", any(f["outcome"] in ("fail", "crashed") for f in run.figures),
                 len(comparison.regressions), incomplete, latest,
                 tuple(f"{where}: {why}" for where, why in run.unreadable), tuple(nothing.values()), run.apart,
                 tuple(r.run_id for r in run.overlapping), len(run.crashed))


def _measured_nothing(shown: Run, run: Run) -> str:
    if run is shown:
        return f"run {run.run_id} recorded no figure: {run.ending()}"
    which = "the newest session" if run is shown.newer[-1] else "a newer session"
    return f"{which}, run {run.run_id}, recorded no figure: {run.ending()}; this report shows the earlier run {shown.run_id}"


def _gate_metrics(run: Run) -> set[str]:
    """The metrics this run judged against a baseline (the gates'), drawn in the trend."""
    return {f["metric"] for f in run.figures if f.get("bound_kind") == "baseline"}


def _render(run: Run, run_dir: Path, bench, detection, comparison, thresholds: Thresholds, samples: str | None,
            trend: Path | None = None) -> str:
    def safe(name, render, *args):
        return _safe(run, f"{name} section", render, *args)

    plot = safe("zero-shot plot", accuracy_by_prompt_set, run.select("zero_shot", "top1"),
                run_dir / "zero_shot_by_prompt_set.png")
    sweeps = safe("benchmark", benchmark_sweeps, bench) or []
    throughput_plot = safe("throughput plot", throughput_by_batch_size,
                           [r for r in sweeps if not r["modality"].startswith("llava")],
                           run_dir / "throughput_by_batch_size.png")
    generation_plot = safe(
        "generation plot", throughput_by_batch_size, [r for r in sweeps if r["modality"].startswith("llava")],
        run_dir / "llava_generation_by_batch_size.png", "LLaVA generation",
        "prompts/s (prefill, dashed), decoded tokens/s (solid)")
    sections = [
        f"# mmtests report: {run.run_id}",
        markdown.run_status(run),
        "## Environment", safe("environment", markdown.environment, run),
        "## Summary", safe("summary", markdown.summary, run),
        "## Gates against the known-good baselines", safe("baseline gates", markdown.baseline_gates, run, samples),
        "## Changes since the previous run", safe("changes", markdown.deltas, comparison, thresholds),
        f"![trend over the last runs]({trend.name})" if trend else "",
        "## CLIP zero-shot top-1",
        "Rows: model and dataset; columns: prompt sets. ✅/❌ mark figures checked against a threshold.",
        safe("zero-shot", markdown.zero_shot, run),
        safe("datasets", markdown.datasets, run),
    ]
    if plot:
        sections.append(f"![zero-shot accuracy by prompt set]({plot.name})")
    sections += [
        "## Prompt-engineering gains",
        "Paired top-1 difference on the same images, with its standard error.",
        safe("prompt-gain", markdown.prompt_gains, run),
        _picture("prompt gains with 95% intervals", safe("prompt-gain plot", prompt_gains, run.select("prompt_gain", "gain"),
                                                          run_dir / "prompt_gains.png")),
        "## Image ↔ text retrieval",
        "Recall@k: the share of queries with at least one positive among the k best-scoring candidates "
        "(CLIP_benchmark's definition; ties count against the query). i→t: an image is retrieved when one of its "
        "captions is; t→i: a caption text when one of its images is. Random ranking scores about k/N.",
        safe("retrieval", retrieval.table, run),
        "## Zero-shot details", safe("zero-shot details", markdown.secondary_metrics, run),
        *(safe("LLaVA", llava.section, run, run_dir) or []),
        "## Benchmarks", safe("benchmark", markdown.benchmarks, bench),
    ]
    if throughput_plot:
        sections.append(f"![embedding throughput vs batch size]({throughput_plot.name})")
    if generation_plot:
        sections.append(f"![LLaVA generation vs batch size]({generation_plot.name})")
    if detection:
        sections += ["## Detection power", safe("detection-power", markdown.detection_power, detection)]
    sections += ["## Skipped", safe("skipped", markdown.skipped, run)]
    if run.problems:
        sections += ["## Problems reading the records", "\n".join(f"- {p}" for p in run.problems)]
    return "\n\n".join(s for s in sections if s) + "\n"


def _picture(alt: str, path: Path | None) -> str:
    return f"![{alt}]({path.name})" if path else ""


def _put_in_place(new: Path, target: Path) -> None:
    """Rename a finished folder into place; over an earlier report of the same run, file by file (each rename
    atomic): a reader never finds a half-written file, nor the folder missing."""
    try:
        os.rename(new, target)
        return
    except OSError:
        if not target.is_dir():
            raise
    target.mkdir(exist_ok=True)
    for path in new.iterdir():
        os.replace(path, target / path.name)


def _run_order(run_id: str) -> tuple[bool, str]:
    return run_id[:1].isdigit(), run_id  # timestamps sort in time order, after anything else


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on `path` where the platform has one (POSIX); a plain section elsewhere."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock; a concurrent report may then win the race for latest.md
        yield
        return
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _update_latest(out: Path, run_id: str, text: str) -> bool:
    """latest.md shows the newest run reported into `out`: an older run's report never replaces a newer one's."""
    latest = out / "latest.md"
    with _locked(out / ".latest.lock"):
        try:
            shown = latest.read_text(errors="replace").partition("\n")[0].removeprefix("# mmtests report: ")
        except FileNotFoundError:
            shown = ""
        if shown and _run_order(shown) > _run_order(run_id):
            return False
        atomic_write(latest, text)
    return True


def _empty(path: Path) -> bool:
    """A records file with nothing but blank space in it (a session that recorded nothing, or a truncated copy)."""
    try:
        return not path.read_bytes().strip()
    except OSError:
        return False  # unreadable: build() names it


EXIT_STATUSES = """exit status:
  0  the report was written (and, with the --fail-on-* options, nothing they name happened)
  1  --fail-on-failure: a figure failed or a check crashed, the run did not finish, a line was unreadable or nothing was recorded
  2  usage error, or no records to report (the records file is missing or empty)
  3  --fail-on-regression: a figure regressed since the previous run beyond the thresholds"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mmtests report", description=__doc__, epilog=EXIT_STATUSES,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=anchored, default="reports/records.jsonl", metavar="FILE",
                    help="the records pytest wrote (--mm-records; default %(default)s); relative paths here are "
                         "relative to the current directory, as pytest's are to the directory it was run from")
    ap.add_argument("--out", type=anchored, default="reports", metavar="FOLDER",
                    help="where <run id>/report.md, latest.md and history/ go (default %(default)s)")
    ap.add_argument("--run", default=None, metavar="RUN_ID", help="report this run of the records (default: the newest "
                    "with figures), e.g. one that ran at the same time as the newest")
    ap.add_argument("--benchmarks", type=anchored, default=None, metavar="FILE",
                    help="pytest-benchmark JSON to tabulate (mmtests bench writes reports/benchmarks.json)")
    ap.add_argument("--faults", type=anchored, default=None, metavar="FILE",
                    help="results of `mmtests faults --json FILE` to show as detection power")
    ap.add_argument("--fail-on-failure", action="store_true",
                    help="exit 1 when any asserted figure failed, the run did not finish, a figure line could not "
                         "be read, the newest session recorded nothing (a usage error, no checks selected, ...), or "
                         "sessions that are not one run wrote under its run id")
    ap.add_argument("--history", type=anchored, default=None, metavar="FOLDER",
                    help="folder of one JSON per run; this run is added and compared with the previous (default: <out>/history)")
    ap.add_argument("--max-throughput-drop", type=float, default=DEFAULT_THRESHOLDS.max_throughput_drop, metavar="FRACTION",
                    help="flag a benchmark whose items/s fell by more than this fraction since the previous run (default 0.05)")
    ap.add_argument("--max-accuracy-drop", type=float, default=DEFAULT_THRESHOLDS.max_accuracy_drop, metavar="ABSOLUTE",
                    help="flag a figure that fell by more than this since the previous run (default 0.01: one point)")
    ap.add_argument("--throughput-nights", type=int, default=DEFAULT_THRESHOLDS.throughput_nights, metavar="N",
                    help="judge items/s against the median of the last N runs on the same machine (default 5; 1: the "
                         "previous run only)")
    ap.add_argument("--fail-on-regression", action="store_true",
                    help="exit 3 when any figure regressed since the previous run beyond the two thresholds above")
    ap.add_argument("--compare-fail", action="store_true", dest="compare_fail",
                    help="deprecated: the old name of --fail-on-regression")
    args = ap.parse_args(argv)
    if args.compare_fail:
        print("mmtests report: --compare-fail is deprecated; use --fail-on-regression", file=sys.stderr)
        args.fail_on_regression = True
    if not run_folders(args.records):
        if not args.records.is_file():
            print(f"mmtests.report: records file {args.records} does not exist; run pytest first "
                  f"(it writes records to --mm-records, default reports/records.jsonl, relative to the directory "
                  "pytest is run from)", file=sys.stderr)
            return 2
        if _empty(args.records):
            print(f"mmtests.report: records file {args.records} is empty: nothing was recorded (did the session run "
                  "any mmtests check?); run pytest first, with the checks selected", file=sys.stderr)
            return 2
    thresholds = Thresholds(args.max_throughput_drop, args.max_accuracy_drop, max(1, args.throughput_nights))
    built = build(args.records, args.out, args.benchmarks, args.history, thresholds, args.faults, args.run)
    latest = "" if built.latest else " (latest.md shows a newer run and was left as it was)"
    print(f"report written to {built.report}" + (f" and {args.out / 'latest.md'}" if built.latest else latest))
    if built.crashed:
        print(f"mmtests.report: {built.crashed} checks crashed (see Crashes in the report)", file=sys.stderr)
    if built.incomplete:
        print("mmtests.report: the run did not finish (killed, crashed or interrupted; see the report)", file=sys.stderr)
    for why in built.measured_nothing:
        print(f"mmtests.report: {why}", file=sys.stderr)
    if built.apart:
        print(f"mmtests.report: {built.apart}", file=sys.stderr)
    if built.overlapping:
        print(f"mmtests.report: other sessions wrote to these records while this run ran: run(s) "
              f"{', '.join(built.overlapping)}, not in this report (see its first lines); report one with --run ID",
              file=sys.stderr)
    if built.unreadable:
        count = len(built.unreadable)
        lines = "figure line could not be read" if count == 1 else "figure lines could not be read"
        more = f"; and {count - 1} more" if count > 1 else ""
        print(f"mmtests.report: {count} {lines} ({built.unreadable[0]}{more}); the run cannot be judged "
              "(see Problems in the report)", file=sys.stderr)
    if (built.failed or built.incomplete or built.measured_nothing or built.unreadable or built.apart) \
            and args.fail_on_failure:
        return 1
    if built.regressions and args.fail_on_regression:
        print(f"mmtests.report: {built.regressions} figures regressed since the previous run (see the report)", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
