"""mmtests' command-line options as a specification: any value of any option is accepted as read, or refused with
one usage error naming the option, the value and the fix, before anything loads; CUDA is asked of the machine
only when an option wants it."""

from contextlib import contextmanager
from types import SimpleNamespace

import pytest
import torch  # imported once here: pytester takes out of sys.modules what a test that uses it imports
from hypothesis import given, settings
from hypothesis import strategies as st

from mmtests import options
from mmtests.options import READERS, check_options

WHOLE = st.one_of(st.sampled_from(["-3", "0", "1", "x", "64", " 8", "1.5", "", "1e3", "0x10"]),
                  st.integers(-5, 300).map(str), st.text(max_size=4))
VALUES = {
    "--mm-batch-size": WHOLE,
    "--mm-gpus": WHOLE,
    "--mm-device": st.one_of(st.sampled_from(["auto", "cpu", "cuda", "gpu", "cuda:0", "CPU", ""]), st.text(max_size=5)),
    "--mm-shard": st.one_of(st.sampled_from(["1/1", "2/4", "4/4", "0/4", "5/4", "1/0", "1", "a/b", "1/2/3", "-1/2",
                                             " 1/2", "/"]),
                            st.tuples(st.integers(-1, 5), st.integers(-1, 5)).map(lambda t: f"{t[0]}/{t[1]}")),
    "--mm-run-id": st.one_of(st.sampled_from(["20261128T020000Z", "../x", "a b", "", "run.1-x_y"]), st.text(max_size=8)),
}


def fake_config(values: dict, worker: bool = False):
    """What check_options touches of a pytest.Config: getoption, the option namespace, workerinput."""
    option = SimpleNamespace(**{o.removeprefix("--").replace("-", "_"): values.get(o) for o in READERS})
    config = SimpleNamespace(option=option, getoption=lambda name: getattr(option, name.removeprefix("--").replace("-", "_")))
    if worker:
        config.workerinput = {"workerid": "gw0"}
    return config


def digits(text: str) -> bool:
    return all(c in "0123456789" for c in text.strip()) and bool(text.strip())


def accepted(option: str, value: str) -> bool:
    """The specification, written independently of the readers."""
    if option in ("--mm-batch-size", "--mm-gpus"):
        return digits(value) and int(value) >= 1
    if option == "--mm-device":
        return value in ("auto", "cpu", "cuda")
    if option == "--mm-shard":
        parts = value.split("/")
        return len(parts) == 2 and all(map(digits, parts)) and 1 <= int(parts[0]) <= int(parts[1])
    return bool(value) and all(c.isascii() and (c.isalnum() or c in "_.-") for c in value) and value[0] != "."


def lacking(option: str, value: str, cuda_devices: int) -> bool:
    """A valid value asking for more CUDA devices than the machine has."""
    if option == "--mm-device":
        return value == "cuda" and cuda_devices == 0
    return option == "--mm-gpus" and int(value) > cuda_devices


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(VALUES)).flatmap(lambda o: st.tuples(st.just(o), VALUES[o])),
       st.sampled_from([(0, "torch.cuda.is_available() is False"), (1, ""), (8, "")]))
def test_any_option_value_is_accepted_as_read_or_one_usage_error_naming_it(case, machine):
    """Machines with 0, 1 and 8 CUDA devices (pretended: torch is not asked)."""
    option, value = case
    config = fake_config({option: value})
    try:
        with pretend_cuda(*machine):
            check_options(config)
    except pytest.UsageError as err:
        message = str(err)
        assert message.startswith(f"mmtests: {option} ") and "\n" not in message, message
        assert not accepted(option, value) or lacking(option, value, machine[0]), message
        if accepted(option, value):  # the machine lacks it: the fix names what it has
            assert "pass --mm-device cpu" in message if option == "--mm-device" else "--mm-gpus" in message
        return
    assert accepted(option, value) and not lacking(option, value, machine[0]), (option, value)
    kept = config.getoption(option)
    assert kept == (int(value) if option in ("--mm-batch-size", "--mm-gpus") else value)


@contextmanager
def pretend_cuda(count: int, why: str):
    saved, options._cuda_devices = options._cuda_devices, lambda: (count, why)
    try:
        yield
    finally:
        options._cuda_devices = saved


def test_cuda_is_asked_only_when_an_option_wants_it(monkeypatch):
    def forbidden():
        raise AssertionError("CUDA asked for options that do not need it")

    monkeypatch.setattr(options, "_cuda_devices", forbidden)
    check_options(fake_config({"--mm-device": "auto", "--mm-batch-size": "3", "--mm-shard": "1/2"}))
    check_options(fake_config({"--mm-device": "cuda", "--mm-gpus": "8"}, worker=True))  # the controller asked


@pytest.mark.parametrize(("args", "message"), [
    (["--mm-batch-size", "-3"], "mmtests: --mm-batch-size '-3': expected a whole number of at least 1"),
    (["--mm-batch-size", "0"], "mmtests: --mm-batch-size '0': expected a whole number of at least 1"),
    (["--mm-batch-size=x"], "mmtests: --mm-batch-size 'x': expected a whole number of at least 1"),
    (["--mm-device=gpu"], "mmtests: --mm-device 'gpu': expected one of auto, cpu, cuda"),
    (["--mm-gpus=0"], "mmtests: --mm-gpus '0': expected a whole number of at least 1"),
    (["--mm-shard=3/2"], "mmtests: --mm-shard '3/2': expected I/N with 1 <= I <= N, e.g. 2/4"),
])
def test_a_wrong_option_stops_pytest_with_one_line(pytester, args, message):
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert [line for line in result.stderr.lines if line.strip()] == [f"ERROR: {message}"]


def test_cuda_asked_for_where_there_is_none_names_mm_device_cpu(pytester):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--mm-device", "cuda")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    lines = [line for line in result.stderr.lines if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ERROR: mmtests: --mm-device cuda: no CUDA device is visible here")
    assert lines[0].endswith("pass --mm-device cpu (or auto: CUDA when there is one)")



def test_a_quantized_entry_where_auto_picks_cuda_is_one_matrix_error_naming_mm_device_cpu(pytester, monkeypatch):
    from mmtests.mmsession import session_matrix

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a CUDA machine, as --mm-device auto sees it
    matrix = pytester.makefile(".toml", m='[models.q]\nbackend = "hf_clip"\nmodel = "some/clip"\nquantize = "dynamic-int8"\n')
    config = pytester.parseconfig(f"--mm-config={matrix}", f"--mm-records={pytester.path / 'r' / 'records.jsonl'}")
    with pytest.raises(pytest.UsageError) as err:
        session_matrix(config)
    assert str(err.value) == (
        "mmtests matrix error:\n[models.q]: quantize = 'dynamic-int8' runs on a CPU only (torch.ao dynamic "
        "quantization) and this run's device is cuda; pass --mm-device cpu, or leave the entry out (--mm-model)")
