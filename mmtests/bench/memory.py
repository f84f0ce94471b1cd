"""Peak memory of a pass, measured in a process of its own, apart from any timing.

The passes run in a fresh process (multiprocessing "spawn") that only loads the model, makes each
pass's inputs and runs the passes, one after another, after one unmeasured warm-up pass (so one-time
initialisation, such as CUDA libraries' workspaces or thread pools, is charged to no pass):

- CPU: before each pass the process's resident-set high-water mark is reset to its current RSS
  (Linux `/proc/self/clear_refs`), with freed heap handed back to the system first. `pass_bytes` is
  the RSS the pass added above what was resident just before it (model, inputs, runtime), and
  `peak_bytes` the process's peak RSS during the pass.
- CUDA: torch's allocator statistics (`reset_peak_memory_stats`, `max_memory_allocated`). `pass_bytes`
  is the peak minus what was allocated just before the pass; neither counts the CUDA context nor
  cached free blocks, which nvidia-smi would show.
"""

from __future__ import annotations

import ctypes
import gc
import multiprocessing
import sys
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

Pass = Callable[[], object]


@dataclass(frozen=True)
class PeakMemory:
    peak_bytes: int | None  # highest memory during the pass: process RSS (CPU) or allocated (CUDA)
    pass_bytes: int | None  # what the pass added above what was held just before it
    method: str  # how it was measured, or why it could not be


def peak_memory(prepare_passes: Callable[[], Callable[[Hashable], Pass]], keys: Sequence[Hashable],
                device: str) -> dict[Hashable, PeakMemory]:
    """Peak memory of each pass, in a fresh process.

    `prepare_passes()` runs there first (it loads the model) and returns `prepare(key)`, which makes
    one pass's inputs and returns the pass. Both must be picklable: module-level functions or
    `functools.partial`s of them. Passes run in the order of `keys`.
    """
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_measure, prepare_passes, list(keys), device).result()


def _measure(prepare_passes, keys: list, device: str) -> dict:
    prepare = prepare_passes()
    if keys:
        prepare(keys[0])()  # the warm-up
    measure = _cuda_pass if device.startswith("cuda") else _cpu_pass
    return {key: measure(prepare(key)) for key in keys}


def _cuda_pass(run: Pass) -> PeakMemory:
    import torch

    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    run()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    return PeakMemory(peak, peak - before, "torch.cuda.max_memory_allocated in a fresh process")


def _cpu_pass(run: Pass) -> PeakMemory:
    if not sys.platform.startswith("linux"):
        return PeakMemory(None, None, "not measured: resetting the peak RSS needs Linux /proc")
    gc.collect()
    _release_free_heap()
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = _status_bytes("VmRSS")
    run()
    peak = _status_bytes("VmHWM")
    return PeakMemory(peak, peak - before, "peak RSS (VmHWM) of a fresh process, reset before the pass")


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024  # the kernel reports kB
    raise KeyError(f"/proc/self/status has no {field}")


def _release_free_heap() -> None:
    # glibc keeps freed blocks mapped; without this an earlier, larger pass would hide a later pass's needs.
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
