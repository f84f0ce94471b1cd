"""The tiny dual-encoder families (CLIP, SigLIP, SigLIP 2, open_clip SigLIP-style and CoCa) through mmtests: the
zero-shot predictions and probabilities equal a plain transformers / open_clip computation of the same thing, the
suites run on a matrix of all of them and record figures, and the embedding benchmarks run on them.

Random weights know nothing: what is asserted is agreement with the libraries and that everything runs."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmtests import tiny_families
from mmtests.adapters import load_dual_encoder
from mmtests.adapters.base import EntryError, ImageInputs, concat
from mmtests.config import DatasetSpec, ModelSpec
from mmtests.data.facts import SHAPES
from mmtests.data.sources import load_checked
from mmtests.evaluation.zero_shot import zero_shot_logits, zero_shot_samples
from mmtests.figures.record_reader import read_run
from mmtests.session.encoders import embed_images

DUAL = tiny_families.names("dual")
# The head each family's users read its probabilities from, as its library documents it: CLIP's softmax over the
# prompts, SigLIP's sigmoid of each (transformers' SigLIP docs, open_clip's SigLIP README example).
HEAD = {"clip": "softmax", "siglip": "sigmoid", "siglip2": "sigmoid", "open-clip-siglip": "sigmoid",
        "open-clip-coca": "softmax"}
TEMPLATE = "a photo of a {}."
IMAGES = 12
SHAPES_TEST = DatasetSpec("shapes-test", "shapes", "", "test", "shape", limit=IMAGES,
                          image_sizes=((96, 96), (112, 88), (88, 112), (128, 128)))


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("dual")
    return {name: tiny_families.build(name, root / name, seed=0) for name in DUAL}


@pytest.fixture(scope="module")
def shapes():
    ds = load_checked(SHAPES_TEST).dataset
    return ds, [im.convert("RGB") for im in ds["image"]], torch.tensor(ds["shape"])


def test_every_family_has_its_head():
    assert set(DUAL) == set(HEAD)


def test_each_family_builds_from_an_empty_folder_and_says_its_backend(tmp_path):
    for name in DUAL:
        entry = tiny_families.build(name, tmp_path / "new" / name)
        assert entry["backend"] == tiny_families.registry()[name].backend
        assert Path(entry["model"].removeprefix("local-dir:")).is_dir()


def plain_transformers(folder: str, images, prompts, padding):
    """What a transformers user writes: the checkpoint's image processor and tokenizer, AutoModel, one forward,
    logits_per_image. (Not AutoProcessor: Siglip2Processor's class defaults, patch 16 and 256 patches, override
    the saved image processor's settings in transformers 5.)"""
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(folder).eval()
    pixels = AutoImageProcessor.from_pretrained(folder)(images, return_tensors="pt")
    text = AutoTokenizer.from_pretrained(folder)(prompts, padding=padding, return_tensors="pt")
    with torch.no_grad():
        return model(**text, **pixels).logits_per_image


def plain_open_clip(model_name: str, images, prompts):
    """What an open_clip user writes: create_model_and_transforms, get_tokenizer, the two encoders, the scale (and
    the bias where the model has one)."""
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms(model_name)
    tokenizer = open_clip.get_tokenizer(model_name)
    model.eval()
    with torch.no_grad():
        image = model.encode_image(torch.stack([preprocess(im) for im in images]), normalize=True)
        text = model.encode_text(tokenizer(prompts), normalize=True)
        logits = model.logit_scale.exp() * image @ text.T
        return logits + model.logit_bias if model.logit_bias is not None else logits


@pytest.mark.parametrize("name", DUAL)
def test_predictions_and_probabilities_equal_the_libraries_own(name, built, shapes):
    """Through mmtests (batches of 5, so slicing and concatenating image inputs is crossed) and through the plain
    library: the same logits, the same top-1 on every image, the same probability of the predicted class (the
    library's softmax for CLIP, its sigmoid of scale * cos + bias for SigLIP)."""
    ds, images, labels = shapes
    entry = built[name]
    encoder = load_dual_encoder(ModelSpec(name, entry["backend"], entry["model"]), torch.device("cpu"))
    cosines = zero_shot_logits(embed_images(encoder, ds, "image", batch_size=5),
                               encoder.text_classifier(SHAPES, [TEMPLATE]))
    head = encoder.head()
    assert head.kind == HEAD[name]
    samples = zero_shot_samples(cosines, labels, head)

    prompts = [TEMPLATE.format(s) for s in SHAPES]
    if entry["backend"] == "hf_clip":
        logits = plain_transformers(entry["model"], images, prompts, "max_length" if "siglip" in name else True)
    else:
        logits = plain_open_clip(entry["model"], images, prompts)
    probs = logits.softmax(-1) if HEAD[name] == "softmax" else logits.sigmoid()
    torch.testing.assert_close(cosines * head.scale + head.bias, logits, atol=1e-4, rtol=1e-4)
    assert samples.predicted == logits.argmax(-1).tolist()
    torch.testing.assert_close(torch.tensor(samples.probability), probs.max(-1).values, atol=1e-6, rtol=1e-4)
    assert samples.correct == (logits.argmax(-1) == labels).tolist()


def test_siglip2_takes_its_masks_and_shapes_and_refuses_gpu_decode(built, shapes):
    ds, images, _ = shapes
    entry = built["siglip2"]
    encoder = load_dual_encoder(ModelSpec("siglip2", "hf_clip", entry["model"]), torch.device("cpu"))
    inputs = encoder.preprocess(images[:4])
    assert isinstance(inputs, ImageInputs)
    assert set(inputs.tensors) == {"pixel_values", "pixel_attention_mask", "spatial_shapes"}
    # Images of other aspect ratios get other patch grids, padded to max_num_patches and masked.
    assert len({tuple(s) for s in inputs.tensors["spatial_shapes"].tolist()}) > 1
    whole = encoder.encode_image(inputs, normalize=True)
    parts = encoder.encode_image(concat([inputs[:1], inputs[1:]]), normalize=True)
    torch.testing.assert_close(whole, parts, atol=1e-5, rtol=1e-5)
    # Made in a DataLoader worker process and sent back: the same embeddings as made here.
    torch.testing.assert_close(embed_images(encoder, ds, "image", batch_size=5, workers=1),
                               embed_images(encoder, ds, "image", batch_size=5, workers=0))
    with pytest.raises(EntryError, match=r"\[models.siglip2\]: .*Siglip2ImageProcessor returns pixel_values, "
                                         r"pixel_attention_mask, spatial_shapes.*set gpu_decode = false"):
        encoder.pixel_recipe()


def test_image_inputs_are_sliced_moved_and_pinned_as_one_batch():
    inputs = ImageInputs({"pixel_values": torch.randn(5, 8, 3), "spatial_shapes": torch.ones(5, 2, dtype=torch.long)})
    assert len(inputs) == 5 and len(inputs[1:3]) == 2
    assert torch.equal(concat([inputs[:2], inputs[2:]]).tensors["pixel_values"], inputs.tensors["pixel_values"])
    assert inputs.to("cpu").tensors["spatial_shapes"].dtype == torch.long
    with pytest.raises(ValueError, match="one first dimension"):
        ImageInputs({"pixel_values": torch.randn(5, 8), "spatial_shapes": torch.ones(4, 2)})
    with pytest.raises(TypeError, match="sliced by images"):
        inputs[0]


MATRIX = """
[datasets.shapes-test]
source = "shapes"
split = "test"
limit = 24
image_sizes = [[96, 96], [112, 88], [88, 112], [128, 128]]
label_column = "shape"

[datasets.shapes-captions]
source = "shapes"
split = "test"
limit = 24
image_sizes = [[96, 96], [112, 88], [88, 112], [128, 128]]
caption_column = "captions"

[prompt_sets.bare]
templates = ["{{}}"]

[prompt_sets.photo]
templates = ["a photo of a {{}}."]

[[zero_shot]]
dataset = "shapes-test"
prompt_set = "bare"

[[zero_shot]]
dataset = "shapes-test"
prompt_set = "photo"

[[prompt_gain]]
dataset = "shapes-test"
baseline = "bare"
candidate = "photo"

[[retrieval]]
dataset = "shapes-captions"

[benchmarks]
batch_sizes = [2]
rounds = 2
"""


def family_matrix(built: dict[str, dict], path: Path, baselines: Path | None = None) -> Path:
    """Every tiny dual family as a model entry (SigLIP 2 first: the benchmarks' single-model cases take it), with
    its baseline folder under `baselines` when given."""
    order = ["siglip2", *(n for n in DUAL if n != "siglip2")]
    models = "".join(f'[models.{n}]\n' + "".join(f'{k} = "{v}"\n' for k, v in built[n].items())
                     + (f'baseline = "{baselines / n}"\n' if baselines else "") + "\n" for n in order)
    path.write_text(models + MATRIX.format())
    return path


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.families  # whole pytest sessions: tox -e families (CI)
def test_the_suites_and_benchmarks_run_on_every_dual_family(built, tmp_path):
    """One session records every family's baseline (zero-shot, prompt gain, retrieval); a second one is gated
    against it and agrees; a copy of SigLIP 2 with its image projection head scaled down turns the gates red."""
    baselines = tmp_path / "baselines"
    matrix = family_matrix(built, tmp_path / "families.toml", baselines)
    records = tmp_path / "first" / "records.jsonl"
    suites = run(["--pyargs", "mmtests.suites", f"--mm-config={matrix}", f"--mm-records={records}", "-m", "clip",
                  "--mm-save-baseline"], tmp_path)
    assert suites.returncode == 0, suites.stdout[-3000:]
    assert "Traceback" not in suites.stdout + suites.stderr
    figures = read_run(records).figures
    for name in DUAL:
        mine = [f for f in figures if f.get("model") == name]
        assert {f["metric"] for f in mine} >= {"top1", "gain", "image_to_text_r1", "text_to_image_r10"}, name
        assert all(f["outcome"] in ("pass", "measured") for f in mine), [f for f in mine if f["outcome"] != "pass"]
        top1 = [f["value"] for f in mine if f["metric"] == "top1"]
        assert len(top1) == 2 and all(0 <= v <= 1 for v in top1)
        assert (baselines / name / "outcomes.json").is_file(), name

    second = tmp_path / "second" / "records.jsonl"
    again = run(["--pyargs", "mmtests.suites", f"--mm-config={matrix}", f"--mm-records={second}", "-m", "clip"],
                tmp_path)
    assert again.returncode == 0, again.stdout[-3000:]
    gated = [f for f in read_run(second).figures if f["metric"].endswith("_vs_baseline") or "baseline" in f["metric"]]
    assert {f.get("model") for f in gated} >= set(DUAL), "a family without a baseline gate"
    assert {f["outcome"] for f in gated} == {"pass"}, [(f["test_id"], f["metric"]) for f in gated
                                                       if f["outcome"] != "pass"]

    # The known-good self, broken: SigLIP 2's image features halved in one direction (its attention-pooling
    # head's output projection, first output row scaled by .5), under the same entry and baseline.
    broken = tmp_path / "siglip2-broken"
    broken.mkdir()
    for f in Path(built["siglip2"]["model"]).iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    from safetensors.torch import load_file, save_file

    weights = load_file(str(broken / "model.safetensors"))
    key = next(k for k in weights if k.startswith("vision_model.head.mlp.fc2.weight"))
    weights[key][0] *= 0.5
    save_file(weights, str(broken / "model.safetensors"), metadata={"format": "pt"})
    family_matrix({**built, "siglip2": {**built["siglip2"], "model": str(broken)}}, tmp_path / "broken.toml", baselines)
    red = run(["--pyargs", "mmtests.suites", f"--mm-config={tmp_path / 'broken.toml'}", "--mm-model=siglip2",
               f"--mm-records={tmp_path / 'broken' / 'records.jsonl'}", "-m", "clip"], tmp_path)
    failed = {f["metric"] for f in read_run(tmp_path / "broken" / "records.jsonl").figures if f["outcome"] == "fail"}
    assert red.returncode == 1 and failed, red.stdout[-3000:]

    # The benchmarks' passes, run once each (--benchmark-disable: timing is not what is tested here).
    bench = run([str(Path(__file__).resolve().parents[1] / "mmtests" / "benchmarks"), f"--mm-config={matrix}",
                 "-m", "not gpu", "--benchmark-disable", "-rA",
                 "-k", "embedding_throughput or throughput_raw_image_forward or throughput_zero_shot_end_to_end"], tmp_path)
    assert bench.returncode == 0, bench.stdout[-3000:]
    passed = {line.split("[", 1)[1].rstrip("]") for line in bench.stdout.splitlines()
              if line.startswith("PASSED") and "test_embedding_throughput[" in line}
    assert passed == {f"{n}-{m}-b2" for n in DUAL for m in ("image", "text")}
    assert "\n12 passed" in bench.stdout  # the ten embedding passes and the two zero-shot throughput passes


def test_the_session_caches_measure_every_dual_family(built, tmp_path):
    """The suites' measurements, in process (what the integration session above runs through pytest): zero-shot
    figures, per-image samples with the model's own head, prompt gain, for every family."""
    from mmtests.config import load_matrix
    from mmtests.session.encoders import DualEncoderCache

    matrix = load_matrix(str(family_matrix(built, tmp_path / "families.toml")))
    encoders = DualEncoderCache(matrix, torch.device("cpu"))
    assert set(matrix.models) == set(DUAL)
    for check in matrix.zero_shot:
        metrics, samples = encoders.zero_shot(check), encoders.zero_shot_samples(check)
        assert metrics.n == 24 and len(samples.probability) == 24
        assert all(0 < p < 1 for p in samples.probability), check.id
        assert sum(samples.correct) / 24 == pytest.approx(metrics.top1)
    for check in matrix.prompt_gain:
        gain = encoders.prompt_gain(check)
        assert gain.gain == pytest.approx(gain.candidate - gain.baseline) and gain.n == 24
