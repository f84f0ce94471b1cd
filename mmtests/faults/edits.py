"""Edits of a copied model folder: its JSON settings and its safetensors weights.

Every file is rewritten by replacing it (a new file moved over the old name), never written through: in a copy
whose weight files are links to the user's own (`copy_model`), an edit replaces the link and leaves theirs as it was.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf")


def copy_model(src: Path, dst: Path) -> None:
    """A copy of the folder `src` at `dst`: settings, tokenizer and processor files copied, weight files linked
    (an edit replaces the link with its own file)."""
    for path in sorted(src.rglob("*")):
        if ".git" in path.relative_to(src).parts:
            continue
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.name.endswith(WEIGHT_SUFFIXES):
                target.symlink_to(path.resolve())
            else:
                shutil.copy2(path, target)


def _replace(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.name}.new")
    write(tmp)
    os.replace(tmp, path)


def _json(path: Path, edit: Callable[[dict], object]) -> object:
    """`edit` on the JSON file's data, written back; what `edit` returns."""
    data = json.loads(path.read_text())
    result = edit(data)
    _replace(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2)))
    return result


def weight_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def weight_keys(folder: Path) -> list[str]:
    from safetensors import safe_open

    keys = []
    for file in weight_files(folder):
        with safe_open(str(file), "pt") as f:
            keys += list(f.keys())
    return keys


def _weights(folder: Path, edit: Callable[[dict], None]) -> None:
    """`edit` on the tensors of each safetensors file of `folder` (one seed per file); a file it changed is rewritten."""
    import torch
    from safetensors.torch import load_file, save_file

    for file in weight_files(folder):
        tensors = load_file(str(file))
        before = dict(tensors)
        torch.manual_seed(0)
        edit(tensors)
        if any(tensors[k] is not before[k] for k in tensors):
            _replace(file, lambda tmp, t=tensors: save_file(t, str(tmp), metadata={"format": "pt"}))


def _noise(prefixes: tuple[str, ...], scale: float) -> Callable[[Path], None]:
    """Gaussian noise of `scale` x each tensor's own standard deviation on the weights under `prefixes`."""
    import torch

    def edit(tensors: dict) -> None:
        for key, t in tensors.items():
            if key.startswith(prefixes) and t.dtype.is_floating_point and t.numel() > 1:
                tensors[key] = t + torch.randn_like(t) * t.std() * scale

    return lambda folder: _weights(folder, edit)


def _set(key: str, fn: Callable) -> Callable[[Path], None]:
    def edit(tensors: dict) -> None:
        if key in tensors:
            tensors[key] = fn(tensors[key])

    return lambda folder: _weights(folder, edit)


def _permuted(w, keep_first: int = 0):
    """Rows of `w` in a fixed random order (the first `keep_first` kept in place)."""
    import torch

    order = torch.cat([torch.arange(keep_first), keep_first + torch.randperm(w.shape[0] - keep_first)])
    return w[order].contiguous()


def _reinit(prefix: str) -> Callable[[Path], None]:
    import torch

    def edit(tensors: dict) -> None:
        for key, t in tensors.items():
            if key.startswith(prefix):
                tensors[key] = torch.zeros_like(t) if key.endswith("bias") else torch.randn_like(t) * 0.02

    return lambda folder: _weights(folder, edit)


def _open_clip_preprocess(**changes) -> Callable[[Path], None]:
    return lambda folder: _json(folder / "open_clip_config.json",
                                lambda c: c.setdefault("preprocess_cfg", {}).update(changes))


def _image_processor(file: str, **changes) -> Callable[[Path], None]:
    def edit(c: dict) -> None:
        (c["image_processor"] if "image_processor" in c else c).update(changes)

    return lambda folder: _json(folder / file, edit)


CODE_PLUGIN = "mmtests_code_fault"  # the pytest plugin (a module in the run's folder) that applies a code fault


def code_fault(module: str, old: str, new: str) -> Callable[[Path], None]:
    """A one-line fault in mmtests' own code: writes a pytest plugin into the run's folder that re-executes
    `module`'s source with `old` replaced by `new` (in place, so every later call through the module uses it)."""
    def write(workdir: Path) -> None:
        (workdir / f"{CODE_PLUGIN}.py").write_text(
            "import importlib, inspect\n"
            f"_module = importlib.import_module({module!r})\n"
            "_source = inspect.getsource(_module)\n"
            f"if {old!r} not in _source:\n"
            f"    raise RuntimeError({f'{module} has no line {old!r}: the code changed; update mmtests.faults'!r})\n"
            f"exec(compile(_source.replace({old!r}, {new!r}, 1), _module.__file__, 'exec'), _module.__dict__)\n")

    return write
