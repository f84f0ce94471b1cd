"""FLOPs, device peaks and utilisation arithmetic (mmtests.bench.perf): small, exact cases."""

import pytest
import torch

from mmtests.bench.embedding import bench_models, embedding_pass, load, make_inputs
from mmtests.bench.perf import (
    count_flops,
    cpu_copy_bandwidth,
    cpu_matmul_flops,
    gpu_peak,
    mbu,
    mfu,
    synchronized,
    weight_bytes,
)
from mmtests.config import load_matrix


def test_flops_of_a_linear_layer_are_two_per_multiply_add():
    batch, fan_in, fan_out = 5, 16, 24
    layer = torch.nn.Linear(fan_in, fan_out)
    assert count_flops(lambda: layer(torch.randn(batch, fan_in))) == 2 * batch * fan_in * fan_out


@torch.no_grad()
def test_attention_flops_include_projections_and_scores_on_the_fast_path():
    batch, tokens, width = 2, 7, 32
    attn = torch.nn.MultiheadAttention(width, num_heads=4, batch_first=True).eval()
    x = torch.randn(batch, tokens, width)
    projections = 2 * batch * tokens * width * (3 * width + width)  # q, k, v in; one out
    scores_and_mix = 2 * (2 * batch * tokens * tokens * width)  # q k^T, then attention-weighted v
    assert count_flops(lambda: attn(x, x, x, need_weights=False)) == projections + scores_and_mix
    assert torch.backends.mha.get_fastpath_enabled()  # the switch is restored afterwards


@torch.no_grad()
def test_flops_per_item_do_not_depend_on_the_batch_for_the_tiny_clip():
    encoder = load(bench_models(load_matrix())[0], torch.device("cpu"))
    for modality in ("image", "text"):
        one, four = (count_flops(embedding_pass(encoder, modality, make_inputs(encoder, modality, b))) for b in (1, 4))
        assert four == 4 * one > 0


def test_mfu_and_mbu_are_achieved_rate_over_peak():
    assert mfu(flops=3e12, seconds=2.0, peak_flops_per_s=1e12) == pytest.approx(1.5)
    assert mfu(flops=1e9, seconds=0.01, peak_flops_per_s=1e12) == pytest.approx(0.1)
    assert mbu(bytes_per_step=2e9, step_seconds=0.001, peak_bytes_per_s=4e12) == pytest.approx(0.5)


@pytest.mark.parametrize(("name", "expected", "bf16_tflops", "tb_per_s"), [
    ("NVIDIA H100 80GB HBM3", "H100 SXM", 989.5, 3.35),
    ("NVIDIA H100 PCIe", "H100 PCIe", 756.5, 2.0),
    ("NVIDIA H100 NVL", "H100 NVL", 835.5, 3.9),
    ("NVIDIA H200", "H200 SXM", 989.5, 4.8),
    ("NVIDIA A100-SXM4-80GB", "A100 80GB SXM", 312.0, 2.039),
    ("NVIDIA A100-SXM4-40GB", "A100 40GB SXM", 312.0, 1.555),
    ("NVIDIA A100-PCIE-40GB", "A100 40GB PCIe", 312.0, 1.555),
    ("NVIDIA A100 80GB PCIe", "A100 80GB PCIe", 312.0, 1.935),
])
def test_gpu_peaks_are_looked_up_by_device_name(name, expected, bf16_tflops, tb_per_s):
    peak = gpu_peak(name)
    assert peak.name == expected
    assert peak.flops_for(torch.bfloat16) == peak.flops_for(torch.float16) == pytest.approx(bf16_tflops * 1e12)
    assert peak.bandwidth == pytest.approx(tb_per_s * 1e12)
    assert peak.flops_for(torch.float32) is None  # no datasheet figure kept: MFU is not guessed
    assert "without sparsity" in peak.source


def test_an_unknown_gpu_has_no_peak():
    assert gpu_peak("NVIDIA GeForce RTX 4090") is None


def test_cpu_probes_measure_a_positive_rate():
    assert cpu_matmul_flops(size=128, repeats=1) > 0
    assert cpu_copy_bandwidth(mebibytes=4, repeats=1) > 0


def test_weight_bytes_count_parameters_and_buffers_as_stored():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3)).half()
    linear = (4 * 3 + 3) * 2
    norm = (3 + 3) * 2 + (3 + 3) * 2 + 8  # weight, bias; running mean, var (half); num_batches_tracked (int64)
    assert weight_bytes(model) == linear + norm


def test_synchronized_is_the_function_itself_off_cuda():
    def fn():
        return 1

    assert synchronized(fn, torch.device("cpu")) is fn
