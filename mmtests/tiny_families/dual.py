"""Tiny dual encoders (CLIP, SigLIP, SigLIP 2, open_clip variants).

Each is built from its library's own config classes with a few layers of width 32, seeded, with the shapes world's
word-level tokenizer, and saved as a checkpoint folder the matrix's backend loads (`save_pretrained` for Hugging
Face, an `open_clip_config.json` folder for open_clip's `local-dir:`). Random weights: no accuracy is asserted.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from ..data import facts
from . import Family
from .tokenizer import build_word_tokenizer

VOCAB_SIZE = 64
CONTEXT = 24  # tokens of a prompt, padding included ("there is a big blue circle in the picture." is 12)
WIDTH = 32  # hidden size of every tower
# Words of the shapes world's captions, questions and the prompt templates of the matrices.
TEMPLATE_WORDS = ("a", "an", "photo", "picture", "of", "the", "there", "is", "in", "big", "large", "small", "little",
                  "shape", "and", "near", "next", "to", "object", ".")
SIGLIP_MEAN = SIGLIP_STD = [0.5, 0.5, 0.5]
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def shapes_words() -> list[str]:
    positions = {w for row in facts.POSITIONS for p in row for w in p.split()}
    return sorted({*facts.SHAPES, *facts.COLOURS, *positions, *TEMPLATE_WORDS})


def _tokenizer():
    return build_word_tokenizer(shapes_words(), VOCAB_SIZE, CONTEXT)


def _gemma_style_tokenizer():
    """SigLIP 2's tokenizer is Gemma's, and transformers loads every siglip2 checkpoint's with `Siglip2Tokenizer`
    (lower-case, spaces as "▁", byte-pair merges over the whole text, no pre-splitting), whatever its files say: a
    word-level vocabulary would come back as unknown characters. So the shapes words get byte-pair merges in that
    format, learned from the words themselves (each word, bare and after a space, becomes one token); BOS first, as
    Gemma's."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Lowercase(), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")  # merges within words only
    words = shapes_words()
    tok.train_from_iterator([*words, *(f" {w}" for w in words)],
                            trainers.BpeTrainer(vocab_size=1000, min_frequency=1, special_tokens=specials,
                                                show_progress=False))
    tok.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous")  # as Siglip2Tokenizer's
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>", mask_token="<mask>", model_max_length=CONTEXT)


