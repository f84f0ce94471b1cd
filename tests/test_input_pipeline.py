"""The zero-shot input pipeline (mmtests.session.encoders.embed_images, mmtests.data.pipeline): DataLoader workers
that change nothing but the speed, an image that stops decoding named by its row from inside a worker too, batches
that run out of device memory split and retried, the photo-like JPEG split, and tensor decoding (`gpu_decode`)
against the PIL path."""

import io
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, Features
from datasets import Image as ImageFeature
from PIL import Image

from mmtests.adapters import load_dual_encoder
from mmtests.config import ConfigError, DatasetSpec, load_matrix
from mmtests.data import pipeline, variants
from mmtests.data.cache import load_split
from mmtests.data.facts import SHAPES
from mmtests.data.render import build_split
from mmtests.data.sources import load_checked
from mmtests.errors import EntryError
from mmtests.session.encoders import BatchSizeWarning, DualEncoderCache, OOMRetry, embed_images

CPU = torch.device("cpu")
PHOTOS = 40  # rows of the small in-memory JPEG split


@pytest.fixture(scope="module")
def matrix():
    return load_matrix()


@pytest.fixture(scope="module")
def encoder(matrix):
    return load_dual_encoder(matrix.models["tiny-clip"], CPU)


@pytest.fixture(scope="module")
def hf_encoder(matrix):
    return load_dual_encoder(matrix.models["tiny-clip-hf"], CPU)


@pytest.fixture(scope="module")
def photos():
    """A small JPEG split built in memory, as the cached one is built."""
    return variants.as_jpeg_photos(build_split("test", PHOTOS), "test")


@pytest.fixture(scope="module")
def jpeg_split():
    """The 1,000-image JPEG split the throughput benchmark uses (cached on first use, about 7 s)."""
    return load_split("test", 1000, image_format="jpeg")


