"""The baseline gates on the committed zoo: silent on clean reruns at another batch size and thread count,
red on a silent preprocessing fault that moves accuracy by less than a point. (`python -m mmtests.faults`
runs the whole catalogue; these are its two ends, with the int8 export gate, in `tox -e integration`.)"""

import pytest

from mmtests import faults


@pytest.mark.integration  # a whole pytest session: tox -e integration, not the default run
def test_clean_rerun_at_other_batch_size_and_threads_passes_its_baselines(tmp_path):
    matrix = faults.apply(faults.Fault("clean", "tiny-clip", "clean"), tmp_path)
    result = faults._run(matrix, ["tiny-clip-hf", "tiny-llava"], tmp_path, batch=7, threads="1",
                         select="matches_baseline")
    assert result.exit_code == 0 and not result.red, f"false alarm on a clean rerun: {result.red}"


@pytest.mark.integration  # a whole pytest session: tox -e integration, not the default run
def test_bilinear_resize_turns_the_gates_red(tmp_path):
    fault = next(f for f in faults.CATALOGUE if f.name == "resize-bilinear")
    result = faults._run(faults.apply(fault, tmp_path), ["tiny-clip"], tmp_path,
                         select="matches_baseline and shapes-test/")
    assert result.caught, "a bilinear instead of bicubic resize went unnoticed"
    # What catches it is agreement with the known-good self, not accuracy alone.
    assert any(r.endswith(("probability_change", "image_cosine", "prediction_agreement")) for r in result.red), result.red


CANDIDATE = """
[models.tiny-clip-hf-int8]
backend = "hf_clip"
model = "{model}"
quantize = "dynamic-int8"
baseline = "{baseline}"
"""


@pytest.mark.integration  # a whole pytest session: tox -e integration, not the default run
def test_int8_export_passes_its_gate_and_a_damaged_one_fails(tmp_path):
    """A comparative gate: a dynamic-int8 copy of the HF tiny CLIP against the float32 model's baseline,
    with the int8 tolerances; the same copy with weight noise (0.3 x std in the image tower) is red."""
    outcomes = {}
    for name, damage in (("int8", None), ("int8-noised", faults._noise(("vision_model.",), 0.3))):
        workdir = tmp_path / name
        workdir.mkdir()
        model = faults.ZOO / "tiny-clip" / "hf"
        if damage:
            import shutil

            shutil.copytree(model, workdir / "model")
            model = workdir / "model"
            damage(model)
        matrix = faults.apply(faults.Fault("clean", "tiny-clip", "clean"), workdir)
        matrix.write_text(matrix.read_text() + CANDIDATE.format(model=model, baseline=faults.ZOO / "baselines" / "tiny-clip-hf"))
        outcomes[name] = faults._run(matrix, ["tiny-clip-hf-int8"], workdir, select="shapes-test/ and (big or bare)")
    assert outcomes["int8"].exit_code == 0 and not outcomes["int8"].red, outcomes["int8"].red
    assert outcomes["int8-noised"].caught and outcomes["int8-noised"].red
