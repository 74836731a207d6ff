"""Multi-label classification metrics as a local `evaluate` module (loaded by path: no Hub download)."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Micro and macro precision, recall and F1 over labels, per-label F1, and subset accuracy (exact match of the whole
label set) for multi-label classification. Predictions and references are multi-hot vectors.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[int]]`): multi-hot predicted label vectors, one per document.
    references (`list[list[int]]`): multi-hot gold label vectors, one per document.
    label_names (`list[str]`, *optional*): names for `per_label_f1`; label indices when omitted.
Returns:
    micro_precision, micro_recall, micro_f1, macro_precision, macro_recall, macro_f1, subset_accuracy (floats)
    and per_label_f1 (dict from label name to F1). A label with no prediction and no reference scores F1 = 0.
"""


def _safe_divide(numerator, denominator):
    return np.divide(numerator, denominator, out=np.zeros_like(numerator, dtype=float), where=denominator > 0)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MultiLabelClassification(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("int32")),
                    "references": datasets.Sequence(datasets.Value("int32")),
                }
            ),
        )

    def _compute(self, predictions, references, label_names=None):
        predicted = np.asarray(predictions, dtype=bool)
        gold = np.asarray(references, dtype=bool)
        true_positives = (predicted & gold).sum(0).astype(float)
        predicted_positives = predicted.sum(0).astype(float)
        gold_positives = gold.sum(0).astype(float)

        per_label_precision = _safe_divide(true_positives, predicted_positives)
        per_label_recall = _safe_divide(true_positives, gold_positives)
        per_label_f1 = _safe_divide(2 * true_positives, predicted_positives + gold_positives)
        micro_precision = float(_safe_divide(true_positives.sum(), predicted_positives.sum()))
        micro_recall = float(_safe_divide(true_positives.sum(), gold_positives.sum()))
        micro_f1 = float(_safe_divide(2 * true_positives.sum(), predicted_positives.sum() + gold_positives.sum()))
        names = label_names if label_names is not None else [str(i) for i in range(gold.shape[1])]
        return {
            "micro_precision": micro_precision,
            "micro_recall": micro_recall,
            "micro_f1": micro_f1,
            "macro_precision": float(per_label_precision.mean()),
            "macro_recall": float(per_label_recall.mean()),
            "macro_f1": float(per_label_f1.mean()),
            "subset_accuracy": float((predicted == gold).all(1).mean()),
            "per_label_f1": {name: float(f1) for name, f1 in zip(names, per_label_f1)},
        }
