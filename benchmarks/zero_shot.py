"""Labels never trained on: a model trained without some labels scores them from their descriptions alone.

    python benchmarks/zero_shot.py benchmarks/configs/zero_shot_hoc.json

For each set of held-out labels in the config (`held_out`) and each seed, label attention with the shared scorer
(`--label-scorer shared`, and the config's `shared_scorer` arguments, which name its metric, e.g.
`{"shared_scorer_metric": "identity"}`) is trained on the data without those labels (every document keeps its other
labels); the held-out labels are then added to the best model from their descriptions (`add_labels`) and scored on
test: ROC-AUC, and F1 at 0.5 (`NEW_LABEL_THRESHOLD`) and at the threshold `calibrate_thresholds` sets from the
validation texts without their labels (a new label predicted as often as the trained ones are); and ROC-AUC on
validation, what a design is chosen on. Against
(a) an untrained baseline: the cosine similarity of the mean-pooled embeddings of the document and of the label's
    description by the same encoder, not fine-tuned; its F1 is at one threshold on that similarity, the one with the
    best micro-F1 on validation over the labels that were trained on: nothing about the held-out labels is used;
(b) the upper bound: the shared-scorer model trained on every label (same arguments and seed), on the same labels.
Also the whole task: the shared scorer against the per-label one, on every label at the same budget.

The budget and the training arguments are the config's; decisions are at 0.5 throughout (no `tune_thresholds`). Each
training is `train_accelerate.py` in its own process (`compare_heads.Runner`): its record goes under
`benchmarks/results/runs/<config file's name>/<held-out labels, or all-labels>/label-attention/`
`label_scorer=<scorer>[,<shared_scorer arguments>]/seed<N>/`, and a held-out run's also holds `zero_shot.json` (the
scores of its held-out labels) and `zero_shot_predictions.npz` (their validation and test logits), so an interrupted
protocol resumes without redoing what is recorded (a record scored before validation was is scored again where its
model was kept). The per-label scorer's run may be a head comparison's record instead (`per_label_records` in the
config: a `compare_heads.py` record folder, holding `seed<N>/`), used only where it was trained with exactly these
arguments.
Writes `<output>.json` and `<output>.md`.
"""

import argparse
import functools
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import evaluate
import numpy as np
import torch
from compare_heads import REPO, RESULTS, Runner, ran_on, summarise, trained_on
from speed import encoder_and_name, write_results
from transformers import AutoModel, AutoTokenizer

from label_attention import LabelAttentionConfig, LabelAttentionForSequenceClassification
from label_attention.data_label_attention import jsonl_objects, load_splits
from label_attention.modeling_label_attention import decisions_from_logits, mean_pool
from label_attention.train_accelerate import METRICS_DIR

HEAD = "label-attention"
SHARED, PER_LABEL = {"label_scorer": "shared"}, {"label_scorer": "per_label"}
ALL_LABELS = "all-labels"
METHODS = {
    "zero_shot": "added after training (shared scorer)",
    "baseline": "untrained: cosine of mean-pooled embeddings",
    "trained": "trained with them (shared scorer)",
}