def encoded(image: Image.Image, fmt: str = "JPEG", **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------ the JPEG split

def test_jpeg_photos_are_sized_by_seed_deterministic_and_keep_the_labels(photos):
    again = variants.as_jpeg_photos(build_split("test", 4), "test")
    raw = photos.cast_column("image", ImageFeature(decode=False))
    again = again.cast_column("image", ImageFeature(decode=False))
    assert [r["bytes"] for r in raw.select(range(4))["image"]] == [r["bytes"] for r in again["image"]]
    sizes = [im.size for im in photos["image"]]
    assert sizes == [variants.photo_size("test", i) for i in range(PHOTOS)]
    assert sizes == list(zip(photos["width"], photos["height"], strict=True))
    assert all(224 <= s <= 512 for size in sizes for s in size) and len(set(sizes)) == PHOTOS
    assert all(im.format == "JPEG" for im in photos["image"])
    assert photos["shape"] == build_split("test", PHOTOS)["shape"]
    w, h = sizes[0]
    box = build_split("test", 1)["bbox"][0]
    assert photos["bbox"][0] == [round(box[0] * w / 64), round(box[1] * h / 64), round(box[2] * w / 64),
                                 round(box[3] * h / 64)]
    kilobytes = np.mean([len(r["bytes"]) for r in raw["image"]]) / 1024
    assert 10 < kilobytes < 30  # 1,000 images under 30 MB


ZOO = Path(__file__).resolve().parents[1] / "mmtests" / "zoo"
A_MODEL = f'[models.m]\nbackend = "open_clip"\nmodel = "local-dir:{ZOO / "tiny-clip" / "open_clip"}"\n'


def test_a_matrix_dataset_can_be_the_jpeg_photos(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text(A_MODEL + '[datasets.photos]\nsource = "shapes"\nsplit = "test"\nimage_format = "jpeg"\nsize = 12\n'
                    'label_column = "shape"\n')
    spec = load_matrix(path).datasets["photos"]
    assert spec.image_format == "jpeg" and spec.images_key != DatasetSpec("p", "shapes", "", "test", "shape",
                                                                          size=12).images_key
    ds = load_checked(spec).dataset
    assert len(ds) == 12 and ds[0]["image"].format == "JPEG" and ds[0]["image"].size == variants.photo_size("test", 0)


@pytest.mark.parametrize(("text", "message"), [
    ('[evaluation]\nloader_workers = -1\n', 'loader_workers = -1 must be "auto" or a whole number from 0 to 64'),
    ('[evaluation]\nloader_workers = "many"\n', "loader_workers = 'many' must be \"auto\""),
    ('[evaluation]\nloader_workers = true\n', "loader_workers = True must be"),
    ('[evaluation]\nloader_workers = 2.5\n', "loader_workers = 2.5 must be"),
    ('[evaluation]\ngpu_decode = "yes"\n', "[evaluation]: gpu_decode = 'yes' must be true or false"),
    ('[evaluation]\nloader_worker = 2\n', "[evaluation]: unknown key 'loader_worker' (did you mean 'loader_workers'?)"),
    ('[[evaluation]]\ngpu_decode = true\n', "[evaluation] must be one table of settings"),
    ('[datasets.d]\nsource = "shapes"\nimage_format = "webp"\nlabel_column = "shape"\n',
     "[datasets.d]: image_format = 'webp' must be one of 'png', 'jpeg'"),
    ('[datasets.d]\nsource = "shapes"\nimage_format = "jpeg"\nimage_sizes = [[96, 96]]\nlabel_column = "shape"\n',
     "[datasets.d]: image_sizes does not apply with image_format = 'jpeg'"),
    ('[datasets.d]\nsource = "hf"\npath = "x/y"\nimage_format = "jpeg"\nlabel_column = "label"\n',
     "[datasets.d]: image_format applies to the shapes world only"),
])
def test_input_pipeline_settings_are_checked(tmp_path, text, message):
    path = tmp_path / "m.toml"
    path.write_text(A_MODEL + text)
    with pytest.raises(ConfigError) as err:
        load_matrix(path)
    assert message in str(err.value)


def test_input_pipeline_settings_reach_the_encoder_cache(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text(A_MODEL + '[evaluation]\nloader_workers = 3\ngpu_decode = true\n')
    encoders = DualEncoderCache(load_matrix(path), CPU)
    assert (encoders.loader_workers, encoders.gpu_decode) == (3, True)
    default = load_matrix().evaluation
    assert (default.loader_workers, default.gpu_decode) == (None, False)
    assert pipeline.resolve_workers(None, CPU) == 0 and pipeline.resolve_workers(2, CPU) == 2
    assert 1 <= pipeline.resolve_workers(None, torch.device("cuda")) <= pipeline.MAX_AUTO_WORKERS


# ------------------------------------------------------------------------------------------ workers

def test_embeddings_are_the_same_whatever_the_number_of_workers(encoder, photos):
    """Same order, bit for bit on CPU: workers only decode and preprocess, the batches are the same."""
    reference = embed_images(encoder, photos, "image", batch_size=16, workers=0)
    assert reference.shape == (PHOTOS, 128)
    for workers in (1, 2):
        assert torch.equal(embed_images(encoder, photos, "image", batch_size=16, workers=workers), reference)
    # and the same as embedding image by image, in dataset order
    one = torch.cat([encoder.encode_image(encoder.preprocess([photos[i]["image"]]), normalize=True) for i in (0, 17, 39)])
    torch.testing.assert_close(reference[[0, 17, 39]], one.detach(), rtol=0, atol=1e-6)


def _with_bad_image(photos, row: int) -> Dataset:
    """The photos with row `row`'s bytes replaced by bytes that are not an image (changed during the run)."""
    raw = photos.cast_column("image", ImageFeature(decode=False))
    images = list(raw["image"])
    images[row] = {"bytes": b"these bytes are not an image", "path": None}
    features = Features({"image": ImageFeature(), "shape": ClassLabel(names=list(SHAPES))})
    return Dataset.from_dict({"image": images, "shape": photos["shape"]}, features=features)


@pytest.mark.parametrize("gpu_decode", [False, True], ids=["pil", "tensors"])
def test_an_image_that_stops_decoding_is_named_by_its_row_also_from_a_worker(encoder, photos, gpu_decode):
    ds = _with_bad_image(photos, 21)

    def make(rows):  # the tensor path's reading and decoding, as embed_images runs them on CUDA
        return pipeline.tensor_pixels(pipeline.encoded_images(pipeline.raw_column(ds, "image"), ds, "image", rows,
                                                              "embedding photos"),
                                      encoder.pixel_recipe(), CPU, "embedding photos", ds, "image")

    messages = []
    for workers in (0, 2):
        with pytest.raises(EntryError) as err:
            if gpu_decode:
                list(pipeline.batches(len(ds), 16, make, workers))
            else:
                embed_images(encoder, ds, "image", 16, desc="embedding photos", workers=workers)
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    assert re.fullmatch(r"embedding photos: the image of row 21 cannot be decoded \(UnidentifiedImageError: cannot "
                        r"identify image file \(its stored bytes\)\); it decoded when the dataset was loaded: were its "
                        r"files changed during the run\?", messages[0]), messages[0]
    assert "Traceback" not in messages[1] and "worker" not in messages[1]


def test_gpu_decode_on_a_cpu_is_a_clear_error(encoder, photos):
    with pytest.raises(EntryError, match=r"gpu_decode = true in \[evaluation\] needs a CUDA device, and this run is "
                                         r"on cpu; set gpu_decode = false, or run on a GPU \(--mm-device cuda\)"):
        embed_images(encoder, photos, "image", gpu_decode=True)


# ------------------------------------------------------------------------------------------ out of memory

class RunsOutOfMemory:
    """The encoder, except that a batch of more than `fits` images raises CUDA's out-of-memory error."""

    def __init__(self, encoder, fits: int):
        self.inner, self.fits, self.batches = encoder, fits, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode_image(self, pixels, normalize=False):
        self.batches.append(len(pixels))
        if len(pixels) > self.fits:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.10 GiB total)")
        return self.inner.encode_image(pixels, normalize=normalize)


def test_a_batch_out_of_memory_is_split_in_halves_and_retried(encoder, photos):
    reference = embed_images(encoder, photos, "image", batch_size=16)
    retries: list[OOMRetry] = []
    oom = RunsOutOfMemory(encoder, fits=5)
    with pytest.warns(BatchSizeWarning) as seen:
        out = embed_images(oom, photos, "image", batch_size=16, desc="embedding photos", oom_retries=retries)
    assert retries == [OOMRetry("embedding photos", 16, 8), OOMRetry("embedding photos", 8, 4)]
    assert [str(w.message) for w in seen] == [
        f"embedding photos: out of device memory at batch {n}; split in halves and retried, the rest of the dataset "
        f"in batches of at most {n // 2} (lower --mm-batch-size to avoid the retry)" for n in (16, 8)]
    assert all(w.filename == __file__ for w in seen)  # pointed at the caller of embed_images
    # 16 fails, 8 fails, then the rest in fours: the smaller batch is kept, not retried from 16 each time.
    assert oom.batches[:3] == [16, 8, 4] and set(oom.batches[3:]) == {4} and sum(oom.batches[2:]) == PHOTOS
    # On CPU the tiny CLIP gives the same embeddings in batches of 4 as of 16, bit for bit.
    assert torch.equal(out, reference)


def test_out_of_memory_at_batch_one_is_raised_as_it_came(encoder, photos):
    retries = []
    with warnings.catch_warnings(), pytest.raises(torch.OutOfMemoryError, match="CUDA out of memory"):
        warnings.simplefilter("ignore", BatchSizeWarning)
        embed_images(RunsOutOfMemory(encoder, fits=0), photos, "image", batch_size=4, oom_retries=retries)
    assert [(r.failed, r.retried) for r in retries] == [(4, 2), (2, 1)]


def test_the_encoder_cache_records_its_retries(matrix, monkeypatch):
    encoders = DualEncoderCache(matrix.narrowed(["tiny-clip"], ["shapes-test"]), CPU, batch_size=512)
    inner = encoders.encoder("tiny-clip")
    monkeypatch.setattr(encoders, "encoder", lambda model: RunsOutOfMemory(inner, fits=300))
    with pytest.warns(BatchSizeWarning, match="embedding shapes-test with tiny-clip: out of device memory at batch 512"):
        encoders.image_features("tiny-clip", "shapes-test")
    assert encoders.oom_retries == [OOMRetry("embedding shapes-test with tiny-clip", 512, 256)]


# ------------------------------------------------------------------------------------------ tensor decoding

def test_pixel_recipes_are_read_from_both_formats(encoder, hf_encoder):
    oc, hf = encoder.pixel_recipe(), hf_encoder.pixel_recipe()
    assert (oc.resize, oc.crop, oc.crop_rounding, oc.interpolation) == ((64,), (64, 64), "round", "bicubic")
    assert (hf.resize, hf.crop, hf.crop_rounding, hf.interpolation) == ((64,), (64, 64), "floor", "bicubic")
    assert oc.mean == hf.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    assert oc.std == hf.std == pytest.approx((0.26862954, 0.26130258, 0.27577711))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_datasets_applies_it(encoder, orientation):
    pixels = np.random.default_rng(orientation).integers(0, 256, size=(40, 72, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[pipeline.EXIF_ORIENTATION] = orientation
    data = encoded(image, quality=100, exif=exif.tobytes())
    ds = Dataset.from_dict({"image": [{"bytes": data, "path": None}]}, features=Features({"image": ImageFeature()}))
    expected = np.asarray(ds[0]["image"].convert("RGB"))  # datasets turns it by its EXIF orientation
    [item] = pipeline.encoded_images(pipeline.raw_column(ds, "image"), ds, "image", range(1), "x")
    assert item.orientation == orientation
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import decode_jpeg
        turned = pipeline._oriented(decode_jpeg(item.data), orientation).permute(1, 2, 0).numpy()
    assert turned.shape == expected.shape and np.array_equal(turned, expected)


def test_tensor_decoding_takes_other_formats_through_pil(encoder):
    """A PNG (not JPEG) in a batch: decoded by PIL in the worker, then the same tensor resize as the JPEGs."""
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, size=(90, 130, 3), dtype=np.uint8))
    ds = Dataset.from_dict({"image": [{"bytes": encoded(image, "PNG"), "path": None},
                                      {"bytes": encoded(image, quality=95), "path": None}]},
                           features=Features({"image": ImageFeature()}))
    items = pipeline.encoded_images(pipeline.raw_column(ds, "image"), ds, "image", range(2), "x")
    assert items[0].data is None and items[0].pixels.shape == (3, 90, 130) and items[1].data is not None
    pixels = pipeline.tensor_pixels(items, encoder.pixel_recipe(), CPU)
    reference = encoder.preprocess(ds["image"])
    assert pixels.shape == reference.shape == (2, 3, 64, 64)
    # one grey level is 1 / 255 / std, about 0.015 here: at most one level apart, almost all values equal
    assert (pixels - reference).abs().max() < 0.016 and ((pixels - reference).abs() > 1e-4).float().mean() < 0.01


def _agreement(encoder, ds, rows: int = 1000, batch: int = 100):
    """Per image the cosine between the PIL path's and the tensor path's embeddings, and both top-1 predictions."""
    raw, recipe = pipeline.raw_column(ds, "image"), encoder.pixel_recipe()
    classifier = encoder.text_classifier(list(SHAPES), ["a photo of a big {}."])
    cos, top1 = [], ([], [])
    with torch.no_grad():
        for start in range(0, rows, batch):
            span = range(start, min(rows, start + batch))
            pil = encoder.encode_image(encoder.preprocess(pipeline.decoded_images(ds, "image", span, "x")), normalize=True)
            tensors = encoder.encode_image(pipeline.tensor_pixels(pipeline.encoded_images(raw, ds, "image", span, "x"),
                                                                  recipe, encoder.device), normalize=True)
            cos.append((pil.float() * tensors.float()).sum(1).cpu())
            top1[0].append((pil.float() @ classifier).argmax(1).cpu())
            top1[1].append((tensors.float() @ classifier).argmax(1).cpu())
    return torch.cat(cos), torch.cat(top1[0]), torch.cat(top1[1])


@pytest.mark.parametrize(("model", "rows"), [("tiny-clip", 1000), ("tiny-clip-hf", 250)])
def test_tensor_decoding_agrees_with_the_pil_path_on_cpu(matrix, jpeg_split, model, rows):
    """Measured on the 1,000 JPEG photos (CPU, float32; libjpeg-turbo decodes both paths to the same pixels, the
    difference is the resize: PIL's fixed-point arithmetic against torch's float, 0.15% (open_clip) and 0.24%
    (transformers, which crops at the other pixel on odd margins) of the values a grey level apart, none more):
    smallest cosine 0.999989 (tiny-clip) and 0.999984 (tiny-clip-hf), top-1 equal on all 1,000 images for both.
    Bounds below: 10x the measured cosine gap, at most 2 predictions in 1,000 different. The HF format is checked
    on the first 250 images (its resize and normalise are the same arithmetic; its crop is what differs)."""
    encoder = load_dual_encoder(matrix.models[model], CPU)
    cos, pil, tensors = _agreement(encoder, jpeg_split, rows)
    assert cos.min() >= 0.9998
    assert (pil != tensors).sum() <= 2 * rows / 1000


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; none is visible here")
def test_gpu_decoding_agrees_with_the_pil_path_on_cuda(matrix, jpeg_split):
    """nvJPEG's decoder and the GPU's float16 forward (autocast, as the suites run) add to the CPU differences;
    not measured yet in this project (no GPU where it was written): bounds twice as loose as the CPU test's,
    plus the float16 forward's own spread (the README's gates allow a cosine of .9998 for half precision)."""
    cuda = torch.device("cuda")
    encoder = load_dual_encoder(matrix.models["tiny-clip"], cuda)
    with encoder.autocast():
        cos, pil, tensors = _agreement(encoder, jpeg_split)
    print(f"gpu decode vs PIL on CUDA: smallest cosine {cos.min():.6f}, top-1 different on "
          f"{int((pil != tensors).sum())} of {len(cos)}")
    assert cos.min() >= 0.999 and (pil != tensors).sum() <= 4
    embedded = embed_images(encoder, jpeg_split, "image", 256, gpu_decode=True, workers=2)
    reference = embed_images(encoder, jpeg_split, "image", 256, workers=2)
    assert embedded.shape == reference.shape and (embedded * reference).sum(1).min() >= 0.999


def test_pinned_batches_and_non_blocking_copies_are_asked_for_on_cuda_only(encoder, photos, monkeypatch):
    seen = {}
    real = pipeline.batches

    def spy(rows, batch_size, make, workers=0, pin_memory=False):
        seen.update(workers=workers, pin_memory=pin_memory)
        return real(rows, batch_size, make, workers, pin_memory)

    monkeypatch.setattr(pipeline, "batches", spy)
    embed_images(encoder, photos, "image", 16)
    assert seen == {"workers": 0, "pin_memory": False}
