"""What a matrix file may say: each entry type with its keys, and each key's kind (type, range, choices) and
default, stated once. The loader (load.py) derives the known keys and reads every entry from these fields."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields

from .refs import Models, Ref, Vlm
from .tables import Classnames, Folder, Generation, ImageSizes, Synonyms, Templates, Thresholds, Tolerances
from .values import Choice, Count, Counts, Flag, Kind, Names, Number, Text, Workers

BACKENDS = ("open_clip", "hf_clip", "llava")
DUAL_ENCODERS = ("open_clip", "hf_clip")
QUESTION_SOURCES = ("shapes", "columns")
SOURCES = ("shapes", "hf", "imagefolder", "parquet")
DTYPES = ("float32", "float16", "bfloat16")
# Shapes-world image formats: "png", the 64-pixel scenes (resized by image_sizes); "jpeg", photo-like JPEGs of
# 224-512 pixels a side (mmtests.data.variants).
IMAGE_FORMATS = ("png", "jpeg")
MAX_LOADER_WORKERS = 64
# LLaVA-1.5 architectures benchmarks can build with random weights (mmtests.bench.generation.RANDOM).
RANDOM_VLMS = ("llava-1.5-7b-shapes", "llava-reduced")
MODEL_HINT = " (open_clip config name or local-dir:, HF id or directory)"


def key(kind: Kind, default=MISSING, *, toml: str | None = None, rejects: bool = False, bounds: str | None = None):
    """A field read from the matrix file under `toml` (default: the field's name). No default: the key is
    required. `rejects`: an entry whose value here is wrong is not read further (nor defined). `bounds`: the
    metric whose figure the value bounds."""
    return field(default=default, metadata={"kind": kind, "toml": toml, "rejects": rejects, "bounds": bounds})


def bound(metric_name: str, default=None, *, to: type | None = float):
    """A matrix key that bounds a figure: its range is the metric table's (mmtests.figures.metrics)."""
    from ..figures.metrics import metric

    lo, hi = metric(metric_name).range
    return key(Number(lo, hi, to=to), default, bounds=metric_name)


def keys(entry_type: type) -> dict[str, object]:
    """The matrix keys of an entry type, each with its dataclass field, in field order."""
    return {f.metadata.get("toml") or f.name: f for f in fields(entry_type) if "kind" in f.metadata}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    backend: str = key(Choice(BACKENDS, required=True), rejects=True)
    # open_clip config name or "local-dir:<dir>"; HF hub id or local directory
    model: str = key(Text(relative=True, message="{key} = {toml} must be a string" + MODEL_HINT,
                          missing="missing 'model'" + MODEL_HINT), rejects=True)
    pretrained: str | None = key(Text(relative=True, blank_is_none=True), None)  # open_clip tag or weights file
    # llava: torch dtype name; default bfloat16/float16 on CUDA, float32 on CPU
    dtype: str | None = key(Choice(DTYPES), None)
    # llava: batched generation padding (right padding breaks decoder-only batches)
    padding_side: str = key(Choice(("left", "right"), said="'left' or 'right'"), "left")
    generation: tuple[tuple[str, object], ...] = key(Generation(), ())  # llava: extra generate() settings
    baseline: str | None = key(Folder(), None)  # folder of its known-good per-sample outcomes and fingerprint
    tolerance: tuple[tuple[str, float], ...] = key(Tolerances(), ())  # overrides of the baseline gates' tolerances
    # dual encoders: "dynamic-int8" (torch.ao dynamic quantization of Linear layers)
    quantize: str | None = key(Choice(("dynamic-int8",), said="'dynamic-int8'"), None)

    @property
    def is_vlm(self) -> bool:
        return self.backend == "llava"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    source: str = key(Choice(SOURCES, required=True), rejects=True)
    # HF dataset name, or a local directory / parquet file; the matrix file's folder for the shapes world
    path: str = key(Text(relative=True, absent=""))
    split: str = key(Text(), "test")
    # needed by zero-shot checks; question sets may do without
    label_column: str | None = key(Text(message="{key} must be a column name"), None, rejects=True)
    image_column: str = key(Text(), "image")
    # retrieval: a column of captions (a list of strings per image, or one string); "captions" in the shapes world
    caption_column: str | None = key(Text(message="{key} must be a column name"), None)
    classnames: tuple[str, ...] | None = key(Classnames(), None)  # None: the label column's ClassLabel names
    size: int | None = key(Count(), None)  # shapes world only: number of images
    limit: int | None = key(Count(), None)  # evaluate the first `limit` rows only
    description: str = key(Text(), "")  # one line for the report: what this dataset probes
    image_sizes: tuple[tuple[int, int], ...] = key(ImageSizes(), ())  # shapes world: (width, height) sizes cycled
    image_format: str = key(Choice(IMAGE_FORMATS, said=f"one of {', '.join(map(repr, IMAGE_FORMATS))}",
                                   hint=" ('png': the 64-pixel scenes; 'jpeg': photo-like JPEGs of 224-512 pixels a side)"),
                            "png")

    @property
    def images_key(self) -> tuple:
        """Datasets with the same key share their images (and so the image embeddings)."""
        return (self.source, self.path, self.split, self.image_column, self.size, self.limit, self.image_sizes,
                self.image_format)


@dataclass(frozen=True)
class PromptSet:
    name: str
    # format strings with one "{}" for the class name ("{c}" is rewritten)
    templates: tuple[str, ...] = key(Templates())


CLIP_MODELS = Models(vlm=False, need=f"zero-shot and prompt-gain checks need a dual encoder ({', '.join(DUAL_ENCODERS)})")


@dataclass(frozen=True)
class ZeroShotCheck:
    model: str = key(CLIP_MODELS, toml="models")
    dataset: str = key(Ref("dataset", "datasets"))
    prompt_set: str = key(Ref("prompt set", "prompt_sets"))
    min_top1: float | None = bound("top1")  # None: measured and reported, not asserted

    @property
    def id(self) -> str:
        return f"{self.model}/{self.dataset}/{self.prompt_set}"


@dataclass(frozen=True)
class GainCheck:
    model: str = key(CLIP_MODELS, toml="models")
    dataset: str = key(Ref("dataset", "datasets"))
    baseline: str = key(Ref("prompt set", "prompt_sets"))
    candidate: str = key(Ref("prompt set", "prompt_sets"))
    min_gain: float | None = bound("gain")

    @property
    def id(self) -> str:
        return f"{self.model}/{self.dataset}/{self.candidate}-vs-{self.baseline}"


@dataclass(frozen=True)
class RetrievalCheck:
    """Image -> text and text -> image recall@1/5/10 of a dual encoder on a dataset's captions."""

    model: str = key(Models(vlm=False, need=f"retrieval checks need a dual encoder ({', '.join(DUAL_ENCODERS)})"),
                     toml="models")
    dataset: str = key(Ref("dataset", "datasets"))
    min_image_to_text_r1: float | None = bound("image_to_text_r1")  # None: measured and reported, not asserted
    min_image_to_text_r5: float | None = bound("image_to_text_r5")
    min_image_to_text_r10: float | None = bound("image_to_text_r10")
    min_text_to_image_r1: float | None = bound("text_to_image_r1")
    min_text_to_image_r5: float | None = bound("text_to_image_r5")
    min_text_to_image_r10: float | None = bound("text_to_image_r10")

    @property
    def id(self) -> str:
        return f"{self.model}/{self.dataset}"

    def floor(self, metric_name: str) -> float | None:
        return getattr(self, f"min_{metric_name}")


@dataclass(frozen=True)
class QuestionSet:
    name: str
    # a [datasets] entry: images, and ground truth for questions = "shapes"
    dataset: str = key(Ref("dataset", "datasets"), rejects=True)
    questions: str = key(Choice(QUESTION_SOURCES, required=True, hint=" ('shapes': generated from shapes-world ground "
                                                                      "truth; 'columns': read from the dataset)"),
                         rejects=True)
    images: int | None = key(Count(), None)  # first N images of the dataset
    max_new_tokens: int = key(Number(1, 4096, to=int), 24)
    synonyms: tuple[tuple[str, str], ...] = key(Synonyms(), ())  # (said, meant) pairs for answer matching
    question_column: str = key(Text(), "question")  # questions = "columns"
    answer_column: str = key(Text(), "answer")
    # per-question kind; for kind = "pope", the POPE set (POPE's "category": random / popular / adversarial), each
    # scored on its own as well as all together
    kind_column: str | None = key(Text(), None)
    # appended to every question as asked (and recorded), e.g. LLaVA's POPE evaluation's
    # "\nAnswer the question using a single word or phrase."
    prompt_suffix: str = key(Text(), "")
    kind: str = key(Text(), "pope")  # kind of every question ("pope": yes/no questions scored as POPE)
    # x0, y0, x1, y1 in pixels of what the question is about (localization); "bbox" for shapes questions
    bbox_column: str | None = key(Text(), None)


VLM_MODELS = Models(vlm=True)


@dataclass(frozen=True)
class VLMCheck:
    """A check of one vision-language model on one question set."""

    model: str = key(VLM_MODELS, toml="models")
    question_set: str = key(Ref("question set", "question_sets"))

    @property
    def id(self) -> str:
        return f"{self.model}/{self.question_set}"


@dataclass(frozen=True)
class AnswerCheck(VLMCheck):
    # per question kind; kinds not listed are reported only
    min_accuracy: tuple[tuple[str, float], ...] = key(Thresholds(), (), bounds="accuracy")


@dataclass(frozen=True)
class PopeCheck(VLMCheck):
    min_f1: float | None = bound("f1", to=None)
    max_yes_ratio_gap: float | None = bound("yes_ratio_gap", to=None)


@dataclass(frozen=True)
class StabilityCheck(VLMCheck):
    # questions re-asked one at a time, compared with the batched answers
    single_sample: int = key(Number(1, 10_000, to=int), 16)
    max_repeated_ngram: float = bound("max_repeated_bigrams", 0.5)  # per answer, share of repeated bigrams
    min_finished: float = bound("finished", 0.95)  # share of answers that end with EOS before max_new_tokens


@dataclass(frozen=True)
class AttentionCheck(VLMCheck):
    kind: str = key(Text(), "colour")  # the question kind whose answer position is analysed
    samples: int = key(Number(1, 10_000, to=int), 16)
    # "answered": the questions the model answers correctly (a model that cannot answer cannot pass by where it
    # looks); "all": every question of the kind with a box (random-weight models, which answer none correctly)
    on: str = key(Choice(("answered", "all"), said="'answered' or 'all'"), "answered")
    control: str | None = key(Vlm(), None)  # a model measured the same way, for comparison (stage-1-only...)
    row_sum_tolerance: float = bound("row_sum_error", 1e-3, to=None)
    # mean attention inside the box / outside, mean over layers and heads
    min_inside_outside: float | None = bound("inside_outside", to=None)
    min_pointing_hit: float | None = bound("pointing_hit", to=None)  # top patch inside the box, mean layers/heads map
    min_margin_over_control: float | None = bound("margin_over_control", to=None)  # inside/outside above the control's
    min_image_share: float | None = bound("image_share", to=None)  # image tokens' share of the answer's attention
    max_sink_share: float | None = bound("sink_share", to=None)

    @property
    def id(self) -> str:
        return f"{self.model}/{self.question_set}/{self.kind}"


@dataclass(frozen=True)
class BenchmarkSpec:
    """[benchmarks]: what `pytest --pyargs mmtests.benchmarks` times. Without the section: every model of the matrix, at the
    device's default batch sizes and rounds, and no random-weight architecture."""

    models: tuple[str, ...] | None = key(Names('["my-clip"]'), None)  # matrix entries; None: all of them
    # open_clip architectures built with random weights
    random_architectures: tuple[str, ...] = key(Names('["ViT-B-32"]'), ())
    random_vlms: tuple[str, ...] = key(Names(f"[{RANDOM_VLMS[1]!r}]"), ())  # RANDOM_VLMS entries
    batch_sizes: tuple[int, ...] | None = key(Counts(), None)  # None: the device's defaults
    rounds: int | None = key(Count(), None)  # None: the device's defaults


@dataclass(frozen=True)
class EvaluationSpec:
    """[evaluation]: how images reach the dual encoders (mmtests.session.encoders.embed_images). The results do not depend
    on `loader_workers`; `gpu_decode` changes the decoder and the resize kernels, so its embeddings agree with the
    PIL path's only within a tolerance."""

    # DataLoader worker processes; None ("auto"): 0 on a CPU, more on CUDA
    loader_workers: int | None = key(Workers(MAX_LOADER_WORKERS), None)
    # CUDA only: JPEGs decoded by nvJPEG, resized, cropped and normalised on the GPU
    gpu_decode: bool = key(Flag(), False)


TABLE_SECTIONS = {"models": ModelSpec, "datasets": DatasetSpec, "prompt_sets": PromptSet,
                  "question_sets": QuestionSet}  # [section.NAME]
ARRAY_SECTIONS = {"zero_shot": ZeroShotCheck, "prompt_gain": GainCheck, "retrieval": RetrievalCheck,
                  "answers": AnswerCheck, "pope": PopeCheck,
                  "stability": StabilityCheck, "attention": AttentionCheck}  # [[section]]
SETTINGS_SECTIONS = {"benchmarks": BenchmarkSpec, "evaluation": EvaluationSpec}  # [section] of key = value lines
