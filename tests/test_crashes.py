"""Crashes are outcomes (issue 15): any exception in a check, at any stage (loading a model, loading a dataset,
measuring, evaluating) and in any suite, is recorded as one crashed figure per check with its class, message and
where it was raised; the exception is shown once with its traceback, and every later check that needs what crashed
fails in one line naming the first; the session fails, its end line and the report count the crashes."""

import json
import os
import re
from pathlib import Path

# Imported before any in-process session, as tests/conftest.py says for torch's: one imported first inside a session
# is imported again by the next, and then `datasets` registers its pyarrow types twice (ArrowKeyError), transformers
# loads LLaVA's weights under the wrong names (its loading modules, imported twice, no longer agree) and its auto
# classes hand out a model class whose module is gone (no eager attention: no attention maps).
import datasets  # noqa: F401
import pytest
import transformers.modeling_utils  # noqa: F401
import transformers.models.clip.modeling_clip  # noqa: F401
import transformers.models.llama.modeling_llama  # noqa: F401
import transformers.models.llava.modeling_llava  # noqa: F401
import transformers.models.llava.processing_llava  # noqa: F401

import mmtests.data.sources  # noqa: F401
from mmtests.crashes import AGAIN, FIRST, SAME_WAY, Crashes
from mmtests.errors import CrashedEarlier, DatasetUnavailable, EntryError, ModelUnavailable, crash_site
from mmtests.figures.record_reader import read_run
from mmtests.figures.record_writer import RecordWriter
from mmtests.report.__main__ import build, main
from mmtests.session.memo import Memo

ZOO = Path(__file__).resolve().parents[1] / "mmtests" / "zoo"
# The shapes cache of this machine, read before pytester points HOME at a fresh folder (it would build the split anew).
CACHE = os.environ.get("MMTESTS_CACHE") or str(Path.home() / ".cache" / "mmtests")

# One check per suite, so that at each stage every check of a suite needs one and the same thing.
MATRIX = f"""
[models.tiny-clip]
backend = "open_clip"
model = "local-dir:{ZOO}/tiny-clip/open_clip"

[models.tiny-llava]
backend = "llava"
model = "{ZOO}/tiny-llava"

[datasets.shapes-mini]
source = "shapes"
split = "test"
label_column = "shape"
limit = 16

[prompt_sets.bare]
templates = ["{{}}"]

[prompt_sets.big]
templates = ["a photo of a big {{}}."]

[[zero_shot]]
dataset = "shapes-mini"
prompt_set = "bare"

[[prompt_gain]]
dataset = "shapes-mini"
baseline = "bare"
candidate = "big"

[question_sets.qa]
dataset = "shapes-mini"
questions = "shapes"
images = 1
max_new_tokens = 8

[[answers]]
question_set = "qa"
models = ["tiny-llava"]

[[attention]]
question_set = "qa"
models = ["tiny-llava"]
kind = "colour"
samples = 1
"""

# suite -> (module of its tests, -k selection)
SUITES = {
    "zero-shot": ("mmtests.suites.test_clip_zero_shot", "test_zero_shot"),
    "prompt-gain": ("mmtests.suites.test_clip_zero_shot", "test_prompt_gain"),
    "answers": ("mmtests.suites.test_llava_answers", "test_answer"),
    "attention": ("mmtests.suites.test_llava_attention", "attention or share or localization"),
}
# (stage, suite) -> what the fault replaces: "module:attribute" or "module:Class.method"
LOADERS = {"clip": "mmtests.session.encoders:load_dual_encoder", "llava": "mmtests.session.vlms:VisionLanguageModel"}
FAULTS = {
    "model load": {"zero-shot": LOADERS["clip"], "prompt-gain": LOADERS["clip"], "answers": LOADERS["llava"],
                   "attention": LOADERS["llava"]},
    "dataset load": dict.fromkeys(SUITES, "mmtests.session.encoders:load_checked"),
    "measurement": {"zero-shot": "mmtests.session.encoders:embed_images",
                    "prompt-gain": "mmtests.session.encoders:embed_images",
                    "answers": "mmtests.adapters.llava:VisionLanguageModel.generate",
                    "attention": "mmtests.adapters.llava:VisionLanguageModel.attention_maps"},
    "evaluation": {"zero-shot": "mmtests.session.encoders:zero_shot_logits",
                   "prompt-gain": "mmtests.session.encoders:paired_gain",
                   "answers": "mmtests.session.vlms:is_correct",
                   "attention": "mmtests.evaluation.attention:answer_attention"},
}
STAGES, NAMES = list(FAULTS), list(SUITES)
# Exception types over stages and suites as a Latin square: each type is met at every stage and in every suite.
TYPES = (RuntimeError, ValueError, IndexError, TypeError)
CASES = [(stage, suite, TYPES[(i + j) % len(TYPES)]) for i, stage in enumerate(STAGES) for j, suite in enumerate(NAMES)]


