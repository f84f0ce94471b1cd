"""open_clip models: built-in configs with pretrained tags or files, and `local-dir:` folders."""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import Compose, Normalize, ToTensor

from ..config import is_local_path
from ..errors import out_of_memory
from .base import DualEncoder, EntryError, ModelUnavailable
from .hf_checkpoint import TOKENIZER_FILES


class OpenClipEncoder(DualEncoder):
    def __init__(self, name: str, model: str, pretrained: str | None, device: torch.device):
        import open_clip

        self.name, self.device = name, device
        # Local folders and weights files that do not load are an EntryError naming the file; hub weights not
        # in the cache are unavailable here (ModelUnavailable).
        local_files = _local_files(name, model, pretrained)
        try:
            self.model, _, self._preprocess = open_clip.create_model_and_transforms(
                model, pretrained=pretrained, device=device
            )
        except Exception as err:  # noqa: BLE001  (any library error; sorted into unavailable / broken below)
            reason = f"{err.__class__.__name__}: {' '.join(str(err).split())[:300]}"
            if local_files:
                raise EntryError(
                    f"[models.{name}]: {local_files} cannot be loaded by open_clip ({reason}); re-export the "
                    f"checkpoint with its config, or fix 'model' / 'pretrained' in [models.{name}]"
                ) from err
            if not isinstance(err, (FileNotFoundError, RuntimeError, OSError)) or out_of_memory(err):
                raise  # out of memory is the machine's limit, not a model missing here
            where = f"'{model}'" + (f" with pretrained '{pretrained}'" if pretrained else "")
            raise ModelUnavailable(
                f"[models.{name}]: open_clip model {where} could not be loaded here ({reason}). "
                "Fetch it once where the hub is reachable (it lands in the HF cache), or point 'pretrained' "
                "at a local weights file, or 'model' at local-dir:<folder>."
            ) from err
        self.model.eval()
        try:
            self.tokenizer = open_clip.get_tokenizer(model)
        except Exception as err:  # noqa: BLE001
            if not model.startswith("local-dir:"):
                raise
            folder = model.removeprefix("local-dir:")
            files = ", ".join(f for f in (*TOKENIZER_FILES, "tokenizer_config.json") if (Path(folder) / f).is_file())
            raise EntryError(f"[models.{name}]: the tokenizer files ({files}) in {folder!r} cannot be loaded "
                             f"({err.__class__.__name__}: {' '.join(str(err).split())[:300]}); save the tokenizer "
                             "into the folder again (tokenizer.save_pretrained)") from err
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


def _local_files(name: str, model: str, pretrained: str | None) -> str:
    """The local files an entry loads ("" for hub-only entries), checked to exist; unknown built-in configs and
    pretrained tags are named with the known ones."""
    import open_clip

    where = f"[models.{name}]"
    if model.startswith("local-dir:"):
        folder = Path(model.removeprefix("local-dir:")).expanduser()
        if not folder.is_dir():
            raise EntryError(f"{where}: open_clip folder {str(folder)!r} (model = {model!r}) does not exist; fix the "
                             f"path in {where} (relative paths are relative to the matrix file)")
        weights = sorted(p.name for ext in ("*.safetensors", "*.bin", "*.pth") for p in folder.glob(ext))
        missing = [] if (folder / "open_clip_config.json").is_file() else ["open_clip_config.json"]
        if missing or not weights:
            raise EntryError(f"{where}: open_clip folder {str(folder)!r} has no "
                             f"{' and no '.join(missing + ([] if weights else ['weights file (*.safetensors, *.bin)']))}"
                             f"; it holds {', '.join(sorted(p.name for p in folder.iterdir())) or 'nothing'}; "
                             "save the model's config and weights into it, or fix the path")
        text_cfg = json.loads((folder / "open_clip_config.json").read_text()).get("model_cfg", {}).get("text_cfg", {})
        if text_cfg.get("hf_tokenizer_name") and not any((folder / f).is_file() for f in TOKENIZER_FILES):
            raise EntryError(f"{where}: open_clip folder {str(folder)!r} names a Hugging Face tokenizer "
                             f"({text_cfg['hf_tokenizer_name']!r}) but holds no tokenizer files ({', '.join(TOKENIZER_FILES)});"
                             " save the tokenizer into it (tokenizer.save_pretrained)")
        return f"{', '.join(weights)} in {str(folder)!r}"
    builtin = model.replace("/", "-")  # as open_clip looks it up ("ViT-B/32" is "ViT-B-32")
    if not model.startswith("hf-hub:") and builtin not in open_clip.list_models():
        close = difflib.get_close_matches(model, open_clip.list_models(), 3)
        raise EntryError(f"{where}: open_clip has no model config {model!r}"
                         + (f" (close: {', '.join(close)})" if close else "")
                         + f"; set 'model' in {where} to a name from open_clip.list_models(), hf-hub:<id> or "
                         "local-dir:<folder>")
    if pretrained and is_local_path(pretrained):
        if not Path(pretrained).expanduser().is_file():
            raise EntryError(f"{where}: pretrained weights file {pretrained!r} does not exist; fix the path in {where} "
                             "(relative paths are relative to the matrix file)")
        return repr(pretrained)
    if pretrained and not model.startswith("hf-hub:"):
        tags = open_clip.list_pretrained_tags_by_model(builtin)
        if not open_clip.get_pretrained_cfg(builtin, pretrained):
            known = ", ".join(tags[:8]) + (f", and {len(tags) - 8} more" if len(tags) > 8 else "")
            raise EntryError(f"{where}: open_clip has no pretrained tag {pretrained!r} for {model!r} (known: "
                             f"{known or 'none'}); set 'pretrained' in {where} to one of them or to a weights file")
    return ""


def _split_to_tensor(transform) -> tuple[Compose, Normalize] | None:
    """(PIL steps, Normalize) when a pipeline ends in ToTensor + Normalize; None otherwise."""
    steps = list(getattr(transform, "transforms", []))
    if len(steps) >= 2 and isinstance(steps[-2], ToTensor) and isinstance(steps[-1], Normalize) and not steps[-1].inplace:
        return Compose(steps[:-2]), steps[-1]
    return None
