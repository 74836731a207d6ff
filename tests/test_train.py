"""End-to-end tests of the Accelerate training entry point `train_accelerate.py` and of its data reading.

Every run fine-tunes a tiny, randomly initialised BERT (hidden size 32, 2 layers) that reads the bundled
all-MiniLM-L6-v2 tokenizer, on a few dozen documents: small subsets of the shared HoC / MTC-5 data, or a synthetic
corpus in which each label is triggered by a planted keyword (`synthetic_corpus.py`). Runs go through `main([...])`
in this process, `python train_accelerate.py ...` and `accelerate launch ...` in child processes; the folders they
write are loaded in a fresh interpreter that cannot import this package, as on a machine that only has the folder.
"""

import contextlib
import csv
import hashlib
import io
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
from accelerate.state import AcceleratorState, GradientState
from safetensors.torch import load_file
from transformers import BertForSequenceClassification, BertTokenizer

TESTS_DIR = Path(__file__).resolve().parent  # conftest.py puts it on sys.path for the helper modules

from fake_hub import FakeHub  # noqa: E402
from synthetic_corpus import make_corpus  # noqa: E402
from tiny_models import save_tiny_encoder  # noqa: E402

from label_attention import LabelAttentionForSequenceClassification  # noqa: E402
from label_attention.data_label_attention import DataError, load_splits  # noqa: E402
from label_attention import train_accelerate  # noqa: E402
from label_attention.train_accelerate import main, replace_folder, save_model_folder  # noqa: E402

REPO = TESTS_DIR.parent
DATA = REPO.parent / "shared" / "data"  # the project's data lives next to the repository, never inside it
SCRIPT = REPO / "train_accelerate.py"
ACCELERATE = Path(sys.executable).with_name("accelerate")
# Runs are compared bit for bit, which holds at equal thread counts only (a reduction is split by thread): every run,
# here or in a child process, uses one thread per process.
THREADS = 1
CHILD_ENV = {
    **os.environ,
    "OMP_NUM_THREADS": str(THREADS),
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",
}
# The reference run: 48 training documents in batches of 4 make 12 optimiser steps per epoch; 3 epochs.
STEPS_PER_EPOCH, EPOCHS = 12, 3


# ---------------------------------------------------------------------------------------------------------------------
# Helpers


def train(argv) -> int:
    """`main(argv)` in this process. Accelerate keeps its state in process-wide singletons; a test suite that starts
    several runs in one process resets them in between, as Accelerate's own tests do."""
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        return main([str(arg) for arg in argv])
    finally:
        torch.set_num_threads(threads)
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()


def train_capturing_stdout(argv) -> tuple[int, str]:
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = train(argv)
    return code, stdout.getvalue()


def run_child(command, timeout=300, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(part) for part in command], cwd=cwd, env=CHILD_ENV, capture_output=True, text=True, timeout=timeout
    )


def check_child(completed: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    output = f"{completed.stdout[-3000:]}\n{completed.stderr[-6000:]}"
    assert completed.returncode == 0, f"exit code {completed.returncode}\n{output}"
    return completed


def write_data_folder(folder: Path, task: str, labels: dict[str, str], splits: dict[str, list]) -> Path:
    """A data folder in the documented format; `splits` maps a split name to `(text, [label names])` pairs."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"task": task, "labels": [{"name": name, "description": text} for name, text in labels.items()]}
    (folder / "labels.json").write_text(json.dumps(spec, indent=2))
    for split, documents in splits.items():
        lines = [json.dumps({"text": text, "labels": names}) for text, names in documents]
        (folder / f"{split}.jsonl").write_text("".join(line + "\n" for line in lines))
    return folder


def keyword_documents(num_docs: int, seed: int) -> tuple[list, dict[str, str]]:
    corpus = make_corpus(num_docs, num_labels=4, seed=seed)
    documents = [(text, [corpus.label_names[i] for i in ids]) for text, ids in zip(corpus.texts, corpus.labels)]
    return documents, dict(zip(corpus.label_names, corpus.label_descriptions))


def keyword_folder(folder: Path, num_train: int, num_eval: int) -> Path:
    train_docs, labels = keyword_documents(num_train, seed=0)
    validation_docs, _ = keyword_documents(num_eval, seed=1)
    test_docs, _ = keyword_documents(num_eval, seed=2)
    splits = {"train": train_docs, "validation": validation_docs, "test": test_docs}
    return write_data_folder(folder, "multi_label_classification", labels, splits)


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def read_log(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "train_log.jsonl").read_text().splitlines()]


def metrics_of(output_dir: Path) -> dict:
    """eval_results.json without the wall-clock time."""
    return {k: v for k, v in read_json(output_dir / "eval_results.json").items() if k != "training_seconds"}


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


def folder_digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


# A fresh interpreter: cwd outside the repository, the repository off sys.path, any import of `label_attention` an
# error (the package is installed editable here), remote code cached in a temporary HF_MODULES_CACHE.
FRESH_LOAD = r"""
import json, os, sys
repo = os.path.realpath(os.environ["REPO"])
sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.getcwd()) != repo]


