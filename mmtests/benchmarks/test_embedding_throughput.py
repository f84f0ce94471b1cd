"""Image and text embedding throughput (items/s) per model and batch size, with FLOPs, MFU and peak memory.

    pytest --pyargs mmtests.benchmarks -k embedding --benchmark-enable --benchmark-only [--mm-config my.toml]

Models: the dual encoders of the session's matrix that its [benchmarks] section names (every one without
the section), loaded as the suites load them (dtype, quantization), then the open_clip architectures it
lists under `random_architectures`, built with random weights (labelled "random-weights": same architecture
and speed as the published models, nothing downloaded). The default matrix: the tiny CLIP, ViT-B-32 and
ViT-L-14. Inputs are fixed and seeded; a pass is one normalised embedding of a batch, synchronised on
CUDA, under the encoder's own autocast (fp16 on CUDA, float32 on CPU). The `-bf16` variants run under
bf16 autocast; they are marked `gpu` (skipped without CUDA; `pytest --pyargs mmtests.benchmarks -m gpu` runs them).

`extra_info` of each benchmark: items_per_s (batch size / median pass time), flops_per_item (counted
at batch 1: these encoders do no work across items), achieved_flops, and peak memory from a separate
pass in a fresh process (see `mmtests.bench.memory`); MFU, spread and flags are settled when the JSON
is written (`mmtests.bench.trust`).

Batch sizes and rounds: [benchmarks] batch_sizes / rounds, else 1, 8, 32 (and 128 on CUDA). On a CPU the
known random-weight architectures are cut (ViT-L-14 costs 162 GFLOP an image, about 4 s on 2 cores):
ViT-B-32 at batch 1 and 8, ViT-L-14 images at batch 1 and captions at 1 and 8. Under --benchmark-disable
(plain `pytest`) the matrix models' passes run once as a smoke test and the random-weight architectures
are deselected: building ViT-L-14 alone takes ~10 s on a CPU.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pytest
import torch

from mmtests.bench import embedding
from mmtests.bench.memory import PeakMemory, peak_memory
from mmtests.bench.perf import count_flops, device_peak, mfu
from mmtests.config import BenchmarkSpec
from mmtests.errors import ModelUnavailable
from mmtests.mmsession import session_device, session_matrix

ALL_BATCHES = (1, 8, 32, 128)


@dataclass(frozen=True)
class Plan:
    image_batches: tuple[int, ...]
    text_batches: tuple[int, ...]
    rounds: int
    warmup_rounds: int

    def keys(self) -> list[tuple[str, int]]:
        return [("image", b) for b in self.image_batches] + [("text", b) for b in self.text_batches]


FULL = Plan(ALL_BATCHES, ALL_BATCHES, rounds=20, warmup_rounds=3)
# On a CPU, 10 rounds: the tiny CLIP's passes take milliseconds, and with 5 their quartiles moved by 15-40%.
DEFAULT_PLAN = {"cuda": FULL, "cpu": Plan((1, 8, 32), (1, 8, 32), rounds=10, warmup_rounds=2)}
# Known random-weight architectures on a CPU, cut to what 2 cores do in about a minute.
# GFLOP per image / caption: ViT-B-32 8.8 / 6.0, ViT-L-14 162 / 13.3; 2 cores do about 40 GFLOP/s on these.
CPU_RANDOM_PLANS = {
    "ViT-B-32-random-weights": Plan((1, 8), (1, 8), rounds=2, warmup_rounds=1),
    "ViT-L-14-random-weights": Plan((1,), (1, 8), rounds=1, warmup_rounds=1),
}


def plan_of(model: embedding.BenchModel, spec: BenchmarkSpec, device: str) -> Plan:
    """[benchmarks] batch_sizes and rounds where the matrix names them, else the device's defaults."""
    plan = CPU_RANDOM_PLANS.get(model.label, DEFAULT_PLAN[device]) if device == "cpu" else DEFAULT_PLAN[device]
    if spec.batch_sizes:
        plan = Plan(spec.batch_sizes, spec.batch_sizes, plan.rounds, plan.warmup_rounds)
    if spec.rounds:
        plan = Plan(plan.image_batches, plan.text_batches, spec.rounds, plan.warmup_rounds)
    return plan


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Model by model (each random-weight model is built once): the device's plan, then the bf16 variants."""
    if "label" not in metafunc.fixturenames:
        return
    matrix, device = session_matrix(metafunc.config), session_device(metafunc.config).type
    cases = []
    for model in embedding.bench_models(matrix):
        plan = plan_of(model, matrix.benchmarks, device)
        cases += [pytest.param(model, modality, batch, None, plan, id=f"{model.label}-{modality}-b{batch}")
                  for modality, batch in plan.keys()]
        cases += [pytest.param(model, modality, batch, torch.bfloat16, plan_of(model, matrix.benchmarks, "cuda"),
                               id=f"{model.label}-{modality}-b{batch}-bf16", marks=pytest.mark.gpu)
                  for modality, batch in plan_of(model, matrix.benchmarks, "cuda").keys()
                  if model.spec.dtype is None and model.spec.quantize is None]  # entries with their own dtype keep it
    metafunc.parametrize(("label", "modality", "batch_size", "dtype", "plan"), cases)


