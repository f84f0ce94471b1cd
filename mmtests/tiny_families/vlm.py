"""Tiny vision-language models (LLaVA-1.5/NeXT/OneVision, Qwen2/2.5-VL, Idefics3/SmolVLM, PaliGemma, Gemma 3,
Mllama), built from transformers' config classes with small sizes (as transformers' own tests build them): a
two-layer language model of width 32 to 64, a two-layer vision tower on 32-pixel tiles or patches of 8 pixels, the
family's real processor (image processor with small sizes, so a 64-pixel shapes image becomes a few tiles or a few
dozen tokens) and a word-level tokenizer over the shapes world's words with the family's special tokens."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..data.facts import OBJECTS, POSITIONS
from ..data.shapes_qa import NUMBERS, PHRASINGS
from . import Family
from .tokenizer import build_word_tokenizer

VOCAB = 160  # specials + the shapes words (~90) + unused slots; EOS is the last id
MAX_LENGTH = 512
TILE, PATCH = 32, 8  # vision tiles (or the dynamic-resolution patch budget) and patches, in pixels
TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=8, max_position_embeddings=MAX_LENGTH)
SIGLIP = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=TILE,
              patch_size=PATCH)
CLIP = dict(SIGLIP, projection_dim=32)
MEAN, STD = [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]


def words() -> list[str]:
    """Every word the shapes-world questions and answers use, and the chat templates' role words."""
    text = [p for ps in PHRASINGS.values() for p in ps] + list(OBJECTS) + [p for row in POSITIONS for p in row]
    text += [*NUMBERS, "user", "assistant", "model", "yes", "no", "big", "small", "a", "an", "and", "the", "in", ":"]
    return sorted({w for t in text for w in re.findall(r"\w+|[^\w\s]", t.lower().replace("{o}", ""))})


def template(user: str, image: str, end: str, assistant: str) -> str:
    """A chat template: `user`, the image marker(s), the text, `end`; `assistant` opens the model's turn."""
    content = ("{% if message['content'] is string %}{{ message['content'] }}{% else %}"
               "{% for item in message['content'] %}{% if item['type'] == 'image' %}" + image + "{% endif %}{% endfor %}"
               "{% for item in message['content'] %}{% if item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
               "{% endfor %}{% endif %}")
    return ("{% for message in messages %}{% if message['role'] == 'user' %}" + user + content + end +
            "{% else %}" + assistant + content + end + "{% endif %}{% endfor %}"
            "{% if add_generation_prompt %}" + assistant + "{% endif %}")


LLAVA_TEMPLATE = template("USER: ", "<image>\n", " ", "ASSISTANT:")
QWEN_TEMPLATE = template("<|im_start|>user\n", "<|vision_start|><|image_pad|><|vision_end|>", "<|im_end|>\n",
                         "<|im_start|>assistant\n")
IDEFICS_TEMPLATE = template("<|im_start|>User:", "<image>", "<end_of_utterance>\n", "Assistant:")
GEMMA_TEMPLATE = template("<start_of_turn>user\n", "<start_of_image>", "<end_of_turn>\n", "<start_of_turn>model\n")
MLLAMA_TEMPLATE = template("<|start_header_id|>user<|end_header_id|>\n\n", "<|image|>", "<|eot_id|>",
                           "<|start_header_id|>assistant<|end_header_id|>\n\n")


def tokenizer(specials: tuple[str, ...], **kwargs):
    return build_word_tokenizer(words(), VOCAB, MAX_LENGTH, append_eos=False, extra_specials=specials,
                                padding_side="left", **kwargs)


def ids(tok) -> dict:
    return dict(vocab_size=VOCAB, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id)


def save(folder: Path, seed: int, processor, make_model) -> dict:
    """Seeded weights (same seed, same model), saved with the processor; generation pads with the pad token."""
    torch.manual_seed(seed)
    model = make_model()
    tok = processor.tokenizer
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.bos_token_id = tok.bos_token_id
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return {"model": str(folder)}


def _clip_processor():
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": TILE}, crop_size={"height": TILE, "width": TILE},
                              image_mean=MEAN, image_std=STD)


