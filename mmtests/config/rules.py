"""What one key's kind cannot say: rules between keys of an entry and between entries. Each rule notes its
problems and returns whether the entry is kept (False: rejected, so it is not defined either)."""

from __future__ import annotations

from .schema import RANDOM_VLMS
from .values import Context, did_you_mean, unknown


def model(values: dict, entry: dict, where: str, ctx: Context) -> bool:
    if values["pretrained"] and entry["model"].startswith("local-dir:"):
        ctx.problems.append(f"{where}: pretrained is ignored with model = 'local-dir:...' (open_clip loads the "
                            "folder's own weights); remove it, or name a built-in config in 'model'")
    ctx.problems.extend(f"{where}: {problem}" for problem in backend_settings(values["backend"], entry))
    return True


# Keys only one family's adapter reads: on another backend they would be ignored without a word.
BACKEND_KEYS = {"pretrained": ("open_clip",), "padding_side": ("llava",), "generation": ("llava",)}


def backend_settings(backend: str, entry: dict) -> list[str]:
    """dtype x quantize x backend, as the adapters run them (mmtests.adapters.with_precision, the LLaVA adapter):
    dynamic int8 quantizes a float32 model's Linear layers, so it takes no other dtype (a dual encoder would drop
    the dtype, LLaVA would fail in torch); and keys another backend's adapter reads are refused, not ignored."""
    problems = []
    dtype = entry.get("dtype")
    if entry.get("quantize") and dtype not in (None, "float32"):
        problems.append(f"dtype = {dtype!r} with quantize = {entry['quantize']!r}: dynamic int8 quantization (torch.ao) "
                        f"runs a float32 model with int8 Linear layers; remove dtype for an int8 copy, or quantize "
                        f"for a {dtype} copy")
    for key, backends in BACKEND_KEYS.items():
        if key in entry and backend not in backends:
            problems.append(f"{key} applies to backend {' or '.join(map(repr, backends))} only, not {backend!r}; "
                            "remove it")
    return problems


def on_device(models: dict, device: str) -> list[str]:
    """Entries the run's device cannot run: dynamic int8 quantization (torch.ao) has CPU kernels only."""
    if device == "cpu":
        return []
    return [f"[models.{name}]: quantize = {spec.quantize!r} runs on a CPU only (torch.ao dynamic quantization) and "
            f"this run's device is {device}; pass --mm-device cpu, or leave the entry out (--mm-model)"
            for name, spec in models.items() if spec.quantize]


def dataset(values: dict, entry: dict, where: str, ctx: Context) -> bool:
    source = values["source"]
    if source != "shapes" and "path" not in entry:
        ctx.problems.append(f"{where}: source {source!r} needs 'path' (dataset name, directory or parquet file)")
        return False
    if entry.get("image_format") == "jpeg" and entry.get("image_sizes"):
        ctx.problems.append(f"{where}: image_sizes does not apply with image_format = 'jpeg' (each JPEG scene is "
                            "rendered at its own size, 224-512 pixels a side); remove one of them")
    for key, hint in (("image_sizes", ""), ("image_format", ""), ("size", "; use 'limit' to keep the first rows")):
        if entry.get(key) and source != "shapes":
            ctx.problems.append(f"{where}: {key} applies to the shapes world only (source 'shapes'){hint}")
    if source == "shapes":
        from ..data.facts import SPLIT_SEEDS

        if values["split"] not in SPLIT_SEEDS:
            ctx.problems.append(f"{where}: the shapes world has no split {values['split']!r} "
                                f"(known: {', '.join(SPLIT_SEEDS)})")
    return True


def question_set(values: dict, entry: dict, where: str, ctx: Context) -> bool:
    shapes = values["questions"] == "shapes"
    if shapes and ctx.matrix.datasets[values["dataset"]].source != "shapes":
        ctx.problems.append(f"{where}: questions = 'shapes' needs a dataset with source 'shapes'")
        return False
    if not shapes and "kind" not in entry:
        ctx.problems.append(f"{where}: questions = 'columns' needs 'kind', the kind of every question: \"pope\" for "
                            "yes/no questions scored as POPE (kind_column then names the POPE set), or a name such "
                            "as \"vqa\" for answers scored by exact match (kind_column then holds per-question kinds)")
    elif shapes and "kind" in entry:
        ctx.problems.append(f"{where}: kind applies to questions = 'columns' only; the shapes world's questions "
                            "carry their own kinds")
    if shapes and values["bbox_column"] is None:
        values["bbox_column"] = "bbox"  # the shapes world knows where every object is
    return True


def zero_shot(values: dict, entry: dict, where: str, ctx: Context) -> bool:
    found = ctx.matrix.datasets.get(values["dataset"])
    if found is not None and found.label_column is None:
        ctx.problems.append(f"[datasets.{found.name}]: missing 'label_column' (the column holding class indices), "
                            f"needed by {where}")
    return True


def retrieval(values: dict, entry: dict, where: str, ctx: Context) -> bool:
    found = ctx.matrix.datasets.get(values["dataset"])
    if found is not None and found.caption_column is None:
        hint = ' ("captions" in the shapes world)' if found.source == "shapes" else ""
        ctx.problems.append(f"[datasets.{found.name}]: missing 'caption_column' (the column holding each image's "
                            f"captions{hint}), needed by {where}")
    return True


def prompt_gain(values: dict, entry: dict, where: str, ctx: Context) -> bool:
    if "baseline" in entry and "candidate" in entry and values["baseline"] == values["candidate"]:
        ctx.problems.append(f"{where}: baseline and candidate are both {values['baseline']!r}; a prompt set's gain "
                            "over itself is always 0, name two different prompt sets")
    return True


def answers(values: dict, entry: dict, where: str, ctx: Context) -> bool:
    found, thresholds = ctx.matrix.question_sets.get(values["question_set"]), entry.get("min_accuracy")
    if found is not None and found.questions == "shapes" and isinstance(thresholds, dict):
        from ..data.facts import KINDS

        for kind in thresholds:
            if kind not in KINDS:
                ctx.problems.append(f"{where}: min_accuracy names question kind {kind!r}{did_you_mean(kind, KINDS)}, "
                                    "which the shapes questions do not have")
    return True


def attention(values: dict, entry: dict, where: str, ctx: Context) -> bool:
    if values["min_margin_over_control"] is not None and values["control"] is None:
        ctx.problems.append(f"{where}: min_margin_over_control needs a 'control' model")
    return True


def benchmarks(values: dict, entry: dict, where: str, ctx: Context) -> bool:
    for name in values["models"] or ():
        if name not in ctx.matrix.models:
            ctx.problems.append(f"{where}: {unknown('model', name, ctx.matrix.models, 'models')}")
    for name in values["random_vlms"]:
        if name not in RANDOM_VLMS:
            ctx.problems.append(f"{where}: random_vlms names {name!r}{did_you_mean(name, RANDOM_VLMS)}; "
                                f"known: {', '.join(RANDOM_VLMS)}")
    values["random_vlms"] = tuple(v for v in values["random_vlms"] if v in RANDOM_VLMS)
    return True


RULES = {"models": model, "datasets": dataset, "question_sets": question_set, "zero_shot": zero_shot,
         "prompt_gain": prompt_gain, "retrieval": retrieval, "answers": answers, "attention": attention, "benchmarks": benchmarks}
