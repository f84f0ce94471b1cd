"""Images as datasets hold them: every PIL mode a dataset can store (and a few it cannot), animations, EXIF
orientations 1-8, tiny and extreme sizes go through the one RGB rule (`mmtests.data.images.to_rgb`), and both
formats of the tiny CLIP (open_clip and Hugging Face), the tensor-decoding path and the tiny LLaVA get the same
pixels from the same file. Every case is built here, in code, from one shapes-world scene."""

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, Features
from datasets import Image as ImageFeature
from PIL import Image, ImageOps

from mmtests.adapters import load_dual_encoder
from mmtests.config import DatasetSpec, load_matrix
from mmtests.data import pipeline
from mmtests.data.facts import SHAPES
from mmtests.data.images import ALPHA, FRAMES, WIDE, to_rgb
from mmtests.data.render import _mask, render_scene
from mmtests.data.sources import load_checked
from mmtests.errors import DataWarning, EntryError
from mmtests.session.encoders import DualEncoderCache, embed_images

CPU = torch.device("cpu")
ZOO = Path(__file__).resolve().parents[1] / "mmtests" / "zoo"

_pixels, _objects, _ = render_scene(3, "test")
SCENE = Image.fromarray(_pixels)  # 64 x 64 RGB
RGB = np.asarray(SCENE)
INSIDE = _mask(_objects[0]) > 0.5  # the main object: opaque where alpha is used, transparent around it
ALPHA_MASK = Image.fromarray(INSIDE.astype(np.uint8) * 255)
GREY = np.asarray(SCENE.convert("L"))