def slug(held_out: list[str]) -> str:
    """A folder name for a set of labels: `inducing-angiogenesis+resisting-cell-death`."""
    return "+".join(re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") for name in held_out)


def write_without(data_dir: Path, held_out: list[str], folder: Path) -> Path:
    """A copy of the data folder without the labels `held_out`: labels.json lists the others, and every document
    keeps its other labels (a document left with none stays, as a negative of every label)."""
    folder.mkdir(parents=True)
    spec = json.loads((data_dir / "labels.json").read_text(encoding="utf-8-sig"))
    spec["labels"] = [label for label in spec["labels"] if label["name"] not in held_out]
    (folder / "labels.json").write_text(json.dumps(spec, indent=2))
    for split in ("train", "validation", "test"):
        lines = []
        for _, record in jsonl_objects(data_dir / f"{split}.jsonl"):
            record["labels"] = [name for name in record["labels"] if name not in held_out]
            lines.append(json.dumps(record) + "\n")
        (folder / f"{split}.jsonl").write_text("".join(lines))
    return folder


def roc_auc(scores: np.ndarray, gold: np.ndarray) -> float:
    """Area under the ROC curve: the chance that a positive document outscores a negative one (ties count half);
    nan where the documents are all positive or all negative."""
    if gold.all() or not gold.any():
        return float("nan")
    negatives = np.sort(scores[~gold])
    below = np.searchsorted(negatives, scores[gold], side="left")
    not_above = np.searchsorted(negatives, scores[gold], side="right")
    return float((below + not_above).sum() / 2 / (gold.sum() * len(negatives)))


@functools.cache
def multi_label_metric():
    return evaluate.load(str(METRICS_DIR / "multi_label_classification"))


def label_scores(scores: np.ndarray, decisions: np.ndarray, gold: np.ndarray, names: list[str]) -> dict:
    """Per label (the columns): ROC-AUC of the scores, and F1 of the decisions by the shipped metric module."""
    metrics = multi_label_metric().compute(
        predictions=decisions.astype(int), references=gold.astype(int), label_names=names
    )
    f1 = metrics["per_label_f1"]
    return {name: {"roc_auc": roc_auc(scores[:, i], gold[:, i]), "f1": f1[name]} for i, name in enumerate(names)}


@torch.no_grad()
def in_batches(compute, tokenizer, texts: list[str], max_length: int, batch_size: int) -> torch.Tensor:
    """`compute(tokens)` over `texts` tokenised (truncated to `max_length`) in batches, concatenated."""
    parts = []
    for start in range(0, len(texts), batch_size):
        tokens = tokenizer(
            texts[start : start + batch_size], truncation=True, max_length=max_length, padding=True, return_tensors="pt"
        )
        parts.append(compute(tokens))
    return torch.cat(parts)


class Task:
    """The full data set: its labels, and the validation and test texts with multi-hot gold labels (bool)."""

    def __init__(self, data_dir: Path):
        splits, self.label_set = load_splits(data_dir)
        if not self.label_set.is_multi_label:
            raise SystemExit(f"{data_dir}: the zero-shot protocol needs a multi-label task")
        self.descriptions = dict(zip(self.label_set.names, self.label_set.descriptions))
        self.texts = {split: splits[split]["text"] for split in ("validation", "test")}
        self.gold = {split: np.array(splits[split]["labels"], dtype=bool) for split in ("validation", "test")}

    def columns(self, names: list[str]) -> list[int]:
        return [self.label_set.ids[name] for name in names]


def zero_shot_scores(model_dir: Path, held_out: list[str], task: Task, train_args: dict):
    """The held-out labels, added to the trained model from their descriptions: their test logits, decisions at
    0.5, decisions at the thresholds calibrated on the validation texts (no label of theirs is read), and their
    validation logits (what a design is chosen on)."""
    model = LabelAttentionForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=True)  # auto_map: this package's code
    model.add_labels(held_out, [task.descriptions[name] for name in held_out], tokenizer)
    max_length, batch_size = train_args["max_length"], train_args.get("eval_batch_size", 64)
    columns = [model.config.label2id[name] for name in held_out]
    logits = {
        split: in_batches(lambda tokens: model(**tokens).logits, tokenizer, task.texts[split], max_length, batch_size)
        for split in ("validation", "test")
    }
    at_half = model.predict_from_logits(logits["test"])[:, columns].numpy()
    thresholds = model.calibrate_thresholds_from_logits(held_out, logits["validation"])  # the validation texts'
    calibrated = model.predict_from_logits(logits["test"])[:, columns].numpy()
    return logits["test"][:, columns].numpy(), at_half, calibrated, thresholds, logits["validation"][:, columns].numpy()


def shared_setting(config: dict) -> dict:
    """The shared-scorer runs' setting: `--label-scorer shared` and the config's `shared_scorer` arguments (e.g.
    `{"shared_scorer_metric": "identity"}`), which the per-label scorer's run does not take."""
    return {**SHARED, **config.get("shared_scorer", {})}


