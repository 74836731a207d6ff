"""Shared fixtures. The helper modules next to this file (`tiny_models`, `training_runs`, `fresh_process`, ...) are
importable from test modules: pyproject.toml puts the tests folder on `sys.path` (pytest's `pythonpath` setting)."""

from pathlib import Path

import pytest
import torch
from tiny_models import MINILM_PATH, build_tiny_model, save_tiny_encoder
from training_runs import hoc_args, keyword_folder, train_capturing_stdout
from transformers import AutoTokenizer

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


@pytest.fixture(scope="session")
def small_keywords(tmp_path_factory) -> Path:
    """A data folder of 48 / 16 / 16 keyword documents (`synthetic_corpus.py`)."""
    return keyword_folder(tmp_path_factory.mktemp("small_keywords"), num_train=48, num_eval=16)


@pytest.fixture(scope="session")
def hoc_run(tiny_encoder, tmp_path_factory):
    """`main([...])` in this process on a small subset of HoC (multi-label): (output folder, what it printed).
    Trained once for the whole session."""
    output_dir = tmp_path_factory.mktemp("hoc_run")
    code, stdout = train_capturing_stdout(hoc_args(tiny_encoder, output_dir, "--tune-thresholds"))
    assert code == 0, stdout
    return output_dir, stdout
