"""Smoke tests of the benchmark scripts, so that they cannot rot: each runs on a handful of documents for one step
with a tiny encoder. They check that the scripts run and write their tables, not any speed or quality figure."""

import json
import sys
from pathlib import Path

from training_runs import REPO, check_child, run_child


def run(*command):
    """The script in a child process (one thread, offline), which must succeed."""
    return check_child(run_child([sys.executable, *command], timeout=600))


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


def test_head_comparison_sweeps_runs_seeds_and_writes_its_tables(tiny_encoder, tmp_path):
    """Sweep on the first seed, the chosen setting on every seed, an ablation; records reused by a second call."""
    config = json.loads((REPO / "benchmarks" / "configs" / "hoc.json").read_text())
    config.update(
        heads=["label-attention", "mean-pooling"],
        seeds=[1, 2],
        sweep={"learning_rate": [1e-3, 2e-3]},
        ablations=[{"label_pooling": "first"}],
        data_dir=str(Path("..") / "shared" / "data" / "hoc"),
    )
    config_file = tmp_path / "tiny_hoc.json"
    config_file.write_text(json.dumps(config))
    overrides = ["max_train_samples=8", "max_eval_samples=8", "epochs=2", "max_length=16", "batch_size=4",
                 f"encoder={tiny_encoder}"]  # fmt: skip
    output, records = tmp_path / "comparison", tmp_path / "records"
    command = [
        REPO / "benchmarks" / "compare_heads.py", config_file, "--records-dir", records, "--runs-dir",
        tmp_path / "runs", "--output", output, "--jobs", 2, *[arg for item in overrides for arg in ("--override", item)],
    ]  # fmt: skip
    run(*command)
    (experiment,) = json.loads(output.with_suffix(".json").read_text())
    assert experiment["experiment"] == "tiny_hoc"
    for head in ("label-attention", "mean-pooling"):
        row = experiment["heads"][head]
        assert len(row["sweep"]) == 2 and row["chosen"] in [score["setting"] for score in row["sweep"]]
        assert len(row["test_micro_f1"]["values"]) == 2 and len(row["learning_curves"]) == 2
        assert set(row["thresholds"]) == {"held_out_micro_f1_tuned", "held_out_micro_f1_at_0.5"}
    difference = experiment["paired_differences"]["mean-pooling"]["micro_f1"]
    label_attention, baseline = (experiment["heads"][h]["test_micro_f1"]["values"] for h in ("label-attention", "mean-pooling"))
    assert difference["values"] == [a - b for a, b in zip(label_attention, baseline)]
    assert [ablation["change"] for ablation in experiment["ablations"]] == [{"label_pooling": "first"}]
    # Each finished run left its record; the model folders were not kept.
    assert len(list(records.rglob("eval_results.json"))) == 2 * 2 + 2 * 1 + 1
    assert not list((tmp_path / "runs").rglob("model.safetensors"))
    assert output.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert "Paired differences" in output.with_suffix(".md").read_text()
    # A second call trains nothing: every record is reused.
    assert "done " not in run(*command).stdout
