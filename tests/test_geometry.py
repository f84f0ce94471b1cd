"""The image-token geometry of every family, proved on images whose pixels are known.

For each family's real processor (small sizes, both image-processor backends), a bright square is drawn on a
black image at a known place, for every image size x marker position of a small grid. The processor's
`pixel_values` are read back through the family's own token layout (LLaVA-NeXT's and OneVision's
`pack_image_features`, Idefics3's `pixel_shuffle`, Qwen2-VL's patches in merge order, Gemma 3's pooling cells,
Mllama's tiles of class token + patches): one brightness per image token. Then:
- the tokens are as many as the regions `image_token_regions` gives (and as the processor's image tokens in
  input_ids, where the text holds them);
- every token whose region holds the marker's centre (not within a pixel of the region's edge) is bright;
- every bright token's region touches the marker (grown by the resampling's reach, 1.5 model pixels).
"""

from __future__ import annotations

import functools
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import transformers as tf
from PIL import Image

from mmtests.adapters import geometry
from mmtests.errors import EntryError
from mmtests.tiny_families import vlm

TILE, PATCH = vlm.TILE, vlm.PATCH
KW = dict(image_mean=vlm.MEAN, image_std=vlm.STD)  # black -> -1, white -> +1: a pixel is bright above 0
SIZES = [(64, 64), (64, 40), (40, 64), (96, 48), (48, 96), (50, 70), (33, 81)]  # (width, height)
MARKERS = [(0.12, 0.18), (0.5, 0.5), (0.81, 0.33), (0.3, 0.8), (0.9, 0.9)]  # centre, as fractions of the image
BRIGHT = 0.5  # normalized: 3/4 of white; padding filled with the mean colour (0) is not bright
# OneVision shrinking the tile grid beyond anyres_max_N (here 1 tile: 2 x 2 tiles shrink by 2): each token is a
# bilinear mean of the 2 x 2 patches it spans, so a marker in one of them raises it above black, not to white
FAINT = {"llava-onevision-shrunk": -0.9}
REACH = 1.5  # model pixels a resampled marker may bleed beyond its edge


def ip_class(name: str, backend: str):
    return getattr(tf, name + ("Pil" if backend == "pil" else ""))


def _llava_like(processor_cls, ip):
    return processor_cls(image_processor=ip, tokenizer=vlm.tokenizer(("<image>",)), patch_size=PATCH,
                         vision_feature_select_strategy="default", num_additional_image_tokens=1)


