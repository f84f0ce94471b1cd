"""The trend over the last runs of the history: one small-multiples PNG (top-1, the gates' figures, throughput)."""

from __future__ import annotations

from pathlib import Path

from .history import earlier, read_snapshot

MAX_RUNS = 30  # runs drawn, the newest ones
MAX_PANELS = 16


def recent(history: Path, snap: dict, runs: int = MAX_RUNS) -> list[dict]:
    """This run's snapshot after the readable history runs before it, oldest first (unreadable ones left out: the
    comparison names them)."""
    found = []
    for path in earlier(history, snap["run_id"], []):
        if len(found) >= runs - 1:
            break
        try:
            found.append(read_snapshot(path))
        except (ValueError, OSError):
            continue
    return [*reversed(found), snap]


def _series(snaps: list[dict], metrics: set[str]) -> dict[str, dict[str, list]]:
    """metric -> test_id -> values per run (None where a run lacks it)."""
    out: dict[str, dict[str, list]] = {}
    for i, snap in enumerate(snaps):
        for f in snap.get("figures", []):
            if f.get("metric") in metrics and isinstance(f.get("value"), int | float):
                out.setdefault(f["metric"], {}).setdefault(f["test_id"], [None] * len(snaps))[i] = f["value"]
    return out


def _throughput(snaps: list[dict]) -> dict[str, dict[str, list]]:
    """(model modality) -> batch size -> items/s per run; runs on another machine than the newest left out."""
    machine = snaps[-1].get("benchmark_machine")
    out: dict[str, dict[str, list]] = {}
    for i, snap in enumerate(snaps):
        if snap.get("benchmark_machine") != machine:
            continue
        for b in snap.get("benchmarks", []):
            panel = " ".join(str(b[k]) for k in ("model", "modality", "dtype") if b.get(k)) or b["name"]
            line = f"batch {b['batch_size']:>4}" if isinstance(b.get("batch_size"), int) else b["name"]
            out.setdefault(panel, {}).setdefault(line, [None] * len(snaps))[i] = b.get("items_per_s")
    return out


def trend_plot(snaps: list[dict], gate_metrics: set[str], out: Path) -> Path | None:
    """Top-1 and the gates' figures (one panel per metric, one line per check) and items/s (one panel per model and
    modality, one line per batch size) over the runs; None with fewer than two runs."""
    if len(snaps) < 2:
        return None
    panels = [(metric, lines, False) for metric, lines in sorted(_series(snaps, {"top1", *gate_metrics}).items(),
                                                                key=lambda kv: (kv[0] != "top1", kv[0]))]
    panels += [(f"{name}: items/s", lines, True) for name, lines in _throughput(snaps).items()]
    if not panels:
        return None
    dropped = len(panels) - MAX_PANELS
    panels = panels[:MAX_PANELS]
    from .plots import _pyplot

    plt = _pyplot()
    cols = min(3, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 2.9 * rows + 0.6), squeeze=False)
    x = list(range(len(snaps)))
    labels = [s["run_id"][:13] for s in snaps]  # a UTC timestamp to the minute: 20260107T0312
    for ax, (title, lines, log) in zip(axes.flat, panels, strict=False):
        for j, (name, values) in enumerate(sorted(lines.items())):
            points = [(i, v) for i, v in zip(x, values, strict=True) if v is not None]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", markersize=3, color=plt.get_cmap("tab10")(j % 10),
                        label=name if len(lines) <= 6 else None)
        if log:
            ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        step = max(1, len(x) // 6)
        ax.set_xticks(x[::step], labels[::step], fontsize=7, rotation=30)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(alpha=0.3)
        if len(lines) <= 6:
            ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"The last {len(snaps)} runs (newest right)" + (f"; {dropped} more panels left out" if dropped > 0
                                                                   else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
