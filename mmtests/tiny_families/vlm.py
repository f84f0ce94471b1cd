"""Tiny vision-language models (LLaVA-1.5/NeXT/OneVision, Qwen2/2.5-VL, Idefics3/SmolVLM, PaliGemma, Gemma 3,
Mllama)."""

from __future__ import annotations

VLM: tuple = ()
