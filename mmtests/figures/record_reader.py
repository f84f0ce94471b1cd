"""Reading records back: a run's environment, plan, figures and end markers, merged over the files it wrote
(layout: `record_files`; line format: `record_schema`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .record_files import RUN_ID, SAMPLES, run_folders, runs_dir, sample_files, writer_files
from .record_schema import ENDINGS, NORMAL_ENDS, SCHEMA_VERSION, figure_problem


@dataclass
class Run:
    run_id: str = "unknown"
    environment: dict = field(default_factory=dict)
    figures: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # unreadable lines, reported rather than fatal
    planned: list[str] = field(default_factory=list)  # node ids of the checks the session collected
    ends: dict[str, list[dict]] = field(default_factory=dict)  # writer -> its end lines (none: killed or crashed)
    sources: list[Path] = field(default_factory=list)  # the files read, merged in this order
    samples: list[Path] = field(default_factory=list)
    newer: list[Run] = field(default_factory=list)  # later runs of the same records, shown here for lack of figures
    shards: dict[int, set[int]] = field(default_factory=dict)  # shard count N -> indices I that wrote records
    headed: bool = False  # a run header (environment) line was read
    errors: list[str] = field(default_factory=list)  # `error` texts of the run and end lines (why a session stopped)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (file:line, why) of figure lines skipped
    apart: str | None = None  # the run id was written by sessions that are not one run: which, and which is shown
    overlapping: list[Run] = field(default_factory=list)  # other runs of these records that ran at the same time
    started: float | None = None  # the earliest run header's time
    finished: float | None = None  # the latest end line's time

    @property
    def span(self) -> tuple[float, float] | None:
        """When the run ran (an unfinished run until now and on); None when its start is unknown."""
        if self.started is None:
            return None
        return self.started, self.finished if self.finished is not None and not self.unended else float("inf")

    @property
    def missing_shards(self) -> list[str]:
        """Shards of a run spread over CI jobs (--mm-shard I/N) that wrote nothing: lost jobs, or artifacts not
        gathered into this folder."""
        return [f"{i}/{n}" for n, seen in sorted(self.shards.items()) for i in range(1, n + 1) if i not in seen]

    def select(self, suite: str, metric: str | None = None) -> list[dict]:
        """The suite's measured figures (of `metric`); crashed checks measured none (see `crashed`)."""
        return [f for f in self.figures if f["suite"] == suite and (metric is None or f["metric"] == metric)
                and f["outcome"] != "crashed"]

    @property
    def crashed(self) -> list[dict]:
        """The figures of checks that crashed (outcome "crashed"), one per check."""
        return [f for f in self.figures if f["outcome"] == "crashed"]

    def crashes(self) -> dict[str, list[dict]]:
        """The crashed checks grouped by the exception they met (its class, message and the place it was raised: as
        the session groups them, and so that xdist workers or shards that each met it are one entry), under the
        check that met it first, in the order met: a crash that took down several checks is one entry."""
        groups: dict[tuple, list[dict]] = {}
        for f in self.crashed:
            way = (f.get("error"), f.get("message"), f.get("at")) if f.get("at") else (f.get("earlier") or f["test_id"],)
            groups.setdefault(way, []).append(f)
        firsts = [next((g.get("check") for g in figures if not g.get("earlier")), None) for figures in groups.values()]
        return {str(first or figures[0].get("earlier") or figures[0]["test_id"]): figures
                for first, figures in zip(firsts, groups.values(), strict=True)}

    @property
    def unended(self) -> list[str]:
        """Writers with no end line (killed, crashed or still running), or whose end says they stopped early:
        interrupted, pytest's internal error, a usage error (exit status 2, 3, 4)."""
        return [w for w, ends in self.ends.items() if not ends or any(_status(e) not in NORMAL_ENDS for e in ends)]

    @property
    def killed(self) -> list[str]:
        """Writers with no end line at all."""
        return [w for w, ends in self.ends.items() if not ends]

    def exit_status(self, writers: list[str] | None = None) -> int | None:
        """The most telling exit status the end lines (of `writers`, default all) give: a stop before the checks
        were done first (3, 4, 2, others), then 5, 1, 0; None when no end line gives one (an older format)."""
        found = {_status(e) for w, ends in self.ends.items() if writers is None or w in writers for e in ends} - {None}
        order = (3, 4, 2, *sorted(found - {0, 1, 2, 3, 4, 5}), 5, 1, 0)
        return next((s for s in order if s in found), None)

    def ending(self, writers: list[str] | None = None) -> str | None:
        """How the session ended when not cleanly (see ENDINGS), with the `error` text recorded; None for exit
        status 0 or none recorded."""
        status = self.exit_status(writers)
        if not status:
            return None
        text = ENDINGS.get(status, f"exit status {status}")
        if self.errors:
            return f"{text}: {self.errors[0]}"
        return text + (", such as an error in the matrix or in an option" if status == 4 else "")

    @property
    def complete(self) -> bool | None:
        """Every writer ended, and every shard wrote; None for records of an older format, which have no end lines."""
        return not (self.unended or self.missing_shards) if self.ends else None

    def unmeasured(self) -> list[str]:
        """Planned checks with no figure (matched on node id, or on the test id for figures that lack one)."""
        done = {f.get("node") or f["test_id"] for f in self.figures}
        return [t for t in dict.fromkeys(self.planned) if t not in done and _param(t) not in done]

    def add(self, record: dict, writer: str | None) -> str | None:
        """Take one record; a problem (why it was not taken) or None."""
        kind = record.get("kind")
        writer = record.get("writer", writer)
        if kind == "figure":
            problem = figure_problem(record)
            if problem is None:
                self.figures.append(record)
            return problem
        error = _one_line(record.get("error")) if kind in ("run", "end") else None
        if error and error not in self.errors:
            self.errors.append(error)
        if kind == "run":
            self.headed = True
            if _is_time(record.get("started")):
                self.started = min(self.started or record["started"], record["started"])
            schema = record.get("schema")
            if isinstance(schema, int) and schema > SCHEMA_VERSION:
                return (f"a run header of records schema {schema}, newer than this mmtests reads ({SCHEMA_VERSION}): "
                        "upgrade mmtests to read these records")
            if not self.environment and isinstance(record.get("environment"), dict):
                self.environment = record["environment"]
            problem = self._shard(record)
            if problem:
                return problem
        elif kind == "plan":
            problem = self._shard(record)
            if problem:
                return problem
            ids = record.get("test_ids")
            if not isinstance(ids, list) or not all(isinstance(t, str) for t in ids):
                return "a plan whose test_ids is not a list of strings"
            self.planned += ids
        elif kind == "end":
            self.ends.setdefault(str(writer), []).append(record)
            if _is_time(record.get("finished")):
                self.finished = max(self.finished or record["finished"], record["finished"])
            return None
        else:
            return f"unknown record kind {kind!r}"
        if writer is not None:
            self.ends.setdefault(str(writer), [])  # a writer that started: it owes an end line
        return None


    def _shard(self, record: dict) -> str | None:
        shard = record.get("shard")
        if shard is None:
            return None
        try:
            index, count = (int(x) for x in str(shard).split("/"))
            assert 1 <= index <= count
        except (ValueError, AssertionError):
            return f"shard {shard!r} is not I/N"
        self.shards.setdefault(count, set()).add(index)
        return None


