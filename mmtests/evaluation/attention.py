"""Attention-map properties of a language model over a sequence holding one image's tokens.

Input: one sample's attention weights as a (layers, heads, query, key) tensor, the key positions of the image's
tokens (in sequence order, not necessarily contiguous) and, per image token, the rectangle of the original image
it covers (x0, y0, x1, y1 in pixels; NaN for a token covering none: a newline, class or padding token), as
`mmtests.adapters.geometry` derives it from the processor. Output: plain numbers and per-layer arrays, so that
every property can be checked on hand-made tensors, whatever the model family.

- normalization holds for any softmax attention; the mask's structure by its kind: "causal" (no query sees a
  later key), "prefix" (causal, except inside the bidirectional block, PaliGemma's prefix-LM), "cross" (the keys
  are the vision tokens: rows sum to one over them, no causality);
- image share (FastV's allocation): attention mass the answer position puts on image tokens;
- sink share (StreamingLLM): mass on the first token;
- localization: the answer position's attention over the image tokens that cover pixels, compared inside and
  outside the ground-truth box in original pixels (a token is inside when its region's centre is: ratio of
  means), and by the pointing game (the most-attended token inside the box), whose chance rate is the share
  of tokens inside.

`answer_attention` aggregates one sample as the suites judge it: per layer, maps averaged over heads;
localization also on the map averaged over all layers and heads (no layer or head picked after looking).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

MASK_KINDS = ("causal", "prefix", "cross")


def row_sum_error(att: torch.Tensor) -> float:
    """Largest |sum over keys - 1| over every layer, head and query row."""
    return (att.sum(-1) - 1).abs().max().item()


def causal_leak(att: torch.Tensor, kind: str = "causal", bidirectional: tuple[int, int] | None = None) -> float:
    """Largest attention weight the mask forbids: a query on a later key ("causal"), except inside the
    `bidirectional` [start, end) block ("prefix"); nothing is forbidden over cross-attention's vision keys."""
    if kind not in MASK_KINDS:
        raise ValueError(f"mask kind {kind!r} is not one of {', '.join(MASK_KINDS)}")
    if kind == "cross":
        return 0.0
    upper = torch.triu(att, diagonal=1)
    if kind == "prefix":
        if bidirectional is None:
            raise ValueError("a 'prefix' mask needs its bidirectional [start, end) block")
        s, e = bidirectional
        upper[..., s:e, s:e] = 0
    return upper.abs().max().item()


def _positions(image) -> list[int]:
    """Key positions of the image tokens: a list, or a [start, end) span."""
    return list(range(image[0], image[1])) if isinstance(image, tuple) else list(image)


def image_share(att: torch.Tensor, image, query: int) -> np.ndarray:
    """Per layer: share of the query's attention on image tokens, averaged over heads."""
    return att[:, :, query, _positions(image)].sum(-1).mean(-1).numpy()


def sink_share(att: torch.Tensor, query: int) -> np.ndarray:
    """Per layer: share of the query's attention on the first token, averaged over heads."""
    return att[:, :, query, 0].mean(-1).numpy()


def token_maps(att: torch.Tensor, image, query: int) -> np.ndarray:
    """Per layer (layers, image tokens): the query's attention on each image token, averaged over heads."""
    return att[:, :, query, _positions(image)].mean(1).numpy()


def inside_tokens(regions: np.ndarray, box) -> np.ndarray:
    """Per token: its region's centre lies inside the box (x0, y0, x1, y1); False for tokens without a region."""
    x0, y0, x1, y1 = box
    cx, cy = (regions[:, 0] + regions[:, 2]) / 2, (regions[:, 1] + regions[:, 3]) / 2
    with np.errstate(invalid="ignore"):
        return (cx >= x0) & (cx < x1) & (cy >= y0) & (cy < y1)


def inside_fraction(regions: np.ndarray, box) -> np.ndarray:
    """Per token: the share of its region's area inside the box (0 for tokens without a region)."""
    x0, y0, x1, y1 = box
    w = np.clip(np.minimum(regions[:, 2], x1) - np.maximum(regions[:, 0], x0), 0, None)
    h = np.clip(np.minimum(regions[:, 3], y1) - np.maximum(regions[:, 1], y0), 0, None)
    area = (regions[:, 2] - regions[:, 0]) * (regions[:, 3] - regions[:, 1])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nan_to_num(w * h / area)


def located(regions: np.ndarray) -> np.ndarray:
    """Per token: it covers pixels of the image (its region is not NaN)."""
    return ~np.isnan(regions).any(axis=1)


