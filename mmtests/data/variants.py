"""The shapes world's variants for evaluation: its 64-pixel scenes resized, or turned into photo-like JPEGs.

Resized (`at_sizes`): each scene resized (bicubic) to one of a few sizes, larger than a model's input and not all
square, as real data is, so that a model's resize and crop settings change the pixels it sees.

Photo-like JPEGs (`as_jpeg_photos`): the 64-pixel PNG scenes cost almost nothing to decode, so they cannot show what
an input pipeline costs on real data. Here every scene is upscaled (bicubic) to a size drawn from its seed,
224-512 pixels a side, given a light sensor-like grain (a smooth upscaled picture would compress, and so decode,
unrealistically cheaply) and stored as a quality-90 baseline JPEG in a `datasets.Dataset` with an Image feature:
rows decode lazily from their bytes, as a hub dataset's do. About 24 KB an image (1,000 images: about 24 MB).

Either way labels, positions and captions are the scenes' own, boxes are scaled with the image, and `width` /
`height` columns are added.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from .facts import IMAGE_SIZE, SPLIT_SEEDS

if TYPE_CHECKING:
    from datasets import Dataset

# Bump when the bytes change: it names the on-disk cache (with the world's version).
JPEG_VERSION = 1
PHOTO_SIDES = (224, 512)  # each side drawn uniformly from this range (inclusive), independently
JPEG_QUALITY = 90
GRAIN = 3.0  # standard deviation, in grey levels, of the per-pixel grain (the same on the three channels)


def rescaled_scenes(ds: Dataset, image_of: Callable[[dict, int], tuple[object, int, int]], desc: str) -> Dataset:
    """The split with row i's image replaced by `image_of(row, i)` = (image, width, height), every box scaled
    from the 64-pixel scene to that size, and `width` / `height` columns added."""
    from datasets import Value

    def scale(box, sx, sy):
        return [round(box[0] * sx), round(box[1] * sy), round(box[2] * sx), round(box[3] * sy)]

    def convert(row, index):
        image, w, h = image_of(row, index)
        sx, sy = w / IMAGE_SIZE, h / IMAGE_SIZE
        return {"image": image, "bbox": scale(row["bbox"], sx, sy),
                "distractors": [{**d, "bbox": scale(d["bbox"], sx, sy)} for d in row["distractors"]],
                "width": w, "height": h}

    features = ds.features.copy()
    features["width"] = features["height"] = Value("int16")
    # In memory: a map over a split read from the cache would otherwise leave a copy in the split's folder.
    return ds.map(convert, with_indices=True, features=features, desc=desc, load_from_cache_file=False,
                  keep_in_memory=True)


def at_sizes(ds: Dataset, sizes: tuple[tuple[int, int], ...]) -> Dataset:
    """The split with row i's image resized (bicubic) to sizes[i % len(sizes)] = (width, height) and every
    box scaled with it: evaluation images larger than the model's input, and not all square, as real data
    is, so that a model's resize and crop settings change the pixels it sees."""
    if not sizes:
        return ds

    def resize(row, index):
        w, h = sizes[index % len(sizes)]
        return row["image"].resize((w, h), Image.Resampling.BICUBIC), w, h

    return rescaled_scenes(ds, resize, "shapes world: resizing")


def photo_size(split: str, index: int) -> tuple[int, int]:
    """(width, height) of row `index`'s photo: drawn from the row's seed, the same on every machine."""
    w, h = np.random.default_rng([SPLIT_SEEDS[split], index, 2]).integers(PHOTO_SIDES[0], PHOTO_SIDES[1] + 1, size=2)
    return int(w), int(h)


def photo_bytes(image: Image.Image, split: str, index: int) -> bytes:
    """One scene as a photo-like JPEG's bytes at its photo size (see the module docstring)."""
    w, h = photo_size(split, index)
    big = np.asarray(image.convert("RGB").resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32)
    grain = np.random.default_rng([SPLIT_SEEDS[split], index, 3]).normal(0, GRAIN, size=(h, w, 1))
    pixels = np.clip(big + grain, 0, 255).round().astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def as_jpeg_photos(ds: Dataset, split: str) -> Dataset:
    """A shapes-world split (64-pixel scenes) with every image replaced by its photo-like JPEG, boxes scaled with
    it, and `width` / `height` columns added. Row i of the split must be scene i (as `build_split` makes them)."""
    def photo(row, index):
        w, h = photo_size(split, index)
        return {"bytes": photo_bytes(row["image"], split, index), "path": None}, w, h

    return rescaled_scenes(ds, photo, "shapes world: JPEG photos")
