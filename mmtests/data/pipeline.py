"""The image input pipeline of zero-shot evaluation: rows to pixel batches, in DataLoader workers.

Two ways from stored images to the pixels a dual encoder takes:

- **PIL** (the default): rows decoded as `datasets` decodes them and converted to RGB by the one rule
  (`images.to_rgb`: alpha on white, 16-bit and float values scaled, the first frame), preprocessed by the model's
  own `preprocess` (bit-identical to open_clip's or the image processor's per-image transform).
- **Tensors** (`gpu_decode`): the stored JPEG bytes decoded by TorchCodec (else `torchvision.io.decode_jpeg`) on the device
  (nvJPEG on CUDA), then the model's `PixelRecipe` (resize, centre crop, normalise) as tensor arithmetic on the
  same device. Images in other formats (and JPEGs in CMYK) are decoded by PIL in the workers, converted by the
  same rule, and join the batch as pixels.
  `tensor_pixels` is device-agnostic: on CPU tensors it is what the unit tests compare with the PIL path.

Either way the batches are made in DataLoader worker processes (`loader_workers`), in order; an image that does
not decode is an EntryError naming its row, raised in the main process with the same message whether it was
met in a worker or not.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..errors import EntryError
from .images import to_rgb

MAX_AUTO_WORKERS = 8
JPEG_MAGIC = b"\xff\xd8\xff"
EXIF_ORIENTATION = 0x0112


def resolve_workers(setting: int | None, device: torch.device) -> int:
    """DataLoader workers for `setting` (None: "auto").

    Auto is 0 on a CPU: decoding and preprocessing there compete with the model's forward for the same cores,
    and on 2 cores the tiny CLIP on the JPEG photos measured 0 workers fastest (README, "Input pipeline").
    On CUDA the model runs on the GPU and the cores are free for decoding: one worker per core this process
    may use (torch's thread count: under pytest-xdist the plugin gives each worker its share) less one for
    the main process, at most 8."""
    if setting is not None:
        return setting
    if device.type != "cuda":
        return 0
    return min(MAX_AUTO_WORKERS, max(1, torch.get_num_threads() - 1))


def undecodable(desc: str, row: int, err: BaseException) -> EntryError:
    """The one message for an image that stopped decoding during the run (it decoded when the dataset was loaded)."""
    import re

    reason = re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", "(its stored bytes)", str(err))  # not the same twice
    return EntryError(f"{desc}: the image of row {row} cannot be decoded ({err.__class__.__name__}: "
                      f"{reason[:200]}); it decoded when the dataset was loaded: were its files changed "
                      "during the run?")


def _fails(ds, row: int, column: str) -> bool:
    try:
        to_rgb(ds[row][column])
    except Exception:  # noqa: BLE001
        return True
    return False


def decoded_images(ds, column: str, rows: range, desc: str) -> list:
    """Rows' images as `datasets` decodes them, converted to RGB by the one rule (`images.to_rgb`), the pixels every
    model is given; an image that does not decode is an EntryError naming its row."""
    try:
        return [to_rgb(image)[0] for image in ds[rows.start:rows.stop][column]]
    except Exception as err:  # noqa: BLE001  (whatever PIL raises)
        row = next((i for i in rows if _fails(ds, i, column)), rows.start)
        raise undecodable(desc, row, err) from err


def preprocessed(preprocess: Callable[[list], torch.Tensor], images: list, rows: range, desc: str) -> torch.Tensor:
    """`preprocess(images)` (a model's own preprocessing of RGB images); an image it cannot take (a size its resize
    or crop refuses) is an EntryError naming its row and size, not a traceback."""
    try:
        return preprocess(images)
    except Exception as err:  # noqa: BLE001  (whatever the model's library raises)
        failed = err
    for row, image in zip(rows, images, strict=True):
        try:
            preprocess([image])
        except Exception as err:  # noqa: BLE001
            reason = " ".join(str(err).split())[:200]
            raise EntryError(f"{desc}: the image of row {row} ({image.width}x{image.height} pixels) cannot be taken by "
                             f"the model's own preprocessing ({err.__class__.__name__}: {reason}); resize or pad that "
                             "image in the dataset, or remove it") from err
    raise failed


# ------------------------------------------------------------------------------------------ tensor decoding

@dataclass(frozen=True)
class EncodedImage:
    """One row's image on its way to `tensor_pixels`: JPEG bytes (`data`, 1-D uint8, with the EXIF orientation
    `datasets` would apply) or, for other formats, the pixels PIL decoded and `to_rgb` converted (`pixels`, uint8
    3 x H x W)."""

    row: int
    data: torch.Tensor | None = None
    orientation: int = 1
    pixels: torch.Tensor | None = None


def _jpeg_header(data: bytes) -> tuple[int, str]:
    """The EXIF orientation (1 when it has none) and the PIL mode of a JPEG, read from its header without decoding
    the pixels."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return int(image.getexif().get(EXIF_ORIENTATION) or 1), image.mode
    except Exception:  # noqa: BLE001  (a header PIL cannot read: the decoder will say what is wrong)
        return 1, "RGB"


