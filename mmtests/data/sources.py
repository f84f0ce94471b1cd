"""Datasets by source: the built-in shapes world, Hugging Face names, local imagefolder or parquet."""

from __future__ import annotations

from pathlib import Path

from ..config import DatasetSpec, is_local_path
from ..errors import DatasetUnavailable, EntryError  # noqa: F401  (re-exported)


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


def load_images_and_labels(spec: DatasetSpec):
    """The split a dataset entry names, checked for its image and label columns."""
    if spec.source == "shapes":
        from .shapes_world import load_split

        ds = load_split(spec.split, spec.size, sizes=spec.image_sizes)
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
    missing = [c for c in (spec.image_column, spec.label_column) if c is not None and c not in ds.column_names]
    if missing:
        raise EntryError(
            f"dataset {spec.name!r} ({_what(spec)}, split {spec.split!r}) has no column "
            f"{', '.join(map(repr, missing))} (columns: {', '.join(ds.column_names)}); set image_column / "
            f"label_column in [datasets.{spec.name}]"
        )
    if spec.limit is not None:
        ds = ds.select(range(min(spec.limit, len(ds))))
    return ds


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
