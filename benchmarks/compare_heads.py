"""Label attention against vanilla fine-tuning of the same encoder: the [CLS] + linear and the mean-pooling baselines.

    python benchmarks/compare_heads.py benchmarks/configs/hoc.json benchmarks/configs/mtc5.json [--jobs N]

Each config file names a data folder, the heads, the seeds, the training arguments, a `sweep` (settings tried on the
first seed, the one with the best validation metric kept for all seeds: every head gets the same sweep, so the same
tuning effort) and optional `ablations` (changes to label attention's chosen recipe, run on the first seed and
reported, never adopted by this comparison). Instead of a sweep, a config may name another with `recipes_from`: each
head then trains, on every seed, the setting that experiment's sweep chose for it, with this config's arguments (e.g.
a change to every head's recipe, measured on every seed), and is paired seed by seed with that experiment's runs. The
named config may itself have `recipes_from`: the settings then come from the sweep at the end of the chain. A config
may also name `baselines_from`, an experiment whose baseline heads trained with the same arguments (label attention's
own aside): their records, at the settings its sweep chose, are paired seed by seed with this config's label attention
(read, never trained here: train them with that config). Each run is `train_accelerate.py` in its own process:
the epoch kept is chosen on validation; test metrics are never used for a choice. `--heads` and `--seeds` limit a call
to some heads and to the seeds their chosen settings train on (e.g. to add a seed); sweeps stay on their first seed.
The summary then covers those heads and seeds only.

Every finished run leaves its record under `benchmarks/results/runs/` (`eval_results.json`, `train_log.jsonl`,
`predictions.npz`): commit them, and an interrupted comparison resumes without redoing finished runs; with `--resume`,
a run stopped part-way goes on from its last finished epoch too (its state is kept in `--runs-dir`). Writes
`<output>.json`, `<output>.md` and `<output>.png` (learning curves): test metrics as mean and standard deviation over
seeds, per-seed paired differences between label attention and each baseline (with the paired t-test's 95% confidence
interval and p-value: beyond seed noise where the interval excludes 0; and, for the main metric, the gap's 95% interval
with the test documents resampled: beyond test-set noise where that one excludes 0), and the evidence for the decision
rule.
"""

import argparse
import functools
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
RECORD_FILES = ("eval_results.json", "train_log.jsonl", "predictions.npz")
MAIN_METRICS = {
    "multi_label_classification": ("micro_f1", "macro_f1"),
    "single_label_classification": ("accuracy", "macro_f1"),
}
LABEL_ATTENTION = "label-attention"


def machine() -> str:
    """What a run ran on: the GPU if there is one, else the CPU model (timings and bf16 depend on it)."""
    import torch
    from speed import cpu_name  # imports torch: only when a run is recorded

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{cpu_name()} ({os.cpu_count()} cores)"


def code_commit() -> str | None:
    """The commit of the code that trains, marked "+changes" where its Python files differ from it; None outside git."""
    def git(*arguments) -> str:
        return subprocess.run(["git", "-C", str(REPO), *arguments], capture_output=True, text=True, check=True).stdout

    try:
        commit, changes = git("rev-parse", "--short=12", "HEAD").strip(), git("status", "--porcelain", "--", "*.py")
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+changes" if changes.strip() else "")


def trained_on(run: dict) -> str:
    """The machine a run trained on and, where its record says (newer ones do), the precision it trained in."""
    device = run.get("device", "unknown")
    precision = run.get("mixed_precision")
    return device if precision is None else f"{device}, {'fp32' if precision == 'no' else precision}"


def setting_name(setting: dict) -> str:
    """The folder name of a setting's records; a path value (e.g. `labels_file`) is named by its file name."""
    named = {key: Path(value).name if "/" in str(value) else value for key, value in setting.items()}
    return ",".join(f"{key}={named[key]}" for key in sorted(named)) or "default"


