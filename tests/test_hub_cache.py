"""Models by hub id from a Hugging Face cache: a folder in the hub cache layout (models--org--name/snapshots/<rev>/,
refs/main) filled with tiny families, HF_HUB_CACHE pointed at it, offline. mmtests loads them by id, as it loads a
published checkpoint on a machine whose cache was filled once, and the suites run on them."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmtests import tiny_families
from mmtests.adapters import load_dual_encoder
from mmtests.adapters.llava import VisionLanguageModel
from mmtests.config import ModelSpec
from mmtests.errors import ModelUnavailable
from mmtests.offline import hub_access

ZOO = Path(__file__).resolve().parents[1] / "mmtests" / "zoo"
REVISION = "0123456789abcdef0123456789abcdef01234567"
ORG = "mmtests-tiny"
DUAL = {"siglip2": "hf_clip", "clip": "hf_clip", "open-clip-siglip": "open_clip"}


def cache_folder(cache: Path, repo_id: str) -> Path:
    """The snapshot folder of `repo_id` at REVISION, with refs/main naming it (files are stored as copies, as the
    hub client does where symbolic links are not available)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(REVISION)
    return repo / "snapshots" / REVISION


def publish(folder: Path, cache: Path, repo_id: str) -> None:
    snapshot = cache_folder(cache, repo_id)
    shutil.copytree(folder, snapshot)
    config = snapshot / "open_clip_config.json"
    if config.is_file():  # a published open_clip repository names itself as its tokenizer's source
        data = json.loads(config.read_text())
        data["model_cfg"]["text_cfg"]["hf_tokenizer_name"] = repo_id
        config.write_text(json.dumps(data))
    if not (snapshot / "config.json").is_file():
        # What the hub client records when a file a library asked for is not in the repository (transformers asks
        # for config.json when it loads a tokenizer): without the mark, an offline lookup cannot tell "absent" from
        # "not downloaded" and fails.
        absent = snapshot.parents[1] / ".no_exist" / REVISION
        absent.mkdir(parents=True, exist_ok=True)
        (absent / "config.json").touch()


def hub_id(name: str, backend: str) -> str:
    return f"hf-hub:{ORG}/{name}" if backend == "open_clip" else f"{ORG}/{name}"


@pytest.fixture(scope="module")
def filled(tmp_path_factory) -> tuple[Path, Path]:
    """(the hub cache, the folders the same models were built into)."""
    root = tmp_path_factory.mktemp("hub")
    cache, folders = root / "hub", root / "folders"
    for name in DUAL:
        tiny_families.build(name, folders / name)
        publish(folders / name, cache, f"{ORG}/{name}")
    publish(ZOO / "tiny-llava", cache, f"{ORG}/llava")
    return cache, folders


@pytest.fixture
def offline_cache(filled, monkeypatch):
    cache, folders = filled
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))  # read at import; the libraries read this copy
    return cache, folders


def test_the_cache_has_the_hub_layout(filled):
    cache, _ = filled
    for repo in (*DUAL, "llava"):
        folder = cache / f"models--{ORG}--{repo}"
        assert (folder / "refs" / "main").read_text() == REVISION
        assert any((folder / "snapshots" / REVISION).glob("*.safetensors"))


@pytest.mark.parametrize("name", DUAL)
def test_dual_encoders_load_by_hub_id_and_embed_as_from_their_folder(name, offline_cache):
    _, folders = offline_cache
    backend = DUAL[name]
    cpu = torch.device("cpu")
    with hub_access(False):
        by_id = load_dual_encoder(ModelSpec(name, backend, hub_id(name, backend)), cpu)
    local = f"local-dir:{folders / name}" if backend == "open_clip" else str(folders / name)
    from_folder = load_dual_encoder(ModelSpec(name, backend, local), cpu)
    from PIL import Image

    images = [Image.new("RGB", (40 + 8 * i, 48), (50 * i, 100, 200)) for i in range(3)]
    prompts = ["a photo of a red circle.", "a blue star."]
    torch.testing.assert_close(by_id.encode_image(by_id.preprocess(images)),
                               from_folder.encode_image(from_folder.preprocess(images)))
    torch.testing.assert_close(by_id.encode_text(by_id.tokenizer(prompts)),
                               from_folder.encode_text(from_folder.tokenizer(prompts)))
    assert by_id.head() == from_folder.head()


def test_a_vlm_loads_by_hub_id_and_answers_as_from_its_folder(offline_cache):
    from PIL import Image

    cpu = torch.device("cpu")
    image = [Image.new("RGB", (64, 64), (200, 30, 30))]
    with hub_access(False):
        by_id = VisionLanguageModel(f"{ORG}/llava", cpu, entry="hub-llava")
    from_folder = VisionLanguageModel(str(ZOO / "tiny-llava"), cpu, entry="folder-llava")
    question = ["What colour is the big object?"]
    assert [g.tokens for g in by_id.generate(image, question, 8, 1)] == \
        [g.tokens for g in from_folder.generate(image, question, 8, 1)]


def test_an_id_the_cache_does_not_hold_is_unavailable(offline_cache):
    with hub_access(False), pytest.raises(ModelUnavailable, match=r"\[models.absent\]: Hugging Face model "
                                                                 r"'mmtests-tiny/absent' is not available here"):
        load_dual_encoder(ModelSpec("absent", "hf_clip", f"{ORG}/absent"), torch.device("cpu"))


MATRIX = """
[models.siglip2]
backend = "hf_clip"
model = "mmtests-tiny/siglip2"

[models.open-clip-siglip]
backend = "open_clip"
model = "hf-hub:mmtests-tiny/open-clip-siglip"

[models.llava]
backend = "llava"
model = "mmtests-tiny/llava"

[datasets.shapes-test]
source = "shapes"
split = "test"
limit = 16
image_sizes = [[96, 96], [112, 88]]
label_column = "shape"

[prompt_sets.photo]
templates = ["a photo of a {}."]

[[zero_shot]]
dataset = "shapes-test"
prompt_set = "photo"

[question_sets.qa]
dataset = "shapes-test"
questions = "shapes"
images = 4

[[pope]]
question_set = "qa"
models = ["llava"]
"""


@pytest.mark.integration  # a whole pytest session: tox -e integration
def test_the_suites_run_on_models_from_the_cache(filled, tmp_path):
    cache, _ = filled
    matrix = tmp_path / "hub.toml"
    matrix.write_text(MATRIX)
    env = {**__import__("os").environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "pytest", "--pyargs", "mmtests.suites", "-p", "no:cacheprovider",
                             "-q", f"--mm-config={matrix}", f"--mm-records={tmp_path / 'records.jsonl'}",
                             "-k", "top1 or pope"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:]
    from mmtests.figures.record_reader import read_run

    figures = read_run(tmp_path / "records.jsonl").figures
    measured = {(f["model"], f["metric"]) for f in figures if f["outcome"] in ("pass", "measured")}
    assert {("siglip2", "top1"), ("open-clip-siglip", "top1"), ("llava", "f1")} <= measured, figures
    assert not [f for f in figures if f["outcome"] == "skip"]
