"""Vision-language measurements, each computed once per session and shared by every test.

Answers are generated once per (model, question set); the stability re-runs and the attention
passes touch only a sample of the questions. Attention tensors are summarized per sample at once
(a 7B model's full maps are gigabytes), keeping a few patch maps for the report's heatmaps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ..adapters import geometry
from ..adapters.llava import Generation, VisionLanguageModel
from ..config import AttentionCheck, DatasetSpec, Matrix, QuestionSet
from ..data.facts import COLOURS, SHAPES
from ..data.images import to_rgb
from ..data.shape import at_most, check_question_rows
from ..data.shapes_qa import QA, question_set
from ..errors import EntryError
from ..evaluation import attention as A
from ..evaluation.answers import is_correct
from ..offline import hub_access
from .encoders import Progress, no_progress
from .memo import ABSENT_OR_BROKEN, Memo
from .precision import model_precision

# Shorter expected answers first: a generate() batch runs until its longest answer ends.
_KIND_ORDER = {"pope": 0, "size": 1, "colour": 2, "shape": 3, "count": 4, "position": 5, "describe": 9}
HEATMAPS_KEPT = 6
PROBE_QUESTIONS = 48  # questions spread over the kinds whose first-token distributions are fingerprinted


@dataclass(frozen=True)
class Question:
    image: int  # row of the question set's dataset
    qa: QA
    bbox: tuple[float, ...] | None = None  # what the question is about, original pixels


@dataclass
class AttentionSummary:
    """A model's attention figures over a check's sampled questions (one `AnswerAttention` each), with a few maps."""

    model: str
    layers: int
    heads: int
    expected_layers: int
    expected_heads: int
    grid: tuple[int, int] | None  # a single patch grid's rows x cols (LLaVA-1.5 style), else None
    image_tokens: int  # image tokens in the sequence (the last sample's)
    dtype: str = "float32"  # the model's compute dtype, which bounds how exactly rows can sum to 1
    expected_image_tokens: int = 0  # regions the processor's geometry gives the image (the last sample's)
    mask: str = "causal"  # the attention mask's kind: causal, prefix or cross
    undefined: int = 0  # samples left out: their box holds no image token's centre, or every one
    shape_mismatch: str = ""  # the first sample whose image tokens and geometry disagree (it is not measured)
    questions: list[int] = field(default_factory=list)  # per sample: its index in the question set
    row_sum_error: float = 0.0
    causal_leak: float = 0.0
    image_share: list[np.ndarray] = field(default_factory=list)  # per sample, per layer
    image_token_fraction: list[float] = field(default_factory=list)  # image tokens / keys seen by the query
    sink_share: list[np.ndarray] = field(default_factory=list)
    ratio_by_layer: list[np.ndarray] = field(default_factory=list)  # per sample, per layer
    hit_by_layer: list[np.ndarray] = field(default_factory=list)
    ratio: list[float] = field(default_factory=list)  # per sample, map averaged over layers and heads
    hit: list[bool] = field(default_factory=list)
    chance: list[float] = field(default_factory=list)
    heatmaps: list[dict] = field(default_factory=list)  # image, box and map over the original image, extent (h, w)

    def add(self, sample: A.AnswerAttention) -> None:
        """One more sample: the structural errors are the worst seen, the other figures kept per sample."""
        self.row_sum_error = max(self.row_sum_error, sample.row_sum_error)
        self.causal_leak = max(self.causal_leak, sample.causal_leak)
        self.image_share.append(sample.image_share)
        self.image_token_fraction.append(sample.image_token_fraction)
        self.sink_share.append(sample.sink_share)
        self.ratio_by_layer.append(sample.ratio_by_layer)
        self.hit_by_layer.append(sample.hit_by_layer)
        self.ratio.append(sample.localization.inside_outside)
        self.hit.append(sample.localization.pointing_hit)
        self.chance.append(sample.localization.chance)


class VLMCache:
    """A session's vision-language models, question sets, generated answers and attention summaries."""

    def __init__(self, matrix: Matrix, device: torch.device, batch_size: int | None, online: bool, memo: Memo,
                 dataset: Callable[[DatasetSpec], object], progress: Progress = no_progress):
        self.matrix = matrix
        self.progress = progress  # told how answering goes (the entry points show it)
        self.device = device
        self.online = online  # hubs reachable for mmtests' own loads (--mm-online); offline by default
        # Questions per generate() batch.
        self.batch_size = batch_size or (64 if device.type == "cuda" else 32)
        self.dataset = dataset  # a dataset entry's rows, loaded and checked once a session (with the encoders')
        self.model = memo(self._model, ABSENT_OR_BROKEN)  # a broken entry: tried once
        self.questions = memo(self._questions)
        self.answers = memo(self._answers)
        self.rerun = memo(self._rerun)
        self.attention = memo(self._attention)
        self.correct = memo(self._correct)
        self.probe_logprobs = memo(self._probe_logprobs)
        self.image_count = memo(self._image_count)

    def _model(self, name: str) -> VisionLanguageModel:
        spec = self.matrix.models[name]
        with hub_access(self.online):
            return VisionLanguageModel(spec.model, self.device, dtype=spec.dtype, padding_side=spec.padding_side,
                                       generation=dict(spec.generation), online=self.online,
                                       quantize=spec.quantize, entry=name)

    def precision(self, model: str) -> str:
        """The numeric precision a VLM runs in here, which sets its baseline gates' tolerances."""
        return model_precision(self.matrix.models[model],
                               lambda: str(self.model(model).model.dtype).removeprefix("torch."))

    def images(self, qset: QuestionSet):
        """The question set's images: its dataset's first `images` rows (more asked than there are: a DataWarning, once)."""
        ds = self.dataset(self.matrix.datasets[qset.dataset])
        return ds if qset.images is None else ds.select(range(self.image_count(qset.name)))

    def _image_count(self, name: str) -> int:
        qset = self.matrix.question_sets[name]
        rows = len(self.dataset(self.matrix.datasets[qset.dataset]))
        return at_most(qset.images, rows, f"[question_sets.{name}]", "images", f"images (dataset {qset.dataset!r})")

    def _questions(self, name: str) -> list[Question]:
        """The set's questions, each as asked: with the set's `prompt_suffix` appended."""
        questions = self._plain_questions(name)
        suffix = self.matrix.question_sets[name].prompt_suffix
        if not suffix:
            return questions
        return [replace(q, qa=replace(q.qa, question=q.qa.question + suffix)) for q in questions]

    def _plain_questions(self, name: str) -> list[Question]:
        qset = self.matrix.question_sets[name]
        ds = self.images(qset)
        if qset.questions == "shapes":
            rows = ds.remove_columns([c for c in ("image", "captions") if c in ds.column_names]).to_list()
            return [Question(i, qa, tuple(_box_of(rows[i], qa))) for i, qa in question_set(rows)]
        missing = [c for c in (qset.question_column, qset.answer_column, qset.kind_column, qset.bbox_column)
                   if c is not None and c not in ds.column_names]
        if missing:
            raise EntryError(f"question set {name!r}: dataset {qset.dataset!r} has no column "
                             f"{', '.join(map(repr, missing))} (columns: {', '.join(ds.column_names)}); set "
                             "question_column / answer_column / kind_column / bbox_column in [question_sets."
                             f"{name}]")
        groups = ds[qset.kind_column] if qset.kind_column else [None] * len(ds)
        boxes = list(ds[qset.bbox_column]) if qset.bbox_column else None
        check_question_rows(list(ds[qset.question_column]), list(ds[qset.answer_column]), boxes,
                            f"question set {name!r} (dataset {qset.dataset!r})", f"[question_sets.{name}]")
        boxes = [None] * len(ds) if boxes is None else boxes

        def qa_of(q, a, group):  # a POPE set's category column names the set; otherwise it is the kind
            if qset.kind == "pope":
                return QA("pope", q, str(a), pope=group or "pope")
            return QA(group or qset.kind, q, str(a))

        return [Question(i, qa_of(q, a, g), tuple(b) if b else None) for i, (q, a, g, b) in
                enumerate(zip(ds[qset.question_column], ds[qset.answer_column], groups, boxes, strict=True))]

    def _generate(self, model: str, qset: QuestionSet, items: list[Question], batch_size: int) -> list[Generation]:
        ds = self.images(qset)
        column = self.matrix.datasets[qset.dataset].image_column
        order = sorted(range(len(items)), key=lambda i: (_KIND_ORDER.get(items[i].qa.kind, 5), i))
        vlm = self.model(model)
        out: list[Generation | None] = [None] * len(items)
        step, task = batch_size * 4, f"answering {qset.name} with {model}"
        self.progress(task, 0, len(order), "questions")
        for start in range(0, len(order), step):
            chunk = order[start:start + step]
            images = [ds[items[i].image][column] for i in chunk]
            for i, g in zip(chunk, vlm.generate(images, [items[i].qa.question for i in chunk], qset.max_new_tokens,
                                                batch_size), strict=True):
                out[i] = g
            self.progress(task, start + len(chunk), len(order), "questions")
        return out

    def _answers(self, model: str, qset_name: str) -> list[Generation]:
        qset = self.matrix.question_sets[qset_name]
        return self._generate(model, qset, self.questions(qset_name), self.batch_size)

    def _correct(self, model: str, qset_name: str) -> list[bool]:
        """Per question: the model's answer is right (scored by kind, with the set's synonyms)."""
        synonyms = dict(self.matrix.question_sets[qset_name].synonyms)
        return [is_correct(q.qa.kind, q.qa.answer, q.qa.about, a.text, synonyms)
                for q, a in zip(self.questions(qset_name), self.answers(model, qset_name), strict=True)]

    def _probe_logprobs(self, model: str, qset_name: str) -> tuple[list[int], object]:
        """First-answer-token log-probabilities on a fixed probe sample of the set (its fingerprint)."""
        qset = self.matrix.question_sets[qset_name]
        idx = self.sample(qset_name, PROBE_QUESTIONS)
        items = [self.questions(qset_name)[i] for i in idx]
        ds = self.images(qset)
        column = self.matrix.datasets[qset.dataset].image_column
        images = [ds[q.image][column] for q in items]
        return idx, self.model(model).first_token_logprobs(images, [q.qa.question for q in items], self.batch_size)

    def sample(self, qset_name: str, n: int) -> list[int]:
        """`n` question indices spread evenly over the set (so over kinds and images)."""
        total = len(self.questions(qset_name))
        return sorted({int(i) for i in np.linspace(0, total - 1, min(n, total))})

    def _rerun(self, model: str, qset_name: str, n: int, batch_size: int, repeat: int = 0) -> tuple[list[int], list[Generation]]:
        """A sample of the questions asked again, `batch_size` at a time (1: one by one); `repeat` tells
        apart runs that must not share the cache."""
        qset = self.matrix.question_sets[qset_name]
        items = self.questions(qset_name)
        idx = self.sample(qset_name, at_most(n, len(items), f"[[stability]] of {qset_name!r}", "single_sample",
                                             "questions"))
        return idx, self._generate(model, qset, [items[i] for i in idx], batch_size)

    def attention_items(self, check: AttentionCheck) -> tuple[list[Question], int]:
        """The check's questions with a box that its model answers correctly (so a model that cannot answer
        cannot pass by where it looks; every one with `on = "all"`), and how many questions of the kind had a box."""
        qset = self.matrix.question_sets[check.question_set]
        questions = self.questions(check.question_set)
        correct = self.correct(check.model, check.question_set) if check.on == "answered" else [True] * len(questions)
        boxed = [(q, ok) for q, ok in zip(questions, correct, strict=True) if q.qa.kind == check.kind and q.bbox]
        if not boxed:
            raise EntryError(f"question set {qset.name!r} has no {check.kind!r} questions with a box "
                             f"(bbox_column {qset.bbox_column!r}); attention checks need one")
        return [q for q, ok in boxed if ok], len(boxed)

    def _attention(self, model: str, check: AttentionCheck, answered_only: bool = True) -> AttentionSummary | None:
        """Attention summary of `model` (the check's model or its control) on the questions the check's model
        answers correctly (model and control on the same samples), or on every question with a box. Boxes stay in
        original pixels: each image token is placed by the region of the image its processor made it from."""
        qset = self.matrix.question_sets[check.question_set]
        items, _ = self.attention_items(check)
        if not answered_only:
            items = [q for q in self.questions(check.question_set) if q.qa.kind == check.kind and q.bbox]
        if not items:
            return None
        count = at_most(check.samples, len(items), f"[[attention]] {check.id}", "samples",
                        "correctly answered questions with a box" if answered_only else "questions with a box")
        items = [items[int(i)] for i in np.linspace(0, len(items) - 1, count)]
        vlm = self.model(model)
        ds = self.images(qset)
        column = self.matrix.datasets[qset.dataset].image_column
        text = vlm.model.config.text_config
        summary = None
        index = {id(q): i for i, q in enumerate(self.questions(check.question_set))}
        for q in items:
            image = ds[q.image][column]
            maps = vlm.attention_maps(image, q.qa.question)
            att = maps.attentions
            regions = geometry.image_token_regions(vlm.processor, maps.image_size, maps.inputs,
                                                   patch_size=getattr(vlm.model.config.vision_config, "patch_size",
                                                                      None))
            if summary is None:
                summary = AttentionSummary(model, att.shape[0], att.shape[1], vlm.attention_layers(),
                                           text.num_attention_heads, maps.grid, len(maps.image_positions),
                                           str(vlm.model.dtype).removeprefix("torch."),
                                           expected_image_tokens=len(regions), mask=maps.mask)
            summary.image_tokens, summary.expected_image_tokens = len(maps.image_positions), len(regions)
            if len(regions) != len(maps.image_positions):
                summary.shape_mismatch = summary.shape_mismatch or (
                    f"{len(maps.image_positions)} image tokens in the sequence, {len(regions)} regions by the "
                    f"processor's geometry ({type(vlm.processor).__name__}, image {maps.image_size[0]} x "
                    f"{maps.image_size[1]})")
                continue
            try:
                sample = A.answer_attention(att, maps.image_positions, maps.answer_position, regions, q.bbox,
                                            mask=maps.mask, bidirectional=maps.bidirectional)
            except A.LocalizationUndefined:
                summary.undefined += 1  # a box too small for the model's tokens, or covering all of them
                continue
            summary.add(sample)
            summary.questions.append(index[id(q)])
            if len(summary.heatmaps) < HEATMAPS_KEPT:
                summary.heatmaps.append({"image": np.asarray(to_rgb(image)[0]), "box": list(q.bbox),
                                         "map": A.original_space_map(sample.mean_map, regions, maps.image_size),
                                         "extent": (maps.image_size[1], maps.image_size[0]),
                                         "question": q.qa.question})
        return summary


def _box_of(row: dict, qa: QA) -> list[float]:
    """The box of the object a shapes-world question is about (the main object unless it names another)."""
    if qa.about and qa.about != f"{COLOURS[row['colour']]} {SHAPES[row['shape']]}":
        for d in row["distractors"]:
            if f"{d['colour']} {d['shape']}" == qa.about:
                return d["bbox"]
    return row["bbox"]
