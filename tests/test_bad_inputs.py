"""The bad-input catalogue: the cases of the bad-inputs note (shared/notes/bad-inputs-tried.md, case numbers in
the test ids) about data, images, the shapes cache and checkpoints that have a handled behaviour and no test
elsewhere. Each asserts the one message (the thing by name, and the fix) or the handled behaviour, and that
nothing else is lost: the good images, the class list, the labels, the other checks, a cache's figures.

Covered elsewhere, not repeated here: 8 (tests/test_sources.py::test_a_missing_column_names_the_columns_there_are),
36, 37, 38, 39, 42 (tests/test_config.py::test_mistakes_are_named_with_the_entry, ::test_types_and_ranges_are_checked),
45, 48, 50, 51, 52, 53, 54, 55, 56 (tests/test_unavailable_models.py::test_open_clip_folder_that_does_not_load,
::test_hf_clip_folder_that_does_not_load), 61 (::test_llava_folder_that_does_not_load_and_hub_id_not_here).
"""

import io
import json
import pathlib
import re
import shutil
import struct
from pathlib import Path

import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Value
from datasets import Image as ImageFeature
from PIL import Image

import mmtests.session.encoders as encoders_module
from mmtests.config import DatasetSpec, ModelSpec, load_matrix
from mmtests.data import cache, facts, sources
from mmtests.data.sources import labels_and_class_names, load_checked
from mmtests.errors import DataWarning, EntryError

ZOO = Path(__file__).resolve().parents[1] / "mmtests" / "zoo"
CPU = torch.device("cpu")


# ---------------------------------------------------------------------------------------------- images

