"""A model folder of another family than its entry's backend is named as such, with the backend to use, before any
weights load: every (backend, folder family) pair, with the zoo's folders and folders holding only a config file."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from mmtests.adapters import load_dual_encoder
from mmtests.adapters.family import family_of
from mmtests.adapters.llava import VisionLanguageModel
from mmtests.config import BACKENDS, ModelSpec
from mmtests.errors import EntryError

ZOO = Path(__file__).resolve().parents[1] / "mmtests" / "zoo"
CPU = torch.device("cpu")
# Folder kind -> (how to make it, the backends that load it, what the message says it holds).
CONFIG_ONLY = {
    "llava config": ({"model_type": "llava", "architectures": ["LlavaForConditionalGeneration"]}, ("llava",),
                     "a LLaVA checkpoint (config.json model_type 'llava', architectures LlavaForConditionalGeneration)"),
    "llava-next config": ({"model_type": "llava_next"}, ("llava",),
                          "a vision-language (llava_next) checkpoint (config.json model_type 'llava_next')"),
    "clip config": ({"model_type": "clip", "architectures": ["CLIPModel"]}, ("hf_clip",),
                    "a Hugging Face CLIP dual encoder checkpoint (config.json model_type 'clip', architectures CLIPModel)"),
    "siglip config": ({"model_type": "siglip"}, ("hf_clip",),
                      "a Hugging Face siglip dual encoder checkpoint (config.json model_type 'siglip')"),
    "bert config": ({"model_type": "bert"}, (), "a Hugging Face 'bert' checkpoint (config.json model_type 'bert')"),
}
ZOO_FOLDERS = {
    "zoo open_clip": (ZOO / "tiny-clip" / "open_clip", ("open_clip",), "an open_clip checkpoint (open_clip_config.json)"),
    "zoo hf clip": (ZOO / "tiny-clip" / "hf", ("hf_clip",),
                    "a Hugging Face CLIP dual encoder checkpoint (config.json model_type 'clip', architectures CLIPModel)"),
    "zoo llava": (ZOO / "tiny-llava", ("llava",),
                  "a LLaVA checkpoint (config.json model_type 'llava', architectures LlavaForConditionalGeneration)"),
}
SILENT = {"unknown model_type": {"model_type": "not-a-model-type-anyone-has"}, "no model_type": {"hidden_size": 8},
          "config not a table": [1, 2]}  # folders that do not say: the loaders report what is wrong


def make(kind: str, tmp_path: Path) -> Path:
    folder = tmp_path / kind.replace(" ", "-")
    if kind in ZOO_FOLDERS:
        shutil.copytree(ZOO_FOLDERS[kind][0], folder)  # a copy: the zoo's own folders stay untouched
        return folder
    folder.mkdir()
    config = CONFIG_ONLY[kind][0] if kind in CONFIG_ONLY else SILENT[kind]
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def load(backend: str, folder: Path):
    """The entry point of the backend's adapter, as a session calls it."""
    if backend == "llava":
        return VisionLanguageModel(str(folder), CPU, entry="m")
    return load_dual_encoder(ModelSpec("m", backend, f"local-dir:{folder}" if backend == "open_clip" else str(folder)),
                             CPU)


def model_value(backend: str, folder: Path) -> str:
    return f"local-dir:{folder}" if backend == "open_clip" else str(folder)


@pytest.mark.parametrize("kind", [*ZOO_FOLDERS, *CONFIG_ONLY])
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_folder_of_another_family_is_named_with_the_backend_to_use(tmp_path, backend, kind):
    folder = make(kind, tmp_path)
    fits, holds = (ZOO_FOLDERS[kind] if kind in ZOO_FOLDERS else CONFIG_ONLY[kind])[1:]
    if backend in fits:
        if kind in ZOO_FOLDERS:  # the real checkpoint loads
            load(backend, folder)
        return
    with pytest.raises(EntryError) as err:
        load(backend, folder)
    said = f"[models.m]: model folder {str(folder)!r} holds {holds}"
    if fits:
        assert str(err.value) == f'{said}; use backend "{fits[0]}" with model = "{model_value(fits[0], folder)}" in [models.m]'
    else:
        assert str(err.value).startswith(f"{said}, which no backend of mmtests runs: 'hf_clip' takes dual encoders")


@pytest.mark.parametrize("kind", SILENT)
def test_a_folder_that_does_not_say_what_it_holds_is_left_to_the_loader(tmp_path, kind):
    assert family_of(make(kind, tmp_path)) is None


def test_hub_ids_and_missing_folders_have_no_family(tmp_path):
    assert family_of("openai/clip-vit-base-patch32") is None and family_of(tmp_path / "nope") is None


def test_a_folder_with_both_layouts_fits_both_backends(tmp_path):
    folder = make("zoo open_clip", tmp_path)
    (folder / "config.json").write_text(json.dumps({"model_type": "clip"}))
    assert family_of(folder).backends == ("open_clip", "hf_clip")
