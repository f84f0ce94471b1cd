"""A checkpoint folder is data, never code: remote code named by `auto_map` does not run, and a chat template
renders in jinja's sandbox, whatever it tries. (Pickled weights: tests/test_bad_inputs.py, weights only.)"""

import json
import shutil
from pathlib import Path

import pytest
import torch

from mmtests.adapters.hf_clip import HFClipEncoder
from mmtests.adapters.llava import VisionLanguageModel

ZOO = Path(__file__).resolve().parents[1] / "mmtests" / "zoo"
CPU = torch.device("cpu")


def _evil_code(folder: Path, marker: Path) -> None:
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\nclass Evil:\n    pass\n")


@pytest.mark.parametrize("family", ["hf_clip", "llava"])
@pytest.mark.parametrize("auto_class", ["AutoModel", "AutoModelForImageTextToText", "AutoProcessor", "AutoTokenizer",
                                        "AutoImageProcessor", "AutoConfig"])
def test_auto_map_remote_code_never_runs(tmp_path, family, auto_class):
    folder, marker = tmp_path / "model", tmp_path / "MARKER"
    shutil.copytree(ZOO / ("tiny-clip/hf" if family == "hf_clip" else "tiny-llava"), folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {auto_class: "evil.Evil"}
    (folder / "config.json").write_text(json.dumps(config))
    for name in ("tokenizer_config.json", "processor_config.json", "preprocessor_config.json"):
        if (folder / name).is_file():
            settings = json.loads((folder / name).read_text())
            settings["auto_map"] = {auto_class: "evil.Evil"}
            (folder / name).write_text(json.dumps(settings))
    _evil_code(folder, marker)
    try:
        if family == "hf_clip":
            HFClipEncoder("m", str(folder), CPU)
        else:
            VisionLanguageModel(str(folder), CPU, entry="m").prompt("what colour is the big shape?")
    except Exception:  # noqa: BLE001 - refusing to load is fine; running the code is not
        pass
    assert not marker.exists(), f"{auto_class} in auto_map ran the folder's code"


PAYLOADS = {  # classic server-side template injection escapes
    "globals of a cycler": "{{ cycler.__init__.__globals__.os.popen('touch {marker}').read() }}",
    "subclasses walk": "{% for c in ''.__class__.__mro__[1].__subclasses__() %}{% if c.__name__ == 'Popen' %}"
                       "{{ c(['touch', '{marker}']) }}{% endif %}{% endfor %}",
    "import through builtins": "{{ self.__init__.__globals__.__builtins__.__import__('os').system('touch {marker}') }}",
    "namespace setattr": "{% set ns = namespace() %}{{ ns.__class__.__init__.__globals__['os'].system('touch {marker}') }}",
}


@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_chat_template_renders_in_the_sandbox(tmp_path, payload):
    folder, marker = tmp_path / "model", tmp_path / "MARKER"
    shutil.copytree(ZOO / "tiny-llava", folder)
    (folder / "chat_template.jinja").write_text(PAYLOADS[payload].replace("{marker}", str(marker)))
    try:
        VisionLanguageModel(str(folder), CPU, entry="m").prompt("what colour is the big shape?")
    except Exception:  # noqa: BLE001 - the sandbox refusing is the point
        pass
    assert not marker.exists(), f"the chat template escaped jinja's sandbox ({payload})"