def _llava(folder: Path, seed: int, language: str) -> dict:
    import transformers as tf
    from transformers import CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    tok = tokenizer(("<image>",))
    processor = LlavaProcessor(image_processor=_clip_processor(), tokenizer=tok, patch_size=PATCH,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=LLAVA_TEMPLATE)
    config = LlavaConfig(vision_config=CLIPVisionConfig(**CLIP), text_config=getattr(tf, language)(**TEXT, **ids(tok)),
                         image_token_index=tok.convert_tokens_to_ids("<image>"), vision_feature_layer=-2,
                         vision_feature_select_strategy="default", image_seq_length=(TILE // PATCH) ** 2)
    return save(folder, seed, processor, lambda: LlavaForConditionalGeneration(config))


def llava(folder: Path, seed: int) -> dict:
    return _llava(folder, seed, "LlamaConfig")


def llava_qwen2(folder: Path, seed: int) -> dict:
    return _llava(folder, seed, "Qwen2Config")


PINPOINTS = [[TILE, TILE], [TILE, 2 * TILE], [2 * TILE, TILE], [2 * TILE, 2 * TILE]]


def llava_next(folder: Path, seed: int) -> dict:
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
    )

    tok = tokenizer(("<image>",))
    ip = LlavaNextImageProcessor(size={"shortest_edge": TILE}, crop_size={"height": TILE, "width": TILE},
                                 image_grid_pinpoints=PINPOINTS, image_mean=MEAN, image_std=STD)
    processor = LlavaNextProcessor(image_processor=ip, tokenizer=tok, patch_size=PATCH,
                                   vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                   chat_template=LLAVA_TEMPLATE)
    config = LlavaNextConfig(vision_config=CLIPVisionConfig(**CLIP), text_config=LlamaConfig(**TEXT, **ids(tok)),
                             image_token_index=tok.convert_tokens_to_ids("<image>"), image_grid_pinpoints=PINPOINTS,
                             vision_feature_layer=-2, vision_feature_select_strategy="default",
                             image_seq_length=(TILE // PATCH) ** 2)
    return save(folder, seed, processor, lambda: LlavaNextForConditionalGeneration(config))


def llava_onevision(folder: Path, seed: int) -> dict:
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
        Qwen2Config,
        SiglipVisionConfig,
    )

    tok = tokenizer(("<image>", "<video>"))
    ip = LlavaOnevisionImageProcessor(size={"height": TILE, "width": TILE}, image_grid_pinpoints=PINPOINTS,
                                      image_mean=MEAN, image_std=STD)
    processor = LlavaOnevisionProcessor(image_processor=ip, tokenizer=tok, video_processor=LlavaOnevisionVideoProcessor(),
                                        num_image_tokens=(TILE // PATCH) ** 2,
                                        vision_feature_select_strategy="full", chat_template=LLAVA_TEMPLATE)
    config = LlavaOnevisionConfig(vision_config=SiglipVisionConfig(**SIGLIP), text_config=Qwen2Config(**TEXT, **ids(tok)),
                                  image_token_index=tok.convert_tokens_to_ids("<image>"),
                                  video_token_index=tok.convert_tokens_to_ids("<video>"), image_grid_pinpoints=PINPOINTS,
                                  vision_feature_layer=-1, vision_feature_select_strategy="full",
                                  vision_aspect_ratio="anyres_max_9")
    return save(folder, seed, processor, lambda: LlavaOnevisionForConditionalGeneration(config))


QWEN_SPECIALS = ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")


def _qwen(folder: Path, seed: int, version: str) -> dict:
    import transformers as tf

    tok = tokenizer(QWEN_SPECIALS)
    ip = tf.Qwen2VLImageProcessor(patch_size=PATCH, merge_size=2, temporal_patch_size=2, image_mean=MEAN, image_std=STD,
                                  size={"shortest_edge": 4 * PATCH * PATCH, "longest_edge": 64 * 64})
    special = {k: tok.convert_tokens_to_ids(v) for k, v in (("image_token_id", "<|image_pad|>"),
               ("video_token_id", "<|video_pad|>"), ("vision_start_token_id", "<|vision_start|>"),
               ("vision_end_token_id", "<|vision_end|>"))}
    text = dict(TEXT, **ids(tok), rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                   "mrope_section": [1, 1, 2]})
    vision = dict(depth=2, num_heads=2, patch_size=PATCH, spatial_merge_size=2, temporal_patch_size=2)
    if version == "2":
        processor = tf.Qwen2VLProcessor(image_processor=ip, tokenizer=tok, video_processor=tf.Qwen2VLVideoProcessor(),
                                        chat_template=QWEN_TEMPLATE)
        config = tf.Qwen2VLConfig(text_config=text, vision_config=dict(vision, embed_dim=32, hidden_size=32),
                                  **special)
        return save(folder, seed, processor, lambda: tf.Qwen2VLForConditionalGeneration(config))
    processor = tf.Qwen2_5_VLProcessor(image_processor=ip, tokenizer=tok, video_processor=tf.Qwen2VLVideoProcessor(),
                                       chat_template=QWEN_TEMPLATE)
    config = tf.Qwen2_5_VLConfig(text_config=text, vision_config=dict(vision, hidden_size=32, intermediate_size=64,
                                                                       out_hidden_size=32, window_size=2 * TILE,
                                                                       fullatt_block_indexes=[1]), **special)
    return save(folder, seed, processor, lambda: tf.Qwen2_5_VLForConditionalGeneration(config))


def qwen2_vl(folder: Path, seed: int) -> dict:
    return _qwen(folder, seed, "2")


def qwen2_5_vl(folder: Path, seed: int) -> dict:
    return _qwen(folder, seed, "2.5")


# Idefics3 / SmolVLM: images split into TILE-pixel tiles (up to 2x2 for a 64-pixel image) plus a global view,
# each tile's tokens framed by <fake_token_around_image> and named by a <row_i_col_j> text token.
IDEFICS_SPECIALS = ("<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>", "<|im_start|>",
                    *(f"<row_{r}_col_{c}>" for r in range(1, 5) for c in range(1, 5)))


def _idefics(folder: Path, seed: int, smol: bool) -> dict:
    import transformers as tf

    tok = tokenizer(IDEFICS_SPECIALS)
    scale = 2
    seq = (TILE // PATCH) ** 2 // scale ** 2
    kw = dict(size={"longest_edge": 2 * TILE}, max_image_size={"longest_edge": TILE}, do_image_splitting=True,
              image_mean=MEAN, image_std=STD)
    vision = dict(SIGLIP)
    text = dict(TEXT, **ids(tok))
    image_id = tok.convert_tokens_to_ids("<image>")
    if smol:
        processor = tf.SmolVLMProcessor(image_processor=tf.SmolVLMImageProcessor(**kw), tokenizer=tok,
                                        video_processor=tf.SmolVLMVideoProcessor(), image_seq_len=seq,
                                        chat_template=IDEFICS_TEMPLATE)
        config = tf.SmolVLMConfig(vision_config=vision, text_config=dict(text, model_type="llama"),
                                  scale_factor=scale, image_token_id=image_id)
        return save(folder, seed, processor, lambda: tf.SmolVLMForConditionalGeneration(config))
    processor = tf.Idefics3Processor(image_processor=tf.Idefics3ImageProcessor(**kw), tokenizer=tok, image_seq_len=seq,
                                     chat_template=IDEFICS_TEMPLATE)
    config = tf.Idefics3Config(vision_config=vision, text_config=dict(text, model_type="llama"), scale_factor=scale,
                               image_token_id=image_id)
    return save(folder, seed, processor, lambda: tf.Idefics3ForConditionalGeneration(config))


def idefics3(folder: Path, seed: int) -> dict:
    return _idefics(folder, seed, smol=False)


def smolvlm(folder: Path, seed: int) -> dict:
    return _idefics(folder, seed, smol=True)


def paligemma(folder: Path, seed: int) -> dict:
    """A prefix-LM: the image tokens, BOS and the prompt attend both ways; no chat template, by design."""
    from transformers import (
        GemmaConfig,
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessor,
        SiglipVisionConfig,
    )

    tok = tokenizer(("<image>",), extra_special_tokens={"image_token": "<image>"})
    ip = SiglipImageProcessor(size={"height": TILE, "width": TILE}, image_mean=MEAN, image_std=STD)
    ip.image_seq_length = (TILE // PATCH) ** 2
    processor = PaliGemmaProcessor(image_processor=ip, tokenizer=tok)
    config = PaliGemmaConfig(vision_config=SiglipVisionConfig(**SIGLIP, projection_dim=32),
                             text_config=GemmaConfig(**TEXT, **ids(tok)), projection_dim=32,
                             image_token_index=tok.convert_tokens_to_ids("<image>"))
    return save(folder, seed, processor, lambda: PaliGemmaForConditionalGeneration(config))


GEMMA_SPECIALS = ("<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>", "<image_soft_token>")


def gemma3(folder: Path, seed: int) -> dict:
    """Gemma 3 pools each image's patch grid (8x8 here) to `mm_tokens_per_image` tokens (4x4), which attend both ways
    (4x4, not fewer: a shapes object's box must hold some token centres and not all for localization to be defined)."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessor, Gemma3Processor

    tok = tokenizer(GEMMA_SPECIALS, extra_special_tokens={"image_token": "<image_soft_token>",
                                                          "boi_token": "<start_of_image>",
                                                          "eoi_token": "<end_of_image>"})
    ip = Gemma3ImageProcessor(size={"height": 2 * TILE, "width": 2 * TILE}, image_mean=MEAN, image_std=STD,
                              do_pan_and_scan=False)
    processor = Gemma3Processor(image_processor=ip, tokenizer=tok, image_seq_length=16, chat_template=GEMMA_TEMPLATE)
    text = dict(TEXT, **ids(tok), sliding_window=64, layer_types=["sliding_attention", "full_attention"])
    config = Gemma3Config(text_config=text, vision_config=dict(SIGLIP, image_size=2 * TILE,
                                                                model_type="siglip_vision_model"),
                          mm_tokens_per_image=16, boi_token_index=tok.convert_tokens_to_ids("<start_of_image>"),
                          eoi_token_index=tok.convert_tokens_to_ids("<end_of_image>"),
                          image_token_index=tok.convert_tokens_to_ids("<image_soft_token>"))
    return save(folder, seed, processor, lambda: Gemma3ForConditionalGeneration(config))


MLLAMA_SPECIALS = ("<|image|>", "<|python_tag|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")


def mllama(folder: Path, seed: int) -> dict:
    """Mllama's text sequence holds one <|image|> token; its cross-attention layers attend over the vision tokens."""
    from transformers import MllamaConfig, MllamaForConditionalGeneration, MllamaImageProcessor, MllamaProcessor

    tok = tokenizer(MLLAMA_SPECIALS)
    ip = MllamaImageProcessor(size={"height": TILE, "width": TILE}, max_image_tiles=4, image_mean=MEAN, image_std=STD)
    processor = MllamaProcessor(image_processor=ip, tokenizer=tok, chat_template=MLLAMA_TEMPLATE)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_global_layers=1, attention_heads=2,
                  image_size=TILE, patch_size=PATCH, max_num_tiles=4, intermediate_layers_indices=[0],
                  vision_output_dim=64)
    text = dict(TEXT, **ids(tok), num_hidden_layers=3, cross_attention_layers=[1])
    config = MllamaConfig(vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids("<|image|>"))
    return save(folder, seed, processor, lambda: MllamaForConditionalGeneration(config))


VLM: tuple = (
    Family("llava", "vlm", "llava", llava, "LLaVA-1.5: CLIP tower, one patch grid per image, Llama"),
    Family("llava-qwen2", "vlm", "llava", llava_qwen2, "LLaVA-1.5 with a Qwen2 language model: one grid per image"),
    Family("llava-next", "vlm", "llava", llava_next, "anyres tiles plus a base view, a newline token per tile row"),
    Family("llava-onevision", "vlm", "llava", llava_onevision, "SigLIP tiles (anyres_max_9), Qwen2 language model"),
    Family("qwen2-vl", "vlm", "llava", qwen2_vl, "dynamic resolution: 2x2 merged patches, image_grid_thw"),
    Family("qwen2-5-vl", "vlm", "llava", qwen2_5_vl, "dynamic resolution with windowed vision attention"),
    Family("idefics3", "vlm", "llava", idefics3, "tiles and a global view, row/col text tokens between image tokens"),
    Family("smolvlm", "vlm", "llava", smolvlm, "Idefics3's layout; its processor needs num2words (extra 'smolvlm')"),
    Family("paligemma", "vlm", "llava", paligemma, "prefix-LM without a chat template: image and prompt attend both ways"),
    Family("gemma3", "vlm", "llava", gemma3, "pooled image tokens attending both ways, one image list per sample"),
    Family("mllama", "vlm", "llava", mllama, "cross-attention over tiles; one <|image|> token in the text"),
)