def _pil_pixels(image) -> torch.Tensor:
    """An RGB image (`decoded_images` converted it) as uint8 3 x H x W."""
    import numpy as np

    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def encoded_images(raw, ds, column: str, rows: range, desc: str) -> list[EncodedImage]:
    """Rows' stored images for `tensor_pixels`: grey and RGB JPEGs as their bytes, anything else (CMYK JPEGs
    included) decoded by PIL and converted as `decoded_images` does. `raw` is the image column in arrow format
    (`raw_column`); read in a worker, cheap."""
    values = raw[rows.start:rows.stop][column].to_pylist()
    out = []
    for row, value in zip(rows, values, strict=True):
        data = value.get("bytes") if isinstance(value, dict) else None
        path = value.get("path") if isinstance(value, dict) else None
        if data is None and path and "://" not in path and "::" not in path:
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as err:
                raise undecodable(desc, row, err) from err
        orientation, mode = _jpeg_header(data) if data is not None and data[:3] == JPEG_MAGIC else (1, None)
        if mode in ("L", "RGB"):
            out.append(EncodedImage(row, torch.frombuffer(bytearray(data), dtype=torch.uint8), orientation))
        else:
            out.append(EncodedImage(row, pixels=_pil_pixels(decoded_images(ds, column, range(row, row + 1), desc)[0])))
    return out


def raw_column(ds, column: str):
    """The image column undecoded ({"bytes", "path"} structs), for `encoded_images`."""
    return ds.select_columns([column]).with_format("arrow")


