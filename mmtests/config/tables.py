"""Kinds of values made of parts (lists and tables), each with its own message."""

from __future__ import annotations

import difflib
import string
from dataclasses import dataclass
from pathlib import Path

from .values import Context, Kind, Number

# Besides GenerationConfig's own attributes: generate() arguments the LLaVA adapter also takes.
GENERATE_ARGUMENTS = {"max_new_tokens", "min_new_tokens"}


def _open_clip_list(value: str, key: str, example: str, where: str, ctx: Context) -> list | None:
    """A list named 'open_clip:<NAME>' from open_clip.zero_shot_metadata, or None (problem noted)."""
    from open_clip import zero_shot_metadata

    found = getattr(zero_shot_metadata, value.split(":", 1)[1], None)
    if found is None:
        ctx.problems.append(f"{where}: {key} {value!r} is not a list in open_clip.zero_shot_metadata "
                            f"(e.g. open_clip:{example})")
    return found


@dataclass(frozen=True)
class Templates(Kind):
    """Prompt templates: strings with one "{}" (or "{c}") for the class name, or 'open_clip:<NAME>'."""

    required = True
    types = (list, str)

    def read(self, value, key: str, where: str, ctx: Context) -> tuple[str, ...]:
        if isinstance(value, str) and value.startswith("open_clip:"):
            templates = _open_clip_list(value, "templates", "OPENAI_IMAGENET_TEMPLATES", where, ctx)
            return tuple(t("{}") for t in templates) if templates is not None else ()
        if not (isinstance(value, list) and value and all(isinstance(t, str) for t in value)):
            ctx.problems.append(f"{where}: templates must be a non-empty list of strings or 'open_clip:<NAME>'")
            return ()
        read = [_template(t, where, ctx) for t in value]
        return tuple(t for t in read if t is not None)


def _template(text: str, where: str, ctx: Context) -> str | None:
    """A template as str.format reads it: exactly one replacement field, '{}' or '{c}', without a format spec or
    conversion (literal braces written '{{' and '}}'); returned with the field as '{}'. None: problem noted."""
    fix = ("needs exactly one placeholder for the class name, '{}' or '{c}' (without a format spec or conversion); "
           "write a literal brace as '{{' or '}}'")
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as err:  # a stray '{' or '}'
        ctx.problems.append(f"{where}: template {text!r} is not a format string ({err}); it {fix}")
        return None
    fields = ["{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
              for _, name, spec, conversion in parts if name is not None]
    if fields not in (["{}"], ["{c}"]):
        found = f"it has {', '.join(map(repr, fields))}" if fields else "it has none"
        ctx.problems.append(f"{where}: template {text!r} {fix}; {found}")
        return None
    escape = str.maketrans({"{": "{{", "}": "}}"})
    return "".join(literal.translate(escape) + ("{}" if name is not None else "") for literal, name, _, _ in parts)


@dataclass(frozen=True)
class Classnames(Kind):
    types = (list, str)

    def read(self, value, key: str, where: str, ctx: Context) -> tuple[str, ...] | None:
        if isinstance(value, str) and value.startswith("open_clip:"):
            names = _open_clip_list(value, "classnames", "IMAGENET_CLASSNAMES", where, ctx)
            return tuple(names) if names is not None else None
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return tuple(value)
        ctx.problems.append(f"{where}: classnames must be a list of strings or 'open_clip:<NAME>'")
        return None


@dataclass(frozen=True)
class ImageSizes(Kind):
    """[width, height] pairs of `lo` to `hi` pixels."""

    lo: int = 8
    hi: int = 4096
    types = (list,)

    def read(self, value, key: str, where: str, ctx: Context) -> tuple[tuple[int, int], ...]:
        if not (isinstance(value, list) and all(
                isinstance(p, list) and len(p) == 2
                and all(isinstance(x, int) and not isinstance(x, bool) and self.lo <= x <= self.hi for x in p)
                for p in value)):
            ctx.problems.append(f"{where}: image_sizes must be a list of [width, height] pairs of pixels, e.g. [[96, 80]]")
            return ()
        return tuple((w, h) for w, h in value)


@dataclass(frozen=True)
class Folder(Kind):
    """A folder relative to the matrix file; it may not exist yet (--mm-save-baseline makes it)."""

    types = (str,)

    def read(self, value, key: str, where: str, ctx: Context) -> str | None:
        if not isinstance(value, str) or not value:
            ctx.problems.append(f"{where}: {key} must be a folder path (relative to the matrix file)")
            return None
        return str((ctx.base / Path(value).expanduser()).resolve())


@dataclass(frozen=True)
class Tolerances(Kind):
    """Overrides of the baseline gates' tolerances: name = number in [0, 1]."""

    types = (dict,)

    def read(self, value, key: str, where: str, ctx: Context) -> tuple[tuple[str, float], ...]:
        if not isinstance(value, dict):
            ctx.problems.append(f"{where}: tolerance must be a table, e.g. {{min_agreement = 0.99}}")
            return ()
        from ..figures.gates import TOLERANCES

        known = set(TOLERANCES["float32"])
        for k, v in value.items():
            if k not in known:
                close = difflib.get_close_matches(k, known, 1)
                ctx.problems.append(f"{where}: tolerance has no {k!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                                    + f"; known: {', '.join(sorted(known))}")
            elif isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                ctx.problems.append(f"{where}: tolerance {k} = {v!r} must be a number in [0, 1]")
        return tuple(sorted((k, float(v)) for k, v in value.items() if k in known and isinstance(v, (int, float))))


def _generation_settings() -> set[str]:
    from transformers import GenerationConfig  # heavy: only for a matrix that sets generation

    return {k for k in GenerationConfig().to_dict() if not k.startswith("_")} - {"transformers_version"}


@dataclass(frozen=True)
class Generation(Kind):
    """generate() settings of transformers' GenerationConfig, kept as sorted (name, value) pairs."""

    types = (dict,)

    def read(self, value, key: str, where: str, ctx: Context) -> tuple[tuple[str, object], ...]:
        if not isinstance(value, dict):
            ctx.problems.append(f"{where}: generation must be a table of generate() settings, e.g. {{temperature = 0.7}}")
            return ()
        known = _generation_settings() | GENERATE_ARGUMENTS if value else set()
        for k in sorted(set(value) - known):
            close = difflib.get_close_matches(k, sorted(known), 1)
            ctx.problems.append(f"{where}: generation has no setting {k!r}"
                                + (f" (did you mean {close[0]!r}?)" if close else "")
                                + "; use generate() settings of transformers' GenerationConfig, e.g. do_sample, "
                                  "num_beams, temperature, top_p")
        return tuple(sorted(value.items()))


@dataclass(frozen=True)
class Synonyms(Kind):
    """(said, meant) pairs for answer matching."""

    types = (dict,)

    def read(self, value, key: str, where: str, ctx: Context) -> tuple[tuple[str, str], ...]:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            ctx.problems.append(f"{where}: synonyms must be a table of strings, e.g. {{center = \"centre\"}}")
            return ()
        return tuple(sorted(value.items()))


@dataclass(frozen=True)
class Thresholds(Kind):
    """A table of question kind = number in [0, 1]."""

    types = (dict,)

    def read(self, value, key: str, where: str, ctx: Context) -> tuple[tuple[str, float], ...]:
        if not isinstance(value, dict):
            ctx.problems.append(f"{where}: {key} must be a table of question kind = threshold")
            return ()
        for kind, threshold in value.items():
            if threshold is not None:
                Number().read(threshold, kind, f"{where} {key}", ctx)
        return tuple(sorted(value.items()))

