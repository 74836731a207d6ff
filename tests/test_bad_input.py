"""Bad input and misuse (issue 12): each case gives one clear line naming the argument, file or line and what to do,
with exit code 2 for usage and data errors, before any model or data is loaded where that is possible; or it works
(files with a byte-order mark). A run that trains nothing leaves the output folder as it was.

Nothing here trains for more than a few steps of a tiny model: most cases stop at the argument checks.
"""

import re
import shutil
import sys
from pathlib import Path

import huggingface_hub
import pytest
import torch
from transformers import AutoModelForSequenceClassification, pipeline

from tiny_models import VOCAB_SIZE, build_tiny_model  # tests/ helpers (pytest's pythonpath)
from training_runs import folder_digest, read_json, train, write_data_folder

from label_attention import LabelAttentionForSequenceClassification, explain, hub
from label_attention.data_label_attention import DataError, load_splits
from label_attention.explain import ExplainError, read_jsonl
from label_attention.train_accelerate import main

TASK = "multi_label_classification"
LABELS = {"angiogenesis": "The text mentions angiogenesis.", "apoptosis": "The text mentions apoptosis."}
LONG_TEXT = "Tumours grow new vessels by angiogenesis. " * 40  # about 280 tokens: more than the tiny encoder's 128
DOCUMENTS = [(LONG_TEXT, ["angiogenesis"]), ("Cells die by apoptosis.", ["apoptosis"])] * 4


# ---------------------------------------------------------------------------------------------------------------------
# Helpers


