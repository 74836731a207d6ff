"""Runs of the training entry point in tests, the data folders they read and the arguments they take.

A run goes through `train(argv)` (`main(argv)` in this process) or through a child process (`run_child`, e.g.
`[sys.executable, SCRIPT, *argv]`), which `check_child` requires to succeed. Every run uses one thread per process:
runs are compared bit for bit, which holds at equal thread counts only (a reduction is split by thread).

Data folders are written in the documented format (`labels.json` and one JSON-lines file per split) by
`write_data_folder`, or from the synthetic keyword corpus (`synthetic_corpus.py`) by `keyword_folder`.
`folder_digest` fingerprints what a run left in a folder, to check that a refused or failed run changed nothing.
"""

import contextlib
import hashlib
import io
import json
import os
import subprocess
from pathlib import Path

import torch
from accelerate.state import AcceleratorState, GradientState
from synthetic_corpus import make_corpus

from label_attention.train_accelerate import main

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"  # the project's data lives next to the repository, never inside it
SCRIPT = REPO / "train_accelerate.py"
THREADS = 1
CHILD_ENV = {
    **os.environ,
    "OMP_NUM_THREADS": str(THREADS),
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",
}


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


def run_child(command, timeout=300, cwd=REPO, env=CHILD_ENV) -> subprocess.CompletedProcess:
    """`command` in a child process; `env` replaces `CHILD_ENV` for a child that must see another environment."""
    return subprocess.run(
        [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def check_child(completed: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    output = f"{completed.stdout[-3000:]}\n{completed.stderr[-6000:]}"
    assert completed.returncode == 0, f"exit code {completed.returncode}\n{output}"
    return completed


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def folder_digest(folder: Path) -> dict[str, str]:
    """Every file under `folder`, by its path relative to it (`a/b.txt`), with the sha256 of its bytes."""
    folder = Path(folder)
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def write_data_folder(
    folder: Path, task: str, labels: dict[str, str], splits: dict[str, list], encoding: str = "utf-8"
) -> Path:
    """A data folder in the documented format; `splits` maps a split name to `(text, [label names])` pairs. The files
    are written in `encoding` (e.g. "utf-8-sig": with a byte-order mark, as some editors save them)."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"task": task, "labels": [{"name": name, "description": text} for name, text in labels.items()]}
    (folder / "labels.json").write_text(json.dumps(spec, indent=2), encoding=encoding)
    for split, documents in splits.items():
        lines = [json.dumps({"text": text, "labels": names}) for text, names in documents]
        (folder / f"{split}.jsonl").write_text("".join(line + "\n" for line in lines), encoding=encoding)
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


def import_benchmark(name: str, monkeypatch):
    """The script `benchmarks/<name>.py` (on pytest's pythonpath) as a module, its measurements taken in this
    process (a smoke test checks that it runs and writes its tables, not what it measures)."""
    import importlib

    speed = importlib.import_module("speed")
    script = importlib.import_module(name)
    monkeypatch.setattr(script, "measure_in_subprocess", lambda memory_limit_gib=None, **kwargs: speed.measure(**kwargs))
    return script
