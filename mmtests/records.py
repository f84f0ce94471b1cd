"""Records: one JSON line per measured figure, appended (and flushed) the moment it is measured.

Each session, and each xdist worker of it, writes its own file, `<FILE stem>.d/<run id>/<writer>.jsonl`
(layout: `mmtests.report.records_io`): a session that crashes loses nothing of the runs before it. The
first line describes the environment, a `plan` line lists the checks collected, an `end` line closes the
file; at the end of the session `FILE` (`--mm-records`) is rewritten, atomically, as the merged run.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
from importlib import metadata
from pathlib import Path

import pytest

from .errors import RecordsUnwritable
from .report.records_io import atomic_write, merged, read_folder, run_folders, runs_dir, sample_files, writer_files

PACKAGES = ("torch", "torchvision", "transformers", "open_clip_torch", "datasets", "mmtests")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_sha(where: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def environment(device: str, config: str) -> dict:
    """What a reader needs to compare two runs: device, versions, code revision, config used."""
    import torch

    name = torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor() or platform.machine()
    return {
        "device": device,
        "device_name": name,
        "cuda": torch.version.cuda if device.startswith("cuda") else None,
        "python": platform.python_version(),
        "versions": {p: _version(p) for p in PACKAGES},
        "git_sha": _git_sha(Path.cwd()),
        "config": config,
    }


RUN_INPUT = "mmtests_run_id"  # key of the controller's run id in an xdist worker's `workerinput`
RUN_KEY = pytest.StashKey[str]()
WRITER_KEY = pytest.StashKey["RecordWriter"]()
KEEP_RUNS = 10  # run folders kept beside FILE (older ones go once a newer run has figures)
INTERRUPTED = 2  # pytest.ExitCode.INTERRUPTED: Ctrl-C, the planned checks did not all run


def new_run_id() -> str:
    """A UTC timestamp to the microsecond: run ids sort in time order, and two sessions do not share one."""
    now = time.time()
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"


def _worker(config: pytest.Config) -> str | None:
    return getattr(config, "workerinput", {}).get("workerid")  # "gw3" under pytest-xdist


def start_run(config: pytest.Config) -> str:
    """This session's run id, made on first use: --mm-run-id where given (CI shards of one run share it), an
    xdist worker's controller's (see `hand_over_run_id`), else a new one."""
    if RUN_KEY not in config.stash:
        config.stash[RUN_KEY] = (getattr(config, "workerinput", {}).get(RUN_INPUT) or config.getoption("--mm-run-id")
                                 or new_run_id())
    return config.stash[RUN_KEY]


def _writer_name(config: pytest.Config) -> str:
    """`main`, or the xdist worker id; in a shard `shard2of4-main`, `shard2of4-gw0`: shards' files sit together."""
    shard = config.getoption("--mm-shard")
    name = _worker(config) or "main"
    return f"shard{shard.replace('/', 'of')}-{name}" if shard else name


def hand_over_run_id(node) -> None:
    """From xdist's pytest_configure_node, on the controller: the worker writes under the controller's run id
    (through `workerinput`, so the process environment is left as it was)."""
    node.workerinput[RUN_INPUT] = start_run(node.config)


def records_path(config: pytest.Config) -> Path:
    """`--mm-records` (relative to the rootdir): the merged file users read."""
    path = Path(config.getoption("--mm-records"))
    return path if path.is_absolute() else Path(config.rootpath) / path


def session_writer(config: pytest.Config, env: dict | None = None) -> RecordWriter:
    """This process's writer, made on first use (by the plan or by the session); `env` starts its records."""
    if WRITER_KEY not in config.stash:
        config.stash[WRITER_KEY] = RecordWriter(records_path(config), run_id=start_run(config),
                                                writer=_writer_name(config), shard=config.getoption("--mm-shard"))
    writer = config.stash[WRITER_KEY]
    if env is not None:
        writer.start(env)
    return writer


