"""What can go wrong with a matrix entry, by who has to act.

- `ModelUnavailable` / `DatasetUnavailable`: not available *here* (a hub entry not in the local cache,
  offline). A skip, or a failure under `--mm-require-all`.
- `EntryError`: the entry points at something that exists but cannot be used as configured (weights
  that do not load, a missing column or split, a local path that does not exist). Always a failure,
  with one message naming the entry and the fix.
- `DataWarning`: data used with something left out or repaired (images that do not decode, skipped and named;
  a damaged shapes cache, rebuilt). A warning, never silent.
"""

from __future__ import annotations


class ModelUnavailable(RuntimeError):
    """Weights or files are not available here; the message says which and how to get them."""


class DatasetUnavailable(RuntimeError):
    """The data is not available here; the message says which and how to make it available."""


class EntryError(RuntimeError):
    """A matrix entry that exists but cannot be used as configured; the message names it and the fix."""


class RecordsUnwritable(OSError):
    """The records file stopped taking lines (disk full, file-size limit, removed): the message names the file,
    says what was measured but not recorded, and the fix."""


class DataWarning(UserWarning):
    """Data that was used with a part left out or rebuilt (undecodable images skipped, a damaged cache rebuilt);
    the message names the files or rows and how to make it a failure or avoid it."""


def out_of_memory(err: BaseException) -> bool:
    """A failed allocation: Python's MemoryError, torch's (CUDA) OutOfMemoryError, or the CPU allocator's
    RuntimeError ("DefaultCPUAllocator: can't allocate memory"). Never "not available here"."""
    if isinstance(err, MemoryError):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def out_of_memory_message(what: str, err: BaseException, fix: str) -> str:
    """One line: what ran out of memory, the library's first line, and what to change."""
    first = str(err).splitlines()[0][:300] if str(err) else ""
    return f"{what}: out of memory ({err.__class__.__name__}: {first}); this is not a missing model: {fix}"
