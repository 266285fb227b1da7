"""Test-wide settings: no network for models, the repository importable as a package root."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Nothing reaches a model hub here: an unknown base id must fail fast, not after a timeout.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The CUDA decode step's Triton kernels run through Triton's interpreter in tests/test_kernels.py;
# it must be chosen before Triton is first imported. The engine never uses them on a CPU.
os.environ.setdefault("TRITON_INTERPRET", "1")

# Shared model and demo fixtures; each builds lazily, once per test session, when first used.
pytest_plugins = ["tests.fixtures_models", "tests.fixtures_demo"]
