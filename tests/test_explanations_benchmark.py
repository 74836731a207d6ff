"""Smoke test of the explanation benchmark (benchmarks/explanations.py), so that it cannot rot: a tiny model trained
on the synthetic keyword corpus, the benchmark run end to end on its test split. It checks that the measures lie in
their ranges and that removing a label's most attended words costs more than removing random ones (each label is
triggered by one planted keyword), not any figure of a real model."""

import importlib
import json
import math
import sys

import pytest
from training_runs import REPO, check_child, keyword_args, keyword_folder, run_child, train

EXPLANATIONS = ["attention:sum", "attention:max", "contrast:sum"]


@pytest.fixture(scope="module")
def keyword_model(tiny_encoder, tmp_path_factory):
    """A tiny model that learns the keyword task (test micro-F1 about 0.9), and its data folder."""
    folder = tmp_path_factory.mktemp("explained")
    data = keyword_folder(folder / "data", num_train=160, num_eval=24)
    # As test_train's converging run, with the per-label scorer: it learns the task in 5 epochs.
    extra = ["--epochs", 5, "--batch-size", 8, "--label-pooling", "first", "--label-scorer", "per_label"]
    assert train(keyword_args(data, tiny_encoder, folder / "run", *extra)) == 0
    return folder / "run" / "model", data


def test_explanation_benchmark_measures_and_renders(keyword_model, tmp_path):
    model, data = keyword_model
    output = tmp_path / "explanations"
    command = [
        REPO / "benchmarks" / "explanations.py", model, "--data-dir", data, "--split", "test", "--max-length", 32,
        "--ks", 1, 5, "--random-draws", 2, "--explanations", *EXPLANATIONS, "--examples", 2, "--output", output,
    ]  # fmt: skip
    check_child(run_child([sys.executable, *command], timeout=600))
    (result,) = json.loads(output.with_suffix(".json").read_text())["models"]
    assert result["documents"] == 24 and 0 < result["predicted_labels"]

    for name, measures in result["specificity"].items():
        for measure, entry in measures.items():
            bounds = (0.0, math.log(2)) if measure.startswith("jsd") else (0.0, 1.0)
            assert bounds[0] - 1e-9 <= entry["mean"] <= bounds[1] + 1e-9, (name, measure, entry)
    assert set(result["specificity"]) == {*EXPLANATIONS, "gradient×input", "attention:tokens"}

    for k in ("1", "5"):
        rows = result["faithfulness"][k]
        assert set(rows) == {*EXPLANATIONS, "gradient×input", "random"}
        for row in rows.values():
            for entry in (row["top"], row["sufficiency"]):
                assert -1 <= entry["mean"] <= 1 and entry["count"] == result["predicted_labels"]
        # The planted keyword is what the label reads: removing its top words costs more than random ones, and
        # keeping only them keeps more than random ones do.
        attention = rows["attention:sum"]
        assert attention["top"]["mean"] > rows["random"]["top"]["mean"] + 0.1
        assert attention["sufficiency"]["mean"] < rows["random"]["sufficiency"]["mean"]
    assert set(result["targets"]) == set(EXPLANATIONS)

    report = output.with_suffix(".md").read_text()
    assert "Label specificity" in report and "| attention:sum | 5 |" in report
    examples = tmp_path / "explanations_examples"
    assert (examples / "report.html").read_text().count('<article class="document"') == 2
    assert len(list(examples.glob("*.png"))) == 2


def test_ratios_are_missing_where_a_drop_is():
    """A model that predicts every label of every document has no least likely label: its ratio and target are
    missing, not a crash."""
    explanations = importlib.import_module("explanations")  # benchmarks/ is on pytest's pythonpath
    assert explanations.ratio(0.5, 0.25) == 2.0
    assert explanations.ratio(0.5, None) is None and explanations.ratio(0.5, 0.0) is None
    missing = {"mean": None, "standard_error": None, "count": 0}
    row = {"top": {"mean": 0.5}, "other_label": missing, "sufficiency": {"mean": 0.1}}
    reference = {"top": {"mean": 0.2}, "sufficiency": {"mean": 0.3}}
    rows = {"random": {"top": {"mean": 0.01}}, explanations.GRADIENT: reference}
    specificity = {"contrast:max": {"top_5_overlap_all_labels": {"mean": 0.1}, "jsd_all_labels": {"mean": 0.3}}}
    met = explanations.targets(specificity, {5: {**rows, "contrast:max": row}}, ["contrast:max"])
    assert met["contrast:max"]["removal_at_least_3x_least_likely_label"] is False
