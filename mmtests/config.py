"""The test matrix: models, datasets, prompt sets and expectations, read from a TOML file.

Every problem in a file is reported at once, each naming its entry and the fix, as `ConfigError`.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_CONFIG = Path(__file__).with_name("default.toml")
BACKENDS = ("open_clip", "hf_clip", "llava")
DUAL_ENCODERS = ("open_clip", "hf_clip")
QUESTION_SOURCES = ("shapes", "columns")
SOURCES = ("shapes", "hf", "imagefolder", "parquet")
DTYPES = ("float32", "float16", "bfloat16")

# The keys each kind of entry knows; any other key is a mistake, reported with the closest known one.
MODEL_KEYS = {"backend", "model", "pretrained", "dtype", "padding_side", "generation", "baseline", "tolerance",
              "quantize", "required"}
DATASET_KEYS = {"source", "path", "split", "label_column", "image_column", "classnames", "size", "limit",
                "description", "image_sizes", "image_format", "required"}
# Shapes-world image formats: "png", the 64-pixel scenes (resized by image_sizes); "jpeg", photo-like JPEGs of
# 224-512 pixels a side (mmtests.data.variants).
IMAGE_FORMATS = ("png", "jpeg")
PROMPT_SET_KEYS = {"templates"}
QUESTION_SET_KEYS = {"dataset", "questions", "images", "max_new_tokens", "synonyms", "question_column",
                     "answer_column", "kind_column", "kind", "bbox_column"}
CHECK_KEYS = {"models", "gate"}  # every check section ([[zero_shot]] ... [[attention]])
ZERO_SHOT_KEYS = CHECK_KEYS | {"dataset", "prompt_set", "min_top1"}
PROMPT_GAIN_KEYS = CHECK_KEYS | {"dataset", "baseline", "candidate", "min_gain"}
ANSWER_KEYS = CHECK_KEYS | {"question_set", "min_accuracy"}
POPE_KEYS = CHECK_KEYS | {"question_set", "min_f1", "max_yes_ratio_gap"}
STABILITY_KEYS = CHECK_KEYS | {"question_set", "single_sample", "max_repeated_ngram", "min_finished"}
BENCHMARK_KEYS = {"models", "random_architectures", "random_vlms", "batch_sizes", "rounds"}
EVALUATION_KEYS = {"loader_workers", "gpu_decode"}
MAX_LOADER_WORKERS = 64
# LLaVA-1.5 architectures benchmarks can build with random weights (mmtests.bench.generation.RANDOM).
RANDOM_VLMS = ("llava-1.5-7b-shapes", "llava-reduced")
ATTENTION_KEYS = CHECK_KEYS | {"question_set", "kind", "samples", "control", "row_sum_tolerance", "min_inside_outside",
                               "min_pointing_hit", "min_margin_over_control", "min_image_share", "max_sink_share"}
TABLE_SECTIONS = {"models": MODEL_KEYS, "datasets": DATASET_KEYS, "prompt_sets": PROMPT_SET_KEYS,
                  "question_sets": QUESTION_SET_KEYS}  # [section.NAME]
ARRAY_SECTIONS = {"zero_shot": ZERO_SHOT_KEYS, "prompt_gain": PROMPT_GAIN_KEYS, "answers": ANSWER_KEYS,
                  "pope": POPE_KEYS, "stability": STABILITY_KEYS, "attention": ATTENTION_KEYS}  # [[section]]


class ConfigError(ValueError):
    """A matrix file that cannot be used; the message lists every problem found."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    backend: str  # one of BACKENDS
    model: str  # open_clip config name or "local-dir:<dir>"; HF hub id or local directory
    pretrained: str | None = None  # open_clip pretrained tag or weights file
    dtype: str | None = None  # llava: torch dtype name; default bfloat16/float16 on CUDA, float32 on CPU
    padding_side: str = "left"  # llava: batched generation padding (right padding breaks decoder-only batches)
    generation: tuple[tuple[str, object], ...] = ()  # llava: extra generate() settings, e.g. sampling
    baseline: str | None = None  # folder of its known-good per-sample outcomes and fingerprint
    tolerance: tuple[tuple[str, float], ...] = ()  # overrides of the baseline gates' tolerances
    quantize: str | None = None  # dual encoders: "dynamic-int8" (torch.ao dynamic quantization of Linear layers)

    @property
    def is_vlm(self) -> bool:
        return self.backend == "llava"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    source: str  # one of SOURCES
    path: str  # HF dataset name, or a local directory / parquet file; "" for the shapes world
    split: str
    label_column: str | None  # needed by zero-shot checks; question sets may do without
    image_column: str = "image"
    classnames: tuple[str, ...] | None = None  # None: the label column's ClassLabel names
    size: int | None = None  # shapes world only: number of images
    limit: int | None = None  # evaluate the first `limit` rows only
    description: str = ""  # one line for the report: what this dataset probes
    image_sizes: tuple[tuple[int, int], ...] = ()  # shapes world: (width, height) sizes cycled over the rows
    image_format: str = "png"  # shapes world: one of IMAGE_FORMATS

    @property
    def images_key(self) -> tuple:
        """Datasets with the same key share their images (and so the image embeddings)."""
        return (self.source, self.path, self.split, self.image_column, self.size, self.limit, self.image_sizes,
                self.image_format)


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


