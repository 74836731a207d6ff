"""Smoke tests of the benchmark scripts, so that they cannot rot: each runs on a handful of documents for one step
with a tiny encoder. They check that the scripts run and write their tables, not any speed or quality figure."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def run(*command):
    completed = subprocess.run(
        [sys.executable, *map(str, command)], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return completed


def test_speed_benchmark_runs_and_writes_its_table(tiny_encoder, tmp_path):
    output = tmp_path / "speed"
    run(
        REPO / "benchmarks" / "speed.py", "--encoder", tiny_encoder, "--batch-size", 2, "--length", 16,
        "--steps", 1, "--warmup", 0, "--label-counts", "3", "--lengths", "16", "--output", output,
    )  # fmt: skip
    results = json.loads(output.with_suffix(".json").read_text())
    for mode in ("train", "inference"):
        assert set(results[mode]) == {"linear", "label-attention"}
        assert results["overhead"][mode] > 0
    assert [row["num_labels"] for row in results["by_num_labels"]] == [3]
    assert [row["length"] for row in results["by_length"]] == [16]
    assert "ratio to vanilla" in output.with_suffix(".md").read_text()


def test_head_comparison_runs_both_heads_and_writes_its_table(tiny_encoder, tmp_path):
    overrides = ["max_train_samples=4", "max_eval_samples=4", "epochs=1", "max_length=16", "batch_size=4"]
    output = tmp_path / "comparison"
    run(
        REPO / "benchmarks" / "compare_heads.py", REPO / "benchmarks" / "configs" / "hoc.json",
        REPO / "benchmarks" / "configs" / "mtc5.json", "--runs-dir", tmp_path / "runs", "--output", output,
        "--seeds", "1", *[arg for item in overrides for arg in ("--override", item)],
        "--override", f"encoder={tiny_encoder}",
    )  # fmt: skip
    experiments = json.loads(output.with_suffix(".json").read_text())
    assert [e["experiment"] for e in experiments] == ["hoc", "mtc5"]
    for experiment in experiments:
        for head in ("label-attention", "linear"):
            row = experiment["heads"][head]
            first_metric = experiment["metrics"][0]
            assert len(row[f"test_{first_metric}"]["values"]) == 1
    table = output.with_suffix(".md").read_text()
    assert "test micro_f1" in table and "test accuracy" in table
