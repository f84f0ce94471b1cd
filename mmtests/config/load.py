"""Reading a matrix file: every entry is read by the schema (schema.py) and checked by the rules (rules.py).

Every problem in a file is reported at once, each naming its entry and the fix, as `ConfigError`.
"""

from __future__ import annotations

import tomllib
from dataclasses import MISSING
from pathlib import Path

from .builtins import DEFAULT_CONFIG, with_builtins
from .matrix import ConfigError, Matrix
from .rules import RULES
from .schema import ARRAY_SECTIONS, SETTINGS_SECTIONS, TABLE_SECTIONS, keys
from .values import Context, did_you_mean, toml_type

# Entries may name entries of the sections read before theirs.
READ_ORDER = ("models", "datasets", "prompt_sets", "zero_shot", "prompt_gain", "retrieval", "question_sets", "answers", "pope",
              "stability", "attention")


def read_entry(entry_type: type, entry: dict, where: str, ctx: Context) -> dict | None:
    """The value of each key of `entry_type` (its default where not written), problems noted; None when a key that
    rejects its entry is wrong. Those keys are read first: an entry without its identity says nothing more."""
    values = {}
    fields = sorted(keys(entry_type).items(), key=lambda item: not item[1].metadata["rejects"])
    for name, f in fields:
        kind, value = f.metadata["kind"], entry.get(name)
        if value is None and not kind.required:
            values[f.name] = f.default
            continue
        before = len(ctx.problems)
        values[f.name] = kind.read(value, name, where, ctx)
        if len(ctx.problems) > before:
            if f.metadata["rejects"]:
                return None
            if f.default is not MISSING:
                values[f.name] = f.default
    return values


def _read_section(section: str, entries: dict | list, ctx: Context) -> None:
    entry_type = {**TABLE_SECTIONS, **ARRAY_SECTIONS}[section]
    named = section in TABLE_SECTIONS
    for name, entry in entries.items() if named else enumerate(entries, start=1):
        where = f"[{section}.{name}]" if named else f"[[{section}]] #{name}"
        values = read_entry(entry_type, entry, where, ctx)
        if values is None or not RULES.get(section, _kept)(values, entry, where, ctx):
            continue
        if named:
            getattr(ctx.matrix, section)[name] = entry_type(name=name, **values)
        else:  # one check per model it runs on
            getattr(ctx.matrix, section).extend(entry_type(**{**values, "model": m}) for m in values["model"])


def _kept(values: dict, entry: dict, where: str, ctx: Context) -> bool:
    return True


def _read_settings(section: str, entry, ctx: Context):
    """[benchmarks] or [evaluation]: one table of key = value lines."""
    entry_type, where = SETTINGS_SECTIONS[section], f"[{section}]"
    if not isinstance(entry, dict):
        ctx.problems.append(f"{where} must be one table of settings ({where} then key = value lines), "
                            f"not {toml_type(entry)}")
        return entry_type()
    known = keys(entry_type)
    ctx.problems.extend(f"{where}: unknown key {k!r}{did_you_mean(k, known)}" for k in entry if k not in known)
    values = read_entry(entry_type, entry, where, ctx)
    RULES.get(section, _kept)(values, entry, where, ctx)
    return entry_type(**values)


def _checked_sections(raw: dict, problems: list[str]) -> dict:
    """The known sections of the right shape, holding only entries that are tables, with unknown keys noted."""
    out: dict = {}
    for section, entry_type in {**TABLE_SECTIONS, **ARRAY_SECTIONS}.items():
        if section not in raw:
            continue
        value = raw[section]
        if section in TABLE_SECTIONS:
            if not isinstance(value, dict):
                problems.append(f"[{section}] must be tables, one per entry ([{section}.NAME]), not {toml_type(value)}")
                continue
            entries = list(value.items())
            wheres = [f"[{section}.{name}]" for name in value]
        else:
            if not isinstance(value, list):
                problems.append(f"[[{section}]] must be an array of tables, one [[{section}]] per check"
                                + (f"; write [[{section}]], not [{section}]" if isinstance(value, dict)
                                   else f", not {toml_type(value)}"))
                continue
            entries = list(enumerate(value))
            wheres = [f"[[{section}]] #{i + 1}" for i in range(len(value))]
        bad = [where for where, (_, e) in zip(wheres, entries, strict=True) if not isinstance(e, dict)]
        problems += [f"{where} must be a table of settings" for where in bad]
        if bad and section in ARRAY_SECTIONS:
            continue  # entries are numbered: read none rather than renumber them
        known = keys(entry_type)
        kept = {}
        for where, (name, entry) in zip(wheres, entries, strict=True):
            if isinstance(entry, dict):
                kept[name] = entry
                problems += [f"{where}: unknown key {k!r}{did_you_mean(k, known)}" for k in entry if k not in known]
        out[section] = kept if section in TABLE_SECTIONS else list(kept.values())
    return out


def _without_knock_ons(problems: list[str], raw: dict) -> list[str]:
    """Problems less "X is not defined" for entries the file does define but that were rejected for a problem of
    their own (already listed): one mistake, one line."""
    kinds = {"model": "models", "dataset": "datasets", "prompt set": "prompt_sets", "question set": "question_sets"}
    written = {kind: set(raw.get(section) or {}) if isinstance(raw.get(section), dict) else set()
               for kind, section in kinds.items()}
    return [p for p in problems if not any(f"{kind} {name!r} in " in p and " is not defined (known: " in p
                                           for kind, names in written.items() for name in names)]


def _parsed(path: Path) -> dict:
    if path.is_dir():
        raise ConfigError(f"matrix file {str(path)!r} is a folder; pass the TOML file inside it to --mm-config")
    if path.exists() and not path.is_file():  # a device, a pipe, a socket
        raise ConfigError(f"matrix file {str(path)!r} is not a regular file; pass a TOML file to --mm-config")
    if not path.is_file():
        raise ConfigError(f"matrix file {str(path)!r} does not exist; pass an existing TOML file to --mm-config")
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err}); save the matrix file as UTF-8") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from err


def load_matrix(path: str | Path | None = None) -> Matrix:
    """Read and validate a matrix file (the packaged default when `path` is None)."""
    path = Path(path or DEFAULT_CONFIG)
    raw = _parsed(path)
    ctx = Context(base=path.parent, matrix=Matrix(path=path), problems=[])
    problems = ctx.problems
    known_sections = {*TABLE_SECTIONS, *ARRAY_SECTIONS, *SETTINGS_SECTIONS}
    for key in raw:
        if key not in known_sections:
            problems.append(f"{path.name}: unknown section [{key}]{did_you_mean(key, known_sections)}")
    sections = with_builtins(_checked_sections(raw, problems))
    for section in READ_ORDER:
        _read_section(section, sections.get(section, {} if section in TABLE_SECTIONS else []), ctx)
    ctx.matrix.benchmarks = _read_settings("benchmarks", raw.get("benchmarks", {}), ctx)
    problems[:] = _without_knock_ons(problems, raw)
    if not sections.get("models") and not problems:
        problems.append(f"{path.name}: defines no model; a matrix needs at least one [models.NAME] entry "
                        "(backend and model), and checks that use it (see the README, 'Your own models and datasets')")
    ctx.matrix.evaluation = _read_settings("evaluation", raw.get("evaluation", {}), ctx)
    if problems:
        raise ConfigError(f"{path}:\n  " + "\n  ".join(problems))
    return ctx.matrix
