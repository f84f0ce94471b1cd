"""Which backend a local model folder is for, read from its files before any weights load: `open_clip_config.json`
(open_clip's layout) or `config.json`'s `model_type` / `architectures` (Hugging Face). An entry whose backend does
not fit its folder is refused with the backend to use, instead of failing later for a reason that misleads."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import EntryError


@dataclass(frozen=True)
class Family:
    """What a folder holds: `said` for messages, `evidence` (the file and field read), the backends that load it
    (none: a model no backend of mmtests runs) and the `model` value each takes."""

    said: str
    evidence: str
    backends: tuple[str, ...]
    folder: str

    def model_value(self, backend: str) -> str:
        return f"local-dir:{self.folder}" if backend == "open_clip" else self.folder


def _hf_types() -> tuple[set[str], set[str], set[str]]:
    """model_type values: dual encoders (zero-shot image classification), image-text-to-text models, all known."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
        MODEL_FOR_ZERO_SHOT_IMAGE_CLASSIFICATION_MAPPING_NAMES,
    )

    return (set(MODEL_FOR_ZERO_SHOT_IMAGE_CLASSIFICATION_MAPPING_NAMES), set(MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES),
            set(CONFIG_MAPPING_NAMES))


def _hf_family(folder: Path) -> Family | None:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None  # unreadable: the loader names the file
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if not isinstance(model_type, str):
        return None
    architectures = config.get("architectures") or []
    evidence = f"config.json model_type {model_type!r}" + (
        f", architectures {', '.join(map(str, architectures))}" if isinstance(architectures, list) and architectures else "")
    dual, vlm, known = _hf_types()
    if model_type in vlm:
        name = "LLaVA" if model_type == "llava" else f"vision-language ({model_type})"
        return Family(f"a {name} checkpoint", evidence, ("llava",), str(folder))
    if model_type in dual:
        return Family(f"a Hugging Face {model_type.upper() if model_type == 'clip' else model_type} dual encoder "
                      "checkpoint", evidence, ("hf_clip",), str(folder))
    if model_type in known:
        return Family(f"a Hugging Face {model_type!r} checkpoint", evidence, (), str(folder))
    return None  # a model_type this transformers does not know: no opinion, the loader says what it can


def family_of(folder: str | Path) -> Family | None:
    """The family of the model in a local folder, from its files alone; None when it is not a folder or does not
    say (the loader then reports what is missing)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        return None
    hf = _hf_family(folder) if (folder / "config.json").is_file() else None
    if (folder / "open_clip_config.json").is_file():
        backends = ("open_clip", *(hf.backends if hf else ()))
        return Family("an open_clip checkpoint", "open_clip_config.json", backends, str(folder))
    return hf


def check_backend(entry: str | None, backend: str, model: str) -> None:
    """An EntryError naming the folder's family and the backend to use, when the entry's backend does not fit the
    local folder its `model` names; nothing for hub ids, and for folders that do not say what they hold."""
    family = family_of(model.removeprefix("local-dir:"))
    if family is None or backend in family.backends:
        return
    where = f"[models.{entry}]" if entry else f"the model entry with model = {model!r}"
    said = f"{where}: model folder {family.folder!r} holds {family.said} ({family.evidence})"
    if not family.backends:
        raise EntryError(f"{said}, which no backend of mmtests runs: 'hf_clip' takes dual encoders (CLIP, SigLIP, ...), "
                         "'llava' image-text-to-text models; point 'model' at such a checkpoint")
    use = family.backends[0]
    raise EntryError(f'{said}; use backend "{use}" with model = "{family.model_value(use)}" in {where}')
