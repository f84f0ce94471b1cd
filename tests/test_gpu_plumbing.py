"""GPU plumbing's fallbacks, with fakes (no GPU here): NVML per device for contention, else nvidia-smi, else
nothing; TorchCodec for JPEG decoding, else torchvision without its deprecation warning escaping."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import types
import warnings

import pytest
import torch

from mmtests.bench import contention
from mmtests.data import pipeline


class FakeNVML(types.ModuleType):
    class NVMLError(Exception):
        pass

    def __init__(self, pids_by_device: dict[int, list[int]], uuids: list[str] | None = None, broken: bool = False):
        super().__init__("pynvml")
        self.pids, self.broken = pids_by_device, broken
        self.uuids = uuids or [f"GPU-{i:04d}" for i in pids_by_device]
        self.open = 0

    def nvmlInit(self):
        if self.broken:
            raise self.NVMLError("driver not loaded")
        self.open += 1

    def nvmlShutdown(self):
        self.open -= 1

    def nvmlDeviceGetCount(self):
        return len(self.pids)

    def nvmlDeviceGetHandleByIndex(self, index):
        return index

    def nvmlDeviceGetUUID(self, handle):
        return self.uuids[handle]

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [types.SimpleNamespace(pid=p, usedGpuMemory=0) for p in self.pids[handle]]


@pytest.fixture
def child():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def test_nvml_counts_only_our_devices_and_not_our_own_processes(monkeypatch, child):
    nvml = FakeNVML({0: [os.getpid(), child, 111], 1: [222, 333]})
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setattr(contention.shutil, "which", lambda name: pytest.fail("nvidia-smi asked although NVML answers"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert contention.gpu_other_processes() == 1  # 111; this process and its child do not count, nor GPU 1's
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-0001")
    assert contention.gpu_other_processes() == 2
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert contention.gpu_other_processes() == 3
    assert contention.gpu_other_processes([1]) == 2
    assert nvml.open == 0  # every init shut down


def test_visible_devices_read_as_cuda_reads_them(monkeypatch):
    nvml = FakeNVML({0: [], 1: [], 2: []}, uuids=["GPU-aa11", "GPU-bb22", "GPU-bb33"])
    for visible, expected in (("2,0", [2, 0]), ("GPU-aa", [0]), ("1,7,0", [1]), ("GPU-bb", []), ("", [])):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        assert contention.visible_devices(nvml) == expected, visible


def test_without_a_working_nvml_nvidia_smi_answers_and_without_it_nothing(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", FakeNVML({0: [1]}, broken=True))
    monkeypatch.setattr(contention.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    ran = types.SimpleNamespace(stdout=f"{os.getpid()}\n4242\n")
    monkeypatch.setattr(contention.subprocess, "run", lambda *a, **kw: ran)
    assert contention.gpu_other_processes() == 1
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed
    assert contention.gpu_other_processes() == 1
    monkeypatch.setattr(contention.shutil, "which", lambda name: None)
    assert contention.gpu_other_processes() is None


def _jpeg() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (16, 8), (200, 30, 30)).save(out, "JPEG")
    return out.getvalue()


def test_torchcodec_decodes_where_installed(monkeypatch):
    calls = []

    def decode_jpeg(data, mode, device):
        calls.append((mode, str(device)))
        return torch.zeros(3, 8, 16, dtype=torch.uint8)

    package = types.ModuleType("torchcodec")
    decoders = types.ModuleType("torchcodec.decoders")
    decoders.decode_jpeg = decode_jpeg
    package.decoders = decoders
    monkeypatch.setitem(sys.modules, "torchcodec", package)
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", decoders)
    data = torch.frombuffer(bytearray(_jpeg()), dtype=torch.uint8)
    out = pipeline.jpeg_decoder()([data, data], torch.device("cpu"))
    assert calls == [("RGB", "cpu")] * 2 and len(out) == 2


def test_torchvision_decodes_without_torchcodec_and_its_deprecation_stays_inside(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchcodec", None)
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", None)
    data = torch.frombuffer(bytearray(_jpeg()), dtype=torch.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning that escapes fails the test
        (pixels,) = pipeline.jpeg_decoder()([data], torch.device("cpu"))
    assert pixels.shape == (3, 8, 16) and pixels.dtype == torch.uint8
    assert abs(int(pixels[0].float().mean()) - 200) < 8