def saved(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def grey3(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[..., None], 3, axis=2)


def on_white(rgb: np.ndarray, opaque: np.ndarray) -> np.ndarray:
    out = rgb.copy()
    out[~opaque] = 255
    return out


def opened(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


@dataclass(frozen=True)
class Case:
    make: Callable[[], bytes | Image.Image]  # file bytes (a dataset can hold it) or an image in memory only
    kinds: tuple[str, ...]  # what the rule says it changed
    expected: Callable[[], np.ndarray]  # the RGB pixels every model must get


def _with_alpha(mode: str) -> Image.Image:
    image = SCENE.convert(mode)
    image.putalpha(ALPHA_MASK)
    return image


def _palette_with_transparency() -> bytes:
    p = SCENE.convert("P")
    return saved(p, "PNG", transparency=p.getpixel((0, 0)))


def _palette_expected() -> np.ndarray:
    p = SCENE.convert("P")
    index = np.asarray(p)
    return on_white(np.asarray(p.convert("RGB")), index != index[0, 0])


def _colour_key_expected() -> np.ndarray:
    return on_white(RGB, (RGB != RGB[0, 0]).any(axis=2))


def _sixteen(mode: str, values: np.ndarray | None = None) -> Image.Image:
    """The scene's grey levels times 257 (or `values`) as a 16-bit image of `mode`, byte order included."""
    values = GREY.astype(np.uint32) * 257 if values is None else values
    dtype = {"I;16B": ">u2", "I;16L": "<u2"}.get(mode, "=u2")
    return Image.frombytes(mode, (values.shape[1], values.shape[0]), values.astype(dtype).tobytes())


BLACK_WHITE = np.where(INSIDE, 65535, 0).astype(np.uint32)
SIGNED = GREY.astype(np.int32) * 1000 - 50000  # outside every usual range: stretched from its minimum to its maximum
NAN = np.where(INSIDE, np.nan, GREY).astype(np.float32)


def _stretched(values: np.ndarray) -> np.ndarray:
    lo, hi = values.min(), values.max()
    return grey3(np.floor((values - lo) * 255.0 / (hi - lo) + 0.5).astype(np.uint8))


def _frames() -> list[Image.Image]:
    return [SCENE, ImageOps.invert(SCENE), SCENE.rotate(90)]


def _animated(fmt: str, **kw) -> bytes:
    first, *rest = _frames()
    return saved(first, fmt, save_all=True, append_images=rest, **kw)


def _gif_first_frame() -> np.ndarray:
    with opened(_animated("GIF")) as gif:
        return np.asarray(gif.convert("RGB"))


def _exif_jpeg(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[pipeline.EXIF_ORIENTATION] = orientation
    return saved(SCENE.crop((0, 0, 64, 40)), "JPEG", quality=100, exif=exif.tobytes())


def _exif_expected(orientation: int) -> np.ndarray:
    return np.asarray(ImageOps.exif_transpose(opened(_exif_jpeg(orientation))).convert("RGB"))


def _noise(width: int, height: int) -> np.ndarray:
    return np.random.default_rng(width * 7 + height).integers(0, 256, (height, width, 3), dtype=np.uint8)


CASES: dict[str, Case] = {
    # 8-bit colour and grey: PIL's own conversion, nothing noted
    "RGB": Case(lambda: saved(SCENE, "PNG"), (), lambda: RGB),
    "1": Case(lambda: saved(SCENE.convert("1"), "PNG"), (), lambda: np.asarray(SCENE.convert("1").convert("RGB"))),
    "L": Case(lambda: saved(SCENE.convert("L"), "PNG"), (), lambda: grey3(GREY)),
    "P": Case(lambda: saved(SCENE.convert("P"), "PNG"), (), lambda: np.asarray(SCENE.convert("P").convert("RGB"))),
    "CMYK-tiff": Case(lambda: saved(SCENE.convert("CMYK"), "TIFF"), (), lambda: RGB),
    "CMYK-jpeg": Case(lambda: saved(SCENE.convert("CMYK"), "JPEG", quality=100),
                      (), lambda: np.asarray(opened(saved(SCENE.convert("CMYK"), "JPEG", quality=100)).convert("RGB"))),
    "YCbCr": Case(lambda: saved(SCENE.convert("YCbCr"), "TIFF"), (), lambda: np.asarray(SCENE.convert("YCbCr").convert("RGB"))),
    "LAB": Case(lambda: saved(SCENE.convert("LAB"), "TIFF"), (), lambda: np.asarray(SCENE.convert("LAB").convert("RGB"))),
    "HSV": Case(lambda: SCENE.convert("HSV"), (), lambda: np.asarray(SCENE.convert("HSV").convert("RGB"))),
    "RGBA-opaque": Case(lambda: saved(SCENE.convert("RGBA"), "PNG"), (), lambda: RGB),
    # alpha: composited on white
    "RGBA": Case(lambda: saved(_with_alpha("RGBA"), "PNG"), (ALPHA,), lambda: on_white(RGB, INSIDE)),
    "LA": Case(lambda: saved(_with_alpha("LA"), "PNG"), (ALPHA,), lambda: on_white(grey3(GREY), INSIDE)),
    "PA": Case(lambda: saved(_with_alpha("P"), "TIFF"), (ALPHA,),
               lambda: on_white(np.asarray(SCENE.convert("P").convert("RGB")), INSIDE)),
    # premultiplied alpha (in memory only): the alpha here is 0 or 255, so nothing is lost to premultiplying
    "RGBa": Case(lambda: _with_alpha("RGBA").convert("RGBa"), (ALPHA,), lambda: on_white(RGB, INSIDE)),
    "La": Case(lambda: _with_alpha("LA").convert("La"), (ALPHA,), lambda: on_white(grey3(GREY), INSIDE)),
    "P-transparency": Case(_palette_with_transparency, (ALPHA,), _palette_expected),
    "RGB-colour-key": Case(lambda: saved(SCENE, "PNG", transparency=tuple(int(v) for v in RGB[0, 0])), (ALPHA,),
                           _colour_key_expected),
    # 16-bit, 32-bit integer and float grey: scaled by the mode's range, or the narrowest usual range of the values
    "I;16": Case(lambda: saved(_sixteen("I;16"), "PNG"), (WIDE,), lambda: grey3(GREY)),
    "I;16B": Case(lambda: saved(_sixteen("I;16B"), "TIFF"), (WIDE,), lambda: grey3(GREY)),
    "I;16L": Case(lambda: saved(_sixteen("I;16L"), "TIFF"), (WIDE,), lambda: grey3(GREY)),
    "I;16N": Case(lambda: _sixteen("I;16N"), (WIDE,), lambda: grey3(GREY)),
    "I;16-black-white": Case(lambda: saved(_sixteen("I;16", BLACK_WHITE), "PNG"), (WIDE,),
                             lambda: grey3(np.where(INSIDE, 255, 0).astype(np.uint8))),
    "I-8bit-values": Case(lambda: saved(Image.fromarray(GREY.astype(np.int32)), "TIFF"), (), lambda: grey3(GREY)),
    "I-16bit-values": Case(lambda: saved(Image.fromarray(GREY.astype(np.int32) * 257), "TIFF"), (WIDE,),
                           lambda: grey3(GREY)),
    "I-signed": Case(lambda: saved(Image.fromarray(SIGNED), "TIFF"), (WIDE,), lambda: _stretched(SIGNED)),
    "F-unit": Case(lambda: saved(Image.fromarray((GREY / 255).astype(np.float32)), "TIFF"), (WIDE,),
                   lambda: grey3(GREY)),
    "F-8bit-values": Case(lambda: saved(Image.fromarray(GREY.astype(np.float32)), "TIFF"), (), lambda: grey3(GREY)),
    "F-nan": Case(lambda: saved(Image.fromarray(NAN), "TIFF"), (WIDE,), lambda: grey3(np.where(INSIDE, 0, GREY))),
    # several frames: the first
    "GIF-animated": Case(lambda: _animated("GIF"), (FRAMES,), _gif_first_frame),
    "WebP-animated": Case(lambda: _animated("WEBP", lossless=True), (FRAMES,), lambda: RGB),
    "APNG": Case(lambda: _animated("PNG"), (FRAMES,), lambda: RGB),
    "TIFF-pages": Case(lambda: _animated("TIFF"), (FRAMES,), lambda: RGB),
    # EXIF orientations: applied, once
    **{f"EXIF-{o}": Case(lambda o=o: _exif_jpeg(o), (), lambda o=o: _exif_expected(o)) for o in range(1, 9)},
    "EXIF-6-PNG": Case(lambda: saved(SCENE.crop((0, 0, 64, 40)), "PNG", exif=_exif_tag(6)), (),
                       lambda: np.asarray(SCENE.crop((0, 0, 64, 40)).transpose(Image.Transpose.ROTATE_270))),
    # sizes: kept; each model's own resize and crop take them
    **{f"{w}x{h}": Case(lambda w=w, h=h: saved(Image.fromarray(_noise(w, h)), "PNG"), (), lambda w=w, h=h: _noise(w, h))
       for w, h in ((1, 1), (1, 4000), (4000, 1), (3, 1), (2, 3))},
}


def _exif_tag(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[pipeline.EXIF_ORIENTATION] = orientation
    return exif.tobytes()


def image_of(case: Case) -> Image.Image:
    made = case.make()
    return opened(made) if isinstance(made, bytes) else made


STORED = [name for name, case in CASES.items() if isinstance(case.make(), bytes)]


# ------------------------------------------------------------------------------------------ (a) the rule itself

@pytest.mark.parametrize("name", CASES)
def test_every_mode_becomes_the_documented_rgb_pixels_deterministically(name):
    case = CASES[name]
    first, note = to_rgb(image_of(case))
    again, note_again = to_rgb(image_of(case))
    expected = case.expected()
    assert first.mode == "RGB" and np.asarray(first).shape == expected.shape
    assert np.array_equal(np.asarray(first), expected)
    assert np.array_equal(np.asarray(first), np.asarray(again)) and note == note_again
    assert (note.kinds if note else ()) == case.kinds
    assert to_rgb(first) == (first, None)  # converting the converted: nothing more to do


def test_two_different_16_bit_images_stay_different_and_are_not_white():
    dark, bright = (to_rgb(_sixteen("I;16", GREY.astype(np.uint32) * k))[0] for k in (100, 257))
    assert np.asarray(dark).max() < 255 and not np.array_equal(np.asarray(dark), np.asarray(bright))
    saturated = np.asarray(_sixteen("I;16", GREY.astype(np.uint32) * 100 + 300).convert("RGB"))
    assert saturated.min() == 255  # PIL's own conversion, the issue: every such image is the same white


def test_datasets_and_the_tensor_path_agree_with_the_rule_on_every_stored_case():
    """What `datasets` decodes (EXIF applied by it), converted, and what tensor decoding (`gpu_decode`, here on CPU
    tensors: JPEGs by torchvision, others through PIL) starts from, are the rule's pixels, for every stored case."""
    ds = Dataset.from_dict({"image": [{"bytes": CASES[n].make(), "path": None} for n in STORED]},
                           features=Features({"image": ImageFeature()}))
    converted = pipeline.decoded_images(ds, "image", range(len(ds)), "x")
    items = pipeline.encoded_images(pipeline.raw_column(ds, "image"), ds, "image", range(len(ds)), "x")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import decode_jpeg
        tensor = [pipeline._oriented(decode_jpeg(im.data), im.orientation) if im.data is not None else im.pixels
                  for im in items]
    for name, image, pixels in zip(STORED, converted, tensor, strict=True):
        expected = CASES[name].expected()
        assert np.array_equal(np.asarray(image), expected), name
        assert np.array_equal(pixels.permute(1, 2, 0).numpy(), expected), name
    # grey and RGB JPEGs are decoded as tensors; a CMYK JPEG and every other format go through PIL and the rule
    assert [n for n, im in zip(STORED, items, strict=True) if im.data is not None] == [f"EXIF-{o}" for o in range(1, 9)]


# ------------------------------------------------------------------------------------------ (b) the same pixels everywhere

@pytest.fixture(scope="module")
def encoders():
    matrix = load_matrix()
    return {name: load_dual_encoder(matrix.models[name], CPU) for name in ("tiny-clip", "tiny-clip-hf")}


def _received(encoder, ds) -> tuple[list[np.ndarray], torch.Tensor]:
    """The images `embed_images` hands the encoder's own preprocessing, and the embeddings."""
    seen, real = [], encoder.preprocess

    def spy(images):
        seen.extend(np.asarray(im) for im in images)
        assert all(im.mode == "RGB" for im in images)
        return real(images)

    encoder.preprocess = spy
    try:
        return seen, embed_images(encoder, ds, "image", batch_size=64)
    finally:
        del encoder.preprocess


@dataclass(frozen=True)
class Received:
    """What one backend got from `embed_images` for the stored cases: the images handed to its own preprocessing,
    the embeddings and the top-1 shape; the same for each case's expected RGB saved as an RGB PNG (`reference_*`)."""

    images: list[np.ndarray]
    embeddings: torch.Tensor
    top1: torch.Tensor
    reference_images: list[np.ndarray]
    reference_embeddings: torch.Tensor
    reference_top1: torch.Tensor


@pytest.fixture(scope="module")
def received(encoders) -> dict[str, Received]:
    files = Dataset.from_dict({"image": [{"bytes": CASES[n].make(), "path": None} for n in STORED]},
                              features=Features({"image": ImageFeature()}))
    reference = Dataset.from_dict({"image": [{"bytes": saved(Image.fromarray(CASES[n].expected()), "PNG"), "path": None}
                                             for n in STORED]}, features=Features({"image": ImageFeature()}))
    out = {}
    for name, encoder in encoders.items():
        classifier = encoder.text_classifier(list(SHAPES), ["a photo of a big {}."])
        (seen, emb), (ref_seen, ref) = _received(encoder, files), _received(encoder, reference)
        out[name] = Received(seen, emb, (emb @ classifier).argmax(-1), ref_seen, ref, (ref @ classifier).argmax(-1))
    return out


@pytest.mark.parametrize("name", STORED)
def test_both_formats_of_the_tiny_clip_get_the_same_pixels_from_the_same_file(received, name):
    row = STORED.index(name)
    oc, hf = received["tiny-clip"], received["tiny-clip-hf"]
    assert np.array_equal(oc.images[row], hf.images[row])  # the same pixels, before either backend's preprocessing
    assert np.array_equal(oc.images[row], oc.reference_images[row])  # and they are the rule's RGB
    # so each backend embeds the file exactly as its RGB reference, and the two backends' predictions agree on the
    # file wherever they agree on the reference
    assert torch.equal(oc.embeddings[row], oc.reference_embeddings[row])
    assert torch.equal(hf.embeddings[row], hf.reference_embeddings[row])
    if oc.reference_top1[row] == hf.reference_top1[row]:
        assert oc.top1[row] == hf.top1[row]


def test_the_tiny_llava_gets_the_rule_pixels_too():
    from mmtests.adapters.llava import VisionLanguageModel

    vlm = VisionLanguageModel(str(ZOO / "tiny-llava"), CPU, entry="vlm")
    for name in ("RGBA", "I;16", "GIF-animated", "P-transparency", "F-unit"):
        mine = vlm._inputs([image_of(CASES[name])], [vlm.prompt("what colour is it?")])["pixel_values"]
        reference = vlm._inputs([Image.fromarray(CASES[name].expected())], [vlm.prompt("what colour is it?")])
        assert torch.equal(mine, reference["pixel_values"]), name


# ------------------------------------------------------------------------------------------ through the dataset loader

def _imagefolder(root: Path) -> Path:
    """Class folders of RGBA, I;16, palette-with-transparency, animated and plain RGB files."""
    files = {"circle/rgba.png": "RGBA", "circle/deep.png": "I;16", "circle/plain.png": "RGB",
             "square/anim.gif": "GIF-animated", "square/keyed.png": "P-transparency", "square/plain.png": "RGB"}
    for path, case in files.items():
        (root / "test" / path).parent.mkdir(parents=True, exist_ok=True)
        (root / "test" / path).write_bytes(CASES[case].make())
    return root


def test_an_imagefolder_of_mixed_modes_is_converted_counted_and_named_once(tmp_path):
    spec = DatasetSpec("pets", "imagefolder", str(_imagefolder(tmp_path)), "test", "label")
    with pytest.warns(DataWarning, match=r"\[datasets.pets\]: 4 of 6 images of imagefolder .* were converted to RGB "
                                         r"by mmtests' one rule before any model saw them \(alpha composited on white: "
                                         r"2, 16-bit or float values scaled to 8 bits: 1, first frame of several: 1\): "
                                         r"row \d \(.*\): .*; store the images as 8-bit RGB") as said:
        loaded = load_checked(spec)
    assert len([w for w in said if issubclass(w.category, DataWarning)]) == 1
    assert len(loaded.dataset) == 6 and loaded.skipped == ()
    named = {Path(c.file).name: str(c.note) for c in loaded.converted}
    assert named == {"rgba.png": ALPHA, "deep.png": "I;16 scaled from 0..65535 (/257)", "anim.gif": "first of 3 frames",
                     "keyed.png": ALPHA}


MATRIX = """
[models.oc]
backend = "open_clip"
model = "local-dir:{zoo}/tiny-clip/open_clip"

[models.hf]
backend = "hf_clip"
model = "{zoo}/tiny-clip/hf"

[datasets.pets]
source = "parquet"
path = "{path}"
split = "test"
label_column = "label"
"""


def test_a_parquet_of_rgba_and_16_bit_images_embeds_the_same_in_both_formats(tmp_path):
    """End to end through the loader and the session cache: two different I;16 images stay different (not both
    white), an RGBA image is the same to both backends, and the conversions are listed for the report."""
    names = ["RGBA", "I;16", "I;16-black-white", "RGB"]
    Dataset.from_dict({"image": [{"bytes": CASES[n].make(), "path": f"{n}.img"} for n in names], "label": [0, 1, 1, 0]},
                      features=Features({"image": ImageFeature(), "label": ClassLabel(names=["circle", "square"])})
                      ).to_parquet(str(tmp_path / "p.parquet"))
    (tmp_path / "m.toml").write_text(MATRIX.format(zoo=ZOO, path=tmp_path / "p.parquet"))
    cache = DualEncoderCache(load_matrix(tmp_path / "m.toml"), CPU)
    with pytest.warns(DataWarning, match="3 of 4 images"):
        oc = cache.image_features("oc", "pets").features
    hf = cache.image_features("hf", "pets").features
    assert not torch.allclose(oc[1], oc[2], atol=1e-3) and not torch.allclose(hf[1], hf[2], atol=1e-3)
    for model, features in (("oc", oc), ("hf", hf)):
        encoder = cache.encoder(model)
        with torch.no_grad():
            pixels = encoder.preprocess([Image.fromarray(CASES[n].expected()) for n in names])
            assert torch.equal(features, encoder.encode_image(pixels, normalize=True)), model
    assert cache.converted_images("pets") == [f"row {i} ({n}.img): {s}" for i, (n, s) in enumerate(
        zip(names[:3], (ALPHA, "I;16 scaled from 0..65535 (/257)", "I;16 scaled from 0..65535 (/257)"), strict=True))]
    assert cache.skipped_images("pets") == []


def test_the_shapes_world_is_rgb_and_nothing_is_converted():
    loaded = load_checked(DatasetSpec("s", "shapes", "", "test", "shape"))
    assert loaded.converted == () and {im.mode for im in loaded.dataset.select(range(50))["image"]} == {"RGB"}


def test_an_image_the_preprocessing_cannot_take_is_named_by_its_row(encoders):
    """No size of the cases above fails the tiny CLIP's formats; a model whose preprocessing refuses one (here: a
    stand-in refusing images under 2 pixels a side) fails with one message naming the row and its size."""
    encoder = encoders["tiny-clip"]
    real = encoder.preprocess

    def refusing(images):
        if any(min(im.size) < 2 for im in images):
            raise ValueError("image too small to crop")
        return real(images)

    ds = Dataset.from_dict({"image": [{"bytes": CASES[n].make(), "path": None} for n in ("RGB", "RGBA", "4000x1")]},
                           features=Features({"image": ImageFeature()}))
    encoder.preprocess = refusing
    try:
        with pytest.raises(EntryError, match=r"^x: the image of row 2 \(4000x1 pixels\) cannot be taken by the model's "
                                             r"own preprocessing \(ValueError: image too small to crop\); resize or pad"):
            embed_images(encoder, ds, "image", desc="x")
    finally:
        del encoder.preprocess
