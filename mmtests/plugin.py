"""The pytest plugin: options, markers, matrix parametrization, and the session fixtures suites use.

Registered through the `pytest11` entry point, so any `pytest` run with mmtests installed has it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from .checks import FAIL, MEASURED, Check
from .config import ConfigError, Matrix, load_matrix

MARKERS = {
    "gpu": "needs a CUDA device; skipped without one",
    "slow": "takes minutes (e.g. retrains a model); deselected by default, run with -m slow",
    "clip": "CLIP-style dual-encoder suites",
    "llava": "LLaVA-style vision-language suites",
}
MATRIX_KEY = pytest.StashKey[Matrix]()
SESSION_KEY = pytest.StashKey["MMSession"]()
OUTCOME = "mm_outcome"  # user property of a test whose figures were measured, none judged
T = TypeVar("T")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mmtests", "multimodal model test matrix")
    group.addoption("--mm-config", default=None, metavar="FILE",
                    help="matrix TOML (models, datasets, prompt sets, expectations); default: the embedded zoo")
    group.addoption("--mm-model", action="append", default=None, metavar="NAME",
                    help="run only this model of the matrix (repeatable)")
    group.addoption("--mm-dataset", action="append", default=None, metavar="NAME",
                    help="run only this dataset of the matrix (repeatable)")
    group.addoption("--mm-records", default="reports/records.jsonl", metavar="FILE",
                    help="JSON-lines file receiving every measured figure (overwritten each session)")
    group.addoption("--mm-device", default="auto", choices=("auto", "cpu", "cuda"),
                    help="device for model suites (auto: cuda when available)")
    group.addoption("--mm-online", action="store_true",
                    help="allow downloads from model/dataset hubs (default: offline, missing entries are skipped)")
    group.addoption("--mm-batch-size", type=int, default=None, metavar="N",
                    help="images per forward and questions per generate() batch (default: 64 / 32 on CPU, 256 / 64 on CUDA)")
    group.addoption("--mm-require-all", action="store_true",
                    help="a model or dataset that is not available here fails instead of skipping (for CI)")
    group.addoption("--mm-save-baseline", action="store_true",
                    help="record this run as the known-good baseline of every model whose entry names a `baseline` "
                         "folder (updates the checks that ran, keeps the others); gates against baselines are "
                         "measured, not judged, in such a run")


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    if not config.getoption("--mm-online"):
        # Offline by default: a missing checkpoint is a skip with its reason, not a network hang.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    try:
        matrix = load_matrix(config.getoption("--mm-config"))
        config.stash[MATRIX_KEY] = matrix.narrowed(config.getoption("--mm-model"), config.getoption("--mm-dataset"))
    except ConfigError as err:
        raise pytest.UsageError(f"mmtests matrix error:\n{err}") from None


def _answer_cases(matrix: Matrix) -> list[tuple]:
    """(check, question kind) pairs: kinds with a threshold, and for generated sets every kind (reported)."""
    from .data.shapes_qa import KINDS

    cases = []
    for c in matrix.answers:
        kinds = dict(c.min_accuracy)
        if matrix.question_sets[c.question_set].questions == "shapes":
            kinds = {k: kinds.get(k) for k in KINDS}
        cases += [(c, k, kinds[k]) for k in kinds]
    return cases


def _pope_cases(matrix: Matrix) -> list[tuple]:
    from .data.shapes_qa import POPE_KINDS

    cases = []
    for c in matrix.pope:
        sets = POPE_KINDS if matrix.question_sets[c.question_set].questions == "shapes" else ("all",)
        cases += [(c, s) for s in sets]
    return cases


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    matrix = metafunc.config.stash[MATRIX_KEY]
    for fixture, checks in (("zero_shot_check", matrix.zero_shot), ("gain_check", matrix.prompt_gain),
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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none is visible here")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


class MMSession:
    """What a suite touches: the matrix, the shared workbench, the record writer and the judge."""

    def __init__(self, config: pytest.Config):
        import torch

        from .baselines import BaselineWriter
        from .records import RecordWriter, environment
        from .workbench import Workbench, default_device

        self.config = config
        self.matrix = config.stash[MATRIX_KEY]
        choice = config.getoption("--mm-device")
        device = default_device() if choice == "auto" else torch.device(choice)
        self.workbench = Workbench(self.matrix, device, config.getoption("--mm-batch-size"))
        path = Path(config.getoption("--mm-records"))
        if not path.is_absolute():
            path = Path(config.rootpath) / path
        path.unlink(missing_ok=True)
        self.environment = environment(str(device), str(self.matrix.path))
        self.records = RecordWriter(path, self.environment)
        self.artifacts = path.parent / f"{path.stem}-artifacts"
        self.saving = config.getoption("--mm-save-baseline")
        self.require_all = config.getoption("--mm-require-all")
        self.baseline_writer = BaselineWriter()
        self.table: list[list] = []  # the figures table printed at the end of the session
        self._baselines: dict[str, object] = {}
        self._logged: set[tuple[str, str]] = set()

    def artifact(self, name: str) -> Path:
        """Where a suite saves a picture for the report (recorded with the figure as `artifact`)."""
        self.artifacts.mkdir(parents=True, exist_ok=True)
        return self.artifacts / name

    def available(self, measure: Callable[..., T], *args, test_id: str, suite: str) -> T:
        """Run a measurement. Missing weights or data (not available here) become a recorded skip with the
        reason, or a failure under --mm-require-all; an entry that exists but is broken is a failure."""
        from .errors import DatasetUnavailable, EntryError, ModelUnavailable

        try:
            return measure(*args)
        except (ModelUnavailable, DatasetUnavailable) as err:
            if self.require_all:
                self.records.figure(suite=suite, test_id=test_id, metric="available", value=None, outcome="fail",
                                    reason=str(err))
                pytest.fail(f"{err}\n(--mm-require-all: everything in the matrix must be available)", pytrace=False)
            self.records.figure(suite=suite, test_id=test_id, metric="available", value=None, outcome="skip",
                                reason=str(err))
            pytest.skip(str(err))
        except EntryError as err:
            self.records.figure(suite=suite, test_id=test_id, metric="usable", value=None, outcome="fail",
                                reason=str(err))
            pytest.fail(str(err), pytrace=False)

    # ------------------------------------------------------------------ baselines

    def baseline(self, model: str):
        """The model's committed baseline, or None when its entry names none (or this run records one)."""
        from .baselines import Baseline

        spec = self.matrix.models[model]
        if spec.baseline is None or self.saving:
            return None
        if model not in self._baselines:
            self._baselines[model] = Baseline.load(spec.baseline, model)
        return self._baselines[model]

    def tolerances(self, model: str) -> dict[str, float]:
        from .baselines import tolerances

        return tolerances(self.workbench.precision(model), dict(self.matrix.models[model].tolerance))

    def samples(self, model: str, key: str, samples: dict) -> None:
        """A check's per-sample outcomes: logged beside the records, and kept for --mm-save-baseline."""
        if (model, key) in self._logged:
            return
        self._logged.add((model, key))
        self.records.samples(model=model, key=key, samples=samples)
        if self.saving:
            self.baseline_writer.add(model, key, samples)

    def fingerprint(self, model: str, key: str, tensor) -> None:
        if self.saving:
            self.baseline_writer.add_array(model, key, tensor)

    def write_baselines(self) -> list[Path]:
        written = []
        for model in sorted(self.baseline_writer.samples):
            target = self.matrix.models[model].baseline
            if target is None:
                continue
            env = {**self.environment, "precision": self.workbench.precision(model)}
            written.append(self.baseline_writer.write(model, target, env))
        return written

    # ------------------------------------------------------------------ judging

    def judge(self, request: pytest.FixtureRequest, checks: list[Check], **where) -> None:
        """Record every check, then fail the test on any failed one (all named in one message), or mark
        it "measured" when none had a bound. In a --mm-save-baseline run, baseline gates are measured."""
        node = request.node
        suite = where.pop("suite")
        test_id = where.pop("test_id")
        if "model" in where and "precision" not in where and any(c.kind == "baseline" for c in checks):
            where["precision"] = self.workbench.precision(where["model"])
        failed = []
        for check in checks:
            if self.saving and check.kind == "baseline":
                check.ok, check.kind = None, "measured"
            self.records.check(suite=suite, test_id=test_id, check=check, **where)
            node.user_properties.append((f"mm:{check.metric}", check.value))
            self.table.append([test_id, check.metric, check.value, check.bound_text(), check.outcome])
            if check.outcome == FAIL:
                failed.append(check)
        if failed:
            pytest.fail(f"{test_id}:\n  " + "\n  ".join(c.describe() for c in failed), pytrace=False)
        if all(c.outcome == MEASURED for c in checks):
            node.user_properties.append((OUTCOME, MEASURED))


