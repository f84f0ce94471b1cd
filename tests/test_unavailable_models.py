"""Real checkpoints that cannot be had here are skipped with the reason, and the reason is recorded; local ones
that do not exist or do not load are an EntryError naming the entry, the file and the fix."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from mmtests.adapters import ModelUnavailable, load_dual_encoder
from mmtests.config import ModelSpec
from mmtests.errors import EntryError

MATRIX = """
[models.vitb32-openai]
backend = "open_clip"
model = "ViT-B-32"
pretrained = "openai"

[models.hf-clip-b32]
backend = "hf_clip"
model = "openai/clip-vit-base-patch32"

[datasets.shapes-mini]
source = "shapes"
split = "test"
label_column = "shape"
size = 8

[prompt_sets.bare]
templates = ["{}"]

[[zero_shot]]
dataset = "shapes-mini"
prompt_set = "bare"
min_top1 = 0.9
"""


def test_missing_checkpoints_skip_with_reason_and_are_recorded(pytester, tmp_path):
    matrix = pytester.makefile(".toml", matrix=MATRIX)
    records = tmp_path / "records.jsonl"
    result = pytester.runpytest_subprocess(
        "--pyargs", "mmtests.suites", f"--mm-config={matrix}", f"--mm-records={records}", "-rs", "-k", "top1",
    )
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines([
        "*open_clip model 'ViT-B-32' with pretrained 'openai' could not be loaded here*",
        "*Hugging Face model 'openai/clip-vit-base-patch32' is not available here*",
    ])
    skips = [json.loads(line) for line in records.read_text().splitlines() if '"outcome": "skip"' in line]
    assert {s["test_id"] for s in skips} == {"vitb32-openai/shapes-mini/bare", "hf-clip-b32/shapes-mini/bare"}


# A local checkpoint that is missing or broken is not "unavailable here": it is an EntryError naming the entry,
# the file and the fix. The committed tiny models are copied and damaged (each loads in about a second).
ZOO = Path(__file__).resolve().parents[1] / "mmtests" / "zoo"
CPU = torch.device("cpu")


def copy(tmp_path, part: str) -> Path:
    return Path(shutil.copytree(ZOO / part, tmp_path / Path(part).name))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def edit_json(path: Path, change) -> None:
    config = json.loads(path.read_text())
    change(config)
    path.write_text(json.dumps(config))


def open_clip_spec(model: str, pretrained: str | None = None) -> ModelSpec:
    return ModelSpec("oc", "open_clip", model, pretrained)


def test_open_clip_folder_that_does_not_exist(tmp_path):
    with pytest.raises(EntryError, match=r"\[models.oc\]: open_clip folder '.*nope' .* does not exist; fix the path"):
        load_dual_encoder(open_clip_spec(f"local-dir:{tmp_path / 'nope'}"), CPU)


@pytest.mark.parametrize(("damage", "message"), [
    (lambda d: truncate(d / "open_clip_model.safetensors"),
     r"\[models.oc\]: open_clip_model.safetensors in '.*' cannot be loaded by open_clip \(SafetensorError"),
    (lambda d: edit_json(d / "open_clip_config.json", lambda c: c["model_cfg"]["vision_cfg"].update(layers=5)),
     r"cannot be loaded by open_clip \(RuntimeError: Error\(s\) in loading state_dict for CLIP: Missing key"),
    (lambda d: edit_json(d / "open_clip_config.json", lambda c: c["model_cfg"]["vision_cfg"].update(width=64)),
     r"cannot be loaded by open_clip \(RuntimeError: .* size mismatch"),
    (lambda d: (d / "open_clip_model.safetensors").unlink(),
     r"open_clip folder '.*' has no weights file \(\*.safetensors, \*.bin\); it holds open_clip_config.json, "),
    (lambda d: (d / "tokenizer.json").unlink(),
     r"names a Hugging Face tokenizer \('mmtests-word-tokenizer'\) but holds no tokenizer files \(tokenizer.json, "),
    (lambda d: (d / "tokenizer.json").write_text("{}"),
     r"the tokenizer files \(tokenizer.json, tokenizer_config.json\) in '.*' cannot be loaded \(KeyError"),
])
def test_open_clip_folder_that_does_not_load(tmp_path, damage, message):
    folder = copy(tmp_path, "tiny-clip/open_clip")
    damage(folder)
    with pytest.raises(EntryError, match=message):
        load_dual_encoder(open_clip_spec(f"local-dir:{folder}"), CPU)


@pytest.mark.parametrize(("model", "pretrained", "message"), [
    ("ViT-B-23", None, r"open_clip has no model config 'ViT-B-23' \(close: ViT-B-32"),
    ("ViT-B-32", "opneai", r"open_clip has no pretrained tag 'opneai' for 'ViT-B-32' \(known: openai, "),
    ("ViT-B-32", "./weights/none.safetensors", r"pretrained weights file './weights/none.safetensors' does not exist"),
])
def test_open_clip_names_and_files_that_do_not_exist(model, pretrained, message):
    with pytest.raises(EntryError, match=message):
        load_dual_encoder(open_clip_spec(model, pretrained), CPU)


def test_a_weights_file_that_does_not_fit_the_config_names_the_file(tmp_path):
    weights = copy(tmp_path, "tiny-clip/open_clip") / "open_clip_model.safetensors"
    with pytest.raises(EntryError, match=rf"\[models.oc\]: '{weights}' cannot be loaded by open_clip"):
        load_dual_encoder(open_clip_spec("ViT-B-32", str(weights)), CPU)


def hf_spec(model) -> ModelSpec:
    return ModelSpec("hf", "hf_clip", str(model))


def test_hf_clip_folder_that_does_not_exist(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(EntryError, match=r"\[models.hf\]: model folder './nope' does not exist .*; fix the path in"):
        load_dual_encoder(hf_spec("./nope"), CPU)


@pytest.mark.parametrize(("damage", "message"), [
    (lambda d: truncate(d / "model.safetensors"), r"\[models.hf\]: '.*/model.safetensors' cannot be loaded \(SafetensorError"),
    (lambda d: (d / "model.safetensors").write_bytes(b"garbage" * 10), r"'.*/model.safetensors' cannot be loaded"),
    (lambda d: (d / "model.safetensors").unlink(), r"has no weights file \(model.safetensors or pytorch_model.bin;"),
    (lambda d: edit_json(d / "config.json", lambda c: c["text_config"].update(num_hidden_layers=4)),
     r"the weights of '.*/model.safetensors' do not fit the architecture in '.*/config.json': 16 weights missing "
     r"from the checkpoint \(text_model.encoder.layers.3"),
    (lambda d: edit_json(d / "config.json", lambda c: c["text_config"].update(num_hidden_layers=2)),
     r"16 weights not in the model \(text_model.encoder.layers.2"),
    (lambda d: edit_json(d / "config.json", lambda c: c["vision_config"].update(intermediate_size=100)),
     r"weights of another shape than the config's \(vision_model.*\(checkpoint \[\d+, \d+\], config \["),
    (lambda d: [(d / f).unlink() for f in ("tokenizer.json", "tokenizer_config.json")],
     r"has no tokenizer files \(tokenizer.json, .*; it holds config.json, model.safetensors, preprocessor_config.json\)"),
    (lambda d: (d / "tokenizer.json").write_text("{}"), r"tokenizer.json, tokenizer_config.json in '.*' cannot be loaded"),
    (lambda d: (d / "preprocessor_config.json").unlink(), r"has no image processor settings \(processor_config.json or "
     r"preprocessor_config.json; it holds config.json, model.safetensors, tokenizer.json, tokenizer_config.json\)"),
    (lambda d: (d / "preprocessor_config.json").write_text("{"), r"'.*/preprocessor_config.json' cannot be loaded"),
])
def test_hf_clip_folder_that_does_not_load(tmp_path, damage, message):
    folder = copy(tmp_path, "tiny-clip/hf")
    damage(folder)
    with pytest.raises(EntryError, match=message):
        load_dual_encoder(hf_spec(folder), CPU)


def test_llava_folder_that_does_not_load_and_hub_id_not_here(tmp_path):
    from mmtests.adapters.llava import VisionLanguageModel

    folder = copy(tmp_path, "tiny-llava")
    with pytest.raises(EntryError, match=r"\[models.vlm\]: model folder '.*nope' does not exist"):
        VisionLanguageModel(str(tmp_path / "nope"), CPU, entry="vlm")
    edit_json(folder / "config.json", lambda c: c["text_config"].update(num_hidden_layers=5))
    with pytest.raises(EntryError, match=r"\[models.vlm\]: the weights of .* do not fit .* missing from the checkpoint "
                                         r"\(model.language_model.layers.4"):
        VisionLanguageModel(str(folder), CPU, entry="vlm")
    (folder / "tokenizer.json").unlink()
    with pytest.raises(EntryError, match=r"\[models.vlm\]: model folder '.*' has no tokenizer files"):
        VisionLanguageModel(str(folder), CPU, entry="vlm")
    with pytest.raises(ModelUnavailable, match=r"\[models.vlm\]: Hugging Face model 'mmtests-nobody/no-such-llava' "
                                               r"is not available here .*pass --mm-online"):
        VisionLanguageModel("mmtests-nobody/no-such-llava", CPU, entry="vlm", online=False)


def test_a_local_model_that_does_not_exist_fails_with_the_fix_not_a_skip(pytester, tmp_path):
    matrix = pytester.makefile(".toml", matrix=MATRIX.replace('"openai/clip-vit-base-patch32"', '"./gone"'))
    result = pytester.runpytest_subprocess("--pyargs", "mmtests.suites", f"--mm-config={matrix}", "-k", "hf-clip-b32 and top1")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*[[]models.hf-clip-b32[]]: model folder './gone' does not exist*fix the path in*"])
    assert "Traceback" not in result.stdout.str()
