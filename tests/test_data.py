"""Data reading of the training entry point: CSV files, and bad data. A data error gives exit code 2 and one line
naming the file and the line, and a run that cannot start writes nothing."""

import csv
import json
import sys
from pathlib import Path

import pytest
from training_runs import (
    SCRIPT,
    keyword_documents,
    read_json,
    run_child,
    train,
    train_capturing_stdout,
    write_data_folder,
)

from label_attention.data_label_attention import DataError, load_splits


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
    where = f"{data / 'labels.json'}: labels[1]:"  # the entry, counted from 0 as in JSON paths
    check_data_error(tiny_encoder, data, capsys, where, "label 'apoptosis' has no description")


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
# Data sets that `datasets.load_dataset` reads (`--dataset-name`): a folder of parquet files stands in for the Hub, with
# other column names and labels stored as class ids


def parquet_dataset(folder: Path, splits: dict[str, list], class_names: list[str]) -> Path:
    """`splits` maps a split to `(text, [label names])` pairs, written as `abstract` and `hallmarks` (class ids of a
    `ClassLabel` whose names are `class_names`)."""
    from datasets import ClassLabel, Dataset, Features, List, Value

    features = Features({"abstract": Value("string"), "hallmarks": List(ClassLabel(names=class_names))})
    folder.mkdir(parents=True)
    for split, documents in splits.items():
        rows = {
            "abstract": [text for text, _ in documents],
            "hallmarks": [[class_names.index(name) for name in names] for _, names in documents],
        }
        Dataset.from_dict(rows, features=features).to_parquet(folder / f"{split}.parquet")
    return folder


def labels_file(path: Path, labels: dict[str, str], task="multi_label_classification") -> Path:
    spec = {"task": task, "labels": [{"name": name, "description": text} for name, text in labels.items()]}
    path.write_text(json.dumps(spec))
    return path


def test_dataset_folder_with_other_columns_and_class_ids_trains(tiny_encoder, tmp_path):
    documents, labels = keyword_documents(32, seed=3)
    # The data set numbers its classes in another order than the labels file: ids are read through their names.
    dataset = parquet_dataset(tmp_path / "hallmarks", {"train": documents[:24], "test": documents[24:]},
                              class_names=sorted(labels, reverse=True))  # fmt: skip
    output_dir = tmp_path / "out"
    args = [
        "--dataset-name", dataset, "--text-column", "abstract", "--label-column", "hallmarks",
        "--validation-split-percentage", 25, "--labels-file", labels_file(tmp_path / "labels.json", labels),
        "--encoder", tiny_encoder, "--output-dir", output_dir, "--max-length", 32, "--epochs", 1, "--batch-size", 4,
    ]  # fmt: skip
    code, stdout = train_capturing_stdout(args)
    assert code == 0
    assert "has no validation split: 25% of train (seed 42) is held out as validation" in stdout
    assert "4 labels; train 18 documents, validation 6 documents, test 8 documents" in stdout
    assert set(read_json(output_dir / "eval_results.json")) >= {"validation", "test"}


def test_dataset_labels_as_names_ids_or_class_labels(tmp_path):
    from datasets import Dataset

    from label_attention.data_label_attention import LabelSet, load_hub_splits

    documents, labels = keyword_documents(12, seed=4)
    label_set = LabelSet("multi_label_classification", list(labels), list(labels.values()))
    expected = [[1.0 if name in names else 0.0 for name in label_set.names] for _, names in documents]
    class_labels = parquet_dataset(tmp_path / "class_labels", {"train": documents, "validation": documents},
                                   class_names=sorted(labels, reverse=True))  # fmt: skip
    splits, note = load_hub_splits(str(class_labels), label_set, text_column="abstract", label_column="hallmarks")
    assert note is None and splits["validation"]["labels"] == expected and "test" not in splits

    texts = [text for text, _ in documents]
    # Names, and plain integers (positions in the labels file).
    for name, labels_column in (("names", [names for _, names in documents]),
                                ("ids", [[label_set.names.index(n) for n in names] for _, names in documents])):
        (tmp_path / name).mkdir()
        for split in ("train", "validation"):
            Dataset.from_dict({"text": texts, "labels": labels_column}).to_parquet(tmp_path / name / f"{split}.parquet")
        splits, _ = load_hub_splits(str(tmp_path / name), label_set)
        assert splits["train"]["labels"] == expected == splits["validation"]["labels"]

    # Single-label: one name or one id per document.
    one_label = LabelSet("single_label_classification", label_set.names, label_set.descriptions)
    for name, labels_column in (("single_names", [label_set.names[i] for i in (2, 0, 3)]), ("single_ids", [2, 0, 3])):
        (tmp_path / name).mkdir()
        for split in ("train", "validation"):
            rows = {"text": ["a", "b", "c"], "labels": labels_column}
            Dataset.from_dict(rows).to_parquet(tmp_path / name / f"{split}.parquet")
        splits, _ = load_hub_splits(str(tmp_path / name), one_label)
        assert splits["train"]["labels"] == [2, 0, 3] == splits["validation"]["labels"]


@pytest.mark.parametrize(
    "columns, splits, options, message",
    [
        (("text", "labels"), ("train",), ["--text-column", "abstract"],
         "[train]: no column 'abstract'; its columns: ['text', 'labels'] (choose with --text-column)"),
        (("abstract", "labels"), ("train",), [], "no column 'text'; its columns: ['abstract', 'labels']"),
        (("text", "labels"), ("test",), [], "no 'train' split; its splits: ['test']"),
        (("text", "labels"), ("train",), ["--label-column", "text"], "[train] row 0: unknown label 'first'"),
    ],
)  # fmt: skip
def test_dataset_errors_name_the_column_or_split_and_list_what_exists(
    columns, splits, options, message, tiny_encoder, tmp_path, capsys
):
    from datasets import Dataset

    folder = tmp_path / "data"
    folder.mkdir()
    for split in splits:
        rows = {columns[0]: ["first", "second"], columns[1]: [["angiogenesis"], ["apoptosis"]]}
        Dataset.from_dict(rows).to_parquet(folder / f"{split}.parquet")
    args = ["--dataset-name", folder, "--labels-file", labels_file(tmp_path / "labels.json", LABELS), *options]
    code = train([*args, "--encoder", tiny_encoder, "--output-dir", tmp_path / "out"])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "options, message",
    [
        (["--dataset-name", "org/data"], "--dataset-name needs --labels-file"),
        (["--dataset-name", "org/data", "--labels-file", "l.json", "--data-dir", "d"],
         "give --dataset-name or --data-dir / --train-file, not both"),
        (["--dataset-name", "org/data", "--labels-file", "l.json", "--validation-split-percentage", "100"],
         "--validation-split-percentage: must be a number in (0, 100)"),
    ],
)  # fmt: skip
def test_dataset_options_are_checked_before_loading(options, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train([*options, "--output-dir", tmp_path / "out"])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
