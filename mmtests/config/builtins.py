"""Entries a matrix may name without defining them: the shapes world's datasets and the prompt sets of the
embedded default (as mmtests/default.toml defines them), and open_clip's template lists.

A name the file defines itself is the file's; a built-in is added only where a check names it, so a matrix reads
as if its author had copied the entry in.
"""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path

DEFAULT_CONFIG = Path(__file__).parents[1] / "default.toml"
OPEN_CLIP_PROMPT_SETS = {"openai_imagenet": "open_clip:OPENAI_IMAGENET_TEMPLATES",
                         "simple_imagenet": "open_clip:SIMPLE_IMAGENET_TEMPLATES"}
# (section of the check, key) pairs that name a dataset or a prompt set
NAMED_BY = {
    "datasets": (("zero_shot", "dataset"), ("prompt_gain", "dataset"), ("retrieval", "dataset"),
                 ("question_sets", "dataset")),
    "prompt_sets": (("zero_shot", "prompt_set"), ("prompt_gain", "baseline"), ("prompt_gain", "candidate")),
}


@cache
def builtin_entries() -> dict[str, dict[str, dict]]:
    """Raw TOML entries by section: the default matrix's shapes datasets (they need no path) and prompt sets."""
    raw = tomllib.loads(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    datasets = {n: e for n, e in raw["datasets"].items() if e.get("source") == "shapes" and "path" not in e}
    prompt_sets = {**raw["prompt_sets"], **{n: {"templates": t} for n, t in OPEN_CLIP_PROMPT_SETS.items()}}
    return {"datasets": datasets, "prompt_sets": prompt_sets}


def _entries(section) -> list:
    if isinstance(section, dict):
        return list(section.values())
    return section if isinstance(section, list) else []


def with_builtins(sections: dict) -> dict:
    """`sections` (checked raw sections) plus the built-in datasets and prompt sets its checks name and it lacks."""
    out = dict(sections)
    for target, named_by in NAMED_BY.items():
        own = out.get(target, {})
        names = {e.get(key) for section, key in named_by for e in _entries(out.get(section))
                 if isinstance(e, dict) and isinstance(e.get(key), str)}
        added = {n: e for n, e in builtin_entries()[target].items() if n in names and n not in own}
        if added:
            out[target] = {**own, **added}
    return out
