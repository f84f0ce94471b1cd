"""Run history: one JSON file per run, compared with the run before it.

`<history>/<run id>.json` holds a run's figures: every numeric figure of the records (suite,
test_id, metric, value; read as higher-is-better, such as accuracy, recall or gains, unless
the metric table says otherwise) and every benchmark
(name, median seconds, items/s). Files are only ever added, whole (written aside, then linked into
place), and only for runs that finished: a run already in the history is left as it was. The previous
run is the newest readable file whose run id sorts before this one (run ids are UTC timestamps); when
there is none the report says so and shows no deltas. Figures are compared with the previous run; throughput
with the median of the last `throughput_nights` readable runs on the same machine (a slow slide adds up there,
and one noisy night does not move it).
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from ..figures.metrics import LARGE_SPREAD, METRICS
from ..figures.record_files import temp_name
from ..figures.record_reader import Run

# A history file's format: bump when a field changes meaning. A file without `format` (written before the field
# existed) is format 1; a newer one is a run this mmtests cannot compare with, said so, not misread.
FORMAT = 1


@dataclass(frozen=True)
class Thresholds:
    max_throughput_drop: float = 0.05  # relative: 0.05 flags a run 5% slower than its reference
    max_accuracy_drop: float = 0.01  # absolute: 0.01 is one point of accuracy
    throughput_nights: int = 5  # throughput's reference: the median of this many earlier runs (1: the previous run)


DEFAULT_THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class Delta:
    kind: str  # "accuracy" or "throughput"
    name: str
    previous: float
    current: float
    change: float  # absolute for accuracy, relative for throughput
    verdict: str  # "regression", "improvement", "same", or "not judged" (contended or widely spread figures)
    reference: str = ""  # what `previous` is when it is not the previous run's figure ("median of 5 runs")


@dataclass
class Comparison:
    previous_run: str | None = None
    throughput_runs: tuple[str, ...] = ()  # the runs throughput was compared with, newest first
    deltas: list[Delta] = field(default_factory=list)
    versions_changed: list[tuple[str, str | None, str | None]] = field(default_factory=list)  # (package, before, now)
    new: int = 0  # figures this run has and the previous one had not
    gone: int = 0  # the other way round
    notes: list[str] = field(default_factory=list)  # missing or broken previous run, a device change, ...

    @property
    def regressions(self) -> list[Delta]:
        return [d for d in self.deltas if d.verdict == "regression"]


def _direction(figure: dict) -> str:
    """How a figure's change is read: "higher" or "lower" is better, "target" (closest to a true value) or
    "neutral" (describes the model, shown, never flagged), from the metric table; figures of metrics the table
    does not know (an older run's) by the `higher_is_better` they were recorded with."""
    spec = METRICS.get(figure["metric"])
    if spec is not None and spec.history != "judged":
        return spec.history
    higher = spec.higher_is_better if spec is not None else figure.get("higher_is_better") is not False
    return "higher" if higher else "lower"


TARGET_FIELDS = {"yes_ratio": "true_yes_ratio"}


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def snapshot(run: Run, bench: dict | None) -> dict:
    """What the history keeps of a run: its figures and its benchmarks, with the device they ran on."""
    env = run.environment
    figures = [{**{k: f[k] for k in ("suite", "test_id", "metric", "value")},
                **({"target": f.get(TARGET_FIELDS[f["metric"]])} if f["metric"] in TARGET_FIELDS else {}),
                **({"higher_is_better": f["higher_is_better"]} if "higher_is_better" in f else {})}
               for f in run.figures if _number(f.get("value"))]
    benchmarks = []
    for b in (bench or {}).get("benchmarks", []):
        info = b.get("extra_info", {})
        median = b.get("stats", {}).get("median")
        if "name" not in b or not _number(median):
            continue
        benchmarks.append({
            "name": b["name"], "fullname": b.get("fullname", b["name"]), "median_s": median,
            "items_per_s": info.get("items_per_s", 1 / median if median else None),
            **{k: info[k] for k in ("model", "weights", "modality", "batch_size", "dtype", "mfu", "spread",
                                    "contended") if k in info},
        })
    return {"format": FORMAT, "run_id": run.run_id, "device": env.get("device"), "device_name": env.get("device_name"),
            "git_sha": env.get("git_sha"), "versions": _versions(env), "benchmark_machine": _benchmark_machine(bench),
            "figures": figures, "benchmarks": benchmarks}


def _versions(env: dict) -> dict[str, str]:
    """The run header's package versions, with Python's and CUDA's: what changed between two nights is named."""
    versions = env.get("versions") if isinstance(env.get("versions"), dict) else {}
    found = {**versions, "python": env.get("python"), "cuda": env.get("cuda")}
    return {name: value for name, value in found.items() if isinstance(value, str) and value}


def changed_versions(prev: dict, cur: dict) -> list[tuple[str, str | None, str | None]]:
    """(package, before, now) for every version that differs; none when either run recorded no versions (a history
    file written before they were kept), rather than every package called new."""
    before, now = prev.get("versions"), cur.get("versions")
    if not isinstance(before, dict) or not isinstance(now, dict) or not before or not now:
        return []
    return [(name, before.get(name), now.get(name)) for name in sorted(before.keys() | now.keys())
            if before.get(name) != now.get(name)]


def _benchmark_machine(bench: dict | None) -> str | None:
    """The CPU and the devices the benchmarks ran on: throughput is compared only between equal ones."""
    if not bench:
        return None
    cpu = bench.get("machine_info", {}).get("cpu", {}).get("brand_raw", "?")
    devices = sorted({b.get("extra_info", {}).get("device_name") for b in bench.get("benchmarks", [])} - {None})
    return "; ".join([cpu, *devices])


def append(history: Path, snap: dict) -> Path | None:
    """Add a run to the history; None when that run is there already (it is never overwritten)."""
    history.mkdir(parents=True, exist_ok=True)
    path = history / f"{snap['run_id']}.json"
    tmp = temp_name(path)  # never matches *.json: a concurrent report cannot read it half-written
    try:
        tmp.write_text(json.dumps(snap, indent=1))
        os.link(tmp, path)  # atomic, and fails rather than replace a run already there
    except FileExistsError:
        return None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def earlier(history: Path, run_id: str, problems: list[str]) -> list[Path]:
    """History files of the runs before this one, newest first; what is not a file goes to `problems`."""
    found = []
    for path in history.glob("*.json") if history.is_dir() else []:
        if path.stem >= run_id:
            continue
        if path.is_file():
            found.append(path)
        else:
            problems.append(f"{path}: in the history but not a file; skipped")
    return sorted(found, reverse=True)


def _verdict(change: float, allowed_drop: float) -> str:
    if change < -allowed_drop:
        return "regression"
    return "improvement" if change > allowed_drop else "same"


def _by(rows: list[dict], *fields: str) -> dict[tuple, dict]:
    return {tuple(r[f] for f in fields): r for r in rows}


def _by_benchmark(rows: list[dict]) -> dict[str, dict]:
    """Benchmarks by their id inside the benchmarks folder: the same whether run from a checkout
    (`benchmarks/...`, `mmtests/benchmarks/...`) or from an installed wheel (a site-packages path)."""
    return {r["fullname"].rpartition("benchmarks/")[2]: r for r in rows}


def compare(prev: dict, cur: dict, thresholds: Thresholds, nights: list[dict] | None = None) -> Comparison:
    """Deltas of the figures two runs share, judged against `thresholds`; throughput against the median of
    `nights` (earlier runs, newest first; default: `prev` alone)."""
    out = Comparison(prev.get("run_id"), versions_changed=changed_versions(prev, cur))
    p_figs = _by(prev.get("figures", []), "suite", "test_id", "metric")
    c_figs = _by(cur.get("figures", []), "suite", "test_id", "metric")
    for key in sorted(p_figs.keys() & c_figs.keys()):
        before, now = p_figs[key]["value"], c_figs[key]["value"]
        direction = _direction(c_figs[key])
        better = now - before  # how much better the figure got, in its own units
        if direction == "lower":
            better = before - now
        elif direction == "target" and _number(c_figs[key].get("target")) and _number(p_figs[key].get("target")):
            better = abs(before - p_figs[key]["target"]) - abs(now - c_figs[key]["target"])
        verdict = "same" if direction == "neutral" else _verdict(better, thresholds.max_accuracy_drop)
        out.deltas.append(Delta("accuracy", f"{key[1]} {key[2]}", before, now, now - before, verdict))

    _throughput(out, prev, cur, (nights or [prev])[:max(1, thresholds.throughput_nights)], thresholds)
    p_bench, c_bench = _by_benchmark(prev.get("benchmarks", [])), _by_benchmark(cur.get("benchmarks", []))
    out.new = len(c_figs.keys() - p_figs.keys()) + len(c_bench.keys() - p_bench.keys())
    out.gone = len(p_figs.keys() - c_figs.keys()) + len(p_bench.keys() - c_bench.keys())
    return out


def _throughput(out: Comparison, prev: dict, cur: dict, nights: list[dict], thresholds: Thresholds) -> None:
    """Each benchmark's items/s against the median of its figures in `nights` run on this run's machine; a figure
    taken while other processes were busy, or with widely spread rounds, is left out of the median, and a change
    of such a figure is "not judged"."""
    c_bench = _by_benchmark(cur.get("benchmarks", []))
    machine = cur.get("benchmark_machine")
    same = [n for n in nights if n.get("benchmark_machine") == machine]
    if c_bench and not same and c_bench.keys() & _by_benchmark(prev.get("benchmarks", [])).keys():
        out.notes.append(f"the previous benchmarks ran on {prev.get('benchmark_machine')}, these on {machine}: "
                         "throughput is not compared")
        return
    out.throughput_runs = tuple(n.get("run_id") for n in same)
    by_night = [_by_benchmark(n.get("benchmarks", [])) for n in same]
    for key in sorted(c_bench):
        now = c_bench[key].get("items_per_s")
        earlier = [(b[key], n.get("run_id")) for b, n in zip(by_night, same, strict=True)
                   if key in b and _number(b[key].get("items_per_s")) and b[key]["items_per_s"] > 0]
        if not _number(now) or not now or not earlier:
            continue
        steady = [b["items_per_s"] for b, _ in earlier if not _unreliable(b, "")]
        reference = statistics.median(steady) if steady else statistics.median(b["items_per_s"] for b, _ in earlier)
        what = f"run {earlier[0][1]}" if len(earlier) == 1 else f"median of {len(steady)} of {len(earlier)} runs"
        change = now / reference - 1
        verdict = _verdict(change, thresholds.max_throughput_drop)
        unsure = _unreliable(c_bench[key], "this") or (None if steady else
                                                         _unreliable(earlier[0][0], f"run {earlier[0][1]}"))
        if verdict != "same" and unsure:
            verdict = "not judged"
            out.notes.append(f"{c_bench[key]['name']}: {change:+.1%} not judged ({unsure})")
        out.deltas.append(Delta("throughput", c_bench[key]["name"], reference, now, change, verdict,
                                "" if len(earlier) == 1 else what))


def _unreliable(bench: dict, which: str) -> str | None:
    """Why a throughput figure cannot support a regression or improvement verdict: it was taken while other
    processes were busy, or its rounds spread more than the change would have to exceed."""
    if bench.get("contended"):
        return f"{which} run contended: {bench['contended']}"
    if _number(bench.get("spread")) and bench["spread"] > LARGE_SPREAD:
        return f"{which} run's rounds spread {bench['spread']:.0%}"
    return None


class Unreadable(ValueError):
    """A history file that is JSON but not a run's snapshot; its text says what is wrong."""


def read_snapshot(path: Path) -> dict:
    """A run's snapshot, checked: a file without its figures and benchmarks lists is no run to compare with (read
    as one, every figure would be "new" and a regression against an older run missed)."""
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise Unreadable(f"a JSON {type(data).__name__}, not an object")
    version = data.get("format", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT:
        raise Unreadable(f"history format {version!r}, not one this mmtests reads (1 to {FORMAT}): a newer mmtests "
                         "wrote it, or it was edited")
    for key in ("figures", "benchmarks"):
        if key not in data:
            raise Unreadable(f"no {key!r}")
        if not isinstance(data[key], list) or not all(isinstance(x, dict) for x in data[key]):
            raise Unreadable(f"{key!r} is not a list of objects")
    return data


def compare_with_previous(history: Path, run: Run, snap: dict, thresholds: Thresholds) -> Comparison:
    """Compare a run with the newest readable run before it in the history (reads only)."""
    notes, nights = [], []
    for path in earlier(history, run.run_id, run.problems):
        if len(nights) >= max(1, thresholds.throughput_nights):
            break
        try:
            night = read_snapshot(path)
            if not nights:
                compare(night, snap, thresholds)  # the previous run must compare whole, or the next one is used
        except (ValueError, KeyError, TypeError, AttributeError, OSError) as err:  # JSON and UTF-8 errors included
            why = str(err) if isinstance(err, Unreadable) else f"{err.__class__.__name__}: {err}"
            problem = f"{'previous' if not nights else 'earlier'} run {path} could not be read ({why})"
            notes.append(f"{problem}; skipped")
            run.problems.append(problem)
            continue
        nights.append(night)
    if not nights:
        return Comparison(notes=[*notes, f"no earlier run in {history} to compare with"])
    comparison = compare(nights[0], snap, thresholds, nights)
    comparison.notes[:0] = notes
    return comparison
