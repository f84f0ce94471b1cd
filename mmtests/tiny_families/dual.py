"""Tiny dual encoders (CLIP, SigLIP, SigLIP 2, open_clip variants)."""

from __future__ import annotations

DUAL: tuple = ()
