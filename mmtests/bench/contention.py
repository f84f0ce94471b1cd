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
compute processes on the devices this process uses, other than this process and its children, are counted too:
through NVML (`pynvml`, the `gpu` extra) per device, else `nvidia-smi` over every visible device. In a container
without the host's PID namespace NVML and nvidia-smi report host PIDs, which match none of ours: every process
on the device then counts as another one (an overcount, never an undercount).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

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


def _own_pids() -> set[int]:
    """This process and its descendants (Linux: from /proc; elsewhere this process alone)."""
    parent_of = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()  # after the command name, which may hold spaces
            parent_of[int(stat.parent.name)] = int(fields[1])
        except (OSError, ValueError, IndexError):
            continue
    own, grew = {os.getpid()}, True
    while grew:
        children = {pid for pid, parent in parent_of.items() if parent in own} - own
        own |= children
        grew = bool(children)
    return own


def _nvml_other_processes(devices: list[int], nvml) -> int:
    """Compute processes on the given device indices, other than ours, through NVML."""
    nvml.nvmlInit()
    try:
        pids = set()
        for index in devices:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            pids |= {p.pid for p in nvml.nvmlDeviceGetComputeRunningProcesses(handle)}
        return len(pids - _own_pids())
    finally:
        nvml.nvmlShutdown()


def _nvidia_smi_other_processes() -> int | None:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    pids = {int(p) for p in out.split() if p.strip().isdigit()}
    return len(pids - _own_pids())


def gpu_other_processes(devices: list[int] | None = None) -> int | None:
    """Compute processes other than this one and its children on the NVIDIA devices this process uses (NVML
    indices; None: from `CUDA_VISIBLE_DEVICES`, every device when it is unset); through NVML where `pynvml` is
    installed, else nvidia-smi (every device, so an xdist worker pinned to one GPU counts its siblings); None where
    neither can say."""
    try:
        import pynvml
    except ImportError:
        pynvml = None
    if pynvml is not None:
        try:
            return _nvml_other_processes(visible_devices(pynvml) if devices is None else devices, pynvml)
        except pynvml.NVMLError:  # no driver, no device: nvidia-smi may still say
            pass
    return _nvidia_smi_other_processes()


def visible_devices(nvml) -> list[int]:
    """NVML indices of the devices CUDA_VISIBLE_DEVICES names (indices or UUIDs; every device when it is unset).
    An entry that matches no device ends the list, as CUDA reads it."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    nvml.nvmlInit()
    try:
        count = nvml.nvmlDeviceGetCount()
        if visible is None:
            return list(range(count))
        uuids = {}
        for index in range(count):
            uuid = nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(index))
            uuids[uuid.decode() if isinstance(uuid, bytes) else uuid] = index
        out = []
        for entry in (e.strip() for e in visible.split(",") if e.strip()):
            if entry.isdigit() and int(entry) < count:
                out.append(int(entry))
            elif (match := [i for u, i in uuids.items() if u.startswith(entry)]) and len(match) == 1:
                out.append(match[0])
            else:
                break
        return out
    finally:
        nvml.nvmlShutdown()


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