def zero_shot_run(runner: Runner, experiment: dict, shared: dict, held_out: list[str], seed: int, task: Task,
                  keep_model: bool):  # fmt: skip
    """The held-out labels' test scores for one (set, seed) by the shared scorer trained with `shared` (its
    setting); trained and scored first unless recorded."""
    record = runner.record_dir(experiment, HEAD, shared, seed)
    scored = record / "zero_shot.json"
    output_dir = runner.runs_dir / record.relative_to(runner.records_dir)
    recorded = json.loads(scored.read_text()) if scored.exists() else {}
    kept = (output_dir / "model").is_dir()
    # Scored again: a record scored before calibrated thresholds were (trained again if its model is gone), or before
    # validation was, where its model was kept.
    if "calibrated_thresholds" not in recorded or ("validation_roc_auc" not in recorded and kept):
        if not kept:
            shutil.rmtree(record, ignore_errors=True)  # a record whose model was deleted unscored: train again
        runner.run(experiment, HEAD, shared, seed)
        logits, at_half, calibrated, thresholds, validation_logits = zero_shot_scores(
            output_dir / "model", held_out, task, experiment["train_args"]
        )
        columns = task.columns(held_out)
        gold, validation_gold = task.gold["test"][:, columns], task.gold["validation"][:, columns]
        np.savez_compressed(
            record / "zero_shot_predictions.npz", test_logits=logits, test_references=gold,
            validation_logits=validation_logits, validation_references=validation_gold,
        )  # fmt: skip
        labels = label_scores(logits, at_half, gold, held_out)
        calibrated_f1 = label_scores(logits, calibrated, gold, held_out)
        for name in held_out:
            labels[name]["f1_calibrated"] = calibrated_f1[name]["f1"]
        validation_roc_auc = {
            name: roc_auc(validation_logits[:, i], validation_gold[:, i]) for i, name in enumerate(held_out)
        }
        scores = {"held_out": held_out, "calibrated_thresholds": thresholds, "labels": labels,
                  "validation_roc_auc": validation_roc_auc}  # fmt: skip
        scored.write_text(json.dumps(scores, indent=2))  # last: the run is then recorded
        if not keep_model:
            shutil.rmtree(output_dir)
    return json.loads(scored.read_text())


def trained_scores(run: dict, held_out: list[str], task: Task) -> dict:
    """The held-out labels' test scores by the model trained on every label (its logits, decisions at 0.5)."""
    # The record's own references: its rows are in the order the run evaluated them (older records: sorted by length).
    with np.load(run["record"] / "predictions.npz") as predictions:
        logits = predictions["test_logits"][:, task.columns(held_out)]
        gold = predictions["test_references"][:, task.columns(held_out)].astype(bool)
    decisions = decisions_from_logits(torch.from_numpy(logits), "multi_label_classification").numpy()
    return label_scores(logits, decisions, gold, held_out)


def baseline_scores(task: Task, config: dict) -> dict:
    """Per held-out set: the held-out labels' test scores by cosine similarity, with the encoder not fine-tuned."""
    encoder_path, _ = encoder_and_name(config["train_args"].get("encoder"))
    encoder, tokenizer = AutoModel.from_pretrained(encoder_path).eval(), AutoTokenizer.from_pretrained(encoder_path)

    def embeddings(texts, max_length):
        pooled = in_batches(
            lambda tokens: mean_pool(encoder(**tokens).last_hidden_state, tokens["attention_mask"]),
            tokenizer, texts, max_length, config["train_args"].get("eval_batch_size", 64),
        )  # fmt: skip
        return torch.nn.functional.normalize(pooled, dim=-1)

    labels = embeddings(task.label_set.descriptions, LabelAttentionConfig.label_max_length)
    cosine = {
        split: (embeddings(task.texts[split], config["train_args"]["max_length"]) @ labels.T).numpy()
        for split in ("validation", "test")
    }
    results = {}
    for held_out in config["held_out"]:
        seen = [i for i, name in enumerate(task.label_set.names) if name not in held_out]
        threshold = best_threshold(cosine["validation"][:, seen], task.gold["validation"][:, seen])
        columns = task.columns(held_out)
        scores = cosine["test"][:, columns]
        results[slug(held_out)] = {
            "threshold": threshold,
            "validation_roc_auc": {
                name: roc_auc(cosine["validation"][:, column], task.gold["validation"][:, column])
                for name, column in zip(held_out, columns)
            },
            "labels": label_scores(scores, scores >= threshold, task.gold["test"][:, columns], held_out),
        }
    return results


def best_threshold(scores: np.ndarray, gold: np.ndarray) -> float:
    """The threshold t whose decisions (score >= t) have the best micro-F1 on these labels."""
    candidates = np.unique(scores)
    micro_f1 = [2 * (gold & (scores >= t)).sum() / (gold.sum() + (scores >= t).sum()) for t in candidates]
    return float(candidates[int(np.argmax(micro_f1))])


# Training arguments that records made before a config named them lack, with the value those runs had (the bundled
# encoder's 12 heads were train_accelerate.py's default): a config that names it takes such a record as trained alike.
FORMER_DEFAULTS = {"label_attention_heads": 12}


