"""Detection power on a user's own matrix (`python -m mmtests.faults --mm-config`): each folder fault changes exactly
what it says on a copy of a zoo folder and leaves the original as it was; entries that cannot be measured say why;
the fault matrix is the user's with one entry pointed at the copy. The end-to-end run is marked slow."""

import hashlib
import json
import tomllib
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmtests.config import DEFAULT_CONFIG, load_matrix
from mmtests.faults import ZOO
from mmtests.faults.edits import copy_model
from mmtests.faults.folders import USER_CATALOGUE
from mmtests.faults.user import SAVE_FIRST, fault_matrix, plan, to_toml

FOLDERS = {"open_clip": ZOO / "tiny-clip" / "open_clip", "hf_clip": ZOO / "tiny-clip" / "hf", "llava": ZOO / "tiny-llava"}
OC, HF, LV, PROC = "open_clip_config.json:preprocess_cfg.", "preprocessor_config.json:", "weights:", \
    "processor_config.json:image_processor."


def _under(backend: str, *prefixes: str) -> set[str]:
    tensors = load_file(str(next(FOLDERS[backend].glob("*.safetensors"))))
    return {f"weights:{k}" for k, t in tensors.items() if k.startswith(prefixes) and t.numel() > 1}


OC_TEXT = ("transformer.", "token_embedding", "positional_embedding", "ln_final", "text_projection")
# What each fault changes in each zoo folder: "file:key.path" of JSON leaves, "weights:name" of tensors.
EXPECTED = {
    ("mean-std-changed", "open_clip"): {OC + "mean", OC + "std"},
    ("mean-std-changed", "hf_clip"): {HF + "image_mean", HF + "image_std"},
    ("mean-std-changed", "llava"): {PROC + "image_mean", PROC + "image_std"},
    ("resize-interpolation-changed", "open_clip"): {OC + "interpolation"},
    ("resize-interpolation-changed", "hf_clip"): {HF + "resample"},
    ("resize-interpolation-changed", "llava"): {PROC + "resample"},
    ("centre-crop-dropped", "open_clip"): {OC + "resize_mode"},
    ("centre-crop-dropped", "hf_clip"): {HF + "do_center_crop", HF + "size.shortest_edge", HF + "size.height",
                                         HF + "size.width"},
    ("centre-crop-dropped", "llava"): {PROC + "do_center_crop", PROC + "size.shortest_edge", PROC + "size.height",
                                       PROC + "size.width"},
    ("rgb-bgr-swap", "open_clip"): {"weights:visual.conv1.weight"},
    ("rgb-bgr-swap", "hf_clip"): {"weights:vision_model.embeddings.patch_embedding.weight"},
    ("rgb-bgr-swap", "llava"): {"weights:vision_tower.embeddings.patch_embedding.weight"},
    ("vision-position-embedding-shuffled", "open_clip"): {"weights:visual.positional_embedding"},
    ("vision-position-embedding-shuffled", "hf_clip"): {"weights:vision_model.embeddings.position_embedding.weight"},
    ("vision-position-embedding-shuffled", "llava"): {"weights:vision_tower.embeddings.position_embedding.weight"},
    ("activation-mismatch", "open_clip"): {"open_clip_config.json:model_cfg.quick_gelu"},
    ("activation-mismatch", "hf_clip"): {"config.json:text_config.hidden_act", "config.json:vision_config.hidden_act"},
    ("logit-scale-dropped", "open_clip"): {"weights:logit_scale"},
    ("logit-scale-dropped", "hf_clip"): {"weights:logit_scale"},
    ("text-projection-rows-shuffled", "open_clip"): {"weights:text_projection"},
    ("text-projection-rows-shuffled", "hf_clip"): {"weights:text_projection.weight"},
    ("tokenizer-context-truncated", "hf_clip"): {"tokenizer_config.json:model_max_length"},
    ("projector-reset", "llava"): _under("llava", "multi_modal_projector."),
    ("wrong-vision-feature-layer", "llava"): {"config.json:vision_feature_layer"},
    ("attention-mask-dropped", "llava"): {"tokenizer_config.json:model_input_names"},
    **{(f"noise-{s}-image-tower", "open_clip"): _under("open_clip", "visual.") for s in (0.01, 0.03, 0.1)},
    **{(f"noise-{s}-image-tower", "hf_clip"): _under("hf_clip", "vision_model.", "visual_projection")
       for s in (0.01, 0.03, 0.1)},
    **{(f"noise-{s}-image-tower", "llava"): _under("llava", "vision_tower.") for s in (0.01, 0.03, 0.1)},
    **{(f"noise-{s}-text-tower", "open_clip"): _under("open_clip", *OC_TEXT) for s in (0.01, 0.03, 0.1)},
    **{(f"noise-{s}-text-tower", "hf_clip"): _under("hf_clip", "text_model.", "text_projection")
       for s in (0.01, 0.03, 0.1)},
    **{(f"noise-{s}-language-model", "llava"): _under("llava", "language_model.") for s in (0.01, 0.03, 0.1)},
}


