"""The matrix as read: its entries and checks, and the same matrix narrowed to some models and datasets."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .schema import (
    AnswerCheck,
    AttentionCheck,
    BenchmarkSpec,
    DatasetSpec,
    EvaluationSpec,
    GainCheck,
    ModelSpec,
    PopeCheck,
    PromptSet,
    QuestionSet,
    RetrievalCheck,
    StabilityCheck,
    ZeroShotCheck,
)
from .values import unknown


class ConfigError(ValueError):
    """A matrix file that cannot be used; the message lists every problem found."""


@dataclass
class Matrix:
    path: Path
    models: dict[str, ModelSpec] = field(default_factory=dict)
    datasets: dict[str, DatasetSpec] = field(default_factory=dict)
    prompt_sets: dict[str, PromptSet] = field(default_factory=dict)
    zero_shot: list[ZeroShotCheck] = field(default_factory=list)
    prompt_gain: list[GainCheck] = field(default_factory=list)
    retrieval: list[RetrievalCheck] = field(default_factory=list)
    question_sets: dict[str, QuestionSet] = field(default_factory=dict)
    answers: list[AnswerCheck] = field(default_factory=list)
    pope: list[PopeCheck] = field(default_factory=list)
    stability: list[StabilityCheck] = field(default_factory=list)
    attention: list[AttentionCheck] = field(default_factory=list)
    benchmarks: BenchmarkSpec = field(default_factory=BenchmarkSpec)
    evaluation: EvaluationSpec = field(default_factory=EvaluationSpec)

    def benchmarked_models(self) -> list[str]:
        """The matrix entries `pytest --pyargs mmtests.benchmarks` times, in matrix order."""
        named = self.benchmarks.models
        return [m for m in self.models if named is None or m in named]

    def unchecked_models(self) -> list[str]:
        """Models no check of the suites runs on (nor uses as a control), in matrix order."""
        checks = (*self.zero_shot, *self.prompt_gain, *self.retrieval, *self.answers, *self.pope, *self.stability,
                  *self.attention)
        used = {c.model for c in checks} | {c.control for c in self.attention}
        return [m for m in self.models if m not in used]

    def narrowed(self, models: list[str] | None, datasets: list[str] | None) -> Matrix:
        """The same matrix restricted to the named models and datasets (None keeps all)."""
        problems = [unknown("model", n, self.models, "--mm-model") for n in models or [] if n not in self.models]
        problems += [unknown("dataset", n, self.datasets, "--mm-dataset") for n in datasets or [] if n not in self.datasets]
        if problems:
            raise ConfigError("\n".join(problems))
        keep_m = set(models or self.models)
        keep_d = set(datasets or self.datasets)
        keep_q = {n for n, q in self.question_sets.items() if q.dataset in keep_d}

        def vlm(checks):
            return [c for c in checks if c.model in keep_m and c.question_set in keep_q]

        # A kept attention check's control model stays loadable (it is measured beside the check's model), though
        # none of its own checks is kept.
        controls = {c.control for c in vlm(self.attention) if c.control}
        return Matrix(
            path=self.path,
            models={k: v for k, v in self.models.items() if k in keep_m | controls},
            datasets={k: v for k, v in self.datasets.items() if k in keep_d},
            prompt_sets=self.prompt_sets,
            zero_shot=[c for c in self.zero_shot if c.model in keep_m and c.dataset in keep_d],
            prompt_gain=[c for c in self.prompt_gain if c.model in keep_m and c.dataset in keep_d],
            retrieval=[c for c in self.retrieval if c.model in keep_m and c.dataset in keep_d],
            question_sets={k: v for k, v in self.question_sets.items() if k in keep_q},
            answers=vlm(self.answers), pope=vlm(self.pope), stability=vlm(self.stability), attention=vlm(self.attention),
            benchmarks=self.benchmarks, evaluation=self.evaluation,
        )
