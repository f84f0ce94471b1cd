"""The `mm` fixture's object, what a suite touches: the matrix, the session's caches of models and their
measurements, the records, the baselines and the judge of every check."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest

from .figures.check import FAIL, MEASURED, Check
from .runrecords import option_path, record_usage_error

if TYPE_CHECKING:  # the matrix is read on first use, not when pytest loads the plugin
    from .config import Matrix

MATRIX_KEY = pytest.StashKey["Matrix"]()
OUTCOME = "mm_outcome"  # user property of a test whose figures were measured, none judged
T = TypeVar("T")


def session_matrix(config: pytest.Config) -> Matrix:
    """The matrix this session runs (--mm-config, narrowed by --mm-model/--mm-dataset), read on first use: a
    session that runs none of mmtests' checks never reads the packaged default."""
    if MATRIX_KEY not in config.stash:
        from .config import ConfigError, load_matrix
        from .config.rules import on_device

        try:
            matrix = load_matrix(option_path(config, "--mm-config"))
            matrix = matrix.narrowed(config.getoption("--mm-model"), config.getoption("--mm-dataset"))
            if config.getoption("--mm-device") != "cpu" and any(m.quantize for m in matrix.models.values()):
                problems = on_device(matrix.models, session_device(config).type)  # torch only for such entries
                if problems:
                    raise ConfigError("\n".join(problems))
            config.stash[MATRIX_KEY] = matrix
        except ConfigError as err:
            record_usage_error(config, f"matrix error: {err}")
            raise pytest.UsageError(f"mmtests matrix error:\n{err}") from None
    return config.stash[MATRIX_KEY]


def current_check() -> str | None:
    """The check pytest is running (its name, with its parameters), as a later check names the one that crashed."""
    current = os.environ.get("PYTEST_CURRENT_TEST")  # "<node id> (call)"
    return current.rsplit(" (", 1)[0].rpartition("::")[2] if current else None


def session_device(config: pytest.Config):
    """The torch device --mm-device names (auto: CUDA when there is one)."""
    import torch

    choice = config.getoption("--mm-device")
    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if choice == "auto" else choice)


class MMSession:
    """What a suite touches: the matrix, the session's encoder and VLM caches, the record writer and the judge."""

    def __init__(self, config: pytest.Config):
        import torch

        from .figures.baseline_store import BaselineWriter
        from .figures.record_writer import environment
        from .progress import for_pytest
        from .runrecords import session_writer
        from .session.encoders import DualEncoderCache
        from .session.memo import Memo
        from .session.vlms import VLMCache

        self.config = config
        self.matrix = session_matrix(config)
        workers = int(getattr(config, "workerinput", {}).get("workercount", 1))
        if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
            # xdist workers share the cores: one pool of threads each would oversubscribe them (measured 5x slower).
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
        device = session_device(config)
        batch_size, online, memo = config.getoption("--mm-batch-size"), config.getoption("--mm-online"), Memo(current_check)
        progress = for_pytest(config)
        self.encoders = DualEncoderCache(self.matrix, device, batch_size, online, memo=memo, progress=progress,
                                         strict_images=True if config.getoption("--mm-strict-images") else None)
        self.vlms = VLMCache(self.matrix, device, batch_size, online, memo, dataset=self.encoders.dataset,
                             progress=progress)
        self.environment = environment(str(device), str(self.matrix.path))
        self.records = session_writer(config, self.environment)
        self.artifacts = self.records.folder / "artifacts"  # per run: a crashed run keeps the last report's pictures
        self.saving = config.getoption("--mm-save-baseline")
        self.require_all = config.getoption("--mm-require-all")
        self.baseline_writer = BaselineWriter()
        self._baselines: dict[str, object] = {}
        self._logged: set[tuple[str, str]] = set()

    def artifact(self, name: str) -> Path:
        """Where a suite saves a picture for the report (recorded with the figure as `artifact`)."""
        self.artifacts.mkdir(parents=True, exist_ok=True)
        return self.artifacts / name

    def available(self, measure: Callable[..., T], *args, test_id: str, suite: str) -> T:
        """Run a measurement. Missing weights or data (not available here) become a recorded skip with the
        reason, or a failure under --mm-require-all; an entry that exists but is broken, or memory that runs out,
        is a recorded failure. Any other exception passes through: the plugin records it as a crash
        (`mmtests.crashes`)."""
        from .errors import DatasetUnavailable, EntryError, ModelUnavailable, out_of_memory, out_of_memory_message

        absent = broken = None
        try:
            return measure(*args)
        except (ModelUnavailable, DatasetUnavailable) as err:
            absent = str(err)
        except EntryError as err:
            broken = str(err)
        except (MemoryError, RuntimeError) as err:  # torch.OutOfMemoryError is a RuntimeError
            if not out_of_memory(err):
                raise
            broken = out_of_memory_message(test_id, err, "lower --mm-batch-size, use a smaller dtype, or run on a "
                                                         "machine with more memory")
        # Outside the except blocks, so the message is shown once, without the chained traceback.
        if broken is not None:
            self.records.figure(suite=suite, test_id=test_id, metric="usable", value=None, outcome="fail", reason=broken)
            pytest.fail(broken, pytrace=False)
        if self.require_all:
            self.records.figure(suite=suite, test_id=test_id, metric="available", value=None, outcome="fail",
                                reason=absent)
            pytest.fail(f"{absent}\n(--mm-require-all: everything in the matrix must be available)", pytrace=False)
        self.records.figure(suite=suite, test_id=test_id, metric="available", value=None, outcome="skip", reason=absent)
        pytest.skip(absent)

    # ------------------------------------------------------------------ baselines

    def baseline(self, model: str):
        """The model's committed baseline, or None when its entry names none (or this run records one)."""
        from .figures.baseline_store import Baseline

        spec = self.matrix.models[model]
        if spec.baseline is None or self.saving:
            return None
        if model not in self._baselines:
            self._baselines[model] = Baseline.load(spec.baseline, model)
        return self._baselines[model]

    def precision(self, model: str) -> str:
        """The numeric precision a model runs in here (dual encoder or VLM), which sets its gates' tolerances."""
        return (self.vlms if self.matrix.models[model].is_vlm else self.encoders).precision(model)

    def tolerances(self, model: str) -> dict[str, float]:
        from .figures.gates import tolerances

        return tolerances(self.precision(model), dict(self.matrix.models[model].tolerance))

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
            env = {**self.environment, "precision": self.precision(model)}
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
            where["precision"] = self.precision(where["model"])
        failed = []
        for check in checks:
            if self.saving and check.kind == "baseline":
                check.ok, check.kind = None, "measured"
            self.records.check(suite=suite, test_id=test_id, check=check, **where)
            # Carried by the test report (so JUnit XML and an xdist controller see them): value, and verdict.
            node.user_properties.append((f"mm:{check.metric}", check.value))
            node.user_properties.append((f"mm:{check.metric}:verdict", f"{check.outcome} {check.bound_text()}".strip()))
            if check.outcome == FAIL:
                failed.append(check)
        if failed:
            pytest.fail(f"{test_id}:\n  " + "\n  ".join(c.describe() for c in failed), pytrace=False)
        if all(c.outcome == MEASURED for c in checks):
            node.user_properties.append((OUTCOME, MEASURED))
