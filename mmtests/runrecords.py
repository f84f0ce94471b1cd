"""This pytest session's records: its run id (shared by xdist workers and CI shards), its writer, the plan of
checks it collected, and the end of the run (`mmtests.figures.record_writer` does the writing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .figures.record_files import anchored, runs_dir, unwritable
from .figures.record_writer import RecordWriter, new_run_id, new_session_id, publish

RUN_INPUT = "mmtests_run_id"  # key of the controller's run id in an xdist worker's `workerinput`
SESSION_INPUT = "mmtests_session"  # and of its session id: its workers are one session
RUN_KEY = pytest.StashKey[str]()
SESSION_KEY = pytest.StashKey[str]()
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


def session_id(config: pytest.Config) -> str:
    """Who writes: an xdist worker is its controller's session, any other session is its own (CI shards too)."""
    if SESSION_KEY not in config.stash:
        config.stash[SESSION_KEY] = getattr(config, "workerinput", {}).get(SESSION_INPUT) or new_session_id()
    return config.stash[SESSION_KEY]


def _writer_name(config: pytest.Config) -> str:
    """`main`, or the xdist worker id; in a shard `shard2of4-main`, `shard2of4-gw0`: shards' files sit together."""
    shard = config.getoption("--mm-shard")
    name = _worker(config) or "main"
    return f"shard{shard.replace('/', 'of')}-{name}" if shard else name


def hand_over_run_id(node) -> None:
    """From xdist's pytest_configure_node, on the controller: the worker writes under the controller's run id
    (through `workerinput`, so the process environment is left as it was)."""
    node.workerinput[RUN_INPUT] = start_run(node.config)
    node.workerinput[SESSION_INPUT] = session_id(node.config)


def option_path(config: pytest.Config, option: str) -> Path | None:
    """A path option's value, absolute: relative to where pytest was invoked (`anchored`), whatever pytest's
    rootdir and however the option was written (`--opt x`, `--opt=x`, `~`)."""
    value = config.getoption(option)
    return None if value is None else anchored(value, config.invocation_params.dir)


def records_path(config: pytest.Config) -> Path:
    """`--mm-records`: the merged file users read (default reports/records.jsonl, under the invocation directory)."""
    return option_path(config, "--mm-records")


def check_outputs(config: pytest.Config, baselines: dict[str, str]) -> None:
    """Before the first measurement: every folder the session will write (the records', the run's artifacts and,
    with --mm-save-baseline, the `baselines` of the models to run, name -> folder) can be made and written; else
    a usage error naming the folder and the fix (recorded, as a matrix error is)."""
    records = records_path(config)
    if records.is_dir():  # its runs would go beside it, into <parent>/<name>.d, and it could not be rewritten
        raise pytest.UsageError(f"mmtests: --mm-records {str(records)!r} is a folder; pass the path of a records file, "
                                f"e.g. --mm-records {str(records / 'records.jsonl')!r}")
    folder = runs_dir(records) / start_run(config)
    outputs = [(f"records file {str(records_path(config))!r}: its folder", folder / "artifacts", (),
                "pass --mm-records with another location")]
    outputs += [(f"--mm-save-baseline: the baseline folder of model {model!r}", Path(target),
                 ("outcomes.json", "fingerprint.safetensors"), "make it writable, or change the entry's `baseline` "
                 "(relative to the matrix file)") for model, target in sorted(baselines.items())]
    for what, where, files, fix in outputs:
        why = unwritable(where, files)
        if why:
            error = f"mmtests: {what} {str(where)!r} cannot be written: {why}; {fix}. Nothing was measured."
            if "records" not in what:
                record_usage_error(config, error)
            raise pytest.UsageError(error)


def session_writer(config: pytest.Config, env: dict | None = None) -> RecordWriter:
    """This process's writer, made on first use (by the plan or by the session); `env` starts its records."""
    if WRITER_KEY not in config.stash:
        config.stash[WRITER_KEY] = RecordWriter(records_path(config), run_id=start_run(config), writer=_writer_name(config),
                                                shard=config.getoption("--mm-shard"), session=session_id(config))
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
