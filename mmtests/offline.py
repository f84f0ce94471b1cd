"""Hub access scoped to mmtests' own loading: offline by default, and only while mmtests loads.

Setting HF_HUB_OFFLINE for the whole process would change every other test of an environment where
mmtests is installed (its pytest plugin loads in every pytest run), so the switch is flipped around
mmtests' loads and put back after.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
# Libraries read these once at import; their module-level copies are switched too while loading.
_CONSTANTS = (("huggingface_hub.constants", "HF_HUB_OFFLINE"), ("datasets.config", "HF_HUB_OFFLINE"),
              ("datasets.config", "HF_DATASETS_OFFLINE"))


@contextmanager
def hub_access(online: bool) -> Iterator[None]:
    """Within the block, hubs are offline unless `online`."""
    if online:
        yield
        return
    saved_env = {v: os.environ.get(v) for v in _ENV}
    saved = []
    for module, name in _CONSTANTS:
        mod = sys.modules.get(module)
        if mod is not None and hasattr(mod, name):
            saved.append((mod, name, getattr(mod, name)))
            setattr(mod, name, True)
    os.environ.update({v: "1" for v in _ENV})
    try:
        yield
    finally:
        for mod, name, value in saved:
            setattr(mod, name, value)
        for v, value in saved_env.items():
            if value is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = value
