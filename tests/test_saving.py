"""Saving a model folder (`save_model_folder`, `replace_folder`) never leaves a half-written folder in place of a good
one: a failed save keeps the previous folder, a save replaces it whole, and a swap cut short is undone."""

import os
from pathlib import Path

import pytest
from training_runs import folder_digest, read_json
from transformers import BertTokenizer

from label_attention import LabelAttentionForSequenceClassification
from label_attention.train_accelerate import replace_folder, save_model_folder


@pytest.fixture
def saved_model(hoc_run, tmp_path):
    model_dir = hoc_run[0] / "model"
    model = LabelAttentionForSequenceClassification.from_pretrained(model_dir)
    tokenizer = BertTokenizer.from_pretrained(model_dir)
    target = tmp_path / "model"
    save_model_folder(model, tokenizer, target)
    return model, tokenizer, target


def test_failed_save_keeps_the_previous_folder(saved_model, monkeypatch):
    model, tokenizer, target = saved_model
    before = folder_digest(target)
    model.config.decision_thresholds = [0.9] * 10  # the new save would differ

    def save_half_then_fail(folder, *args, **kwargs):
        (Path(folder) / "tokenizer.json").write_text("{")
        raise OSError("disk full")

    monkeypatch.setattr(tokenizer, "save_pretrained", save_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        save_model_folder(model, tokenizer, target)
    assert folder_digest(target) == before
    assert [p.name for p in target.parent.iterdir()] == ["model"]  # the staging folder is gone, nothing else appeared


def test_save_replaces_the_folder_whole(saved_model):
    model, tokenizer, target = saved_model
    # A run killed while saving left a staging folder; the next save starts it afresh.
    leftover = target.with_name(".model.partial")
    leftover.mkdir()
    (leftover / "stale.txt").write_text("from a killed run")
    model.config.decision_thresholds = [0.9] * 10
    save_model_folder(model, tokenizer, target, extra_files={"eval_results.json": "{}"})
    assert read_json(target / "config.json")["decision_thresholds"] == [0.9] * 10
    assert (target / "eval_results.json").read_text() == "{}"
    assert not (target / "stale.txt").exists()
    assert sorted(p.name for p in target.parent.iterdir()) == ["model"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o777 & ~current_umask())


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_swap_interrupted_between_renames_is_undone(tmp_path):
    """Killed after moving the old folder aside and before moving the new one in: the old folder comes back."""
    target, previous = tmp_path / "model", tmp_path / "model.previous"
    previous.mkdir()
    (previous / "config.json").write_text("old")
    staging = tmp_path / ".model.partial"
    staging.mkdir()
    (staging / "config.json").write_text("new")
    replace_folder(staging, target)
    assert (target / "config.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
