"""Figures a reader can trust: utilisation against the final peak, spread, and contention, settled once per sweep.

Each benchmark records what it achieved (FLOP/s, bytes per decode step); its MFU and MBU are computed
here, when the JSON is written, against the device peak known *after* the sweep (on a CPU the best of
the probe rounds taken before and after it). A utilisation still above 100% is kept, and flagged with
its cause: it is never shown as if it were a figure like the others.

Spread: the interquartile range over the median of the rounds (`spread`), flagged above `LARGE_SPREAD`;
with fewer than `MIN_ROUNDS_FOR_SPREAD` rounds there is no quartile to speak of, and none is given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..figures.metrics import LARGE_SPREAD

if TYPE_CHECKING:  # the report reads this module: no torch import at run time
    from .perf import DevicePeak

MIN_ROUNDS_FOR_SPREAD = 4


def spread(stats: dict) -> float | None:
    """IQR over median of a pytest-benchmark stats dict; None with too few rounds to have quartiles."""
    rounds, iqr, median = stats.get("rounds", 0), stats.get("iqr"), stats.get("median")
    if rounds < MIN_ROUNDS_FOR_SPREAD or iqr is None or not median:
        return None
    return iqr / median


def _over_peak(kind: str, value: float, peak: DevicePeak, info: dict) -> str:
    if peak.source.startswith("measured"):
        cause = ("this benchmark ran faster than every peak probe, so the probes read low"
                 + (f" (other work during it: {info['contended']})" if info.get("contended") else "")
                 + "; rerun on an idle machine")
    else:
        cause = (f"above the {peak.source.split(':')[0]} peak: the {'FLOP' if kind == 'MFU' else 'byte'} count "
                 "of this benchmark counts work that was not done")
    return f"{kind} {value:.0%} is above 100%: {cause}"


def settle(output_json: dict, peaks: dict[str, DevicePeak | None]) -> None:
    """Fill in each benchmark's MFU, MBU and spread, and flag what cannot be taken at face value.

    `peaks`: the final peak per device string ("cpu", "cuda", ...) the benchmarks name in `extra_info`."""
    for bench in output_json.get("benchmarks", []):
        info = bench.setdefault("extra_info", {})
        info["spread"] = spread(bench.get("stats", {}))
        flags = []
        if info["spread"] is not None and info["spread"] > LARGE_SPREAD:
            flags.append(f"rounds spread {info['spread']:.0%} (IQR/median) > {LARGE_SPREAD:.0%}")
        if info.get("contended"):
            flags.append(f"contended: {info['contended']}")
        peak = peaks.get(str(info.get("device", "")).split(":")[0])  # "cuda:0" is timed against the "cuda" peak
        if peak is not None:
            dtype_peak = peak.flops.get(info.get("dtype"))
            if info.get("achieved_flops") and dtype_peak:
                info.update(peak_flops=dtype_peak, peak_source=peak.source, mfu=info["achieved_flops"] / dtype_peak)
            step, read = info.get("per_token_latency_s"), info.get("bytes_per_step")
            if step and read and peak.bandwidth:
                info["mbu"] = read / step / peak.bandwidth
            for kind in ("mfu", "mbu"):
                if (info.get(kind) or 0) > 1:
                    flags.append(_over_peak(kind.upper(), info[kind], peak, info))
        info["flags"] = flags