def encoded(fmt: str = "PNG", colour=(200, 0, 0), size=(8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, fmt)
    return buf.getvalue()


def tiff_pil_cannot_open() -> bytes:
    """A TIFF whose compression tag names a scheme PIL does not know (case 102's photo)."""
    data = bytearray(encoded("TIFF"))
    ifd = struct.unpack("<I", data[4:8])[0]
    for i in range(struct.unpack("<H", data[ifd:ifd + 2])[0]):
        entry = ifd + 2 + 12 * i
        if struct.unpack("<H", data[entry:entry + 2])[0] == 259:  # Compression
            data[entry + 8:entry + 10] = struct.pack("<H", 99)
    return bytes(data)


def truncated_jpeg() -> bytes:
    data = encoded("JPEG", size=(64, 64))
    return data[:len(data) // 2]


BAD_IMAGES = {
    "102-tiff-pil-cannot-open": ("scan.tif", tiff_pil_cannot_open),
    "103-zero-byte-jpg": ("empty.jpg", lambda: b""),
    "truncated-jpg": ("cut.jpg", truncated_jpeg),
}
COLOURS = {"circle": (200, 0, 0), "square": (0, 0, 200)}


def photos(root: Path, extra: dict[str, bytes] | None = None) -> Path:
    """An imagefolder (split folder test/, classes circle and square, 3 images each) plus `extra` files."""
    for cls, colour in COLOURS.items():
        (root / "test" / cls).mkdir(parents=True)
        for i in range(3):
            (root / "test" / cls / f"{i}.png").write_bytes(encoded(colour=colour))
    for name, data in (extra or {}).items():
        (root / "test" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "test" / name).write_bytes(data)
    return root


def photo_parquet(path: Path, bad: bytes | None = None, bad_row: int = 2, labels=None) -> Path:
    """Six photos with a ClassLabel (or the given `labels`), `bad` image bytes put in at row `bad_row`."""
    images = [{"bytes": encoded(colour=COLOURS[c]), "path": f"{c}{i}.png"} for c in COLOURS for i in range(3)]
    classes = [0, 0, 0, 1, 1, 1]
    if bad is not None:
        images.insert(bad_row, {"bytes": bad, "path": None})
        classes.insert(bad_row, 0)
    label = ClassLabel(names=list(COLOURS)) if labels is None else Value("string")
    features = Features({"image": ImageFeature(), "label": label})
    Dataset.from_dict({"image": images, "label": classes if labels is None else labels},
                      features=features).to_parquet(str(path))
    return path


def imagefolder(root, name="pets", **kw) -> DatasetSpec:
    return DatasetSpec(name, "imagefolder", str(root), "test", "label", **kw)


@pytest.mark.parametrize("case", BAD_IMAGES)
@pytest.mark.parametrize("source", ["imagefolder", "parquet"])
def test_an_image_that_does_not_decode_is_skipped_counted_and_named(tmp_path, monkeypatch, case, source):
    monkeypatch.delenv(sources.STRICT_IMAGES_ENV, raising=False)
    name, make = BAD_IMAGES[case]
    if source == "imagefolder":
        spec, named = imagefolder(photos(tmp_path, {f"circle/{name}": make()})), str(tmp_path / "test" / "circle" / name)
    else:
        spec, named = DatasetSpec("pq", "parquet", str(photo_parquet(tmp_path / "p.parquet", make())), "test",
                                  "label"), "row 2: "
    with pytest.warns(DataWarning, match=r"1 of 7 images .* cannot be decoded and is left out of every check: row "
                                         r"\d.*; fix or remove those files, or set MMTESTS_STRICT_IMAGES=1") as said:
        loaded = load_checked(spec)
    assert named in str(said[0].message)
    [skipped] = loaded.skipped
    assert named in str(skipped) and skipped.reason.split(":")[0].endswith(("Error", "UnidentifiedImageError"))
    # Nothing else lost: the six good images, both classes, their labels in order.
    labels, names = labels_and_class_names(spec, loaded.dataset)
    assert (len(loaded.dataset), names, sorted(labels)) == (6, ["circle", "square"], [0, 0, 0, 1, 1, 1])
    assert all(im.size == (8, 8) for im in loaded.dataset["image"])


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_strict_images_make_an_undecodable_image_a_failure_naming_it(tmp_path, monkeypatch, how):
    spec = imagefolder(photos(tmp_path, {"square/empty.jpg": b""}))
    if how == "environment":
        monkeypatch.setenv(sources.STRICT_IMAGES_ENV, "1")
    with pytest.raises(EntryError, match=r"\[datasets.pets\]: 1 of 7 images .* cannot be decoded: row 6 \(.*/square/"
                                         r"empty.jpg\): UnidentifiedImageError.*; fix or remove those files"):
        load_checked(spec, strict_images=True if how == "argument" else None)


def test_no_image_that_decodes_is_a_failure_even_when_not_strict(tmp_path):
    root = tmp_path / "photos"
    for cls in COLOURS:
        (root / "test" / cls).mkdir(parents=True)
        (root / "test" / cls / "a.jpg").write_bytes(b"")
    with pytest.raises(EntryError, match=r"none of the 2 images .* can be decoded: row 0 .*/circle/a.jpg.*; fix the files"):
        load_checked(imagefolder(root), strict_images=False)


MATRIX = """
[models.tiny]
backend = "open_clip"
model = "local-dir:{zoo}/tiny-clip/open_clip"

[datasets.pets]
source = "imagefolder"
path = "{root}"
split = "test"
label_column = "label"

[prompt_sets.bare]
templates = ["{{}}"]

[prompt_sets.photo]
templates = ["a photo of a {{}}."]
"""


def encoder_cache(tmp_path, root, **kw):
    (tmp_path / "m.toml").write_text(MATRIX.format(zoo=ZOO, root=root))
    return encoders_module.DualEncoderCache(load_matrix(tmp_path / "m.toml"), CPU, **kw)


def counting(monkeypatch, module, name):
    calls = []
    real = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, **k: calls.append(a) or real(*a, **k))
    return calls


def test_the_encoder_cache_checks_each_image_once_and_keeps_what_it_skipped(tmp_path, monkeypatch):
    encoders = encoder_cache(tmp_path, photos(tmp_path / "photos", {"circle/scan.tif": tiff_pil_cannot_open()}))
    decoded = counting(monkeypatch, sources, "_check_image")
    with pytest.warns(DataWarning, match="scan.tif"):
        feats = encoders.image_features("tiny", "pets")
    for prompt_set in ("bare", "photo"):  # two checks of the same dataset
        encoders.classifier("tiny", "pets", prompt_set)
        encoders.image_features("tiny", "pets")
    assert len(decoded) == 7  # every image checked once, whatever the number of checks
    assert feats.features.shape[0] == len(feats.labels) == 6 and feats.classnames == ("circle", "square")
    [skipped] = encoders.skipped_images("pets")
    assert skipped.startswith("row ") and "/circle/scan.tif): UnidentifiedImageError" in skipped


def test_a_strict_failure_is_not_retried_per_check(tmp_path, monkeypatch):
    encoders = encoder_cache(tmp_path, photos(tmp_path / "photos", {"circle/empty.jpg": b""}), strict_images=True)
    loads = counting(monkeypatch, encoders_module, "load_checked")
    for _ in range(3):
        with pytest.raises(EntryError, match="empty.jpg"):
            encoders.image_features("tiny", "pets")
    assert len(loads) == 1


def test_104_an_empty_class_folder_is_named_not_dropped(tmp_path):
    root = photos(tmp_path, {"bird/notes.txt": b"to do: copy the bird photos"})
    with pytest.raises(EntryError, match=r"\[datasets.pets\]: imagefolder .* has class folder without images: '.*/test/"
                                         r"bird'; its class would silently disappear from the class list \(circle, square\); "
                                         r"put the images in, or remove the folder"):
        load_checked(imagefolder(root))
    shutil.rmtree(root / "test" / "bird")
    assert labels_and_class_names(imagefolder(root), load_checked(imagefolder(root)).dataset)[1] == ["circle", "square"]


def test_105_a_text_file_in_a_class_folder_is_ignored(tmp_path, recwarn):
    spec = imagefolder(photos(tmp_path, {"circle/README.txt": b"circles"}))
    loaded = load_checked(spec)
    assert (len(loaded.dataset), loaded.skipped) == (6, ())
    assert not [w for w in recwarn if issubclass(w.category, DataWarning)]


def test_101_a_plain_imagefolder_has_no_test_split_and_says_which_it_has(tmp_path):
    root = photos(tmp_path) / "test"  # class folders only: datasets calls the one split "train"
    with pytest.raises(EntryError, match=r"\[datasets.plain\]: imagefolder '.*' has no split 'test' \(splits: train\); "
                                         r"set 'split' in \[datasets.plain\] to one of them"):
        load_checked(DatasetSpec("plain", "imagefolder", str(root), "test", "label"))


# ---------------------------------------------------------------------------------------------- labels

def shapes(tmp_path, monkeypatch, label_column) -> DatasetSpec:
    monkeypatch.setenv("MMTESTS_CACHE", str(tmp_path / "cache"))
    return DatasetSpec("shapes-mini", "shapes", "", "test", label_column, size=8)


def string_labels(tmp_path, monkeypatch, classnames=None):
    path = photo_parquet(tmp_path / "p.parquet", labels=["circle", "circle", "circle", "square", "square", "square"])
    return DatasetSpec("pq", "parquet", str(path), "test", "label", classnames=classnames)


def minus_one(tmp_path, monkeypatch):
    path = photo_parquet(tmp_path / "p.parquet")
    Dataset.from_parquet(str(path)).map(lambda r, i: {"label": -1 if i >= 4 else r["label"]}, with_indices=True,
                                        ).to_parquet(str(tmp_path / "unlabelled.parquet"))
    return DatasetSpec("pq", "parquet", str(tmp_path / "unlabelled.parquet"), "test", "label")


def float_labels(tmp_path):
    path = photo_parquet(tmp_path / "p.parquet")
    Dataset.from_parquet(str(path)).cast_column("label", Value("float32")).to_parquet(str(tmp_path / "f.parquet"))
    return DatasetSpec("pq", "parquet", str(tmp_path / "f.parquet"), "test", "label")


LABEL_CASES = {
    "106-parquet-string-labels": (string_labels, r"dataset 'pq' \(parquet .*\): label column 'label' holds strings "
                                  r"\('circle', 'square', \.\.\.\), not class indices; store it as a ClassLabel .*or store the "
                                  r"labels as integers 0..C-1 and list the class names in that order as 'classnames'"),
    "106-with-classnames": (lambda t, m: string_labels(t, m, ("circle", "square")), r"label column 'label' holds strings"),
    "40-shapes-string-column": (lambda t, m: shapes(t, m, "position"),
                                r"dataset 'shapes-mini' \(the shapes world, split 'test'\): label column 'position' "
                                r"holds Value\('string'\), not class indices; set label_column in "
                                r"\[datasets.shapes-mini\] to one of the shapes world's label columns: shape, colour, "
                                r"object"),
    "41-shapes-bbox-column": (lambda t, m: shapes(t, m, "bbox"),
                              r"label column 'bbox' holds List\(.*\), not class indices; set label_column in "
                              r"\[datasets.shapes-mini\] to one of the shapes world's label columns: shape, colour"),
    "float-label-column": (lambda t, m: float_labels(t),
                           r"label column 'label' holds Value\('float32'\), not class indices; set label_column in "
                           r"\[datasets.pq\] to a ClassLabel or integer column \(columns: image, label\)"),
    "unlabelled-rows-minus-one": (minus_one, r"label column 'label' has 2 of 6 values outside 0..1, the 2 class names "
                                  r"\(-1 at row 4, -1 at row 5\); -1 marks a row without a label .*: use a labelled split"),
    "classnames-count-differs": (lambda t, m: imagefolder(photos(t), classnames=("circle", "square", "bird")),
                                 r"'classnames' in \[datasets.pets\] lists 3 names but label column 'label' is a "
                                 r"ClassLabel of 2 \(circle, square\); list one name per class"),
}


@pytest.mark.parametrize("case", LABEL_CASES)
def test_labels_that_are_not_class_indices_are_named_with_the_fix(tmp_path, monkeypatch, case):
    make, message = LABEL_CASES[case]
    spec = make(tmp_path, monkeypatch)
    ds = load_checked(spec).dataset  # the images load: it is the labels that cannot be used
    assert len(ds) in (6, 8)
    with pytest.raises(EntryError, match=message):
        labels_and_class_names(spec, ds)


def test_bad_labels_fail_before_anything_is_embedded(tmp_path, monkeypatch):
    path = photo_parquet(tmp_path / "p.parquet", labels=["circle", "circle", "circle", "square", "square", "square"])
    encoders = encoder_cache(tmp_path, tmp_path)
    encoders.matrix.datasets["pets"] = DatasetSpec("pets", "parquet", str(path), "test", "label")
    monkeypatch.setattr(encoders, "_features", lambda *a: pytest.fail("embedded before the labels were checked"))
    with pytest.raises(EntryError, match="label column 'label' holds strings"):
        encoders.image_features("tiny", "pets")


# ---------------------------------------------------------------------------------------------- class names

def encoders():
    from mmtests.adapters import load_dual_encoder

    return [load_dual_encoder(ModelSpec("tiny", "open_clip", f"local-dir:{ZOO / 'tiny-clip' / 'open_clip'}"), CPU),
            load_dual_encoder(ModelSpec("tiny-hf", "hf_clip", str(ZOO / "tiny-clip" / "hf")), CPU)]


@pytest.fixture(scope="module")
def tiny_encoders():
    return encoders()


def test_107_class_names_the_tokenizer_cannot_tell_apart_are_named(tiny_encoders):
    for encoder in tiny_encoders:
        with pytest.raises(EntryError, match=rf"\[models.{encoder.name}\]: class names that the tokenizer "
                                             r"TokenizersBackend \('.*tiny-clip/.*'\) cannot tell apart: 'zebra', "
                                             r"'giraffe'; 'star', 'star' \(every prompt .* same token ids, e.g. 'a photo "
                                             r"of a zebra.' -> \[.*'<unk>'.*\]\): .*tie-breaking; give those classes names"):
            encoder.text_classifier(["star", "zebra", "circle", "giraffe", "star"], ["a photo of a {}.", "a big {}."])
        # Nothing else lost: names the tokenizer tells apart get their classifier.
        assert encoder.text_classifier(["star", "circle"], ["a photo of a {}."]).shape[1] == 2


# ---------------------------------------------------------------------------------------------- the classifier's memory

@pytest.mark.parametrize("which", [0, 1], ids=["open_clip", "hf_clip"])
def test_the_classifier_is_built_in_bounded_forwards_equal_to_one_forward(tiny_encoders, monkeypatch, which):
    from open_clip import OPENAI_IMAGENET_TEMPLATES, build_zero_shot_classifier

    encoder = tiny_encoders[which]
    names = [*facts.SHAPES, *facts.COLOURS]  # 13 classes x 80 templates = 1040 prompts
    whole = build_zero_shot_classifier(encoder, encoder.tokenizer, names, OPENAI_IMAGENET_TEMPLATES,
                                       num_classes_per_batch=None, device=CPU)
    sizes, real = [], encoder.encode_text

    def encode_text(tokens, **kw):
        sizes.append(len(tokens if isinstance(tokens, torch.Tensor) else tokens["input_ids"]))
        return real(tokens, **kw)

    monkeypatch.setattr(encoder, "encode_text", encode_text)
    for budget, forwards in ((1024, [960, 80]), (100, [80] * 13), (1, [80] * 13)):
        sizes.clear()
        batched = encoder.text_classifier(names, OPENAI_IMAGENET_TEMPLATES, prompts_per_forward=budget)
        assert sizes == forwards
        assert (batched - whole).abs().max() <= 1e-6


# ---------------------------------------------------------------------------------------------- the shapes cache

SIZES = ((16, 16), (20, 12))


def arrow(folder: Path) -> Path:
    return folder / "data-00000-of-00001.arrow"


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
    path.write_bytes(bytes(data))


def relabel(folder: Path) -> None:
    """Labels changed and saved over, consistently for datasets (case 95): only the digest can tell."""
    from datasets import load_from_disk

    other = folder.with_name("relabelled")
    load_from_disk(str(folder)).map(lambda r: {"shape": (r["shape"] + 1) % 6}).save_to_disk(str(other))
    for f in other.iterdir():
        shutil.copy(f, folder / f.name)
    shutil.rmtree(other)


CACHE_DAMAGE = {
    "94-arrow-truncated": (lambda d: truncate(arrow(d)), "has data-00000-of-00001.arrow altered"),
    "95-labels-altered": (relabel, "has data-00000-of-00001.arrow altered"),
    "96-image-bytes-flipped": (lambda d: flip(arrow(d)), "has data-00000-of-00001.arrow altered"),
    "97-arrow-deleted": (lambda d: arrow(d).unlink(), "lacks data-00000-of-00001.arrow"),
    "98-dataset-info-empty": (lambda d: (d / "dataset_info.json").write_text(""), "has dataset_info.json altered"),
    "digest-deleted": (lambda d: (d / cache.DIGEST_FILE).unlink(), "has no mmtests-digest.json"),
    "digest-garbage": (lambda d: (d / cache.DIGEST_FILE).write_text("{"), "has an unreadable mmtests-digest.json"),
}


def content(ds) -> tuple:
    raw = ds.with_format("arrow")
    return ds["shape"][:], raw["image"].to_pylist(), ds["bbox"][:]


@pytest.mark.parametrize("resized", [True, False], ids=["resized", "64px"])
@pytest.mark.parametrize("case", CACHE_DAMAGE)
def test_a_damaged_shapes_cache_is_rebuilt_with_a_note_never_read(tmp_path, case, resized):
    sizes = SIZES if resized else ()
    fresh = content(cache.load_split("test", 8, cache_dir=str(tmp_path), sizes=sizes))
    folder = tmp_path / "shapes-v1" / ("test-8-at-16x16-20x12" if resized else "test-8")
    damage, reason = CACHE_DAMAGE[case]
    damage(folder)
    with pytest.warns(DataWarning, match=rf"shapes world cache '{re.escape(str(folder))}' {reason}.*: rebuilt it"):
        ds = cache.load_split("test", 8, cache_dir=str(tmp_path), sizes=sizes)
    assert content(ds) == fresh
    assert sorted(p.name for p in folder.parent.iterdir()) == ["test-8", "test-8-at-16x16-20x12"][:1 + resized]


def refuse_writes(monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(pathlib.Path, "mkdir", refuse)
    monkeypatch.setattr(Dataset, "save_to_disk", refuse)


def test_92_a_cache_that_cannot_be_written_names_mmtests_cache_and_the_fix(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("MMTESTS_CACHE", str(tmp_path / "a-file" / "cache"))
    with pytest.raises(EntryError, match=r"the shapes world cannot be cached in '.*/a-file/cache/shapes-v1/test-8': "
                                         r"MMTESTS_CACHE='.*/a-file/cache' cannot be written \(NotADirectoryError: "
                                         r".*\); set MMTESTS_CACHE to a writable folder"):
        cache.load_split("test", 8)
    monkeypatch.setenv("MMTESTS_CACHE", str(tmp_path / "read-only"))
    refuse_writes(monkeypatch)  # what a read-only folder is to anyone but root
    builds = counting(monkeypatch, cache, "build_split")
    with pytest.raises(EntryError, match=r"MMTESTS_CACHE='.*/read-only' cannot be written \(PermissionError: "
                                         r"Permission denied\); set MMTESTS_CACHE to a writable folder .*or make this "
                                         r"one writable"):
        cache.load_split("test", 8)
    assert builds == []  # failed before rendering anything


def test_93_a_read_only_cache_that_is_intact_is_read_and_one_that_is_damaged_says_both(tmp_path, monkeypatch):
    fresh = content(cache.load_split("test", 8, cache_dir=str(tmp_path), sizes=SIZES))
    monkeypatch.setenv("MMTESTS_CACHE", str(tmp_path))
    refuse_writes(monkeypatch)
    assert content(cache.load_split("test", 8, sizes=SIZES)) == fresh
    truncate(arrow(tmp_path / "shapes-v1" / "test-8-at-16x16-20x12"))
    with pytest.raises(EntryError, match=r"cannot be cached in '.*-at-16x16-20x12': it has data-00000-of-00001.arrow "
                                         r"altered .* and MMTESTS_CACHE='.*' cannot be written"):
        cache.load_split("test", 8, sizes=SIZES)


# ---------------------------------------------------------------------------------------------- checkpoints

def damaged(tmp_path, part, file, data) -> Path:
    folder = Path(shutil.copytree(ZOO / part, tmp_path / Path(part).name))
    if data is None:
        (folder / file).unlink()
    else:
        (folder / file).write_bytes(data(folder / file) if callable(data) else data)
    return folder


def half(path: Path) -> bytes:
    return path.read_bytes()[: path.stat().st_size // 2]


CHECKPOINTS = {
    "46-open-clip-safetensors-zero-bytes": ("tiny-clip/open_clip", "open_clip_model.safetensors", b"",
                                            r"\[models.m\]: open_clip_model.safetensors in '.*' cannot be loaded by "
                                            r"open_clip \(SafetensorError: .*\); re-export the checkpoint"),
    "47-open-clip-safetensors-random": ("tiny-clip/open_clip", "open_clip_model.safetensors", bytes(range(256)) * 16,
                                        r"open_clip_model.safetensors in '.*' cannot be loaded by open_clip"),
    "49-hf-safetensors-zero-bytes": ("tiny-clip/hf", "model.safetensors", b"",
                                     r"\[models.m\]: '.*/model.safetensors' cannot be loaded \(SafetensorError: .*\); "
                                     r"re-save or re-download the checkpoint"),
    "62-llava-safetensors-truncated": ("tiny-llava", "model.safetensors", half,
                                       r"\[models.m\]: '.*/model.safetensors' cannot be loaded \(SafetensorError"),
    "65-llava-no-processor-config": ("tiny-llava", "processor_config.json", None,
                                     r"\[models.m\]: model folder '.*' has no image processor settings \(processor_config"
                                     r".json or preprocessor_config.json; it holds .*\); save the processor into it"),
    "hf-clip-no-preprocessor-config": ("tiny-clip/hf", "preprocessor_config.json", None,
                                       r"\[models.m\]: model folder '.*' has no image processor settings"),
}


@pytest.mark.parametrize("case", CHECKPOINTS)
def test_a_damaged_checkpoint_names_the_file_and_the_fix(tmp_path, case):
    from mmtests.adapters import load_dual_encoder
    from mmtests.adapters.llava import VisionLanguageModel

    part, file, data, message = CHECKPOINTS[case]
    folder = damaged(tmp_path, part, file, data)
    with pytest.raises(EntryError, match=message):
        if part == "tiny-llava":
            VisionLanguageModel(str(folder), CPU, entry="m")
        elif part == "tiny-clip/hf":
            load_dual_encoder(ModelSpec("m", "hf_clip", str(folder)), CPU)
        else:
            load_dual_encoder(ModelSpec("m", "open_clip", f"local-dir:{folder}"), CPU)


def clip_encoder(part: str, folder: Path):
    from mmtests.adapters import load_dual_encoder

    if part == "tiny-clip/hf":
        return load_dual_encoder(ModelSpec("m", "hf_clip", str(folder)), CPU)
    return load_dual_encoder(ModelSpec("m", "open_clip", f"local-dir:{folder}"), CPU)


class RunsCode:
    def __reduce__(self):
        return (print, ("ARBITRARY CODE RAN",))


PICKLES = {
    "57-open-clip-malicious-pickle": ("tiny-clip/open_clip", True, r"\[models.m\]: open_clip_pytorch_model.bin in '.*' "
                                      r"cannot be loaded by open_clip \(UnpicklingError: Weights only load failed"),
    "58-hf-malicious-pickle": ("tiny-clip/hf", True, r"\[models.m\]: '.*/pytorch_model.bin' cannot be loaded "
                               r"\(UnpicklingError: Weights only load failed"),
    "59-open-clip-benign-pickle": ("tiny-clip/open_clip", False, None),
    "60-hf-benign-pickle": ("tiny-clip/hf", False, None),
}


@pytest.mark.parametrize("case", PICKLES)
def test_pickled_weights_load_as_weights_only(tmp_path, capsys, case):
    from safetensors.torch import load_file

    part, malicious, message = PICKLES[case]
    folder = Path(shutil.copytree(ZOO / part, tmp_path / "m"))
    safetensors = folder / ("model.safetensors" if part == "tiny-clip/hf" else "open_clip_model.safetensors")
    weights = load_file(safetensors)
    safetensors.unlink()
    torch.save({"x": RunsCode()} if malicious else weights,
               folder / ("pytorch_model.bin" if part == "tiny-clip/hf" else "open_clip_pytorch_model.bin"))
    if malicious:
        with pytest.raises(EntryError, match=message):
            clip_encoder(part, folder)
        assert "ARBITRARY CODE RAN" not in capsys.readouterr().out
        return
    pickled, committed = clip_encoder(part, folder).model.state_dict(), clip_encoder(part, ZOO / part).model.state_dict()
    assert pickled.keys() == committed.keys() and all(torch.equal(pickled[k], committed[k]) for k in committed)


# ---------------------------------------------------------------------------------------------- through pytest

SUITE_MATRIX = """
[models.tiny]
backend = "open_clip"
model = "local-dir:{zoo}/tiny-clip/open_clip"

[datasets.photos]
source = "imagefolder"
path = "{photos}"
label_column = "label"

[datasets.text-labels]
source = "parquet"
path = "{parquet}"
label_column = "label"

[prompt_sets.bare]
templates = ["{{}}"]

[[zero_shot]]
dataset = "photos"
prompt_set = "bare"

[[zero_shot]]
dataset = "text-labels"
prompt_set = "bare"
"""


def test_in_a_run_bad_data_fails_its_own_checks_with_the_message_and_the_rest_measures(pytester, tmp_path):
    root = photos(tmp_path / "photos", {"circle/empty.jpg": b""})
    parquet = photo_parquet(tmp_path / "text.parquet", labels=["circle", "circle", "circle", "square", "square", "square"])
    matrix = pytester.makefile(".toml", matrix=SUITE_MATRIX.format(zoo=ZOO, photos=root, parquet=parquet))
    result = pytester.runpytest_subprocess("--pyargs", "mmtests.suites", f"--mm-config={matrix}", "-k", "top1",
                                           f"--mm-records={tmp_path / 'records.jsonl'}", "-p", "no:cacheprovider")
    out = result.stdout.str()
    outcomes = result.parseoutcomes()  # photos measured on its 6 good images; text-labels failed
    assert (outcomes.get("measured"), outcomes.get("failed"), outcomes.get("passed")) == (1, 1, None)
    assert "label column 'label' holds strings ('circle', 'square', ...), not class indices" in out
    assert "1 of 7 images" in out and "/circle/empty.jpg" in out and "MMTESTS_STRICT_IMAGES=1" in out
    assert "Traceback" not in out
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert any(r.get("test_id") == "tiny/text-labels/bare" and r.get("outcome") == "fail" for r in records)


def test_a_misspelled_generation_setting_is_named_with_the_closest(tmp_path):
    import torch

    from mmtests.adapters.llava import VisionLanguageModel

    zoo = Path(__file__).resolve().parents[1] / "mmtests" / "zoo" / "tiny-llava"
    with pytest.raises(EntryError, match=r"\[models.vlm\]: generation has no setting 'temprature' \(did you mean "
                                         r"'temperature'\?\)"):
        VisionLanguageModel(str(zoo), torch.device("cpu"), entry="vlm", generation={"temprature": 0.7})


def test_out_of_memory_is_a_failure_that_says_so_not_a_skip():
    from types import SimpleNamespace

    from mmtests.mmsession import MMSession

    recorded = []
    session = SimpleNamespace(require_all=False, records=SimpleNamespace(figure=lambda **r: recorded.append(r)))

    def measure():
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:121] DefaultCPUAllocator: can't allocate memory: 80 GB")

    with pytest.raises(pytest.fail.Exception, match="out of memory .*lower --mm-batch-size"):
        MMSession.available(session, measure, test_id="m/d/p", suite="zero_shot")
    assert recorded[0]["outcome"] == "fail" and "out of memory" in recorded[0]["reason"]


def test_an_unwritable_records_location_stops_before_measuring(pytester, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = pytester.runpytest_subprocess("--pyargs", "mmtests.suites", "-p", "no:cacheprovider", "--collect-only",
                                           "-m", "clip", f"--mm-records={blocker / 'records.jsonl'}")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*records file*cannot be written*pass --mm-records with another location*"])


# ---------------------------------------------------------------------------------------------- matrix

def test_15_an_empty_matrix_is_an_error_not_an_empty_run(tmp_path):
    from mmtests.config import ConfigError

    empty = tmp_path / "empty.toml"
    empty.write_text("")
    with pytest.raises(ConfigError, match=r"empty.toml: defines no model; a matrix needs at least one \[models.NAME\]"):
        load_matrix(empty)


def test_20_a_floor_for_a_question_kind_the_questions_do_not_have_is_named(tmp_path):
    from mmtests.config import ConfigError

    text = (pathlib.Path(load_matrix().path).read_text()
            .replace('min_accuracy = { colour = ', 'min_accuracy = { color = ', 1))
    assert "color = " in text
    matrix = tmp_path / "m.toml"
    matrix.write_text(text.replace('"zoo/', f'"{ZOO}/'))
    with pytest.raises(ConfigError, match=r"min_accuracy names question kind 'color' \(did you mean 'colour'\?\)"):
        load_matrix(matrix)


# ---------------------------------------------------------------------------------------------- resources

def test_89_out_of_memory_while_building_a_model_is_not_called_unavailable(monkeypatch):
    import open_clip

    from mmtests.adapters import load_dual_encoder
    from mmtests.errors import ModelUnavailable, out_of_memory

    def no_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: 16777216 bytes")

    monkeypatch.setattr(open_clip, "create_model_and_transforms", no_memory)
    with pytest.raises(RuntimeError) as err:
        load_dual_encoder(ModelSpec("vit", "open_clip", "ViT-L-14"), CPU)
    assert not isinstance(err.value, ModelUnavailable) and out_of_memory(err.value)


def test_91_records_that_stop_taking_lines_name_the_file_what_was_lost_and_the_fix(tmp_path):
    from mmtests.errors import RecordsUnwritable
    from mmtests.figures.record_writer import RecordWriter

    class Full:
        def write(self, _):
            raise OSError(27, "File too large")

        def flush(self):
            pass

        def close(self):
            pass

    writer = RecordWriter(tmp_path / "records.jsonl", {"device": "cpu"}, run_id="R")
    writer._file = writer._samples = Full()
    with pytest.raises(RecordsUnwritable, match=r"records file .*main.jsonl cannot be written \(File too large\): "
                                                r"figure m/d/p top1 was measured but not recorded; free space or raise"):
        writer.figure(suite="zero_shot", test_id="m/d/p", metric="top1", value=0.5)
    with pytest.raises(RecordsUnwritable, match=r"main-samples.jsonl .*the per-sample outcomes of m k were not recorded"):
        writer.samples(model="m", key="k", samples={})


def test_85_a_session_stopped_by_a_matrix_error_or_selecting_nothing_says_so_in_the_records(pytester, tmp_path):
    from mmtests.figures.record_files import run_folders
    from mmtests.figures.record_reader import read_folder

    bad = tmp_path / "bad.toml"
    bad.write_text('[models.x]\nbackend = "nope"\nmodel = "y"\n')
    records = tmp_path / "r" / "records.jsonl"
    assert pytester.runpytest_subprocess("--pyargs", "mmtests.suites", "-p", "no:cacheprovider", f"--mm-config={bad}",
                                         f"--mm-records={records}").ret == 4
    assert pytester.runpytest_subprocess("--pyargs", "mmtests.suites", "-p", "no:cacheprovider", "-k", "nomatchatall",
                                         f"--mm-records={records}").ret == 5
    ends = [read_folder(f).ends["main"][0] for f in run_folders(records)]
    assert [e["exitstatus"] for e in ends] == [4, 5]
    assert "matrix error" in ends[0]["error"] and "backend = 'nope'" in ends[0]["error"]


@pytest.mark.parametrize("bad_row", [0, 2, 6])
def test_a_null_image_in_a_parquet_row_is_skipped_counted_and_named(tmp_path, monkeypatch, bad_row):
    monkeypatch.delenv(sources.STRICT_IMAGES_ENV, raising=False)
    path = photo_parquet(tmp_path / "p.parquet")
    rows = Dataset.from_parquet(str(path))
    images = list(rows.cast_column("image", ImageFeature(decode=False))["image"])
    images.insert(bad_row, None)
    labels = list(rows["label"])
    labels.insert(bad_row, 0)
    Dataset.from_dict({"image": images, "label": labels}, features=rows.features).to_parquet(str(path))
    spec = DatasetSpec("pq", "parquet", str(path), "test", "label")
    with pytest.warns(DataWarning, match=rf"1 of 7 images .* left out of every check: row {bad_row}: no image"):
        loaded = load_checked(spec)
    assert len(loaded.dataset) == 6 and all(im.size == (8, 8) for im in loaded.dataset["image"])
