"""Which part of the original image each image token of a vision-language model covers.

`image_token_regions(processor, image_size, inputs)` gives, for every image token of one image in sequence
order, the rectangle (x0, y0, x1, y1) of the ORIGINAL image (pixels, x to the right, y down) the token's
patch(es) were cut from; a NaN row for a token that covers no pixel (a row-end "newline" token, a class
token, a tile or patch of padding). It is derived from the processor's own settings and outputs (resize
mode, crop, padding, tiles, `image_sizes`, `image_grid_thw`) and from how the model orders its image
features (LLaVA-NeXT's `pack_image_features`, Qwen2-VL's 2x2 merge, Idefics3's tiles then the global image,
Gemma 3's pooling, Mllama's tiles of class token + patches), one small function per family in `FAMILIES`,
keyed by the image processor's class (the torchvision, PIL and older "Fast" variants alike).

Every step (resize, pad, crop, tile) maps original pixels to model pixels by x' = a x + b per axis; a
token's rectangle in model pixels is mapped back by the inverse and clipped to the image.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..errors import EntryError

Affine = tuple[float, float, float, float]  # model = (ax * x + bx, ay * y + by) of original pixels (x, y)
IDENTITY: Affine = (1.0, 0.0, 1.0, 0.0)


def _then(first: Affine, ax: float, bx: float, ay: float, by: float) -> Affine:
    """`first`, followed by x' = ax x + bx, y' = ay y + by."""
    return (first[0] * ax, first[1] * ax + bx, first[2] * ay, first[3] * ay + by)


def _cells(rows: int, cols: int, cell_h: float, cell_w: float) -> np.ndarray:
    """Rectangles (x0, y0, x1, y1) of a rows x cols grid of cells in model pixels, row-major (row r, then col c)."""
    r, c = np.divmod(np.arange(rows * cols), cols)
    return np.stack([c * cell_w, r * cell_h, (c + 1) * cell_w, (r + 1) * cell_h], axis=1).astype(float)


def _back(rects: np.ndarray, affine: Affine, image_size: tuple[int, int]) -> np.ndarray:
    """Model-pixel rectangles mapped back to the original image and clipped to it; NaN where nothing is left."""
    ax, bx, ay, by = affine
    w, h = image_size
    x0, x1 = np.clip((rects[:, 0] - bx) / ax, 0, w), np.clip((rects[:, 2] - bx) / ax, 0, w)
    y0, y1 = np.clip((rects[:, 1] - by) / ay, 0, h), np.clip((rects[:, 3] - by) / ay, 0, h)
    out = np.stack([x0, y0, x1, y1], axis=1)
    out[(x1 - x0 <= 1e-9) | (y1 - y0 <= 1e-9)] = np.nan
    return out


def _nan(n: int) -> np.ndarray:
    return np.full((n, 4), np.nan)


def _get(obj, key: str):
    value = obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)
    return None if value is None else value


def _resize_size(ip, size, h: int, w: int) -> tuple[int, int]:
    """(height, width) after the processor's `resize` with `size`, as transformers computes it."""
    from transformers.image_transforms import get_resize_output_image_size, get_size_with_aspect_ratio

    shortest, longest = _get(size, "shortest_edge"), _get(size, "longest_edge")
    if shortest and longest:
        return tuple(get_size_with_aspect_ratio((h, w), shortest, longest))
    if shortest:
        return tuple(get_resize_output_image_size(np.empty((h, w, 1)), shortest, default_to_square=False,
                                                  input_data_format="channels_last"))
    if _get(size, "height") and _get(size, "width"):
        return int(_get(size, "height")), int(_get(size, "width"))
    raise EntryError(f"{type(ip).__name__}: size {dict(size) if isinstance(size, dict) else size!r} is neither "
                     "shortest_edge nor height/width; the geometry of its resize is not known")


