"""Attention-map properties of a decoder over [prefix | image tokens | instruction | answer] sequences.

Input: one sample's attention weights as a (layers, heads, query, key) tensor. Output: plain numbers
and per-layer arrays, so that every property can be checked on hand-made tensors.

- normalization and causality hold for any softmax attention with a causal mask;
- image share (FastV's allocation): attention mass the answer position puts on image tokens;
- sink share (StreamingLLM): mass on the first token;
- localization: the answer position's attention over the image patch grid, compared inside and
  outside the ground-truth box (ratio of means) and by the pointing game (top patch inside the box),
  whose chance rate is the box's share of patches.

`answer_attention` aggregates one sample as the suites judge it: per layer, maps averaged over heads;
localization also on the map averaged over all layers and heads (no layer or head picked after looking).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def row_sum_error(att: torch.Tensor) -> float:
    """Largest |sum over keys - 1| over every layer, head and query row."""
    return (att.sum(-1) - 1).abs().max().item()


def causal_leak(att: torch.Tensor) -> float:
    """Largest attention weight above the diagonal (a query attending to a later key)."""
    return torch.triu(att, diagonal=1).abs().max().item()


def image_share(att: torch.Tensor, image: tuple[int, int], query: int) -> np.ndarray:
    """Per layer: share of the query's attention on image tokens, averaged over heads."""
    return att[:, :, query, image[0]:image[1]].sum(-1).mean(-1).numpy()


def sink_share(att: torch.Tensor, query: int) -> np.ndarray:
    """Per layer: share of the query's attention on the first token, averaged over heads."""
    return att[:, :, query, 0].mean(-1).numpy()


def patch_maps(att: torch.Tensor, image: tuple[int, int], query: int, grid: tuple[int, int]) -> np.ndarray:
    """Per layer (layers, rows, cols): the query's attention over image patches, averaged over heads."""
    return att[:, :, query, image[0]:image[1]].mean(1).reshape(att.shape[0], *grid).numpy()


def box_in_model_pixels(bbox, image_size: tuple[int, int], shortest_edge: int, crop: tuple[int, int]) -> list[float]:
    """Map a box (x0, y0, x1, y1) in original pixels through resize-shortest-edge + centre crop."""
    w, h = image_size
    scale = shortest_edge / min(w, h)
    dx, dy = (w * scale - crop[1]) / 2, (h * scale - crop[0]) / 2
    x0, y0, x1, y1 = bbox
    return [x0 * scale - dx, y0 * scale - dy, x1 * scale - dx, y1 * scale - dy]


def box_mask(bbox, grid: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Patches (rows x cols) whose centre lies inside the box, for a model input of `size` (h, w) pixels."""
    rows, cols = grid
    ph, pw = size[0] / rows, size[1] / cols
    cy = (np.arange(rows) + 0.5) * ph
    cx = (np.arange(cols) + 0.5) * pw
    x0, y0, x1, y1 = bbox
    return ((cy[:, None] >= y0) & (cy[:, None] < y1)) & ((cx[None, :] >= x0) & (cx[None, :] < x1))


@dataclass(frozen=True)
class Localization:
    inside_outside: float  # mean attention on patches inside the box / mean outside
    pointing_hit: bool  # the most-attended patch is inside the box
    chance: float  # share of patches inside the box: the pointing game's chance rate


def localization(attention_map: np.ndarray, mask: np.ndarray) -> Localization:
    if not mask.any() or mask.all():
        raise ValueError("the box covers no patch or every patch; localization is undefined")
    inside, outside = attention_map[mask].mean(), attention_map[~mask].mean()
    ratio = float(inside / outside) if outside > 0 else float("inf")
    top = np.unravel_index(np.argmax(attention_map), attention_map.shape)
    return Localization(ratio, bool(mask[top]), float(mask.mean()))


@dataclass(frozen=True)
class AnswerAttention:
    """One sample's attention at the answer position, aggregated over heads (per layer) and over both."""

    row_sum_error: float  # largest |sum over keys - 1| of any row
    causal_leak: float  # largest weight above the diagonal
    image_share: np.ndarray  # per layer
    image_token_fraction: float  # image tokens / keys the query sees: the image share of uniform attention
    sink_share: np.ndarray  # per layer
    ratio_by_layer: np.ndarray  # per layer: inside/outside ratio of the layer's map
    hit_by_layer: np.ndarray  # per layer: pointing game of the layer's map
    mean_map: np.ndarray  # (rows, cols): the query's attention over patches, averaged over layers and heads
    localization: Localization  # of `mean_map`


def answer_attention(att: torch.Tensor, image: tuple[int, int], query: int, grid: tuple[int, int],
                     mask: np.ndarray) -> AnswerAttention:
    """Every attention figure of one sample: `image` is the image tokens' [start, end), `mask` the box's patches."""
    per_layer = patch_maps(att, image, query, grid)
    layer_loc = [localization(m, mask) for m in per_layer]
    mean_map = per_layer.mean(0)
    return AnswerAttention(
        row_sum_error=row_sum_error(att),
        causal_leak=causal_leak(att),
        image_share=image_share(att, image, query),
        image_token_fraction=(image[1] - image[0]) / (query + 1),
        sink_share=sink_share(att, query),
        ratio_by_layer=np.array([x.inside_outside for x in layer_loc]),
        hit_by_layer=np.array([x.pointing_hit for x in layer_loc]),
        mean_map=mean_map,
        localization=localization(mean_map, mask),
    )
