"""Image <-> text retrieval: recall@k both ways, as CLIP_benchmark defines it, and each query's own outcome.

A query (an image, or a caption text) is retrieved correctly at k when at least one of its positives is among
the k candidates that score highest against it (CLIP_benchmark's `recall_at_k(...) > 0`: "at least one
positive in the top k", averaged over the queries). Image -> text: an image is right when any of its captions
is in its top k; text -> image: a caption is right when its image is in its top k.

Two choices CLIP_benchmark leaves to `torch.topk` are fixed here, so that a figure never depends on
tie-breaking:
- identical caption texts are one candidate (`caption_positives`), positive for every image that carries it.
  COCO and Flickr30k repeat almost no caption, so there the figures are CLIP_benchmark's; the shapes world
  repeats its short captions across images ("a big ring." belongs to ~140 test images), and listing a text once
  per image would make its copies tie exactly, the outcome then decided by the order topk returns them in;
- a negative scoring exactly as much as the query's best positive ranks before it (ties count against the
  query): a model whose embeddings collapse to one point gets chance-level recall, not a perfect one.

Each query's outcome is the rank (1-based) of its best positive, and that positive's score (cosine); recall@k
is the share of queries whose rank is at most k. Random ranking retrieves a query with p positives among C
candidates at k with probability 1 - C(C-p, k) / C(C, k) (about k p / C; k / N for one positive among N):
`chance_recall`, the trivial strategy a floor must beat.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

KS = (1, 5, 10)  # the recall@k figures reported
CHUNK = 1024  # queries scored at once: memory stays bounded whatever the number of candidates


@dataclass(frozen=True)
class DirectionResult:
    """One direction of retrieval (image -> text or text -> image), query by query."""

    rank: list[int]  # per query: 1-based rank of its best positive (ties count against it)
    score: list[float]  # per query: the cosine of that positive
    chance: dict[int, float]  # per k: the recall random ranking gets on these queries, in expectation

    def recall(self, k: int) -> float:
        return sum(r <= k for r in self.rank) / len(self.rank) if self.rank else 0.0

    def hits(self, k: int) -> list[bool]:
        return [r <= k for r in self.rank]


@dataclass(frozen=True)
class RetrievalResult:
    texts: list[str]  # the distinct caption texts, the candidates of image -> text and the queries of text -> image
    image_to_text: DirectionResult
    text_to_image: DirectionResult

    @property
    def n_images(self) -> int:
        return len(self.image_to_text.rank)


def caption_positives(captions: Sequence[Sequence[str]]) -> tuple[list[str], torch.Tensor]:
    """Per image its captions -> the distinct texts (first-seen order) and the positive pairs (images x texts):
    image i and text t are a pair when t is one of i's captions. Every image needs at least one caption."""
    index: dict[str, int] = {}
    pairs = []
    for i, caps in enumerate(captions):
        if isinstance(caps, str):
            caps = [caps]
        if not caps:
            raise ValueError(f"image {i} has no caption; retrieval needs at least one caption per image")
        for text in caps:
            if not isinstance(text, str):
                raise ValueError(f"image {i}: caption {text!r} is {type(text).__name__}, not a string")
            pairs.append((i, index.setdefault(text, len(index))))
    positives = torch.zeros(len(captions), len(index), dtype=torch.bool)
    rows, cols = zip(*pairs, strict=True) if pairs else ((), ())
    positives[list(rows), list(cols)] = True
    return list(index), positives


def first_positive(scores: torch.Tensor, positives: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per query (row): the 1-based rank of its best positive among all candidates (columns), a negative scoring
    the same as that positive ranking before it, and the positive's score."""
    if scores.shape != positives.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and positive pairs {tuple(positives.shape)} differ in shape")
    empty = (~positives.any(dim=1)).nonzero().flatten()
    if len(empty):
        raise ValueError(f"query {int(empty[0])} has no positive ({len(empty)} queries without one); every query "
                         "needs one to be ranked")
    ranks, best = [], []
    for start in range(0, scores.shape[0], CHUNK):
        s, p = scores[start:start + CHUNK].float(), positives[start:start + CHUNK]
        top = s.masked_fill(~p, float("-inf")).max(dim=1).values
        ranks.append(1 + ((s >= top[:, None]) & ~p).sum(dim=1))
        best.append(top)
    return torch.cat(ranks), torch.cat(best)


def chance_recall(positives_per_query: torch.Tensor, candidates: int, k: int) -> float:
    """Expected recall@k of a random ranking: mean over queries of 1 - C(C-p, k) / C(C, k)."""
    p = positives_per_query.double()
    miss = torch.ones_like(p)
    for j in range(min(k, candidates)):
        miss = miss * ((candidates - p - j) / (candidates - j)).clamp_min(0)
    return float((1 - miss).mean()) if len(p) else 0.0


def _direction(scores: torch.Tensor, positives: torch.Tensor, ks: Sequence[int]) -> DirectionResult:
    rank, best = first_positive(scores, positives)
    counts = positives.sum(dim=1)
    return DirectionResult(rank.tolist(), best.tolist(), {k: chance_recall(counts, scores.shape[1], k) for k in ks})


def retrieval(image_features: torch.Tensor, text_features: torch.Tensor, positives: torch.Tensor,
              texts: Sequence[str] = (), ks: Sequence[int] = KS) -> RetrievalResult:
    """Both directions from L2-normalised image (N x D) and text (T x D) embeddings and the positive pairs (N x T)."""
    if image_features.ndim != 2 or text_features.ndim != 2 or image_features.shape[1] != text_features.shape[1]:
        raise ValueError(f"image embeddings {tuple(image_features.shape)} and text embeddings "
                         f"{tuple(text_features.shape)} must be N x D and T x D with one D")
    scores = image_features.float() @ text_features.float().T
    return RetrievalResult(list(texts), _direction(scores, positives, ks), _direction(scores.T, positives.T, ks))
