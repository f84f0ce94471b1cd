"""Shared set-up for benchmarks: the default matrix's workbench, built once per session."""

import pytest
import torch

from mmtests.config import load_matrix
from mmtests.workbench import Workbench


@pytest.fixture(scope="session")
def workbench():
    return Workbench(load_matrix(), torch.device("cuda" if torch.cuda.is_available() else "cpu"))
