"""The pytest plugin: options, markers, matrix parametrization, and the session fixtures suites use.

Registered through the `pytest11` entry point, so any `pytest` run with mmtests installed has it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from .config import ConfigError, Matrix, load_matrix

MARKERS = {
    "gpu": "needs a CUDA device; skipped without one",
    "slow": "takes minutes (e.g. retrains a model); deselected by default, run with -m slow",
    "clip": "CLIP-style dual-encoder suites",
    "llava": "LLaVA-style vision-language suites",
}
MATRIX_KEY = pytest.StashKey[Matrix]()
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
                            ("stability_check", matrix.stability), ("attention_check", matrix.attention)):
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
        if "gpu" in item.keywords:
            item.add_marker(skip)


class MMSession:
    """What a suite touches: the matrix, the shared workbench, and the record writer."""

    def __init__(self, config: pytest.Config):
        import torch

        from .records import RecordWriter, environment
        from .workbench import Workbench, default_device

        self.matrix = config.stash[MATRIX_KEY]
        choice = config.getoption("--mm-device")
        device = default_device() if choice == "auto" else torch.device(choice)
        self.workbench = Workbench(self.matrix, device)
        path = Path(config.getoption("--mm-records"))
        if not path.is_absolute():
            path = Path(config.rootpath) / path
        path.unlink(missing_ok=True)
        self.records = RecordWriter(path, environment(str(device), str(self.matrix.path)))
        self.artifacts = path.parent / f"{path.stem}-artifacts"

    def artifact(self, name: str) -> Path:
        """Where a suite saves a picture for the report (recorded with the figure as `artifact`)."""
        self.artifacts.mkdir(parents=True, exist_ok=True)
        return self.artifacts / name

    def available(self, measure: Callable[..., T], *args, test_id: str, suite: str) -> T:
        """Run a measurement; missing weights or data become a recorded skip with the reason."""
        from .adapters import ModelUnavailable
        from .data.sources import DatasetUnavailable

        try:
            return measure(*args)
        except (ModelUnavailable, DatasetUnavailable) as err:
            self.records.figure(suite=suite, test_id=test_id, metric="available", value=None, outcome="skip",
                                reason=str(err))
            pytest.skip(str(err))


@pytest.fixture(scope="session")
def mm(request: pytest.FixtureRequest):
    """The session's `MMSession`: matrix, workbench (cached measurements) and records."""
    session = MMSession(request.config)
    yield session
    session.records.close()