@dataclass(frozen=True)
class QuestionSet:
    name: str
    dataset: str  # a [datasets] entry: images, and ground truth for questions = "shapes"
    questions: str  # one of QUESTION_SOURCES
    images: int | None = None  # first N images of the dataset
    max_new_tokens: int = 24
    synonyms: tuple[tuple[str, str], ...] = ()  # (said, meant) pairs for answer matching
    question_column: str = "question"  # questions = "columns"
    answer_column: str = "answer"
    kind_column: str | None = None  # per-question kind; for kind = "pope", the POPE set (e.g. POPE's "category")
    kind: str = "pope"  # kind of every question ("pope": yes/no questions scored as POPE)
    bbox_column: str | None = None  # x0, y0, x1, y1 in pixels of what the question is about (localization)


@dataclass(frozen=True)
class VLMCheck:
    """A check of one vision-language model on one question set."""

    model: str
    question_set: str

    @property
    def id(self) -> str:
        return f"{self.model}/{self.question_set}"


@dataclass(frozen=True)
class AnswerCheck(VLMCheck):
    min_accuracy: tuple[tuple[str, float], ...]  # per question kind; kinds not listed are reported only


@dataclass(frozen=True)
class PopeCheck(VLMCheck):
    min_f1: float | None
    max_yes_ratio_gap: float | None


@dataclass(frozen=True)
class StabilityCheck(VLMCheck):
    single_sample: int  # questions re-asked one at a time, compared with the batched answers
    max_repeated_ngram: float  # per answer, share of repeated bigrams
    min_finished: float = 0.95  # share of answers that end with EOS before max_new_tokens


@dataclass(frozen=True)
class AttentionCheck(VLMCheck):
    kind: str  # the question kind whose answer position is analysed
    samples: int
    control: str | None  # a model measured the same way, for comparison (stage-1-only, untrained...)
    row_sum_tolerance: float = 1e-3
    min_inside_outside: float | None = None  # mean attention inside the box / outside, mean over layers and heads
    min_pointing_hit: float | None = None  # top patch inside the box, mean over layers and heads map
    min_margin_over_control: float | None = None  # inside/outside ratio above the control's
    min_image_share: float | None = None  # image tokens' share of the answer position's attention
    max_sink_share: float | None = None

    @property
    def id(self) -> str:
        return f"{self.model}/{self.question_set}/{self.kind}"


@dataclass(frozen=True)
class BenchmarkSpec:
    """[benchmarks]: what `pytest benchmarks` times. Without the section: every model of the matrix, at the
    device's default batch sizes and rounds, and no random-weight architecture."""

    models: tuple[str, ...] | None = None  # matrix entries; None: all of them
    random_architectures: tuple[str, ...] = ()  # open_clip architectures built with random weights
    random_vlms: tuple[str, ...] = ()  # RANDOM_VLMS entries
    batch_sizes: tuple[int, ...] | None = None  # None: the device's defaults
    rounds: int | None = None  # None: the device's defaults


@dataclass(frozen=True)
class EvaluationSpec:
    """[evaluation]: how images reach the dual encoders (mmtests.session.encoders.embed_images). The results do not
    depend on `loader_workers`; `gpu_decode` changes the decoder and the resize kernels, so its embeddings agree with
    the PIL path's only within a tolerance."""

    loader_workers: int | None = None  # DataLoader worker processes; None ("auto"): 0 on a CPU, more on CUDA
    gpu_decode: bool = False  # CUDA only: JPEGs decoded by nvJPEG, resized, cropped and normalised on the GPU


