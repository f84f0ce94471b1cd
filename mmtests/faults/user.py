"""Detection power on the user's own matrix: each folder fault applied to a copy of each local model folder, the
user's suites run against the entry's own baseline (a matrix that points the entry at the copy), and a clean copy
run the same way (any red there is a false alarm). The user's folders and matrix are only read."""

from __future__ import annotations

import json
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Matrix, ModelSpec, is_local_path
from .edits import copy_model
from .folders import USER_CATALOGUE, FolderFault
from .runner import Result, _run

SAVE_FIRST = "no gates against a baseline: record one with pytest --mm-save-baseline first"


@dataclass
class EntryPlan:
    name: str
    folder: Path | None  # None: its faults are not measurable (`why`)
    why: str = ""
    faults: list[FolderFault] = field(default_factory=list)
    not_applicable: dict[str, str] = field(default_factory=dict)  # fault -> why


def _folder(spec: ModelSpec) -> tuple[Path | None, str]:
    """The entry's local model folder, or why it has none that can be copied."""
    value = spec.model.removeprefix("local-dir:")
    if spec.backend == "open_clip" and not spec.model.startswith("local-dir:"):
        return None, (f"open_clip config {spec.model!r} with pretrained {spec.pretrained!r} is not a model folder: only a "
                      "local-dir: folder can be copied and edited")
    if not is_local_path(value) or not Path(value).expanduser().exists():
        return None, (f"{spec.model!r} is a hub id, not a local folder: a hub model cannot be copied; download it "
                      "into a folder and name that folder in 'model'")
    if not Path(value).expanduser().is_dir():
        return None, f"{spec.model!r} is not a folder"
    return Path(value).expanduser(), ""


def plan(matrix: Matrix, models: list[str] | None, only: list[str] | None) -> list[EntryPlan]:
    """Per entry of `matrix` (those named in `models`, default all): the faults that apply, and why the rest do not."""
    plans = []
    for name, spec in matrix.models.items():
        if models and name not in models:
            continue
        folder, why = _folder(spec)
        if folder is not None and not spec.baseline:
            folder, why = None, SAVE_FIRST
        elif folder is not None and not (Path(spec.baseline) / "outcomes.json").is_file():
            folder, why = None, f"baseline folder '{spec.baseline}' holds no outcomes.json: {SAVE_FIRST}"
        p = EntryPlan(name, folder, why)
        for fault in USER_CATALOGUE:
            if only and fault.name not in only:
                continue
            if spec.backend not in fault.backends:
                p.not_applicable[fault.name] = f"not a fault of a {spec.backend} model"
            elif fault.setting is not None and isinstance(reason := fault.setting(spec), str):
                p.not_applicable[fault.name] = reason
            else:
                p.faults.append(fault)
        plans.append(p)
    return plans


# ----------------------------------------------------------------------------- the fault matrix


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"no TOML for {v!r}")


def _key(k: str) -> str:
    return k if k and all(c.isascii() and (c.isalnum() or c in "-_") for c in k) else json.dumps(k)


def _lines(table: dict) -> list[str]:
    return [f"{_key(k)} = {_toml_value(v)}" for k, v in table.items()]


def to_toml(data: dict) -> str:
    """TOML text that tomllib reads back as `data` (a matrix file: sections of tables and arrays of tables)."""
    out = []
    for section, value in data.items():
        if isinstance(value, dict):
            flat = {k: v for k, v in value.items() if not isinstance(v, dict)}
            if flat or not value:
                out += ["", f"[{_key(section)}]", *_lines(flat)]
            out += [line for name, entry in value.items() if isinstance(entry, dict)
                    for line in ("", f"[{_key(section)}.{_key(name)}]", *_lines(entry))]
        elif isinstance(value, list) and all(isinstance(x, dict) for x in value):
            out += [line for entry in value for line in ("", f"[[{_key(section)}]]", *_lines(entry))]
        else:
            raise TypeError(f"top-level key {section!r} = {value!r}: a matrix file holds only sections")
    return "\n".join(out).lstrip() + "\n"


def fault_matrix(matrix: Matrix, entry: str, copy: Path, setting: tuple[str, object] | None, out: Path) -> Path:
    """The user's matrix, its paths made absolute, with `entry` pointed at `copy` (and given `setting`), at `out`."""
    raw = tomllib.loads(matrix.path.read_text(encoding="utf-8"))
    for name, spec in matrix.models.items():
        for key in ("model", "pretrained", "baseline"):
            if key in raw["models"][name]:
                raw["models"][name][key] = getattr(spec, key)
    for name, spec in matrix.datasets.items():
        if "path" in raw.get("datasets", {}).get(name, {}):
            raw["datasets"][name]["path"] = spec.path
    raw["models"][entry]["model"] = ("local-dir:" if matrix.models[entry].model.startswith("local-dir:") else "") + str(copy)
    if setting is not None:
        raw["models"][entry][setting[0]] = setting[1]
    out.write_text(to_toml(raw), encoding="utf-8")
    return out


def _needed(matrix: Matrix, entry: str) -> list[str]:
    """The entry and the control models its attention checks compare it with."""
    return [entry, *sorted({c.control for c in matrix.attention if c.model == entry and c.control})]


def _why_caught(r: Result, log: Path) -> list[str]:
    """A run that failed without a red figure (the copy did not load, a test errored): the last lines of its summary."""
    if r.red or not r.caught or not log.is_file():
        return r.red
    lines = [ln for ln in log.read_text().splitlines() if ln.startswith(("FAILED", "ERROR", "E "))]
    return [f"exit status {r.exit_code}: " + (lines[-1][:300] if lines else "no figure recorded")]


def run_entry(matrix: Matrix, p: EntryPlan, tmp: Path, select: str | None, say=print) -> tuple[Result, list[Result]]:
    """A clean copy of the entry's folder, then each of its faults, through the user's suites: (clean, faults)."""
    spec, models = matrix.models[p.name], _needed(matrix, p.name)
    results = []
    for fault in [None, *p.faults]:
        label = "clean" if fault is None else fault.name
        workdir = tmp / p.name / label
        copy = workdir / "model"
        copy_model(p.folder, copy)
        setting = None
        if fault is not None and fault.edit is not None and (reason := fault.edit(copy, spec.backend)):
            p.not_applicable[fault.name] = reason
            continue
        if fault is not None and fault.setting is not None:
            setting = fault.setting(spec)
        r = _run(fault_matrix(matrix, p.name, copy, setting, workdir / "matrix.toml"), models, workdir,
                 select=select, log=workdir / "pytest.log")
        r.name, r.what = f"{p.name}: {label}", "clean copy, its baseline" if fault is None else fault.what
        r.red = _why_caught(r, workdir / "pytest.log")
        shutil.rmtree(copy)  # an edited copy of a large model's weights is as large as they are
        results.append(r)
        verdict = ("FALSE ALARM " + "; ".join(r.red[:3]) if r.caught else "green") if fault is None else (
            f"caught by {len(r.red)} checks" if r.caught else "MISSED")
        say(f"{r.name}: {verdict} ({r.seconds:.0f} s)")
        if fault is None and r.exit_code == 5:
            say(f"{p.name}: no test of the matrix ran on it (exit status 5): widen -k / --mm-model; its faults are "
                "not measurable")
            p.faults = []
            return r, []
    p.faults = [f for f in p.faults if f.name not in p.not_applicable]
    return results[0], results[1:]