def write_plan(config: pytest.Config, test_ids: list[str], selected_none: bool = False) -> None:
    """From pytest_collection_finish: the node ids of the checks this session will run. Nothing planned, nothing
    written (a session of other tests leaves no run folder), except in a CI shard (it says it ran, even with
    nothing of its own to check) and when a selection (-k, -m) left none of mmtests' checks and nothing else
    (`selected_none`): the report then says the newest session measured nothing, rather than show an older one."""
    if test_ids or selected_none or config.getoption("--mm-shard"):
        session_writer(config).plan(test_ids)


def record_usage_error(config: pytest.Config, error: str) -> None:
    """A session stopped by a matrix error before collecting: its run says so (exit status 4), so the report of
    these records does not present the previous run as the newest. Best effort: unwritable records stay unsaid."""
    try:
        writer = session_writer(config)
        writer.plan([])
        writer.end(4, error=error)
        writer.close()
    except OSError:
        pass


def finish_run(config: pytest.Config, exitstatus: int | None = None) -> None:
    """From pytest_sessionfinish (trylast, after the session fixtures' teardown): the end line where the `mm`
    fixture wrote none, then FILE rewritten; on an xdist controller, once every worker is done."""
    writer = config.stash.get(WRITER_KEY, None)
    if writer is not None:
        writer.end(exitstatus)
        writer.close()
    elif not _worker(config) and RUN_KEY in config.stash:
        if (runs_dir(records_path(config)) / config.stash[RUN_KEY]).is_dir():
            publish(records_path(config))


def publish(records: Path, keep: int = KEEP_RUNS) -> Path | None:
    """Rewrite FILE and its samples file, atomically, as the merged records of the newest run that has figures;
    then drop old run folders. A run without figures changes nothing: the previous records stay where they were."""
    folders = run_folders(records)
    newest = next((f for f in reversed(folders) if read_folder(f).figures), None)
    if newest is None:
        return None
    atomic_write(records, merged(writer_files(newest)))
    samples = records.with_name(f"{records.stem}-samples.jsonl")
    if sample_files(newest):
        atomic_write(samples, merged(sample_files(newest)))
    else:
        samples.unlink(missing_ok=True)  # an older run's samples beside this run's records would mislead
    _prune([f for f in folders[:-keep] if f.name < newest.name])
    return records


def _prune(folders: list[Path]) -> None:
    idle = time.time() - 3600  # a folder written to in the last hour may be a session still running
    for folder in folders:
        try:
            if all(p.stat().st_mtime < idle for p in folder.iterdir()):
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:  # removed meanwhile by another session's publish
            pass


def _current_test() -> str | None:
    """The node id of the test being run (pytest sets PYTEST_CURRENT_TEST to "<node id> (call)")."""
    current = os.environ.get("PYTEST_CURRENT_TEST")
    return current.rsplit(" (", 1)[0] if current else None


