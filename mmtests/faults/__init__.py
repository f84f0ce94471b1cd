"""Detection power, measured: apply a catalogue of silent faults to the embedded zoo and count how many
turn the default matrix's checks red, and how many clean reruns stay green.

Each fault is a broken copy of an embedded model (weights, preprocessing config, tokenizer, generation
settings) or of its matrix entry that still loads and runs without a warning. The suites run on it
against the committed baselines, as CI would. The clean models are rerun too (at other batch sizes
and thread counts): any red there is a false alarm. With `--mm-config`, the checkpoint-level faults are
applied to copies of the user's own model folders instead, gated against their own baselines (user.py).

    python -m mmtests.faults [--only NAME ...] [--json reports/faults.json]
    python -m mmtests.faults --mm-config my.toml [--mm-model NAME ...] [-k EXPR] [--only NAME ...]

Treat the catalogue as a sample of what goes wrong, not as the target: the gates are properties of
a healthy model (agreement with its known-good self within measured tolerances), not detectors
written for these faults.
"""

from .catalogue import CATALOGUE, CLEAN_RUNS, TARGETS, ZOO, Fault
from .cli import main
from .edits import _noise
from .runner import Result, _run, apply

__all__ = ["CATALOGUE", "CLEAN_RUNS", "TARGETS", "ZOO", "Fault", "Result", "_noise", "_run", "apply", "main"]