def injected(error: type[Exception], where: str):
    def fault(*args, **kwargs):
        raise error(f"injected fault at {where}")
    return fault


def inject(monkeypatch, target: str, fault) -> None:
    import importlib

    module, _, attr = target.partition(":")
    owner, _, name = attr.rpartition(".")
    obj = importlib.import_module(module)
    monkeypatch.setattr(getattr(obj, owner) if owner else obj, name, fault)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    path = tmp_path_factory.mktemp("matrix") / "matrix.toml"
    path.write_text(MATRIX)
    return path


@pytest.mark.parametrize(("stage", "suite", "error"), CASES, ids=[f"{s}-{u}-{e.__name__}" for s, u, e in CASES])
def test_a_crash_is_one_crashed_figure_per_check_shown_once(pytester, monkeypatch, tmp_path, matrix, stage, suite,
                                                            error):
    inject(monkeypatch, FAULTS[stage][suite], injected(error, stage))
    monkeypatch.setenv("MMTESTS_CACHE", CACHE)
    records = tmp_path / "records.jsonl"
    module, select = SUITES[suite]
    result = pytester.runpytest_inprocess("--pyargs", module, "-k", select, f"--mm-config={matrix}",
                                          f"--mm-records={records}", "-p", "no:cacheprovider")
    out = result.stdout.str()
    message = f"injected fault at {stage}"
    run = read_run(records)
    crashed = run.crashed
    assert result.ret == 1, out[-3000:]
    assert len(run.planned) >= 1 and all(f["outcome"] == "crashed" for f in run.figures), out[-3000:]
    assert sorted(f["node"] for f in crashed) == sorted(run.planned)  # one crashed figure per check
    first = [f for f in crashed if "earlier" not in f]
    assert len(first) == 1, first  # one crash of the entry
    assert (first[0]["error"], first[0]["message"]) == (error.__name__, message)
    assert first[0]["origin"] == "test_crashes.py" and first[0]["called_from"].startswith("mmtests/"), first[0]
    assert all(f["earlier"] == first[0]["check"] and f["message"] == message for f in crashed if f is not first[0])
    assert len(re.findall(rf"^E +{error.__name__}: {message}$", out, re.M)) == 1, out[-3000:]  # one traceback
    assert len(re.findall(r"^crashed (earlier in|as) test_", out, re.M)) == len(crashed) - 1, out[-3000:]
    end = next(json.loads(line) for line in records.read_text().splitlines() if '"kind": "end"' in line)
    assert (end["crashed"], end["exitstatus"]) == (len(crashed), 1)
    built = build(records, tmp_path / "out")
    assert built.failed and built.crashed == len(crashed)
    text = built.report.read_text()
    assert f"**{len(crashed)} crashed**" in text
    assert re.search(rf"\| +0 \| +0 \| +0 \| +{len(crashed)} \|$", text.split("**Crashes**")[0], re.M), text  # summary
    assert text.count(f"`{error.__name__}` in test_crashes.py") == 1, text


def test_memo_raises_a_crash_as_it_came_once_then_one_line_naming_the_first_check():
    calls, current = [], ["test_a[m]"]
    boom = ValueError("broken adapter")

    def measure(x):
        calls.append(x)
        raise boom

    cached = Memo(lambda: current[0])(measure)
    with pytest.raises(ValueError) as first:
        cached(1)
    assert first.value is boom
    current[0] = "test_b[m]"
    for _ in range(2):
        with pytest.raises(CrashedEarlier, match=r"^crashed earlier in test_a\[m\]: ValueError: broken adapter$") as again:
            cached(1)
        assert again.value.error is boom
    assert calls == [1]


