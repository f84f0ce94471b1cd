# In-process pytester runs (runpytest, inline_run) put sys.modules back as it was after each run, but torch's
# operator registry is not put back: a torch submodule first imported inside such a run (torch._dynamo, through
# torchvision) cannot be imported again after it ("Only a single TORCH_LIBRARY ..."). Import them before any run.
import open_clip  # noqa: F401
import transformers  # noqa: F401

pytest_plugins = ["pytester"]
