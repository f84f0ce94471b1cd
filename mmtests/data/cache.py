"""The shapes world's verified on-disk cache: each split (and each variant of it) built once, then read back.

Rendering the training split takes minutes and the cached folders outlive any one run, so every folder carries
the sha256 of its files and is checked on each load: a damaged folder is rebuilt, never read.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DataWarning, EntryError
from .render import SPLIT_SIZES, WORLD_VERSION, build_split
from .variants import JPEG_VERSION, as_jpeg_photos, at_sizes

if TYPE_CHECKING:
    from datasets import Dataset

DIGEST_FILE = "mmtests-digest.json"  # beside a cached split's arrow files: the sha256 of each file, written last


def load_split(split: str, size: int | None = None, cache_dir: str | None = None,
               sizes: tuple[tuple[int, int], ...] = (), image_format: str = "png") -> Dataset:
    """A split from the on-disk cache (`MMTESTS_CACHE`, default ~/.cache/mmtests), generated on first use;
    with `sizes`, resized as `at_sizes` does (cached too: resizing costs more than reading); with
    `image_format="jpeg"`, as photo-like JPEGs of 224-512 pixels a side (`as_jpeg_photos`, cached too).

    Each cached folder carries the sha256 of its files (`mmtests-digest.json`, written after a successful
    build) and is verified on every load: a folder with a file truncated, altered or missing, or without a
    digest, is rebuilt with a `DataWarning` naming it, never read. A cache that cannot be written is an
    EntryError naming MMTESTS_CACHE and the fix."""
    size = SPLIT_SIZES.get(split, 0) if size is None else size
    root = Path(cache_dir or os.environ.get("MMTESTS_CACHE") or Path.home() / ".cache" / "mmtests").expanduser()
    path = root / f"shapes-v{WORLD_VERSION}" / f"{split}-{size}"
    if image_format == "jpeg":
        if sizes:
            raise ValueError("image sizes do not apply to the JPEG photos: each is rendered at its own size")
        photos = path.with_name(f"{path.name}-jpeg-v{JPEG_VERSION}")
        return _cached(photos, lambda: as_jpeg_photos(_cached(path, lambda: build_split(split, size), cache_dir), split),
                       cache_dir)
    if image_format != "png":
        raise ValueError(f"shapes world has no image format {image_format!r} (known: png, jpeg)")
    if not sizes:
        return _cached(path, lambda: build_split(split, size), cache_dir)
    resized = path.with_name(f"{path.name}-at-" + "-".join(f"{w}x{h}" for w, h in sizes))
    return _cached(resized, lambda: at_sizes(_cached(path, lambda: build_split(split, size), cache_dir), sizes),
                   cache_dir)


def _sha256(path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _damage(folder) -> str | None:
    """What is wrong with a cached folder (None: every file is as written when it was built)."""
    try:
        recorded = json.loads((folder / DIGEST_FILE).read_text())["files"]
        if not isinstance(recorded, dict) or not recorded:
            raise TypeError
    except FileNotFoundError:
        return f"has no {DIGEST_FILE} (written by an older mmtests, or by a build that did not finish)"
    except (ValueError, KeyError, TypeError):
        return f"has an unreadable {DIGEST_FILE}"
    for name, digest in sorted(recorded.items()):
        if not (folder / name).is_file():
            return f"lacks {name}"
        if _sha256(folder / name) != digest:
            return f"has {name} altered (its bytes differ from those written when it was built)"
    return None


def _cached(folder, build, cache_dir: str | None):
    """The dataset saved in `folder`, verified against its digest; built (atomically, digest written last) when
    absent, rebuilt with a DataWarning when damaged."""
    from datasets import load_from_disk

    damage = _damage(folder) if folder.exists() else None
    if folder.exists() and damage is None:
        try:
            return load_from_disk(str(folder))
        except Exception as err:  # noqa: BLE001  (verified bytes that datasets cannot read: rebuild them)
            damage = f"cannot be read ({err.__class__.__name__}: {str(err)[:200]})"
    _save(build, folder, cache_dir, damage)
    if damage:
        warnings.warn(f"shapes world cache {str(folder)!r} {damage}: rebuilt it", DataWarning, stacklevel=3)
    return load_from_disk(str(folder))


def _save(build, folder, cache_dir: str | None, damage: str | None) -> None:
    """Build and save into a fresh folder beside `folder` (made first: an unwritable cache fails before the
    build), digest written last, then swap it in: a reader never sees a half-written folder, and concurrent
    builders (pytest-xdist workers) each write their own."""
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        tmp.mkdir(parents=True)
        ds = build()
        ds.save_to_disk(str(tmp))
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / DIGEST_FILE).write_text(json.dumps({"world_version": WORLD_VERSION, "rows": len(ds), "files": files},
                                                  indent=1) + "\n")
        old = folder.with_name(f".{folder.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            folder.rename(old)
        except FileNotFoundError:
            old = None
        try:
            tmp.rename(folder)
        except OSError:
            if _damage(folder) is not None:  # not another builder's complete folder
                if old is not None and not folder.exists():
                    old.rename(folder)
                raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as err:
        raise _unwritable(folder, err, cache_dir, damage) from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _unwritable(folder, err: OSError, cache_dir: str | None, damage: str | None):
    if cache_dir:
        chosen = f"the cache folder {cache_dir!r} (cache_dir)"
    elif os.environ.get("MMTESTS_CACHE"):
        chosen = f"MMTESTS_CACHE={os.environ['MMTESTS_CACHE']!r}"
    else:
        chosen = "the default cache ~/.cache/mmtests (MMTESTS_CACHE is not set)"
    why = f"it {damage} and " if damage else ""
    return EntryError(f"the shapes world cannot be cached in {str(folder)!r}: {why}{chosen} cannot be written "
                      f"({err.__class__.__name__}: {err.strerror or err}); set MMTESTS_CACHE to a writable folder "
                      "(the evaluation splits take about 50 MB, the training split 200 MB more), or make this one "
                      "writable")
