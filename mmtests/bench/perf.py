"""FLOPs, device peaks and utilisation (MFU, MBU).

- FLOPs are model FLOPs: matrix products and convolutions only, 2 per multiply-add, as counted by
  `torch.utils.flop_counter.FlopCounterMode`. Element-wise work (softmax, norms, activations) is left out.
- MFU (model FLOPs utilisation) = achieved FLOP/s / the device's peak FLOP/s for the dtype the work ran in.
- MBU (memory bandwidth utilisation) = bytes that must be read per step / step time / peak bandwidth;
  for decoding that is the weights (plus the KV cache), read once per generated token.
- GPU peaks are vendor datasheet figures (dense, no sparsity). A CPU's is the theoretical bound where its clock
  can be read, else measured by probe rounds, the best kept: one before the sweep, one after (a probe that ran
  while other processes were busy reads low, and would inflate every MFU after it).
"""

from __future__ import annotations

import contextlib
import platform
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

TERA = 1e12


@dataclass(frozen=True)
class DevicePeak:
    """What a device can do at most: dense FLOP/s per dtype name ("bfloat16", ...) and bytes/s of memory."""

    name: str
    flops: dict[str, float]
    bandwidth: float
    source: str

    def flops_for(self, dtype: torch.dtype) -> float | None:
        return self.flops.get(str(dtype).removeprefix("torch."))


def _datasheet(name: str, tflops: float, tb_per_s: float) -> DevicePeak:
    # Hopper and Ampere tensor cores run bf16 and fp16 at the same dense rate.
    return DevicePeak(name, {"bfloat16": tflops * TERA, "float16": tflops * TERA}, tb_per_s * TERA,
                      "NVIDIA datasheet, tensor cores without sparsity (half its starred with-sparsity figure)")


# First match on torch.cuda.get_device_name() wins, so the more specific names come first.
GPU_PEAKS: tuple[tuple[str, DevicePeak], ...] = (
    (r"H100.*PCIe", _datasheet("H100 PCIe", 756.5, 2.0)),
    (r"H100.*NVL", _datasheet("H100 NVL", 835.5, 3.9)),
    (r"H100", _datasheet("H100 SXM", 989.5, 3.35)),
    (r"H200.*NVL", _datasheet("H200 NVL", 835.5, 4.8)),
    (r"H200", _datasheet("H200 SXM", 989.5, 4.8)),
    (r"A100.*80GB.*PCIe", _datasheet("A100 80GB PCIe", 312.0, 1.935)),
    (r"A100.*PCIe", _datasheet("A100 40GB PCIe", 312.0, 1.555)),
    (r"A100.*80GB", _datasheet("A100 80GB SXM", 312.0, 2.039)),
    (r"A100", _datasheet("A100 40GB SXM", 312.0, 1.555)),
)


def gpu_peak(device_name: str) -> DevicePeak | None:
    """The datasheet peak of a GPU named as `torch.cuda.get_device_name()` names it; None when not in the table."""
    for pattern, peak in GPU_PEAKS:
        if re.search(pattern, device_name, re.IGNORECASE):
            return peak
    return None


def _best_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: first-touch page faults and thread-pool start-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def cpu_matmul_flops(size: int = 2048, repeats: int = 3) -> float:
    """FLOP/s of the best of `repeats` float32 `size`x`size` matrix products, on torch's current threads."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    out = torch.empty(size, size)
    return 2 * size**3 / _best_seconds(lambda: torch.mm(a, b, out=out), repeats)


def cpu_copy_bandwidth(mebibytes: int = 256, repeats: int = 3) -> float:
    """Bytes/s of the best of `repeats` copies of a tensor far larger than any cache; read and write both count."""
    src = torch.ones(mebibytes * 2**20 // 4)
    dst = torch.empty_like(src)
    return 2 * src.nbytes / _best_seconds(lambda: dst.copy_(src), repeats)


@dataclass(frozen=True)
class Probe:
    """One round of CPU peak probes and how busy the machine was with other work meanwhile."""

    when: str  # "before" or "after" the sweep
    flops: float  # best float32 matmul FLOP/s over PROBE_SIZES
    bandwidth: float  # best copy bytes/s
    other_cpu_share: float | None  # see mmtests.bench.contention


PROBE_SIZES = (1024, 2048)  # the faster one wins: small products fit caches, large ones amortise overheads
_PROBES: list[Probe] = []


def probe_cpu(when: str, repeats: int = 3) -> Probe:
    """A round of probes, kept: the CPU's peak is the best of all rounds (see `cpu_peak`)."""
    from . import contention

    before = contention.sample()
    flops = max(cpu_matmul_flops(size, repeats) for size in PROBE_SIZES)
    probe = Probe(when, flops, cpu_copy_bandwidth(repeats=repeats),
                  contention.other_cpu_share(before, contention.sample()))
    _PROBES.append(probe)
    return probe