def original_space_map(values: np.ndarray, regions: np.ndarray, image_size: tuple[int, int],
                       cells: int = 48) -> np.ndarray:
    """Per-token values spread over their regions on a coarse canvas over the original image ((rows, cols) cells,
    `cells` along the longer side): each cell holds the mass of every token in proportion to how much of the
    token's region it covers, so the canvas sums (NaN-skipping) to the located tokens' total whatever the family's
    geometry when the regions' edges fall on cell edges; a cell a crop edge cuts holds what its covered part would
    if it filled the cell (no dark seam along the edge); NaN in cells no token covers (a centre crop's cut-off
    strips), which hold no attention by construction."""
    w, h = image_size
    cols, rows = (cells, max(1, round(cells * h / w))) if w >= h else (max(1, round(cells * w / h)), cells)
    keep = located(regions)
    r, v = regions[keep], np.asarray(values, dtype=float)[keep]
    xs, ys = np.linspace(0, w, cols + 1), np.linspace(0, h, rows + 1)
    ox = np.clip(np.minimum(r[:, 2:3], xs[None, 1:]) - np.maximum(r[:, 0:1], xs[None, :-1]), 0, None)
    oy = np.clip(np.minimum(r[:, 3:4], ys[None, 1:]) - np.maximum(r[:, 1:2], ys[None, :-1]), 0, None)
    area = (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])
    canvas = (oy * (v / area)[:, None]).T @ ox
    covered = (oy.T @ ox) / ((xs[1] - xs[0]) * (ys[1] - ys[0]))  # share of each cell under a region (2: two views)
    with np.errstate(invalid="ignore", divide="ignore"):
        canvas = canvas / np.minimum(covered, 1.0)  # a cell cut by a crop edge: as if its covered part filled it
    canvas[covered <= 1e-12] = np.nan  # no token covers it: cropped away, the model never saw it
    return canvas


@dataclass(frozen=True)
class Localization:
    inside_outside: float  # mean attention on tokens inside the box / mean on those outside
    pointing_hit: bool  # the most-attended token is inside the box
    chance: float  # share of tokens inside the box: the pointing game's chance rate


class LocalizationUndefined(ValueError):
    """The box holds no image token's centre, or every one: inside/outside and the pointing game say nothing."""


def localization(attention_map: np.ndarray, mask: np.ndarray) -> Localization:
    if not mask.any() or mask.all():
        raise LocalizationUndefined("the box covers no patch or every patch; localization is undefined")
    inside, outside = attention_map[mask].mean(), attention_map[~mask].mean()
    ratio = float(inside / outside) if outside > 0 else float("inf")
    top = np.unravel_index(np.argmax(attention_map), attention_map.shape)
    return Localization(ratio, bool(mask[top]), float(mask.mean()))


@dataclass(frozen=True)
class AnswerAttention:
    """One sample's attention at the answer position, aggregated over heads (per layer) and over both."""

    row_sum_error: float  # largest |sum over keys - 1| of any row
    causal_leak: float  # largest weight the mask kind forbids
    image_share: np.ndarray  # per layer
    image_token_fraction: float  # image tokens / keys the query sees: the image share of uniform attention
    sink_share: np.ndarray  # per layer
    ratio_by_layer: np.ndarray  # per layer: inside/outside ratio of the layer's map
    hit_by_layer: np.ndarray  # per layer: pointing game of the layer's map
    mean_map: np.ndarray  # (image tokens,): the query's attention per image token, mean of layers and heads
    localization: Localization  # of `mean_map` over the located tokens
    inside_fraction: np.ndarray  # per image token: share of its region inside the box


def answer_attention(att: torch.Tensor, image, query: int, regions: np.ndarray, box, *, mask: str = "causal",
                     bidirectional: tuple[int, int] | None = None) -> AnswerAttention:
    """Every attention figure of one sample: `image` the image tokens' key positions (or [start, end)), `regions`
    their rectangles of the original image, `box` the asked-about object's, in original pixels."""
    positions = _positions(image)
    if len(positions) != len(regions):
        raise ValueError(f"{len(positions)} image tokens but {len(regions)} regions: the geometry does not fit")
    keep = located(regions)
    inside = inside_tokens(regions, box)[keep]
    per_layer = token_maps(att, positions, query)
    layer_loc = [localization(m[keep], inside) for m in per_layer]
    mean_map = per_layer.mean(0)
    seen = att.shape[-1] if mask == "cross" else query + 1
    return AnswerAttention(
        row_sum_error=row_sum_error(att),
        causal_leak=causal_leak(att, mask, bidirectional),
        image_share=image_share(att, positions, query),
        image_token_fraction=len(positions) / seen,
        sink_share=sink_share(att, query),
        ratio_by_layer=np.array([x.inside_outside for x in layer_loc]),
        hit_by_layer=np.array([x.pointing_hit for x in layer_loc]),
        mean_map=mean_map,
        localization=localization(mean_map[keep], inside),
        inside_fraction=inside_fraction(regions, box),
    )
