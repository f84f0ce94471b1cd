"""Shared set-up for benchmarks: the default matrix's workbench, built once per session."""

import pytest
import torch

from mmtests.config import load_matrix
from mmtests.workbench import Workbench


@pytest.fixture(scope="session")
def workbench():
    return Workbench(load_matrix(), torch.device("cuda" if torch.cuda.is_available() else "cpu"))


def _random_weights(item: pytest.Item) -> bool:
    params = getattr(item, "callspec", None)
    values = params.params.values() if params else ()
    return any(getattr(v, "weights", None) == "random" or (isinstance(v, str) and v.endswith("-random-weights"))
               for v in values)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Random-weight architectures exist only to be timed: with benchmarks disabled (plain `pytest`, where
    each benchmark runs once as a smoke test) they are deselected, not reported as skipped."""
    from mmtests.plugin import skip_gpu_items_without_cuda

    skip_gpu_items_without_cuda([i for i in items if i.path.parent.name == "benchmarks"])
    if not (config.getoption("benchmark_disable") and not config.getoption("benchmark_enable")):
        return
    keep = [i for i in items if not (i.path.parent.name == "benchmarks" and _random_weights(i))]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep
