"""open_clip models: built-in configs with pretrained tags or files, and `local-dir:` folders."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import Compose, Normalize, ToTensor

from .base import DualEncoder, ModelUnavailable


class OpenClipEncoder(DualEncoder):
    def __init__(self, name: str, model: str, pretrained: str | None, device: torch.device):
        import open_clip

        self.name, self.device = name, device
        try:
            self.model, _, self._preprocess = open_clip.create_model_and_transforms(
                model, pretrained=pretrained, device=device
            )
        except (FileNotFoundError, RuntimeError, OSError) as err:
            where = f"'{model}'" + (f" with pretrained '{pretrained}'" if pretrained else "")
            raise ModelUnavailable(
                f"open_clip model {where} could not be loaded here ({err.__class__.__name__}: {str(err)[:300]}). "
                "Fetch it once where the hub is reachable (it lands in the HF cache), or point 'pretrained' "
                "at a local weights file, or 'model' at local-dir:<folder>."
            ) from err
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(model)
        self._batched = _split_to_tensor(self._preprocess)

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        if self._batched is None:
            return torch.stack([self._preprocess(im) for im in images])
        # Same arithmetic as ToTensor + Normalize image by image (bit for bit), done once per batch:
        # per-image tensor ops cost more than a tiny model's forward.
        pil_steps, normalize = self._batched
        arrays = [np.asarray(pil_steps(im)) for im in images]
        if any(a.dtype != np.uint8 or a.ndim != 3 for a in arrays):
            return torch.stack([self._preprocess(im) for im in images])
        pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).to(torch.get_default_dtype()).div(255)
        mean = torch.as_tensor(normalize.mean, dtype=pixels.dtype).view(1, -1, 1, 1)
        std = torch.as_tensor(normalize.std, dtype=pixels.dtype).view(1, -1, 1, 1)
        return pixels.sub_(mean).div_(std)

    def encode_image(self, pixels: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        return self.model.encode_image(pixels.to(self.device, self.input_dtype), normalize=normalize)

    def encode_text(self, tokens, normalize: bool = False) -> torch.Tensor:
        return self.model.encode_text(tokens.to(self.device), normalize=normalize)


def _split_to_tensor(transform) -> tuple[Compose, Normalize] | None:
    """(PIL steps, Normalize) when a pipeline ends in ToTensor + Normalize; None otherwise."""
    steps = list(getattr(transform, "transforms", []))
    if len(steps) >= 2 and isinstance(steps[-2], ToTensor) and isinstance(steps[-1], Normalize) and not steps[-1].inplace:
        return Compose(steps[:-2]), steps[-1]
    return None
