"""Datasets by source: the built-in shapes world, Hugging Face names, local imagefolder or parquet.

What is loaded is checked before anything is embedded: the columns, every image (decoded once at load; one
that does not decode is skipped, counted and named, or a failure with `strict_images` / MMTESTS_STRICT_IMAGES=1;
one the RGB rule of `images.to_rgb` changes, with alpha, 16-bit or float values or several frames, is counted and
named),
an imagefolder's class folders (an empty one is an error, not a class that silently disappears), and the labels
(class indices within the class names, not strings). Counts and class lists against what the checks ask of them:
`shape.py`.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..config import DatasetSpec, is_local_path
from ..errors import DatasetUnavailable, DataWarning, EntryError  # noqa: F401  (re-exported)
from .images import KINDS, Note, to_rgb
from .shape import at_most, check_class_names

STRICT_IMAGES_ENV = "MMTESTS_STRICT_IMAGES"  # "1": an image that does not decode fails the dataset
NAMED = 5  # skipped images, folders or values named in one message


@dataclass(frozen=True)
class SkippedImage:
    """A row whose image cannot be decoded: left out of every check, counted and named."""

    row: int  # index in the split as loaded (after `limit`, which keeps the first rows)
    file: str | None  # the image file (imagefolder), or the path stored with the image bytes, if any
    reason: str

    def __str__(self) -> str:
        return f"row {self.row}" + (f" ({self.file})" if self.file else "") + f": {self.reason}"


@dataclass(frozen=True)
class ConvertedImage:
    """A row whose image the RGB rule changed (`images.to_rgb`): what every model is given differs from PIL's own
    conversion, the same for every backend."""

    row: int  # index in the split as loaded, as `SkippedImage.row`
    file: str | None
    note: Note

    def __str__(self) -> str:
        return f"row {self.row}" + (f" ({self.file})" if self.file else "") + f": {self.note}"


@dataclass(frozen=True)
class LoadedDataset:
    """A dataset entry's rows as every check sees them, the rows left out because their image does not decode, and
    the rows whose image the RGB rule changed."""

    dataset: object  # datasets.Dataset
    skipped: tuple[SkippedImage, ...] = ()
    converted: tuple[ConvertedImage, ...] = ()


def strict_images_from_env() -> bool:
    return os.environ.get(STRICT_IMAGES_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _what(spec: DatasetSpec) -> str:
    return "the shapes world" if spec.source == "shapes" else f"{spec.source} {spec.path!r}"


def _is_local(spec: DatasetSpec) -> bool:
    return spec.source != "hf" or is_local_path(spec.path)


def _load_hf(spec: DatasetSpec):
    from datasets import load_dataset

    where = f"[datasets.{spec.name}]"
    if _is_local(spec) and not Path(spec.path).expanduser().exists():
        raise EntryError(f"{where}: {spec.source} path {spec.path!r} does not exist; fix 'path' in {where} "
                         "(relative paths are relative to the matrix file)")
    if spec.source == "hf":
        return load_dataset(str(Path(spec.path).expanduser()) if _is_local(spec) else spec.path, split=spec.split)
    if spec.source == "imagefolder":
        return load_dataset("imagefolder", data_dir=spec.path, split=spec.split)
    files = [str(p) for p in sorted(Path(spec.path).glob("*.parquet"))] if Path(spec.path).is_dir() else [spec.path]
    if not files:
        raise EntryError(f"{where}: parquet folder {spec.path!r} holds no *.parquet files; fix 'path' in {where}")
    return load_dataset("parquet", data_files={spec.split: files}, split=spec.split)


def _split_error(spec: DatasetSpec, err: ValueError) -> EntryError | None:
    """`load_dataset`'s unknown split, as an error naming the entry and the splits there are."""
    import re

    found = re.match(r'Unknown split "(.*)"\. Should be one of \[(.*)\]', str(err))
    if not found:
        return None
    known = ", ".join(k.strip(" '\"") for k in found.group(2).split(",")) or "none"
    return EntryError(f"[datasets.{spec.name}]: {spec.source} {spec.path!r} has no split {spec.split!r} (splits: "
                      f"{known}); set 'split' in [datasets.{spec.name}] to one of them")


def _broken(spec: DatasetSpec, err: Exception) -> EntryError:
    reason = " ".join(str(err).split())[:300]
    return EntryError(f"[datasets.{spec.name}]: {spec.source} {spec.path!r} (split {spec.split!r}) cannot be loaded "
                      f"({err.__class__.__name__}: {reason}); fix the files or 'path' / 'source' in "
                      f"[datasets.{spec.name}]")