def _resize_pad_crop(ip, h: int, w: int, affine: Affine = IDENTITY, pad_square: bool = False) -> tuple[Affine, int, int]:
    """The affine of [pad to square] + resize + centre crop as the processor applies them to an (h, w) image,
    after `affine`; with the model canvas's (height, width)."""
    if pad_square and getattr(ip, "do_pad", False):  # LlavaImageProcessor: pad to a square first, centred
        side = max(h, w)
        affine, h, w = _then(affine, 1, (side - w) // 2, 1, (side - h) // 2), side, side
    if getattr(ip, "do_resize", True) and getattr(ip, "size", None):
        rh, rw = _resize_size(ip, ip.size, h, w)
        affine, h, w = _then(affine, rw / w, 0, rh / h, 0), rh, rw
    crop = getattr(ip, "crop_size", None)
    if getattr(ip, "do_center_crop", False) and crop:
        ch, cw = int(_get(crop, "height")), int(_get(crop, "width"))
        # transformers pads a side the crop is larger than ((crop - side) // 2 before), then crops centred
        dx = -((cw - w) // 2) if cw > w else int((w - cw) / 2)
        dy = -((ch - h) // 2) if ch > h else int((h - ch) / 2)
        affine, h, w = _then(affine, 1, -dx, 1, -dy), ch, cw
    return affine, h, w


def _side(n: int, what: str) -> int:
    side = math.isqrt(n)
    if side * side != n:
        raise EntryError(f"{what}: {n} image tokens per image are not a square grid of patches")
    return side


def single_grid(processor, image_size, inputs, **_) -> np.ndarray:
    """One grid of patch tokens over [pad +] resize [+ centre crop] (LLaVA-1.5, PaliGemma, SigLIP-style): row-major,
    after `num_additional_image_tokens` tokens without a place (a class token kept by the "full" strategy)."""
    ip = processor.image_processor
    w, h = image_size
    affine, ch, cw = _resize_pad_crop(ip, h, w, pad_square=True)
    extra = 0
    if getattr(processor, "image_seq_length", None):  # PaliGemma, Gemma 3: the token count is the processor's
        rows = cols = _side(int(processor.image_seq_length), type(processor).__name__)
    elif getattr(processor, "patch_size", None):  # LLaVA: one token per patch of the canvas
        rows, cols = ch // processor.patch_size, cw // processor.patch_size
        extra = getattr(processor, "num_additional_image_tokens", 0) or 0
        extra -= 1 if extra and getattr(processor, "vision_feature_select_strategy", "default") == "default" else 0
    else:
        raise EntryError(f"{type(processor).__name__}: neither image_seq_length nor patch_size is set, so the patch "
                         "grid of its images is not known; save the processor with patch_size (LLaVA) or "
                         "image_seq_length")
    regions = _back(_cells(rows, cols, ch / rows, cw / cols), affine, image_size)
    return np.concatenate([_nan(extra), regions]) if extra else regions


def gemma3(processor, image_size, inputs, **kw) -> np.ndarray:
    """Gemma 3: squash resize to `size`; the vision tower's patches are average-pooled to `image_seq_length`
    tokens (16 x 16), row-major."""
    if getattr(processor.image_processor, "do_pan_and_scan", False):
        raise EntryError(f"{type(processor.image_processor).__name__}: do_pan_and_scan adds crops of the image as "
                         "further images, whose regions are not mapped here; set do_pan_and_scan false")
    return single_grid(processor, image_size, inputs, **kw)


def _best_resolution(ip, h: int, w: int) -> tuple[int, int]:
    from transformers.image_processing_utils import select_best_resolution

    return tuple(select_best_resolution((h, w), ip.image_grid_pinpoints))


def anyres(processor, image_size, inputs, **_) -> np.ndarray:
    """LLaVA-NeXT / LLaVA-OneVision "anyres": the base image (squashed to `size`), then the tiles of the image
    resized into the best grid resolution and padded centred, as one feature grid whose padding rows or columns
    the model removes (`unpad_image`), OneVision shrinking it beyond `anyres_max_N` tiles, a newline token at the
    end of every row (`pack_image_features`)."""
    ip = processor.image_processor
    w, h = image_size
    sizes = inputs.get("image_sizes") if hasattr(inputs, "get") else None
    if sizes is not None and [int(v) for v in np.asarray(sizes).reshape(-1, 2)[0]] != [h, w]:
        raise EntryError(f"{type(processor).__name__}: image_sizes {np.asarray(sizes).tolist()} are not the image's "
                         f"{h} x {w}")
    crop = ip.crop_size if getattr(ip, "crop_size", None) else None
    size_h = _get(ip.size, "height") or _get(ip.size, "shortest_edge")
    size_w = _get(ip.size, "width") or _get(ip.size, "shortest_edge")
    tile = int(_get(crop, "height") if crop else size_h)
    onevision = getattr(processor, "vision_aspect_ratio", None) is not None
    if onevision:
        side = _side(int(processor.num_image_tokens), type(processor).__name__)
    else:
        if getattr(processor, "vision_feature_select_strategy", "default") != "default":
            raise EntryError(f"{type(processor).__name__}: vision_feature_select_strategy "
                             f"{processor.vision_feature_select_strategy!r} keeps each tile's class token, whose "
                             "place is not mapped here; use 'default'")
        side = tile // processor.patch_size
    # the base image: squashed to `size`, then each image's own resize and crop
    base_affine, bh, bw = _resize_pad_crop(ip, int(size_h), int(size_w), _then(IDENTITY, size_w / w, 0, size_h / h, 0))
    base = _back(_cells(side, side, bh / side, bw / side), base_affine, image_size)
    # the tiles: the image resized to fit the best resolution and padded centred on it
    best_h, best_w = _best_resolution(ip, h, w)
    from transformers.image_processing_utils import get_patch_output_size

    new_h, new_w = get_patch_output_size(np.empty((h, w, 1)), (best_h, best_w), "channels_last")
    canvas = _then(IDENTITY, new_w / w, (best_w - new_w) // 2, new_h / h, (best_h - new_h) // 2)
    nph, npw = best_h // tile, best_w // tile
    grid_h, grid_w = nph * side, npw * side
    cell = tile / side
    # unpad_image on the (grid_h, grid_w) feature grid, with the original (h, w)
    r0, r1, c0, c1 = 0, grid_h, 0, grid_w
    if w / h > grid_w / grid_h:
        pad = (grid_h - int(round(h * (grid_w / w), 7))) // 2
        r0, r1 = pad, grid_h - pad
    else:
        pad = (grid_w - int(round(w * (grid_h / h), 7))) // 2
        c0, c1 = pad, grid_w - pad
    rows, cols = r1 - r0, c1 - c0
    row_edges, col_edges = np.arange(r0, r1 + 1) * cell, np.arange(c0, c1 + 1) * cell
    if onevision:  # bilinear shrink of the kept grid beyond anyres_max_N tiles: each token spans a share of it
        most = int(processor.vision_aspect_ratio.removeprefix("anyres_max_"))
        ratio = math.sqrt(rows * cols / (most * side ** 2))
        if ratio > 1.1:
            rows, cols = int(rows // ratio), int(cols // ratio)
            row_edges = np.linspace(r0 * cell, r1 * cell, rows + 1)
            col_edges = np.linspace(c0 * cell, c1 * cell, cols + 1)
    r, c = np.divmod(np.arange(rows * cols), cols)
    rects = np.stack([col_edges[c], row_edges[r], col_edges[c + 1], row_edges[r + 1]], axis=1)
    tiles = _back(rects, canvas, image_size).reshape(rows, cols, 4)
    tiles = np.concatenate([tiles, np.full((rows, 1, 4), np.nan)], axis=1).reshape(-1, 4)  # a newline per row
    return np.concatenate([base, tiles])


def qwen2_vl(processor, image_size, inputs, **_) -> np.ndarray:
    """Qwen2-VL / Qwen2.5-VL: the image resized (squashed slightly) to `image_grid_thw` patches; each token
    merges merge_size x merge_size neighbouring patches, tokens row-major over the merged grid."""
    ip = processor.image_processor
    grid = inputs.get("image_grid_thw") if hasattr(inputs, "get") else None
    if grid is None:
        raise EntryError(f"{type(processor).__name__}: the processor's outputs hold no image_grid_thw; pass the "
                         "outputs of this image's processor call")
    t, gh, gw = (int(v) for v in np.asarray(grid).reshape(-1, 3)[0])
    merge, patch = int(ip.merge_size), int(ip.patch_size)
    w, h = image_size
    affine = _then(IDENTITY, gw * patch / w, 0, gh * patch / h, 0)
    rows, cols = gh // merge, gw // merge
    one = _back(_cells(rows, cols, merge * patch, merge * patch), affine, image_size)
    return np.concatenate([one] * t)


def _idefics3_rows_cols(ip, h: int, w: int) -> tuple[int, int, int, int]:
    """(rows, cols, resized height, resized width) of Idefics3's tiling, as its `_preprocess` computes them."""
    from transformers.models.idefics3.image_processing_idefics3 import get_resize_output_image_size

    biggest = int(ip.max_image_size["longest_edge"])
    if getattr(ip, "do_resize", True):
        h, w = get_resize_output_image_size(np.empty((1, h, w)), resolution_max_side=int(ip.size["longest_edge"]))
    if not getattr(ip, "do_image_splitting", True):
        return 0, 0, h, w
    aspect = w / h  # resize_for_vision_encoder
    if w >= h:
        w = math.ceil(w / biggest) * biggest
        h = math.ceil(int(w / aspect) / biggest) * biggest
    else:
        h = math.ceil(h / biggest) * biggest
        w = math.ceil(int(h * aspect) / biggest) * biggest
    if h > biggest or w > biggest:
        return math.ceil(h / biggest), math.ceil(w / biggest), h, w
    return 0, 0, h, w


def idefics3(processor, image_size, inputs, **_) -> np.ndarray:
    """Idefics3 / SmolVLM: longest edge resized, then stretched to whole tiles of max_image_size; the tiles
    row-major, then the whole image squashed to one tile (the global image). In each tile the pixel shuffle
    merges scale x scale patches into one of `image_seq_len` tokens, row-major; the text between tiles
    (<row_i_col_j>, <fake_token_around_image>, newlines) are not image tokens."""
    ip = processor.image_processor
    w, h = image_size
    rows, cols, rh, rw = _idefics3_rows_cols(ip, h, w)
    biggest = int(ip.max_image_size["longest_edge"])
    side = _side(int(processor.image_seq_len), type(processor).__name__)
    cells = _cells(side, side, biggest / side, biggest / side)
    whole = _then(IDENTITY, biggest / w, 0, biggest / h, 0)  # the global image (or the only one)
    out = []
    for r in range(rows):
        for c in range(cols):
            out.append(_back(cells, _then(IDENTITY, rw / w, -c * biggest, rh / h, -r * biggest), image_size))
    out.append(_back(cells, whole, image_size))
    return np.concatenate(out)


def mllama(processor, image_size, inputs, *, patch_size: int | None = None, **_) -> np.ndarray:
    """Mllama: resized to fit the best canvas of tiles (aspect kept), padded right and bottom, cut into tiles
    row-major, padded to max_image_tiles; the cross-attention keys are per tile a class token, then the
    tile's patches row-major."""
    from transformers.models.mllama.image_processing_mllama import (
        get_image_size_fit_to_canvas,
        get_optimal_tiled_canvas,
    )

    if not patch_size:
        raise EntryError(f"{type(processor).__name__}: the vision patch size is not in the processor; pass "
                         "patch_size (the vision config's) to image_token_regions")
    ip = processor.image_processor
    w, h = image_size
    tile = int(ip.size["height"])
    most = int(ip.max_image_tiles)
    ch, cw = get_optimal_tiled_canvas(image_height=h, image_width=w, max_image_tiles=most, tile_size=tile)
    nh, nw = get_image_size_fit_to_canvas(image_height=h, image_width=w, canvas_height=ch, canvas_width=cw,
                                          tile_size=tile)
    side = tile // patch_size
    cells = _cells(side, side, tile / side, tile / side)
    out = []
    for k in range(most):
        r, c = divmod(k, cw // tile)
        out.append(_nan(1))  # the tile's class token
        if k < (ch // tile) * (cw // tile):
            out.append(_back(cells, _then(IDENTITY, nw / w, -c * tile, nh / h, -r * tile), image_size))
        else:
            out.append(_nan(side * side))  # a padding tile
    return np.concatenate(out)


def _variants(name: str, fn) -> dict[str, Callable]:
    return {name: fn, f"{name}Pil": fn, f"{name}Fast": fn}


# The image processor's class name -> how its images become tokens.
FAMILIES: dict[str, Callable[..., np.ndarray]] = {
    **_variants("CLIPImageProcessor", single_grid), **_variants("LlavaImageProcessor", single_grid),
    **_variants("SiglipImageProcessor", single_grid), **_variants("Gemma3ImageProcessor", gemma3),
    **_variants("LlavaNextImageProcessor", anyres), **_variants("LlavaOnevisionImageProcessor", anyres),
    **_variants("Qwen2VLImageProcessor", qwen2_vl), **_variants("Idefics3ImageProcessor", idefics3),
    **_variants("SmolVLMImageProcessor", idefics3), **_variants("MllamaImageProcessor", mllama),
}


def image_token_regions(processor, image_size: tuple[int, int], inputs=None, *, patch_size: int | None = None
                        ) -> np.ndarray:
    """(n_image_tokens, 4): per image token of this image, in sequence order, the (x0, y0, x1, y1) of the original
    image (`image_size` = (width, height)) it covers; NaN rows for tokens covering no pixel."""
    ip = getattr(processor, "image_processor", None)
    name = type(ip).__name__
    fn = FAMILIES.get(name)
    if fn is None:
        raise EntryError(f"{type(processor).__name__}: image processor {name} is not one whose image geometry "
                         f"mmtests knows (known: {', '.join(sorted(k for k in FAMILIES if not k.endswith(('Pil', 'Fast'))))}"
                         "); add a function for it to mmtests.adapters.geometry.FAMILIES, proved by a marker test "
                         "in tests/test_geometry.py")
    return fn(processor, tuple(int(v) for v in image_size), inputs if inputs is not None else {},
              patch_size=patch_size)


def centres_inside(regions: np.ndarray, box) -> np.ndarray:
    """Per token: its region's centre lies inside the box (x0, y0, x1, y1); False for tokens without a region."""
    x0, y0, x1, y1 = box
    cx, cy = (regions[:, 0] + regions[:, 2]) / 2, (regions[:, 1] + regions[:, 3]) / 2
    with np.errstate(invalid="ignore"):
        return (cx >= x0) & (cx < x1) & (cy >= y0) & (cy < y1)
