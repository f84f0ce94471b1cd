"""The pytest plugin: options, markers, matrix parametrization, and the session fixtures suites use.

Registered through the `pytest11` entry point, so any `pytest` run with mmtests installed has it.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .errors import RecordsUnwritable
from .figures.check import MEASURED
from .mmsession import OUTCOME, MMSession, session_matrix
from .options import check_options, shard_numbers
from .runrecords import check_outputs, finish_run, hand_over_run_id, write_plan

if TYPE_CHECKING:  # the matrix is read on first use, not when pytest loads the plugin
    from .config import Matrix

MARKERS = {
    "gpu": "needs a CUDA device; skipped without one",
    "slow": "takes minutes (e.g. retrains a model); deselected by default, run with -m slow",
    "clip": "CLIP-style dual-encoder suites",
    "llava": "LLaVA-style vision-language suites",
}
PACKAGE = Path(__file__).resolve().parent
FIGURES_KEY = pytest.StashKey[list]()  # rows of the session's figures table: check, metric, value, bound, verdict
CRASHED_KEY = pytest.StashKey[list]()  # the crashed checks' reports' crash properties (`mmtests.crashes`)
DESELECTED_CHECKS = pytest.StashKey[bool]()  # a selection (-k, -m, --mm-shard) left out checks of mmtests


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mmtests", "multimodal model test matrix")
    group.addoption("--mm-config", default=None, metavar="FILE",
                    help="matrix TOML (models, datasets, prompt sets, expectations); default: the embedded zoo. "
                         "Relative paths given to mmtests' options are relative to the directory pytest is run from")
    group.addoption("--mm-model", action="append", default=None, metavar="NAME",
                    help="run only this model of the matrix (repeatable)")
    group.addoption("--mm-dataset", action="append", default=None, metavar="NAME",
                    help="run only this dataset of the matrix (repeatable)")
    group.addoption("--mm-records", default="reports/records.jsonl", metavar="FILE",
                    help="JSON-lines file of the latest run's figures, rewritten at the end of each session; each session "
                         "writes its own files under <FILE stem>.d/ as it goes (relative: to the directory pytest is "
                         "run from)")
    group.addoption("--mm-device", default="auto", metavar="auto|cpu|cuda",
                    help="device for model suites (auto: cuda when available)")
    group.addoption("--mm-online", action="store_true",
                    help="allow downloads from model/dataset hubs (default: offline, missing entries are skipped)")
    group.addoption("--mm-batch-size", default=None, metavar="N",
                    help="images per forward and questions per generate() batch (default: 64 / 32 on CPU, 256 / 64 on CUDA)")
    group.addoption("--mm-shard", default=None, metavar="I/N",
                    help="run shard I of N (1-based): each model's checks go to one shard (by a stable hash of its "
                         "name); tests that belong to no model run in shard 1")
    group.addoption("--mm-run-id", default=None, metavar="ID",
                    help="the run id of the records (default: a UTC timestamp); CI shards of one run pass the same "
                         "one, so that one report merges them: a sortable name, e.g. $(date -u +%%Y%%m%%dT%%H%%M%%SZ)")
    group.addoption("--mm-gpus", default=None, metavar="N",
                    help="with pytest-xdist: pin worker k to GPU k mod N (sets CUDA_VISIBLE_DEVICES per worker)")
    group.addoption("--mm-strict-images", action="store_true",
                    help="an image that cannot be decoded fails its dataset (default: left out, counted and named; "
                         "also MMTESTS_STRICT_IMAGES=1)")
    group.addoption("--mm-require-all", action="store_true",
                    help="a model or dataset that is not available here fails instead of skipping (for CI)")
    group.addoption("--mm-save-baseline", action="store_true",
                    help="record this run as the known-good baseline of every model whose entry names a `baseline` "
                         "folder (updates the checks that ran, keeps the others); gates against baselines are "
                         "measured, not judged, in such a run")


def pytest_configure(config: pytest.Config) -> None:
    check_options(config)  # every option's value, before anything loads
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    worker = getattr(config, "workerinput", {}).get("workerid")  # "gw3" under pytest-xdist
    gpus = config.getoption("--mm-gpus")
    if worker and gpus and "CUDA_VISIBLE_DEVICES" not in os.environ:
        # Set before anything imports torch in this worker: one device per worker, round robin.
        os.environ["CUDA_VISIBLE_DEVICES"] = str(int(worker.removeprefix("gw")) % gpus)
    config.pluginmanager.register(FiguresTable(config), "mmtests-figures-table")
    if any(config.getoption(option) for option in ("--mm-config", "--mm-model", "--mm-dataset")):
        session_matrix(config)  # a matrix the user names is checked before anything is collected


def _answer_cases(matrix: Matrix) -> list[tuple]:
    """(check, question kind) pairs: kinds with a threshold, and for generated sets every kind (reported)."""
    from .data.facts import KINDS

    cases = []
    for c in matrix.answers:
        kinds = dict(c.min_accuracy)
        if matrix.question_sets[c.question_set].questions == "shapes":
            kinds = {k: kinds.get(k) for k in KINDS}
        cases += [(c, k, kinds[k]) for k in kinds]
    return cases


def pope_sets(qset) -> tuple[str, ...]:
    """The POPE sets a question set is scored on: generated sets have the three (random, popular, adversarial); a
    dataset whose `kind_column` names each question's set has them too, and all its questions together ("all");
    a dataset without it, all its questions only."""
    from .data.facts import POPE_KINDS

    if qset.questions == "shapes":
        return POPE_KINDS
    return ("all", *POPE_KINDS) if qset.kind_column else ("all",)


def _pope_cases(matrix: Matrix) -> list[tuple]:
    return [(c, s) for c in matrix.pope for s in pope_sets(matrix.question_sets[c.question_set])]


PARAMETRIZED = {"zero_shot_check", "gain_check", "retrieval_check", "stability_check",
                "attention_check", "answers_check", "answer_case",
                "pope_case"}  # the fixtures the matrix parametrizes


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if not PARAMETRIZED & set(metafunc.fixturenames):
        return
    matrix = session_matrix(metafunc.config)
    for fixture, checks in (("zero_shot_check", matrix.zero_shot), ("gain_check", matrix.prompt_gain),
                            ("retrieval_check", matrix.retrieval),
                            ("stability_check", matrix.stability), ("attention_check", matrix.attention),
                            ("answers_check", matrix.answers)):
        if fixture in metafunc.fixturenames:
            metafunc.parametrize(fixture, checks, ids=[c.id for c in checks])
    if "answer_case" in metafunc.fixturenames:
        cases = _answer_cases(matrix)
        metafunc.parametrize("answer_case", cases, ids=[f"{c.id}/{k}" for c, k, _ in cases])
    if "pope_case" in metafunc.fixturenames:
        cases = _pope_cases(matrix)
        metafunc.parametrize("pope_case", cases, ids=[f"{c.id}/{s}" for c, s in cases])


def is_mmtests_item(item: pytest.Item) -> bool:
    """A test of mmtests' own (its suites, or one using the `mm` fixture): the only ones the plugin touches,
    so that installing mmtests changes no other project's tests."""
    return "mm" in getattr(item, "fixturenames", ()) or Path(str(item.path)).is_relative_to(PACKAGE)