NOT_CRASHES = [KeyboardInterrupt, SystemExit, GeneratorExit, pytest.skip.Exception, pytest.fail.Exception,
               pytest.xfail.Exception, MemoryError, lambda m: RuntimeError(f"CUDA out of memory. {m}")]
ENTRY = [ModelUnavailable, DatasetUnavailable, EntryError]
CRASHES = [RuntimeError, ValueError, IndexError, KeyError, TypeError, AttributeError, AssertionError,
           ZeroDivisionError, NotImplementedError, OSError, type("AdapterError", (Exception,), {})]


@pytest.mark.parametrize("make", [*NOT_CRASHES, *ENTRY, *CRASHES])
def test_memo_remembers_every_exception_but_oom_and_what_is_not_an_exception(make):
    calls = []

    def measure():
        calls.append(1)
        raise make("fault")

    cached = Memo(lambda: "test_a")(measure)
    raised = []
    for _ in range(2):
        with pytest.raises(BaseException) as info:
            cached()
        raised.append(info.value)
    if make in NOT_CRASHES:  # not remembered: raised as it came, each time (pytest's outcomes, interrupts, OOM)
        assert len(calls) == 2 and type(raised[1]) is type(raised[0]) and not isinstance(raised[1], CrashedEarlier)
    elif make in ENTRY:  # remembered, and said as itself: its one-line message names the entry and the fix
        assert len(calls) == 1 and raised[0] is raised[1]
    else:
        assert len(calls) == 1 and isinstance(raised[1], CrashedEarlier) and raised[1].error is raised[0]


def _raise_from(path: str, error=RuntimeError):
    """An exception whose innermost frame is in `path`, called from this file."""
    code = compile("def fail(error):\n    raise error('deep inside')\n", path, "exec")
    space = {}
    exec(code, space)
    try:
        space["fail"](error)
    except Exception as err:  # noqa: BLE001
        return err


MMTESTS = Path(__file__).resolve().parents[1] / "mmtests"


@pytest.mark.parametrize(("path", "origin", "shown"), [
    ("/venv/lib/python3.11/site-packages/transformers/models/siglip2/modeling_siglip2.py", "transformers",
     "transformers/models/siglip2/modeling_siglip2.py"),
    ("/usr/lib/python3/dist-packages/torch/nn/functional.py", "torch", "torch/nn/functional.py"),
    ("/venv/lib/python3.11/site-packages/open_clip/model.py", "open_clip", "open_clip/model.py"),
    ("/venv/lib/python3.11/site-packages/six.py", "six", "six.py"),
    (str(MMTESTS / "session" / "vlms.py"), "mmtests", "mmtests/session/vlms.py"),
    ("/home/me/my_adapter.py", "my_adapter.py", "my_adapter.py"),
])
def test_crash_site_names_the_library_or_mmtests(path, origin, shown):
    site = crash_site(_raise_from(path))
    assert site["origin"] == origin and site["at"] == f"{shown}:2 in fail"
    assert "called_from" not in site  # no mmtests frame on the way (this test file called it)


def test_crash_site_names_the_mmtests_frame_that_called_the_library():
    code = compile("def fail(*args):\n    raise RuntimeError('in the library')\n",
                   "/venv/lib/python3.11/site-packages/transformers/x.py", "exec")
    space = {}
    exec(code, space)
    with pytest.raises(RuntimeError) as info:
        Memo()(space["fail"])(1)
    site = crash_site(info.value)
    assert site["origin"] == "transformers" and site["called_from"].startswith("mmtests/session/memo.py:")


