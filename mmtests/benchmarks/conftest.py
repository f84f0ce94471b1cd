"""Shared set-up for benchmarks: the dual-encoder cache, built once per session; contention recorded around
every benchmark; utilisation, spread and flags settled when the JSON is written (`mmtests.bench.trust`)."""

import pytest
import torch

from mmtests.bench import contention, perf, trust
from mmtests.errors import out_of_memory, out_of_memory_message
from mmtests.mmsession import session_device, session_matrix
from mmtests.session.encoders import DualEncoderCache


@pytest.fixture(scope="session")
def encoders(request: pytest.FixtureRequest) -> DualEncoderCache:
    """The session's dual encoders and their measurements: its matrix (--mm-config) on its device (--mm-device),
    as the suites load them."""
    config = request.config
    return DualEncoderCache(session_matrix(config), session_device(config), config.getoption("--mm-batch-size"),
                            online=config.getoption("--mm-online"))


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


@pytest.fixture(autouse=True)
def _contention(request: pytest.FixtureRequest):
    """Load averages and other processes' CPU share over each benchmark, into its `extra_info`."""
    if "benchmark" not in request.fixturenames:
        yield
        return
    benchmark = request.getfixturevalue("benchmark")
    before = contention.sample()
    yield
    benchmark.extra_info.update(contention.figures(before, contention.sample(), torch.cuda.is_available()))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """A benchmark that runs out of memory (loading or timing) fails with one line saying so and what to change."""
    try:
        return (yield)
    except (MemoryError, RuntimeError) as err:
        if not out_of_memory(err):
            raise
        message = out_of_memory_message(item.name, err, "lower [benchmarks] batch_sizes, drop the architecture from "
                                                         "[benchmarks], or run on a machine with more memory")
    pytest.fail(message, pytrace=False)


_SETTLED: dict = {}


def pytest_benchmark_update_json(config: pytest.Config, benchmarks, output_json: dict) -> None:
    """After the sweep: a second round of CPU peak probes (when a CPU figure needs the peak), then every
    benchmark's MFU/MBU against the final peak, its spread and its flags (`mmtests.bench.trust.settle`)."""
    if not _SETTLED:
        uses_cpu_peak = any(b.get("extra_info", {}).get("device") == "cpu" and b["extra_info"].get("achieved_flops")
                            for b in output_json.get("benchmarks", []))
        if uses_cpu_peak:
            perf.probe_cpu("after")
        peaks = {"cpu": perf.cpu_peak() if uses_cpu_peak else None}
        if torch.cuda.is_available():
            peaks["cuda"] = perf.device_peak(torch.device("cuda"))
        _SETTLED.update(peaks=peaks, probes=[vars(p) for p in perf.cpu_probes()])
    trust.settle(output_json, _SETTLED["peaks"])
    output_json["mmtests"] = {
        "probes": _SETTLED["probes"],
        "peaks": {d: p and {"name": p.name, "flops": p.flops, "bandwidth": p.bandwidth, "source": p.source}
                  for d, p in _SETTLED["peaks"].items()},
        "contended_share": contention.CONTENDED_SHARE, "large_spread": trust.LARGE_SPREAD,
    }