@dataclass
class Matrix:
    path: Path
    models: dict[str, ModelSpec] = field(default_factory=dict)
    datasets: dict[str, DatasetSpec] = field(default_factory=dict)
    prompt_sets: dict[str, PromptSet] = field(default_factory=dict)
    zero_shot: list[ZeroShotCheck] = field(default_factory=list)
    prompt_gain: list[GainCheck] = field(default_factory=list)
    question_sets: dict[str, QuestionSet] = field(default_factory=dict)
    answers: list[AnswerCheck] = field(default_factory=list)
    pope: list[PopeCheck] = field(default_factory=list)
    stability: list[StabilityCheck] = field(default_factory=list)
    attention: list[AttentionCheck] = field(default_factory=list)
    benchmarks: BenchmarkSpec = field(default_factory=BenchmarkSpec)
    evaluation: EvaluationSpec = field(default_factory=EvaluationSpec)

    def benchmarked_models(self) -> list[str]:
        """The matrix entries `pytest benchmarks` times, in matrix order."""
        named = self.benchmarks.models
        return [m for m in self.models if named is None or m in named]

    def narrowed(self, models: list[str] | None, datasets: list[str] | None) -> Matrix:
        """The same matrix restricted to the named models and datasets (None keeps all)."""
        problems = [_unknown("model", n, self.models, "--mm-model") for n in models or [] if n not in self.models]
        problems += [_unknown("dataset", n, self.datasets, "--mm-dataset") for n in datasets or [] if n not in self.datasets]
        if problems:
            raise ConfigError("\n".join(problems))
        keep_m = set(models or self.models)
        keep_d = set(datasets or self.datasets)
        keep_q = {n for n, q in self.question_sets.items() if q.dataset in keep_d}

        def vlm(checks):
            return [c for c in checks if c.model in keep_m and c.question_set in keep_q]

        return Matrix(
            path=self.path,
            models={k: v for k, v in self.models.items() if k in keep_m},
            datasets={k: v for k, v in self.datasets.items() if k in keep_d},
            prompt_sets=self.prompt_sets,
            zero_shot=[c for c in self.zero_shot if c.model in keep_m and c.dataset in keep_d],
            prompt_gain=[c for c in self.prompt_gain if c.model in keep_m and c.dataset in keep_d],
            question_sets={k: v for k, v in self.question_sets.items() if k in keep_q},
            answers=vlm(self.answers), pope=vlm(self.pope), stability=vlm(self.stability), attention=vlm(self.attention),
            benchmarks=self.benchmarks, evaluation=self.evaluation,
        )


def _without_knock_ons(problems: list[str], raw: dict) -> list[str]:
    """Problems less "X is not defined" for entries the file does define but that were rejected for a problem of
    their own (already listed): one mistake, one line."""
    kinds = {"model": "models", "dataset": "datasets", "prompt set": "prompt_sets", "question set": "question_sets"}
    written = {kind: set(raw.get(section) or {}) if isinstance(raw.get(section), dict) else set()
               for kind, section in kinds.items()}
    return [p for p in problems if not any(f"{kind} {name!r} in " in p and " is not defined (known: " in p
                                           for kind, names in written.items() for name in names)]


def _unknown(kind: str, name: str, known: dict, where: str) -> str:
    return f"{kind} {name!r} in {where} is not defined (known: {', '.join(sorted(known)) or 'none'})"


LOCAL_PREFIXES = ("/", "./", "../", "~", "local-dir:")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


def is_local_path(value: str) -> bool:
    """A model / dataset / weights value meant as a local path rather than a hub id or tag: it says so (a path
    prefix or a weights file name), exists, or has more slashes than a hub id ("org/name") can have."""
    return (value.startswith(LOCAL_PREFIXES) or value.endswith(WEIGHT_SUFFIXES) or value.count("/") > 1
            or Path(value).exists())


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


