"""PNG plots for the report (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path


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
            labelled.add(ps)
            if figures[ps].get("threshold") is not None:
                ax.hlines(figures[ps]["threshold"], x - width / 2, x + width / 2, colors="black", linewidth=1.5)
    ax.set_xticks(range(len(groups)), [f"{m}\n{d}" for m, d in groups], fontsize=8)
    ax.set_ylabel("zero-shot top-1")
    ax.set_ylim(0, 1.05)
    ax.set_title("Zero-shot accuracy by prompt set (black ticks: thresholds)")
    ax.legend(fontsize=8, ncols=min(4, len(prompt_sets)), loc="upper center", bbox_to_anchor=(0.5, -0.18))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