def skip_gpu_items_without_cuda(items: list[pytest.Item]) -> None:
    """Items marked `gpu` are skipped when no CUDA device is visible (torch is imported only if there are any)."""
    marked = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not marked:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none is visible here")
    for item in marked:
        item.add_marker(skip)


def model_of(item: pytest.Item) -> str | None:
    """The matrix model a parametrized suite test is about (None for tests of no model)."""
    for value in getattr(getattr(item, "callspec", None), "params", {}).values():
        check = value[0] if isinstance(value, tuple) and value else value
        if isinstance(getattr(check, "model", None), str):
            return check.model
    return None


def shard_of(model: str | None, shards: int) -> int:
    """1-based shard of a model: a stable hash, the same on every machine and run."""
    return 1 if model is None else zlib.crc32(model.encode()) % shards + 1


def _no_checks(item: pytest.Item) -> bool:
    """A suite test the matrix gave no case (pytest's "[NOTSET]" item of an empty parameter set)."""
    skip = item.get_closest_marker("skip")
    return skip is not None and str(skip.kwargs.get("reason", "")).startswith("got empty parameter set")


def _unchecked_models_note(config: pytest.Config) -> None:
    """One line, before anything runs, naming the models of the matrix that no check uses, and how to add some."""
    matrix = session_matrix(config)
    unchecked = matrix.unchecked_models()
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if not unchecked or reporter is None or hasattr(config, "workerinput"):
        return
    names = ", ".join(repr(m) for m in unchecked)
    reporter.write_line(f"mmtests: model(s) {names} of {matrix.path} have no check, so the suites run nothing on "
                        "them: add a [[zero_shot]] entry (dual encoders: a dataset and a prompt set, e.g. "
                        'dataset = "shapes-test", prompt_set = "photo") or [[answers]] (LLaVA); `mmtests init` '
                        "writes a starter matrix", yellow=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    suites = [item for item in items if Path(str(item.path)).is_relative_to(PACKAGE / "suites")]
    if suites:
        _unchecked_models_note(config)
        empty = [item for item in suites if _no_checks(item)]  # said once above, not as one skip per test
        if empty:
            config.hook.pytest_deselected(items=empty)
            items[:] = [item for item in items if item not in empty]
    ours = [item for item in items if is_mmtests_item(item)]
    skip_gpu_items_without_cuda(ours)
    if config.pluginmanager.hasplugin("xdist"):
        # With --dist loadgroup, a model's tests stay on one worker: each model is loaded by one worker only.
        for item in ours:
            model = model_of(item)
            if model:
                item.add_marker(pytest.mark.xdist_group(model))
    shard = config.getoption("--mm-shard")
    if shard:
        index, count = shard_numbers(shard)  # checked by check_options
        keep = [item for item in items if shard_of(model_of(item), count) == index]
        config.hook.pytest_deselected(items=[item for item in items if item not in keep])
        items[:] = keep


@pytest.fixture(scope="session")
def mm(request: pytest.FixtureRequest):
    """The session's `MMSession`: matrix, encoder and VLM caches (measurements computed once), records and the judge."""
    session = MMSession(request.config)
    yield session
    try:
        # The end line, with the exit status the checks give (1: one failed or crashed), then FILE rewritten as
        # this run's merged records.
        session.records.end(1 if request.session.testsfailed else 0)
        session.records.close()
    except OSError as err:  # the records location went away or filled up: said once, nothing else lost
        request.config.get_terminal_writer().line(f"\nmmtests: {err}", red=True)
    if session.saving:
        for path in session.write_baselines():
            print(f"\nmmtests: baseline written to {path}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    """As `pytest_runtest_call`, for the session fixtures a check sets up (loading, embedding)."""
    return (yield from _one_line_failures(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """Records that cannot be written, or memory that runs out, fail the check with one line naming the cause
    and the fix, no traceback (formatting a traceback full of tensors can itself run out of memory). Any other
    exception in a check is a crash (`mmtests.crashes`): recorded, shown with its traceback the first time and in
    one line by every later check that meets it. pytest's own outcomes (skip, fail, xfail) and KeyboardInterrupt
    are not exceptions of the check's and pass through."""
    return (yield from _one_line_failures(item))


def _one_line_failures(item: pytest.Item):
    from .errors import out_of_memory, out_of_memory_message

    try:
        return (yield)
    except RecordsUnwritable as err:
        message = str(err)
    except Exception as err:
        if not is_mmtests_item(item):
            raise
        if out_of_memory(err):
            message = out_of_memory_message(item.name, err, "lower --mm-batch-size, use a smaller dtype, or run on a "
                                                            "machine with more memory")
        elif "mm" not in getattr(item, "fixturenames", ()):  # not a check of the matrix: no records to keep it in
            raise
        else:
            from .crashes import record_crash

            message = record_crash(item, err)
            if message is None:
                raise  # a first crash: its traceback, once
    pytest.fail(message, pytrace=False)


def pytest_deselected(items: list[pytest.Item]) -> None:
    if any("mm" in getattr(item, "fixturenames", ()) for item in items):
        items[0].config.stash[DESELECTED_CHECKS] = True


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config):
    """A test whose figures were all measured, none judged, is "measured", not passed and not skipped."""
    if report.when == "call" and report.passed and (OUTCOME, MEASURED) in report.user_properties:
        return MEASURED, "M", ("MEASURED", {"cyan": True})
    return None


def pytest_collection_finish(session: pytest.Session) -> None:
    """The checks this session will run, recorded first: the report names those a crash left without a figure."""
    ours = [item for item in session.items if "mm" in getattr(item, "fixturenames", ())]
    planned = [item.nodeid for item in ours]
    if planned:
        models = {model_of(item) for item in ours} - {None}
        specs = session_matrix(session.config).models if models and session.config.getoption("--mm-save-baseline") else {}
        check_outputs(session.config, {m: specs[m].baseline for m in sorted(models & specs.keys()) if specs[m].baseline})
    try:
        write_plan(session.config, planned, selected_none=not session.items and session.config.stash.get(
            DESELECTED_CHECKS, False))
    except RecordsUnwritable as err:
        raise pytest.UsageError(f"mmtests: {err}") from None
    except OSError as err:  # read-only or full: say so before anything is measured, once
        raise pytest.UsageError(
            f"mmtests: the records location {session.config.getoption('--mm-records')!r} cannot be written "
            f"({err.__class__.__name__}: {err}); pass --mm-records with a writable path") from None


@pytest.hookimpl(trylast=True)  # after the session fixtures' teardown, where `mm` writes its end line
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    try:
        finish_run(session.config, exitstatus)
    except OSError as err:  # the records location went away or filled up: say so, lose nothing else
        session.config.get_terminal_writer().line(f"mmtests: could not finish the records ({err})", red=True)


@pytest.hookimpl(optionalhook=True)  # pytest-xdist, on the controller: every worker writes under one run id
def pytest_configure_node(node) -> None:
    hand_over_run_id(node)


class FiguresTable:
    """The session's figures in one table, as pytest-benchmark prints its own: check, value, bound, verdict.
    Rows come from the test reports (in a serial run and on an xdist controller alike), kept in `config.stash`."""

    def __init__(self, config: pytest.Config):
        self.config = config
        config.stash[FIGURES_KEY] = []
        config.stash[CRASHED_KEY] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call" and not report.failed:
            return
        props = dict(report.user_properties)
        test_id = report.nodeid.split("[", 1)[-1].rstrip("]") if "[" in report.nodeid else report.nodeid
        for name, value in report.user_properties:
            if name == "mm_crash":  # crashes.CRASH_PROPERTY
                self.config.stash[CRASHED_KEY].append(value)
            if name.startswith("mm:") and not name.endswith(":verdict"):
                outcome, _, bound = str(props.get(f"{name}:verdict", "")).partition(" ")
                self.config.stash[FIGURES_KEY].append([test_id, name[3:], value, bound, outcome])

    def pytest_terminal_summary(self, terminalreporter, exitstatus: int, config: pytest.Config) -> None:
        crashed = config.stash[CRASHED_KEY]
        if crashed:
            from .crashes import summary_lines

            lines = summary_lines(crashed)
            checks, errors = (f"{n} {w}{'s' if n != 1 else ''}" for n, w in ((len(crashed), "check"),
                                                                               (len(lines), "exception")))
            terminalreporter.write_sep("-", f"mmtests crashes: {checks} crashed, on {errors}, each shown once "
                                            "above with its traceback", red=True)
            for line in lines:
                terminalreporter.write_line(line)
        table = config.stash[FIGURES_KEY]
        if not table:
            return
        from tabulate import tabulate

        verbose = config.get_verbosity() > 0
        rows = [[t, m, "n/a" if v is None else f"{v:.4g}", b, o] for t, m, v, b, o in table if verbose or o != "pass"]
        passed = sum(row[4] == "pass" for row in table)
        terminalreporter.write_sep("-", f"mmtests figures: {len(table)}, {passed} passed their bound")
        if rows:
            terminalreporter.write_line(tabulate(rows, headers=["check", "metric", "value", "bound", "verdict"]))
        if not verbose and passed:
            terminalreporter.write_line(f"({passed} figures that passed are listed with -v, and all are in the records)")
