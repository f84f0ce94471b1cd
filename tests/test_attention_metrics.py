"""Attention-map properties on hand-made attention tensors."""

import numpy as np
import pytest
import torch

from mmtests.evaluation import attention as A


def causal_softmax(layers=2, heads=3, t=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(layers, heads, t, t, generator=g)
    mask = torch.triu(torch.ones(t, t, dtype=torch.bool), 1)
    return scores.masked_fill(mask, float("-inf")).softmax(-1)


def test_softmax_attention_is_normalized_and_causal():
    att = causal_softmax()
    assert A.row_sum_error(att) < 1e-6
    assert A.causal_leak(att) == 0.0


def test_a_leak_above_the_diagonal_is_found():
    att = causal_softmax()
    att[1, 2, 0, 3] = 0.25
    assert A.causal_leak(att) == pytest.approx(0.25)
    assert A.row_sum_error(att) == pytest.approx(0.25)


def test_image_and_sink_shares():
    att = torch.zeros(1, 2, 5, 5)
    att[0, 0, 4] = torch.tensor([0.5, 0.25, 0.25, 0.0, 0.0])  # head 0: half on the sink, half on image [1, 3)
    att[0, 1, 4] = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0])  # head 1: all on the image
    assert A.image_share(att, (1, 3), 4).tolist() == [0.75]
    assert A.sink_share(att, 4).tolist() == [0.25]


def test_token_maps_follow_the_image_positions():
    att = torch.zeros(1, 1, 7, 7)
    att[0, 0, 6, 4] = 1.0  # image tokens at positions 1, 2, 4, 5 (text at 3): position 4 is the third
    maps = A.token_maps(att, [1, 2, 4, 5], 6)
    assert maps.shape == (1, 4) and maps[0].tolist() == [0, 0, 1, 0]


def test_inside_tokens_use_region_centres_and_skip_tokens_without_a_region():
    regions = np.array([[0, 0, 8, 8], [8, 0, 16, 8], [16, 0, 24, 8], [np.nan] * 4], dtype=float)
    assert A.inside_tokens(regions, [0, 0, 13, 8]).tolist() == [True, True, False, False]
    assert A.inside_fraction(regions, [0, 0, 12, 8]).tolist() == [1.0, 0.5, 0.0, 0.0]


def test_a_prefix_mask_allows_its_block_and_cross_attention_has_no_order():
    att = causal_softmax(t=6)
    att[0, 0, 1, 2] = 0.3  # inside a bidirectional block [0, 3)
    assert A.causal_leak(att, "prefix", (0, 3)) == 0.0
    assert A.causal_leak(att) == pytest.approx(0.3)
    att[0, 0, 3, 5] = 0.2  # outside it
    assert A.causal_leak(att, "prefix", (0, 3)) == pytest.approx(0.2)
    assert A.causal_leak(att, "cross") == 0.0


def test_original_space_map_keeps_each_tokens_mass_over_its_region():
    regions = np.array([[0, 0, 10, 10], [10, 0, 20, 10], [np.nan] * 4])
    canvas = A.original_space_map(np.array([1.0, 3.0, 5.0]), regions, (20, 10), cells=4)
    assert canvas.shape == (2, 4) and canvas.sum() == pytest.approx(4.0)
    assert canvas[:, :2].sum() == pytest.approx(1.0) and canvas[:, 2:].sum() == pytest.approx(3.0)


def test_original_space_map_marks_what_no_token_covers():
    regions = np.array([[5, 0, 15, 10], [np.nan] * 4])  # a centre crop: the left and right quarters cut off
    canvas = A.original_space_map(np.array([2.0, 1.0]), regions, (20, 10), cells=4)
    assert np.isnan(canvas[:, [0, 3]]).all() and not np.isnan(canvas[:, 1:3]).any()
    assert np.nansum(canvas) == pytest.approx(2.0)
    cut = A.original_space_map(np.array([2.0, 1.0]), np.array([[4, 0, 16, 10], [np.nan] * 4]), (20, 10), cells=4)
    assert not np.isnan(cut).any() and np.std(cut) < 1e-12  # cells cut by the region's edges: no seam


def test_localization_ratio_and_pointing_against_chance():
    heat = np.ones((4, 4))
    mask = np.zeros((4, 4), dtype=bool)
    mask[:2, :2] = True
    heat[0, 0] = 7.0
    loc = A.localization(heat, mask)
    assert loc.inside_outside == pytest.approx(((7 + 3) / 4) / 1.0)
    assert loc.pointing_hit and loc.chance == 0.25
    uniform = A.localization(np.ones((4, 4)), mask)
    assert uniform.inside_outside == 1.0


def test_localization_refuses_empty_boxes():
    with pytest.raises(ValueError, match="no patch"):
        A.localization(np.ones((2, 2)), np.zeros((2, 2), dtype=bool))


def answer_sample():
    """2 layers x 2 heads over [sink | 4 image tokens (a 2 x 2 grid) | answer position]; causal uniform rows but
    the answer position's (the last query), which is set by hand."""
    att = torch.tril(torch.ones(6, 6, dtype=torch.float64))
    att = (att / att.sum(-1, keepdim=True)).expand(2, 2, 6, 6).clone()
    att[0, 0, 5] = torch.tensor([0.2, 0.4, 0.1, 0.1, 0.1, 0.1], dtype=torch.float64)
    att[0, 1, 5] = torch.tensor([0.0, 0.2, 0.2, 0.2, 0.2, 0.2], dtype=torch.float64)
    att[1, 0, 5] = torch.tensor([0.6, 0.0, 0.4, 0.0, 0.0, 0.0], dtype=torch.float64)
    att[1, 1, 5] = torch.tensor([0.4, 0.0, 0.2, 0.0, 0.0, 0.4], dtype=torch.float64)
    regions = np.array([[0, 0, 8, 8], [8, 0, 16, 8], [0, 8, 8, 16], [8, 8, 16, 16]], dtype=float)  # a 2 x 2 grid
    return A.answer_attention(att, (1, 5), 5, regions, [0, 0, 8, 8])  # the box covers the top-left patch


def test_answer_attention_averages_heads_per_layer():
    a = answer_sample()
    assert a.image_share == pytest.approx([0.75, 0.3])  # layer 0: heads 0.7 and 0.8; layer 1: 0.4 and 0.2
    assert a.sink_share == pytest.approx([0.1, 0.5])
    # layer 0's map [[.3, .15], [.15, .15]]: inside .3 / outside .15, top patch inside; layer 1's [[0, .3], [0, 0]]
    assert a.ratio_by_layer == pytest.approx([2.0, 0.0])
    assert a.hit_by_layer.tolist() == [True, False]


def test_answer_attention_localizes_the_map_averaged_over_layers_and_heads():
    a = answer_sample()
    assert a.mean_map == pytest.approx(np.array([0.15, 0.225, 0.075, 0.075]))
    assert a.localization.inside_outside == pytest.approx(0.15 / 0.125)  # outside: (.225 + .075 + .075) / 3
    assert not a.localization.pointing_hit  # the top patch is the top-right one
    assert a.localization.chance == 0.25


def test_answer_attention_structure_and_image_token_fraction():
    a = answer_sample()
    assert a.row_sum_error < 1e-12 and a.causal_leak == 0.0
    assert a.image_token_fraction == pytest.approx(4 / 6)  # 4 image tokens among the 6 keys the answer position sees
