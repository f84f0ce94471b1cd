"""The one conversion of a dataset's image to the RGB pixels every model is given: `to_rgb`.

Backends disagree on anything but 8-bit RGB (open_clip drops alpha and shows whatever colour transparent pixels
store; transformers composites on white; both clip 16-bit values to 255, so a 16-bit image is all white). So
every dataset image is converted here, before any backend's own preprocessing, and every backend of one model gets
the same pixels for the same file. The rules, by what the image holds:

- **8-bit colour and grey** (RGB, L, 1, P, CMYK, YCbCr, LAB, HSV): PIL's own conversion to RGB; unchanged, no note.
- **Alpha** (RGBA, LA, PA, premultiplied RGBa and La, a palette or colour key with transparency): composited on
  white, as transformers' `convert_to_rgb` (CLIP's and LLaVA's image processors) does: the convention of the
  field, and what a viewer shows on a white page. Dropping alpha instead shows the colours stored under
  transparent pixels, which nobody looked at (often black, often anything). Noted when a pixel is not opaque.
- **16-bit grey** (I;16, I;16B, I;16L, I;16N): the mode's range 0..65535 scaled to 0..255 (v / 257, rounded): 0
  and 65535 become black and white. Always noted.
- **32-bit integer and float grey** (I, F): their mode has no range, so the values are read in the narrowest
  usual range that holds them all: 0..255 as they are (8-bit data in a wide container; PIL's own conversion, no
  note); for F, 0..1 times 255 (the float-image convention of numpy, torchvision and scikit-image); 0..65535 /
  257 (16-bit data, as older Pillow opened 16-bit PNGs); anything else (negative, above 65535) stretched from its
  minimum to its maximum. A fixed range, not a per-image stretch, where one fits: a dark and a bright image stay
  dark and bright. NaN and infinities count as 0 (noted). Noted unless taken as they are (rounded).
- **Several frames** (animated GIF, WebP, PNG; multi-page TIFF): the first frame, noted. An MPO (a camera JPEG
  with a preview image) is its main picture, not noted.

EXIF orientation is applied (as `datasets` applies it when it decodes, and the tensor decoding path on JPEGs);
once applied, the tag is gone, so applying it twice turns nothing. Sizes are kept: a 1x1 or a 1x4000 image goes
to the model's own resize and crop (the tiny CLIP's formats take both); an image a model's preprocessing cannot
take is an error naming its row (`pipeline.preprocessed`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

ALPHA = "alpha composited on white"
WIDE = "16-bit or float values scaled to 8 bits"
FRAMES = "first frame of several"
KINDS = (ALPHA, WIDE, FRAMES)  # what a conversion can have changed, in the order messages count them

SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")
WHITE = (255, 255, 255, 255)
EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class Note:
    """What `to_rgb` changed in one image: the kinds (of `KINDS`) and the words for a person."""

    kinds: tuple[str, ...]
    text: str

    def __str__(self) -> str:
        return self.text


def to_rgb(image: Image.Image) -> tuple[Image.Image, Note | None]:
    """The RGB image every model is given for `image`, and what the conversion changed (None: nothing a model
    would have seen differently from PIL's own conversion). Deterministic; see the module's rules."""
    parts: list[tuple[str, str]] = []
    frames = getattr(image, "n_frames", 1)
    if frames > 1 and image.format != "MPO":
        image.seek(0)
        image = image.copy()  # that frame alone
        parts.append((FRAMES, f"first of {frames} frames"))
    if (image.getexif().get(EXIF_ORIENTATION) or 1) != 1:
        image = ImageOps.exif_transpose(image)
    if image.mode in SIXTEEN_BIT or image.mode in ("I", "F"):
        image, scaled = _wide_to_grey(image)
        if scaled:
            parts.append((WIDE, scaled))
    if image.mode in ("La", "RGBa"):  # premultiplied alpha: PIL converts it to RGB only through LA / RGBA
        image = image.convert(image.mode.upper())
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        if rgba.getchannel("A").getextrema()[0] < 255:
            parts.append((ALPHA, ALPHA))
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, WHITE), rgba)
    if image.mode != "RGB":
        image = image.convert("RGB")
    if not parts:
        return image, None
    return image, Note(tuple(k for k, _ in parts), ", ".join(text for _, text in parts))


def _wide_to_grey(image: Image.Image) -> tuple[Image.Image, str | None]:
    """A 16-bit, 32-bit integer or float grey image as 8-bit grey (L), and how it was scaled (None: as it was)."""
    values = np.asarray(image).astype(np.float64)
    odd = ~np.isfinite(values)
    values[odd] = 0
    if image.mode in SIXTEEN_BIT:
        low, high, how = 0.0, 65535.0, f"{image.mode} scaled from 0..65535 (/257)"
    else:
        lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        kind = "float" if image.mode == "F" else "32-bit integer"
        if lo >= 0 and hi <= 1 and image.mode == "F":
            low, high, how = 0.0, 1.0, "float values in 0..1 scaled by 255"
        elif lo >= 0 and hi <= 255:
            low, high, how = 0.0, 255.0, None
        elif lo >= 0 and hi <= 65535:
            low, high, how = 0.0, 65535.0, f"{kind} values in 0..65535 scaled (/257)"
        else:
            low, high, how = lo, hi, f"{kind} values {lo:g}..{hi:g} stretched to 0..255"
    if odd.any():
        how = ", ".join(filter(None, (how, f"{int(odd.sum())} NaN or infinite values taken as 0")))
    span = high - low
    grey = np.floor((values - low) * (255.0 / span) + 0.5) if span > 0 else np.zeros_like(values)
    return Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8), "L"), how