def test_crashes_are_met_first_again_or_the_same_way():
    crashes = Crashes()
    one = _raise_from("/x/site-packages/transformers/a.py")
    crash, how = crashes.meet(one, "test_1")
    assert how == FIRST and crash.first == "test_1"
    assert crashes.meet(CrashedEarlier(one, "test_1"), "test_2") == (crash, AGAIN)
    assert crashes.meet(one, "test_3") == (crash, AGAIN)  # a session fixture's error, raised again by pytest
    assert crashes.meet(_raise_from("/x/site-packages/transformers/a.py"), "test_4") == (crash, SAME_WAY)
    other, how = crashes.meet(_raise_from("/x/site-packages/transformers/a.py", ValueError), "test_5")
    assert how == FIRST and other is not crash
    assert crash.later == ["test_2", "test_3", "test_4"] and crashes.crashes == [crash, other]


USER_TESTS = """
import pytest

def test_skips(mm):
    pytest.skip("not here")

def test_xfails(mm):
    pytest.xfail("known")

def test_fails(mm):
    pytest.fail("a verdict", pytrace=False)

def test_crashes(mm):
    {}[1]
"""


def test_pytest_outcomes_pass_through_and_only_an_exception_is_a_crash(pytester, tmp_path):
    pytester.makepyfile(test_user=USER_TESTS)
    records = tmp_path / "records.jsonl"
    result = pytester.runpytest_inprocess(f"--mm-records={records}", "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=1, xfailed=1, failed=2)
    crashed = read_run(records).crashed
    assert [(f["check"], f["error"], f["message"], f["suite"]) for f in crashed] == [
        ("test_crashes", "KeyError", "1", "user")]
    assert result.ret == 1


def _write_run(records: Path, run_id: str, figures: list[dict], exitstatus: int) -> None:
    writer = RecordWriter(records, {"device": "cpu"}, run_id=run_id)
    writer.plan([f"s.py::test_x[{f['test_id']}]" for f in figures])
    for f in figures:
        writer.figure(**f)
    writer.end(exitstatus)
    writer.close()


def test_a_crashed_run_is_reported_as_itself_not_as_the_previous_runs_figures(tmp_path, capsys):
    records, out = tmp_path / "records.jsonl", tmp_path / "out"
    good = dict(suite="zero_shot", test_id="m/d/p", metric="top1", value=0.9, outcome="pass", model="m", dataset="d",
                prompt_set="p", threshold=0.5)
    _write_run(records, "20260101T000000Z", [good], 0)
    crash = dict(suite="zero_shot", test_id="m/d/p", metric="crashed", value=None, outcome="crashed",
                 error="RuntimeError", message="shapes do not match", origin="transformers",
                 at="transformers/x.py:3 in forward", check="test_x[m/d/p]")
    # The third check met the same crash first in its own process (another xdist worker): still one exception.
    _write_run(records, "20260102T000000Z", [crash, {**crash, "test_id": "m/e/p", "check": "test_x[m/e/p]",
                                                     "earlier": "test_x[m/d/p]"},
                                             {**crash, "test_id": "m/f/p", "check": "test_x[m/f/p]"}], 1)
    run = read_run(records)
    assert run.run_id == "20260102T000000Z" and len(run.crashed) == 3 and not run.select("zero_shot")
    text = build(records, out).report.read_text()
    assert text.startswith("# mmtests report: 20260102T000000Z\n\n**3 crashed**: 3 checks of run 20260102T000000Z "
                           "raised an exception instead of measuring, on 1 exception")
    assert "0.900" not in text  # the previous run's figure is not shown as this run's
    assert text.count("shapes do not match") == 1 and "then 2 later checks failed on it" in text
    assert main(["--records", str(records), "--out", str(out), "--fail-on-failure"]) == 1
    assert "3 checks crashed" in capsys.readouterr().err
    # A newer session that crashed before its first figure (nothing recorded but its end): the report says whose
    # figures it shows, and why the newer run has none.
    writer = RecordWriter(records, {"device": "cpu"}, run_id="20260103T000000Z")
    writer.plan(["s.py::test_x[m/d/p]"])
    writer.end(1)
    writer.close()
    text = build(records, out).report.read_text()
    assert ("**This report shows run 20260102T000000Z, not the newer run 20260103T000000Z**: that run recorded no "
            "figure; its session ended: checks failed (exit status 1).") in text