def _leaves(data, path: str = "") -> dict:
    if isinstance(data, dict) and data:
        return {k: v for key, value in data.items() for k, v in _leaves(value, f"{path}{key}.").items()}
    return {path.rstrip("."): data}


def _differences(original: Path, copy: Path) -> set[str]:
    """What differs between two model folders: JSON leaves as "file:key.path", tensors as "weights:name"."""
    out = set()
    for file in sorted(original.iterdir()):
        other = copy / file.name
        if file.suffix == ".json":
            a, b = _leaves(json.loads(file.read_text())), _leaves(json.loads(other.read_text()))
            out |= {f"{file.name}:{k}" for k in a.keys() | b.keys() if a.get(k, "absent") != b.get(k, "absent")}
        elif file.suffix == ".safetensors":
            a, b = load_file(str(file)), load_file(str(other))
            out |= {f"weights:{k}" for k in a if not torch.equal(a[k], b[k])}
        elif file.read_bytes() != other.read_bytes():
            out.add(file.name)
    return out


def _digests(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_every_folder_fault_has_its_expected_changes_on_each_backend_it_applies_to():
    edits = {(f.name, b) for f in USER_CATALOGUE if f.edit is not None for b in f.backends}
    assert edits == set(EXPECTED)


@pytest.mark.parametrize(("name", "backend"), sorted(EXPECTED))
def test_a_folder_fault_changes_exactly_what_it_says_on_a_copy(tmp_path, name, backend):
    fault = next(f for f in USER_CATALOGUE if f.name == name)
    original, before = FOLDERS[backend], _digests(FOLDERS[backend])
    copy_model(original, tmp_path / "copy")
    assert fault.edit(tmp_path / "copy", backend) is None
    assert _differences(original, tmp_path / "copy") == EXPECTED[(name, backend)]
    assert _digests(original) == before, "the original folder was changed"
    if name == "vision-position-embedding-shuffled":  # a permutation of the rows, the class token's kept
        key = next(iter(EXPECTED[(name, backend)])).removeprefix("weights:")
        a, b = load_file(str(next(original.glob("*.safetensors"))))[key], \
            load_file(str(next((tmp_path / "copy").glob("*.safetensors"))))[key]
        assert torch.equal(a[0], b[0]) and torch.equal(a.sort(dim=0).values, b.sort(dim=0).values)


def test_a_fault_that_cannot_apply_says_why_and_leaves_the_copy_as_it_was(tmp_path):
    crop = next(f for f in USER_CATALOGUE if f.name == "centre-crop-dropped")
    copy_model(FOLDERS["hf_clip"], tmp_path / "copy")
    config = tmp_path / "copy" / "preprocessor_config.json"
    config.write_text(json.dumps(json.loads(config.read_text()) | {"do_center_crop": False}))
    before = config.read_text()
    assert crop.edit(tmp_path / "copy", "hf_clip") == "its image processor does not centre-crop"
    assert json.loads(config.read_text()) == json.loads(before)


def test_a_matrix_reads_back_from_its_toml_text():
    for path in (DEFAULT_CONFIG, Path(__file__).parents[1] / "configs" / "real-models.toml"):
        raw = tomllib.loads(path.read_text())
        assert tomllib.loads(to_toml(raw)) == raw


USER = """
[models.hub]
backend = "hf_clip"
model = "openai/clip-vit-base-patch32"
baseline = "b/hub"

[models.unrecorded]
backend = "hf_clip"
model = "{hf}"

[models.empty-baseline]
backend = "hf_clip"
model = "{hf}"
baseline = "b/empty"

[models.mine]
backend = "hf_clip"
model = "{hf}"
baseline = "{baseline}"

[models.vlm]
backend = "llava"
model = "{llava}"
baseline = "{llava_baseline}"
padding_side = "right"

[datasets.scenes]
source = "shapes"
split = "test"
label_column = "shape"

[prompt_sets.bare]
templates = ["{{}}"]

[[zero_shot]]
models = ["mine"]
dataset = "scenes"
prompt_set = "bare"
"""


def _user_matrix(tmp_path: Path) -> Path:
    path = tmp_path / "my.toml"
    path.write_text(USER.format(hf=FOLDERS["hf_clip"], baseline=ZOO / "baselines" / "tiny-clip-hf",
                                llava=FOLDERS["llava"], llava_baseline=ZOO / "baselines" / "tiny-llava"))
    return path


def test_entries_that_cannot_be_measured_say_why(tmp_path):
    plans = {p.name: p for p in plan(load_matrix(_user_matrix(tmp_path)), None, None)}
    assert plans["hub"].folder is None and "hub id, not a local folder: a hub model cannot be copied" in plans["hub"].why
    assert plans["unrecorded"].folder is None and plans["unrecorded"].why == SAVE_FIRST
    assert plans["empty-baseline"].folder is None and "holds no outcomes.json" in plans["empty-baseline"].why
    mine, vlm = plans["mine"], plans["vlm"]
    assert mine.folder == FOLDERS["hf_clip"] and "projector-reset" in mine.not_applicable
    assert {f.name for f in mine.faults} >= {"mean-std-changed", "noise-0.01-image-tower", "tokenizer-context-truncated"}
    assert vlm.not_applicable["right-padding"] == "the entry already pads on the right"
    assert "sampling-instead-of-greedy" in {f.name for f in vlm.faults}


def test_the_fault_matrix_points_one_entry_at_the_copy_and_keeps_the_rest(tmp_path):
    user = load_matrix(_user_matrix(tmp_path))
    (tmp_path / "faulty").mkdir()
    path = fault_matrix(user, "vlm", tmp_path / "copy", ("generation", {"do_sample": True}), tmp_path / "faulty" / "m.toml")
    (tmp_path / "copy").mkdir()
    faulty = load_matrix(path)
    assert faulty.models["vlm"].model == str(tmp_path / "copy")
    assert dict(faulty.models["vlm"].generation) == {"do_sample": True}
    assert faulty.models["vlm"].baseline == user.models["vlm"].baseline
    # relative paths of the user's matrix still point where they did
    assert faulty.models["hub"].baseline == user.models["hub"].baseline == str(tmp_path / "b" / "hub")
    assert faulty.models["mine"] == user.models["mine"] and faulty.zero_shot == user.zero_shot


SMALL = """
[models.my-clip]
backend = "hf_clip"
model = "models/my-clip"
baseline = "baselines/my-clip"

[datasets.scenes]
source = "shapes"
split = "test"
image_sizes = [[96, 96], [112, 88]]
label_column = "shape"
limit = 256

[prompt_sets.big]
templates = ["a photo of a big {}."]

[[zero_shot]]
dataset = "scenes"
prompt_set = "big"
"""


@pytest.mark.slow
def test_faults_on_a_copy_of_a_users_model_are_caught_and_its_clean_copy_passes(tmp_path):
    """A user matrix (the HF tiny CLIP under another name, 256 scenes, one prompt set) with its own baseline: the
    folder faults are caught, the clean copy is green, and the user's folder is left as it was."""
    import shutil
    import subprocess
    import sys

    from mmtests.faults import main

    shutil.copytree(FOLDERS["hf_clip"], tmp_path / "models" / "my-clip")
    before = _digests(tmp_path / "models" / "my-clip")
    matrix = tmp_path / "my.toml"
    matrix.write_text(SMALL)
    saved = subprocess.run([sys.executable, "-m", "pytest", "--pyargs", "mmtests.suites", "-q", "-p", "no:cacheprovider",
                            f"--mm-config={matrix}", f"--mm-records={tmp_path / 'saved.jsonl'}", "--mm-save-baseline"],
                           cwd=tmp_path, capture_output=True, text=True)
    assert saved.returncode == 0, saved.stdout[-2000:]
    assert main(["--mm-config", str(matrix), "--json", str(tmp_path / "faults.json")]) == 0
    out = json.loads((tmp_path / "faults.json").read_text())
    assert out["false_alarms"] == 0 and len(out["clean"]) == 1
    caught = {f["name"].removeprefix("my-clip: ") for f in out["faults"] if f["caught"]}
    assert {"mean-std-changed", "noise-0.01-image-tower", "noise-0.1-image-tower", "noise-0.1-text-tower"} <= caught
    assert out["detection_rate"] > 0.5, out["faults"]
    assert "projector-reset" in out["not_applicable"]["my-clip"]
    assert _digests(tmp_path / "models" / "my-clip") == before