def _text_ids(tok) -> dict:
    return {"vocab_size": len(tok), "pad_token_id": tok.pad_token_id, "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.eos_token_id, "max_position_embeddings": CONTEXT}


def _tower(layers: int = 2) -> dict:
    return {"hidden_size": WIDTH, "intermediate_size": 4 * WIDTH, "num_hidden_layers": layers, "num_attention_heads": 2}


def _save_hf(model, processor, folder: Path) -> dict:
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    processor.image_processor.save_pretrained(folder)  # preprocessor_config.json, as published checkpoints have it
    return {"model": str(folder)}


def build_clip(folder: Path, seed: int) -> dict:
    """CLIPModel with projection_dim (24) unlike the towers' hidden sizes (32 and 40), 32-pixel images in 4-pixel
    patches, CLIP's shortest-edge resize and centre crop."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tok = _tokenizer()
    config = CLIPConfig(
        text_config={**_tower(), **_text_ids(tok), "hidden_size": 40, "intermediate_size": 80},
        vision_config={**_tower(), "image_size": 32, "patch_size": 4}, projection_dim=24)
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                image_mean=CLIP_MEAN, image_std=CLIP_STD)
    return _save_hf(model, CLIPProcessor(image_processor=images, tokenizer=tok), folder)


def _sigmoid_init(model):
    """The SigLIP paper's initial temperature and bias (scale 10, bias -10), where transformers starts at 1 and 0: a
    bias that is not 0 is what tells the sigmoid head from a softmax."""
    with torch.no_grad():
        model.logit_scale.fill_(math.log(10.0))
        model.logit_bias.fill_(-10.0)
    return model


def build_siglip(folder: Path, seed: int) -> dict:
    """SiglipModel (sigmoid head: logit_scale and logit_bias), 32-pixel images squashed (no crop), 4-pixel patches."""
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor

    tok = _tokenizer()
    config = SiglipConfig(text_config={**_tower(), **_text_ids(tok)},
                          vision_config={**_tower(), "image_size": 32, "patch_size": 4})
    torch.manual_seed(seed)
    model = _sigmoid_init(SiglipModel(config).eval())
    images = SiglipImageProcessor(size={"height": 32, "width": 32}, resample=2, image_mean=SIGLIP_MEAN,
                                  image_std=SIGLIP_STD)
    return _save_hf(model, SiglipProcessor(image_processor=images, tokenizer=tok), folder)


def build_siglip2(folder: Path, seed: int) -> dict:
    """Siglip2Model with its naflex image processor: each image resized to keep its aspect ratio within
    `max_num_patches` (64) patches of 4 pixels, padded, with `pixel_attention_mask` and `spatial_shapes`."""
    from transformers import Siglip2Config, Siglip2ImageProcessor, Siglip2Model, Siglip2Processor

    tok = _gemma_style_tokenizer()
    config = Siglip2Config(text_config={**_tower(), **_text_ids(tok)},
                           vision_config={**_tower(), "patch_size": 4, "num_patches": 64})
    torch.manual_seed(seed)
    model = _sigmoid_init(Siglip2Model(config).eval())
    images = Siglip2ImageProcessor(patch_size=4, max_num_patches=64, image_mean=SIGLIP_MEAN, image_std=SIGLIP_STD)
    return _save_hf(model, Siglip2Processor(image_processor=images, tokenizer=tok), folder)


def _save_open_clip(folder: Path, seed: int, model_cfg: dict, preprocess: dict) -> dict:
    import open_clip
    from safetensors.torch import save_file

    tok = _tokenizer()
    model_cfg = json.loads(json.dumps(model_cfg))
    model_cfg["text_cfg"]["hf_tokenizer_name"] = "mmtests-word-tokenizer"  # local-dir: the tokenizer beside it
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess},
                                                             indent=2))
    torch.manual_seed(seed)
    model = open_clip.create_model(f"local-dir:{folder}", load_weights=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    tok.save_pretrained(folder)
    return {"model": f"local-dir:{folder}"}


def _open_clip_text(**extra) -> dict:
    return {"context_length": CONTEXT, "vocab_size": VOCAB_SIZE, "width": WIDTH, "heads": 2, "layers": 2, **extra}


def build_open_clip_siglip(folder: Path, seed: int) -> dict:
    """open_clip's SigLIP recipe (CustomTextCLIP with `init_logit_bias`, a text tower without causal mask pooled at
    the last position, projection with bias), a native ViT of 32 pixels in 4-pixel patches, images squashed."""
    cfg = {"embed_dim": WIDTH, "init_logit_bias": -10, "custom_text": True,
           "vision_cfg": {"image_size": 32, "patch_size": 4, "layers": 2, "width": WIDTH, "head_width": 16},
           "text_cfg": _open_clip_text(no_causal_mask=True, pool_type="last", proj_bias=True,
                                       norm_kwargs={"eps": 1e-6})}
    preprocess = {"mean": SIGLIP_MEAN, "std": SIGLIP_STD, "interpolation": "bicubic", "resize_mode": "squash"}
    return _save_open_clip(folder, seed, cfg, preprocess)


def build_open_clip_coca(folder: Path, seed: int) -> dict:
    """open_clip's CoCa (attentional pooling in the image tower, a class token appended to the text, a multimodal
    decoder), tiny."""
    text = _open_clip_text(embed_cls=True, output_tokens=True)
    cfg = {"embed_dim": WIDTH, "custom_text": True,
           "vision_cfg": {"image_size": 32, "patch_size": 4, "layers": 2, "width": WIDTH, "head_width": 16,
                          "attentional_pool": True, "attn_pooler_heads": 2, "output_tokens": True},
           "text_cfg": text,
           "multimodal_cfg": {"context_length": CONTEXT, "vocab_size": VOCAB_SIZE, "width": WIDTH, "heads": 2,
                              "layers": 2, "attn_pooler_heads": 2}}
    preprocess = {"mean": CLIP_MEAN, "std": CLIP_STD, "interpolation": "bicubic", "resize_mode": "shortest"}
    return _save_open_clip(folder, seed, cfg, preprocess)


DUAL: tuple = (
    Family("clip", "dual", "hf_clip", build_clip, "CLIPModel, projection 24 != hidden 32/40, 4-pixel patches"),
    Family("siglip", "dual", "hf_clip", build_siglip, "SiglipModel: sigmoid head with logit bias, squash resize"),
    Family("siglip2", "dual", "hf_clip", build_siglip2,
           "Siglip2Model: naflex patches (max_num_patches 64) with pixel_attention_mask and spatial_shapes"),
    Family("open-clip-siglip", "dual", "open_clip", build_open_clip_siglip,
           "open_clip CustomTextCLIP with logit bias, last-token pooled text without causal mask"),
    Family("open-clip-coca", "dual", "open_clip", build_open_clip_coca,
           "open_clip CoCa: attentional pooling, text class token, multimodal decoder"),
)