class RecordWriter:
    """One session's (or one xdist worker's) records, a JSON line each, flushed as written; `close()` ends them."""

    def __init__(self, path: str | Path, env: dict | None = None, *, run_id: str | None = None, writer: str = "main",
                 shard: str | None = None):
        self.records = Path(path)  # FILE: rewritten as the merged run on close()
        self.run_id = run_id or new_run_id()
        self.writer = writer
        self.shard = shard  # "I/N" when the session is one shard of a run spread over CI jobs
        self.folder = runs_dir(self.records) / self.run_id
        self.path = self.folder / f"{writer}.jsonl"
        self.samples_path = self.folder / f"{writer}-samples.jsonl"
        self._file = self._samples = None
        self.planned: set[str] = set()
        self.measured: set[str] = set()  # node ids (or test ids) with a figure
        self.figures = 0
        self.started = self.ended = self.written = False
        if env is not None:
            self.start(env)

    def _write(self, record: dict) -> None:
        kind = record.pop("kind")
        lost = (f": figure {record.get('test_id')} {record.get('metric')} was measured but not recorded"
                if kind == "figure" else "")
        self._append("_file", self.path, {"kind": kind, "run_id": self.run_id, **record}, lost)

    def _append(self, handle: str, path: Path, record: dict, lost: str = "") -> None:
        """One JSON line, flushed; the file opened on its first line (a session that records nothing leaves none).
        A file that stops taking lines is a RecordsUnwritable naming it, what was lost and the fix."""
        try:
            if getattr(self, handle) is None:
                self.folder.mkdir(parents=True, exist_ok=True)
                setattr(self, handle, path.open("a", encoding="utf-8"))
            f = getattr(self, handle)
            f.write(json.dumps(record) + "\n")
            f.flush()
            self.written = True
        except OSError as err:
            raise RecordsUnwritable(
                f"records file {path} cannot be written ({err.strerror or err}){lost}; free space or raise the "
                "file-size limit (ulimit -f), or pass --mm-records with another location") from None

    def start(self, env: dict) -> None:
        """The run header: the environment, once."""
        if not self.started:
            self.started = True
            self._write({"kind": "run", "writer": self.writer, "started": time.time(), "environment": env,
                         **({"shard": self.shard} if self.shard else {})})

    def plan(self, test_ids: list[str]) -> None:
        """The checks this session collected (node ids): the report names those left without a figure."""
        self.planned.update(test_ids)
        self._write({"kind": "plan", "writer": self.writer, "test_ids": list(test_ids),
                     **({"shard": self.shard} if self.shard else {})})

    def figure(self, *, suite: str, test_id: str, metric: str, value: float | None, threshold: float | None = None,
               outcome: str | None = None, **fields) -> str:
        """Record one figure; outcome defaults to pass/fail against `threshold`, or 'measured'."""
        reserved = {"kind", "run_id", "node"} & fields.keys()
        if reserved:
            raise ValueError(f"record fields {sorted(reserved)} are reserved; name them differently")
        if outcome is None:
            outcome = "measured" if threshold is None or value is None else ("pass" if value >= threshold else "fail")
        node = _current_test()
        self._write({"kind": "figure", "suite": suite, "test_id": test_id, "metric": metric, "value": value,
                     "threshold": threshold, "outcome": outcome, **fields, **({"node": node} if node else {})})
        self.figures += 1
        self.measured.add(node or test_id)
        return outcome

    def check(self, *, suite: str, test_id: str, check, **where) -> str:
        """Record a judged (or measured) `mmtests.checks.Check`; min/max bounds keep the report's field names."""
        fields = check.record_fields()
        bound = fields.pop("bound")
        if check.kind == "min":
            fields["threshold"] = bound
        elif check.kind == "max":
            fields["max_allowed"] = bound
        elif check.kind == "baseline":
            fields["tolerance"] = bound
        return self.figure(suite=suite, test_id=test_id, **fields, **where)

    def samples(self, *, model: str, key: str, samples: dict) -> None:
        """Per-sample outcomes of one check, one JSON line, in a file beside the records (as lmms-eval's
        --log_samples): a red gate can be read sample by sample, and two runs compared item by item."""
        record = {"run_id": self.run_id, "model": model, "key": key, "samples": samples}
        self._append("_samples", self.samples_path, record, f": the per-sample outcomes of {model} {key} were not recorded")

    def end(self, exitstatus: int | None = None, error: str | None = None) -> None:
        """The end line, with the planned and measured counts and pytest's exit status (and `error`, why the
        session stopped before measuring); once, and again only to say the session did not end normally. A
        writer that wrote nothing writes no end."""
        interrupted = exitstatus == INTERRUPTED
        # After the `mm` fixture's end line, pytest's own exit status is written again only when the session did
        # not end normally: interrupted (2), an internal error (3), a usage error (4).
        if (self.ended and exitstatus not in (INTERRUPTED, 3, 4)) or not self.written:
            return
        self.ended = True
        self._write({"kind": "end", "writer": self.writer, "finished": time.time(), "planned": len(self.planned),
                     "measured": len(self.measured), "figures": self.figures,
                     **({} if exitstatus is None else {"exitstatus": int(exitstatus)}),
                     **({"error": error} if error else {}),
                     **({"interrupted": True} if interrupted else {})})

    def close(self) -> None:
        """End the records, close the files, and rewrite FILE as the newest run's merged records."""
        self.end()
        for f in (self._file, self._samples):
            if f is not None:
                f.close()
        self._file = self._samples = None
        publish(self.records)