def _oriented(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """A C x H x W image turned as PIL's `ImageOps.exif_transpose` turns it for an EXIF orientation."""
    if orientation == 2:
        return image.flip(-1)
    if orientation == 3:
        return image.flip(-2, -1)
    if orientation == 4:
        return image.flip(-2)
    if orientation == 5:
        return image.transpose(-2, -1)
    if orientation == 6:
        return torch.rot90(image, -1, dims=(-2, -1))
    if orientation == 7:
        return image.transpose(-2, -1).flip(-2, -1)
    if orientation == 8:
        return torch.rot90(image, 1, dims=(-2, -1))
    return image


def jpeg_decoder():
    """`decode(data, device) -> list of RGB uint8 CHW tensors` from a list of 1-D uint8 tensors of JPEG bytes:
    TorchCodec's where it is installed (torchvision's image decoders are deprecated since 0.29 in its favour),
    else torchvision's, which decodes a list in one batched nvJPEG call on CUDA. Its warning of the deprecation is
    silenced here, the one place that calls it. (TorchCodec's decoder is not run on a GPU by mmtests' tests yet.)"""
    try:
        from torchcodec.decoders import decode_jpeg as codec_jpeg
    except ImportError:
        codec_jpeg = None
    if codec_jpeg is not None:
        def decode(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
            return [codec_jpeg(d, mode="RGB", device=device) for d in data]

        return decode

    import warnings

    from torchvision.io import ImageReadMode, decode_jpeg

    def decode(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*TorchCodec.*")
            return list(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))

    return decode


def _decode_jpegs(images: list[EncodedImage], device: torch.device, desc: str, ds, column: str) -> list[torch.Tensor]:
    """The JPEGs decoded on `device` and turned by their EXIF orientation, in one call (nvJPEG batches them on
    CUDA). When the batch fails, image by image: one the device's decoder cannot read but PIL can (a JPEG variant
    nvJPEG does not support) is decoded by PIL as `datasets` decodes it; one PIL cannot read either is an
    EntryError naming its row."""
    decode = jpeg_decoder()
    try:
        decoded = decode([im.data for im in images], device)
        return [_oriented(pixels, im.orientation) for pixels, im in zip(decoded, images, strict=True)]
    except RuntimeError:
        pass
    out = []
    for im in images:
        try:
            out.append(_oriented(decode([im.data], device)[0], im.orientation))
        except RuntimeError:
            if ds is None:
                raise
            pil = decoded_images(ds, column, range(im.row, im.row + 1), desc)[0]  # raises naming the row
            out.append(_pil_pixels(pil).to(device))  # turned by datasets already
    return out


def _resized_shape(height: int, width: int, recipe) -> tuple[int, int]:
    """(height, width) after the recipe's resize, computed as torchvision's Resize and transformers compute it."""
    if len(recipe.resize) == 2:
        return recipe.resize
    n = recipe.resize[0]
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = n, int(n * long / short)
    if recipe.max_size is not None and new_long > recipe.max_size:
        new_short, new_long = int(recipe.max_size * new_short / new_long), recipe.max_size
    return (new_long, new_short) if width <= height else (new_short, new_long)


def _resized(image: torch.Tensor, recipe) -> torch.Tensor:
    """uint8 C x H x W -> float C x h x w holding whole grey levels, resized as PIL resizes an 8-bit image: the
    width first, then the height, each pass antialiased and rounded to whole levels (clamped to 0..255). One 2-D
    pass in float instead leaves about 10% of the values a level away from PIL's; two passes, 0.5%."""
    height, width = _resized_shape(image.shape[-2], image.shape[-1], recipe)
    pixels = image.float()[None]
    for size in ((pixels.shape[-2], width), (height, width)):
        if tuple(pixels.shape[-2:]) != size:
            pixels = torch.nn.functional.interpolate(pixels, size=size, mode=recipe.interpolation, align_corners=False,
                                                     antialias=True).round_().clamp_(0, 255)
    return pixels[0]


def _cropped(image: torch.Tensor, recipe) -> torch.Tensor:
    if recipe.crop is None:
        return image
    ch, cw = recipe.crop
    h, w = image.shape[-2:]
    if ch > h or cw > w:  # padded with zeros first, as torchvision's CenterCrop does
        left, top = max(0, (cw - w) // 2), max(0, (ch - h) // 2)
        image = torch.nn.functional.pad(image, (left, max(0, (cw - w + 1) // 2), top, max(0, (ch - h + 1) // 2)))
        h, w = image.shape[-2:]
    if recipe.crop_rounding == "round":
        top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
    else:
        top, left = (h - ch) // 2, (w - cw) // 2
    return image[..., top:top + ch, left:left + cw]


def tensor_pixels(images: Sequence[EncodedImage], recipe, device: torch.device | str, desc: str = "embedding",
                  ds=None, column: str = "image") -> torch.Tensor:
    """A batch of encoded images -> normalised pixels (N x 3 x H x W, float32) on `device`: JPEGs decoded there
    (`decode_jpeg`, nvJPEG on CUDA, libjpeg-turbo on CPU) and turned by their EXIF orientation, then per image the
    recipe's resize (antialiased bicubic, rounded to whole grey levels as PIL's uint8 result is) and centre crop,
    then for the batch scale to [0, 1] and normalise with the model's mean and std. `ds` and `column` are for
    naming a row that does not decode (and decoding by PIL what the device's decoder cannot)."""
    device = torch.device(device)
    images = list(images)
    jpegs = [im for im in images if im.data is not None]
    decoded = iter(_decode_jpegs(jpegs, device, desc, ds, column) if jpegs else [])
    batch = []
    for im in images:
        pixels = next(decoded) if im.data is not None else im.pixels.to(device)
        batch.append(_cropped(_resized(pixels, recipe), recipe))
    pixels = torch.stack(batch).div_(255)
    mean = torch.tensor(recipe.mean, dtype=pixels.dtype, device=device).view(1, -1, 1, 1)
    std = torch.tensor(recipe.std, dtype=pixels.dtype, device=device).view(1, -1, 1, 1)
    return pixels.sub_(mean).div_(std)


# ------------------------------------------------------------------------------------------ the loader

@dataclass(frozen=True)
class _Failure:
    """An EntryError met in a worker, sent back as a value: re-raised in the main process with its own message
    (an exception raised in a worker would come back wrapped in the worker's traceback)."""

    message: str


class _Batches(torch.utils.data.Dataset):
    """Batch i of the rows (consecutive, in order), made by `make(rows)`."""

    def __init__(self, rows: int, batch_size: int, make: Callable[[range], object]):
        self.rows, self.batch_size, self.make = rows, batch_size, make

    def __len__(self) -> int:
        return (self.rows + self.batch_size - 1) // self.batch_size

    def __getitem__(self, index: int):
        start = index * self.batch_size
        try:
            return self.make(range(start, min(self.rows, start + self.batch_size)))
        except EntryError as err:
            return _Failure(str(err))


def _as_is(batch):
    return batch


def batches(rows: int, batch_size: int, make: Callable[[range], object], workers: int = 0,
            pin_memory: bool = False):
    """`make(rows)` of each batch of consecutive rows, in order, made by `workers` DataLoader processes (0: here).
    An EntryError in `make` is raised here with its own message, wherever it was met."""
    loader = torch.utils.data.DataLoader(_Batches(rows, batch_size, make), batch_size=None, collate_fn=_as_is,
                                         num_workers=workers, pin_memory=pin_memory)
    for batch in loader:
        if isinstance(batch, _Failure):
            raise EntryError(batch.message)
        yield batch
