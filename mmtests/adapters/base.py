"""The dual-encoder interface every CLIP-style backend offers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import torch
from PIL import Image

from ..errors import EntryError, ModelUnavailable  # noqa: F401  (re-exported)

# Prompts in one text forward of the zero-shot classifier: bounds its memory (activations of 1024 prompts of 77
# tokens: about 0.3 GB for a ViT-L-14 text tower) whatever the number of classes and templates.
PROMPTS_PER_FORWARD = 1024


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
    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """PIL images -> a pixel batch the image encoder accepts (on CPU)."""

    @abstractmethod
    def encode_image(self, pixels: torch.Tensor, normalize: bool = False) -> torch.Tensor: ...

    @abstractmethod
    def encode_text(self, tokens, normalize: bool = False) -> torch.Tensor: ...

    def logit_scale(self) -> float:
        """The learned temperature that turns cosine similarities into logits (exp of the stored log scale)."""
        return float(self.model.logit_scale.detach().float().exp())

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
