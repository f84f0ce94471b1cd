"""This pytest session's records: its run id (shared by xdist workers and CI shards), its writer, the plan of
checks it collected, and the end of the run (`mmtests.figures.record_writer` does the writing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .figures.record_files import runs_dir
from .figures.record_writer import RecordWriter, new_run_id, publish

RUN_INPUT = "mmtests_run_id"  # key of the controller's run id in an xdist worker's `workerinput`
RUN_KEY = pytest.StashKey[str]()
WRITER_KEY = pytest.StashKey["RecordWriter"]()
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
