"""Shared fixtures. The helper modules next to this file (`tiny_models`, `hub_cache`, `fresh_process`, ...) are
importable from test modules: this file puts the tests folder on `sys.path` (pytest runs with --import-mode=importlib,
which does not)."""

import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from tiny_models import MINILM_PATH, build_tiny_model, save_tiny_encoder  # noqa: E402

# The test models are tiny: one thread is as fast, and far faster when other processes share the cores (idle
# intra-op threads spin while waiting for a busy core).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tokenizer():
    return AutoTokenizer.from_pretrained(MINILM_PATH)


@pytest.fixture
def make_model(tokenizer):
    """Factory fixture: `make_model(family="bert", seed=0, **config_kwargs)` -> tiny model in eval mode."""

    def make(family: str = "bert", seed: int = 0, **kwargs):
        return build_tiny_model(tokenizer, family, seed=seed, **kwargs)

    return make


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory):
    """A folder holding a tiny random BERT and the bundled tokenizer, usable as `--encoder`."""
    return save_tiny_encoder(tmp_path_factory.mktemp("tiny_encoder"), dropout=0.1)
