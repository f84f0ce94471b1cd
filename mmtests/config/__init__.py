"""The test matrix: models, datasets, prompt sets and expectations, read from a TOML file.

schema.py says what a file may hold, load.py reads it (rules.py: the checks between keys and entries), and
matrix.py is what comes out.
"""

from .load import DEFAULT_CONFIG, load_matrix
from .matrix import ConfigError, Matrix
from .paths import is_local_path
from .schema import (
    BACKENDS,
    DTYPES,
    DUAL_ENCODERS,
    IMAGE_FORMATS,
    MAX_LOADER_WORKERS,
    QUESTION_SOURCES,
    RANDOM_VLMS,
    SOURCES,
    AnswerCheck,
    AttentionCheck,
    BenchmarkSpec,
    DatasetSpec,
    EvaluationSpec,
    GainCheck,
    ModelSpec,
    PopeCheck,
    PromptSet,
    QuestionSet,
    RetrievalCheck,
    StabilityCheck,
    VLMCheck,
    ZeroShotCheck,
)

__all__ = ["BACKENDS", "DEFAULT_CONFIG", "DTYPES", "DUAL_ENCODERS", "IMAGE_FORMATS", "MAX_LOADER_WORKERS",
           "QUESTION_SOURCES", "RANDOM_VLMS", "SOURCES", "AnswerCheck", "AttentionCheck", "BenchmarkSpec", "ConfigError",
           "DatasetSpec", "EvaluationSpec", "GainCheck", "Matrix", "ModelSpec", "PopeCheck", "PromptSet", "QuestionSet",
           "RetrievalCheck",
           "StabilityCheck", "VLMCheck", "ZeroShotCheck", "is_local_path", "load_matrix"]
