"""Tiny random-weight models of every family mmtests supports, built offline from transformers' (and open_clip's)
config classes the way their own tests build them, saved with their processors and a word-level tokenizer.

They prove that every suite and benchmark runs on a family (structure, stability, agreement with a baseline of
the same weights); random weights know nothing, so no accuracy is asserted on them.

    build("qwen2-vl", folder)   # a checkpoint folder `from_pretrained` loads, in seconds
    names("vlm")                # the vision-language families; names("dual"): the dual encoders
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Family:
    name: str  # e.g. "siglip2", "llava-next"
    kind: str  # "dual" (dual encoder) or "vlm" (vision-language model)
    backend: str  # the matrix backend that loads it: "hf_clip", "open_clip", "llava"
    build: Callable[[Path, int], dict]  # (folder, seed) -> the matrix entry's keys (at least "model")
    note: str = ""  # what is particular about the family, for the README and messages


def registry() -> dict[str, Family]:
    from .dual import DUAL
    from .vlm import VLM

    return {f.name: f for f in (*DUAL, *VLM)}


def names(kind: str | None = None) -> list[str]:
    return [n for n, f in registry().items() if kind in (None, f.kind)]


def build(name: str, folder: Path, seed: int = 0) -> dict:
    """Builds family `name` into `folder` (created); returns its matrix entry's keys (backend, model, ...)."""
    family = registry()[name]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return {"backend": family.backend, **family.build(folder, seed)}
