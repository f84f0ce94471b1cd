"""Attention-map properties of a decoder over [prefix | image tokens | instruction | answer] sequences.

Input: one sample's attention weights as a (layers, heads, query, key) tensor. Output: plain numbers
and per-layer arrays, so that every property can be checked on hand-made tensors.

- normalization and causality hold for any softmax attention with a causal mask;
- image share (FastV's allocation): attention mass the answer position puts on image tokens;
- sink share (StreamingLLM): mass on the first token;
- localization: the answer position's attention over the image patch grid, compared inside and
  outside the ground-truth box (ratio of means) and by the pointing game (top patch inside the box),
  whose chance rate is the box's share of patches.
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