class Runner:
    """Runs `train_accelerate.py` for (experiment, head, setting, seed), `jobs` at a time, keeping each run's record."""

    def __init__(
        self, records_dir, runs_dir, jobs: int, overrides: dict, keep_models: bool, train: bool = True, resume=False
    ):
        self.records_dir, self.runs_dir, self.jobs = records_dir, runs_dir, jobs
        self.overrides, self.keep_models, self.train, self.resume = overrides, keep_models, train, resume
        self.pool = ThreadPoolExecutor(jobs)

    def record_dir(self, config, head, setting, seed) -> Path:
        return self.records_dir / config["name"] / head / setting_name(setting) / f"seed{seed}"

    def run(self, config, head, setting, seed) -> dict | None:
        """The run's record, trained first if missing (with `train=False`: None if missing)."""
        record = self.record_dir(config, head, setting, seed)
        if self.train and not (record / "eval_results.json").exists():
            self._train(config, head, setting, seed, record)
        return self.recorded(config, head, setting, seed)

    def recorded(self, config, head, setting, seed) -> dict | None:
        """The run's record, None if there is none; never trains."""
        record = self.record_dir(config, head, setting, seed)
        if not (record / "eval_results.json").exists():
            return None
        results = json.loads((record / "eval_results.json").read_text())
        log = [json.loads(line) for line in (record / "train_log.jsonl").read_text().splitlines() if line.strip()]
        return {**results, "log": log, "record": record, "seed": seed}

    def _train(self, config, head, setting, seed, record: Path):
        output_dir = self.runs_dir / record.relative_to(self.records_dir)
        if not self.resume:
            shutil.rmtree(output_dir, ignore_errors=True)
        output_dir.mkdir(parents=True, exist_ok=True)
        resumed = self.resume and any((output_dir / "checkpoints").glob("step_*"))
        # The code of every sitting, so that a run resumed after the code changed says so in its record.
        commits_file = output_dir / "code_commits.txt"
        commits = commits_file.read_text().split() if resumed and commits_file.exists() else []
        current = code_commit()
        if current and current not in commits[-1:]:
            commits.append(current)
            commits_file.write_text("\n".join(commits) + "\n")
        train_args = {**config["train_args"], **setting, **self.overrides}
        if head != LABEL_ATTENTION:  # a baseline has no label attention: train_accelerate.py refuses its options
            from label_attention.train_accelerate import LABEL_ATTENTION_OPTIONS

            train_args = {key: value for key, value in train_args.items() if key not in LABEL_ATTENTION_OPTIONS}
        command = [sys.executable, str(REPO / "train_accelerate.py"), "--data-dir", str(REPO / config["data_dir"])]
        command += ["--output-dir", str(output_dir), "--head", head, "--seed", str(seed)]
        for key, value in train_args.items():
            flag = f"--{key.replace('_', '-')}"
            command += [flag] if value is True else [] if value is False else [flag, str(value)]
        if self.resume:  # the state after every epoch, and the run goes on from the newest one it left
            command += ["--checkpointing-steps", "epoch", "--resume-from-checkpoint", "latest"]
        # Parallel runs share the cores: each gets its part, so that none oversubscribes them.
        threads = str(max(1, (os.cpu_count() or 1) // self.jobs))
        env = {**os.environ, "OMP_NUM_THREADS": threads, "TOKENIZERS_PARALLELISM": "false"}
        started = time.time()
        with (output_dir / "run.log").open("a" if self.resume else "w") as log:
            finished = subprocess.run(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        if finished.returncode != 0:
            tail = (output_dir / "run.log").read_text()[-3000:]
            raise RuntimeError(f"run failed ({finished.returncode}): {' '.join(command)}\n{tail}")
        results = json.loads((output_dir / "eval_results.json").read_text())
        # A resumed run's sittings before the last count with their training time up to their last checkpoint.
        earlier = results.get("training_seconds_before_resume", 0.0)
        results["wall_seconds"] = round(time.time() - started + earlier, 1)
        results["train_args"] = train_args
        results["device"] = machine()
        results["code_commits"] = commits
        if resumed:
            results["resumed"] = True
        staging = record.with_name(record.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        (staging / "eval_results.json").write_text(json.dumps(results, indent=2))
        for name in RECORD_FILES[1:]:
            shutil.copy(output_dir / name, staging / name)
        staging.rename(record)  # a record is whole or absent
        if not self.keep_models:
            shutil.rmtree(output_dir)
        print(f"done {record.relative_to(self.records_dir)} in {results['wall_seconds']:.0f} s", flush=True)

    def run_all(self, jobs: list[tuple]) -> list[dict]:
        return list(self.pool.map(lambda job: self.run(*job), jobs))


def swept_by(config) -> dict:
    """The experiment whose sweep chooses each head's setting: the config itself, or the end of its `recipes_from`
    chain."""
    while "recipes_from" in config:
        config = config["recipes_from"]
    return config


def sweep_of(config) -> dict:
    """The grid a config's choices come from."""
    return swept_by(config).get("sweep", {})


def sweep_settings(sweep: dict) -> list[dict]:
    return [dict(zip(sweep, values)) for values in itertools.product(*sweep.values())] or [{}]


def summarise(values):
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}  # fmt: skip


def cross_fitted_threshold_gain(config, runs, split_seed=0) -> dict:
    """Is tuning one threshold per label on validation better than 0.5? Asked of validation alone: tune on one half,
    score on the other (both ways, per run); returns held-out micro-F1 with tuned thresholds and with 0.5."""
    from label_attention.data_label_attention import read_label_set
    from label_attention.train_accelerate import Evaluator  # the rule and metric the training script applies

    evaluator = Evaluator(read_label_set(REPO / config["data_dir"] / "labels.json"))
    tuned, fixed = [], []
    for run in runs:
        with np.load(run["record"] / "predictions.npz") as predictions:
            logits, gold = predictions["validation_logits"], predictions["validation_references"]
        order = np.random.default_rng(split_seed).permutation(len(gold))
        halves = np.array_split(order, 2)
        for tune_on, score_on in (halves, halves[::-1]):
            thresholds = evaluator.tune_thresholds(logits[tune_on], gold[tune_on])
            tuned.append(evaluator.score(logits[score_on], gold[score_on], thresholds)["micro_f1"])
            fixed.append(evaluator.score(logits[score_on], gold[score_on])["micro_f1"])
    return {"held_out_micro_f1_tuned": float(np.mean(tuned)), "held_out_micro_f1_at_0.5": float(np.mean(fixed))}


def borrowed_baselines(config, runner: Runner) -> dict:
    """With `baselines_from`: each of that experiment's baseline heads (`config["baseline_heads"]`) at the setting its
    sweep chose, from its records (None for a head with no sweep record)."""
    if "baselines_from" not in config:
        return {}
    swept = swept_by(config["baselines_from"])
    settings = sweep_settings(sweep_of(swept))
    return {head: choose(swept, head, [(setting, runner.recorded(swept, head, setting, swept["seeds"][0]))
                                       for setting in settings])
            for head in config["baseline_heads"]}  # fmt: skip


def compare(config, runner: Runner, chosen: dict) -> dict:
    """`chosen`: each head's choice, this config's heads' and then `baselines_from`'s (whose runs are only read)."""
    metric_names = MAIN_METRICS[config["problem_type"]]
    rows, per_seed = {}, {}
    owners = {head: config if head in config["heads"] else config["baselines_from"] for head in chosen}
    for head, owner in owners.items():
        if chosen[head] is None:
            continue  # --no-train, and not one run of this head yet
        read = runner.run if owner is config else runner.recorded
        runs = [read(owner, head, chosen[head]["setting"], seed) for seed in config["seeds"]]
        runs = [run for run in runs if run is not None]  # all of them, unless --no-train left some out
        if not runs:
            continue  # --no-train, and the head's setting (from `recipes_from`) has no run yet
        per_seed[head] = {run["seed"]: run for run in runs}
        rows[head] = {
            "chosen": chosen[head]["setting"],
            "seeds": [run["seed"] for run in runs],
            "sweep": chosen[head]["sweep"],
            **{f"test_{name}": summarise([run["test"][name] for run in runs]) for name in metric_names},
            **{f"validation_{name}": summarise([run["validation"][name] for run in runs]) for name in metric_names},
            "wall_seconds": summarise([run["wall_seconds"] for run in runs]),
            "experiment": owner["name"],
            "devices": [trained_on(run) for run in runs],  # per seed, as "seeds"
            "best_epochs": [run["best_epoch"] for run in runs],
            "learning_curves": [[record["validation"][metric_names[0]] for record in run["log"]] for run in runs],
        }
        if config["problem_type"] == "multi_label_classification":
            rows[head]["thresholds"] = cross_fitted_threshold_gain(config, runs)
    paired, paired_on_validation = {}, {}
    if LABEL_ATTENTION in per_seed:
        for head in per_seed:
            if head == LABEL_ATTENTION:
                continue
            differences = paired_differences(per_seed[LABEL_ATTENTION], per_seed[head], "test", metric_names)
            if differences:  # none where the two share no seed
                differences[metric_names[0]]["documents_resampled"] = documents_bootstrap(
                    config, per_seed[LABEL_ATTENTION], per_seed[head]
                )
                paired[head] = differences
                paired_on_validation[head] = paired_differences(
                    per_seed[LABEL_ATTENTION], per_seed[head], "validation", metric_names
                )
    # With `recipes_from`: what this config's change does to each head, against the source's runs of the same setting.
    changed = {}
    if "recipes_from" in config:
        source = config["recipes_from"]
        for head, runs in per_seed.items():
            if owners[head] is not config:
                continue  # a borrowed baseline: this config changed nothing of it
            before = {seed: runner.recorded(source, head, chosen[head]["setting"], seed) for seed in runs}
            before = {seed: run for seed, run in before.items() if run is not None}
            if before:  # else no seed to pair: say nothing
                changed[head] = {split: paired_differences(runs, before, split, metric_names)
                                 for split in ("validation", "test")}  # fmt: skip
    ablations = []
    base = chosen.get(LABEL_ATTENTION)  # None: label attention not compared (--heads), or no run of it yet
    for change in config.get("ablations", []) if base else []:
        run = runner.run(config, LABEL_ATTENTION, {**base["setting"], **change}, config["seeds"][0])
        if run is None:
            continue
        ablations.append({"change": change, "validation": run["validation"][metric_names[0]],
                          "test": run["test"][metric_names[0]], "best_epoch": run["best_epoch"]})  # fmt: skip
    return {"experiment": config["name"], "description": config.get("description", ""),
            "recipes_from": config["recipes_from"]["name"] if "recipes_from" in config else None,
            "baselines_from": config["baselines_from"]["name"] if "baselines_from" in config else None,
            "swept_by": swept_by(config)["name"],
            "problem_type": config["problem_type"], "metrics": metric_names, "seeds": config["seeds"],
            "train_args": {**config["train_args"], **runner.overrides}, "sweep": sweep_of(config),
            "heads": rows, "paired_differences": paired, "paired_differences_validation": paired_on_validation,
            "change_from_source": changed,
            "ablations": ablations}  # fmt: skip


def paired_differences(runs: dict, others: dict, split: str, metric_names) -> dict:
    """Per metric, `runs` minus `others` (each {seed: run}) on `split`, seed by seed over the seeds both have: mean,
    spread, values, on how many seeds `runs` is ahead, and the paired t-test."""
    seeds = sorted(runs.keys() & others.keys())
    paired = {}
    for name in metric_names:
        differences = [runs[seed][split][name] - others[seed][split][name] for seed in seeds]
        if differences:
            paired[name] = {**summarise(differences), "wins": sum(d > 0 for d in differences), "seeds": seeds,
                            **paired_t_test(differences)}  # fmt: skip
    return paired


def paired_t_test(differences: list[float]) -> dict:
    """The mean difference's 95% confidence interval and two-sided p-value (paired t-test over seeds); None where
    there is no spread to estimate (one seed, or every difference the same)."""
    from scipy import stats

    if len(set(differences)) < 2:
        return {"ci95": None, "p_value": None}
    test = stats.ttest_1samp(differences, 0.0)
    low, high = test.confidence_interval(0.95)
    return {"ci95": [float(low), float(high)], "p_value": float(test.pvalue)}


def documents_bootstrap(config, runs: dict, others: dict, resamples: int = 10_000) -> dict:
    """The paired gap in the main test metric (`runs` minus `others`, each head's metric averaged over the seeds both
    have, as in the table) with the test documents resampled, pairs kept: its 95% interval says how far the gap could
    move on another test set of this size from the same distribution. Every seed is scored on the same documents, so
    the t-test over seeds cannot see that noise. Also the share of resamples where `runs` is not ahead."""
    seeds = sorted(runs.keys() & others.keys())
    per_document = {name: np.stack([document_statistics(config, group[seed]) for seed in seeds])
                    for name, group in (("runs", runs), ("others", others))}  # fmt: skip
    documents = per_document["runs"].shape[1]
    # Each resample as how often it draws each document: a (resamples, documents) matrix of counts.
    counts = np.random.default_rng(0).multinomial(documents, np.full(documents, 1 / documents), size=resamples)

    def metric(head_counts):  # (seeds, documents, k) -> per resample, the metric averaged over the seeds
        return metric_from_sums(config, np.einsum("rd,sdk->rsk", counts, head_counts), documents).mean(axis=1)

    gaps = metric(per_document["runs"]) - metric(per_document["others"])
    low, high = np.percentile(gaps, [2.5, 97.5])
    return {"ci95": [float(low), float(high)], "not_ahead": float(np.mean(gaps <= 0)), "resamples": resamples}


def document_statistics(config, run) -> np.ndarray:
    """Per test document, the counts the main metric is made of: (true positives, false positives, false negatives)
    over the labels for micro-F1, (correct,) for accuracy; decisions by the training script's rule. Checked against
    the run's recorded metric."""
    import torch

    from label_attention.modeling_label_attention import decisions_from_logits

    logits, gold = predictions_on_test(config, run)
    decisions = decisions_from_logits(torch.from_numpy(logits), config["problem_type"]).numpy()
    if config["problem_type"] == "multi_label_classification":
        decisions, gold = decisions.astype(bool), gold.astype(bool)
        counts = [(decisions & gold).sum(1), (decisions & ~gold).sum(1), (~decisions & gold).sum(1)]
    else:
        counts = [decisions == gold]
    counts = np.stack(counts, axis=1).astype(float)
    main = MAIN_METRICS[config["problem_type"]][0]
    if not np.isclose(metric_from_sums(config, counts.sum(0), len(gold)), run["test"][main]):
        raise SystemExit(f"{run['record']}: its test logits decided at the default rule do not give its recorded "
                         f"{main} (decision thresholds of its own?); cannot resample its documents")  # fmt: skip
    return counts


def metric_from_sums(config, sums: np.ndarray, documents: int) -> np.ndarray:
    """The main metric from `document_statistics` summed over documents (the last axis holds the counts)."""
    if config["problem_type"] == "multi_label_classification":
        true_positives, false_positives, false_negatives = np.moveaxis(sums, -1, 0)
        return 2 * true_positives / np.maximum(2 * true_positives + false_positives + false_negatives, 1)
    return sums[..., 0] / documents


def predictions_on_test(config, run) -> tuple[np.ndarray, np.ndarray]:
    """A run's test logits and references, rows in the test file's order. Records made before predictions.npz kept
    that order have their rows sorted by token length, as the evaluation loader read them then: those are put back
    (the same stable sort, by the run's tokenizer and length limit) and checked against the file's labels."""
    with np.load(run["record"] / "predictions.npz") as predictions:
        logits, references = predictions["test_logits"], predictions["test_references"]
    train_args = {**config["train_args"], **run.get("train_args", {})}
    texts, gold = read_test_split(config["data_dir"])
    limit = int(train_args.get("max_eval_samples") or len(texts))  # the run read the first `limit` documents
    texts, gold = texts[:limit], gold[:limit]
    if not np.array_equal(references, gold):
        order = np.argsort(length_order(texts, train_args.get("encoder"), int(train_args["max_length"])))
        logits, references = logits[order], references[order]
        if not np.array_equal(references, gold):
            raise SystemExit(f"{run['record']}: its test rows match neither the test file's order nor the order by "
                             "length; cannot pair its documents with another run's")  # fmt: skip
    return logits, gold


@functools.cache
def read_test_split(data_dir: str) -> tuple[list[str], np.ndarray]:
    """The test file's texts and references as predictions.npz holds them (multi-hot, or class ids)."""
    from label_attention.data_label_attention import load_splits

    splits, _ = load_splits(REPO / data_dir)
    return list(splits["test"]["text"]), np.array(splits["test"]["labels"])


def length_order(texts: list[str], encoder: str | None, max_length: int) -> list[int]:
    """The indices of `texts` by token length, ascending (stable): the evaluation order of the older records."""
    from transformers import AutoTokenizer

    from label_attention.train_accelerate import default_encoder

    tokenizer = AutoTokenizer.from_pretrained(encoder or default_encoder())
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
    return sorted(range(len(texts)), key=lengths.__getitem__)


def paired_cell(name: str, difference: dict) -> str:
    """One metric's paired difference in a summary: mean ± std (seeds ahead; 95% interval, p)."""
    mean, std, wins, seeds = (difference[key] for key in ("mean", "std", "wins", "seeds"))
    cell = f"{name} {mean:+.4f} ± {std:.4f} ({wins}/{len(seeds)}"
    if difference.get("ci95"):
        low, high = difference["ci95"]
        cell += f"; 95% CI {low:+.4f} to {high:+.4f}, p = {difference['p_value']:.3f}"
    if difference.get("documents_resampled"):
        resampled = difference["documents_resampled"]
        low, high = resampled["ci95"]
        cell += (f"; test documents resampled: 95% interval {low:+.4f} to {high:+.4f}, "
                 f"not ahead in {resampled['not_ahead']:.1%}")  # fmt: skip
    return cell + ")"


def choose(config, head, sweep) -> dict | None:
    """The sweep setting with the best validation metric on the first seed (None: no sweep run has a record)."""
    main = MAIN_METRICS[config["problem_type"]][0]
    scores = [{"setting": setting, f"validation_{main}": run["validation"][main]} for setting, run in sweep if run]
    if not scores:
        return None
    best = max(scores, key=lambda score: score[f"validation_{main}"])
    return {"setting": best["setting"], "sweep": scores}


def ran_on(seeds: list[int], devices: list[str]) -> str:
    """The table's "ran on" cell: the machine, or where the seeds ran on several, which seeds ran on which."""
    if len(set(devices)) == 1:
        return devices[0]
    seeds_of = {device: [str(seed) for seed, ran in zip(seeds, devices) if ran == device] for device in devices}
    return "; ".join(f"{device} (seed{'s' * (len(on) > 1)} {' '.join(on)})" for device, on in seeds_of.items())


def markdown(experiments) -> str:
    lines = []
    for experiment in experiments:
        names = experiment["metrics"]
        lines += [
            f"### {experiment['experiment']} ({experiment['problem_type']}, seeds {experiment['seeds']})", "",
            experiment["description"], "",
            "| head | chosen on validation | " + " | ".join(f"test {n}" for n in names) + " | "
            + " | ".join(f"validation {n}" for n in names)
            + " | seeds | best epochs (1 = first) | wall time per run (s) | ran on |",
            "|---|---|" + "---|" * (2 * len(names) + 4),
        ]  # fmt: skip
        for head, row in experiment["heads"].items():
            chosen = ", ".join(f"{k}={v}" for k, v in row["chosen"].items()) or "-"
            cells = [f"{row[f'test_{n}']['mean']:.4f} ± {row[f'test_{n}']['std']:.4f}" for n in names]
            cells += [f"{row[f'validation_{n}']['mean']:.4f} ± {row[f'validation_{n}']['std']:.4f}" for n in names]
            cells += [" ".join(map(str, row["seeds"])), " ".join(str(epoch + 1) for epoch in row["best_epochs"]),
                      f"{row['wall_seconds']['mean']:.0f}", ran_on(row["seeds"], row["devices"])]  # fmt: skip
            lines.append(f"| {head} | {chosen} | " + " | ".join(cells) + " |")
        if experiment["paired_differences"]:
            lines += ["", "Paired differences on test (then on validation), label attention minus baseline, per "
                      "seed (mean ± std; seeds where label attention is ahead; the paired t-test's 95% confidence "
                      "interval and p-value; for the main test metric also the gap's 95% interval with the test "
                      "documents resampled, and how often it is then not ahead):", ""]  # fmt: skip
            if experiment.get("baselines_from"):
                lines += [f"Baselines: {experiment['baselines_from']}'s runs (the same arguments, label attention's "
                          "own aside), at the settings its sweep chose.", ""]  # fmt: skip
            for head, differences in experiment["paired_differences"].items():
                cells = [paired_cell(n, d) for n, d in differences.items()]
                cells += [paired_cell(f"validation {n}", d)
                          for n, d in experiment["paired_differences_validation"][head].items()]  # fmt: skip
                seeds = next(iter(differences.values()))["seeds"] if differences else []
                lines.append(f"- vs {head} (seeds {seeds}): " + "; ".join(cells))
        if experiment.get("change_from_source"):
            lines += ["", f"Paired differences, this experiment minus {experiment['recipes_from']} (same head, setting "
                      "and seed; mean ± std; seeds where this one is ahead):", ""]  # fmt: skip
            for head, splits in experiment["change_from_source"].items():
                cells = [paired_cell(f"{split} {n}", d) for split, differences in splits.items()
                         for n, d in differences.items()]  # fmt: skip
                seeds = next(iter(splits["test"].values()))["seeds"] if splits["test"] else []
                lines.append(f"- {head} (seeds {seeds}): " + "; ".join(cells))
        args = ", ".join(f"{k}={v}" for k, v in experiment["train_args"].items())
        lines += ["", f"Training arguments (every head): {args}."]
        if experiment["sweep"]:
            if experiment.get("recipes_from"):
                lines.append(f"Each head's setting is the one {experiment['swept_by']}'s sweep chose for it:")
            else:
                lines.append(f"Swept on validation, seed {experiment['seeds'][0]}, the same grid for every head:")
            for head, row in experiment["heads"].items():
                scores = "; ".join(
                    (", ".join(f"{k}={v}" for k, v in score["setting"].items()) or "-")
                    + f": {next(value for key, value in score.items() if key != 'setting'):.4f}"
                    for score in row["sweep"]
                )
                missing = len(sweep_settings(experiment["sweep"])) - len(row["sweep"])
                lines.append(f"- {head} (validation {names[0]}): {scores}" + (f"; {missing} not run yet" if missing else ""))
        thresholds = {head: row["thresholds"] for head, row in experiment["heads"].items() if "thresholds" in row}
        if thresholds:
            lines += ["", "Decision rule, asked of validation alone (thresholds tuned on one half of validation, "
                      "scored on the other, both ways, every seed): held-out micro-F1 tuned / at 0.5:"]  # fmt: skip
            lines += [f"- {head}: {t['held_out_micro_f1_tuned']:.4f} / {t['held_out_micro_f1_at_0.5']:.4f}"
                      for head, t in thresholds.items()]  # fmt: skip
        if experiment["ablations"]:
            lines += ["", f"Label-attention ablations on its chosen recipe, seed {experiment['seeds'][0]} "
                      f"(reported, not adopted), {names[0]}:", "",
                      "| change | validation | test | best epoch (1 = first) |", "|---|---|---|---|"]  # fmt: skip
            for ablation in experiment["ablations"]:
                change = ", ".join(f"{k}={v}" for k, v in ablation["change"].items())
                lines.append(f"| {change} | {ablation['validation']:.4f} | {ablation['test']:.4f} | "
                             f"{ablation['best_epoch'] + 1} |")  # fmt: skip
        lines.append("")
    return "\n".join(lines)


def plot_learning_curves(experiments, path: Path):
    """Validation metric per epoch, each head: mean over seeds, shaded ± one standard deviation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(experiments), figsize=(5.5 * len(experiments), 4), squeeze=False)
    for axis, experiment in zip(axes[0], experiments):
        for head, row in experiment["heads"].items():
            length = max(len(curve) for curve in row["learning_curves"])
            # Early-stopped runs are shorter: each epoch is averaged over the seeds that reached it.
            epochs = [[curve[e] for curve in row["learning_curves"] if e < len(curve)] for e in range(length)]
            mean = np.array([np.mean(values) for values in epochs])
            std = np.array([np.std(values) for values in epochs])
            x = np.arange(1, length + 1)
            axis.plot(x, mean, marker="o", markersize=3, label=head)
            axis.fill_between(x, mean - std, mean + std, alpha=0.2)
        axis.set_title(experiment["experiment"])
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        axis.set_ylabel(f"validation {experiment['metrics'][0]}")
        axis.grid(alpha=0.3)
        if experiment["heads"]:  # none where no seed asked for has a run yet
            axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def comma_separated(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def whole_numbers(text: str) -> list[int]:
    """An argparse type: "1,2,3" -> [1, 2, 3]; anything else is a clear usage error, not a traceback."""
    try:
        numbers = [int(item) for item in comma_separated(text)]
    except ValueError:
        numbers = []
    if not numbers or min(numbers) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers from 1, got {text!r}")
    return numbers


def load_config(path: Path, named_by: tuple[str, ...] = ()) -> dict:
    """An experiment's config file, named after its stem; `recipes_from` and `baselines_from` name others in the same
    folder."""
    config = {**json.loads(path.read_text()), "name": path.stem}
    config["problem_type"] = json.loads((REPO / config["data_dir"] / "labels.json").read_text())["task"]
    for key in ("recipes_from", "baselines_from"):
        if key in config:
            source = path.with_name(f"{config[key]}.json")
            if not source.is_file():
                raise SystemExit(f"{path}: {key} names {config[key]!r}, but there is no {source}")
            chain = (*named_by, path.stem)
            if source.stem in chain:
                raise SystemExit(f"{path}: {key} goes round in a circle: {' -> '.join((*chain, source.stem))}")
            config[key] = load_config(source, chain)
    if "baselines_from" in config:
        check_baselines_pair(path, config)
        config["baseline_heads"] = [head for head in config["baselines_from"]["heads"]
                                    if head != LABEL_ATTENTION and head not in config["heads"]]  # fmt: skip
    return config


def check_baselines_pair(path: Path, config: dict):
    """Baselines borrowed from another experiment must have trained on the same data with the same arguments, the
    options only label attention reads aside: else the pairing would compare budgets, not heads."""
    from label_attention.train_accelerate import LABEL_ATTENTION_OPTIONS

    source = config["baselines_from"]
    ours, theirs = config["train_args"], source["train_args"]
    differing = sorted(key for key in ours.keys() | theirs.keys()
                       if key not in LABEL_ATTENTION_OPTIONS and ours.get(key) != theirs.get(key))  # fmt: skip
    if source["data_dir"] != config["data_dir"]:
        differing.insert(0, "data_dir")
    if differing:
        changes = ", ".join(f"{key} {theirs.get(key, source.get(key))!r} there, "
                            f"{ours.get(key, config.get(key))!r} here" for key in differing)  # fmt: skip
        raise SystemExit(f"{path}: baselines_from {source['name']!r} trained otherwise ({changes}); paired baselines "
                         "need the same data and arguments, label attention's own aside")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="+", help="Experiment config files (JSON).")
    parser.add_argument("--records-dir", default=str(RESULTS / "runs"), help="Each finished run's record (commit it).")
    parser.add_argument("--runs-dir", default=str(REPO / "benchmarks" / "runs"), help="Model folders (not kept).")
    parser.add_argument("--output", default=str(RESULTS / "comparison"), help="Path of the summary, no suffix.")
    parser.add_argument("--jobs", type=int, default=1, help="Runs at a time (e.g. several on one GPU).")
    parser.add_argument("--keep-models", action="store_true", help="Keep each run's model folder in --runs-dir.")
    parser.add_argument(
        "--resume", action="store_true",
        help="Save each run's training state in --runs-dir after every epoch, and go on from it: a run stopped "
             "part-way (e.g. when a session ended) resumes where it stopped. Its record names the machine that "
             "finished it.",
    )  # fmt: skip
    parser.add_argument(
        "--no-train", action="store_true",
        help="Summarise the records there are; train nothing (a comparison still missing runs says which seeds it has).",
    )  # fmt: skip
    parser.add_argument(
        "--override", action="append", default=[], metavar="KEY=VALUE",
        help="Override a training argument for every run (e.g. max_train_samples=8 for a smoke test).",
    )  # fmt: skip
    parser.add_argument("--heads", type=comma_separated, help="Comma-separated heads: only these of the configs'.")
    parser.add_argument(
        "--seeds", type=whole_numbers,
        help="Comma-separated seeds to train each head's chosen setting on, instead of the configs' (e.g. to add a "
             "seed, or 1 for a smoke test). A sweep still runs on its config's first seed: no setting is chosen anew.",
    )  # fmt: skip
    args = parser.parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.override)
    records_dir, runs_dir = Path(args.records_dir), Path(args.runs_dir)
    runner = Runner(records_dir, runs_dir, args.jobs, overrides, args.keep_models, not args.no_train, args.resume)
    configs = []
    for path in args.configs:
        config = load_config(Path(path))
        if args.heads:
            known = config["heads"] + config.get("baseline_heads", [])
            unknown = [head for head in args.heads if head not in known]
            if unknown:
                parser.error(f"{path} has no head {', '.join(unknown)} (its heads: {', '.join(known)})")
            config["heads"] = [head for head in args.heads if head in config["heads"]]
            if "baseline_heads" in config:
                config["baseline_heads"] = [head for head in args.heads if head in config["baseline_heads"]]
        if args.seeds:
            sweep_seed = [] if "recipes_from" in config else config["seeds"][:1]  # the seed its choice was made on
            config["seeds"] = sweep_seed + [seed for seed in args.seeds if seed not in sweep_seed]
        configs.append(config)

    # Each (config, head) is a chain, sweep -> choice -> seeds -> ablations; the chains share one pool of `--jobs`.
    def chain(config, head):
        swept = swept_by(config)
        settings = sweep_settings(sweep_of(config))
        sweep = runner.run_all([(swept, head, setting, swept["seeds"][0]) for setting in settings])
        chosen = choose(swept, head, zip(settings, sweep))
        if chosen is None:
            return None
        seeds = config["seeds"] if swept is not config else config["seeds"][1:]  # the sweep ran the first seed
        later = [(config, head, chosen["setting"], seed) for seed in seeds]
        if head == LABEL_ATTENTION:
            later += [(config, head, {**chosen["setting"], **change}, config["seeds"][0])
                      for change in config.get("ablations", [])]  # fmt: skip
        runner.run_all(later)
        return chosen

    chains = [(config, head) for config in configs for head in config["heads"]]
    with ThreadPoolExecutor(len(chains)) as chain_pool:
        choices = list(chain_pool.map(lambda pair: chain(*pair), chains))
    chosen = {config["name"]: {} for config in configs}
    for (config, head), choice in zip(chains, choices):
        chosen[config["name"]][head] = choice
    for config in configs:
        chosen[config["name"]].update(borrowed_baselines(config, runner))

    experiments = [compare(config, runner, chosen[config["name"]]) for config in configs]
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.output}.json").write_text(json.dumps(experiments, indent=2, default=str))
    Path(f"{args.output}.md").write_text(markdown(experiments))
    plot_learning_curves(experiments, Path(f"{args.output}.png"))
    print(markdown(experiments))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
