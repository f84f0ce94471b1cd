"""The test matrix: models, datasets, prompt sets and expectations, read from a TOML file.

Every problem in a file is reported at once, each naming its entry and the fix, as `ConfigError`.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_CONFIG = Path(__file__).with_name("default.toml")
BACKENDS = ("open_clip", "hf_clip")
SOURCES = ("shapes", "hf", "imagefolder", "parquet")


class ConfigError(ValueError):
    """A matrix file that cannot be used; the message lists every problem found."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    backend: str  # one of BACKENDS
    model: str  # open_clip config name or "local-dir:<dir>"; HF hub id or local directory
    pretrained: str | None = None  # open_clip pretrained tag or weights file


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    source: str  # one of SOURCES
    path: str  # HF dataset name, or a local directory / parquet file; "" for the shapes world
    split: str
    label_column: str
    image_column: str = "image"
    classnames: tuple[str, ...] | None = None  # None: the label column's ClassLabel names
    size: int | None = None  # shapes world only: number of images
    limit: int | None = None  # evaluate the first `limit` rows only
    description: str = ""  # one line for the report: what this dataset probes

    @property
    def images_key(self) -> tuple:
        """Datasets with the same key share their images (and so the image embeddings)."""
        return (self.source, self.path, self.split, self.image_column, self.size, self.limit)


@dataclass(frozen=True)
class PromptSet:
    name: str
    templates: tuple[str, ...]  # format strings with one "{}" for the class name ("{c}" is rewritten)


@dataclass(frozen=True)
class ZeroShotCheck:
    model: str
    dataset: str
    prompt_set: str
    min_top1: float | None  # None: measured and reported, not asserted

    @property
    def id(self) -> str:
        return f"{self.model}/{self.dataset}/{self.prompt_set}"


@dataclass(frozen=True)
class GainCheck:
    model: str
    dataset: str
    baseline: str
    candidate: str
    min_gain: float | None

    @property
    def id(self) -> str:
        return f"{self.model}/{self.dataset}/{self.candidate}-vs-{self.baseline}"


@dataclass
class Matrix:
    path: Path
    models: dict[str, ModelSpec] = field(default_factory=dict)
    datasets: dict[str, DatasetSpec] = field(default_factory=dict)
    prompt_sets: dict[str, PromptSet] = field(default_factory=dict)
    zero_shot: list[ZeroShotCheck] = field(default_factory=list)
    prompt_gain: list[GainCheck] = field(default_factory=list)

    def narrowed(self, models: list[str] | None, datasets: list[str] | None) -> Matrix:
        """The same matrix restricted to the named models and datasets (None keeps all)."""
        problems = [_unknown("model", n, self.models, "--mm-model") for n in models or [] if n not in self.models]
        problems += [_unknown("dataset", n, self.datasets, "--mm-dataset") for n in datasets or [] if n not in self.datasets]
        if problems:
            raise ConfigError("\n".join(problems))
        keep_m = set(models or self.models)
        keep_d = set(datasets or self.datasets)
        return Matrix(
            path=self.path,
            models={k: v for k, v in self.models.items() if k in keep_m},
            datasets={k: v for k, v in self.datasets.items() if k in keep_d},
            prompt_sets=self.prompt_sets,
            zero_shot=[c for c in self.zero_shot if c.model in keep_m and c.dataset in keep_d],
            prompt_gain=[c for c in self.prompt_gain if c.model in keep_m and c.dataset in keep_d],
        )


def _unknown(kind: str, name: str, known: dict, where: str) -> str:
    return f"{kind} {name!r} in {where} is not defined (known: {', '.join(sorted(known)) or 'none'})"


def _resolve(base: Path, value: str) -> str:
    """Paths that exist relative to the matrix file win; anything else (hub ids, tags) is kept."""
    prefix = "local-dir:" if value.startswith("local-dir:") else ""
    candidate = base / value[len(prefix):]
    return prefix + str(candidate.resolve()) if candidate.exists() else value


def _open_clip_list(value: str, key: str, example: str, where: str, problems: list[str]) -> list | None:
    """A list named 'open_clip:<NAME>' from open_clip.zero_shot_metadata, or None (problem noted)."""
    from open_clip import zero_shot_metadata

    found = getattr(zero_shot_metadata, value.split(":", 1)[1], None)
    if found is None:
        problems.append(f"{where}: {key} {value!r} is not a list in open_clip.zero_shot_metadata (e.g. open_clip:{example})")
    return found


def _classnames(value, where: str, problems: list[str]) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) and value.startswith("open_clip:"):
        names = _open_clip_list(value, "classnames", "IMAGENET_CLASSNAMES", where, problems)
        return tuple(names) if names is not None else None
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    problems.append(f"{where}: classnames must be a list of strings or 'open_clip:<NAME>'")
    return None


