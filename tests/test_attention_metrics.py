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


def test_patch_maps_follow_row_major_grid():
    att = torch.zeros(1, 1, 7, 7)
    att[0, 0, 6, 1 + 2 * 2 + 1] = 1.0  # image tokens at 1..5 (a 2 x 3 grid); token 5 -> row 1, col 2
    grid = A.patch_maps(att, (1, 7), 6, (2, 3))
    assert grid.shape == (1, 2, 3) and grid[0, 1, 2] == 1.0


def test_box_mask_uses_patch_centres():
    mask = A.box_mask([0, 0, 16, 8], (4, 4), (32, 32))  # 8 px patches; centres at 4, 12, 20, 28
    assert mask.sum() == 2 and mask[0, 0] and mask[0, 1]


def test_box_through_resize_and_centre_crop():
    # 128 x 64 image, shortest edge -> 32 (scale .5, 64 x 32), centre crop 32 x 32 drops 16 px each side
    assert A.box_in_model_pixels([64, 0, 128, 64], (128, 64), 32, (32, 32)) == [16.0, 0.0, 48.0, 32.0]


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
    mask = np.array([[True, False], [False, False]])  # the box covers the top-left patch
    return A.answer_attention(att, (1, 5), 5, (2, 2), mask)


def test_answer_attention_averages_heads_per_layer():
    a = answer_sample()
    assert a.image_share == pytest.approx([0.75, 0.3])  # layer 0: heads 0.7 and 0.8; layer 1: 0.4 and 0.2
    assert a.sink_share == pytest.approx([0.1, 0.5])
    # layer 0's map [[.3, .15], [.15, .15]]: inside .3 / outside .15, top patch inside; layer 1's [[0, .3], [0, 0]]
    assert a.ratio_by_layer == pytest.approx([2.0, 0.0])
    assert a.hit_by_layer.tolist() == [True, False]


def test_answer_attention_localizes_the_map_averaged_over_layers_and_heads():
    a = answer_sample()
    assert a.mean_map == pytest.approx(np.array([[0.15, 0.225], [0.075, 0.075]]))
    assert a.localization.inside_outside == pytest.approx(0.15 / 0.125)  # outside: (.225 + .075 + .075) / 3
    assert not a.localization.pointing_hit  # the top patch is the top-right one
    assert a.localization.chance == 0.25


def test_answer_attention_structure_and_image_token_fraction():
    a = answer_sample()
    assert a.row_sum_error < 1e-12 and a.causal_leak == 0.0
    assert a.image_token_fraction == pytest.approx(4 / 6)  # 4 image tokens among the 6 keys the answer position sees