def per_label_run(config: dict, runner: Runner, full: dict, seed: int) -> dict:
    """The per-label scorer on every label: the head comparison's record named by `per_label_records` where it was
    trained with exactly these arguments, else trained here."""
    if config.get("per_label_records"):
        record = REPO / config["per_label_records"] / f"seed{seed}"
        results = json.loads((record / "eval_results.json").read_text())
        wanted = config["train_args"]
        former = {key: value for key, value in FORMER_DEFAULTS.items() if key in wanted}
        if {**former, **results.get("train_args", {})} == wanted:
            return {**results, "record": record, "seed": seed}
        print(f"{record} was trained with other arguments: training the per-label scorer here", flush=True)
    return runner.run(full, HEAD, PER_LABEL, seed)


def summarise_protocol(config: dict, task: Task, zero_shot: dict, baseline: dict, shared_runs, per_label_runs):
    seeds = config["seeds"]
    rows = []
    for held_out in config["held_out"]:
        name = slug(held_out)
        trained = {seed: trained_scores(run, held_out, task) for seed, run in zip(seeds, shared_runs)}
        for label in held_out:
            by_method = {
                "zero_shot": [zero_shot[name, seed]["labels"][label] for seed in seeds],
                "baseline": [baseline[name]["labels"][label]] * len(seeds),
                "trained": [trained[seed][label] for seed in seeds],
            }
            rows.append({
                "held_out": held_out, "label": label,
                "test_positives": int(task.gold["test"][:, task.label_set.ids[label]].sum()),
                **{method: {metric: summarise([score[metric] for score in scores]) for metric in scores[0]}
                   for method, scores in by_method.items()},
            })  # fmt: skip
    # Per seed, the mean over every held-out label of every set; then mean and spread over seeds.
    averages = {
        method: {
            metric: summarise([statistics.mean(row[method][metric]["values"][i] for row in rows)
                               for i in range(len(seeds))])
            for metric in rows[0][method]
        }
        for method in METHODS
    }  # fmt: skip
    above_baseline = sum(row["zero_shot"]["roc_auc"]["mean"] > row["baseline"]["roc_auc"]["mean"] for row in rows)

    def mean_validation_roc_auc(results):  # over every held-out label of every set
        return statistics.mean(value for result in results for value in result["validation_roc_auc"].values())

    # What a design is chosen on; left out for the model where a record was scored before validation was.
    validation_roc_auc = {}
    scored = [[zero_shot[slug(held_out), seed] for held_out in config["held_out"]] for seed in seeds]
    if all("validation_roc_auc" in result for results in scored for result in results):
        validation_roc_auc["zero_shot"] = summarise([mean_validation_roc_auc(results) for results in scored])
    validation_roc_auc["baseline"] = summarise([mean_validation_roc_auc(baseline.values())])
    full_task = {
        scorer: {
            **{f"test_{metric}": summarise([run["test"][metric] for run in runs])
               for metric in ("micro_f1", "macro_f1")},
            "validation_micro_f1": summarise([run["validation"]["micro_f1"] for run in runs]),
            "records": [os.path.relpath(run["record"], REPO) for run in runs],
            "devices": [trained_on(run) for run in runs],  # per seed, as "seeds"
        }
        for scorer, runs in (("shared", shared_runs), ("per_label", per_label_runs))
    }  # fmt: skip
    return {
        "description": config.get("description", ""), "data_dir": config["data_dir"], "seeds": seeds,
        "train_args": config["train_args"], "held_out": config["held_out"], "methods": METHODS,
        "baseline_thresholds": {name: result["threshold"] for name, result in baseline.items()},
        "unseen_labels": rows, "averages": averages, "zero_shot_above_baseline_roc_auc": above_baseline,
        "validation_roc_auc": validation_roc_auc, "full_task": full_task,
    }  # fmt: skip


