"""Image and text embedding throughput (items/s) per model and batch size, with FLOPs, MFU and peak memory.

    pytest benchmarks -k embedding --benchmark-enable --benchmark-only

Models: the embedded tiny CLIP (trained) and open_clip ViT-B-32 and ViT-L-14 with random weights
(labelled "random-weights": same architecture and speed as the published models, nothing downloaded).
Inputs are fixed and seeded; a pass is one normalised embedding of a batch, synchronised on CUDA,
under the encoder's own autocast (fp16 on CUDA, float32 on CPU). The `-bf16` variants run under
bf16 autocast; they are marked `gpu` (skipped without CUDA; `pytest benchmarks -m gpu` runs them).

`extra_info` of each benchmark: items_per_s (batch size / median pass time), flops_per_item (counted
at batch 1: these encoders do no work across items), achieved_flops, peak_flops and its source, mfu,
and peak memory from a separate pass in a fresh process (see `mmtests.bench.memory`).

On a CPU the sweep is cut (ViT-L-14 costs 162 GFLOP an image, about 4 s on 2 cores): ViT-B-32 at
batch 1 and 8, ViT-L-14 images at batch 1 and captions at 1 and 8. On CUDA every model runs at
every batch size. Under --benchmark-disable (plain `pytest`) the tiny CLIP's passes run once as a
smoke test and the random-weight architectures are skipped: building ViT-L-14 alone takes ~10 s on
a CPU.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pytest
import torch

from mmtests.bench import embedding
from mmtests.bench.memory import PeakMemory, peak_memory
from mmtests.bench.perf import count_flops, device_peak, mfu
from mmtests.config import load_matrix

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
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
PLANS = {
    "cuda": {"tiny-clip": FULL, "ViT-B-32-random-weights": FULL, "ViT-L-14-random-weights": FULL},
    # GFLOP per image / caption: ViT-B-32 8.8 / 6.0, ViT-L-14 162 / 13.3; 2 cores do about 40 GFLOP/s on these.
    "cpu": {
        "tiny-clip": Plan(ALL_BATCHES, ALL_BATCHES, rounds=5, warmup_rounds=1),
        "ViT-B-32-random-weights": Plan((1, 8), (1, 8), rounds=2, warmup_rounds=1),
        "ViT-L-14-random-weights": Plan((1,), (1, 8), rounds=1, warmup_rounds=1),
    },
}[DEVICE.type]
MODELS = {m.label: m for m in embedding.bench_models(load_matrix())}
# Model by model (each random-weight model is built once): the device's plan, then the bf16 variants.
CASES = [case for label, plan in PLANS.items() for case in (
    *(pytest.param(label, modality, batch, None, id=f"{label}-{modality}-b{batch}") for modality, batch in plan.keys()),
    *(pytest.param(label, modality, batch, torch.bfloat16, id=f"{label}-{modality}-b{batch}-bf16", marks=pytest.mark.gpu)
      for modality, batch in FULL.keys()),
)]


@functools.lru_cache(maxsize=1)  # one random-weight model in memory at a time; cases run model by model
def random_weight_encoder(label: str):
    return embedding.load(MODELS[label], DEVICE)


FLOPS_PER_ITEM: dict[tuple[str, str], int] = {}  # keyed by label, so no encoder is kept alive by the cache


def flops_per_item(label: str, modality: str, encoder) -> int:
    if (label, modality) not in FLOPS_PER_ITEM:
        one = embedding.make_inputs(encoder, modality, 1)
        FLOPS_PER_ITEM[label, modality] = count_flops(embedding.embedding_pass(encoder, modality, one))
    return FLOPS_PER_ITEM[label, modality]


@functools.cache
def memory_of(label: str, dtype: torch.dtype | None) -> dict:
    prepare = functools.partial(embedding.passes_of, MODELS[label], str(DEVICE), dtype)
    keys = PLANS[label].keys() if dtype is None else FULL.keys()
    return peak_memory(prepare, keys, str(DEVICE))


@pytest.mark.parametrize(("label", "modality", "batch_size", "dtype"), CASES)
def test_embedding_throughput(benchmark, workbench, label, modality, batch_size, dtype):
    model = MODELS[label]
    if model.weights == "random" and benchmark.disabled:
        pytest.skip("random-weight architectures are timed only with benchmarks enabled (--benchmark-enable)")
    encoder = workbench.encoder(label) if model.weights == "trained" else random_weight_encoder(label)
    run = embedding.embedding_pass(encoder, modality, embedding.make_inputs(encoder, modality, batch_size), dtype)
    plan = PLANS[label] if dtype is None else FULL
    compute = embedding.compute_dtype(encoder, dtype)
    benchmark.group = f"embedding {label} {str(compute).removeprefix('torch.')}"
    benchmark.extra_info.update(model=label, weights=model.weights, modality=modality, batch_size=batch_size)
    out = benchmark.pedantic(run, rounds=plan.rounds, warmup_rounds=plan.warmup_rounds)
    assert out.shape[0] == batch_size
    if benchmark.stats is None:  # --benchmark-disable: the pass ran once, nothing was timed
        return
    median = benchmark.stats.stats.median
    benchmark.extra_info.update(throughput_figures(encoder, label, modality, batch_size, compute, median))
    benchmark.extra_info.update(memory_figures(memory_of(label, dtype)[(modality, batch_size)]))


def throughput_figures(encoder, label: str, modality: str, batch_size: int, dtype: torch.dtype, median_s: float) -> dict:
    peak = device_peak(DEVICE)
    peak_flops = peak.flops_for(dtype) if peak else None
    flops = flops_per_item(label, modality, encoder)
    items_per_s = batch_size / median_s
    return {
        "device": str(DEVICE), "device_name": peak.name if peak else torch.cuda.get_device_name(DEVICE),
        "dtype": str(dtype).removeprefix("torch."), "items_per_s": items_per_s, "flops_per_item": flops,
        "achieved_flops": flops * items_per_s, "peak_flops": peak_flops, "peak_source": peak.source if peak else None,
        "mfu": mfu(flops * batch_size, median_s, peak_flops) if peak_flops else None,
    }


def memory_figures(memory: PeakMemory) -> dict:
    return {"peak_memory_bytes": memory.peak_bytes, "pass_memory_bytes": memory.pass_bytes, "memory_method": memory.method}