def cpu_probes() -> list[Probe]:
    return list(_PROBES)


def theoretical_cpu_flops(threads: int) -> tuple[float, str] | None:
    """An upper bound on float32 FLOP/s where the CPU's maximum clock can be read (cpufreq), else None.

    FLOPs per cycle and core: SIMD float32 lanes (16 with AVX-512, 8 with AVX/AVX2, 4 otherwise) x 2 for a
    fused multiply-add x 2 FMA units (the most any x86 core has); `threads` counted as cores. Every
    assumption errs upwards, so MFU against it is never above 100%."""
    try:
        khz = int(open("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read())  # noqa: SIM115
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()  # noqa: SIM115
    except (OSError, ValueError, StopIteration):
        return None
    lanes = 16 if "avx512f" in flags else 8 if "avx" in flags else 4
    per_cycle = lanes * (2 if "fma" in flags else 1) * 2
    return (khz * 1e3 * per_cycle * threads,
            f"theoretical: {khz / 1e6:.2f} GHz max clock x {per_cycle} float32 FLOP/cycle "
            f"({lanes} lanes, FMA, 2 units) x {threads} threads")


def cpu_peak() -> DevicePeak:
    """This CPU's peak: the theoretical bound where the clock can be read, else the best probe round so far
    (one round is taken on first use; `probe_cpu("after")` adds one after a sweep)."""
    threads = torch.get_num_threads()
    name = f"CPU {platform.processor() or platform.machine()}, {threads} threads"
    if not _PROBES:
        probe_cpu("before")
    measured = max(p.flops for p in _PROBES)
    bandwidth = max(p.bandwidth for p in _PROBES)
    rounds = ", ".join(f"{p.when} {p.flops / 1e9:.1f}" for p in _PROBES)
    theoretical = theoretical_cpu_flops(threads)
    if theoretical:
        return DevicePeak(name, {"float32": theoretical[0]}, bandwidth,
                          f"{theoretical[1]} (probes measured {rounds} GFLOP/s)")
    return DevicePeak(name, {"float32": measured}, bandwidth,
                      f"measured: best of {len(_PROBES)} probe rounds ({rounds} GFLOP/s; float32 matmuls of "
                      f"{' and '.join(map(str, PROBE_SIZES))}, 256 MiB copies) on {threads} threads")


def device_peak(device: torch.device) -> DevicePeak | None:
    """Datasheet peak for a known GPU, measured peak for the CPU, None for anything else."""
    if device.type == "cuda":
        return gpu_peak(torch.cuda.get_device_name(device))
    if device.type == "cpu":
        return cpu_peak()
    return None


@contextlib.contextmanager
def _countable_attention() -> Iterator[None]:
    """Attention as plain matrix products, which the counter sees: the fused kernels hide theirs.

    nn.MultiheadAttention's inference fast path is one opaque op (projections included), and the CPU's
    fused scaled-dot-product kernel has no FLOP formula; the math backend computes the same products.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    fast_path = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fast_path)


def count_flops(fn: Callable[[], object]) -> int:
    """Model FLOPs of one call of `fn` (it runs once): matrix products and convolutions, 2 per multiply-add."""
    with _countable_attention(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def mfu(flops: float, seconds: float, peak_flops_per_s: float) -> float:
    """Model FLOPs utilisation: the share of the device's peak FLOP/s that `flops` done in `seconds` reached."""
    return flops / seconds / peak_flops_per_s


def mbu(bytes_per_step: float, step_seconds: float, peak_bytes_per_s: float) -> float:
    """Memory bandwidth utilisation: bytes that must be read each step, over step time, over peak bandwidth."""
    return bytes_per_step / step_seconds / peak_bytes_per_s


def weight_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's parameters and buffers as stored: what one decode step reads at least once."""
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))


def synchronized(fn: Callable[[], object], device: torch.device) -> Callable[[], object]:
    """`fn` followed by a CUDA synchronize on a GPU, so a timer around it sees the kernels finish."""
    if device.type != "cuda":
        return fn

    def call():
        result = fn()
        torch.cuda.synchronize(device)
        return result

    return call
