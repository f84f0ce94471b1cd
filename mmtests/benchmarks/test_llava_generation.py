"""LLaVA generation speed: time to first token (prefill), decode tokens/s, per-token latency, answers/s.

    pytest --pyargs mmtests.benchmarks -k llava --benchmark-enable --benchmark-only

Models: the matrix's vision-language entries of every family (the embedded tiny LLaVA by default) and LLaVA-1.5
architectures with random weights (`mmtests.bench.generation`): the 7B shapes on CUDA only, a reduced variant on
CPUs. Inputs come from the model's own processor: a shapes-world image and a fixed question in the model's prompt
form per sequence, no padding.

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
from mmtests.bench.perf import count_flops, device_peak, mbu, mfu, synchronized
from mmtests.config import BenchmarkSpec
from mmtests.mmsession import session_device, session_matrix

NEW_TOKENS = 16
# (batch sizes, rounds) per device, sized for 2 CPU cores or one GPU; the 7B shapes need CUDA.
DEFAULT_PLAN = {"cuda": ((1, 8, 32), 10), "cpu": ((1, 8, 32), 5)}
RANDOM_PLANS = {"cuda": {"llava-reduced": ((1, 8, 32), 5), "llava-1.5-7b-shapes": ((1, 8, 32), 3)},
                "cpu": {"llava-reduced": ((1, 8), 2)}}
GPU_ONLY = {"llava-1.5-7b-shapes"}
PREFILL_S: dict[tuple[str, int], float] = {}  # median time to first token, for the decode figures


def plan_of(model: G.GenModel, spec: BenchmarkSpec, device: str) -> tuple[tuple[int, ...], int]:
    batches, rounds = RANDOM_PLANS.get(device, {}).get(model.architecture, DEFAULT_PLAN[device])
    return spec.batch_sizes or batches, spec.rounds or rounds


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "model" not in metafunc.fixturenames:
        return
    matrix, device = session_matrix(metafunc.config), session_device(metafunc.config).type
    cases = []
    for model in G.bench_models(matrix):
        gpu_only = model.architecture in GPU_ONLY
        batches, rounds = plan_of(model, matrix.benchmarks, "cuda" if gpu_only else device)
        marks = [pytest.mark.gpu] if gpu_only else []
        cases += [pytest.param(model, b, rounds, id=f"{model.label}-b{b}", marks=marks) for b in batches]
    metafunc.parametrize(("model", "batch", "rounds"), cases)


@functools.lru_cache(maxsize=1)  # one model in memory at a time; cases run model by model
def loaded(model: G.GenModel, device: torch.device):
    return G.load(model, device)


def _model(model: G.GenModel, benchmark, device: torch.device):
    if model.weights == "random" and benchmark.disabled:
        pytest.skip("random-weight architectures are timed only with benchmarks enabled (--benchmark-enable)")
    try:
        return loaded(model, device)
    except ModelUnavailable as err:
        pytest.skip(str(err))


@functools.cache
def memory_of(model: G.GenModel, batches: tuple[int, ...], device: str) -> dict:
    keys = [(kind, b) for b in batches for kind in ("prefill", "decode")]
    return peak_memory(functools.partial(G.passes_of, model, device, NEW_TOKENS), keys, device)


@pytest.fixture(scope="module")
def device(request) -> torch.device:
    return session_device(request.config)


@pytest.fixture
def batches(request, model) -> tuple[int, ...]:
    """Every batch size this session times for `model`: its peak memory is measured for all in one process."""
    return tuple(sorted({item.callspec.params["batch"] for item in request.session.items
                         if getattr(item, "callspec", None) and item.callspec.params.get("model") == model}))


def _common(benchmark, model: G.GenModel, llava, batch: int, phase: str) -> None:
    benchmark.group = f"llava {phase} {model.label}"
    benchmark.extra_info.update(model=model.label, weights=model.weights, modality=f"llava-{phase}",
                                batch_size=batch, device=str(llava.device), dtype=str(llava.dtype).removeprefix("torch."),
                                new_tokens=NEW_TOKENS if phase == "decode" else 1)


def test_llava_prefill(benchmark, device, batches, model, batch, rounds):
    loaded = _model(model, benchmark, device)
    llava, inputs = loaded.model, loaded.inputs(batch)
    run = G.prefill(llava, inputs)
    _common(benchmark, model, llava, batch, "prefill")
    out = benchmark.pedantic(synchronized(run, device), rounds=rounds, warmup_rounds=1)
    assert out.shape == (batch,)
    if benchmark.stats is None:
        return
    median = benchmark.stats.stats.median
    PREFILL_S[model.label, batch] = median
    peak = device_peak(device)
    peak_flops = peak.flops_for(llava.dtype) if peak else None
    flops = count_flops(run)
    memory = memory_of(model, batches, str(device))[("prefill", batch)]
    benchmark.extra_info.update(
        ttft_s=median, items_per_s=batch / median, prompt_tokens=inputs["input_ids"].shape[1], flops=flops,
        flops_per_item=flops / batch,
        achieved_flops=flops / median, peak_flops=peak_flops, mfu=mfu(flops, median, peak_flops) if peak_flops else None,
        peak_memory_bytes=memory.peak_bytes, pass_memory_bytes=memory.pass_bytes, memory_method=memory.method)


def test_llava_decode(benchmark, device, batches, model, batch, rounds):
    loaded = _model(model, benchmark, device)
    llava, inputs = loaded.model, loaded.inputs(batch)
    _common(benchmark, model, llava, batch, "decode")
    out = benchmark.pedantic(synchronized(G.decode(llava, inputs, NEW_TOKENS), device), rounds=rounds, warmup_rounds=1)
    prompt = inputs["input_ids"].shape[1]
    assert out.shape == (batch, prompt + NEW_TOKENS)  # exactly NEW_TOKENS new tokens, every round
    if benchmark.stats is None:
        return
    median = benchmark.stats.stats.median
    memory = memory_of(model, batches, str(device))[("decode", batch)]
    figures = dict(answers_per_s=batch / median, generated_tokens_per_s=batch * NEW_TOKENS / median,
                   peak_memory_bytes=memory.peak_bytes, pass_memory_bytes=memory.pass_bytes,
                   memory_method=memory.method)
    ttft = PREFILL_S.get((model.label, batch))
    if ttft is not None and median > ttft:
        step = (median - ttft) / (NEW_TOKENS - 1)
        peak = device_peak(device)
        read = G.language_model_bytes(llava) + G.kv_cache_bytes(llava, batch, prompt + NEW_TOKENS // 2)
        figures.update(ttft_s=ttft, per_token_latency_s=step, decode_tokens_per_s=batch / step, items_per_s=batch / step,
                       bytes_per_step=read, mbu=mbu(read, step, peak.bandwidth) if peak else None)
    benchmark.extra_info.update(figures)
