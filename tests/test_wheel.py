"""The user's path, exactly: a wheel built from this tree, installed into a fresh environment, used from a folder
that holds nothing but the matrix `mmtests init` writes (`tox -e wheel`; minutes: it runs the suites and the
nightly).

The fresh environment sees this one's packages (torch, transformers, ...) so nothing is downloaded, but not its
mmtests: the folders this environment's site-packages hold are put on the path without their .pth files, so an
editable install of mmtests here stays out of it, and the wheel's own copy comes first on the path.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
pytestmark = pytest.mark.slow


def _run(command: list, cwd: Path, env: dict, timeout: int = 900) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(map(str, command))}: exit {result.returncode}\n{result.stdout[-4000:]}\n" \
                                   f"{result.stderr[-4000:]}"
    return result


def _fresh_env(tmp_path: Path) -> tuple[Path, dict]:
    dist, venv = tmp_path / "dist", tmp_path / "venv"
    _run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-w", str(dist)],
         tmp_path, os.environ.copy())
    [wheel] = dist.glob("mmtests-*.whl")
    _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], tmp_path, os.environ.copy())
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / ("python.exe" if os.name == "nt" else "python")
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path,
                        os.environ.copy()).stdout.strip())
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (purelib / "_parent_environment.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    _run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", str(wheel)], tmp_path, env)
    return bin_dir, env


def _first_figure(records_dir: Path) -> bool:
    return any('"kind": "figure"' in p.read_text(errors="replace") for p in records_dir.glob("*/*.jsonl")
               if not p.name.endswith("-samples.jsonl"))


def test_a_wheel_runs_init_run_and_nightly_from_an_empty_folder(tmp_path):
    bin_dir, env = _fresh_env(tmp_path)
    model, work = tmp_path / "my-model", tmp_path / "work"
    shutil.copytree(ROOT / "mmtests" / "zoo" / "tiny-clip" / "open_clip", model)
    work.mkdir()
    mmtests = str(bin_dir / "mmtests")

    where = _run([str(bin_dir / "python"), "-c", "import mmtests; print(mmtests.__file__)"], work, env).stdout
    assert Path(where.strip()).is_relative_to(tmp_path / "venv"), where  # the wheel's copy, not this checkout's
    helped = _run([mmtests, "--help"], work, env).stdout
    assert all(name in helped for name in ("init", "run", "bench", "nightly", "report", "compare", "faults"))

    start = time.monotonic()
    _run([mmtests, "init", str(model)], work, env)
    assert sorted(p.name for p in work.iterdir()) == ["mmtests.toml"]
    run = subprocess.Popen([mmtests, "run", "--mm-config", "mmtests.toml"], cwd=work, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    first = None
    while run.poll() is None:
        if first is None and _first_figure(work / "reports" / "records.d"):
            first = time.monotonic() - start
        time.sleep(0.2)
    output = run.stdout.read()
    assert run.returncode == 0, output[-4000:]
    first = first if first is not None else time.monotonic() - start
    print(f"\ninit to first figure: {first:.1f} s; init to the end of the run: {time.monotonic() - start:.1f} s")
    assert "my-model/shapes-test/photo" in (work / "reports" / "records.jsonl").read_text()

    with (work / "mmtests.toml").open("a") as matrix:
        matrix.write("\n[benchmarks]\nbatch_sizes = [2]\nrounds = 2\n")
    nightly = subprocess.run([mmtests, "nightly", "--mm-config", "mmtests.toml", "--out", "nightly"], cwd=work, env=env,
                             capture_output=True, text=True, timeout=900)
    assert nightly.returncode == 0, nightly.stdout[-4000:] + nightly.stderr[-2000:]
    report = (work / "nightly" / "latest.md").read_text()
    assert "my-model/shapes-test/photo" in report or "my-model" in report.split("## CLIP zero-shot top-1")[1]
    benchmarks = report.split("## Benchmarks")[1]
    assert "No benchmark results" not in benchmarks and "my-model" in benchmarks