def _is_time(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _session_of(lines: list) -> str | None:
    """The session a writer file's (or a merged segment's) lines name; None for records of an older format."""
    return next((r["session"] for _, r, _ in lines if isinstance(r, dict) and isinstance(r.get("session"), str)), None)


def _apart(run_id: str, groups: dict) -> tuple[set, str | None]:
    """Of the line groups (one writer file, or one writer's segment of a merged copy, each of one session) of one
    run: those to read as the run, and why others were left out. Several sessions are one run only as CI shards
    (each its own shard) or as one session's xdist workers (one session id); otherwise they are kept apart: the
    newest session's figures are read, never paired with another's, and the others are named."""
    sessions: dict = {}
    for key, lines in groups.items():
        records = [r for _, r, _ in lines if isinstance(r, dict)]
        info = sessions.setdefault(_session_of(lines), {"keys": set(), "shards": set(), "figures": 0, "started": 0})
        info["keys"].add(key)
        info["shards"] |= {str(r["shard"]) for r in records if r.get("kind") in ("run", "plan") and "shard" in r}
        info["figures"] += sum(r.get("kind") == "figure" for r in records)
        info["started"] = max([info["started"], *(r["started"] for r in records if r.get("kind") == "run"
                                                   and _is_time(r.get("started")))])
    shards = [info["shards"] for info in sessions.values()]
    if len(sessions) < 2 or (all(len(s) == 1 for s in shards) and len(set().union(*shards)) == len(shards)):
        return set(groups), None
    order = sorted(sessions, key=lambda s: (sessions[s]["figures"] > 0, sessions[s]["started"], str(s)))
    shown = order[-1]

    def named(s) -> str:
        info = sessions[s]
        return f"{s or 'no session id'} ({', '.join(sorted(map(str, info['keys'])))}: {info['figures']} figures)"

    why = (f"run {run_id} was written by {len(sessions)} pytest sessions that are neither shards of one CI run nor "
           f"xdist workers of one session: {', '.join(named(s) for s in order)}. Two sessions wrote with the same "
           f"--mm-run-id, or into the same records folder; their figures are kept apart: this report shows session "
           f"{shown or 'no session id'} only. Give each session its own --mm-records, or its own --mm-run-id "
           "(shards of one CI run: also its own --mm-shard I/N)")
    return sessions[shown]["keys"], why


def _one_line(text) -> str | None:
    """An error text of several lines (a matrix error lists one problem a line) on one: a report line, a stderr line."""
    if not isinstance(text, str):
        return None
    out = ""
    for line in filter(None, (part.strip() for part in text.splitlines())):
        out += (" " if out.endswith(":") else "; ") + line if out else line
    return out or None


def _status(end: dict) -> int | None:
    """The exit status an end line gives (2 for one that says interrupted), or None."""
    status = end.get("exitstatus")
    if isinstance(status, int) and not isinstance(status, bool):
        return status
    return 2 if end.get("interrupted") else None


def _param(node_id: str) -> str:
    return node_id.split("[", 1)[-1].removesuffix("]") if "[" in node_id else node_id


def _decode(raw: bytes) -> tuple[dict | None, str | None]:
    """One line: the record, or why it is not one."""
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except json.JSONDecodeError as err:
        return None, f"not JSON ({err.msg})"
    if not isinstance(record, dict):
        return None, f"a JSON {type(record).__name__}, not an object"
    run_id = record.get("run_id")
    if run_id is not None and not (isinstance(run_id, str) and RUN_ID.fullmatch(run_id) and run_id.strip(".")):
        return None, f"run_id {run_id!r} is not a run id"
    return record, None


def _lines(path: Path, problems: list[str]):
    """(file:line, record, problem) of each line of a JSON-lines file, in order: the record None, or the problem
    None; a file that cannot be read goes to `problems`."""
    try:
        data = path.read_bytes()
    except OSError as err:
        problems.append(f"{path}: could not be read ({err.__class__.__name__}: {err})")
        return
    for number, raw in enumerate(data.splitlines(), 1):
        if raw.strip():
            record, problem = _decode(raw)
            yield f"{path}:{number}", record, problem


def _skip(where: str, record: dict | None, problem: str, problems: list[str], unreadable: list) -> None:
    """A line not taken: named in `problems`, and in `unreadable` when it is a figure's (its outcome is unknown)."""
    problems.append(f"{where}: {problem}; line skipped")
    if isinstance(record, dict) and record.get("kind") == "figure":
        unreadable.append((where, problem))


def read_folder(folder: Path) -> Run:
    """One run, every writer's file merged (those of one session, or shards of one run: see `_apart`); a writer file
    without an end line means that writer never finished."""
    problems: list[str] = []
    files = {path: list(_lines(path, problems)) for path in writer_files(folder)}
    keep, apart = _apart(folder.name, {path.stem: lines for path, lines in files.items()})
    samples = [p for p in sample_files(folder) if p.name.removesuffix(SAMPLES) in keep]
    run = Run(folder.name, sources=[p for p in files if p.stem in keep], samples=samples, problems=problems, apart=apart)
    for path in run.sources:
        writer = path.stem
        run.ends.setdefault(writer, [])
        for where, record, problem in files[path]:
            problem = problem or run.add(record, writer)
            if problem:
                _skip(where, record, problem, run.problems, run.unreadable)
    return run


def read_file(path: Path) -> list[Run]:
    """The runs of one JSON-lines file (a merged copy, or a file of the older one-file-per-session format)."""
    runs: dict[str, Run] = {}
    problems: list[str] = []
    unreadable: list[tuple[str, str]] = []  # figure lines of no run for sure (their run_id is not one)
    segments: dict[str, dict[int, list]] = {}  # run id -> one group of lines per writer segment (one session each)
    current, segment, session = "unknown", 0, None
    for where, record, problem in _lines(path, problems):
        if problem:
            _skip(where, record, problem, problems, unreadable)
            continue
        if record.get("run_id") not in (None, current) or record.get("session", session) != session:
            segment += 1  # a merged copy holds each writer's file whole, one after the other
        current, session = record.get("run_id") or current, record.get("session", session)
        segments.setdefault(current, {}).setdefault(segment, []).append((where, record, None))
    for run_id, groups in segments.items():
        keep, apart = _apart(run_id, groups)
        run = runs[run_id] = Run(run_id, sources=[path], apart=apart)
        for where, record, _ in (line for key in sorted(keep) for line in groups[key]):
            problem = run.add(record, None)
            if problem:
                _skip(where, record, problem, problems, run.unreadable)
    if not runs:
        runs["unknown"] = Run(sources=[path])
        if not problems:
            problems.append(f"{path}: empty, no record in it (nothing was recorded)")
    newest = max(runs.values(), key=lambda r: (_has_figures(r), r.run_id))
    newest.problems += problems  # bad lines belong to no run for sure: shown with the run the report is about
    newest.unreadable += unreadable
    samples = path.with_name(f"{path.stem}{SAMPLES}")
    if samples.is_file():
        newest.samples = [samples]
    return list(runs.values())


def read_run(records: str | Path, run_id: str | None = None) -> Run:
    """The newest run with figures (or the run `run_id`) among `<stem>.d/` (every writer merged) and FILE itself;
    later runs that have none (crashed before their first figure, or measured nothing) are kept in `newer`, to be
    named, and runs of other sessions that ran at the same time in `overlapping`."""
    records = Path(records)
    runs = {r.run_id: r for r in map(read_folder, run_folders(records))}
    if records.is_file():
        for run in read_file(records):
            runs.setdefault(run.run_id, run)  # the folder, when there is one, is the original
    if run_id is not None and run_id not in runs:
        return Run(run_id, problems=[f"{records}: no run {run_id} there, nor in {runs_dir(records)} (runs: "
                                     f"{', '.join(sorted(runs)) or 'none'})"])
    if not runs:
        return Run(problems=[f"{records}: no records there, nor in {runs_dir(records)}"])
    ordered = sorted(runs.values(), key=lambda r: r.run_id)
    shown = runs[run_id] if run_id else next((r for r in reversed(ordered) if _has_figures(r)), ordered[-1])
    shown.newer = [r for r in ordered if r.run_id > shown.run_id and r.run_id != "unknown"]
    shown.overlapping = [r for r in ordered if r is not shown and r not in shown.newer and _has_figures(r)
                         and _overlap(r.span, shown.span)]
    if not shown.headed and (shown.figures or shown.unreadable or shown.planned or shown.ends):
        shown.problems.append("no run header (environment) line: the device, package versions and git sha of this "
                              "run are unknown (a records file cut at its start, or written by hand?)")
    return shown


def _overlap(one: tuple | None, two: tuple | None) -> bool:
    return one is not None and two is not None and one[0] < two[1] and two[0] < one[1]


def _has_figures(run: Run) -> bool:
    """Figures, read or not: a run whose figure lines are all unreadable is still the run to report (and judge)."""
    return bool(run.figures or run.unreadable)


SWEEP_FIELDS = ("model", "modality", "batch_size", "items_per_s")


def benchmark_sweeps(bench: dict | None) -> list[dict]:
    """Benchmarks of one model, modality and batch size each (pytest-benchmark JSON): their extra_info, named."""
    return [{"name": b["name"], **b["extra_info"]} for b in (bench or {}).get("benchmarks", [])
            if all(b.get("extra_info", {}).get(k) is not None for k in SWEEP_FIELDS)]
