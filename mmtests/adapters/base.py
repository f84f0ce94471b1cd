"""The dual-encoder interface every CLIP-style backend offers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from ..errors import EntryError, ModelUnavailable  # noqa: F401  (re-exported)
from ..evaluation.zero_shot import ProbabilityHead

# Prompts in one text forward of the zero-shot classifier: bounds its memory (activations of 1024 prompts of 77
# tokens: about 0.3 GB for a ViT-L-14 text tower) whatever the number of classes and templates.
PROMPTS_PER_FORWARD = 1024


@dataclass(frozen=True)
class PixelRecipe:
    """A model's image preprocessing as tensor arithmetic (`mmtests.data.pipeline.tensor_pixels` runs it on any
    device): resize, centre crop, scale to [0, 1], normalise."""

    resize: tuple[int, ...]  # (n,): the shortest side to n, the other in proportion (rounded down); (h, w): to h x w
    crop: tuple[int, int] | None  # centre crop (height, width); None: none
    crop_rounding: str  # where an odd margin puts the extra pixel: "round" (torchvision), "floor" (transformers)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bicubic"  # "bicubic" or "bilinear", antialiased as PIL's
    max_size: int | None = None  # torchvision Resize's cap on the longer side


class ImageInputs:
    """A batch of image inputs that is more than one pixel tensor: what a processor returns beside the pixels (SigLIP
    2's naflex patches come with `pixel_attention_mask` and `spatial_shapes`), as named tensors whose first dimension
    is the image. It goes where a pixel tensor goes: `len`, slicing by images, `.to(device)`, `pin_memory()` (the
    DataLoader's), `concat` of batches; the encoder that made it takes it back whole."""

    def __init__(self, tensors: Mapping[str, torch.Tensor]):
        self.tensors = dict(tensors)
        sizes = {name: len(t) for name, t in self.tensors.items()}
        if not sizes or len(set(sizes.values())) != 1:
            raise ValueError(f"ImageInputs needs tensors with one first dimension (the images), got sizes {sizes}")

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, index: slice) -> ImageInputs:
        if not isinstance(index, slice):
            raise TypeError(f"ImageInputs are sliced by images (inputs[a:b]), not indexed by {index!r}")
        return ImageInputs({name: t[index] for name, t in self.tensors.items()})

    def to(self, device, non_blocking: bool = False) -> ImageInputs:
        return ImageInputs({name: t.to(device, non_blocking=non_blocking) for name, t in self.tensors.items()})

    def pin_memory(self) -> ImageInputs:
        return ImageInputs({name: t.pin_memory() for name, t in self.tensors.items()})

    def __repr__(self) -> str:
        return f"ImageInputs({', '.join(f'{n}={tuple(t.shape)}' for n, t in self.tensors.items())})"


Pixels = torch.Tensor | ImageInputs  # what `preprocess` returns and `encode_image` takes


def concat(batches: Sequence[Pixels]) -> Pixels:
    """Batches of one encoder's image inputs as one batch, in order."""
    if all(isinstance(b, torch.Tensor) for b in batches):
        return torch.cat(list(batches))
    names = batches[0].tensors
    return ImageInputs({name: torch.cat([b.tensors[name] for b in batches]) for name in names})


class DualEncoder(ABC):
    """A CLIP-style model: batched preprocessing, tokenizer, and the two encoders.

    `encode_text(tokens, normalize=...)` and `tokenizer(texts)` follow open_clip's conventions, so
    open_clip's `build_zero_shot_classifier` works on any backend.
    """

    name: str
    device: torch.device
    tokenizer: Callable[[list[str]], object]
    input_dtype: torch.dtype = torch.float32  # pixels are cast to it: the model's dtype when cast as a whole

    @abstractmethod
    def preprocess(self, images: Sequence[Image.Image]) -> Pixels:
        """PIL images -> a batch the image encoder accepts (on CPU): a pixel tensor, or `ImageInputs` where the
        model takes more than pixels."""

    @abstractmethod
    def encode_image(self, pixels: Pixels, normalize: bool = False) -> torch.Tensor: ...

    @abstractmethod
    def encode_text(self, tokens, normalize: bool = False) -> torch.Tensor: ...

    def pixel_recipe(self) -> PixelRecipe:
        """This model's preprocessing as a `PixelRecipe`, read from its open_clip transform (`_preprocess`) or its
        Hugging Face image processor (`image_processor`); an EntryError naming the step when the preprocessing is
        not resize + centre crop + normalise (what tensor decoding, `gpu_decode`, can reproduce)."""
        if getattr(self, "image_processor", None) is not None:
            return _hf_recipe(self.name, self.image_processor)
        if getattr(self, "_preprocess", None) is not None:
            return _torchvision_recipe(self.name, self._preprocess)
        raise EntryError(f"[models.{self.name}]: {type(self).__name__} exposes no preprocessing to read "
                         "(neither an open_clip transform nor an image processor); gpu_decode cannot reproduce it: "
                         "set gpu_decode = false in [evaluation]")

    def logit_scale(self) -> float:
        """The learned temperature that turns cosine similarities into logits (exp of the stored log scale)."""
        return float(self.model.logit_scale.detach().float().exp())

    def head(self) -> ProbabilityHead:
        """The model's own probability head: a model with a learned `logit_bias` was trained with the sigmoid loss
        (SigLIP, SigLIP 2, open_clip's SigLIP recipes) and reads each class's sigmoid of scale * cos + bias; the
        others (CLIP) a softmax over the classes at the logit scale."""
        bias = getattr(self.model, "logit_bias", None)
        if bias is None:
            return ProbabilityHead("softmax", self.logit_scale())
        return ProbabilityHead("sigmoid", self.logit_scale(), float(bias.detach().float().reshape(-1)[0]))

    def autocast(self):
        """Half-precision autocast on GPU; a no-op on CPU where it would only slow things down."""
        return torch.autocast(self.device.type, dtype=torch.float16, enabled=self.device.type == "cuda")

    @torch.no_grad()
    def text_classifier(self, classnames: Sequence[str], templates: Sequence[str],
                        prompts_per_forward: int = PROMPTS_PER_FORWARD) -> torch.Tensor:
        """Class embeddings (D x C): each class's prompts ("{}" templates, or callables) encoded, averaged,
        re-normalised.

        As open_clip's `build_zero_shot_classifier`, with the classes batched so that one text forward holds at
        most `prompts_per_forward` prompts (at least one class's): memory is bounded whatever the number of
        classes and templates (ImageNet x 80 templates is 80,000 prompts). Every prompt is tokenized first: two
        classes whose prompts all get the same token ids (words the vocabulary does not know, a name listed
        twice) would get the same column, the prediction between them decided by tie-breaking; that is an
        EntryError naming the classes and the tokenizer, raised before anything is encoded.
        """
        classnames, templates = list(classnames), list(templates)
        if not classnames or not templates:
            raise ValueError("text_classifier needs at least one class name and one template")
        per_forward = max(1, prompts_per_forward // len(templates))
        batches = [classnames[i:i + per_forward] for i in range(0, len(classnames), per_forward)]
        tokens = [self.tokenizer([_prompt(t, c) for c in batch for t in templates]) for batch in batches]
        self._check_distinct_prompts(classnames, templates, tokens)
        columns = []
        with self.autocast():
            for batch, batch_tokens in zip(batches, tokens, strict=True):
                embeddings = self.encode_text(batch_tokens, normalize=True)
                embeddings = embeddings.reshape(len(batch), len(templates), -1).mean(dim=1)
                columns.append((embeddings / embeddings.norm(dim=1, keepdim=True)).T)
            return torch.cat(columns, dim=1).float()

    def tokenizer_name(self) -> str:
        """The tokenizer, for messages: its class and, for Hugging Face tokenizers, where it was loaded from."""
        tok = getattr(self, "_tokenizer", None) or getattr(self.tokenizer, "tokenizer", None) or self.tokenizer
        where = getattr(tok, "name_or_path", "")
        return f"{type(tok).__name__}" + (f" ({where!r})" if where else "")

    def _check_distinct_prompts(self, classnames: list[str], templates: list[str], tokens: list) -> None:
        first: dict[tuple, str] = {}
        same: dict[str, list[str]] = {}
        names = iter(classnames)
        for batch_tokens in tokens:
            rows = _token_rows(batch_tokens)
            for start in range(0, len(rows), len(templates)):
                name = next(names)
                key = tuple(rows[start:start + len(templates)])
                same.setdefault(first.setdefault(key, name), []).append(name)
        # Names that differ first (the tokenizer's doing), then names listed twice.
        groups = sorted((g for g in same.values() if len(g) > 1), key=lambda g: len(set(g)) == 1)
        if not groups:
            return
        example = _prompt(templates[0], groups[0][0])
        ids = list(_token_rows(self.tokenizer([example]))[0])
        while len(ids) > 1 and ids[-1] == 0:  # open_clip pads with 0
            ids.pop()
        tok = getattr(self, "_tokenizer", None) or getattr(self.tokenizer, "tokenizer", None)
        try:
            shown_ids = repr(tok.convert_ids_to_tokens(ids[:16]))
        except Exception:  # noqa: BLE001  (a tokenizer without the method: the ids)
            shown_ids = repr(ids[:16])
        shown = "; ".join(", ".join(map(repr, g)) for g in groups[:5]) + (
            f"; and {len(groups) - 5} more groups" if len(groups) > 5 else "")
        raise EntryError(
            f"[models.{self.name}]: class names that the tokenizer {self.tokenizer_name()} cannot tell apart: "
            f"{shown} (every prompt of each group gets the same token ids, e.g. {example!r} "
            f"-> {shown_ids}{' ...' if len(ids) > 16 else ''}): their classifier columns would be identical and the "
            "prediction between them decided by tie-breaking; give those classes names in words the tokenizer knows "
            "('classnames' in the dataset entry), listed once each"
        )


def _prompt(template, classname: str) -> str:
    """A "{}" template filled in, or a callable one (open_clip's template lists) called."""
    return template.format(classname) if isinstance(template, str) else template(classname)


def _token_rows(tokens) -> list[tuple[int, ...]]:
    """Per prompt, its token ids without padding: a tensor of ids (open_clip) or a tokenizer's batch
    (input_ids with an attention_mask, Hugging Face)."""
    if isinstance(tokens, torch.Tensor):
        return [tuple(row) for row in tokens.tolist()]
    ids = tokens["input_ids"].tolist()
    mask = tokens["attention_mask"].tolist() if "attention_mask" in tokens else None
    if mask is None:
        return [tuple(row) for row in ids]
    return [tuple(i for i, m in zip(row, keep, strict=True) if m) for row, keep in zip(ids, mask, strict=True)]


def dynamic_int8(model: torch.nn.Module, keep_float: tuple[str, ...] = ()) -> torch.nn.Module:
    """`model` with its Linear layers dynamically quantized to int8 (torch.ao, CPU), as exported for serving;
    layers whose names end with one of `keep_float` stay in float32."""
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    linear = {name: default_dynamic_qconfig for name, m in model.named_modules()
              if type(m) is torch.nn.Linear and not name.endswith(keep_float)}
    return quantize_dynamic(model.to("cpu"), linear, dtype=torch.qint8)


def _not_reproducible(name: str, step: str) -> EntryError:
    return EntryError(f"[models.{name}]: its image preprocessing has a step tensor decoding cannot reproduce ({step}); "
                      "gpu_decode covers resize (shortest side or fixed size, bicubic or bilinear) + centre crop + "
                      "scale + normalise: set gpu_decode = false in [evaluation] for this matrix")


def _torchvision_recipe(name: str, transform) -> PixelRecipe:
    """open_clip's pipeline: Resize, CenterCrop, convert to RGB, ToTensor, Normalize (torchvision transforms)."""
    from torchvision.transforms import CenterCrop, InterpolationMode, Normalize, Resize, ToTensor

    resize = crop = normalize = None
    for step in getattr(transform, "transforms", [transform]):
        if isinstance(step, Resize) and resize is None:
            if step.interpolation not in (InterpolationMode.BICUBIC, InterpolationMode.BILINEAR) or step.antialias is False:
                raise _not_reproducible(name, f"{step}")
            resize = step
        elif isinstance(step, CenterCrop) and crop is None:
            crop = step
        elif isinstance(step, Normalize) and normalize is None:
            normalize = step
        elif isinstance(step, ToTensor) or type(step).__name__ == "MaybeConvertMode" or getattr(
                step, "__name__", "") == "_convert_to_rgb":
            continue
        else:
            raise _not_reproducible(name, repr(step))
    if resize is None or normalize is None:
        raise _not_reproducible(name, "no Resize" if resize is None else "no Normalize")
    size = (resize.size,) if isinstance(resize.size, int) else tuple(resize.size)
    return PixelRecipe(resize=size, crop=None if crop is None else tuple(crop.size), crop_rounding="round",
                       mean=tuple(float(m) for m in normalize.mean), std=tuple(float(s) for s in normalize.std),
                       interpolation=resize.interpolation.value, max_size=resize.max_size)


def _hf_recipe(name: str, processor) -> PixelRecipe:
    """A Hugging Face image processor (CLIPImageProcessor, SiglipImageProcessor, their Fast variants)."""
    def get(key, default=None):
        return getattr(processor, key, default)

    inputs = list(get("model_input_names", None) or ["pixel_values"])
    if inputs != ["pixel_values"]:
        raise _not_reproducible(name, f"{type(processor).__name__} returns {', '.join(inputs)}: patches of a size "
                                "chosen per image with their mask and grid (SigLIP 2's naflex), not a resized pixel batch")
    if not get("do_resize", False) or not get("do_normalize", False):
        raise _not_reproducible(name, "no resize" if not get("do_resize", False) else "no normalisation")
    if get("do_rescale", True) and abs(float(get("rescale_factor", 1 / 255)) - 1 / 255) > 1e-9:
        raise _not_reproducible(name, f"rescale_factor {get('rescale_factor')}")
    resample = int(getattr(get("resample", 3), "value", get("resample", 3)))
    interpolation = {3: "bicubic", 2: "bilinear"}.get(resample)  # PIL.Image.Resampling values
    if interpolation is None:
        raise _not_reproducible(name, f"resample {get('resample')!r}")
    size = dict(get("size") or {})
    if "shortest_edge" in size:
        resize = (int(size["shortest_edge"]),)
    elif "height" in size and "width" in size:
        resize = (int(size["height"]), int(size["width"]))
    else:
        raise _not_reproducible(name, f"size {size}")
    crop = None
    if get("do_center_crop", False):
        crop_size = dict(get("crop_size") or {})
        crop = (int(crop_size["height"]), int(crop_size["width"]))
    # The slow processors crop at (h - ch) // 2; the fast (torchvision) ones as torchvision does.
    rounding = "round" if type(processor).__name__.endswith("Fast") else "floor"
    mean, std = get("image_mean"), get("image_std")
    return PixelRecipe(resize=resize, crop=crop, crop_rounding=rounding,
                       mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std), interpolation=interpolation)