def usage_error(argv, capsys) -> str:
    """The one-line error of a command line that argparse (or `parse_args`' own checks) refuses with exit code 2."""
    with pytest.raises(SystemExit) as exit_info:
        train(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
    return line


def previous_run(output_dir: Path) -> dict[str, str]:
    """An output folder that already holds a model and its results (their content is never read)."""
    (output_dir / "model").mkdir(parents=True)
    for name in ("model/model.safetensors", "model/config.json", "model/README.md", "eval_results.json"):
        (output_dir / name).write_text(f"{name} of an earlier run")
    (output_dir / "train_log.jsonl").write_text('{"epoch": 0}\n')
    return folder_digest(output_dir)


@pytest.fixture
def data(tmp_path) -> Path:
    """A data folder with DOCUMENTS as its train, validation and test splits."""
    splits = {split: DOCUMENTS for split in ("train", "validation", "test")}
    return write_data_folder(tmp_path / "data", TASK, LABELS, splits)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, tokenizer) -> Path:
    """A tiny label-attention model saved with its tokenizer and code, as `from_pretrained` loads it."""
    folder = tmp_path_factory.mktemp("saved") / "model"
    build_tiny_model(tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def truncated_copy(saved_model: Path, folder: Path) -> Path:
    """The saved model with its weights cut short, as by an interrupted copy or download."""
    shutil.copytree(saved_model, folder)
    weights = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    return folder


# ---------------------------------------------------------------------------------------------------------------------
# Training arguments: refused before any data or model is loaded


BAD_ARGUMENTS = {
    "negative learning rate": (["--learning-rate", "-0.001"], "argument --learning-rate: must be a number >= 0"),
    "negative learning rate, exponent": (
        ["--learning-rate", "-1e-3"],
        "argument --learning-rate: must be a number >= 0 (e.g. 5e-5; 0 freezes those weights), got -1e-3",
    ),
    "negative head learning rate": (
        ["--head-learning-rate=-1e-3"], "argument --head-learning-rate: must be a number >= 0"
    ),
    "infinite learning rate": (["--head-learning-rate", "-inf"], "argument --head-learning-rate: must be a number"),
    "learning rate not a number": (["--learning-rate", "fast"], "argument --learning-rate: expected a number"),
    "no epochs": (["--epochs", "0"], "argument --epochs: must be a whole number of at least 1, got 0"),
    "batch size 0": (["--batch-size", "0"], "argument --batch-size: must be a whole number of at least 1"),
    "accumulation 0": (
        ["--gradient-accumulation-steps", "0"], "argument --gradient-accumulation-steps: must be a whole number"
    ),
    "no training documents": (["--max-train-samples", "0"], "argument --max-train-samples: must be a whole number"),
    "negative training documents": (["--max-train-samples", "-5"], "argument --max-train-samples: must be a whole"),
    "no evaluation documents": (["--max-eval-samples", "0"], "argument --max-eval-samples: must be a whole number"),
    "patience 0": (["--patience", "0"], "argument --patience: must be a whole number of at least 1"),
    "fractional length": (["--max-length", "1.5"], "argument --max-length: expected a whole number, got '1.5'"),
    "checkpoint every 0 steps": (["--checkpointing-steps", "0"], "--checkpointing-steps must be a number of steps"),
    "encoder path missing": (["--encoder", "/does/not/exist"], "--encoder /does/not/exist: no such folder; give a"),
    "negative weight decay": (["--weight-decay", "-0.01"], "argument --weight-decay: must be a number >= 0"),
    "warm-up past the end": (["--warmup-ratio", "1.5"], "argument --warmup-ratio: must be a number between 0 and 1"),
    "negative clipping norm": (["--max-grad-norm", "-1"], "argument --max-grad-norm: must be a number >= 0 (0: no"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_ARGUMENTS))
def test_bad_argument_is_refused_up_front(case, data, tiny_encoder, tmp_path, capsys):
    extra, message = BAD_ARGUMENTS[case]
    output_dir = tmp_path / "out"
    line = usage_error(["--data-dir", data, "--encoder", tiny_encoder, "--output-dir", output_dir, *extra], capsys)
    assert message in line
    assert not output_dir.exists()


def test_negative_learning_rate_on_the_command_line(data, tiny_encoder, tmp_path, capsys, monkeypatch):
    """As typed in a shell: `sys.argv`, where argparse alone would take '-1e-3' for an option and say it is missing."""
    argv = ["label-attention-train", "--data-dir", str(data), "--encoder", str(tiny_encoder)]
    monkeypatch.setattr(sys, "argv", [*argv, "--output-dir", str(tmp_path / "out"), "--learning-rate", "-1e-3"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert "argument --learning-rate: must be a number >= 0 (e.g. 5e-5; 0 freezes those weights), got -1e-3" in (
        capsys.readouterr().err
    )


def test_no_epochs_leaves_an_earlier_run_as_it_was(data, tiny_encoder, tmp_path, capsys):
    output_dir = tmp_path / "out"
    before = previous_run(output_dir)
    argv = ["--data-dir", data, "--encoder", tiny_encoder, "--output-dir", output_dir, "--epochs", 0]
    line = usage_error(argv, capsys)
    assert "argument --epochs: must be a whole number of at least 1" in line
    assert folder_digest(output_dir) == before


def test_output_dir_that_is_a_file(data, tiny_encoder, tmp_path, capsys):
    output_file = tmp_path / "results.txt"
    output_file.write_text("mine")
    for output_dir in (output_file, output_file / "run"):
        line = usage_error(["--data-dir", data, "--encoder", tiny_encoder, "--output-dir", output_dir], capsys)
        assert f"--output-dir {output_dir}: {output_file} is a file; give a folder" in line
    assert output_file.read_text() == "mine"


def test_encoder_that_is_not_a_model(data, tmp_path, capsys):
    (tmp_path / "not_a_model").mkdir()
    (tmp_path / "weights.bin").write_bytes(b"\x80")
    for encoder, problem in (
        ("not_a_model", "this folder holds no config.json: it is no saved model"),
        ("weights.bin", "this is a file, not a model folder"),
    ):
        path = tmp_path / encoder
        line = usage_error(["--data-dir", data, "--encoder", path, "--output-dir", tmp_path / "out"], capsys)
        assert f"--encoder {path}: {problem}; give a saved model folder or a Hub id (ORG/NAME)" in line
    assert not (tmp_path / "out").exists()


def test_encoder_hub_id_that_cannot_be_loaded(data, tmp_path, capsys, monkeypatch):
    """Only loading tells whether a Hub id exists: one line, after the data (which is cheap), before any output."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    output_dir = tmp_path / "out"
    assert train(["--data-dir", data, "--encoder", "no-such-org/no-such-model", "--output-dir", output_dir]) == 2
    assert error_line(capsys).startswith("error: --encoder no-such-org/no-such-model: cannot load it: ")
    assert not output_dir.exists()


def test_resume_from_a_missing_or_foreign_folder(data, tiny_encoder, tmp_path, capsys):
    (tmp_path / "not_a_checkpoint").mkdir()
    (tmp_path / "not_a_checkpoint" / "model.safetensors").write_bytes(b"weights")
    for folder, problem in (
        ("missing", "no such folder"),
        ("not_a_checkpoint", "no training checkpoint in this folder"),
    ):
        path = tmp_path / folder
        argv = ["--data-dir", data, "--encoder", tiny_encoder, "--output-dir", tmp_path / "out"]
        line = usage_error([*argv, "--resume-from-checkpoint", path], capsys)
        assert f"--resume-from-checkpoint {path}: {problem}; give OUTPUT_DIR/checkpoints/step_N, or 'latest'" in line
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------------------------
# Training: what only shows once the model is there


def test_damaged_checkpoint_is_reported_and_the_earlier_run_kept(data, tiny_encoder, tmp_path, capsys):
    output_dir = tmp_path / "out"
    (output_dir / "checkpoints" / "step_3").mkdir(parents=True)
    for name in ("model.safetensors", "optimizer.bin", "custom_checkpoint_0.pkl"):
        (output_dir / "checkpoints" / "step_3" / name).write_bytes(b"half written")
    before = previous_run(output_dir)
    argv = ["--data-dir", data, "--encoder", tiny_encoder, "--output-dir", output_dir]
    assert train([*argv, "--resume-from-checkpoint", "latest"]) == 2
    line = error_line(capsys)
    assert line.startswith(f"error: --resume-from-checkpoint: cannot load {output_dir / 'checkpoints' / 'step_3'} (")
    assert "give another checkpoint, or leave the option out to start afresh" in line
    assert folder_digest(output_dir) == before


def test_max_length_beyond_the_encoder(data, tiny_encoder, tmp_path, capsys):
    """The tiny encoder has 128 positions and the long documents about 280 tokens: a baseline's --max-length is
    clamped with a note; label attention reads the documents whole, in windows, and its saved model keeps reading
    that long."""
    argv = ["--data-dir", data, "--encoder", tiny_encoder, "--max-length", 100000, "--epochs", 1, "--batch-size", 8]
    assert train([*argv, "--output-dir", tmp_path / "mean", "--head", "mean-pooling"]) == 0
    assert (
        "warning: --max-length 100000 is more than the encoder's 128 positions: documents are truncated to 128 tokens"
        in capsys.readouterr().err
    )
    assert "| max_length | 128 |" in (tmp_path / "mean" / "model" / "README.md").read_text()

    assert train([*argv, "--output-dir", tmp_path / "attention"]) == 0
    assert "warning" not in capsys.readouterr().err
    model = tmp_path / "attention" / "model"
    assert "| max_length | 100000 |" in (model / "README.md").read_text()
    assert read_json(model / "config.json")["max_document_length"] == 100000
    assert read_json(model / "tokenizer_config.json")["model_max_length"] == 100000


# ---------------------------------------------------------------------------------------------------------------------
# Data files


def test_byte_order_marks_are_accepted(tmp_path):
    """Files saved by editors and spreadsheets that write a UTF-8 byte-order mark read as without it."""
    write_data_folder(tmp_path, TASK, LABELS, {"train": DOCUMENTS}, encoding="utf-8-sig")
    assert all((tmp_path / name).read_bytes().startswith(b"\xef\xbb\xbf") for name in ("labels.json", "train.jsonl"))
    rows = "".join(f"{text},{';'.join(labels)}\n" for text, labels in DOCUMENTS)
    (tmp_path / "validation.csv").write_text("text,labels\n" + rows, encoding="utf-8-sig")
    splits, label_set = load_splits(
        train_file=tmp_path / "train.jsonl",
        validation_file=tmp_path / "validation.csv",
        labels_file=tmp_path / "labels.json",
    )
    assert label_set.names == list(LABELS)
    assert splits["train"]["labels"] == splits["validation"]["labels"] == [[1.0, 0.0], [0.0, 1.0]] * 4
    assert splits["validation"]["text"][1] == "Cells die by apoptosis."
    (tmp_path / "docs.jsonl").write_text('{"text": "Cells die."}\n', encoding="utf-8-sig")
    assert read_jsonl(tmp_path / "docs.jsonl") == (["Cells die."], [None])


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_file_that_is_not_utf8(suffix, tmp_path):
    write_data_folder(tmp_path, TASK, LABELS, {"validation": [("Cells die.", ["apoptosis"])]})
    path = tmp_path / f"train.{suffix}"
    if suffix == "csv":
        path.write_text("text,labels\nCells die,apoptosis\nTumeur nécrosée,apoptosis\n", encoding="latin-1")
    else:
        lines = '{"text": "Cells die.", "labels": []}\n{"text": "Tumeur nécrosée", "labels": []}\n'
        path.write_text(lines, encoding="latin-1")
    expected = f"{path}:3:" if suffix == "csv" else f"{path}:2:"
    with pytest.raises(DataError, match=re.escape(f"{expected} not UTF-8 text (byte 0xe9): save the file as UTF-8")):
        load_splits(
            train_file=path, validation_file=tmp_path / "validation.jsonl", labels_file=tmp_path / "labels.json"
        )


def test_nested_label_lists(data, tiny_encoder, tmp_path, capsys):
    write_data_folder(data, TASK, LABELS, {"train": [("Cells die.", []), ("x", [["apoptosis"]])]})  # train.jsonl anew
    with pytest.raises(DataError, match=re.escape(f"{data / 'train.jsonl'}:2: 'labels' must be a list of label names")):
        load_splits(data_dir=data)
    # Through the training command: exit code 2, one line, nothing written.
    output_dir = tmp_path / "out"
    assert train(["--data-dir", data, "--encoder", tiny_encoder, "--output-dir", output_dir]) == 2
    line = error_line(capsys)
    assert line.startswith(f"error: {data / 'train.jsonl'}:2: 'labels' must be a list of label names") and '[["' in line
    assert not output_dir.exists()


# ---------------------------------------------------------------------------------------------------------------------
# Inference


@pytest.mark.parametrize("bad_id", [VOCAB_SIZE, -1])
def test_token_ids_outside_the_vocabulary(bad_id, make_model):
    model = make_model()
    message = rf"input_ids must be token ids in \[0, {VOCAB_SIZE}\), the encoder's vocabulary; got ids from"
    with pytest.raises(ValueError, match=message):
        model(input_ids=torch.tensor([[101, bad_id, 102]]))


@pytest.mark.parametrize("shape", [(0, 5), (2, 0)])
def test_empty_input(shape, make_model):
    with pytest.raises(ValueError, match=re.escape(f"input_ids are empty (shape {shape}): pass at least one")):
        make_model()(input_ids=torch.zeros(shape, dtype=torch.long))


def test_push_refuses_truncated_weights(saved_model, tmp_path, capsys):
    """Only the header was checked: a file cut short after it went up. Now every tensor is read."""
    hub.check_model_folder(saved_model)  # the whole file reads
    folder = truncated_copy(saved_model, tmp_path / "model")
    with pytest.raises(hub.HubPushError, match="model.safetensors is not a valid safetensors file") as error:
        hub.check_model_folder(folder)
    assert "cut short; save the model again" in str(error.value)
    assert hub.main([str(folder), "--hub-model-id", "test-org/tiny", "--hub-token", "hf_x"]) == 1
    err = capsys.readouterr().err
    assert "model.safetensors is not a valid safetensors file" in err and "Nothing was uploaded" in err
    assert "Traceback" not in err


def test_loading_truncated_weights_names_the_file(saved_model, tmp_path):
    """from_pretrained, with the class or through the Auto classes and pipeline (remote code), names the damaged file."""
    folder = truncated_copy(saved_model, tmp_path / "model")
    expected = re.escape(f"{folder / 'model.safetensors'} cannot be read (")
    with pytest.raises(OSError, match=expected):
        LabelAttentionForSequenceClassification.from_pretrained(folder)
    with pytest.raises(OSError, match=expected):
        AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)
    with pytest.raises(ValueError, match=expected):  # the pipeline quotes the error in its own
        pipeline("text-classification", model=str(folder), trust_remote_code=True)


def test_explain_names_a_truncated_weights_file(saved_model, tmp_path, capsys):
    folder = truncated_copy(saved_model, tmp_path / "model")
    with pytest.raises(ExplainError, match=re.escape(f"{folder / 'model.safetensors'} cannot be read (")):
        explain.load(folder)
    assert explain.main(["--model", str(folder), "Cells die."]) == 2
    err = capsys.readouterr().err
    assert f"{folder / 'model.safetensors'} cannot be read" in err and "damaged or cut short" in err
    assert "Traceback" not in err


def test_explain_checks_where_it_writes_before_the_model_runs(saved_model, tmp_path, capsys, monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the output path was checked")

    monkeypatch.setattr(explain, "load", no_loading)
    missing = tmp_path / "missing" / "dir"
    for option, path in (("--output", missing / "report.html"), ("--heatmap", missing / "map.png")):
        assert explain.main(["--model", str(saved_model), "Cells die.", option, str(path)]) == 2
        err = capsys.readouterr().err
        assert f"error: {option} {path}: the folder {missing} does not exist" in err and "create it first" in err
    assert explain.main(["--model", str(saved_model), "Cells die.", "--output", str(tmp_path)]) == 2
    assert f"error: --output {tmp_path} is a folder: give a file name in it." in capsys.readouterr().err


def test_model_options_that_do_not_fit_the_encoder_are_one_error_line(data, tiny_encoder, tmp_path, capsys):
    """The tiny encoder is 32 wide: 5 label-attention heads cannot split it."""
    argv = ["--data-dir", data, "--encoder", tiny_encoder, "--output-dir", tmp_path / "out", "--epochs", 1]
    assert train([*argv, "--label-attention-heads", 5]) == 2
    line = error_line(capsys)
    assert line.startswith("error: cannot build the label-attention model with these options: ")
    assert "hidden size (32) is not divisible by label_attention_heads (5)" in line
