"""Where records live: `<FILE stem>.d/<run id>/<writer>.jsonl`, one file per session or xdist worker (`main`,
`gw0`, ...) with `<writer>-samples.jsonl` beside it, and `FILE` itself, rewritten at the end of each session as
the merged copy of the newest run that has figures. Writes are whole or not at all.

Every path a user types (`--mm-config`, `--mm-records`, the report's `--records`, `--out`, `--history`, ...) and
every default output location is resolved by `anchored`, against one anchor: the invocation directory, where the
command was typed (never pytest's rootdir, which pytest guesses from the arguments).
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

RUN_ID = re.compile(r"[0-9A-Za-z_.-]+")  # run ids name folders: no slashes, no ".."
SAMPLES = "-samples.jsonl"


def anchored(path: str | Path, invocation_dir: str | Path | None = None) -> Path:
    """`path` as an absolute path: `~` expanded, a relative path joined to the invocation directory (default: the
    current directory, which a command line tool has not changed yet). The one rule for every path a user types."""
    path = Path(path).expanduser()
    return Path(os.path.abspath(Path(invocation_dir or os.getcwd()) / path))


def unwritable(folder: Path, files: tuple[str, ...] = ()) -> str | None:
    """Why `folder` (and the `files` in it that exist) cannot be made or written, or None when it can: checked
    before the first measurement, so nothing measured is lost to a location that refuses it at the end."""
    for part in (folder, *folder.parents):
        if part.is_dir():
            if not os.access(part, os.W_OK | os.X_OK):
                return f"{part} is not writable" + (f" (the folder {folder} would be made in it)" if part != folder
                                                    else "")
            break
        if part.exists() or part.is_symlink():
            return f"{part} is a file, not a folder"
    locked = [name for name in files if (folder / name).is_file() and not os.access(folder / name, os.W_OK)]
    return f"{folder / locked[0]} is read-only" if locked else None


def runs_dir(records: Path) -> Path:
    return records.parent / f"{records.stem}.d"


def run_folders(records: Path) -> list[Path]:
    """The run folders beside a records file, oldest first (run ids are UTC timestamps)."""
    where = runs_dir(records)
    if not where.is_dir():
        return []
    return sorted(p for p in where.iterdir() if p.is_dir() and RUN_ID.fullmatch(p.name) and not p.name.startswith("."))


def _writer_order(path: Path) -> tuple:
    name = path.name.removesuffix(SAMPLES).removesuffix(".jsonl")
    return name != "main", len(name), name  # main, then gw0, gw1, ..., gw10


def writer_files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.glob("*.jsonl") if not p.name.endswith(SAMPLES)), key=_writer_order)


def sample_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"*{SAMPLES}"), key=_writer_order)


def merged(paths: list[Path]) -> bytes:
    """Files concatenated, each ended by a newline (a killed writer's half line stays on a line of its own)."""
    parts = []
    for path in paths:
        data = path.read_bytes()
        parts.append(data if not data or data.endswith(b"\n") else data + b"\n")
    return b"".join(parts)


def temp_name(path: Path) -> Path:
    """A name beside `path` that no reader takes for a record or a history file (dot first, `.tmp` last)."""
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write a file whole or not at all: a concurrent reader sees the old file or the new one, never half of one."""
    tmp = temp_name(path)
    try:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
