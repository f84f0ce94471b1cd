"""Retrieval figures: hand-computed cases, and any small score matrix against a brute-force reference."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmtests.evaluation.retrieval import caption_positives, chance_recall, first_positive, retrieval


def test_captions_become_distinct_texts_positive_for_every_image_that_has_them():
    texts, pos = caption_positives([["a dog.", "a big dog."], ["a cat.", "a dog."], ["a cat."]])
    assert texts == ["a dog.", "a big dog.", "a cat."]
    assert pos.tolist() == [[True, True, False], [True, False, True], [False, False, True]]


def test_one_caption_as_a_string_is_a_list_of_one():
    assert caption_positives(["a dog.", "a cat."])[1].tolist() == [[True, False], [False, True]]


@pytest.mark.parametrize("captions, said", [([["a dog."], []], "image 1 has no caption"),
                                             ([["a dog.", 3]], "caption 3 is int, not a string")])
def test_bad_captions_are_named(captions, said):
    with pytest.raises(ValueError, match=said):
        caption_positives(captions)


def test_hand_computed_two_way_recall():
    # 3 images, 4 texts; image 0 -> texts 0, 1; image 1 -> text 2; image 2 -> text 3.
    images = torch.eye(3)
    texts = torch.tensor([[0.1, 0.9, 0.0], [0.2, 0.0, 0.8], [0.0, 1.0, 0.0], [0.6, 0.0, 0.5]])
    texts = torch.nn.functional.normalize(texts, dim=-1)
    _, pos = caption_positives([["t0", "t1"], ["t2"], ["t3"]])
    r = retrieval(images, texts, pos)
    # image 0 scores texts (.11, .24, 0, .77): best positive t1 second after t3 -> rank 2.
    # image 1: t2 is 1.0 -> rank 1. image 2: t3 .64 after t1 .97 -> rank 2.
    assert r.image_to_text.rank == [2, 1, 2]
    assert r.image_to_text.recall(1) == pytest.approx(1 / 3) and r.image_to_text.recall(5) == 1.0
    # t0 (.11, .99, 0) -> image 1 first, image 0 second; t1 (.24, 0, .97) -> image 2 first, image 0 second;
    # t2 -> image 1 first; t3 (.77, 0, .64) -> image 0 first, image 2 second.
    assert r.text_to_image.rank == [2, 2, 1, 2]
    assert r.text_to_image.hits(1) == [False, False, True, False]
    assert r.text_to_image.score[2] == pytest.approx(1.0)


def test_ties_count_against_the_query():
    scores = torch.tensor([[0.5, 0.5, 0.5], [0.7, 0.5, 0.5], [0.2, 0.5, 0.1]])
    pos = torch.tensor([[True, False, False], [True, False, False], [True, False, False]])
    rank, best = first_positive(scores, pos)
    assert rank.tolist() == [3, 1, 2] and best.tolist() == pytest.approx([0.5, 0.7, 0.2])


def test_collapsed_embeddings_get_chance_not_perfect_recall():
    images, texts = torch.ones(50, 4) / 2, torch.ones(50, 4) / 2
    r = retrieval(images, texts, torch.eye(50, dtype=torch.bool))
    assert r.image_to_text.recall(10) == 0.0 and r.text_to_image.recall(1) == 0.0


def test_a_query_without_positive_is_refused():
    with pytest.raises(ValueError, match="query 1 has no positive"):
        first_positive(torch.zeros(2, 2), torch.tensor([[True, False], [False, False]]))


@pytest.mark.parametrize("n", [1, 10, 100])
@pytest.mark.parametrize("k", [1, 5, 10])
def test_chance_is_k_over_n_with_one_positive(n, k):
    assert chance_recall(torch.ones(3), n, k) == pytest.approx(min(k, n) / n)


@pytest.mark.parametrize("c, p, k", [(10, 2, 3), (7, 3, 5), (20, 5, 1), (5, 5, 2)])
def test_chance_is_hypergeometric(c, p, k):
    assert chance_recall(torch.tensor([p]), c, k) == pytest.approx(1 - math.comb(c - p, k) / math.comb(c, k))


def _brute_rank(scores: list[float], positive: list[bool]) -> int:
    """Sort candidates by score, negatives first among equals; the 1-based place of the first positive."""
    order = sorted(range(len(scores)), key=lambda j: (-scores[j], positive[j]))
    return next(place for place, j in enumerate(order, start=1) if positive[j])


matrices = st.integers(1, 7).flatmap(lambda q: st.integers(1, 7).flatmap(lambda c: st.tuples(
    st.lists(st.lists(st.integers(-3, 3), min_size=c, max_size=c), min_size=q, max_size=q),
    st.lists(st.lists(st.booleans(), min_size=c, max_size=c), min_size=q, max_size=q))))


@settings(max_examples=300, deadline=None)
@given(matrices)
def test_ranks_and_recall_match_brute_force(case):
    scores, positive = case
    positive = [row if any(row) else [True] + row[1:] for row in positive]
    rank, best = first_positive(torch.tensor(scores, dtype=torch.float), torch.tensor(positive))
    assert rank.tolist() == [_brute_rank(s, p) for s, p in zip(scores, positive, strict=True)]
    assert best.tolist() == [max(x for x, ok in zip(s, p, strict=True) if ok) for s, p in zip(scores, positive,
                                                                                                strict=True)]
    for k in (1, 2, 5):  # "at least one positive among the k first", negatives first among equal scores
        ranked = [sorted(range(len(s)), key=lambda j, s=s, p=p: (-s[j], p[j]))[:k]
                  for s, p in zip(scores, positive, strict=True)]
        expected = [any(p[j] for j in top) for top, p in zip(ranked, positive, strict=True)]
        assert (rank <= k).tolist() == expected


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 8), st.integers(1, 8), st.integers(0, 2**31 - 1))
def test_tie_free_recall_is_clip_benchmarks(n_images, n_texts, seed):
    """Without ties, recall@k is CLIP_benchmark's: topk over the candidates, a hit when a positive is among them."""
    g = torch.Generator().manual_seed(seed)
    images = torch.nn.functional.normalize(torch.randn(n_images, 6, generator=g), dim=-1)
    texts = torch.nn.functional.normalize(torch.randn(n_texts, 6, generator=g), dim=-1)
    owner = torch.randint(0, n_images, (n_texts,), generator=g)
    pos = torch.zeros(n_images, n_texts, dtype=torch.bool)
    pos[owner, torch.arange(n_texts)] = True
    keep = pos.any(dim=1)  # images with at least one caption
    images, pos = images[keep], pos[keep]
    r = retrieval(images, texts, pos)
    scores = texts @ images.T
    for k in (1, 2, 5):
        t2i = (pos.T.gather(1, scores.topk(min(k, scores.shape[1]), dim=1).indices)).any(dim=1)
        i2t = (pos.gather(1, scores.T.topk(min(k, scores.shape[0]), dim=1).indices)).any(dim=1)
        assert r.text_to_image.hits(k) == t2i.tolist()
        assert r.image_to_text.hits(k) == i2t.tolist()