def load_images_and_labels(spec: DatasetSpec, strict_images: bool | None = None):
    """The split a dataset entry names, checked (see `load_checked`), without the rows whose image does not decode."""
    return load_checked(spec, strict_images).dataset


def load_checked(spec: DatasetSpec, strict_images: bool | None = None, progress=None) -> LoadedDataset:
    """The split a dataset entry names, checked for its image and label columns, its class folders and its images.

    Every image is decoded once here (the shapes world's excepted: its cache carries a content digest). One that
    does not decode is left out and named in `skipped` and in a `DataWarning`; with `strict_images` (None: the
    MMTESTS_STRICT_IMAGES environment variable) it is an EntryError instead; so it is, whatever `strict_images`,
    when no image decodes.
    """
    if spec.source == "shapes":
        from .cache import load_split

        ds = load_split(spec.split, spec.size, sizes=spec.image_sizes, image_format=spec.image_format)
    else:
        try:
            ds = _load_hf(spec)
        except EntryError:
            raise
        except ValueError as err:  # includes pyarrow's ArrowInvalid: files that are not what the entry says
            raise _split_error(spec, err) or _broken(spec, err) from err
        except (FileNotFoundError, ConnectionError, OSError) as err:
            if _is_local(spec):
                raise _broken(spec, err) from err
            raise DatasetUnavailable(
                f"dataset {spec.name!r} ({spec.source} {spec.path!r}, split {spec.split!r}) is not available here "
                f"({err.__class__.__name__}: {str(err)[:300]}). Download it once where the hub is reachable "
                "(it lands in the HF cache), or point the entry at a local imagefolder or parquet copy."
            ) from err
    if spec.source == "imagefolder":
        _check_class_folders(spec, ds)
    missing = [c for c in (spec.image_column, spec.label_column) if c is not None and c not in ds.column_names]
    if missing:
        raise EntryError(
            f"dataset {spec.name!r} ({_what(spec)}, split {spec.split!r}) has no column "
            f"{', '.join(map(repr, missing))} (columns: {', '.join(ds.column_names)}); set image_column / "
            f"label_column in [datasets.{spec.name}]"
        )
    ds = _with_image_feature(spec, ds)
    if spec.limit is not None:
        ds = ds.select(range(at_most(spec.limit, len(ds), f"[datasets.{spec.name}]", "limit", "rows")))
    if len(ds) == 0:
        raise EntryError(f"dataset {spec.name!r} ({_what(spec)}, split {spec.split!r}) has no rows; point "
                         f"[datasets.{spec.name}] at a split with images")
    if spec.source == "shapes":  # rendered by mmtests and verified against the cache's content digest
        return LoadedDataset(ds)
    skipped, converted = _checked_images(spec, ds, progress)
    if not skipped:
        _warn_converted(spec, len(ds), converted)
        return LoadedDataset(ds, converted=tuple(converted))
    named = _listed([str(s) for s in skipped])
    where = f"[datasets.{spec.name}]"
    if len(skipped) == len(ds):
        raise EntryError(f"{where}: none of the {len(ds)} images of {_what(spec)} (split {spec.split!r}, column "
                         f"{spec.image_column!r}) can be decoded: {named}; fix the files, or set image_column / "
                         f"path in {where}")
    strict = strict_images_from_env() if strict_images is None else strict_images
    if strict:
        raise EntryError(f"{where}: {len(skipped)} of {len(ds)} images of {_what(spec)} (split {spec.split!r}) "
                         f"cannot be decoded: {named}; fix or remove those files (strict image checking is on; "
                         f"without it, with {STRICT_IMAGES_ENV} unset, they are skipped, counted and named)")
    _warn_converted(spec, len(ds), converted)
    verb = "is" if len(skipped) == 1 else "are"
    warnings.warn(f"{where}: {len(skipped)} of {len(ds)} images of {_what(spec)} (split {spec.split!r}) cannot be "
                  f"decoded and {verb} left out of every check: {named}; fix or remove those files, or set "
                  f"{STRICT_IMAGES_ENV}=1 to make this a failure", DataWarning, stacklevel=2)
    bad = {s.row for s in skipped}
    return LoadedDataset(ds.select([i for i in range(len(ds)) if i not in bad]), tuple(skipped), tuple(converted))


def _warn_converted(spec: DatasetSpec, rows: int, converted: list[ConvertedImage]) -> None:
    """One DataWarning per dataset for the images the RGB rule changed, counted by kind, the first ones named."""
    if not converted:
        return
    counts = ", ".join(f"{kind}: {n}" for kind in KINDS if (n := sum(kind in c.note.kinds for c in converted)))
    verb = "was" if len(converted) == 1 else "were"
    warnings.warn(f"[datasets.{spec.name}]: {len(converted)} of {rows} images of {_what(spec)} (split {spec.split!r}) "
                  f"{verb} converted to RGB by mmtests' one rule before any model saw them ({counts}): "
                  f"{_listed([str(c) for c in converted])}; every backend gets these pixels (the rule and why: "
                  "mmtests/data/images.py); store the images as 8-bit RGB to have none converted",
                  DataWarning, stacklevel=3)


