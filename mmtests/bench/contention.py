"""How busy the machine was with other work while something was timed.

A benchmark on a shared machine (a CI runner, a laptop) is slowed by whatever else runs; its figure is
then a statement about the neighbours, not the model. Two measures, taken before and after:

- the load average (1, 5, 15 min; `os.getloadavg`), as `uptime` shows it. It lags by about a minute and
  counts this process's own threads, so it describes the machine, not the interval;
- the share of the machine's CPU time that *other* processes used during the interval: all CPUs' busy
  time from `/proc/stat` (user, nice, system, irq, softirq, steal) minus this process's own CPU time and
  its reaped children's (`os.times`), over wall time x CPUs. Immediate, and blind to this process.
  Steal (time a hypervisor gave the CPU to another machine) counts as other work.

A figure is *contended* when other processes took more than `CONTENDED_SHARE` of the CPUs. On CUDA the
compute processes of other PIDs on the device (`nvidia-smi`) are counted too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass

from ..figures.metrics import CONTENDED_SHARE


@dataclass(frozen=True)
class Sample:
    wall: float  # time.monotonic()
    busy_s: float | None  # all CPUs' busy seconds since boot (None off Linux)
    cpus: int | None  # CPUs counted in /proc/stat
    own_s: float  # this process's CPU seconds, reaped children included
    load: tuple[float, float, float] | None


def _proc_stat() -> tuple[float | None, int | None]:
    try:
        lines = open("/proc/stat").read().splitlines()  # noqa: SIM115  (one read)
    except OSError:
        return None, None
    fields = [int(v) for v in lines[0].split()[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice, already inside user and nice]
    busy = sum(fields[i] for i in (0, 1, 2, 5, 6, 7) if i < len(fields))
    cpus = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
    return busy / os.sysconf("SC_CLK_TCK"), cpus


def sample() -> Sample:
    busy, cpus = _proc_stat()
    t = os.times()
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return Sample(time.monotonic(), busy, cpus, t.user + t.system + t.children_user + t.children_system, load)


def other_cpu_share(before: Sample, after: Sample) -> float | None:
    """Share of all CPUs' time that other processes used between two samples (0 = none, 1 = all of it)."""
    wall = after.wall - before.wall
    if before.busy_s is None or after.busy_s is None or not after.cpus or wall <= 0:
        return None
    others = (after.busy_s - before.busy_s) - (after.own_s - before.own_s)
    return min(1.0, max(0.0, others / (wall * after.cpus)))


def gpu_other_processes() -> int | None:
    """Compute processes of other PIDs on the visible NVIDIA devices; None where nvidia-smi cannot say."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    pids = {int(p) for p in out.split() if p.strip().isdigit()}
    return len(pids - {os.getpid()})


def figures(before: Sample, after: Sample, cuda: bool = False) -> dict:
    """What a benchmark records of its interval: load averages, other processes' CPU share, the verdict."""
    share = other_cpu_share(before, after)
    out = {"load_avg_before": before.load, "load_avg_after": after.load, "other_cpu_share": share,
           "cpus": after.cpus}
    reasons = []
    if share is not None and share > CONTENDED_SHARE:
        reasons.append(f"other processes used {share:.0%} of the {after.cpus} CPUs")
    if cuda:
        others = gpu_other_processes()
        out["gpu_other_processes"] = others
        if others:
            reasons.append(f"{others} other process(es) computing on the GPU")
    out["contended"] = "; ".join(reasons) or None
    return out
