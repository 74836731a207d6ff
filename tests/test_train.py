"""End-to-end tests of the Accelerate training entry point `train_accelerate.py`.

Every run fine-tunes a tiny, randomly initialised BERT (hidden size 32, 2 layers) that reads the bundled
all-MiniLM-L6-v2 tokenizer, on a few dozen documents: small subsets of the shared HoC / MTC-5 data, or a synthetic
corpus in which each label is triggered by a planted keyword (`synthetic_corpus.py`). Runs go through `main([...])`
in this process, `python train_accelerate.py ...` and `accelerate launch ...` in child processes (`training_runs.py`);
the folders they write are loaded in a fresh interpreter that cannot import this package (`fresh_process.py`), as on a
machine that only has the folder.

Elsewhere: data reading (test_data.py), saving folders (test_saving.py), the metric modules (test_metrics.py),
pushing after training (test_hub.py), the examples (test_examples.py).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fresh_process import run_fresh_python
from safetensors.torch import load_file
from tiny_models import save_tiny_encoder, tiny_encoder_config
from training_runs import (
    CHILD_ENV,
    DATA,
    REPO,
    SCRIPT,
    THREADS,
    check_child,
    hoc_args,
    keyword_args,
    keyword_folder,
    read_json,
    run_child,
    train,
    train_capturing_stdout,
)
from transformers import BertForSequenceClassification, BertTokenizer

from label_attention import LabelAttentionForSequenceClassification, train_accelerate
from label_attention.data_label_attention import load_splits, read_label_set

ACCELERATE = Path(sys.executable).with_name("accelerate")
# The reference run: 48 training documents in batches of 4 make 12 optimiser steps per epoch; 3 epochs.
STEPS_PER_EPOCH, EPOCHS = 12, 3


# ---------------------------------------------------------------------------------------------------------------------
# Helpers


def read_log(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "train_log.jsonl").read_text().splitlines()]


def metrics_of(output_dir: Path) -> dict:
    """eval_results.json without the wall-clock times."""
    timings = ("training_seconds", "training_seconds_before_resume")
    return {k: v for k, v in read_json(output_dir / "eval_results.json").items() if k not in timings}


def log_without_times(output_dir: Path) -> list[dict]:
    return [{k: v for k, v in record.items() if k != "elapsed_seconds"} for record in read_log(output_dir)]


def max_weight_difference(file_a: Path, file_b: Path) -> float:
    a, b = load_file(file_a), load_file(file_b)
    assert a.keys() == b.keys()
    return max((a[name].float() - b[name].float()).abs().max().item() for name in a)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# Run by `run_fresh_python`: load each folder through trust_remote_code and report its class and logits on TEXTS.
FRESH_LOAD = """
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

