"""One anchor for every path a user types: the invocation directory, whatever the option's form (`--opt x`,
`--opt=x`), the path's kind (relative, `./`, `../`, absolute, `~`) and pytest's rootdir (which pytest guesses from
path-like arguments: `--mm-config ../m.toml` moves it, `--mm-config=../m.toml` does not)."""

import itertools
import os
from pathlib import Path

import pytest

from mmtests.figures.record_files import anchored
from mmtests.figures.record_writer import RecordWriter
from mmtests.report.__main__ import main as report
from mmtests.runrecords import option_path, records_path

KINDS = ("bare", "dot", "up", "absolute", "home")
FORMS = ("space", "equals")
WHERE = ("subfolder", "rootdir", "outside")


def layout(tmp_path: Path) -> dict[str, Path]:
    places = {"subfolder": tmp_path / "proj" / "tests", "rootdir": tmp_path / "proj", "outside": tmp_path / "elsewhere",
              "home": tmp_path / "home"}
    for place in places.values():
        place.mkdir(parents=True, exist_ok=True)
    (tmp_path / "proj" / "m.toml").write_text("")
    return places


def typed(kind: str, where: Path, name: str) -> tuple[str, Path]:
    """A path as a user types it in `where`, and the file it must name."""
    return {"bare": (f"out/{name}", where / "out" / name), "dot": (f"./out/{name}", where / "out" / name),
            "up": (f"../up/{name}", where.parent / "up" / name),
            "absolute": (str(where / "abs" / name), where / "abs" / name),
            "home": (f"~/h/{name}", Path(os.environ["HOME"]) / "h" / name)}[kind]


def option(form: str, name: str, value: str) -> list[str]:
    return [name, value] if form == "space" else [f"{name}={value}"]


@pytest.mark.parametrize(("form", "kind", "where"), list(itertools.product(FORMS, KINDS, WHERE)))
def test_records_land_under_the_invocation_directory_and_the_report_finds_them(pytester, tmp_path, monkeypatch,
                                                                               form, kind, where):
    places = layout(tmp_path)
    monkeypatch.setenv("HOME", str(places["home"]))
    monkeypatch.chdir(places[where])
    records, expected = typed(kind, places[where], "records.jsonl")
    matrix = os.path.relpath(tmp_path / "proj" / "m.toml")  # a path-like argument: pytest takes its folder as rootdir
    config = pytester.parseconfig(*option(form, "--mm-records", records), *option(form, "--mm-config", matrix))
    assert records_path(config) == expected and option_path(config, "--mm-config") == tmp_path / "proj" / "m.toml"
    writer = RecordWriter(records_path(config), {"device": "cpu"})
    writer.figure(suite="custom", test_id="t", metric="m", value=0.5)
    writer.close()
    assert expected.is_file()
    assert report(["--records", records, "--out", "rep"]) == 0  # the same relative path, from the same folder
    assert (places[where] / "rep" / "latest.md").is_file()


def test_the_space_form_moves_pytests_rootdir_and_the_records_stay(pytester, tmp_path, monkeypatch):
    """The case the issue reported: the two forms gave pytest two rootdirs, and the records two folders."""
    places = layout(tmp_path)
    monkeypatch.chdir(places["subfolder"])
    configs = [pytester.parseconfig(*option(form, "--mm-config", "../m.toml")) for form in FORMS]
    assert configs[0].rootpath != configs[1].rootpath
    assert {records_path(c) for c in configs} == {places["subfolder"] / "reports" / "records.jsonl"}


@pytest.mark.parametrize("value", ["x", "./x", "../x", "a/../x", "~/x", "/abs/x", "x/"])
def test_anchored_is_absolute_and_normal(value, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = anchored(value, tmp_path / "inv")
    assert path.is_absolute() and ".." not in path.parts and "~" not in str(path)
    assert path == Path(os.path.normpath(os.path.join(tmp_path / "inv", os.path.expanduser(value))))


TRIVIAL = """
def test_fig(mm):
    mm.records.figure(suite="custom", test_id="t", metric="m", value=0.5)
"""


def test_a_session_from_a_subfolder_writes_its_records_there(pytester, monkeypatch):
    """End to end, in process: `pytest --mm-config ../m.toml` from a subfolder (pytest's rootdir: the folder above)."""
    matrix = Path(__file__).parents[1] / "mmtests" / "default.toml"
    (pytester.path / "m.toml").write_text(matrix.read_text().replace('"zoo/', f'"{matrix.parent}/zoo/')
                                          .replace('"local-dir:zoo/', f'"local-dir:{matrix.parent}/zoo/'))
    sub = pytester.mkpydir("sub")
    (sub / "test_x.py").write_text(TRIVIAL)
    monkeypatch.chdir(sub)
    result = pytester.runpytest_inprocess("--mm-config", "../m.toml", "test_x.py", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert (sub / "reports" / "records.jsonl").is_file() and not (pytester.path / "reports").exists()
