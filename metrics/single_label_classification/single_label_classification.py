"""Single-label classification metrics as a local `evaluate` module (loaded by path: no Hub download)."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Accuracy and macro-averaged F1 over classes for single-label classification, plus per-class F1.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): predicted class ids.
    references (`list[int]`): gold class ids.
    num_labels (`int`): number of classes (classes never seen in predictions or references still count in the
        macro average, with F1 = 0).
    label_names (`list[str]`, *optional*): names for `per_label_f1`; class ids when omitted.
Returns:
    accuracy, macro_f1 (floats) and per_label_f1 (dict from class name to F1).
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SingleLabelClassification(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}),
        )

    def _compute(self, predictions, references, num_labels, label_names=None):
        predicted = np.asarray(predictions)
        gold = np.asarray(references)
        classes = np.arange(num_labels)
        true_positives = ((predicted[:, None] == classes) & (gold[:, None] == classes)).sum(0)
        predicted_counts = (predicted[:, None] == classes).sum(0)
        gold_counts = (gold[:, None] == classes).sum(0)
        denominator = predicted_counts + gold_counts
        per_label_f1 = np.divide(2.0 * true_positives, denominator, out=np.zeros(num_labels), where=denominator > 0)
        names = label_names if label_names is not None else [str(i) for i in classes]
        return {
            "accuracy": float((predicted == gold).mean()),
            "macro_f1": float(per_label_f1.mean()),
            "per_label_f1": {name: float(f1) for name, f1 in zip(names, per_label_f1)},
        }
