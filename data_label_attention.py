"""Reading labelled documents: the folder format of `../shared/data`, or users' own JSONL / CSV files.

A folder holds `train.jsonl`, `validation.jsonl`, `test.jsonl` and `labels.json`:
- a JSONL line is `{"text": "...", "labels": ["<label name>", ...]}` (an empty list: a document with no label);
- a CSV file has a `text` column and a `labels` column of label names separated by `;`;
- `labels.json` is `{"task": "multi_label_classification" | "single_label_classification",
  "labels": [{"name": ..., "description": ...}, ...]}`.

Files are UTF-8, with or without a byte-order mark. Every problem is reported as a `DataError` that names the file
and line.

Data sets that `datasets.load_dataset` reads (a Hub id, or a local folder of parquet, CSV or JSON files) are read by
`load_hub_splits`, with any column names and labels given as names or class ids; descriptions still come from a
`labels.json`. Its problems name the split and the row.
"""

import csv
import functools
import io
import json
from dataclasses import dataclass
from pathlib import Path

from datasets import ClassLabel, Dataset, DatasetDict, load_dataset

TASKS = ("multi_label_classification", "single_label_classification")
VALIDATION_SPLIT_SEED = 42  # the held-out part of train is the same whatever the training seed


class DataError(ValueError):
    """A problem with the user's data, located by file and line."""


@dataclass
class LabelSet:
    problem_type: str
    names: list[str]
    descriptions: list[str]

    @property
    def is_multi_label(self) -> bool:
        return self.problem_type == "multi_label_classification"

    @functools.cached_property
    def ids(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}


def _read_text(path) -> str:
    """The text of a UTF-8 file; a byte-order mark (written by some editors and spreadsheets) is dropped. A file that
    is not UTF-8 raises a `DataError` naming the line of the first byte that is not."""
    try:
        return Path(path).read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        data = error.object  # the bytes after the byte-order mark, which `error.start` counts from
        line = data.count(b"\n", 0, error.start) + 1
        raise DataError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[error.start]:02x}): save the file as UTF-8"
        ) from None


def read_label_set(path) -> LabelSet:
    path = Path(path)
    try:
        spec = json.loads(_read_text(path))
    except FileNotFoundError:
        raise DataError(f"{path}: labels file not found") from None
    except json.JSONDecodeError as error:
        raise DataError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
    if not isinstance(spec, dict) or spec.get("task") not in TASKS:
        raise DataError(f"{path}: 'task' must be one of {TASKS}")
    labels = spec.get("labels")
    if not isinstance(labels, list) or not labels:
        raise DataError(f"{path}: 'labels' must be a non-empty list")
    names, descriptions = [], []
    for position, label in enumerate(labels):
        where = f"{path}: labels[{position}]"  # a labels file is short: the entry is found at a glance
        if not isinstance(label, dict):
            raise DataError(f"{where} must be an object with a name and a description")
        name = label.get("name")
        if not isinstance(name, str) or not name.strip():
            raise DataError(f"{where} has no name")
        if name in names:
            raise DataError(f"{where}: label {name!r} is listed twice")
        description = label.get("description")
        if not isinstance(description, str) or not description.strip():
            raise DataError(f"{where}: label {name!r} has no description")
        names.append(name)
        descriptions.append(description)
    return LabelSet(spec["task"], names, descriptions)


def jsonl_objects(path):
    """Yield `(line number, object)` for every non-blank line of a JSON Lines file; a line that is not a JSON
    object, or a file that is not UTF-8, raises a `DataError` naming the file and line."""
    path = Path(path)
    for line_number, line in enumerate(io.StringIO(_read_text(path)), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}:{line_number}: not valid JSON (malformed JSON line: {error.msg})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}:{line_number}: expected a JSON object")
        yield line_number, record


def _records(path: Path):
    """Yield (line number, text, label names) from a JSONL or CSV file."""
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
        if reader.fieldnames is None or not {"text", "labels"} <= set(reader.fieldnames):
            raise DataError(f"{path}:1: a CSV file needs a 'text' and a 'labels' column")
        for row in reader:
            labels = row["labels"] or ""
            yield reader.line_num, row["text"], [name.strip() for name in labels.split(";") if name.strip()]
        return
    for line_number, record in jsonl_objects(path):
        labels = record.get("labels")
        if not isinstance(labels, list) or not all(isinstance(name, str) for name in labels):
            raise DataError(
                f"{path}:{line_number}: 'labels' must be a list of label names, e.g. [\"a\", \"b\"] ([] for none); "
                f"got {json.dumps(labels)}"
            )
        yield line_number, record.get("text"), labels


