"""Writing records: one JSON line per measured figure, appended (and flushed) the moment it is measured.

Each session, and each xdist worker of it, writes its own file (layout: `record_files`): a session that
crashes loses nothing of the runs before it. The first line describes the environment and the schema, a
`plan` line lists the checks collected, an `end` line closes the file; then `FILE` is rewritten, atomically,
as the merged run (`publish`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import re
import secrets
import shutil
import socket
import subprocess
import time
from importlib import metadata
from pathlib import Path

from ..errors import RecordsUnwritable
from .record_files import atomic_write, merged, run_folders, runs_dir
from .record_reader import read_folder
from .record_schema import BOUND_FIELDS, SCHEMA_VERSION

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


KEEP_RUNS = 10  # run folders kept beside FILE (older ones go once a newer run has figures)
INTERRUPTED = 2  # pytest.ExitCode.INTERRUPTED: Ctrl-C, the planned checks did not all run


def new_run_id() -> str:
    """A UTC timestamp to the microsecond: run ids sort in time order, and two sessions do not share one."""
    now = time.time()
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"


def new_session_id() -> str:
    """Who wrote a file: host, process and a random part. xdist workers carry their controller's; two sessions that
    share a records path or a run id never share one, so a reader can keep them apart."""
    host = re.sub(r"[^0-9A-Za-z_.-]", "_", socket.gethostname())[:32].strip(".") or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


@functools.cache
def _process_session(pid: int) -> str:
    """The session of writers made without one: one per process (a forked child gets its own)."""
    return new_session_id()


@contextlib.contextmanager
def _publishing(records: Path):
    """One publish at a time per records path (POSIX lock; elsewhere none): the last session to end rewrites FILE
    from what every session wrote before it, never from a stale read."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with records.with_name(f".{records.name}.lock").open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def publish(records: Path, keep: int = KEEP_RUNS) -> Path | None:
    """Rewrite FILE and its samples file, atomically, as the merged records of the newest run that has figures;
    then drop old run folders. A run without figures changes nothing: the previous records stay where they were."""
    if not runs_dir(records).is_dir():
        return None
    with _publishing(records):
        return _publish(records, keep)


def _publish(records: Path, keep: int) -> Path | None:
    folders = run_folders(records)
    newest = next((run for run in map(read_folder, reversed(folders)) if run.figures), None)
    if newest is None:
        return None
    atomic_write(records, merged(newest.sources))  # of a run written by mixed sessions, the one the report shows
    samples = records.with_name(f"{records.stem}-samples.jsonl")
    if newest.samples:
        atomic_write(samples, merged(newest.samples))
    else:
        samples.unlink(missing_ok=True)  # an older run's samples beside this run's records would mislead
    _prune([f for f in folders[:-keep] if f.name < newest.run_id])
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
                 shard: str | None = None, session: str | None = None):
        self.records = Path(path)  # FILE: rewritten as the merged run on close()
        self.run_id = run_id or new_run_id()
        self.writer = writer  # the file's name, made unique in the run folder when its first line is written
        self.session = session or _process_session(os.getpid())  # the plugin passes one per pytest session
        self.shard = shard  # "I/N" when the session is one shard of a run spread over CI jobs
        self.folder = runs_dir(self.records) / self.run_id
        self.path = self.folder / f"{writer}.jsonl"
        self.samples_path = self.folder / f"{writer}-samples.jsonl"
        self._file = self._samples = None
        self._claimed = False
        self.planned: set[str] = set()
        self.measured: set[str] = set()  # node ids (or test ids) with a figure
        self.figures = 0
        self.crashed = 0  # crashed checks (figures of outcome "crashed")
        self.started = self.ended = self.written = False
        if env is not None:
            self.start(env)

    def _write(self, record: dict) -> None:
        kind = record.pop("kind")
        lost = (f": figure {record.get('test_id')} {record.get('metric')} was measured but not recorded"
                if kind == "figure" else "")
        self._append("_file", self.path, {"kind": kind, "run_id": self.run_id, **record}, lost)

    def _claim(self) -> None:
        """Create this writer's file, a name no other session holds in the run folder (`main`, else `main-<session>`):
        two sessions on one run id each keep their own file, and their run lines say which session wrote them."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for name in (self.writer, f"{self.writer}-{self.session}"):
            try:
                os.close(os.open(self.folder / f"{name}.jsonl", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            except FileExistsError:
                continue
            self.writer, self.path = name, self.folder / f"{name}.jsonl"
            self.samples_path = self.folder / f"{name}-samples.jsonl"
            self._claimed = True
            return
        raise FileExistsError(f"{self.path} already exists")

    def _append(self, handle: str, path: Path, record: dict, lost: str = "") -> None:
        """One JSON line, flushed; the file opened on its first line (a session that records nothing leaves none).
        A file that stops taking lines is a RecordsUnwritable naming it, what was lost and the fix."""
        try:
            if not self._claimed:
                self._claim()
                path = self.path if handle == "_file" else self.samples_path
                if "writer" in record:
                    record["writer"] = self.writer
            if getattr(self, handle) is None:
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
            self._write({"kind": "run", "writer": self.writer, "session": self.session, "schema": SCHEMA_VERSION,
                         "started": time.time(),
                         "environment": env,
                         **({"shard": self.shard} if self.shard else {})})

    def plan(self, test_ids: list[str]) -> None:
        """The checks this session collected (node ids): the report names those left without a figure."""
        self.planned.update(test_ids)
        self._write({"kind": "plan", "writer": self.writer, "session": self.session, "test_ids": list(test_ids),
                     **({"shard": self.shard} if self.shard else {})})

    def figure(self, *, suite: str, test_id: str, metric: str, value: float | None, outcome: str = "measured",
               **fields) -> str:
        """Record one figure with its outcome (pass, fail, skip, crashed; measured when not judged) and any other
        fields."""
        reserved = {"kind", "run_id", "node"} & fields.keys()
        if reserved:
            raise ValueError(f"record fields {sorted(reserved)} are reserved; name them differently")
        node = _current_test()
        self._write({"kind": "figure", "suite": suite, "test_id": test_id, "metric": metric, "value": value,
                     "threshold": fields.pop("threshold", None), "outcome": outcome, **fields,
                     **({"node": node} if node else {})})
        self.figures += 1
        self.crashed += outcome == "crashed"
        self.measured.add(node or test_id)
        return outcome

    def check(self, *, suite: str, test_id: str, check, **where) -> str:
        """Record a judged (or measured) `mmtests.figures.Check`, its bound under the schema's field for its kind."""
        fields = check.record_fields()
        bound = fields.pop("bound")
        if check.kind in BOUND_FIELDS:
            fields[BOUND_FIELDS[check.kind]] = bound
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
        self._write({"kind": "end", "writer": self.writer, "session": self.session, "finished": time.time(),
                     "planned": len(self.planned),
                     "measured": len(self.measured), "figures": self.figures, "crashed": self.crashed,
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
