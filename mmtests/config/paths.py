"""Which matrix values are local paths, and where relative ones point."""

from __future__ import annotations

from pathlib import Path

LOCAL_PREFIXES = ("/", "./", "../", "~", "local-dir:")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


def is_local_path(value: str) -> bool:
    """A model / dataset / weights value meant as a local path rather than a hub id or tag: it says so (a path
    prefix or a weights file name), exists, or has more slashes than a hub id ("org/name") can have."""
    return (value.startswith(LOCAL_PREFIXES) or value.endswith(WEIGHT_SUFFIXES) or value.count("/") > 1
            or Path(value).exists())


def resolve(base: Path, value: str) -> str:
    """Paths that exist relative to the matrix file win; anything else (hub ids, tags) is kept."""
    prefix = "local-dir:" if value.startswith("local-dir:") else ""
    candidate = base / value[len(prefix):]
    return prefix + str(candidate.resolve()) if candidate.exists() else value