def _listed(items: list[str]) -> str:
    more = f"; and {len(items) - NAMED} more" if len(items) > NAMED else ""
    return "; ".join(items[:NAMED]) + more


def _image_paths(ds, column: str) -> list[str | None]:
    """The stored path of each row's image, read from the arrow data (nothing decoded)."""
    import pyarrow as pa

    data = ds.select_columns([column]).with_format("arrow")[:][column]
    if not pa.types.is_struct(data.type) or data.type.get_field_index("path") < 0:
        return []
    return data.combine_chunks().field("path").to_pylist()


def _image_extensions() -> tuple[str, ...]:
    import importlib

    folder = importlib.import_module("datasets.packaged_modules.imagefolder.imagefolder")
    return tuple(e.lower() for e in folder.ImageFolder.EXTENSIONS)


def _check_class_folders(spec: DatasetSpec, ds) -> None:
    """An imagefolder's labels are the folders its images are in: a class folder without an image would silently
    drop out of the class list (and shift every class after it), so it is an error naming the folder."""
    from datasets import ClassLabel

    label = ds.features.get("label")
    if spec.image_column not in ds.column_names:
        return
    if label is None and spec.label_column == "label":
        # datasets infers no labels from a single class folder: say that, not that the column is missing.
        folders = sorted({Path(p).parent.name for p in _image_paths(ds, spec.image_column) if p})
        if len(folders) == 1:
            check_class_names(folders, f"[datasets.{spec.name}]: imagefolder {spec.path!r} (split {spec.split!r}, "
                                       "its images all in one folder)", f"[datasets.{spec.name}]")
    if not isinstance(label, ClassLabel):
        return  # no labels inferred from folders: nothing can disappear
    root = Path(spec.path).expanduser().resolve()
    classes = {Path(p).parent for p in _image_paths(ds, spec.image_column) if p}
    extensions = _image_extensions()

    def has_images(folder: Path) -> bool:
        return any(f.suffix.lower() in extensions for f in folder.rglob("*") if f.is_file())

    empty = []
    for parent in sorted({c.parent for c in classes}):
        if not parent.resolve().is_relative_to(root):
            continue
        empty += [d for d in sorted(parent.iterdir()) if d.is_dir() and not d.name.startswith((".", "_"))
                  and d not in classes and not has_images(d)]
    if empty:
        named = _listed([repr(str(d)) for d in empty])
        raise EntryError(
            f"[datasets.{spec.name}]: imagefolder {spec.path!r} (split {spec.split!r}) has class "
            f"folder{'s' if len(empty) > 1 else ''} without images: {named}; its class would silently disappear "
            f"from the class list ({', '.join(label.names)}); put the images in, or remove the folder"
        )


def _with_image_feature(spec: DatasetSpec, ds):
    """The image column as images: image bytes stored without the datasets metadata (a parquet written by another
    tool: a struct of bytes and path) are cast to images; any other type is an error naming the column."""
    from datasets import Image

    feature = ds.features[spec.image_column]
    if isinstance(feature, Image):
        return ds
    if isinstance(feature, dict) and {"bytes", "path"} <= set(feature):
        return ds.cast_column(spec.image_column, Image())
    raise EntryError(f"dataset {spec.name!r} ({_what(spec)}): image column {spec.image_column!r} holds {feature}, "
                     f"not images; set image_column in [datasets.{spec.name}] to the column with the images "
                     f"(columns: {', '.join(ds.column_names)})")


def _check_image(value) -> tuple[str | None, Note | None]:
    """Why one stored image (datasets' {"bytes", "path"}) does not decode (None when it does), and what the RGB rule
    changes in it (None: nothing)."""
    import io
    import re

    from PIL import Image

    if value is None:  # a null in the image column
        return "no image (the row's image is empty)", None
    if not isinstance(value, dict):
        return None, None
    data, path = value.get("bytes"), value.get("path")
    if data is None and path is None:
        return "no image (neither bytes nor a file)", None
    if data is None and ("://" in path or "::" in path):
        return None, None  # a remote file: decoded when it is used
    try:
        with Image.open(io.BytesIO(data) if data is not None else path) as image:
            image.load()
            return None, to_rgb(image)[1]
    except Exception as err:  # noqa: BLE001  (whatever PIL raises: the image cannot be used)
        first = next((line.strip() for line in str(err).splitlines() if line.strip()), "")
        first = re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", "(its stored bytes)", first)
        return f"{err.__class__.__name__}: {first[:200]}", None