def _templates(value, where: str, problems: list[str]) -> tuple[str, ...]:
    if isinstance(value, str) and value.startswith("open_clip:"):
        templates = _open_clip_list(value, "templates", "OPENAI_IMAGENET_TEMPLATES", where, problems)
        return tuple(t("{}") for t in templates) if templates is not None else ()
    if not (isinstance(value, list) and value and all(isinstance(t, str) for t in value)):
        problems.append(f"{where}: templates must be a non-empty list of strings or 'open_clip:<NAME>'")
        return ()
    for t in value:
        if ("{}" in t) == ("{c}" in t) or t.count("{}") + t.count("{c}") != 1:
            problems.append(f"{where}: template {t!r} needs exactly one placeholder, '{{}}' or '{{c}}', for the class name")
    return tuple(t.replace("{c}", "{}") for t in value)


def _threshold(entry: dict, key: str, where: str, problems: list[str], lo: float = 0.0) -> float | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, (int, float)) or not lo <= value <= 1:
        problems.append(f"{where}: {key} = {value!r} must be a number in [{lo:g}, 1]")
        return None
    return float(value)


def _models_of(entry: dict, models: dict, where: str, problems: list[str]) -> list[str]:
    names = entry.get("models", list(models))
    for n in names:
        if n not in models:
            problems.append(f"{where}: {_unknown('model', n, models, 'models')}")
    return [n for n in names if n in models]


def load_matrix(path: str | Path | None = None) -> Matrix:
    """Read and validate a matrix file (the packaged default when `path` is None)."""
    path = Path(path or DEFAULT_CONFIG)
    if not path.is_file():
        raise ConfigError(f"matrix file {str(path)!r} does not exist; pass an existing TOML file to --mm-config")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from err
    base = path.parent
    problems: list[str] = []
    matrix = Matrix(path=path)
    known_sections = {"models", "datasets", "prompt_sets", "zero_shot", "prompt_gain"}
    for key in raw:
        if key not in known_sections:
            problems.append(f"{path.name}: unknown section [{key}] (known: {', '.join(sorted(known_sections))})")

    for name, m in raw.get("models", {}).items():
        where = f"[models.{name}]"
        if m.get("backend") not in BACKENDS:
            problems.append(f"{where}: backend = {m.get('backend')!r} must be one of {', '.join(BACKENDS)}")
            continue
        if not isinstance(m.get("model"), str):
            problems.append(f"{where}: missing 'model' (open_clip config name or local-dir:, HF id or directory)")
            continue
        pretrained = m.get("pretrained")
        matrix.models[name] = ModelSpec(name, m["backend"], _resolve(base, m["model"]),
                                        _resolve(base, pretrained) if pretrained else None)

    for name, d in raw.get("datasets", {}).items():
        where = f"[datasets.{name}]"
        source = d.get("source")
        if source not in SOURCES:
            problems.append(f"{where}: source = {source!r} must be one of {', '.join(SOURCES)}")
            continue
        if source != "shapes" and not isinstance(d.get("path"), str):
            problems.append(f"{where}: source {source!r} needs 'path' (dataset name, directory or parquet file)")
            continue
        if not isinstance(d.get("label_column"), str):
            problems.append(f"{where}: missing 'label_column' (the column holding class indices)")
            continue
        matrix.datasets[name] = DatasetSpec(
            name=name, source=source, path=_resolve(base, d.get("path", "")), split=d.get("split", "test"),
            label_column=d["label_column"], image_column=d.get("image_column", "image"),
            classnames=_classnames(d.get("classnames"), where, problems), size=d.get("size"), limit=d.get("limit"),
            description=d.get("description", ""),
        )

    for name, p in raw.get("prompt_sets", {}).items():
        matrix.prompt_sets[name] = PromptSet(name, _templates(p.get("templates"), f"[prompt_sets.{name}]", problems))

    for i, z in enumerate(raw.get("zero_shot", [])):
        where = f"[[zero_shot]] #{i + 1}"
        ds, ps = z.get("dataset"), z.get("prompt_set")
        if ds not in matrix.datasets:
            problems.append(f"{where}: {_unknown('dataset', str(ds), matrix.datasets, 'dataset')}")
        if ps not in matrix.prompt_sets:
            problems.append(f"{where}: {_unknown('prompt set', str(ps), matrix.prompt_sets, 'prompt_set')}")
        threshold = _threshold(z, "min_top1", where, problems)
        for model in _models_of(z, matrix.models, where, problems):
            matrix.zero_shot.append(ZeroShotCheck(model, ds, ps, threshold))

    for i, g in enumerate(raw.get("prompt_gain", [])):
        where = f"[[prompt_gain]] #{i + 1}"
        ds = g.get("dataset")
        if ds not in matrix.datasets:
            problems.append(f"{where}: {_unknown('dataset', str(ds), matrix.datasets, 'dataset')}")
        for key in ("baseline", "candidate"):
            if g.get(key) not in matrix.prompt_sets:
                problems.append(f"{where}: {_unknown('prompt set', str(g.get(key)), matrix.prompt_sets, key)}")
        threshold = _threshold(g, "min_gain", where, problems, lo=-1.0)
        for model in _models_of(g, matrix.models, where, problems):
            matrix.prompt_gain.append(GainCheck(model, ds, g.get("baseline"), g.get("candidate"), threshold))

    if problems:
        raise ConfigError(f"{path}:\n  " + "\n  ".join(problems))
    return matrix