def make(family: str, backend: str):
    """(processor, text holding the image placeholder or None, model pixels per token side, layout)."""
    if family in ("clip", "llava-pad"):
        name, extra = ("CLIPImageProcessor", {}) if family == "clip" else ("LlavaImageProcessor", {"do_pad": True})
        ip = ip_class(name, backend)(size={"shortest_edge": TILE}, crop_size={"height": TILE, "width": TILE},
                                     **extra, **KW)
        return _llava_like(tf.LlavaProcessor, ip), "<image> what", PATCH, "grid"
    if family == "llava-next":
        ip = ip_class("LlavaNextImageProcessor", backend)(size={"shortest_edge": TILE},
                                                          crop_size={"height": TILE, "width": TILE},
                                                          image_grid_pinpoints=vlm.PINPOINTS, **KW)
        return _llava_like(tf.LlavaNextProcessor, ip), "<image> what", PATCH, "next"
    if family in ("llava-onevision", "llava-onevision-shrunk"):
        ip = ip_class("LlavaOnevisionImageProcessor", backend)(size={"height": TILE, "width": TILE},
                                                               image_grid_pinpoints=vlm.PINPOINTS, **KW)
        proc = tf.LlavaOnevisionProcessor(image_processor=ip, tokenizer=vlm.tokenizer(("<image>", "<video>")),
                                          video_processor=tf.LlavaOnevisionVideoProcessor(),
                                          num_image_tokens=(TILE // PATCH) ** 2, vision_feature_select_strategy="full",
                                          vision_aspect_ratio="anyres_max_9" if family == "llava-onevision"
                                          else "anyres_max_1")
        return proc, "<image> what", PATCH, "onevision"
    if family in ("qwen2-vl", "qwen2.5-vl"):
        ip = ip_class("Qwen2VLImageProcessor", backend)(patch_size=PATCH, merge_size=2, temporal_patch_size=2,
                                                        size={"shortest_edge": 4 * PATCH * PATCH,
                                                              "longest_edge": 64 * 64}, **KW)
        cls = tf.Qwen2VLProcessor if family == "qwen2-vl" else tf.Qwen2_5_VLProcessor
        proc = cls(image_processor=ip, tokenizer=vlm.tokenizer(vlm.QWEN_SPECIALS),
                   video_processor=tf.Qwen2VLVideoProcessor())
        return proc, "<|vision_start|><|image_pad|><|vision_end|> what", 2 * PATCH, "qwen"
    if family in ("idefics3", "smolvlm"):
        base = "Idefics3" if family == "idefics3" else "SmolVLM"
        ip = ip_class(f"{base}ImageProcessor", backend)(size={"longest_edge": 2 * TILE},
                                                       max_image_size={"longest_edge": TILE},
                                                       do_image_splitting=True, **KW)
        kw = {} if family == "idefics3" else {"video_processor": tf.SmolVLMVideoProcessor()}
        proc = getattr(tf, f"{base}Processor")(image_processor=ip, tokenizer=vlm.tokenizer(vlm.IDEFICS_SPECIALS),
                                               image_seq_len=(TILE // PATCH) ** 2 // 4, **kw)
        return proc, "<image> what", 2 * PATCH, "idefics"
    if family == "paligemma":
        ip = ip_class("SiglipImageProcessor", backend)(size={"height": TILE, "width": TILE}, **KW)
        ip.image_seq_length = (TILE // PATCH) ** 2
        tok = vlm.tokenizer(("<image>",), extra_special_tokens={"image_token": "<image>"})
        return tf.PaliGemmaProcessor(image_processor=ip, tokenizer=tok), "what", PATCH, "grid"
    if family == "gemma3":
        ip = ip_class("Gemma3ImageProcessor", backend)(size={"height": TILE, "width": TILE}, do_pan_and_scan=False, **KW)
        tok = vlm.tokenizer(vlm.GEMMA_SPECIALS, extra_special_tokens={
            "image_token": "<image_soft_token>", "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>"})
        return tf.Gemma3Processor(image_processor=ip, tokenizer=tok, image_seq_length=4), "<start_of_image> what", \
            TILE // 2, "grid"
    if family == "mllama":
        ip = ip_class("MllamaImageProcessor", backend)(size={"height": TILE, "width": TILE}, max_image_tiles=4, **KW)
        return tf.MllamaProcessor(image_processor=ip, tokenizer=vlm.tokenizer(vlm.MLLAMA_SPECIALS)), None, PATCH, \
            "mllama"
    raise AssertionError(family)


FAMILIES = ["clip", "llava-pad", "llava-next", "llava-onevision", "llava-onevision-shrunk", "qwen2-vl", "qwen2.5-vl",
            "idefics3", "smolvlm", "paligemma", "gemma3", "mllama"]
PROCESSOR = functools.lru_cache(maxsize=None)(make)


def cells(pixels: torch.Tensor, side: int) -> torch.Tensor:
    """(..., 3, H, W) -> (..., side * side): the brightest value of each of side x side cells, row-major."""
    *lead, c, h, w = pixels.shape
    x = pixels.reshape(*lead, c, side, h // side, side, w // side)
    return x.amax(dim=(-5, -3, -1)).reshape(*lead, side * side)


def anyres_model(processor):
    """Just what LLaVA-NeXT's / OneVision's `pack_image_features` reads of the model: its config."""
    ip = processor.image_processor
    vision = SimpleNamespace(image_size=TILE, patch_size=PATCH)
    return SimpleNamespace(config=SimpleNamespace(vision_config=vision, image_grid_pinpoints=ip.image_grid_pinpoints))


def token_brightness(layout: str, processor, out) -> np.ndarray:
    """Per image token, in the model's order, the brightest pixel it was made from; NaN for a token of no pixel."""
    pv = out["pixel_values"].float()
    nan = torch.tensor([float("nan")])
    if layout == "grid":  # one square canvas, cells row-major
        side = math.isqrt(int(getattr(processor, "image_seq_length", 0) or 0)) or pv.shape[-1] // PATCH
        return cells(pv[0], side).numpy()
    if layout in ("next", "onevision"):
        feats = cells(pv[0], TILE // PATCH)[..., None]  # (tiles, patches, 1): base image first
        model = anyres_model(processor)
        if layout == "next":
            packed, _ = tf.LlavaNextModel.pack_image_features(model, [feats], out["image_sizes"], "default", nan)
        else:
            packed, _ = tf.LlavaOnevisionModel.pack_image_features(model, [feats], out["image_sizes"], nan,
                                                                   processor.vision_aspect_ratio)
        return packed[0][:, 0].numpy()
    if layout == "qwen":  # rows: patches in merge order; merge x merge consecutive rows make one token
        merge = processor.image_processor.merge_size
        return pv.reshape(-1, merge * merge * pv.shape[-1]).amax(-1).numpy()
    if layout == "idefics":  # tiles, then the global image; each tile's patches pixel-shuffled, 2 x 2 per token
        feats = cells(pv[0], TILE // PATCH)[..., None]
        shuffled = tf.models.idefics3.modeling_idefics3.Idefics3Connector.pixel_shuffle(None, feats, 2)
        return shuffled.amax(-1).reshape(-1).numpy()
    if layout == "mllama":  # per tile of the canvas: a class token, then the patches; padding tiles have none
        tiles = pv[0, 0]
        used = out["aspect_ratio_mask"][0, 0].bool()
        per = cells(tiles, TILE // PATCH)
        per[~used] = float("nan")
        return torch.cat([torch.full((len(tiles), 1), float("nan")), per], dim=1).reshape(-1).numpy()
    raise AssertionError(layout)


def marker_image(size, where) -> tuple[Image.Image, tuple[float, float, float, float]]:
    """A black image with a white square of 7 pixels (3 model pixels at the strongest shrink here) centred at
    `where`; its box (x0, y0, x1, y1) in original pixels."""
    w, h = size
    cx, cy = round(where[0] * w), round(where[1] * h)
    x0, y0, x1, y1 = max(cx - 3, 0), max(cy - 3, 0), min(cx + 4, w), min(cy + 4, h)
    a = np.zeros((h, w, 3), np.uint8)
    a[y0:y1, x0:x1] = 255
    return Image.fromarray(a), (x0, y0, x1, y1)


def processor_outputs(processor, text, image):
    if isinstance(processor, tf.MllamaProcessor):
        return processor.image_processor(images=[[image]], return_tensors="pt")
    if isinstance(processor, tf.Gemma3Processor):
        return processor(images=[[image]], text=[text], return_tensors="pt")
    return processor(images=[image], text=[text], return_tensors="pt")


def image_token_count(processor, out) -> int:
    ids = out["input_ids"][0]
    token = getattr(processor.tokenizer, "image_token_id", None)  # Gemma 3: the processor's is <start_of_image>
    token = token if token is not None else processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    return int((ids == token).sum())


@pytest.mark.parametrize("backend", ["torchvision", "pil"])
@pytest.mark.parametrize("family", FAMILIES)
def test_a_marker_lands_in_the_tokens_the_geometry_predicts(family, backend):
    processor, text, token_px, layout = PROCESSOR(family, backend)
    seen, bright_above = 0, FAINT.get(family, BRIGHT)
    for size in SIZES:
        for where in MARKERS:
            image, (mx0, my0, mx1, my1) = marker_image(size, where)
            out = processor_outputs(processor, text, image)
            bright = token_brightness(layout, processor, out)
            regions = geometry.image_token_regions(processor, size, out, patch_size=PATCH)
            case = f"{family}/{backend} image {size} marker at {where}"
            assert len(regions) == len(bright), f"{case}: {len(regions)} regions, {len(bright)} tokens"
            if text is not None:
                assert image_token_count(processor, out) == len(regions), case
            has = ~np.isnan(regions[:, 0])
            assert not (has & np.isnan(bright)).any(), f"{case}: a token of no pixel (a class token, a newline, a " \
                                                       "padding tile) has a region"
            # original pixels per model pixel of each token, on each axis
            sx, sy = (regions[:, 2] - regions[:, 0]) / token_px, (regions[:, 3] - regions[:, 1]) / token_px
            hit = has & (np.nan_to_num(bright, nan=-9) > bright_above)
            seen += bool(hit.any())  # a marker may be cropped away; then no token holds its centre either
            touches = ((regions[:, 0] - REACH * sx < mx1) & (regions[:, 2] + REACH * sx > mx0)
                       & (regions[:, 1] - REACH * sy < my1) & (regions[:, 3] + REACH * sy > my0))
            assert touches[hit].all(), f"{case}: bright tokens {np.flatnonzero(hit & ~touches).tolist()} " \
                                       f"cover {regions[hit & ~touches].round(1).tolist()}, not the marker"
            cx, cy = (mx0 + mx1) / 2, (my0 + my1) / 2
            core = has & (regions[:, 0] + sx < cx) & (regions[:, 2] - sx > cx) & (regions[:, 1] + sy < cy) & \
                (regions[:, 3] - sy > cy)
            assert (np.nan_to_num(bright[core], nan=-9) > bright_above).all(), \
                f"{case}: tokens {np.flatnonzero(core & ~hit).tolist()} hold the marker's centre but are dark"
    assert seen >= 0.6 * len(SIZES) * len(MARKERS), f"{family}/{backend}: the marker was seen in {seen} images only"


def band_centre(processor, size, band, axis: int) -> tuple[float, float]:
    """A white band [band) across a black image, along `axis` (0: x, 1: y): its centre in model pixels as the
    processor's pixels show it (brightness-weighted), and as the geometry maps it."""
    w, h = size
    a = np.zeros((h, w, 3), np.uint8)
    if axis == 0:
        a[:, band[0]:band[1]] = 255
    else:
        a[band[0]:band[1]] = 255
    out = processor.image_processor(images=[Image.fromarray(a)], return_tensors="pt")
    profile = ((out["pixel_values"][0].float() + 1) / 2).mean(dim=(0, 1 + axis)).numpy()
    seen = float(((np.arange(len(profile)) + 0.5) * profile).sum() / profile.sum())
    affine, _, _ = geometry._resize_pad_crop(processor.image_processor, h, w)
    scale, shift = affine[2 * axis], affine[2 * axis + 1]
    return seen, scale * (band[0] + band[1]) / 2 + shift


@pytest.mark.parametrize("backend", ["torchvision", "pil"])
def test_llava_resizes_to_whole_pixels_and_crops_at_whole_pixels(backend):
    """Sub-pixel check of LLaVA-1.5's resize + centre crop: a band's centre lands where the geometry says to a
    tenth of a model pixel, on images whose short side does not divide the long one; a continuous resize
    (scale shortest_edge / short side on both axes, crop offset (long * scale - crop) / 2) misses by up to half
    a pixel."""
    processor = PROCESSOR("clip", backend)[0]
    misses = []
    for w, h in [(101, 37), (37, 101), (90, 41), (41, 90), (77, 53)]:
        axis = 0 if w > h else 1
        long, short = max(w, h), min(w, h)
        for band in [(long // 2 - 6, long // 2 + 6), (long // 2 - 12, long // 2 - 2), (long // 2 + 1, long // 2 + 9)]:
            seen, mapped = band_centre(processor, (w, h), band, axis)
            assert abs(seen - mapped) < 0.1, f"{(w, h)} band {band}: seen at {seen:.3f}, mapped to {mapped:.3f}"
            scale = TILE / short
            continuous = scale * (band[0] + band[1]) / 2 - (long * scale - TILE) / 2
            misses.append(abs(seen - continuous))
    assert max(misses) > 0.3, misses


def test_a_processor_of_unknown_geometry_is_named_with_the_fix():
    processor = SimpleNamespace(image_processor=SimpleNamespace())
    with pytest.raises(EntryError, match="image processor SimpleNamespace .*FAMILIES"):
        geometry.image_token_regions(processor, (64, 64))
    gemma = PROCESSOR("gemma3", "torchvision")[0]
    gemma.image_processor.do_pan_and_scan = True
    try:
        with pytest.raises(EntryError, match="do_pan_and_scan"):
            geometry.image_token_regions(gemma, (64, 64))
    finally:
        gemma.image_processor.do_pan_and_scan = False
