"""The shipped metric modules (`metrics/`), loaded with `evaluate.load`, on cases worked out by hand."""

import pytest
from training_runs import REPO


def test_multi_label_metric_module():
    import evaluate

    metric = evaluate.load(str(REPO / "metrics" / "multi_label_classification"))
    # label a: 1 true positive of 2 predicted, 1 gold; label b: 1 of 1 predicted, 2 gold.
    results = metric.compute(
        predictions=[[1, 0], [1, 1], [0, 0]], references=[[1, 1], [0, 1], [0, 0]], label_names=["a", "b"]
    )
    assert results["micro_precision"] == pytest.approx(2 / 3) and results["micro_recall"] == pytest.approx(2 / 3)
    assert results["micro_f1"] == pytest.approx(2 / 3) and results["macro_f1"] == pytest.approx(2 / 3)
    assert results["macro_precision"] == pytest.approx(0.75) and results["macro_recall"] == pytest.approx(0.75)
    assert results["subset_accuracy"] == pytest.approx(1 / 3)
    assert results["per_label_f1"] == pytest.approx({"a": 2 / 3, "b": 2 / 3})


def test_single_label_metric_module():
    import evaluate

    metric = evaluate.load(str(REPO / "metrics" / "single_label_classification"))
    results = metric.compute(predictions=[0, 1, 1, 2], references=[0, 1, 2, 2], num_labels=4)
    assert results["accuracy"] == 0.75
    # Per class: 1, 2/3, 2/3, and 0 for class 3 that never occurs (it still counts in the macro average).
    assert results["per_label_f1"] == pytest.approx({"0": 1.0, "1": 2 / 3, "2": 2 / 3, "3": 0.0})
    assert results["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 4)


def test_thresholds_are_tuned_per_label_and_scored_by_the_models_own_rule():
    import numpy as np
    import torch

    from label_attention.data_label_attention import LabelSet
    from label_attention.modeling_label_attention import decisions_from_logits
    from label_attention.train_accelerate import Evaluator

    evaluator = Evaluator(LabelSet("multi_label_classification", ["a", "b"], ["first", "second"]))
    # Label a: every threshold in 0.35..0.70 separates its documents (the tie goes to the one nearest 0.5).
    # Label b: positives at 0.22 and 0.25, a negative at 0.10: only 0.15 and 0.20 separate them.
    probabilities = np.array([[0.8, 0.22], [0.7, 0.25], [0.3, 0.10]])
    logits = np.log(probabilities / (1 - probabilities)).astype(np.float32)
    references = np.array([[1, 1], [1, 1], [0, 0]])
    thresholds = evaluator.tune_thresholds(logits, references)
    assert thresholds == [0.5, 0.2]
    assert evaluator.score(logits, references, thresholds)["micro_f1"] == 1.0
    assert evaluator.score(logits, references)["per_label_f1"] == pytest.approx({"a": 1.0, "b": 0.0})  # 0.5 each
    decisions = decisions_from_logits(torch.from_numpy(logits), "multi_label_classification", thresholds)
    assert decisions.tolist() == references.tolist()
    assert decisions_from_logits(torch.from_numpy(logits), "single_label_classification").tolist() == [0, 0, 0]