texts = json.loads(os.environ["TEXTS"])
seen = {}
for folder in json.loads(os.environ["FOLDERS"]):
    model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)  # it reads the config first
    with torch.no_grad():
        logits = model(**tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")).logits
    seen[folder] = {"class": type(model).__name__, "module": type(model).__module__, "logits": logits.tolist()}
report(seen)
"""


# ---------------------------------------------------------------------------------------------------------------------
# Fixtures: data folders, and the runs several tests look at (conftest.py: the tiny encoder, small_keywords, hoc_run)


@pytest.fixture(scope="session")
def dropout_free_encoder(tmp_path_factory) -> Path:
    """With `--head linear` (whose classifier dropout is the encoder's), a model without any dropout."""
    return save_tiny_encoder(tmp_path_factory.mktemp("dropout_free_encoder"), dropout=0.0)


@pytest.fixture(scope="session")
def keywords(tmp_path_factory) -> Path:
    """160 / 48 / 48 keyword documents: enough to learn the task."""
    return keyword_folder(tmp_path_factory.mktemp("keywords"), num_train=160, num_eval=48)


def converging_args(data, encoder, output_dir, batch_size=8):
    """20 epochs of 20 steps (at global batch 8): enough for the tiny model, with one-head blocks and the shared scorer
    (the defaults), to find the keywords. With a random encoder, mean-pooled descriptions (the default, for the
    pretrained one) are alike; first-token ones set the labels apart."""
    extra = ["--epochs", 20, "--batch-size", batch_size, "--patience", 20, "--tune-thresholds",
             "--label-pooling", "first"]  # fmt: skip
    return keyword_args(data, encoder, output_dir, *extra)


def reference_args(data, encoder, output_dir, batch_size=4):
    """The run that determinism, kill-and-resume and the 2-process run are compared with. Its learning rate is
    high enough for the validation metrics to improve at every epoch, so that comparing metrics means something."""
    extra = ["--epochs", EPOCHS, "--batch-size", batch_size, "--checkpointing-steps", 1]
    return keyword_args(data, encoder, output_dir, *extra, learning_rate="1e-2")


@pytest.fixture(scope="module")
def mtc5_run(tiny_encoder, tmp_path_factory):
    """`python train_accelerate.py ...` in a child process on a small subset of MTC-5 (single-label), with gradient
    accumulation (3 batches of 8 per epoch: 2 optimiser steps) and the TensorBoard tracker."""
    output_dir = tmp_path_factory.mktemp("mtc5_run")
    args = [
        "--data-dir", DATA / "mtc5", "--encoder", tiny_encoder, "--output-dir", output_dir,
        "--max-train-samples", 24, "--max-eval-samples", 16, "--max-length", 64, "--epochs", 2, "--batch-size", 8,
        "--gradient-accumulation-steps", 2, "--report-to", "tensorboard",
    ]  # fmt: skip
    completed = check_child(run_child([sys.executable, SCRIPT, *args]))
    return output_dir, completed


@pytest.fixture(scope="module")
def linear_run(tiny_encoder, tmp_path_factory):
    """The vanilla baseline: the encoder's own sequence-classification head, same loop; a checkpoint per epoch."""
    output_dir = tmp_path_factory.mktemp("linear_run")
    args = hoc_args(tiny_encoder, output_dir, "--head", "linear", "--checkpointing-steps", "epoch", "--tune-thresholds")
    assert train(args) == 0
    return output_dir


@pytest.fixture(scope="module")
def mean_pooling_run(tiny_encoder, tmp_path_factory):
    """The mean-pooling baseline, with the default decision rule (0.5 for every label)."""
    output_dir = tmp_path_factory.mktemp("mean_pooling_run")
    assert train(hoc_args(tiny_encoder, output_dir, "--head", "mean-pooling")) == 0
    return output_dir


@pytest.fixture(scope="module")
def converged_run(tiny_encoder, keywords, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("converged_run")
    assert train(converging_args(keywords, tiny_encoder, output_dir)) == 0
    return output_dir


@pytest.fixture(scope="module")
def reference_run(tiny_encoder, small_keywords, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("reference_run")
    assert train(reference_args(small_keywords, tiny_encoder, output_dir)) == 0
    return output_dir


# ---------------------------------------------------------------------------------------------------------------------
# End to end


def check_model_folder(output_dir: Path, num_labels: int):
    model_dir = output_dir / "model"
    names = {p.name for p in model_dir.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "README.md"} <= names
    assert {"configuration_label_attention.py", "modeling_label_attention.py"} <= names
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in names), names
    config = read_json(model_dir / "config.json")
    assert config["model_type"] == "label_attention"
    assert config["auto_map"] == {
        "AutoConfig": "configuration_label_attention.LabelAttentionConfig",
        "AutoModel": "modeling_label_attention.LabelAttentionModel",
        "AutoModelForSequenceClassification": "modeling_label_attention.LabelAttentionForSequenceClassification",
    }
    assert len(config["id2label"]) == num_labels
    # Nothing else is left next to the model: no staging folder, no previous copy.
    assert sorted(p.name for p in output_dir.iterdir() if p.name.startswith((".model", "model"))) == ["model"]
    assert read_json(model_dir / "eval_results.json") == read_json(output_dir / "eval_results.json")
    return config


def test_multi_label_run_prints_counts_and_leaves_a_hub_ready_folder(hoc_run):
    output_dir, stdout = hoc_run
    assert (
        "multi_label_classification: 10 labels; train 1303 documents (using the first 32), "
        "validation 183 documents (using the first 16), test 366 documents (using the first 16)"
    ) in stdout
    config = check_model_folder(output_dir, num_labels=10)
    assert config["problem_type"] == "multi_label_classification"
    assert len(config["decision_thresholds"]) == 10
    assert all(0.05 <= t <= 0.95 for t in config["decision_thresholds"])

    results = read_json(output_dir / "eval_results.json")
    assert results["head"] == "label-attention" and results["best_epoch"] == 0
    for split in ("validation", "test"):
        assert 0.0 <= results[split]["micro_f1"] <= 1.0
        assert set(results[split]["per_label_f1"]) == set(config["label2id"])
    (record,) = read_log(output_dir)  # one JSON line per evaluation: one epoch
    assert record["epoch"] == 0 and record["step"] == 4 and record["improved"]
    # The model is kept by the validation micro-F1 it is saved with (tuned thresholds): the log's number is the
    # number in eval_results.json.
    assert record["validation"]["micro_f1"] == results["validation"]["micro_f1"]
    assert "micro_f1_at_0.5" in record["validation"]
    card = (output_dir / "model" / "README.md").read_text()
    assert "| label_scorer | shared |" in card and "| label_attention_heads | 1 |" in card  # the defaults
    assert "| shared_scorer_metric | learnt |" in card


def test_single_label_script_run(mtc5_run):
    output_dir, completed = mtc5_run
    assert (
        "single_label_classification: 5 labels; train 1615 documents (using the first 24), "
        "validation 232 documents (using the first 16), test 463 documents (using the first 16)"
    ) in completed.stdout
    config = check_model_folder(output_dir, num_labels=5)
    assert config["problem_type"] == "single_label_classification"
    assert config.get("decision_thresholds") is None
    results = read_json(output_dir / "eval_results.json")
    for split in ("validation", "test"):
        assert 0.0 <= results[split]["accuracy"] <= 1.0 and "macro_f1" in results[split]
    log = read_log(output_dir)
    assert [(record["epoch"], record["step"]) for record in log] == [(0, 2), (1, 4)]
    best = max(log, key=lambda record: record["validation"]["accuracy"])  # ties: the first epoch, as in training
    assert results["best_epoch"] == best["epoch"]
    assert results["validation"]["accuracy"] == best["validation"]["accuracy"]


def test_tensorboard_tracker_writes_events(mtc5_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    output_dir, _ = mtc5_run
    logging_dir = output_dir / "label-attention"
    (events,) = list(logging_dir.glob("events.out.tfevents.*"))  # the hyper-parameters go to a subfolder
    (hparams,) = list(logging_dir.rglob("hparams.yml"))
    assert "hub_token" not in hparams.read_text() and "max_length: 64" in hparams.read_text()
    accumulator = EventAccumulator(str(events.parent))
    accumulator.Reload()
    tags = set(accumulator.Tags()["scalars"])
    assert {"train_loss", "validation_accuracy"} <= tags
    assert len(accumulator.Scalars("validation_accuracy")) == 2
    assert not any("token" in tag for tag in tags)


def test_linear_head_saves_a_standard_folder(linear_run):
    config = read_json(linear_run / "model" / "config.json")
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert "auto_map" not in config
    assert len(config["decision_thresholds"]) == 10
    assert not list((linear_run / "model").glob("*.py"))
    assert read_json(linear_run / "eval_results.json")["head"] == "linear"
    card = (linear_run / "model" / "README.md").read_text()
    assert "| head | linear |" in card and "label_scorer" not in card and "label_pooling" not in card  # none read
    assert [p.name for p in (linear_run / "checkpoints").iterdir()] == ["step_4"]  # the end of the only epoch


def test_mean_pooling_head_decides_at_one_half_and_keeps_its_predictions(mean_pooling_run):
    """Without --tune-thresholds every label is decided at 0.5, the epoch is kept by that metric, and the validation
    and test logits are kept beside the results for later analyses."""
    config = read_json(mean_pooling_run / "model" / "config.json")
    assert config["architectures"] == ["MeanPoolingForSequenceClassification"]
    assert config.get("decision_thresholds") is None
    results = read_json(mean_pooling_run / "eval_results.json")
    assert results["head"] == "mean-pooling"
    (record,) = read_log(mean_pooling_run)
    assert record["validation"]["micro_f1"] == results["validation"]["micro_f1"]
    assert "micro_f1_at_0.5" not in record["validation"]
    with np.load(mean_pooling_run / "predictions.npz") as predictions:
        assert predictions["validation_logits"].shape == predictions["validation_references"].shape == (16, 10)
        assert predictions["test_logits"].shape == (16, 10)
        predicted = predictions["test_logits"] > 0  # sigmoid(logit) >= 0.5
        gold = predictions["test_references"].astype(bool)
    micro_f1 = 2 * (predicted & gold).sum() / (predicted.sum() + gold.sum())
    assert micro_f1 == pytest.approx(results["test"]["micro_f1"], abs=1e-9)


def test_saved_folders_load_in_a_fresh_process(hoc_run, mtc5_run, linear_run, mean_pooling_run, tmp_path):
    from label_attention.baselines import MeanPoolingForSequenceClassification

    texts = ["Tumour cells evade apoptosis and invade tissue.", "The patient had chest pain."]
    folders = {
        "hoc": hoc_run[0] / "model",
        "mtc5": mtc5_run[0] / "model",
        "linear": linear_run / "model",
        "mean-pooling": mean_pooling_run / "model",
    }
    env = {"TEXTS": json.dumps(texts), "FOLDERS": json.dumps([str(folder) for folder in folders.values()])}
    report = run_fresh_python(FRESH_LOAD, tmp_path, env=env, timeout=300)  # fails with the process's output

    for name, folder in folders.items():
        loaded = report[str(folder)]
        cls = {"linear": BertForSequenceClassification, "mean-pooling": MeanPoolingForSequenceClassification}.get(
            name, LabelAttentionForSequenceClassification
        )
        assert loaded["class"] == cls.__name__
        if name != "linear":  # the remote code of the folder, not this package
            assert loaded["module"].startswith("transformers_modules.")
        # Same weights as the folder holds: identical logits to the model loaded here.
        model = cls.from_pretrained(folder).eval()
        tokenizer = BertTokenizer.from_pretrained(folder)
        with torch.no_grad():
            inputs = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
            expected = model(**inputs).logits
        torch.testing.assert_close(torch.tensor(loaded["logits"]), expected, rtol=1e-5, atol=1e-5)


def test_prediction_helper_uses_the_tuned_thresholds(hoc_run):
    """The saved thresholds decide: predict_from_logits == sigmoid(logits) >= thresholds, and scoring the test
    documents with the helper gives the test metrics of eval_results.json."""
    output_dir, _ = hoc_run
    model = LabelAttentionForSequenceClassification.from_pretrained(output_dir / "model").eval()
    tokenizer = BertTokenizer.from_pretrained(output_dir / "model")
    thresholds = torch.tensor(model.config.decision_thresholds)
    assert len(thresholds) == 10

    splits, _ = load_splits(data_dir=DATA / "hoc")
    test = splits["test"].select(range(16))
    with torch.no_grad():
        inputs = tokenizer(list(test["text"]), padding=True, truncation=True, max_length=64, return_tensors="pt")
        logits = model(**inputs).logits
    decisions = model.predict_from_logits(logits)
    assert torch.equal(decisions, (torch.sigmoid(logits) >= thresholds).long())

    gold = np.asarray(test["labels"], dtype=bool)
    predicted = decisions.numpy().astype(bool)
    true_positives = (predicted & gold).sum()
    micro_f1 = 2 * true_positives / (predicted.sum() + gold.sum())
    assert micro_f1 == pytest.approx(read_json(output_dir / "eval_results.json")["test"]["micro_f1"], abs=1e-9)


def test_tiny_label_attention_model_learns_the_keyword_corpus(converged_run):
    """Each label fires exactly when its keyword is in the text: a tiny label-attention model from a random encoder
    must find the keywords (test micro-F1 >= 0.9 with the thresholds tuned on validation)."""
    results = read_json(converged_run / "eval_results.json")
    assert results["test"]["micro_f1"] >= 0.9, results
    assert results["validation"]["micro_f1"] >= 0.9, results


def test_early_stopping_keeps_the_best_epoch(tiny_encoder, small_keywords, tmp_path):
    """With learning rates of 0 the validation metric never improves after epoch 0: with --patience 1 the run stops
    after epoch 1 of 4 and keeps epoch 0."""
    args = keyword_args(small_keywords, tiny_encoder, tmp_path, "--epochs", 4, "--batch-size", 16, learning_rate="0")
    code, stdout = train_capturing_stdout([*args, "--patience", 1])
    assert code == 0
    assert "No gain for 1 epochs: stopping early." in stdout
    assert [(r["epoch"], r["improved"]) for r in read_log(tmp_path)] == [(0, True), (1, False)]
    assert read_json(tmp_path / "eval_results.json")["best_epoch"] == 0


def test_same_seed_same_metrics(reference_run, tiny_encoder, small_keywords, tmp_path):
    assert train(reference_args(small_keywords, tiny_encoder, tmp_path)) == 0
    assert metrics_of(tmp_path) == metrics_of(reference_run)
    assert log_without_times(tmp_path) == log_without_times(reference_run)
    last = f"checkpoints/step_{EPOCHS * STEPS_PER_EPOCH}/model.safetensors"
    assert max_weight_difference(tmp_path / last, reference_run / last) == 0.0


def test_killed_run_resumes_to_the_uninterrupted_result(reference_run, tiny_encoder, small_keywords, tmp_path):
    """SIGKILL a run as soon as a checkpoint in the middle of its second epoch exists, resume it from 'latest': the
    metrics, the log and the weights are those of the uninterrupted run."""
    output_dir = tmp_path / "out"
    command = [sys.executable, SCRIPT, *reference_args(small_keywords, tiny_encoder, output_dir)]
    checkpoints = output_dir / "checkpoints"
    first_mid_epoch_step = STEPS_PER_EPOCH + 1

    def newest_step():
        steps = [int(p.name.split("_")[1]) for p in checkpoints.glob("step_*")] if checkpoints.exists() else []
        return max(steps, default=0)

    process = subprocess.Popen(
        [str(part) for part in command], cwd=REPO, env=CHILD_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 240
    while newest_step() < first_mid_epoch_step:
        assert process.poll() is None, process.stderr.read().decode()[-6000:]
        assert time.monotonic() < deadline, "no mid-epoch checkpoint appeared"
        time.sleep(0.002)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    assert not (output_dir / "eval_results.json").exists()
    # A save cut short leaves only a staging folder, which 'latest' must never pick.
    (checkpoints / ".step_99.partial").mkdir(exist_ok=True)
    (checkpoints / ".step_99.partial" / "model.safetensors").write_bytes(b"half written")

    resumed = check_child(run_child([*command, "--resume-from-checkpoint", "latest"]))
    resumed_from = [line for line in resumed.stdout.splitlines() if line.startswith("Resuming from ")]
    assert len(resumed_from) == 1, resumed.stdout
    step = int(resumed_from[0].rsplit("step_", 1)[1])
    assert first_mid_epoch_step <= step < 2 * STEPS_PER_EPOCH, f"killed at step {step}, not inside epoch 2"

    assert metrics_of(output_dir) == metrics_of(reference_run)
    assert log_without_times(output_dir) == log_without_times(reference_run)  # each epoch logged once
    # Its times are the whole run's: the sitting before the kill counts up to its last checkpoint.
    results, elapsed = read_json(output_dir / "eval_results.json"), [r["elapsed_seconds"] for r in read_log(output_dir)]
    assert 0 < elapsed[0] <= results["training_seconds_before_resume"] < elapsed[1] <= results["training_seconds"]
    assert max_weight_difference(output_dir / "model/model.safetensors", reference_run / "model/model.safetensors") == 0
    last = f"checkpoints/step_{EPOCHS * STEPS_PER_EPOCH}/model.safetensors"
    assert max_weight_difference(output_dir / last, reference_run / last) == 0.0


def launch_two_processes(args) -> subprocess.CompletedProcess:
    """`accelerate launch --cpu --num_processes 2` starts a single process unless it is given an MPI hostfile;
    torchrun (`--multi_gpu`) with ACCELERATE_USE_CPU=1 starts two, on the gloo backend."""
    launch = [
        ACCELERATE, "launch", "--multi_gpu", "--num_processes", 2, "--num_machines", 1, "--mixed_precision", "no",
        "--dynamo_backend", "no", "--num_cpu_threads_per_process", THREADS, "--main_process_port", free_port(),
        SCRIPT, *args,
    ]  # fmt: skip
    completed = subprocess.run(
        [str(part) for part in launch],
        cwd=REPO,
        env={**CHILD_ENV, "ACCELERATE_USE_CPU": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    check_child(completed)
    assert completed.stdout.count(" labels; train ") == 1  # printed by the main process only
    return completed


def assert_predictions_in_file_order(run_dir: Path, data_dir: Path):
    """predictions.npz holds a row per document in the order of the data files, though the run evaluated them sorted
    by length."""
    splits, _ = load_splits(data_dir)
    with np.load(run_dir / "predictions.npz") as predictions:
        for split in ("validation", "test"):
            assert np.array_equal(predictions[f"{split}_references"], np.array(splits[split]["labels"])), split


def test_predictions_follow_the_data_files_order(reference_run, small_keywords):
    assert_predictions_in_file_order(reference_run, small_keywords)


def test_two_processes_compute_the_one_process_updates(dropout_free_encoder, small_keywords, tmp_path):
    """Without dropout, 2 processes at per-process batch 2 make the updates of 1 process at batch 4.

    The global batches are the same (the seeded sampler shuffles identically on every process and each process takes
    every other batch of 2), DDP averages the two half-batch gradients to the full-batch gradient, and the scheduler
    steps once per process. Only the order of floating-point sums differs, which Adam turns into weight differences
    far below one update (lr 1e-2); a wrong shard, order or schedule would move the weights by several updates.
    `--head linear` on an encoder without dropout is a model without any dropout (the label-attention layers have
    their own, which the CLI keeps at 0.1).
    """
    one, two = tmp_path / "one", tmp_path / "two"
    assert train([*reference_args(small_keywords, dropout_free_encoder, one), "--head", "linear"]) == 0
    launch_two_processes([*reference_args(small_keywords, dropout_free_encoder, two, batch_size=2), "--head", "linear"])

    steps = [STEPS_PER_EPOCH * (epoch + 1) for epoch in range(EPOCHS)]
    assert [r["step"] for r in read_log(one)] == [r["step"] for r in read_log(two)] == steps
    last = f"checkpoints/step_{EPOCHS * STEPS_PER_EPOCH}"
    rng_states = sorted(p.name for p in (two / last).glob("random_states_*"))
    assert rng_states == ["random_states_0.pkl", "random_states_1.pkl"]
    assert max_weight_difference(one / last / "model.safetensors", two / last / "model.safetensors") < 5e-3
    for split in ("validation", "test"):
        for metric in ("micro_f1", "macro_f1", "subset_accuracy"):
            assert read_json(two / "eval_results.json")[split][metric] == pytest.approx(
                read_json(one / "eval_results.json")[split][metric], abs=0.02  # at most one of 64 decisions
            ), (split, metric)
    assert_predictions_in_file_order(two, small_keywords)


def test_two_process_label_attention_run_matches_one_process(converged_run, tiny_encoder, keywords, tmp_path):
    """The label-attention model trained on 2 processes at per-process batch 4 against 1 process at batch 8. Dropout
    masks differ (each process draws them for its own half batch and for the label descriptions), so the runs are not
    bit-identical; both must learn the task (micro-F1 >= 0.9), to metrics within 0.1 of each other: on 48 documents,
    other dropout masks alone move the tuned-threshold micro-F1 of this run by up to 0.11 (seeds 1, 2, 42: 0.89-1.0)."""
    launch_two_processes(converging_args(keywords, tiny_encoder, tmp_path, batch_size=4))
    one, two = read_json(converged_run / "eval_results.json"), read_json(tmp_path / "eval_results.json")
    for split in ("validation", "test"):
        assert two[split]["micro_f1"] >= 0.9 and one[split]["micro_f1"] >= 0.9, split
        for metric in ("micro_f1", "macro_f1"):
            assert two[split][metric] == pytest.approx(one[split][metric], abs=0.1), (split, metric)


def test_launched_processes_that_do_not_form_a_group_are_refused(
    tiny_encoder, small_keywords, tmp_path, capsys, monkeypatch
):
    """torchrun without ACCELERATE_USE_CPU=1 on a CPU machine: N independent runs would write the same folder."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert train(keyword_args(small_keywords, tiny_encoder, tmp_path / "out", "--epochs", 1)) == 2
    assert "2 processes were launched but Accelerate runs them as 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_bf16_mixed_precision(tiny_encoder, small_keywords, tmp_path, monkeypatch):
    """bf16 autocast where the CPU has it natively (pretended here, so that the path runs on any CPU)."""
    monkeypatch.setattr(train_accelerate, "cpu_has_native_bf16", lambda: True)
    args = keyword_args(small_keywords, tiny_encoder, tmp_path, "--epochs", 1, "--batch-size", 8)
    assert train([*args, "--mixed-precision", "bf16"]) == 0
    assert "| mixed_precision | bf16 |" in (tmp_path / "model" / "README.md").read_text()
    results = read_json(tmp_path / "eval_results.json")
    assert 0.0 <= results["test"]["micro_f1"] <= 1.0 and results["mixed_precision"] == "bf16"
    # Weights are kept in float32; only the computation ran in bfloat16.
    dtypes = {tensor.dtype for tensor in load_file(tmp_path / "model" / "model.safetensors").values()}
    assert dtypes <= {torch.float32, torch.int64}


@pytest.mark.parametrize(
    "requested, on_gpu, native_bf16, expected, note",
    [
        ("no", False, False, "no", None),
        ("bf16", False, True, "bf16", None),
        ("bf16", False, False, "no", "no native bf16"),  # emulated: many times slower than fp32
        ("fp16", False, True, "no", "needs a GPU"),  # Accelerate would silently ignore it
        ("fp16", True, False, "fp16", None),
    ],
)
def test_mixed_precision_never_takes_a_slow_or_ignored_path(requested, on_gpu, native_bf16, expected, note, monkeypatch):
    monkeypatch.setattr(train_accelerate, "cpu_has_native_bf16", lambda: native_bf16)
    precision, why = train_accelerate.usable_mixed_precision(requested, on_gpu)
    assert precision == expected
    assert (why is None) if note is None else (note in why)


def test_emulated_bf16_falls_back_to_fp32_with_a_warning(tiny_encoder, small_keywords, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train_accelerate, "cpu_has_native_bf16", lambda: False)
    args = keyword_args(small_keywords, tiny_encoder, tmp_path, "--epochs", 1, "--batch-size", 8)
    assert train([*args, "--mixed-precision", "bf16"]) == 0
    assert "warning: this CPU has no native bf16" in capsys.readouterr().err
    assert "| mixed_precision | no |" in (tmp_path / "model" / "README.md").read_text()
    assert read_json(tmp_path / "eval_results.json")["mixed_precision"] == "no"  # what it trained in, not what was asked


def test_training_batches_group_documents_of_similar_length(tokenizer):
    """On HoC's real lengths at 512 tokens, length-grouped batches pad ~3 % (random batches: ~29 %; sorting the whole
    set, which leaves the batches nothing random, 0.6 %); the order is a function of (seed, epoch) alone, so a resumed
    run replays it, and every document comes once per epoch."""
    splits, _ = load_splits(data_dir=DATA / "hoc")
    texts = list(splits["train"]["text"])
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=512)["input_ids"]]

    def padding_share(order):
        batches = [order[i : i + 16] for i in range(0, len(order), 16)]
        padded = sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)
        return 1 - sum(lengths) / padded

    sampler = train_accelerate.EpochLengthGroupedSampler(lengths, batch_size=16, seed=3)
    sampler.set_epoch(2)
    order = list(sampler)
    assert sorted(order) == list(range(len(lengths)))
    assert padding_share(order) < 0.03
    assert padding_share(list(np.random.default_rng(0).permutation(len(lengths)))) > 0.2
    sampler.set_epoch(1)
    assert list(sampler) != order
    replayed = train_accelerate.EpochLengthGroupedSampler(lengths, batch_size=16, seed=3)
    replayed.set_epoch(2)
    assert list(replayed) == order


def test_the_cls_baselines_pooler_trains_at_the_head_learning_rate():
    model = BertForSequenceClassification(tiny_encoder_config("bert"))
    args = argparse.Namespace(learning_rate=1e-5, head_learning_rate=1e-3, weight_decay=0.01)
    rates = {id(param): group["lr"] for group in train_accelerate.optimizer_groups(model, args) for param in group["params"]}
    by_name = {name: rates[id(param)] for name, param in model.named_parameters()}
    assert by_name["bert.pooler.dense.weight"] == by_name["classifier.weight"] == 1e-3
    assert by_name["bert.encoder.layer.0.attention.self.query.weight"] == by_name["bert.embeddings.word_embeddings.weight"] == 1e-5


@pytest.mark.parametrize("head", ["label-attention", "linear", "mean-pooling"])
def test_encoder_attention_dropout_reaches_the_encoder_of_every_head(tiny_encoder, small_keywords, tmp_path, head):
    label_set = read_label_set(small_keywords / "labels.json")

    def dropouts(*options):
        args = train_accelerate.parse_args(["--data-dir", str(small_keywords), "--output-dir", str(tmp_path),
                                            "--encoder", str(tiny_encoder), "--head", head, *options])  # fmt: skip
        model, _ = train_accelerate.build_model(args, label_set)
        layer = train_accelerate.encoder_of(model).encoder.layer[0]
        return layer.attention.self.dropout.p, layer.output.dropout.p, model.config

    assert dropouts("--encoder-attention-dropout", "0.1")[:2] == (0.1, 0.1)  # the encoder's own
    attention, hidden, config = dropouts()
    assert (attention, hidden) == (0.0, 0.1)  # by default only the attention weights' dropout changes
    encoder_config = config.encoder if head != "linear" else config
    assert encoder_config.attention_probs_dropout_prob == 0.0  # saved with the model


def test_encoder_attention_dropout_is_checked(tiny_encoder, small_keywords, tmp_path, monkeypatch, capsys):
    base = ["--data-dir", str(small_keywords), "--output-dir", str(tmp_path), "--encoder", str(tiny_encoder)]
    with pytest.raises(SystemExit):
        train_accelerate.parse_args([*base, "--encoder-attention-dropout", "1.5"])
    assert "--encoder-attention-dropout" in capsys.readouterr().err
    assert train_accelerate.parse_args(base).encoder_attention_dropout == 0.0  # the default, as it trains
    monkeypatch.setattr(train_accelerate, "ATTENTION_DROPOUT_FIELDS", ("no_such_field",))
    with pytest.raises(SystemExit):
        train_accelerate.parse_args([*base, "--encoder-attention-dropout", "0"])
    assert "the bert encoder's config has none of no_such_field" in capsys.readouterr().err
    # Left out, the default gives way to an encoder that has no such dropout, and says so.
    args = train_accelerate.parse_args(base)
    assert args.encoder_kwargs == {} and args.encoder_attention_dropout is None
    assert "keeps its own attention dropout" in capsys.readouterr().err


@pytest.mark.parametrize("head", ["linear", "mean-pooling"])
def test_label_attention_options_are_refused_for_a_baseline(tiny_encoder, small_keywords, tmp_path, capsys, head):
    """A baseline has no label attention: its options would be ignored without a word, so they are refused."""
    base = ["--data-dir", str(small_keywords), "--output-dir", str(tmp_path), "--encoder", str(tiny_encoder)]
    with pytest.raises(SystemExit):
        train_accelerate.parse_args([*base, "--head", head, "--label-query-centering", "--label-attention-blocks", "2"])
    error = capsys.readouterr().err
    assert f"--label-attention-blocks, --label-query-centering: only for --head label-attention; the {head}" in error
    assert train_accelerate.parse_args([*base, "--head", head, "--label-pooling", "mean"]).head == head  # the default


def test_the_default_scorer_is_shared_with_its_learnt_metric(tiny_encoder, small_keywords, tmp_path, capsys):
    """The default scorer is the shared one with its learnt metric (chosen on validation on HoC and MTC-5);
    `--shared-scorer-metric identity` compares by the encoder's own cosine, `--label-scorer per_label` is the paper's
    scorer, which has no metric to choose."""
    base = ["--data-dir", str(small_keywords), "--output-dir", str(tmp_path), "--encoder", str(tiny_encoder)]
    label_set = read_label_set(small_keywords / "labels.json")
    for extra, scorer, learnt in [
        ([], "shared", True),
        (["--shared-scorer-metric", "identity"], "shared", False),
        (["--label-scorer", "per_label"], "per_label", None),
    ]:
        args = train_accelerate.parse_args([*base, *extra])
        model, _ = train_accelerate.build_model(args, label_set)
        card = train_accelerate.hyperparameters_for_card(args)
        assert model.config.label_scorer == card["label_scorer"] == scorer
        if learnt is None:
            assert not hasattr(model.scorer, "metric") and "shared_scorer_metric" not in card
        else:
            assert model.config.shared_scorer_metric is learnt and (model.scorer.metric is not None) is learnt
            assert card["shared_scorer_metric"] == args.shared_scorer_metric
    for metric in ("identity", "learnt"):  # the default too: given, it is refused as any other value
        with pytest.raises(SystemExit):
            train_accelerate.parse_args([*base, "--label-scorer", "per_label", "--shared-scorer-metric", metric])
        assert "--shared-scorer-metric: only for --label-scorer shared" in capsys.readouterr().err
        with pytest.raises(SystemExit):
            train_accelerate.parse_args([*base, "--head", "linear", "--shared-scorer-metric", metric])
        assert "--shared-scorer-metric: only for --head label-attention" in capsys.readouterr().err