def _checked_images(spec: DatasetSpec, ds, progress=None) -> tuple[list[SkippedImage], list[ConvertedImage]]:
    """Every row's image decoded once (from its stored bytes or file), in order; the ones that fail, and the ones
    the RGB rule changes. `progress(task, done, total, unit)`, when given, is told the rows checked."""
    raw = ds.select_columns([spec.image_column]).with_format("arrow")
    skipped, converted, row = [], [], 0
    task = f"checking the images of {spec.name}"
    for table in raw.iter(batch_size=256):
        if progress is not None:
            progress(task, row, len(ds), "images")
        for value in table.column(spec.image_column).to_pylist():
            reason, note = _check_image(value)
            path = value.get("path") if isinstance(value, dict) else None
            if reason:
                skipped.append(SkippedImage(row, path, reason))
            elif note:
                converted.append(ConvertedImage(row, path, note))
            row += 1
    if progress is not None:
        progress(task, row, len(ds), "images")
    return skipped, converted


def class_names(spec: DatasetSpec, ds) -> list[str]:
    """The entry's class names, else the label column's ClassLabel names."""
    if spec.classnames is not None:
        return list(spec.classnames)
    names = getattr(ds.features[spec.label_column], "names", None)
    if not names:
        raise EntryError(
            f"dataset {spec.name!r} ({_what(spec)}): label column {spec.label_column!r} has no class names (it is "
            f"{ds.features[spec.label_column]}, not a ClassLabel); list them as 'classnames' in [datasets.{spec.name}]"
        )
    return list(names)


_INTEGER = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")


def labels_and_class_names(spec: DatasetSpec, ds) -> tuple[list[int], list[str]]:
    """The label column as class indices and the class names they index, checked before anything is embedded:
    a ClassLabel or integer column (strings, lists, floats are an error naming the column and the fix), every
    value within the class names (-1, the hub's "no label", included)."""
    from datasets import ClassLabel, Value

    column, where = spec.label_column, f"[datasets.{spec.name}]"
    what = f"dataset {spec.name!r} ({_what(spec)}, split {spec.split!r})"
    feature = ds.features[column]
    if spec.source == "shapes" and not isinstance(feature, ClassLabel):
        labelled = ", ".join(c for c, f in ds.features.items() if isinstance(f, ClassLabel))
        raise EntryError(f"{what}: label column {column!r} holds {feature}, not class indices; set label_column in "
                         f"{where} to one of the shapes world's label columns: {labelled}")
    if isinstance(feature, Value) and feature.dtype in ("string", "large_string"):
        examples = ", ".join(repr(v) for v in dict.fromkeys(ds[:NAMED * 4][column]))
        raise EntryError(
            f"{what}: label column {column!r} holds strings ({examples}, ...), not class indices; store it as a "
            f"ClassLabel (dataset.class_encode_column({column!r}) before saving), or store the labels as integers "
            f"0..C-1 and list the class names in that order as 'classnames' in {where}"
        )
    if not isinstance(feature, ClassLabel) and not (isinstance(feature, Value) and feature.dtype in _INTEGER):
        raise EntryError(f"{what}: label column {column!r} holds {feature}, not class indices; set label_column in "
                         f"{where} to a ClassLabel or integer column (columns: {', '.join(ds.column_names)})")
    names = class_names(spec, ds)
    if isinstance(feature, ClassLabel) and spec.classnames is not None and len(names) != feature.num_classes:
        raise EntryError(f"{what}: 'classnames' in {where} lists {len(names)} names but label column {column!r} is a "
                         f"ClassLabel of {feature.num_classes} ({', '.join(feature.names[:NAMED * 2])}); list one name "
                         "per class, in the ClassLabel's order, or drop 'classnames' to use the ClassLabel's names")
    check_class_names(names, what, where)
    labels = list(ds[column])
    outside = [(i, v) for i, v in enumerate(labels) if v is None or not 0 <= v < len(names)]
    if outside:
        examples = ", ".join(f"{v} at row {i}" for i, v in outside[:NAMED])
        fix = ("-1 marks a row without a label (the test splits of many hub datasets have none): use a labelled "
               "split" if any(v == -1 for _, v in outside) else "list every class in 'classnames', or fix the labels")
        raise EntryError(f"{what}: label column {column!r} has {len(outside)} of {len(labels)} values outside "
                         f"0..{len(names) - 1}, the {len(names)} class names ({examples}); {fix}")
    return labels, names
