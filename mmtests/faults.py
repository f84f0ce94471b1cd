"""Detection power, measured: apply a catalogue of silent faults to the embedded zoo and count how many
turn the default matrix's checks red, and how many clean reruns stay green.

Each fault is a broken copy of an embedded model (weights, preprocessing config, tokenizer, generation
settings) or of its matrix entry that still loads and runs without a warning. The suites run on it
against the committed baselines, as CI would. The clean models are rerun too (at other batch sizes
and thread counts): any red there is a false alarm.

    python -m mmtests.faults [--only NAME ...] [--json reports/faults.json]

Treat the catalogue as a sample of what goes wrong, not as the target: the gates are properties of
a healthy model (agreement with its known-good self within measured tolerances), not detectors
written for these faults.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .config import DEFAULT_CONFIG
from .figures.record_files import anchored

ZOO = DEFAULT_CONFIG.parent / "zoo"
# The model of the default matrix each fault is applied to: its entry, the files it lives in, the models
# a run needs (the LLaVA's attention check needs its control too).
TARGETS = {
    "tiny-clip": ("tiny-clip/open_clip", 'model = "local-dir:zoo/tiny-clip/open_clip"', ["tiny-clip"]),
    "tiny-clip-hf": ("tiny-clip/hf", 'model = "zoo/tiny-clip/hf"', ["tiny-clip-hf"]),
    "tiny-llava": ("tiny-llava", 'model = "zoo/tiny-llava"', ["tiny-llava", "tiny-llava-stage1"]),
}


@dataclass(frozen=True)
class Fault:
    name: str
    target: str  # a key of TARGETS
    what: str
    files: Callable[[Path], None] | None = None  # edits the copied model folder in place
    matrix: Callable[[str], str] | None = None  # edits the matrix text


# ----------------------------------------------------------------------------- file edits


def _json(path: Path, edit: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data, indent=2))


def _weights(folder: Path, edit: Callable[[dict], None]) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    file = next(folder.glob("*.safetensors"))
    tensors = load_file(str(file))
    torch.manual_seed(0)
    edit(tensors)
    save_file(tensors, str(file), metadata={"format": "pt"})


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
    return lambda folder: _json(folder / "open_clip_config.json", lambda c: c["preprocess_cfg"].update(changes))


def _image_processor(file: str, **changes) -> Callable[[Path], None]:
    def edit(c: dict) -> None:
        (c["image_processor"] if "image_processor" in c else c).update(changes)

    return lambda folder: _json(folder / file, edit)


def _matrix_sub(old: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        if old not in text:
            raise ValueError(f"matrix text {old!r} not found: the default matrix changed; update mmtests.faults")
        return text.replace(old, new, 1)

    return edit


def _model_option(entry: str, line: str) -> Callable[[str], str]:
    return lambda text: re.sub(rf"(\[models\.{re.escape(entry)}\]\n)", rf"\1{line}\n", text, count=1)


VISION, TEXT = ("visual.",), ("transformer.", "token_embedding", "positional_embedding", "ln_final", "text_projection")

CATALOGUE = [
    Fault("mean-std-0.5-open_clip-only", "tiny-clip", "image mean/std 0.5 in the open_clip format only (formats disagree)",
          _open_clip_preprocess(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])),
    Fault("mean-std-0.5-hf-only", "tiny-clip-hf", "image mean/std 0.5 in the HF preprocessor only",
          _image_processor("preprocessor_config.json", image_mean=[0.5] * 3, image_std=[0.5] * 3)),
    Fault("rgb-bgr-swap", "tiny-clip", "input channels swapped (patch embedding sees BGR)",
          _set("visual.conv1.weight", lambda w: w[:, [2, 1, 0]].contiguous())),
    Fault("resize-bilinear", "tiny-clip", "bilinear instead of bicubic resizing",
          _open_clip_preprocess(interpolation="bilinear")),
    Fault("resize-squash", "tiny-clip", "squash resize instead of shortest side + centre crop",
          _open_clip_preprocess(resize_mode="squash")),
    Fault("hf-no-centre-crop", "tiny-clip-hf", "HF processor resizes to 64x64 without the centre crop",
          _image_processor("preprocessor_config.json", do_center_crop=False, size={"height": 64, "width": 64})),
    Fault("quickgelu-mismatch", "tiny-clip", "QuickGELU instead of the GELU the weights were trained with",
          lambda f: _json(f / "open_clip_config.json", lambda c: c["model_cfg"].update(quick_gelu=True))),
    Fault("text-projection-rows-shuffled", "tiny-clip", "rows of the text projection permuted",
          _set("text_projection", _permuted)),
    Fault("logit-scale-dropped", "tiny-clip", "logit scale reset to 1 (log 0)", _set("logit_scale", lambda w: w * 0)),
    Fault("tokenizer-context-truncated", "tiny-clip-hf", "tokenizer truncates prompts to 6 tokens",
          lambda f: _json(f / "tokenizer_config.json", lambda c: c.update(model_max_length=6))),
    Fault("vision-position-embedding-shuffled", "tiny-clip", "patch position embeddings permuted",
          _set("visual.positional_embedding", lambda w: _permuted(w, keep_first=1))),
    *[Fault(f"noise-{s}-image-tower", "tiny-clip", f"weight noise {s} x std in the image tower", _noise(VISION, s))
      for s in (0.1, 0.3, 0.5)],
    *[Fault(f"noise-{s}-text-tower", "tiny-clip", f"weight noise {s} x std in the text tower", _noise(TEXT, s))
      for s in (0.1, 0.3, 0.5)],
    Fault("prompt-template-changed", "tiny-clip",
          "a prompt set's template edited ('a photo of a big {}.' -> 'a photo of the big {}.')",
          matrix=_matrix_sub('templates = ["a photo of a big {}."]', 'templates = ["a photo of the big {}."]')),
    Fault("class-order-shuffled", "tiny-clip", "class names listed in another order than the labels",
          matrix=_matrix_sub('label_column = "shape"\ndescription = "shape of the big object',
                             'label_column = "shape"\nclassnames = ["square", "circle", "triangle", "star", "cross", '
                             '"ring"]\ndescription = "shape of the big object')),
    Fault("projector-reset", "tiny-llava", "LLaVA projector reset to initialization", _reinit("multi_modal_projector.")),
    Fault("wrong-vision-feature-layer", "tiny-llava", "vision_feature_layer -1 instead of -2",
          lambda f: _json(f / "config.json", lambda c: c.update(vision_feature_layer=-1))),
    Fault("right-padding", "tiny-llava", "right padding in batched generation",
          matrix=_model_option("tiny-llava", 'padding_side = "right"')),
    Fault("sampling-instead-of-greedy", "tiny-llava", "sampling (temperature 1) instead of greedy decoding",
          matrix=_model_option("tiny-llava", "generation = { do_sample = true, temperature = 1.0 }")),
    Fault("attention-mask-dropped", "tiny-llava", "tokenizer returns no attention mask (padding attended)",
          lambda f: _json(f / "tokenizer_config.json", lambda c: c.update(model_input_names=["input_ids"]))),
    Fault("llava-mean-std-0.5", "tiny-llava", "LLaVA image processor mean/std 0.5",
          _image_processor("processor_config.json", image_mean=[0.5] * 3, image_std=[0.5] * 3)),
    Fault("noise-0.1-language-model", "tiny-llava", "weight noise 0.1 x std in the language model",
          _noise(("language_model.",), 0.1)),
]
# Clean reruns: the unbroken models at other batch sizes and thread counts. Any red here is a false alarm.
CLEAN_RUNS = [("clean", None, "2"), ("clean-batch-7-1-thread", 7, "1")]


@dataclass
class Result:
    name: str
    what: str
    red: list[str]  # "test_id metric" of every failed figure
    exit_code: int
    seconds: float

    @property
    def caught(self) -> bool:
        return bool(self.red) or self.exit_code not in (0, 5)


def _run(matrix: Path, models: list[str], workdir: Path, batch: int | None = None, threads: str = "2",
         select: str | None = None) -> Result:
    """The suites on `matrix`, narrowed to `models` (and `-k select`), in a subprocess; the red figures."""
    records = workdir / "records.jsonl"
    records.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pytest", "--pyargs", "mmtests.suites", "-q", "-p", "no:cacheprovider",
           f"--mm-config={matrix}", f"--mm-records={records}", "--mm-require-all",
           *[f"--mm-model={m}" for m in models]]
    if batch:
        cmd.append(f"--mm-batch-size={batch}")
    if select:
        cmd += ["-k", select]
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=workdir)
    red = []
    if records.is_file():
        for line in records.read_text().splitlines():
            r = json.loads(line)
            if r.get("kind") == "figure" and r.get("outcome") == "fail":
                red.append(f"{r['test_id']} {r['metric']}")
    return Result("", "", red, proc.returncode, time.perf_counter() - start)


def apply(fault: Fault, workdir: Path) -> Path:
    """A matrix file whose target model is the broken copy (baselines: the committed, healthy ones)."""
    folder, line, _ = TARGETS[fault.target]
    text = DEFAULT_CONFIG.read_text()
    if fault.files is not None:
        copy = workdir / "model"
        shutil.copytree(ZOO / folder, copy)
        fault.files(copy)
        prefix = "local-dir:" if "local-dir:" in line else ""
        text = text.replace(line, f'model = "{prefix}{copy}"')
    if fault.matrix is not None:
        text = fault.matrix(text)
    # Everything else stays relative to the packaged default's folder.
    text = re.sub(r'"(local-dir:)?zoo/', lambda m: f'"{m.group(1) or ""}{ZOO}/', text)
    matrix = workdir / "matrix.toml"
    matrix.write_text(text)
    return matrix


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mmtests.faults", description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run only these faults (and no clean reruns)")
    ap.add_argument("--json", type=anchored, default="reports/faults.json",
                    help="write the results here (relative: to the current directory)")
    ap.add_argument("--list", action="store_true", help="list the catalogue and exit")
    args = ap.parse_args(argv)
    if args.list:
        for f in CATALOGUE:
            print(f"{f.name:40s} {f.target:13s} {f.what}")
        return 0
    known = {f.name: f for f in CATALOGUE}
    unknown = [n for n in args.only or [] if n not in known]
    if unknown:
        ap.error(f"unknown fault(s) {', '.join(unknown)}; `--list` shows the catalogue")
    faults = [known[n] for n in args.only] if args.only else CATALOGUE
    results, clean = [], []
    from tqdm.auto import tqdm

    with tempfile.TemporaryDirectory(prefix="mmtests-faults-") as tmp:
        if not args.only:
            for name, batch, threads in CLEAN_RUNS:
                workdir = Path(tmp) / name
                workdir.mkdir()
                matrix = apply(Fault(name, "tiny-clip", "clean"), workdir)
                r = _run(matrix, sorted({m for _, _, ms in TARGETS.values() for m in ms}), workdir, batch, threads)
                r.name, r.what = name, f"clean models, batch {batch or 'default'}, {threads} thread(s)"
                clean.append(r)
                print(f"{name}: {'FALSE ALARM ' + '; '.join(r.red[:3]) if r.caught else 'green'} ({r.seconds:.0f} s)",
                      flush=True)
        for fault in tqdm(faults, desc="faults", disable=None):
            workdir = Path(tmp) / fault.name
            workdir.mkdir()
            r = _run(apply(fault, workdir), TARGETS[fault.target][2], workdir)
            r.name, r.what = fault.name, fault.what
            results.append(r)
            tqdm.write(f"{fault.name}: {'caught by ' + str(len(r.red)) + ' checks' if r.caught else 'MISSED'} "
                       f"({r.seconds:.0f} s)")
    from tabulate import tabulate

    rows = [[r.name, r.what, len(r.red), "; ".join(r.red[:3]) + (" ..." if len(r.red) > 3 else ""),
             "yes" if r.caught else "no"] for r in results]
    print(tabulate(rows, headers=["fault", "what", "red checks", "e.g.", "caught"]))
    rate = sum(r.caught for r in results) / len(results) if results else 0.0
    alarms = sum(r.caught for r in clean)
    print(f"detection rate: {rate:.0%} ({sum(r.caught for r in results)} of {len(results)})")
    if clean:
        print(f"false alarms: {alarms} (of {len(clean)} clean reruns)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "detection_rate": rate, "false_alarms": alarms if clean else None,
        "faults": [r.__dict__ | {"caught": r.caught} for r in results],
        "clean": [r.__dict__ | {"caught": r.caught} for r in clean]}, indent=2))
    return 1 if alarms else 0


if __name__ == "__main__":
    sys.exit(main())
