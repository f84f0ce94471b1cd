"""PNG plots for the report (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

from ..figures.intervals import figure_interval


def accuracy_by_prompt_set(rows: list[dict], out: Path) -> Path | None:
    """Grouped bars: one group per (model, dataset), one bar per prompt set, threshold ticks."""
    groups: dict[tuple[str, str], dict[str, dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["dataset"]), {})[r["prompt_set"]] = r
    groups = {k: v for k, v in groups.items() if len(v) >= 2}
    if not groups:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prompt_sets = sorted({p for v in groups.values() for p in v}, key=lambda p: (p != "bare", p))
    colour_of = {p: plt.get_cmap("tab10")(j % 10) for j, p in enumerate(prompt_sets)}
    width = 0.8 / max(len(v) for v in groups.values())
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(groups) + 2), 4.2))
    labelled: set[str] = set()
    for i, figures in enumerate(groups.values()):
        present = [p for p in prompt_sets if p in figures]  # bars side by side, no gaps for absent sets
        for j, ps in enumerate(present):
            x = i + (j - (len(present) - 1) / 2) * width
            ax.bar(x, figures[ps]["value"], width, color=colour_of[ps], label=None if ps in labelled else ps)
            _error_bar(ax, x, figures[ps])
            labelled.add(ps)
            if figures[ps].get("threshold") is not None:
                ax.hlines(figures[ps]["threshold"], x - width / 2, x + width / 2, colors="black", linewidth=1.5)
    ax.set_xticks(range(len(groups)), [f"{m}\n{d}" for m, d in groups], fontsize=8)
    ax.set_ylabel("zero-shot top-1")
    ax.set_ylim(0, 1.05)
    ax.set_title("Zero-shot accuracy by prompt set\n(black ticks: thresholds; grey bars: 95% Wilson intervals)", fontsize=10)
    ax.legend(fontsize=8, ncols=min(4, len(prompt_sets)), loc="upper center", bbox_to_anchor=(0.5, -0.18))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _error_bar(ax, x: float, figure: dict, horizontal: bool = False) -> None:
    """The figure's 95% interval as an error bar (none for a figure without `n` or `stderr`)."""
    interval = figure_interval(figure)
    if interval is None:
        return
    value = figure["value"]
    err = [[max(0.0, value - interval[0])], [max(0.0, interval[1] - value)]]
    kw = {"xerr": err} if horizontal else {"yerr": err}
    ax.errorbar(value if horizontal else x, x if horizontal else value, fmt="none", ecolor="dimgrey", elinewidth=1.2,
                capsize=3, **kw)


