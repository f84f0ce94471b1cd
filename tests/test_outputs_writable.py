"""Every folder a session writes (records, the run's artifacts, with --mm-save-baseline the models' baseline
folders) is checked before the first measurement: one that cannot be made or written is a usage error naming it
and the fix, before any model loads, rather than a loss after everything was measured."""

import os
import stat
from pathlib import Path

import pytest

from mmtests.runrecords import check_outputs

DEFAULT = Path(__file__).parents[1] / "mmtests" / "default.toml"


def read_only(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    if os.access(folder, os.W_OK):  # root: chmod does not stop it writing
        folder.chmod(0o755)
        pytest.skip("chmod does not make a folder read-only here (running as root?)")
    return folder


def file_at(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("not a folder")
    return path


# How a location cannot be written: (make it so under `tmp`, the path to name, the part the message names).
BROKEN = {
    "read-only parent": lambda tmp: (read_only(tmp / "ro") / "new", "is not writable"),
    "read-only folder itself": lambda tmp: (read_only(tmp / "ro"), "is not writable"),
    "read-only grandparent": lambda tmp: (read_only(tmp / "ro") / "a" / "b", "is not writable"),
    "a file where the folder should be": lambda tmp: (file_at(tmp / "f"), "is a file, not a folder"),
    "a file where a parent should be": lambda tmp: (file_at(tmp / "f") / "sub", "is a file, not a folder"),
}


@pytest.fixture
def restore(tmp_path):
    yield
    for path in tmp_path.rglob("*"):
        if path.is_dir():
            path.chmod(0o755)


@pytest.mark.parametrize("how", BROKEN)
def test_an_unwritable_baseline_folder_is_a_usage_error_naming_it(pytester, tmp_path, restore, how):
    folder, why = BROKEN[how](tmp_path)
    config = pytester.parseconfig(f"--mm-records={tmp_path / 'ok' / 'records.jsonl'}", "--mm-save-baseline")
    with pytest.raises(pytest.UsageError) as err:
        check_outputs(config, {"tiny-clip": str(folder)})
    message = str(err.value)
    assert f"the baseline folder of model 'tiny-clip' '{folder}' cannot be written" in message and why in message
    assert "change the entry's `baseline` (relative to the matrix file)" in message and "Nothing was measured" in message
    recorded = (tmp_path / "ok" / "records.d").rglob("main.jsonl")  # the session says why it stopped
    assert any("cannot be written" in p.read_text() for p in recorded)


@pytest.mark.parametrize("how", BROKEN)
def test_an_unwritable_records_location_is_a_usage_error_naming_it(pytester, tmp_path, restore, how):
    folder, why = BROKEN[how](tmp_path)
    config = pytester.parseconfig(f"--mm-records={folder / 'records.jsonl'}")
    with pytest.raises(pytest.UsageError) as err:
        check_outputs(config, {})
    assert f"records file '{folder / 'records.jsonl'}': its folder" in str(err.value) and why in str(err.value)
    assert "cannot be written" in str(err.value) and "pass --mm-records with another location" in str(err.value)


def test_a_read_only_baseline_file_is_named(pytester, tmp_path, restore):
    folder = tmp_path / "base"
    (file_at(folder / "outcomes.json")).chmod(stat.S_IRUSR)
    if os.access(folder / "outcomes.json", os.W_OK):
        pytest.skip("chmod does not make a file read-only here (running as root?)")
    config = pytester.parseconfig(f"--mm-records={tmp_path / 'records.jsonl'}", "--mm-save-baseline")
    with pytest.raises(pytest.UsageError, match="outcomes.json is read-only"):
        check_outputs(config, {"m": str(folder)})


def test_writable_outputs_pass(pytester, tmp_path):
    config = pytester.parseconfig(f"--mm-records={tmp_path / 'new' / 'records.jsonl'}", "--mm-save-baseline")
    check_outputs(config, {"m": str(tmp_path / "baselines" / "m"), "n": str(tmp_path)})
    assert not (tmp_path / "new").exists() and not (tmp_path / "baselines").exists()  # checked, not made


def test_save_baseline_into_a_file_stops_before_any_model_loads(pytester, tmp_path):
    ro = file_at(tmp_path / "ro")  # a file where the baseline folders' parent should be (works as root too)
    text = DEFAULT.read_text().replace('"zoo/', f'"{DEFAULT.parent}/zoo/').replace(
        '"local-dir:zoo/', f'"local-dir:{DEFAULT.parent}/zoo/')
    text = text.replace(f'baseline = "{DEFAULT.parent}/zoo/baselines/tiny-clip"', f'baseline = "{ro}/tiny-clip"')
    assert f'"{ro}/tiny-clip"' in text
    (tmp_path / "m.toml").write_text(text)
    result = pytester.runpytest_subprocess("--pyargs", "mmtests.suites", f"--mm-config={tmp_path / 'm.toml'}",
                                           "--mm-model=tiny-clip", "--mm-save-baseline", "-m", "clip",
                                           f"--mm-records={tmp_path / 'records.jsonl'}", "-p", "no:cacheprovider")
    assert result.ret == 4
    result.stderr.fnmatch_lines([f"*the baseline folder of model 'tiny-clip' '{ro}/tiny-clip' cannot be written: "
                                 f"{ro} is a file, not a folder*"])
    assert "passed" not in result.stdout.str() and ro.read_text() == "not a folder"


def test_a_records_path_that_is_a_folder_is_a_usage_error_naming_a_file_in_it(pytester, tmp_path):
    pytester.makepyfile("def test_top1(mm):\n    pass\n")
    result = pytester.runpytest_inprocess(f"--mm-records={tmp_path}", "-p", "no:cacheprovider")
    assert result.ret == 4
    result.stderr.fnmatch_lines([f"*--mm-records '{tmp_path}' is a folder; pass the path of a records file, e.g. "
                                 f"--mm-records '{tmp_path / 'records.jsonl'}'*"])
    assert not (tmp_path.parent / f"{tmp_path.name}.d").exists()
