"""The shapes world as photo-like JPEGs: each scene at its own size, 224-512 pixels a side, stored as JPEG bytes.

The 64-pixel PNG scenes cost almost nothing to decode, so they cannot show what an input pipeline costs on real
data. Here every scene is upscaled (bicubic) to a size drawn from its seed, given a light sensor-like grain (a
smooth upscaled picture would compress, and so decode, unrealistically cheaply) and stored as a quality-90
baseline JPEG in a `datasets.Dataset` with an Image feature: rows decode lazily from their bytes, as a hub
dataset's do. Labels, positions and captions are the scenes' own; boxes are scaled with the image. About
24 KB an image (1,000 images: about 24 MB).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from .shapes_world import SPLIT_SEEDS, rescaled_scenes

# Bump when the bytes change: it names the on-disk cache (with the world's version).
JPEG_VERSION = 1
PHOTO_SIDES = (224, 512)  # each side drawn uniformly from this range (inclusive), independently
JPEG_QUALITY = 90
GRAIN = 3.0  # standard deviation, in grey levels, of the per-pixel grain (the same on the three channels)


def photo_size(split: str, index: int) -> tuple[int, int]:
    """(width, height) of row `index`'s photo: drawn from the row's seed, the same on every machine."""
    w, h = np.random.default_rng([SPLIT_SEEDS[split], index, 2]).integers(PHOTO_SIDES[0], PHOTO_SIDES[1] + 1, size=2)
    return int(w), int(h)


def photo_bytes(image: Image.Image, split: str, index: int) -> bytes:
    """One scene as JPEG bytes at its photo size (see the module docstring)."""
    w, h = photo_size(split, index)
    big = np.asarray(image.convert("RGB").resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32)
    grain = np.random.default_rng([SPLIT_SEEDS[split], index, 3]).normal(0, GRAIN, size=(h, w, 1))
    pixels = np.clip(big + grain, 0, 255).round().astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def as_jpeg_photos(ds, split: str):
    """A shapes-world split (64-pixel scenes) with every image replaced by its photo-like JPEG, boxes scaled with
    it, and `width` / `height` columns added. Row i of the split must be scene i (as `build_split` makes them)."""
    def photo(row, index):
        w, h = photo_size(split, index)
        return {"bytes": photo_bytes(row["image"], split, index), "path": None}, w, h

    return rescaled_scenes(ds, photo, "shapes world: JPEG photos")