class BlockLabelAttention:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "label_attention":
            raise ImportError("the fresh process must not import the label_attention package")


sys.meta_path.insert(0, BlockLabelAttention())
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

texts = json.loads(os.environ["TEXTS"])
report = {}
for folder in sys.argv[2:]:
    model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)  # it reads the config first
    with torch.no_grad():
        logits = model(**tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")).logits
    report[folder] = {"class": type(model).__name__, "module": type(model).__module__, "logits": logits.tolist()}
json.dump(report, open(sys.argv[1], "w"))
"""


# ---------------------------------------------------------------------------------------------------------------------
# Fixtures: a tiny encoder, data folders, and the runs several tests look at


@pytest.fixture(scope="session")
def dropout_free_encoder(tmp_path_factory) -> Path:
    """With `--head linear` (whose classifier dropout is the encoder's), a model without any dropout."""
    return save_tiny_encoder(tmp_path_factory.mktemp("dropout_free_encoder"), dropout=0.0)


@pytest.fixture(scope="session")
def small_keywords(tmp_path_factory) -> Path:
    """48 / 16 / 16 keyword documents."""
    return keyword_folder(tmp_path_factory.mktemp("small_keywords"), num_train=48, num_eval=16)


@pytest.fixture(scope="session")
def keywords(tmp_path_factory) -> Path:
    """160 / 48 / 48 keyword documents: enough to learn the task."""
    return keyword_folder(tmp_path_factory.mktemp("keywords"), num_train=160, num_eval=48)


def hoc_args(encoder, output_dir, *extra):
    return [
        "--data-dir", DATA / "hoc", "--encoder", encoder, "--output-dir", output_dir,
        "--max-train-samples", 32, "--max-eval-samples", 16, "--max-length", 64, "--epochs", 1, "--batch-size", 8,
        *extra,
    ]  # fmt: skip


def keyword_args(data, encoder, output_dir, *extra, learning_rate="3e-3"):
    return [
        "--data-dir", data, "--encoder", encoder, "--output-dir", output_dir, "--max-length", 32,
        "--learning-rate", learning_rate, "--head-learning-rate", learning_rate, "--warmup-ratio", 0, *extra,
    ]  # fmt: skip


def converging_args(data, encoder, output_dir, batch_size=8):
    """5 epochs of 20 steps (at global batch 8): enough for the tiny model to find the keywords. With a random encoder,
    mean-pooled descriptions (the default, for the pretrained one) are alike; first-token ones set the labels apart."""
    extra = ["--epochs", 5, "--batch-size", batch_size, "--patience", 5, "--tune-thresholds", "--label-pooling", "first"]
    return keyword_args(data, encoder, output_dir, *extra)


def reference_args(data, encoder, output_dir, batch_size=4):
    """The run that determinism, kill-and-resume and the 2-process run are compared with. Its learning rate is
    high enough for the validation metrics to improve at every epoch, so that comparing metrics means something."""
    extra = ["--epochs", EPOCHS, "--batch-size", batch_size, "--checkpointing-steps", 1]
    return keyword_args(data, encoder, output_dir, *extra, learning_rate="1e-2")


@pytest.fixture(scope="module")
def hoc_run(tiny_encoder, tmp_path_factory):
    """`main([...])` in this process on a small subset of HoC (multi-label)."""
    output_dir = tmp_path_factory.mktemp("hoc_run")
    code, stdout = train_capturing_stdout(hoc_args(tiny_encoder, output_dir, "--tune-thresholds"))
    assert code == 0, stdout
    return output_dir, stdout


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
    (tmp_path / "load.py").write_text(FRESH_LOAD)
    env = {"REPO": str(REPO), "TEXTS": json.dumps(texts), "HF_MODULES_CACHE": str(tmp_path / "modules")}
    completed = subprocess.run(
        [sys.executable, "load.py", "report.json", *folders.values()],
        cwd=tmp_path,
        env={**CHILD_ENV, **env, "HF_HOME": str(tmp_path / "hf_home")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-6000:]
    report = read_json(tmp_path / "report.json")

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

    splits, label_set = load_splits(data_dir=DATA / "hoc")
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


def test_two_process_label_attention_run_matches_one_process(converged_run, tiny_encoder, keywords, tmp_path):
    """The label-attention model trained on 2 processes at per-process batch 4 against 1 process at batch 8. Dropout
    masks differ (each process draws them for its own half batch and for the label descriptions), so the runs are not
    bit-identical; both must learn the task, to test metrics within 0.05 of each other."""
    launch_two_processes(converging_args(keywords, tiny_encoder, tmp_path, batch_size=4))
    one, two = read_json(converged_run / "eval_results.json"), read_json(tmp_path / "eval_results.json")
    for split in ("validation", "test"):
        assert two[split]["micro_f1"] >= 0.9
        for metric in ("micro_f1", "macro_f1"):
            assert two[split][metric] == pytest.approx(one[split][metric], abs=0.05), (split, metric)


def test_launched_processes_that_do_not_form_a_group_are_refused(
    tiny_encoder, small_keywords, tmp_path, capsys, monkeypatch
):
    """torchrun without ACCELERATE_USE_CPU=1 on a CPU machine: N independent runs would write the same folder."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert train(keyword_args(small_keywords, tiny_encoder, tmp_path / "out", "--epochs", 1)) == 2
    assert "2 processes were launched but Accelerate runs them as 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_csv_files(tiny_encoder, tmp_path):
    documents, labels = keyword_documents(16, seed=3)
    for split, rows in (("train", documents[:12]), ("validation", documents[12:])):
        with (tmp_path / f"{split}.csv").open("w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["text", "labels"])
            writer.writerows((text, ";".join(names)) for text, names in rows)
    spec = {"task": "multi_label_classification", "labels": [{"name": n, "description": d} for n, d in labels.items()]}
    (tmp_path / "labels.json").write_text(json.dumps(spec))
    output_dir = tmp_path / "out"
    args = [
        "--train-file", tmp_path / "train.csv", "--validation-file", tmp_path / "validation.csv",
        "--labels-file", tmp_path / "labels.json", "--encoder", tiny_encoder, "--output-dir", output_dir,
        "--max-length", 32, "--epochs", 1, "--batch-size", 4,
    ]  # fmt: skip
    code, stdout = train_capturing_stdout(args)
    assert code == 0
    assert "multi_label_classification: 4 labels; train 12 documents, validation 4 documents" in stdout
    results = read_json(output_dir / "eval_results.json")
    assert "validation" in results and "test" not in results


def test_bf16_mixed_precision(tiny_encoder, small_keywords, tmp_path, monkeypatch):
    """bf16 autocast where the CPU has it natively (pretended here, so that the path runs on any CPU)."""
    monkeypatch.setattr(train_accelerate, "cpu_has_native_bf16", lambda: True)
    args = keyword_args(small_keywords, tiny_encoder, tmp_path, "--epochs", 1, "--batch-size", 8)
    assert train([*args, "--mixed-precision", "bf16"]) == 0
    assert "| mixed_precision | bf16 |" in (tmp_path / "model" / "README.md").read_text()
    results = read_json(tmp_path / "eval_results.json")
    assert 0.0 <= results["test"]["micro_f1"] <= 1.0
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


def test_training_batches_group_documents_of_similar_length():
    """On HoC's real lengths at 512 tokens, length-grouped batches pad ~3 % (random batches: ~29 %; sorting the whole
    set, which leaves the batches nothing random, 0.6 %); the order is a function of (seed, epoch) alone, so a resumed
    run replays it, and every document comes once per epoch."""
    from transformers import AutoTokenizer

    from tiny_models import MINILM_PATH

    splits, _ = load_splits(data_dir=DATA / "hoc")
    tokenizer = AutoTokenizer.from_pretrained(MINILM_PATH)
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


# ---------------------------------------------------------------------------------------------------------------------
# Saving never leaves a half-written folder in place of a good one


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


# ---------------------------------------------------------------------------------------------------------------------
# Bad data: exit code 2 and one line naming the file and the line


LABELS = {"angiogenesis": "The text mentions angiogenesis.", "apoptosis": "The text mentions apoptosis."}
GOOD = ("Tumours grow new vessels by angiogenesis.", ["angiogenesis"])


def jsonl(*records) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def good_lines(n=2) -> list[str]:
    return [json.dumps({"text": GOOD[0], "labels": GOOD[1]})] * n


# case: (file, its content, line of the problem, what the message says)
BAD_DATA = {
    "unknown label": ("train.jsonl", jsonl(*good_lines(), {"text": "x", "labels": ["necrosis"]}), 3, "unknown label"),
    "missing text": ("train.jsonl", jsonl(*good_lines(1), {"labels": ["apoptosis"]}), 2, "missing or empty 'text'"),
    "empty text": ("validation.jsonl", jsonl(*good_lines(), {"text": " ", "labels": []}), 3, "missing or empty 'text'"),
    "missing labels": ("test.jsonl", jsonl({"text": "no labels key"}), 1, "'labels' must be a list"),
    "malformed line": ("train.jsonl", jsonl(*good_lines(3), '{"text": "cut short", "labels": ['), 4, "malformed JSON"),
    "not an object": ("train.jsonl", jsonl(*good_lines(1), '["text", "labels"]'), 2, "expected a JSON object"),
}  # fmt: skip


def bad_data_folder(folder: Path, task="multi_label_classification") -> Path:
    documents = [GOOD] * 3
    return write_data_folder(folder, task, LABELS, {"train": documents, "validation": documents, "test": documents})


def check_data_error(tiny_encoder, data, capsys, expected_where, expected_message, extra_args=()):
    output_dir = data.parent / "out"
    args = ["--encoder", tiny_encoder, "--output-dir", output_dir, *extra_args]
    if not extra_args:
        args += ["--data-dir", data]
    assert train(args) == 2
    captured = capsys.readouterr()
    (line,) = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert line.startswith(f"error: {expected_where}"), line
    assert expected_message in line
    assert "Traceback" not in captured.err + captured.out
    assert not output_dir.exists()  # a run that cannot start writes nothing


@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_bad_jsonl_line(case, tiny_encoder, tmp_path, capsys):
    file_name, content, line_number, message = BAD_DATA[case]
    data = bad_data_folder(tmp_path / "data")
    (data / file_name).write_text(content)
    check_data_error(tiny_encoder, data, capsys, f"{data / file_name}:{line_number}:", message)


def test_single_label_line_with_two_labels(tiny_encoder, tmp_path, capsys):
    data = bad_data_folder(tmp_path / "data", task="single_label_classification")
    (data / "train.jsonl").write_text(jsonl(*good_lines(), {"text": "both", "labels": ["angiogenesis", "apoptosis"]}))
    check_data_error(tiny_encoder, data, capsys, f"{data / 'train.jsonl'}:3:", "exactly one label, got 2")


def test_label_without_description(tiny_encoder, tmp_path, capsys):
    data = bad_data_folder(tmp_path / "data")
    spec = read_json(data / "labels.json")
    del spec["labels"][1]["description"]
    (data / "labels.json").write_text(json.dumps(spec, indent=2))
    # indent=2: line 1 '{', 2 task, 3 '"labels": [', 4 the first label's '{', ..., 8 the second label's '{'.
    assert (data / "labels.json").read_text().splitlines()[7].strip() == "{"
    check_data_error(tiny_encoder, data, capsys, f"{data / 'labels.json'}:8:", "label 'apoptosis' has no description")


def test_empty_split(tiny_encoder, tmp_path, capsys):
    data = bad_data_folder(tmp_path / "data")
    (data / "validation.jsonl").write_text("\n")
    check_data_error(tiny_encoder, data, capsys, f"{data / 'validation.jsonl'}:", "no documents (empty split)")


def test_bad_csv_line(tiny_encoder, tmp_path, capsys):
    data = bad_data_folder(tmp_path / "data")
    (data / "train.csv").write_text("text,labels\nabout angiogenesis,angiogenesis\nabout both,angiogenesis;necrosis\n")
    files = ["--train-file", data / "train.csv", "--validation-file", data / "validation.jsonl"]
    files += ["--labels-file", data / "labels.json"]
    check_data_error(tiny_encoder, data, capsys, f"{data / 'train.csv'}:3:", "unknown label 'necrosis'", files)


def test_bad_data_exit_code_of_the_script(tiny_encoder, tmp_path):
    """Through the script: exit status 2, one line on stderr, no traceback."""
    data = bad_data_folder(tmp_path / "data")
    (data / "test.jsonl").write_text(jsonl(*good_lines(), {"text": "", "labels": []}))
    args = ["--data-dir", data, "--encoder", tiny_encoder, "--output-dir", tmp_path / "out"]
    completed = run_child([sys.executable, SCRIPT, *args])
    assert completed.returncode == 2
    assert f"error: {data / 'test.jsonl'}:3: missing or empty 'text'" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_load_splits_reports_every_problem_as_data_error(tmp_path):
    data = bad_data_folder(tmp_path / "data")
    (data / "labels.json").write_text('{"task": "multi_label_classification",\n "labels": [}')
    with pytest.raises(DataError, match=rf"{data / 'labels.json'}:2: not valid JSON"):
        load_splits(data_dir=data)


# ---------------------------------------------------------------------------------------------------------------------
# The shipped metric modules, on cases worked out by hand


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


# ---------------------------------------------------------------------------------------------------------------------
# Pushing at the end of a run (to a loopback stand-in of the Hub: huggingface_hub reads HF_ENDPOINT at import time,
# so the run is a child process)


def train_and_push(args, tmp_path, **env_overrides) -> subprocess.CompletedProcess:
    """The script, in a child process, with no token but those given and no stored login."""
    env = {k: v for k, v in CHILD_ENV.items() if k != "HF_TOKEN"}
    env.update({"HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf_home"), **env_overrides})
    command = [sys.executable, REPO / "train_accelerate.py", *args, "--push-to-hub", "--hub-model-id", "test-org/kw"]
    return subprocess.run(
        [str(part) for part in command], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def test_push_to_hub_uploads_exactly_the_tested_folder(tiny_encoder, small_keywords, tmp_path):
    output_dir = tmp_path / "pushed"
    args = keyword_args(small_keywords, tiny_encoder, output_dir, "--epochs", 1, "--batch-size", 8)
    with FakeHub() as fake:
        completed = train_and_push(args, tmp_path, HF_ENDPOINT=fake.url, HF_TOKEN="hf_fake_token")
    check_child(completed)
    assert "Pushed to" in completed.stdout
    model_dir = output_dir / "model"
    local_files = {p.relative_to(model_dir).as_posix(): p.read_bytes() for p in model_dir.rglob("*") if p.is_file()}
    assert len(fake.commits) == 1
    assert fake.committed_files(fake.commits[0]) == local_files
    assert "model.safetensors" in local_files and not [name for name in local_files if name.endswith((".bin", ".pkl"))]
    assert "test-org/kw" in local_files["README.md"].decode()


def test_push_without_a_token_fails_before_training(tiny_encoder, small_keywords, tmp_path):
    output_dir = tmp_path / "not_pushed"
    args = keyword_args(small_keywords, tiny_encoder, output_dir, "--epochs", 1)
    started = time.time()
    completed = train_and_push(args, tmp_path)
    assert completed.returncode == 2
    assert "token" in completed.stderr and "Traceback" not in completed.stderr
    assert not (output_dir / "model").exists()
    assert time.time() - started < 60


def test_example_classifies_an_abstract_with_the_saved_folder(hoc_run):
    """The last step of the README's main command: `pipeline(..., trust_remote_code=True, top_k=None)`."""
    output_dir, _ = hoc_run
    completed = check_child(run_child([sys.executable, REPO / "examples" / "classify_abstract.py", output_dir / "model"]))
    score_lines = [line.split(maxsplit=1) for line in completed.stdout.splitlines() if line.startswith("  ")]
    labels = json.loads((DATA / "hoc" / "labels.json").read_text())["labels"]
    assert sorted(name for _, name in score_lines) == sorted(label["name"] for label in labels)
    assert all(0.0 <= float(score) <= 1.0 for score, _ in score_lines)
    assert "Gold labels:" in completed.stdout