@functools.lru_cache(maxsize=1)  # one random-weight model in memory at a time; cases run model by model
def random_weight_encoder(model: embedding.BenchModel, device: torch.device):
    return embedding.load(model, device)


FLOPS_PER_ITEM: dict[tuple[str, str], int] = {}  # keyed by label, so no encoder is kept alive by the cache


def flops_per_item(label: str, modality: str, encoder) -> int:
    if (label, modality) not in FLOPS_PER_ITEM:
        one = embedding.make_inputs(encoder, modality, 1)
        FLOPS_PER_ITEM[label, modality] = count_flops(embedding.embedding_pass(encoder, modality, one))
    return FLOPS_PER_ITEM[label, modality]


@functools.cache
def memory_of(model: embedding.BenchModel, dtype: torch.dtype | None, plan: Plan, device: str) -> dict:
    prepare = functools.partial(embedding.passes_of, model, device, dtype)
    return peak_memory(prepare, plan.keys(), device)


def test_embedding_throughput(benchmark, encoders, label, modality, batch_size, dtype, plan):
    model = label
    if model.weights == "random" and benchmark.disabled:
        pytest.skip("random-weight architectures are timed only with benchmarks enabled (--benchmark-enable)")
    device = encoders.device
    encoder = loaded(encoders, model)
    run = embedding.embedding_pass(encoder, modality, embedding.make_inputs(encoder, modality, batch_size), dtype)
    compute = embedding.compute_dtype(encoder, dtype)
    benchmark.group = f"embedding {model.label} {str(compute).removeprefix('torch.')}"
    benchmark.extra_info.update(model=model.label, weights=model.weights, modality=modality, batch_size=batch_size)
    out = benchmark.pedantic(run, rounds=plan.rounds, warmup_rounds=plan.warmup_rounds)
    assert out.shape[0] == batch_size
    if benchmark.stats is None:  # --benchmark-disable: the pass ran once, nothing was timed
        return
    median = benchmark.stats.stats.median
    benchmark.extra_info.update(throughput_figures(encoder, model.label, modality, batch_size, compute, median, device))
    benchmark.extra_info.update(memory_figures(memory_of(model, dtype, plan, str(device))[(modality, batch_size)]))


def loaded(encoders, model: embedding.BenchModel):
    """A matrix entry through the dual-encoder cache (loaded once, as the suites load it); an architecture with
    random weights built here. An entry that cannot be had here is skipped with the reason; a broken one fails."""
    try:
        if model.weights == "trained":
            return encoders.encoder(model.label)
        return random_weight_encoder(model, encoders.device)
    except ModelUnavailable as err:
        pytest.skip(str(err))


def throughput_figures(encoder, label: str, modality: str, batch_size: int, dtype: torch.dtype, median_s: float,
                       device: torch.device) -> dict:
    peak = device_peak(device)
    peak_flops = peak.flops_for(dtype) if peak else None
    flops = flops_per_item(label, modality, encoder)
    items_per_s = batch_size / median_s
    return {
        "device": str(device), "device_name": peak.name if peak else torch.cuda.get_device_name(device),
        "dtype": str(dtype).removeprefix("torch."), "items_per_s": items_per_s, "flops_per_item": flops,
        "achieved_flops": flops * items_per_s, "peak_flops": peak_flops, "peak_source": peak.source if peak else None,
        "mfu": mfu(flops * batch_size, median_s, peak_flops) if peak_flops else None,
    }


def memory_figures(memory: PeakMemory) -> dict:
    return {"peak_memory_bytes": memory.peak_bytes, "pass_memory_bytes": memory.pass_bytes, "memory_method": memory.method}