@pytest.fixture(scope="session")
def mm(request: pytest.FixtureRequest):
    """The session's `MMSession`: matrix, workbench (cached measurements), records and the judge."""
    session = MMSession(request.config)
    request.config.stash[SESSION_KEY] = session
    yield session
    session.records.close()
    if session.saving:
        for path in session.write_baselines():
            print(f"\nmmtests: baseline written to {path}")


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config):
    """A test whose figures were all measured, none judged, is "measured", not passed and not skipped."""
    if report.when == "call" and report.passed and (OUTCOME, MEASURED) in report.user_properties:
        return MEASURED, "M", ("MEASURED", {"cyan": True})
    return None


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """The session's figures in one table, as pytest-benchmark prints its own: check, value, bound, verdict."""
    session = config.stash.get(SESSION_KEY, None)
    if session is None or not session.table:
        return
    from tabulate import tabulate

    verbose = config.get_verbosity() > 0
    rows = [[t, m, "n/a" if v is None else f"{v:.4g}", b, o] for t, m, v, b, o in session.table
            if verbose or o != "pass"]
    passed = sum(row[4] == "pass" for row in session.table)
    terminalreporter.write_sep("-", f"mmtests figures: {len(session.table)}, {passed} passed their bound")
    if rows:
        terminalreporter.write_line(tabulate(rows, headers=["check", "metric", "value", "bound", "verdict"]))
    if not verbose and passed:
        terminalreporter.write_line(f"({passed} figures that passed are listed with -v, and all are in the records)")
