"""The plugin's command-line options, checked in one place (`check_options`, from pytest_configure) before
anything loads: each option's type, range and choices, and the devices this machine has. A wrong value is one
`pytest.UsageError` naming the option, the value and the fix; torch is imported only for an option that asks for
CUDA, so that another project's pytest run never imports it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .figures.record_files import RUN_ID

DEVICES = ("auto", "cpu", "cuda")


class OptionError(ValueError):
    """A wrong option value; the message says what is expected."""


def whole_number(value) -> int:
    """A whole number of at least 1, as typed ("64") or as already read (64)."""
    number = value if isinstance(value, int) and not isinstance(value, bool) else _digits(value)
    if number is None or number < 1:
        raise OptionError("expected a whole number of at least 1")
    return number


def _digits(value) -> int | None:
    """The number written in ASCII digits (spaces around allowed), else None: no sign, no '1_000', no '1e3'."""
    text = str(value).strip()
    return int(text) if text.isascii() and text.isdigit() else None


def device(value) -> str:
    if value not in DEVICES:
        raise OptionError(f"expected one of {', '.join(DEVICES)}")
    return value


def shard(value) -> str:
    """I/N with 1 <= I <= N, kept as written (`shard_numbers` reads it)."""
    shard_numbers(value)
    return value


def shard_numbers(value: str) -> tuple[int, int]:
    index, slash, count = (_digits(part) if part != "/" else part for part in str(value).partition("/"))
    if not slash or index is None or count is None or not 1 <= index <= count:
        raise OptionError("expected I/N with 1 <= I <= N, e.g. 2/4")
    return index, count


def run_id(value) -> str:
    if not RUN_ID.fullmatch(str(value)) or str(value).startswith("."):  # ".." would name the folder above
        raise OptionError("use letters, digits, '_', '.' and '-' only, not starting with '.' (it names a folder), "
                          "e.g. 20261128T020000Z")
    return value


# Option -> the reader of its value (None: not given, nothing to read). The option keeps the value read.
READERS: dict[str, Callable] = {"--mm-device": device, "--mm-batch-size": whole_number, "--mm-gpus": whole_number,
                                "--mm-shard": shard, "--mm-run-id": run_id}


def _cuda_devices() -> tuple[int, str]:
    """How many CUDA devices torch sees here, and why none when it sees none."""
    import torch

    if torch.version.cuda is None:
        return 0, f"torch {torch.__version__} is built without CUDA"
    try:
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception as err:  # noqa: BLE001  (a driver that fails to answer: no usable device)
        return 0, f"{err.__class__.__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    return count, "" if count else "torch.cuda.is_available() is False: no driver or no visible GPU"


def machine_problems(options: dict) -> list[str]:
    """What the read options ask of this machine that it does not have (CUDA devices)."""
    wants_cuda = options.get("--mm-device") == "cuda" or options.get("--mm-gpus") is not None
    if not wants_cuda:
        return []
    count, why = _cuda_devices()
    problems = []
    if options.get("--mm-device") == "cuda" and not count:
        problems.append(f"--mm-device cuda: no CUDA device is visible here ({why}); pass --mm-device cpu "
                        "(or auto: CUDA when there is one)")
    gpus = options.get("--mm-gpus")
    if gpus is not None and gpus > count:
        fix = f"pass --mm-gpus {count} or less" if count else "leave --mm-gpus out (it pins pytest-xdist workers to GPUs)"
        problems.append(f"--mm-gpus {gpus}: {count or 'no'} CUDA device{'s' * (count != 1)} visible here"
                        f"{f' ({why})' if why else ''}; {fix}")
    return problems


def check_options(config: pytest.Config) -> None:
    """Every mmtests option read and checked, each kept as read (a whole number as an int); all problems are said
    in one UsageError. The machine (CUDA) is asked once, by the process that starts the run, not by xdist workers."""
    problems, read = [], {}
    for option, reader in READERS.items():
        value = config.getoption(option)
        if value is None:
            continue
        try:
            read[option] = reader(value)
        except OptionError as err:
            problems.append(f"{option} {value!r}: {err}")
            continue
        setattr(config.option, option.removeprefix("--").replace("-", "_"), read[option])
    if not problems and not hasattr(config, "workerinput"):
        problems = machine_problems(read)
    if problems:
        raise pytest.UsageError("mmtests: " + "\n  ".join(problems))
