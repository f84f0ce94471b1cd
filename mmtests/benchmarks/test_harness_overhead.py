"""Harness overhead: embedding throughput through pytest-benchmark against a bare `time.perf_counter` loop.

    pytest --pyargs mmtests.benchmarks -k harness --benchmark-enable --benchmark-only

Same model (the matrix's first benchmarked dual encoder: the tiny CLIP by default), same inputs, same
synchronised pass, same number of rounds on each side: half the bare loop, the rounds through
`benchmark.pedantic`, then the other half (so slow drift in machine load falls on both sides). Each
side's figure is its fastest round: interference from other processes only ever adds time, so the
minimum is the figure least moved by a busy machine.

Why 3%: pytest-benchmark adds two timer reads and a Python call per round, about a microsecond
against a pass of milliseconds (under 0.1%), so what is left is run-to-run noise: on an H200 three
runs gave 0.996, 1.008 and 1.020 for this 2.6 ms pass. Both minima are taken over 30 rounds (a
minimum over more rounds is lower by chance alone). A harness mistake (setup inside the timed
region, a missing CUDA synchronize, a per-round collection) costs more than 3%.

The ratio is recorded, not asserted: `extra_info["harness_ratio"]` (harness items/s over bare
items/s, by fastest round) and `extra_info["harness_tolerance"]`, and the report flags a ratio
outside 1 ± tolerance. On a shared machine load alone moves it further (0.89 to 0.99 on 2 CPU
cores busy with other processes), and wall-clock figures never fail a test run.
"""

import time

import pytest

from mmtests.bench import embedding
from mmtests.figures.metrics import HARNESS_TOLERANCE

BATCH, ROUNDS, WARMUP = 32, 30, 3


def bare_loop_seconds(run, rounds: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        run()
    seconds = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return seconds


def test_harness_against_a_bare_timing_loop(benchmark, encoders):
    trained = [m for m in embedding.bench_models(encoders.matrix) if m.weights == "trained"]
    if not trained:
        pytest.skip("the matrix benchmarks no dual encoder of its own ([benchmarks] models)")
    model = trained[0].label
    encoder = encoders.encoder(model)
    run = embedding.embedding_pass(encoder, "image", embedding.make_inputs(encoder, "image", BATCH))
    bare = bare_loop_seconds(run, ROUNDS // 2, WARMUP) if not benchmark.disabled else []
    benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=WARMUP)
    if benchmark.stats is None:  # --benchmark-disable: the pass ran once, nothing was timed
        return
    bare += bare_loop_seconds(run, ROUNDS - ROUNDS // 2, WARMUP)
    ratio = min(bare) / benchmark.stats.stats.min  # throughput ratio: harness items/s over bare items/s
    benchmark.extra_info.update(model=model, batch_size=BATCH, harness_items_per_s=BATCH / benchmark.stats.stats.min,
                                bare_items_per_s=BATCH / min(bare), harness_ratio=ratio, harness_tolerance=HARNESS_TOLERANCE)
