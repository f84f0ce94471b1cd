"""Vision-language models through transformers' own processor and chat template.

Any checkpoint `AutoModelForImageTextToText` and `AutoProcessor` load (hub id or local directory) works: LLaVA-1.5,
LLaVA-NeXT, LLaVA-OneVision, Qwen2-VL / Qwen2.5-VL, Idefics3 / SmolVLM, PaliGemma, Gemma 3, Mllama and others.
What differs between families (how images are batched, how a prompt is built without a chat template, which
positions attend which) is a table of facts in `mmtests.adapters.vlm_facts`; where the image's tokens are is read
from what the processor returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..data.images import to_rgb
from ..errors import EntryError
from .base import dynamic_int8
from .family import check_backend
from .hf_checkpoint import Checkpoint
from .vlm_facts import VLMFacts, facts_of


@dataclass(frozen=True)
class Generation:
    text: str  # decoded new tokens, special tokens removed
    tokens: tuple[int, ...]  # new token ids up to and including EOS
    finished: bool  # stopped at EOS (False: cut at max_new_tokens)


@dataclass
class AttentionMaps:
    """One forward pass with attentions, for one image and prompt (+ optional answer).

    The contract between a family's adapter and the attention measurements: which key positions hold the
    image's tokens (`image_positions`, in sequence order; they need not be contiguous), which positions may see
    which (`mask`), and what the processor returned for this sample (`inputs`), from which
    `mmtests.adapters.geometry` tells the region of the original image each image token covers.
    """

    attentions: torch.Tensor  # (layers, heads, query, key), float32 on CPU
    tokens: list[int]
    segments: dict[str, tuple[int, int]]  # prefix, image, instruction, generated: [start, end) positions
    grid: tuple[int, int] | None  # LLaVA-1.5 style single grid: rows x cols (token i at row i // cols); else None
    answer_position: int  # the position whose output predicts the first answer token
    extra: dict = field(default_factory=dict)
    image_positions: list[int] = field(default_factory=list)  # key positions of the image's tokens, in order
    # "causal": no query sees a later key; "prefix": causal, except that positions in `bidirectional` see each
    # other both ways (PaliGemma's prefix-LM); "cross": keys are the vision tokens (Mllama's cross-attention)
    mask: str = "causal"
    bidirectional: tuple[int, int] | None = None  # [start, end) of the block attending both ways ("prefix")
    inputs: dict = field(default_factory=dict)  # the processor's outputs for this sample (CPU tensors)
    image_size: tuple[int, int] | None = None  # (width, height) of the RGB image given to the processor


def processor_batch(processor, facts: VLMFacts, images, texts: list[str], device: torch.device, dtype: torch.dtype,
                    suffixes: list[str] | None = None):
    """The processor's batch for one image per text, as a flat list or one list per sample (the family's fact),
    on `device` (floating tensors, the pixels, in `dtype` on CUDA; ids, masks and grids keep theirs)."""
    # The one RGB rule (alpha on white, 16-bit scaled, first frame) before the processor's own conversion.
    images = [to_rgb(image)[0] for image in images]
    if facts.nested_images:
        images = [[image] for image in images]
    extra = {"suffix": suffixes} if suffixes else {}
    inputs = processor(images=images, text=texts, padding=True, return_tensors="pt", **extra)
    inputs.pop("labels", None)  # PaliGemma returns training labels; nothing here computes a loss
    return inputs.to(device, dtype=dtype) if device.type == "cuda" else inputs


def prompt_text(processor, question: str) -> str:
    """The text given to the processor: the chat template's user turn with one image and the question, then the
    model's turn opened; without a template, the family's own form (PaliGemma: the question itself, to which the
    processor adds the image tokens, BOS and a newline)."""
    if not getattr(processor, "chat_template", None):
        # facts.prompt_without_template == "prefix" (checked at load): the image marker, then the question
        return f"{getattr(processor, 'image_token', '')}{question}"
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    return processor.apply_chat_template(conversation, add_generation_prompt=True)


def _dtype(device: torch.device, dtype: str | None) -> torch.dtype:
    if dtype:
        return getattr(torch, dtype)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


class VisionLanguageModel:
    """Batched greedy (or configured sampling) answers, and forward passes with attention maps."""

    def __init__(self, model_id: str, device: torch.device, *, dtype: str | None = None, online: bool = False,
                 padding_side: str = "left", generation: dict | None = None, quantize: str | None = None,
                 entry: str | None = None):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.name = model_id
        self.device = device
        # Hub ids not in the cache are unavailable (ModelUnavailable); a folder or checkpoint that does not
        # load as configured is an EntryError naming the file. `entry`: the matrix entry, for messages.
        check_backend(entry, "llava", model_id)  # a folder of another family, said before anything loads
        checkpoint = Checkpoint(entry, model_id, online=online)
        checkpoint.check_tokenizer_files()
        checkpoint.check_processor_files()
        self.processor = checkpoint.load(", ".join(filter(None, (checkpoint.tokenizer_files(), "processor_config.json"))),
                                         lambda: AutoProcessor.from_pretrained(model_id, local_files_only=not online))
        checkpoint.check_vocabulary(self.processor.tokenizer)
        from transformers import AutoConfig

        config = checkpoint.load("config.json", lambda: AutoConfig.from_pretrained(model_id,
                                                                                  local_files_only=not online))
        self.facts: VLMFacts = facts_of(config.model_type)
        if not getattr(self.processor, "chat_template", None) and not self.facts.prompt_without_template:
            raise EntryError(f"{f'[models.{entry}]' if entry else model_id}: '{model_id}' has no chat template "
                             "(chat_template.jinja or chat_template in its processor/tokenizer config), so prompts "
                             "cannot be built as the model was trained; save the processor with its chat template")
        self.model = checkpoint.load_model(AutoModelForImageTextToText, dtype=_dtype(device, dtype),
                                           local_files_only=not online, attn_implementation="sdpa")
        self.model.to(device).eval()
        if quantize == "dynamic-int8":
            self.model = dynamic_int8(self.model)
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = padding_side
        self.generation = {"do_sample": False, **(generation or {})}
        known = set(self.model.generation_config.to_dict()) | {"max_new_tokens", "min_new_tokens"}
        unknown = sorted(set(self.generation) - known)
        if unknown:
            import difflib

            hints = [f"{k!r}" + (f" (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(k, known, 1))
                                 else "") for k in unknown]
            raise EntryError(f"{f'[models.{entry}]' if entry else model_id}: generation has no setting "
                             f"{', '.join(hints)}; use generate() settings of transformers' GenerationConfig")
        self.image_token_id = getattr(self.model.config, "image_token_id", None)

    def prompt(self, question: str) -> str:
        return prompt_text(self.processor, question)

    def _inputs(self, images, texts: list[str], suffixes: list[str] | None = None):
        return processor_batch(self.processor, self.facts, images, texts, self.device, self.model.dtype, suffixes)

    @torch.no_grad()
    def generate(self, images, questions: list[str], max_new_tokens: int, batch_size: int = 32) -> list[Generation]:
        """Answers for (image, question) pairs, `batch_size` at a time; padding side as configured."""
        eos = self.model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [eos])
        out: list[Generation] = []
        images = list(images)
        for start in range(0, len(questions), batch_size):
            texts = [self.prompt(q) for q in questions[start:start + batch_size]]
            inputs = self._inputs(images[start:start + batch_size], texts)
            ids = self.model.generate(**inputs, max_new_tokens=max_new_tokens, **self.generation)
            for row in ids[:, inputs["input_ids"].shape[1]:].tolist():
                stop = next((i for i, t in enumerate(row) if t in eos), None)
                kept = row if stop is None else row[:stop + 1]
                out.append(Generation(self.tokenizer.decode(kept, skip_special_tokens=True).strip(), tuple(kept),
                                      stop is not None))
        return out

    @torch.no_grad()
    def first_token_logprobs(self, images, questions: list[str], batch_size: int = 32) -> torch.Tensor:
        """Log-probabilities (N x vocab, float32, CPU) of the first answer token, batched and padded as
        `generate` is: what a model's answers start from, compared with its baseline's."""
        out = []
        images = list(images)
        for start in range(0, len(questions), batch_size):
            texts = [self.prompt(q) for q in questions[start:start + batch_size]]
            inputs = self._inputs(images[start:start + batch_size], texts)
            logits = self.model(**inputs).logits[:, -1].float()
            out.append(torch.log_softmax(logits, dim=-1).cpu())
        return torch.cat(out)

    def patch_grid(self, n_image_tokens: int) -> tuple[int, int] | None:
        """The rows x cols grid of a single-grid family (LLaVA-1.5) when the image's tokens form it; else None
        (tiles, dynamic resolution, pooling: `mmtests.adapters.geometry` maps those through the processor)."""
        vision = getattr(self.model.config, "vision_config", None)
        size, patch = getattr(vision, "image_size", None), getattr(vision, "patch_size", None)
        if not self.facts.single_grid or not isinstance(size, int) or not isinstance(patch, int):
            return None
        side = size // patch
        return (side, side) if side * side == n_image_tokens else None

    def _forward_attentions(self, inputs) -> tuple:
        previous = self.model.config._attn_implementation
        self.model.set_attn_implementation("eager")  # sdpa cannot return attention weights
        try:
            return self.model(**inputs, output_attentions=True).attentions
        finally:
            self.model.set_attn_implementation(previous)

    def attention_layers(self) -> int:
        """How many layers' maps `attention_maps` returns, by the config: every language-model layer, or for a
        "cross" family its cross-attention layers."""
        text = self.model.config.get_text_config()
        return len(text.cross_attention_layers) if self.facts.mask == "cross" else text.num_hidden_layers

    @torch.no_grad()
    def attention_maps(self, image, question: str, answer: str | None = None) -> AttentionMaps:
        """Per-layer, per-head attention of the language model over one prompt (+ answer, teacher-forced).

        For a "cross" family (Mllama) the maps are its cross-attention layers', whose keys are the vision tokens
        (every tile's tokens in order); `segments["image"]` and `image_positions` then index those keys."""
        prompt = self.prompt(question)
        prompt_inputs = self._inputs([image], [prompt])
        prompt_len = prompt_inputs["input_ids"].shape[1]
        if not answer:
            inputs = prompt_inputs
        elif getattr(self.processor, "chat_template", None):
            inputs = self._inputs([image], [f"{prompt} {answer}"])
        else:  # a prefix-LM: the answer is the suffix, which attends causally
            inputs = self._inputs([image], [prompt], suffixes=[answer])
        tokens = inputs["input_ids"][0].tolist()
        layers = self._forward_attentions(inputs)
        bidirectional = None
        if self.facts.mask == "cross":
            cross = set(self.model.config.get_text_config().cross_attention_layers)
            att = torch.stack([a[0].float().cpu() for i, a in enumerate(layers) if i in cross])
            where = list(range(att.shape[-1]))
            segments = {"prefix": (0, 0), "image": (0, len(where)), "instruction": (0, prompt_len),
                        "generated": (prompt_len, len(tokens))}
        else:
            att = torch.stack([a[0].float().cpu() for a in layers])  # layers, heads, query, key
            where = [i for i, t in enumerate(tokens) if t == self.image_token_id]
            if not where:
                raise ValueError(f"{self.name}: the prompt holds no image token (id {self.image_token_id})")
            segments = {"prefix": (0, where[0]), "image": (where[0], where[-1] + 1),
                        "instruction": (where[-1] + 1, prompt_len), "generated": (prompt_len, len(tokens))}
            if self.facts.mask == "prefix":
                kind = inputs["token_type_ids"][0].tolist()
                block = [i for i, t in enumerate(kind) if t == self.facts.bidirectional_type]
                bidirectional = (block[0], block[-1] + 1) if block else None
        contiguous = where == list(range(where[0], where[-1] + 1)) if where else False
        grid = self.patch_grid(len(where)) if contiguous else None
        return AttentionMaps(att, tokens, segments, grid, prompt_len - 1, image_positions=where, mask=self.facts.mask,
                             bidirectional=bidirectional, inputs={k: v.cpu() for k, v in inputs.items()},
                             image_size=to_rgb(image)[0].size)