def markdown(summary: dict) -> str:
    def cell(stats):
        return f"{stats['mean']:.3f}" + (f" ± {stats['std']:.3f}" if len(stats["values"]) > 1 else "")

    lines = [
        f"### Labels never trained on ({summary['data_dir']}, seeds {summary['seeds']})", "",
        summary["description"], "",
        "Test scores of the held-out labels, averaged over every held-out label of every set (mean ± std over seeds):",
        "", "| scored by | ROC-AUC | F1 | F1, new labels' thresholds from the validation texts (`calibrate_thresholds`) |",
        "|---|---|---|---|",
    ]  # fmt: skip
    for method, title in summary["methods"].items():
        cells = [cell(stats) for stats in summary["averages"][method].values()]  # only added labels are calibrated
        lines.append(f"| {title} | " + " | ".join(cells + ["—"] * (3 - len(cells))) + " |")
    rows = summary["unseen_labels"]
    thresholds = ", ".join(f"{name} {t:.3f}" for name, t in summary["baseline_thresholds"].items())
    validation = summary["validation_roc_auc"]
    lines += [
        "", "Validation, what a design is chosen on: the held-out labels' ROC-AUC, averaged likewise: "
        + "; ".join(f"{summary['methods'][method]} {cell(stats)}" for method, stats in validation.items()) + ".",
        "", f"Added after training above the untrained baseline in ROC-AUC: "
        f"{summary['zero_shot_above_baseline_roc_auc']} of {len(rows)} labels.", "",
        "Per label (ROC-AUC / F1; a new label is decided at 0.5, then at its calibrated threshold; the baseline at the "
        f"threshold chosen on validation over the labels trained on: {thresholds}):", "",
        "| held out together | label | test positives | added after training | untrained baseline | trained with it |",
        "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for row in rows:
        cells = ["; ".join(row["held_out"]), row["label"], str(row["test_positives"])]
        cells += [" / ".join(map(cell, row[method].values())) for method in summary["methods"]]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "", "The whole task (every label trained), test and validation at 0.5:", "",
        "| scorer | test micro-F1 | test macro-F1 | validation micro-F1 | ran on |", "|---|---|---|---|---|",
    ]  # fmt: skip
    for scorer, row in summary["full_task"].items():
        cells = [cell(row[key]) for key in ("test_micro_f1", "test_macro_f1", "validation_micro_f1")]
        lines.append(f"| {scorer} | " + " | ".join(cells) + f" | {ran_on(summary['seeds'], row['devices'])} |")
    args = ", ".join(f"{key}={value}" for key, value in summary["train_args"].items())
    lines += ["", f"Training arguments (every run): {args}.", ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="The protocol's config file (JSON).")
    parser.add_argument("--records-dir", default=str(RESULTS / "runs"), help="Each finished run's record (commit it).")
    parser.add_argument("--runs-dir", default=str(REPO / "benchmarks" / "runs"), help="Model folders (not kept).")
    parser.add_argument("--output", default=str(RESULTS / "zero_shot"), help="Path of the summary, no suffix.")
    parser.add_argument("--keep-models", action="store_true", help="Keep each run's model folder in --runs-dir.")
    args = parser.parse_args(argv)
    config = json.loads(Path(args.config).read_text())
    if config["train_args"].get("tune_thresholds"):
        parser.error("the protocol decides at 0.5 (a new label's threshold): leave tune_thresholds out")
    if "shared_scorer_metric" not in config.get("shared_scorer", {}):
        # train_accelerate.py's default metric has changed before: a resumed protocol must train what its records did
        parser.error('name the shared scorer\'s metric in the config: "shared_scorer": {"shared_scorer_metric": ...}')
    data_dir = REPO / config["data_dir"]
    task = Task(data_dir)
    unknown = [name for held_out in config["held_out"] for name in held_out if name not in task.label_set.ids]
    if unknown:
        parser.error(f"held-out labels {unknown} are not in {data_dir / 'labels.json'}")
    name = Path(args.config).stem  # each config its own records: budgets differ
    records_dir, runs_dir = Path(args.records_dir) / name, Path(args.runs_dir) / name
    runner = Runner(records_dir, runs_dir, 1, {}, args.keep_models)
    keeping_runner = Runner(records_dir, runs_dir, 1, {}, keep_models=True)  # a held-out run's model is scored next
    full = {"name": ALL_LABELS, "data_dir": str(data_dir), "train_args": config["train_args"]}

    zero_shot = {}
    with tempfile.TemporaryDirectory() as scratch:
        experiments = []  # (held-out labels, the experiment without them)
        for held_out in config["held_out"]:
            folder = write_without(data_dir, held_out, Path(scratch, slug(held_out)))
            experiments.append((held_out, {**full, "name": slug(held_out), "data_dir": str(folder)}))
        for seed in config["seeds"]:  # every set's first seed is scored before a second seed trains
            for held_out, experiment in experiments:
                zero_shot[experiment["name"], seed] = zero_shot_run(
                    keeping_runner, experiment, shared_setting(config), held_out, seed, task, args.keep_models
                )
    shared_runs = [runner.run(full, HEAD, shared_setting(config), seed) for seed in config["seeds"]]
    per_label_runs = [per_label_run(config, runner, full, seed) for seed in config["seeds"]]
    summary = summarise_protocol(config, task, zero_shot, baseline_scores(task, config), shared_runs, per_label_runs)

    write_results(args.output, summary, markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
