"""LLaVA generation speed: time to first token (prefill), decode tokens/s, per-token latency, answers/s.

    pytest benchmarks -k llava --benchmark-enable --benchmark-only

Models: the embedded tiny LLaVA (trained) and LLaVA-1.5 architectures with random weights
(`mmtests.bench.generation`): the 7B shapes on CUDA only, a reduced variant on CPUs. Inputs are
synthetic and seeded (one image and a fixed 24-token prompt per sequence, no padding).

- prefill: prompt and image through the model plus the first greedy token = time to first token;
- decode: prefill plus exactly NEW_TOKENS greedy tokens with the KV cache. From the two medians of
  the same (model, batch): per-token latency = (decode - prefill) / (NEW_TOKENS - 1), decode
  tokens/s = batch / per-token latency, answers/s = batch / decode median.

`extra_info` adds FLOPs of the prefill (FlopCounterMode), its MFU against the device peak
(`mmtests.bench.perf`), the decode MBU (language-model weights + mean KV cache read per step over
the peak bandwidth) and peak memory from a separate pass in a fresh process.
"""

from __future__ import annotations

import functools

import pytest
import torch

from mmtests.adapters import ModelUnavailable
from mmtests.bench import generation as G
from mmtests.bench.memory import peak_memory
from mmtests.bench.perf import count_flops, device_peak, mbu, mfu

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
NEW_TOKENS = 16
TINY = G.GenModel("tiny-llava", "trained", "tiny-llava")
REDUCED = G.GenModel("llava-reduced-random-weights", "random")
FULL_7B = G.GenModel("llava-1.5-7b-shapes-random-weights", "random")
# (model, batch sizes, rounds), sized for 2 CPU cores or one GPU.
PLANS = {
    "cuda": [(TINY, (1, 8, 32), 10), (REDUCED, (1, 8, 32), 5), (FULL_7B, (1, 8, 32), 3)],
    "cpu": [(TINY, (1, 8, 32), 5), (REDUCED, (1, 8), 2)],
}[DEVICE.type]
CASES = [pytest.param(m, b, r, id=f"{m.label}-b{b}") for m, batches, r in PLANS for b in batches]
PREFILL_S: dict[tuple[str, int], float] = {}  # median time to first token, for the decode figures


@functools.lru_cache(maxsize=1)  # one model in memory at a time; cases run model by model
def loaded(model: G.GenModel):
    return G.load(model, DEVICE)


def _model(model: G.GenModel, benchmark):
    if model.weights == "random" and benchmark.disabled:
        pytest.skip("random-weight architectures are timed only with benchmarks enabled (--benchmark-enable)")
    try:
        return loaded(model)
    except ModelUnavailable as err:
        pytest.skip(str(err))


@functools.cache
def memory_of(model: G.GenModel) -> dict:
    keys = [(kind, b) for m, batches, _ in PLANS if m == model for b in batches for kind in ("prefill", "decode")]
    return peak_memory(functools.partial(G.passes_of, model, str(DEVICE), NEW_TOKENS), keys, str(DEVICE))


def _synchronized(fn):
    def run():
        out = fn()
        if DEVICE.type == "cuda":
            torch.cuda.synchronize()
        return out
    return run


def _common(benchmark, model: G.GenModel, llava, batch: int, phase: str) -> None:
    benchmark.group = f"llava {phase} {model.label}"
    benchmark.extra_info.update(model=model.label, weights=model.weights, modality=f"llava-{phase}",
                                batch_size=batch, device=str(DEVICE), dtype=str(llava.dtype).removeprefix("torch."),
                                new_tokens=NEW_TOKENS if phase == "decode" else 1)


@pytest.mark.parametrize(("model", "batch", "rounds"), CASES)
def test_llava_prefill(benchmark, model, batch, rounds):
    llava = _model(model, benchmark)
    inputs = G.synthetic_inputs(llava, batch)
    run = G.prefill(llava, inputs)
    _common(benchmark, model, llava, batch, "prefill")
    out = benchmark.pedantic(_synchronized(run), rounds=rounds, warmup_rounds=1)
    assert out.shape == (batch,)
    if benchmark.stats is None:
        return
    median = benchmark.stats.stats.median
    PREFILL_S[model.label, batch] = median
    peak = device_peak(DEVICE)
    peak_flops = peak.flops_for(llava.dtype) if peak else None
    flops = count_flops(run)
    memory = memory_of(model)[("prefill", batch)]
    benchmark.extra_info.update(
        ttft_s=median, items_per_s=batch / median, prompt_tokens=inputs["input_ids"].shape[1], flops=flops,
        flops_per_item=flops / batch,
        achieved_flops=flops / median, peak_flops=peak_flops, mfu=mfu(flops, median, peak_flops) if peak_flops else None,
        peak_memory_bytes=memory.peak_bytes, pass_memory_bytes=memory.pass_bytes, memory_method=memory.method)


@pytest.mark.parametrize(("model", "batch", "rounds"), CASES)
def test_llava_decode(benchmark, model, batch, rounds):
    llava = _model(model, benchmark)
    inputs = G.synthetic_inputs(llava, batch)
    _common(benchmark, model, llava, batch, "decode")
    out = benchmark.pedantic(_synchronized(G.decode(llava, inputs, NEW_TOKENS)), rounds=rounds, warmup_rounds=1)
    prompt = inputs["input_ids"].shape[1]
    assert out.shape == (batch, prompt + NEW_TOKENS)  # exactly NEW_TOKENS new tokens, every round
    if benchmark.stats is None:
        return
    median = benchmark.stats.stats.median
    memory = memory_of(model)[("decode", batch)]
    figures = dict(answers_per_s=batch / median, generated_tokens_per_s=batch * NEW_TOKENS / median,
                   peak_memory_bytes=memory.peak_bytes, pass_memory_bytes=memory.pass_bytes,
                   memory_method=memory.method)
    ttft = PREFILL_S.get((model.label, batch))
    if ttft is not None and median > ttft:
        step = (median - ttft) / (NEW_TOKENS - 1)
        peak = device_peak(DEVICE)
        read = G.language_model_bytes(llava) + G.kv_cache_bytes(llava, batch, prompt + NEW_TOKENS // 2)
        figures.update(ttft_s=ttft, per_token_latency_s=step, decode_tokens_per_s=batch / step, items_per_s=batch / step,
                       bytes_per_step=read, mbu=mbu(read, step, peak.bandwidth) if peak else None)
    benchmark.extra_info.update(figures)