def read_split(path, label_set: LabelSet) -> Dataset:
    """Read one split into a `datasets.Dataset` with `text` and `labels` (multi-hot floats, or a class id)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    texts, targets = [], []
    for line_number, text, labels in _records(path):
        where = f"{path}:{line_number}"
        texts.append(_checked_text(text, where, "'text'"))
        targets.append(_target(labels, label_set, where))
    if not texts:
        raise DataError(f"{path}: no documents (empty split)")
    return Dataset.from_dict({"text": texts, "labels": targets})


def _checked_text(text, where: str, column: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{where}: missing or empty {column}")
    return text


def _target(labels: list[str], label_set: LabelSet, where: str):
    """The training target of a document's label names: multi-hot floats (multi-label) or a class id."""
    unknown = [name for name in labels if name not in label_set.ids]
    if unknown:
        raise DataError(f"{where}: unknown label {unknown[0]!r}; known labels: {label_set.names}")
    if label_set.is_multi_label:
        target = [0.0] * len(label_set.names)
        for name in labels:
            target[label_set.ids[name]] = 1.0
        return target
    if len(labels) != 1:
        raise DataError(f"{where}: single-label data needs exactly one label, got {len(labels)}")
    return label_set.ids[labels[0]]


def load_splits(
    data_dir=None, train_file=None, validation_file=None, test_file=None, labels_file=None
) -> tuple[DatasetDict, LabelSet]:
    """Load train / validation (/ test) splits and the label set; explicit files override `data_dir`'s."""
    folder = Path(data_dir) if data_dir else None
    label_set = read_label_set(labels_file or (folder / "labels.json" if folder else None))
    files = {"train": train_file, "validation": validation_file, "test": test_file}
    for split in files:
        if files[split] is None and folder is not None:
            candidate = folder / f"{split}.jsonl"
            if candidate.exists() or split != "test":
                files[split] = candidate
    splits = DatasetDict({split: read_split(path, label_set) for split, path in files.items() if path is not None})
    return splits, label_set


def load_hub_splits(
    dataset_name: str,
    label_set: LabelSet,
    dataset_config: str | None = None,
    text_column: str = "text",
    label_column: str = "labels",
    validation_split_percentage: float = 10,
) -> tuple[DatasetDict, str | None]:
    """Train / validation (/ test) splits of a data set that `datasets.load_dataset` reads (a Hub id, or a local
    folder of parquet, CSV or JSON files), as `read_split` gives them, with `label_set`'s labels.

    A label is a name or a class id (the column's `ClassLabel` names where it has them, else the position in the
    labels file), alone or in a list. The data set's own validation split is used where it has one; otherwise
    `validation_split_percentage` % of train, drawn with a fixed seed, and the note returned says so."""
    try:
        raw = load_dataset(dataset_name, dataset_config)
    except Exception as error:  # noqa: BLE001 - not found, offline, a config to choose: one line that names it
        reason = " ".join(f"{type(error).__name__}: {error}".split())[:400]
        raise DataError(f"--dataset-name {dataset_name}: cannot load it ({reason})") from None
    if "train" not in raw:
        raise DataError(f"{dataset_name}: no 'train' split; its splits: {sorted(raw)}")
    note = None
    if "validation" not in raw:
        held_out = raw["train"].train_test_split(
            test_size=validation_split_percentage / 100, seed=VALIDATION_SPLIT_SEED
        )
        raw["train"], raw["validation"] = held_out["train"], held_out["test"]
        note = (
            f"{dataset_name} has no validation split: {validation_split_percentage:g}% of train "
            f"(seed {VALIDATION_SPLIT_SEED}) is held out as validation"
        )
    splits = DatasetDict(
        {
            split: _hub_split(raw[split], f"{dataset_name} [{split}]", label_set, text_column, label_column)
            for split in ("train", "validation", "test")
            if split in raw
        }
    )
    return splits, note


def _hub_split(dataset, where: str, label_set: LabelSet, text_column: str, label_column: str) -> Dataset:
    for column, option in ((text_column, "--text-column"), (label_column, "--label-column")):
        if column not in dataset.column_names:
            columns = dataset.column_names
            raise DataError(f"{where}: no column {column!r}; its columns: {columns} (choose with {option})")
    feature = dataset.features[label_column]
    feature = getattr(feature, "feature", feature)  # the items of a list column
    id_names = feature.names if isinstance(feature, ClassLabel) else label_set.names
    texts, targets = [], []
    for row, (text, labels) in enumerate(zip(dataset[text_column], dataset[label_column])):
        at = f"{where} row {row}"
        texts.append(_checked_text(text, at, repr(text_column)))
        targets.append(_target(_label_names(labels, id_names, at), label_set, at))
    if not texts:
        raise DataError(f"{where}: no documents (empty split)")
    return Dataset.from_dict({"text": texts, "labels": targets})


def _label_names(labels, id_names: list[str], where: str) -> list[str]:
    """Label names from a name, a class id, or a list of either."""
    names = []
    for label in labels if isinstance(labels, list) else [labels]:
        if isinstance(label, bool) or not isinstance(label, (str, int)):
            raise DataError(f"{where}: labels must be names or class ids, got {json.dumps(labels, default=str)}")
        if isinstance(label, int):
            if not 0 <= label < len(id_names):
                raise DataError(f"{where}: class id {label} is not in 0..{len(id_names) - 1}")
            label = id_names[label]
        names.append(label)
    return names