def accuracy_by_kind(rows: list[dict], out: Path) -> Path | None:
    """LLaVA answer accuracy: one group per question kind, one bar per (model, question set), 95% intervals."""
    if not rows:
        return None
    series = list(dict.fromkeys((r["model"], r["question_set"]) for r in rows))
    kinds = list(dict.fromkeys(r["question_kind"] for r in rows))
    plt = _pyplot()
    by = {(r["model"], r["question_set"], r["question_kind"]): r for r in rows}
    width, labelled = 0.8 / len(series), set()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(kinds) * max(1, len(series) / 2) + 2), 4.2))
    for j, (model, qset) in enumerate(series):
        for i, kind in enumerate(kinds):
            r = by.get((model, qset, kind))
            if r is None or r.get("value") is None:
                continue
            x = i + (j - (len(series) - 1) / 2) * width
            label = f"{model} ({qset})"
            ax.bar(x, r["value"], width, color=plt.get_cmap("tab10")(j % 10), label=None if label in labelled else label)
            labelled.add(label)
            _error_bar(ax, x, r)
            if r.get("threshold") is not None:
                ax.hlines(r["threshold"], x - width / 2, x + width / 2, colors="black", linewidth=1.5)
    ax.set_xticks(range(len(kinds)), kinds, fontsize=8)
    ax.set_ylabel("answer accuracy")
    ax.set_ylim(0, 1.05)
    ax.set_title("LLaVA answer accuracy by question kind\n(black ticks: thresholds; grey bars: 95% Wilson intervals)",
                 fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncols=min(3, len(series)))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def prompt_gains(rows: list[dict], out: Path) -> Path | None:
    """Each paired prompt gain as a point with its 95% interval (gain ± 1.96 se) and its expected minimum."""
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.6))
    for y, r in enumerate(rows):
        ax.plot(r["value"], y, "o", color="tab:blue")
        _error_bar(ax, y, r, horizontal=True)
        if r.get("threshold") is not None:
            ax.vlines(r["threshold"], y - 0.3, y + 0.3, colors="black", linewidth=1.5)
    ax.axvline(0, color="grey", linewidth=1, linestyle="--")
    ax.set_yticks(range(len(rows)), [f"{r['model']} / {r['dataset']}\n{r['candidate']} vs {r['baseline']}" for r in rows],
                  fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("paired top-1 gain (95% interval)")
    ax.set_title("Prompt-engineering gains (black ticks: expected minimum)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def attention_heatmaps(samples: list[dict], control: list[dict] | None, out: Path, title: str) -> Path:
    """Each image, then the model's attention over it overlaid, then the control's; box drawn. The map and box are
    in the sample's `extent` (original pixels: any model family is drawn alike)."""
    import textwrap

    import numpy as np
    from matplotlib.patches import Rectangle

    plt = _pyplot()
    rows = [("image", samples), ("model", samples)] + ([("control", control)] if control else [])
    n = len(samples)
    fig, axes = plt.subplots(len(rows), n, figsize=(2.1 * n, 2.35 * len(rows) + 0.5), squeeze=False)
    for r, (label, items) in enumerate(rows):
        for i, ax in enumerate(axes[r]):
            ax.axis("off")
            if i >= len(items):
                continue
            s = items[i]
            h, w = (int(v) for v in s["extent"])
            image = s["image"]
            ax.imshow(image, extent=(0, w, h, 0))
            if label != "image":
                heat = np.asarray(s["map"], dtype=float)
                top = np.nanmax(heat) if np.isfinite(heat).any() else 0.0
                heat = heat / top if top > 0 else heat
                ax.imshow(heat, cmap="inferno", alpha=0.6, extent=(0, w, h, 0), interpolation="nearest")
                unseen = np.isnan(heat)  # no image token covers it (cropped away): washed out, not "no attention"
                if unseen.any():
                    ax.imshow(np.where(unseen, 1.0, np.nan), cmap="gray", vmin=0, vmax=1, alpha=0.7,
                              extent=(0, w, h, 0), interpolation="nearest")
            x0, y0, x1, y1 = s["box"]
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="cyan", linewidth=1.5))
            if i == 0:
                ax.set_title(label, fontsize=8, loc="left")
    caption = ("answer position's attention over the image, each token's spread over the region it covers (mean of "
               "layers and heads); cyan: box; washed out: not seen by the model (cropped away)")
    fig.suptitle(f"{title}\n" + textwrap.fill(caption, max(40, int(14 * 2.1 * n))), fontsize=8)  # ~14 chars an inch
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def per_layer_curves(series: list[tuple[str, list[float]]], out: Path, ylabel: str, title: str,
                     reference: float | None = None, reference_label: str = "", log: bool = False) -> Path | None:
    """One line per (label, per-layer values); an optional horizontal reference line."""
    series = [(label, values) for label, values in series if values]
    if not series:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for label, values in series:
        ax.plot(range(len(values)), values, marker="o", label=label)
    if reference is not None:
        ax.axhline(reference, color="grey", linestyle="--", linewidth=1, label=reference_label)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("language-model layer")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def throughput_by_batch_size(sweeps: list[dict], out: Path, title: str = "Embedding throughput",
                             ylabel: str = "items/s (median round)") -> Path | None:
    """Items/s against batch size, one line per model, modality and dtype (log-log: they span orders of magnitude)."""
    lines: dict[tuple[str, str, str | None], list[tuple[int, float]]] = {}
    for r in sweeps:
        lines.setdefault((r["model"], r["modality"], r.get("dtype")), []).append((r["batch_size"], r["items_per_s"]))
    if not lines:
        return None
    plt = _pyplot()
    models = list(dict.fromkeys(model for model, _, _ in lines))
    dtypes = list(dict.fromkeys(dtype for _, _, dtype in lines))
    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    for (model, modality, dtype), points in lines.items():
        xs, ys = zip(*sorted(points), strict=True)
        label = f"{model} {modality}" + (f" {dtype}" if len(dtypes) > 1 else "")
        ax.plot(xs, ys, color=plt.get_cmap("tab10")(models.index(model) % 10), marker="os^D"[dtypes.index(dtype) % 4],
                linestyle="-" if modality in ("image", "llava-decode") else "--", label=label)
    batches = sorted({r["batch_size"] for r in sweeps})
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.set_xlabel("batch size")
    ax.set_ylabel(ylabel)
    devices = ", ".join(dict.fromkeys(r.get("device_name") or r.get("device", "") for r in sweeps))
    ax.set_title(f"{title} vs batch size ({devices})")
    ax.grid(which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