def _baseline_dir(base: Path, value, where: str, problems: list[str]) -> str | None:
    """A baseline folder, relative to the matrix file; it may not exist yet (--mm-save-baseline makes it)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        problems.append(f"{where}: baseline must be a folder path (relative to the matrix file)")
        return None
    return str((base / Path(value).expanduser()).resolve())


def _tolerance(value, where: str, problems: list[str]) -> tuple[tuple[str, float], ...]:
    from .figures.gates import TOLERANCES

    known = set(TOLERANCES["float32"])
    if not isinstance(value, dict):
        problems.append(f"{where}: tolerance must be a table, e.g. {{min_agreement = 0.99}}")
        return ()
    for k, v in value.items():
        if k not in known:
            close = difflib.get_close_matches(k, known, 1)
            problems.append(f"{where}: tolerance has no {k!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                            + f"; known: {', '.join(sorted(known))}")
        elif isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
            problems.append(f"{where}: tolerance {k} = {v!r} must be a number in [0, 1]")
    return tuple(sorted((k, float(v)) for k, v in value.items() if k in known and isinstance(v, (int, float))))


def _image_sizes(value, where: str, problems: list[str]) -> tuple[tuple[int, int], ...]:
    ok = isinstance(value, list) and all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(x, int) and not isinstance(x, bool) and 8 <= x <= 4096
                                                    for x in p) for p in value)
    if not ok:
        problems.append(f"{where}: image_sizes must be a list of [width, height] pairs of pixels, e.g. [[96, 80]]")
        return ()
    return tuple((w, h) for w, h in value)


def _image_format(entry: dict, where: str, problems: list[str]) -> str:
    value = entry.get("image_format", "png")
    if value not in IMAGE_FORMATS:
        problems.append(f"{where}: image_format = {value!r} must be one of {', '.join(map(repr, IMAGE_FORMATS))} "
                        "('png': the 64-pixel scenes; 'jpeg': photo-like JPEGs of 224-512 pixels a side)")
        return "png"
    return value


def _threshold(entry: dict, key: str, where: str, problems: list[str], lo: float = 0.0) -> float | None:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= 1:
        problems.append(f"{where}: {key} = {_toml(value)} must be a number in [{lo:g}, 1]")
        return None
    return float(value)


def _models_of(entry: dict, models: dict, where: str, problems: list[str]) -> list[str]:
    """Dual encoders a CLIP check runs on: those named, or every dual encoder of the matrix."""
    names = entry.get("models", [n for n, m in models.items() if not m.is_vlm])
    for n in names:
        if n not in models:
            problems.append(f"{where}: {_unknown('model', n, models, 'models')}")
        elif models[n].is_vlm:
            problems.append(f"{where}: model {n!r} is a vision-language model (backend 'llava'); "
                            f"zero-shot and prompt-gain checks need a dual encoder ({', '.join(DUAL_ENCODERS)})")
    return [n for n in names if n in models and not models[n].is_vlm]


_TOML_TYPES = {bool: "true or false", str: "a string", int: "a number", float: "a number", dict: "a table",
               list: "a list"}


def _toml(value) -> str:
    """A value as the matrix file spells it (true, not True)."""
    return str(value).lower() if isinstance(value, bool) else repr(value)


def _toml_type(value) -> str:
    return next((name for t, name in _TOML_TYPES.items() if isinstance(value, t)), type(value).__name__)


def _did_you_mean(key: str, known) -> str:
    close = difflib.get_close_matches(key, sorted(known), 1)
    return f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(sorted(known))})"


def _typed(entry: dict, key: str, kind: type, where: str, problems: list[str], default=None):
    """entry[key] when it is of `kind` (true/false is not a number here), else `default` with the problem noted."""
    value = entry.get(key)
    if value is None:
        return default
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        problems.append(f"{where}: {key} = {value!r} must be {_TOML_TYPES[kind]}")
        return default
    return value


def _positive_int(entry: dict, key: str, where: str, problems: list[str]) -> int | None:
    value = entry.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        problems.append(f"{where}: {key} = {_toml(value)} must be a whole number of at least 1")
        return None
    return value


_NAME_KEYS = {"dataset", "prompt_set", "baseline", "candidate", "question_set", "control"}  # names of other entries


def _checked_sections(raw: dict, problems: list[str]) -> dict:
    """The known sections of the right shape, holding only entries that are tables; unknown keys, and the
    `required` / `gate` keys every entry may carry, checked here."""
    out: dict = {}
    for section, known in {**TABLE_SECTIONS, **ARRAY_SECTIONS}.items():
        if section not in raw:
            continue
        value = raw[section]
        if section in TABLE_SECTIONS:
            if not isinstance(value, dict):
                problems.append(f"[{section}] must be tables, one per entry ([{section}.NAME]), not {_toml_type(value)}")
                continue
            entries = list(value.items())
            wheres = [f"[{section}.{name}]" for name in value]
        else:
            if not isinstance(value, list):
                problems.append(f"[[{section}]] must be an array of tables, one [[{section}]] per check"
                                + (f"; write [[{section}]], not [{section}]" if isinstance(value, dict)
                                   else f", not {_toml_type(value)}"))
                continue
            entries = list(enumerate(value))
            wheres = [f"[[{section}]] #{i + 1}" for i in range(len(value))]
        bad = [where for where, (_, e) in zip(wheres, entries, strict=True) if not isinstance(e, dict)]
        problems += [f"{where} must be a table of settings" for where in bad]
        if bad and section in ARRAY_SECTIONS:
            continue  # entries are numbered: read none rather than renumber them
        kept = {}
        for where, (key, entry) in zip(wheres, entries, strict=True):
            if isinstance(entry, dict):
                kept[key] = entry = dict(entry)
                problems += [f"{where}: unknown key {k!r}{_did_you_mean(k, known)}" for k in entry if k not in known]
                for k, kind in (("required", bool), ("gate", str)):
                    if k in known:
                        _typed(entry, k, kind, where, problems)
                if section == "models":
                    continue
                for k in _NAME_KEYS & set(entry):
                    if not isinstance(entry[k], str):  # reported below as a name that is not defined
                        entry[k] = str(entry[k])
                models = entry.get("models", [])
                if not (isinstance(models, list) and all(isinstance(n, str) for n in models)):
                    problems.append(f"{where}: models = {models!r} must be a list of model names, e.g. [\"m1\"]")
                    entry["models"] = []
        out[section] = kept if section in TABLE_SECTIONS else list(kept.values())
    return out


def load_matrix(path: str | Path | None = None) -> Matrix:
    """Read and validate a matrix file (the packaged default when `path` is None)."""
    path = Path(path or DEFAULT_CONFIG)
    if path.is_dir():
        raise ConfigError(f"matrix file {str(path)!r} is a folder; pass the TOML file inside it to --mm-config")
    if not path.is_file():
        raise ConfigError(f"matrix file {str(path)!r} does not exist; pass an existing TOML file to --mm-config")
    try:
        raw = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err}); save the matrix file as UTF-8") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from err
    base = path.parent
    problems: list[str] = []
    matrix = Matrix(path=path)
    known_sections = {*TABLE_SECTIONS, *ARRAY_SECTIONS, "benchmarks", "evaluation"}
    for key in raw:
        if key not in known_sections:
            problems.append(f"{path.name}: unknown section [{key}]{_did_you_mean(key, known_sections)}")
    bench_raw, evaluation_raw = raw.get("benchmarks", {}), raw.get("evaluation", {})
    original = raw
    raw = _checked_sections(raw, problems)

    for name, m in raw.get("models", {}).items():
        where = f"[models.{name}]"
        if m.get("backend") not in BACKENDS:
            problems.append(f"{where}: backend = {m.get('backend')!r} must be one of {', '.join(BACKENDS)}")
            continue
        if not isinstance(m.get("model"), str):
            problems.append(f"{where}: " + ("missing 'model'" if "model" not in m else f"model = {_toml(m['model'])} "
                                            "must be a string") + " (open_clip config name or local-dir:, HF id or directory)")
            continue
        pretrained = _typed(m, "pretrained", str, where, problems)
        if pretrained and m["model"].startswith("local-dir:"):
            problems.append(f"{where}: pretrained is ignored with model = 'local-dir:...' (open_clip loads the "
                            "folder's own weights); remove it, or name a built-in config in 'model'")
        if m.get("dtype") not in (None, *DTYPES):
            problems.append(f"{where}: dtype = {m['dtype']!r} must be one of {', '.join(DTYPES)}")
        if m.get("padding_side", "left") not in ("left", "right"):
            problems.append(f"{where}: padding_side = {m['padding_side']!r} must be 'left' or 'right'")
        if not isinstance(m.get("generation", {}), dict):
            problems.append(f"{where}: generation must be a table of generate() settings, e.g. {{temperature = 0.7}}")
            continue
        matrix.models[name] = ModelSpec(name, m["backend"], _resolve(base, m["model"]),
                                        _resolve(base, pretrained) if pretrained else None,
                                        dtype=m.get("dtype") if m.get("dtype") in DTYPES else None,
                                        padding_side=m.get("padding_side", "left"),
                                        generation=tuple(sorted(m.get("generation", {}).items())),
                                        baseline=_baseline_dir(base, m.get("baseline"), where, problems),
                                        tolerance=_tolerance(m.get("tolerance", {}), where, problems),
                                        quantize=m.get("quantize"))
        if m.get("quantize") not in (None, "dynamic-int8"):
            problems.append(f"{where}: quantize = {m['quantize']!r} must be 'dynamic-int8'")

    for name, d in raw.get("datasets", {}).items():
        where = f"[datasets.{name}]"
        source = d.get("source")
        if source not in SOURCES:
            problems.append(f"{where}: source = {source!r} must be one of {', '.join(SOURCES)}")
            continue
        if source != "shapes" and not isinstance(d.get("path"), str):
            problems.append(f"{where}: source {source!r} needs 'path' (dataset name, directory or parquet file)")
            continue
        if not isinstance(d.get("label_column", ""), str):
            problems.append(f"{where}: label_column must be a column name")
            continue
        split = _typed(d, "split", str, where, problems, "test")
        matrix.datasets[name] = DatasetSpec(
            name=name, source=source, path=_resolve(base, d.get("path", "")), split=split,
            label_column=d.get("label_column"), image_column=_typed(d, "image_column", str, where, problems, "image"),
            classnames=_classnames(d.get("classnames"), where, problems),
            size=_positive_int(d, "size", where, problems), limit=_positive_int(d, "limit", where, problems),
            description=_typed(d, "description", str, where, problems, ""),
            image_sizes=_image_sizes(d.get("image_sizes", []), where, problems),
            image_format=_image_format(d, where, problems),
        )
        if d.get("image_format") == "jpeg" and d.get("image_sizes"):
            problems.append(f"{where}: image_sizes does not apply with image_format = 'jpeg' (each JPEG scene is "
                            "rendered at its own size, 224-512 pixels a side); remove one of them")
        for key, hint in (("image_sizes", ""), ("image_format", ""),
                          ("size", "; use 'limit' to keep the first rows")):
            if d.get(key) and source != "shapes":
                problems.append(f"{where}: {key} applies to the shapes world only (source 'shapes'){hint}")
        if source == "shapes":
            from .data.facts import SPLIT_SEEDS

            if split not in SPLIT_SEEDS:
                problems.append(f"{where}: the shapes world has no split {split!r} (known: {', '.join(SPLIT_SEEDS)})")

    for name, p in raw.get("prompt_sets", {}).items():
        matrix.prompt_sets[name] = PromptSet(name, _templates(p.get("templates"), f"[prompt_sets.{name}]", problems))

    for i, z in enumerate(raw.get("zero_shot", [])):
        where = f"[[zero_shot]] #{i + 1}"
        ds, ps = z.get("dataset"), z.get("prompt_set")
        if ds not in matrix.datasets:
            problems.append(f"{where}: {_unknown('dataset', str(ds), matrix.datasets, 'dataset')}")
        elif matrix.datasets[ds].label_column is None:
            problems.append(f"[datasets.{ds}]: missing 'label_column' (the column holding class indices), "
                            f"needed by {where}")
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
        if g.get("baseline") is not None and g.get("baseline") == g.get("candidate"):
            problems.append(f"{where}: baseline and candidate are both {g['baseline']!r}; a prompt set's gain over "
                            "itself is always 0, name two different prompt sets")
        threshold = _threshold(g, "min_gain", where, problems, lo=-1.0)
        for model in _models_of(g, matrix.models, where, problems):
            matrix.prompt_gain.append(GainCheck(model, ds, g.get("baseline"), g.get("candidate"), threshold))

    _read_vlm_sections(raw, matrix, base, problems)
    matrix.benchmarks = _benchmarks(bench_raw, matrix, problems)
    problems[:] = _without_knock_ons(problems, original)
    if not raw.get("models") and not problems:
        problems.append(f"{path.name}: defines no model; a matrix needs at least one [models.NAME] entry "
                        "(backend and model), and checks that use it (see the README, 'Your own models and datasets')")
    matrix.evaluation = _evaluation(evaluation_raw, problems)
    if problems:
        raise ConfigError(f"{path}:\n  " + "\n  ".join(problems))
    return matrix


def _names(entry: dict, key: str, where: str, problems: list[str], example: str) -> tuple[str, ...] | None:
    value = entry.get(key)
    if value is None:
        return None
    if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        problems.append(f"{where}: {key} = {value!r} must be a list of names, e.g. {example}")
        return None
    return tuple(value)


def _benchmarks(entry, matrix: Matrix, problems: list[str]) -> BenchmarkSpec:
    where = "[benchmarks]"
    if not isinstance(entry, dict):
        problems.append(f"{where} must be one table of settings ([benchmarks] then key = value lines), "
                        f"not {_toml_type(entry)}")
        return BenchmarkSpec()
    problems += [f"{where}: unknown key {k!r}{_did_you_mean(k, BENCHMARK_KEYS)}" for k in entry if k not in BENCHMARK_KEYS]
    models = _names(entry, "models", where, problems, '["my-clip"]')
    for name in models or ():
        if name not in matrix.models:
            problems.append(f"{where}: {_unknown('model', name, matrix.models, 'models')}")
    vlms = _names(entry, "random_vlms", where, problems, f"[{RANDOM_VLMS[1]!r}]") or ()
    for name in vlms:
        if name not in RANDOM_VLMS:
            problems.append(f"{where}: random_vlms names {name!r}{_did_you_mean(name, RANDOM_VLMS)}; "
                            f"known: {', '.join(RANDOM_VLMS)}")
    batches = entry.get("batch_sizes")
    if batches is not None and not (isinstance(batches, list) and batches and all(
            isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in batches)):
        problems.append(f"{where}: batch_sizes = {batches!r} must be a list of whole numbers of at least 1, e.g. [1, 8, 32]")
        batches = None
    return BenchmarkSpec(
        models=models, random_architectures=_names(entry, "random_architectures", where, problems, '["ViT-B-32"]') or (),
        random_vlms=tuple(v for v in vlms if v in RANDOM_VLMS),
        batch_sizes=tuple(sorted(set(batches))) if batches else None,
        rounds=_positive_int(entry, "rounds", where, problems))


def _evaluation(entry, problems: list[str]) -> EvaluationSpec:
    where = "[evaluation]"
    if not isinstance(entry, dict):
        problems.append(f"{where} must be one table of settings ([evaluation] then key = value lines), "
                        f"not {_toml_type(entry)}")
        return EvaluationSpec()
    problems += [f"{where}: unknown key {k!r}{_did_you_mean(k, EVALUATION_KEYS)}" for k in entry
                 if k not in EVALUATION_KEYS]
    workers = entry.get("loader_workers", "auto")
    if workers == "auto":
        workers = None
    elif isinstance(workers, bool) or not isinstance(workers, int) or not 0 <= workers <= MAX_LOADER_WORKERS:
        problems.append(f"{where}: loader_workers = {workers!r} must be \"auto\" or a whole number from 0 to "
                        f"{MAX_LOADER_WORKERS} (0: images are decoded in the main process)")
        workers = None
    return EvaluationSpec(loader_workers=workers, gpu_decode=_typed(entry, "gpu_decode", bool, where, problems, False))


def _vlm_models_of(entry: dict, matrix: Matrix, where: str, problems: list[str], key: str = "models") -> list[str]:
    vlms = {n: m for n, m in matrix.models.items() if m.is_vlm}
    names = entry.get(key, list(vlms)) if key == "models" else [entry[key]] if entry.get(key) else []
    for n in names:
        if n in matrix.models and n not in vlms:
            problems.append(f"{where}: model {n!r} has backend {matrix.models[n].backend!r}; {key} needs backend 'llava'")
        elif n not in matrix.models:
            problems.append(f"{where}: {_unknown('model', n, vlms, key)}")
    return [n for n in names if n in vlms]


def _number(entry: dict, key: str, where: str, problems: list[str], default=None, lo: float = 0.0, hi: float = 1.0):
    value = entry.get(key, default)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi):
        problems.append(f"{where}: {key} = {_toml(value)} must be a number in [{lo:g}, {hi:g}]")
        return default
    return value


def _read_vlm_sections(raw: dict, matrix: Matrix, base: Path, problems: list[str]) -> None:
    for name, q in raw.get("question_sets", {}).items():
        where = f"[question_sets.{name}]"
        if q.get("dataset") not in matrix.datasets:
            problems.append(f"{where}: {_unknown('dataset', str(q.get('dataset')), matrix.datasets, 'dataset')}")
            continue
        if q.get("questions") not in QUESTION_SOURCES:
            problems.append(f"{where}: questions = {q.get('questions')!r} must be one of {', '.join(QUESTION_SOURCES)} "
                            "('shapes': generated from shapes-world ground truth; 'columns': read from the dataset)")
            continue
        if q["questions"] == "shapes" and matrix.datasets[q["dataset"]].source != "shapes":
            problems.append(f"{where}: questions = 'shapes' needs a dataset with source 'shapes'")
            continue
        synonyms = q.get("synonyms", {})
        if not isinstance(synonyms, dict) or not all(isinstance(v, str) for v in synonyms.values()):
            problems.append(f"{where}: synonyms must be a table of strings, e.g. {{center = \"centre\"}}")
            synonyms = {}
        if q["questions"] == "columns" and "kind" not in q:
            problems.append(f"{where}: questions = 'columns' needs 'kind', the kind of every question: \"pope\" for "
                            "yes/no questions scored as POPE (kind_column then names the POPE set), or a name such "
                            "as \"vqa\" for answers scored by exact match (kind_column then holds per-question kinds)")
        elif q["questions"] == "shapes" and "kind" in q:
            problems.append(f"{where}: kind applies to questions = 'columns' only; the shapes world's questions "
                            "carry their own kinds")
        text = {k: _typed(q, k, str, where, problems, default) for k, default in (
            ("question_column", "question"), ("answer_column", "answer"), ("kind_column", None), ("kind", "pope"),
            ("bbox_column", "bbox" if q["questions"] == "shapes" else None))}
        matrix.question_sets[name] = QuestionSet(
            name=name, dataset=q["dataset"], questions=q["questions"], images=_positive_int(q, "images", where, problems),
            max_new_tokens=int(_number(q, "max_new_tokens", where, problems, 24, 1, 4096)),
            synonyms=tuple(sorted(synonyms.items())), **text,
        )

    def question_set(entry: dict, where: str) -> str | None:
        qs = entry.get("question_set")
        if qs not in matrix.question_sets:
            problems.append(f"{where}: {_unknown('question set', str(qs), matrix.question_sets, 'question_set')}")
            return None
        return qs

    for i, a in enumerate(raw.get("answers", [])):
        where = f"[[answers]] #{i + 1}"
        qs = question_set(a, where)
        mins = a.get("min_accuracy", {})
        if not isinstance(mins, dict):
            problems.append(f"{where}: min_accuracy must be a table of question kind = threshold")
            mins = {}
        for kind in mins:
            _number(mins, kind, f"{where} min_accuracy", problems)
        if qs and matrix.question_sets[qs].questions == "shapes":
            from .data.facts import KINDS

            for kind in [k for k in mins if k not in KINDS]:
                problems.append(f"{where}: min_accuracy names question kind {kind!r}{_did_you_mean(kind, KINDS)}, "
                                "which the shapes questions do not have")
                mins = {k: v for k, v in mins.items() if k != kind}
        for model in _vlm_models_of(a, matrix, where, problems):
            if qs:
                matrix.answers.append(AnswerCheck(model, qs, tuple(sorted(mins.items()))))

    for i, p in enumerate(raw.get("pope", [])):
        where = f"[[pope]] #{i + 1}"
        qs = question_set(p, where)
        f1, gap = _number(p, "min_f1", where, problems), _number(p, "max_yes_ratio_gap", where, problems)
        for model in _vlm_models_of(p, matrix, where, problems):
            if qs:
                matrix.pope.append(PopeCheck(model, qs, f1, gap))

    for i, s in enumerate(raw.get("stability", [])):
        where = f"[[stability]] #{i + 1}"
        qs = question_set(s, where)
        single = _number(s, "single_sample", where, problems, 16, 1, 10_000)
        rep = _number(s, "max_repeated_ngram", where, problems, 0.5)
        finished = _number(s, "min_finished", where, problems, 0.95)
        for model in _vlm_models_of(s, matrix, where, problems):
            if qs:
                matrix.stability.append(StabilityCheck(model, qs, int(single), float(rep), float(finished)))

    for i, t in enumerate(raw.get("attention", [])):
        where = f"[[attention]] #{i + 1}"
        qs = question_set(t, where)
        controls = _vlm_models_of(t, matrix, where, problems, key="control")
        numbers = {k: _number(t, k, where, problems, hi=hi) for k, hi in (
            ("row_sum_tolerance", 1), ("min_inside_outside", 1000), ("min_pointing_hit", 1),
            ("min_margin_over_control", 1000), ("min_image_share", 1), ("max_sink_share", 1))}
        if numbers["row_sum_tolerance"] is None:
            numbers["row_sum_tolerance"] = 1e-3
        if numbers["min_margin_over_control"] is not None and not controls:
            problems.append(f"{where}: min_margin_over_control needs a 'control' model")
        kind = _typed(t, "kind", str, where, problems, "colour")
        samples = int(_number(t, "samples", where, problems, 16, 1, 10_000))
        for model in _vlm_models_of(t, matrix, where, problems):
            if qs:
                matrix.attention.append(AttentionCheck(model, qs, kind, samples, controls[0] if controls else None,
                                                       **numbers))
