"""`mmtests init`: a starter matrix for one model (a local folder, a hub id or an open_clip name), and whether a
matrix's hub models are in the local cache (a first offline run skips those that are not)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .adapters.family import family_of
from .config import ConfigError, is_local_path
from .config.builtins import builtin_entries

GENERIC_FOLDERS = {"open_clip", "hf", "model", "checkpoint", "weights"}


@dataclass(frozen=True)
class Target:
    """The model entry `init` writes: its name, backend, `model` (and open_clip `pretrained`) values, what was read
    to choose the backend, and whether it comes from a hub."""

    name: str
    backend: str
    model: str
    pretrained: str | None
    evidence: str
    hub: bool


def _name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "my-model"


def _folder_target(folder: Path, matrix: Path) -> Target:
    family = family_of(folder)
    if family is None:
        raise ConfigError(f"{folder}: cannot tell what this folder holds (neither open_clip_config.json nor a "
                          "config.json with a model_type); pass a folder saved by open_clip or by transformers' "
                          "save_pretrained")
    if not family.backends:
        raise ConfigError(f"{folder} holds {family.said} ({family.evidence}), which no backend of mmtests runs: "
                          "'hf_clip' takes dual encoders (CLIP, SigLIP, ...), 'llava' image-text-to-text models")
    relative = os.path.relpath(folder.resolve(), matrix.resolve().parent)
    # paths in a matrix are relative to it; "./" keeps a two-part path from reading as a hub id
    where = f"./{relative}" if not relative.startswith("..") else str(folder.resolve())
    name = folder.resolve().name
    name = f"{folder.resolve().parent.name}-{name}" if name in GENERIC_FOLDERS else name
    backend = family.backends[0]
    model = f"local-dir:{where}" if backend == "open_clip" else where
    return Target(_name(name), backend, model, None, f"{family.said} ({family.evidence})", hub=False)


def _open_clip_target(text: str) -> Target | None:
    import open_clip

    arch, _, tag = text.partition(":")
    if arch not in open_clip.list_models():
        return None
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if tag and tag not in tags:
        raise ConfigError(f"open_clip has no pretrained tag {tag!r} for {arch} (known: {', '.join(tags) or 'none'})")
    tag = tag or (tags[0] if tags else None)
    return Target(_name(f"{arch}-{tag}" if tag else arch), "open_clip", arch, tag,
                  f"an open_clip architecture ({arch}{', pretrained ' + tag if tag else ''})", hub=bool(tag))


def _hub_target(text: str) -> Target:
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(text, "config.json")
    family = family_of(Path(cached).parent) if isinstance(cached, str) else None
    if family and family.backends:
        return Target(_name(text.rpartition("/")[2]), family.backends[0], text, None,
                      f"{family.said} ({family.evidence}, from the local hub cache)", hub=True)
    return Target(_name(text.rpartition("/")[2]), "hf_clip", text, None,
                  "a hub id not in the local cache: backend 'hf_clip' assumed (a dual encoder); write "
                  "backend = \"llava\" for a vision-language model", hub=True)


def target_of(text: str, matrix: Path) -> Target:
    """The model entry for a local folder, an open_clip name (ARCH or ARCH:TAG) or a Hugging Face hub id."""
    folder = Path(text).expanduser()
    if folder.exists() or text.removeprefix("local-dir:") != text:
        folder = Path(text.removeprefix("local-dir:")).expanduser()
        if not folder.is_dir():
            raise ConfigError(f"{text}: not a folder; pass a model folder, an open_clip name or a hub id")
        return _folder_target(folder, matrix)
    if is_local_path(text):
        raise ConfigError(f"{text}: no such folder; pass a model folder, an open_clip name (e.g. ViT-B-32:openai) "
                          "or a Hugging Face hub id (e.g. openai/clip-vit-base-patch32)")
    return _open_clip_target(text) or _hub_target(text)


def _dual_encoder_checks() -> str:
    builtin = builtin_entries()
    return f"""# Zero-shot classification on the built-in shapes world (rendered locally, nothing downloaded). Built-in
# datasets, usable by name: {", ".join(builtin["datasets"])}.
# Built-in prompt sets: {", ".join(builtin["prompt_sets"])}.
# Your own data: a [datasets.NAME] entry (source = "imagefolder", "parquet" or "hf"; see the README).
[[zero_shot]]
dataset = "shapes-test"
prompt_set = "photo"
# min_top1 = 0.5          # a floor to assert; without one, top-1 is measured and reported

[[zero_shot]]
dataset = "shapes-test"
prompt_set = "ensemble"

# Does prompt engineering pay? Paired top-1 gain of one prompt set over another on the same images.
[[prompt_gain]]
dataset = "shapes-test"
baseline = "bare"
candidate = "ensemble"
# min_gain = 0.0
"""


def _vlm_checks() -> str:
    return """# Questions generated from the built-in shapes world's ground truth (colour, shape, position, size, count).
[question_sets.shapes-qa]
dataset = "shapes-test"
questions = "shapes"
images = 100
max_new_tokens = 24

# Exact-match accuracy per question kind (min_accuracy = { colour = 0.5 } asserts a floor), and POPE-style yes/no.
[[answers]]
question_set = "shapes-qa"

[[pope]]
question_set = "shapes-qa"

# Greedy decoding is deterministic, batches answer as one at a time, answers end with EOS.
[[stability]]
question_set = "shapes-qa"
"""


def starter_matrix(target: Target, matrix: Path) -> str:
    """The text of a starter matrix for `target`, with comments a user edits."""
    vlm = target.backend == "llava"
    online = " --mm-online" if target.hub else ""
    pretrained = f'pretrained = "{target.pretrained}"\n' if target.pretrained else ""
    return f"""# mmtests matrix for {target.model}: {target.evidence}.
# Written by `mmtests init`; edit it freely. Paths are relative to this file.
#   mmtests run --mm-config {matrix.name}{online}      # the suites; then `mmtests report`
#   mmtests nightly --mm-config {matrix.name}{online}  # suites, benchmarks and the report
{"# A hub model: the first run downloads it with --mm-online (offline, a model not in the cache is skipped)." + chr(10)
 if target.hub else ""}
[models.{target.name}]
backend = "{target.backend}"
model = "{target.model}"
{pretrained}# dtype = "bfloat16"                      # default: float32 on CPU
# baseline = "baselines/{target.name}"   # a known-good run to gate every later run against, sample by sample:
#                                         # record it with `mmtests run --mm-config {matrix.name} -- --mm-save-baseline`

{_vlm_checks() if vlm else _dual_encoder_checks()}
# What `mmtests bench` and `mmtests nightly` time (default: every model, the standard batch sizes).
# [benchmarks]
# batch_sizes = [1, 8, 32]
# rounds = 5
"""


def uncached_hub_models(models: dict) -> list[str]:
    """Names of hub models (hf_clip and llava hub ids) that are not in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    out = []
    for name, spec in models.items():
        if spec.backend == "open_clip" or is_local_path(spec.model):
            continue  # open_clip's pretrained tags resolve through open_clip itself: the skip message names them
        if not isinstance(try_to_load_from_cache(spec.model, "config.json"), str):
            out.append(name)
    return out
