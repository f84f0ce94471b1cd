"""Zero-shot classification metrics from image features and a text classifier."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ZeroShotMetrics:
    top1: float
    top5: float | None  # only defined with at least 5 classes
    mean_per_class_recall: float
    per_class_recall: dict[str, float]  # classes absent from the labels are left out
    n: int
    class_shares: dict[str, float]  # share of each class among the labels (the largest: the majority baseline)


@dataclass(frozen=True)
class PairedGain:
    gain: float  # candidate top-1 minus baseline top-1, on the same images
    stderr: float  # standard error of the paired difference
    baseline: float
    candidate: float
    n: int


@dataclass(frozen=True)
class ProbabilityHead:
    """How a dual encoder's own head turns cosine similarities into the probability its users read: "softmax" over
    the classes at `scale` (CLIP, trained with the contrastive softmax loss), or "sigmoid", each class on its own, of
    `scale * cos + bias` (SigLIP, trained with the sigmoid loss and a learned bias)."""

    kind: str
    scale: float
    bias: float = 0.0

    def __post_init__(self):
        if self.kind not in ("softmax", "sigmoid"):
            raise ValueError(f"probability head {self.kind!r}: 'softmax' or 'sigmoid'")
        if self.kind == "softmax" and self.bias:
            raise ValueError("a softmax head has no bias (it would cancel out)")

    def probabilities(self, cosines: torch.Tensor) -> torch.Tensor:
        logits = cosines.float() * self.scale + self.bias
        return logits.softmax(dim=-1) if self.kind == "softmax" else logits.sigmoid()


@dataclass(frozen=True)
class ZeroShotSamples:
    predicted: list[int]  # per image
    probability: list[float]  # of the predicted class, as the model's own head gives it (`ProbabilityHead`)
    correct: list[bool]


def zero_shot_samples(logits: torch.Tensor, labels: torch.Tensor, head: ProbabilityHead) -> ZeroShotSamples:
    """Per-image outcomes: what a run is compared on, sample by sample, against its baseline. The prediction is the
    class of the highest cosine (either head ranks the classes as the cosines do)."""
    predicted = logits.float().argmax(dim=-1)
    probs = head.probabilities(logits).gather(1, predicted[:, None])[:, 0]
    return ZeroShotSamples(predicted.tolist(), probs.tolist(), (predicted == labels).tolist())


def zero_shot_logits(image_features: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
    """Cosine logits: L2-normalised image features (N x D) against class embeddings (D x C)."""
    feats = torch.nn.functional.normalize(image_features.float(), dim=-1)
    return feats @ classifier.float()


def correct_at_k(logits: torch.Tensor, labels: torch.Tensor, k: int = 1) -> torch.Tensor:
    """Per-sample boolean: the true label is among the k highest logits."""
    topk = logits.topk(k, dim=-1).indices
    return (topk == labels[:, None]).any(dim=-1)


def per_class_recall(logits: torch.Tensor, labels: torch.Tensor, classnames: list[str]) -> dict[str, float]:
    """Recall (top-1) of each class present in `labels`."""
    hits = correct_at_k(logits, labels, 1)
    out = {}
    for index, name in enumerate(classnames):
        mask = labels == index
        if mask.any():
            out[name] = hits[mask].float().mean().item()
    return out


def zero_shot_metrics(logits: torch.Tensor, labels: torch.Tensor, classnames: list[str]) -> ZeroShotMetrics:
    if logits.shape != (labels.shape[0], len(classnames)):
        raise ValueError(f"logits {tuple(logits.shape)} do not match {labels.shape[0]} labels x {len(classnames)} classes")
    recall = per_class_recall(logits, labels, classnames)
    return ZeroShotMetrics(
        top1=correct_at_k(logits, labels, 1).float().mean().item(),
        top5=correct_at_k(logits, labels, 5).float().mean().item() if len(classnames) >= 5 else None,
        mean_per_class_recall=sum(recall.values()) / len(recall),
        per_class_recall=recall,
        n=labels.shape[0],
        class_shares={name: (labels == i).float().mean().item() for i, name in enumerate(classnames)},
    )


def paired_gain(candidate_logits: torch.Tensor, baseline_logits: torch.Tensor, labels: torch.Tensor) -> PairedGain:
    """Top-1 gain of one prompt set over another on the same images, with its standard error."""
    cand = correct_at_k(candidate_logits, labels, 1).float()
    base = correct_at_k(baseline_logits, labels, 1).float()
    diff = cand - base
    n = diff.numel()
    stderr = diff.std(unbiased=True).item() / math.sqrt(n) if n > 1 else float("nan")
    return PairedGain(diff.mean().item(), stderr, base.mean().item(), cand.mean().item(), n)
