"""Peak memory of a pass in a fresh process (mmtests.bench.memory); this module imports no torch, so the child starts fast."""

import functools
import sys

import pytest

from mmtests.bench.memory import peak_memory

MIB = 2**20


def allocate(n_bytes: int) -> bytearray:
    return bytearray(n_bytes)  # zero-filled: every page is touched, so it is resident


def allocation_passes():
    """What `peak_memory` runs in the child: nothing to load; pass `key` allocates `key` bytes."""
    return functools.partial(functools.partial, allocate)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak RSS is read from Linux /proc")
def test_each_pass_is_measured_from_its_own_baseline():
    # A smaller pass after a larger one: without resetting the high-water mark it would read as large.
    memory = peak_memory(allocation_passes, [64 * MIB, 16 * MIB], "cpu")
    big, small = memory[64 * MIB], memory[16 * MIB]
    # Within a few MiB: pages already resident (freed heap, the allocator's own) can be reused.
    assert big.pass_bytes == pytest.approx(64 * MIB, abs=4 * MIB)
    assert small.pass_bytes == pytest.approx(16 * MIB, abs=4 * MIB)
    assert big.peak_bytes > big.pass_bytes  # the peak includes the interpreter itself
    assert "fresh process" in big.method
