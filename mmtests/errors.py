"""What can go wrong with a matrix entry, by who has to act.

- `ModelUnavailable` / `DatasetUnavailable`: not available *here* (a hub entry not in the local cache,
  offline). A skip, or a failure under `--mm-require-all`.
- `EntryError`: the entry points at something that exists but cannot be used as configured (weights
  that do not load, a missing column or split, a local path that does not exist). Always a failure,
  with one message naming the entry and the fix.
- `DataWarning`: data used with something left out or repaired (images that do not decode, skipped and named;
  a damaged shapes cache, rebuilt). A warning, never silent.
- Any other exception in a check is a crash: recorded as a crashed figure (`crash_site` says where), shown with
  its traceback once; a later check that needs the same loader or measurement gets `CrashedEarlier`, one line.
"""

from __future__ import annotations

import traceback
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent  # mmtests/


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


def first_line(err: BaseException, limit: int = 300) -> str:
    """An exception's message on one line (its first non-blank line, cut at `limit` characters)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0][:limit] if lines else ""


class CrashedEarlier(Exception):
    """A loader or measurement that raised in an earlier check of the session, raised again for a later check
    without running it again: one line naming the first check and the original exception (`error`)."""

    def __init__(self, error: BaseException, first: str | None):
        self.error, self.first = error, first
        where = f" in {first}" if first else ""
        super().__init__(f"crashed earlier{where}: {error.__class__.__name__}: {first_line(error)}")


def _frame_place(filename: str) -> tuple[str, str]:
    """(package, path shown) of a source file: `mmtests` and its path inside mmtests' folder; an installed
    package's top folder and its path under site-packages; else the file's name (a test, a conftest, a script)."""
    path = Path(filename)
    try:
        return "mmtests", str(Path("mmtests") / path.resolve().relative_to(PACKAGE))
    except (ValueError, OSError):
        pass
    parts = path.parts
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            inside = parts[len(parts) - parts[::-1].index(marker):]
            if inside:
                return Path(inside[0]).stem, "/".join(inside)
    return path.name, path.name


def crash_site(err: BaseException) -> dict:
    """Where an exception was raised, from its traceback: `origin`, the package of the innermost frame (`mmtests`,
    or the library it came from: `transformers`, `torch`, `open_clip`, ...; a file name for other code), `at`, that
    frame as "path:line in function", and, when the innermost frame is not mmtests', `called_from`: the innermost
    mmtests frame, where mmtests called into the library."""
    frames = traceback.extract_tb(err.__traceback__) if err.__traceback__ is not None else []
    if not frames:
        return {"origin": None, "at": None}
    places = [(_frame_place(f.filename), f) for f in frames]
    (origin, path), inner = places[-1]
    site = {"origin": origin, "at": f"{path}:{inner.lineno} in {inner.name}"}
    if origin != "mmtests":
        ours = [(p, f) for (pkg, p), f in places if pkg == "mmtests"]
        if ours:
            p, f = ours[-1]
            site["called_from"] = f"{p}:{f.lineno} in {f.name}"
    return site
