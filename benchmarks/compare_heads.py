"""Reproduce the paper's comparison: label attention against vanilla fine-tuning of the same encoder.

    python benchmarks/compare_heads.py benchmarks/configs/hoc.json benchmarks/configs/mtc5.json

Each config file names a data folder, the heads, the seeds, the training arguments and a `sweep`: settings tried on
the first seed, the one with the best validation metric kept for all seeds. Every head gets the same arguments, sweep,
data and seeds. Each run is `train_accelerate.py` in its own process (checkpoint chosen and thresholds
tuned on validation only); finished runs are reused, so an interrupted comparison picks up where it stopped.
Writes `benchmarks/results/comparison.json` and `.md`: test metrics as mean and standard deviation over seeds, and
wall time.
"""

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAIN_METRICS = {
    "multi_label_classification": ("micro_f1", "macro_f1"),
    "single_label_classification": ("accuracy", "macro_f1"),
}


def run_one(config, head, seed, runs_dir: Path, train_args: dict) -> dict:
    setting = ",".join(f"{key}={train_args[key]}" for key in sorted(config.get("sweep", {})))
    output_dir = runs_dir / Path(config["path"]).stem / head / (setting or "default") / f"seed{seed}"
    results_file = output_dir / "eval_results.json"
    if not results_file.exists():
        command = [sys.executable, str(REPO / "train_accelerate.py"), "--data-dir", str(REPO / config["data_dir"])]
        command += ["--output-dir", str(output_dir), "--head", head, "--seed", str(seed)]
        for key, value in train_args.items():
            command += [f"--{key.replace('_', '-')}", str(value)]
        started = time.time()
        subprocess.run(command, check=True, cwd=REPO)
        results = json.loads(results_file.read_text())
        results["wall_seconds"] = round(time.time() - started, 1)
        results_file.write_text(json.dumps(results, indent=2))
    return json.loads(results_file.read_text())


def summarise(values):
    return {
        "mean": statistics.mean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": values,
    }


def choose_on_validation(config, head, runs_dir, overrides, main_metric):
    """Every setting of the config's `sweep` on the first seed; the one with the best validation metric wins.
    Both heads get the same sweep, so the same tuning effort."""
    sweep = config.get("sweep", {})
    settings = [dict(zip(sweep, values)) for values in itertools.product(*sweep.values())] or [{}]
    scores = []
    for setting in settings:
        train_args = {**config["train_args"], **setting, **overrides}
        run = run_one(config, head, config["seeds"][0], runs_dir, train_args)
        scores.append({"setting": setting, f"validation_{main_metric}": run["validation"][main_metric]})
    best = max(scores, key=lambda score: score[f"validation_{main_metric}"])
    return {**config["train_args"], **best["setting"], **overrides}, scores


def compare(config, runs_dir, overrides):
    problem_type = json.loads((REPO / config["data_dir"] / "labels.json").read_text())["task"]
    metric_names = MAIN_METRICS[problem_type]
    rows = {}
    for head in config["heads"]:
        train_args, sweep_scores = choose_on_validation(config, head, runs_dir, overrides, metric_names[0])
        runs = [run_one(config, head, seed, runs_dir, train_args) for seed in config["seeds"]]
        rows[head] = {
            "chosen": {key: train_args[key] for key in config.get("sweep", {})},
            "sweep": sweep_scores,
            **{f"test_{name}": summarise([run["test"][name] for run in runs]) for name in metric_names},
            **{f"validation_{name}": summarise([run["validation"][name] for run in runs]) for name in metric_names},
            "wall_seconds": summarise([run.get("wall_seconds", run["training_seconds"]) for run in runs]),
            "best_epochs": [run["best_epoch"] for run in runs],
        }
    return {"experiment": Path(config["path"]).stem, "problem_type": problem_type, "metrics": metric_names,
            "seeds": config["seeds"], "train_args": {**config["train_args"], **overrides},
            "sweep": config.get("sweep", {}), "heads": rows}  # fmt: skip


def markdown(experiments) -> str:
    lines = []
    for experiment in experiments:
        names = experiment["metrics"]
        lines += [
            f"### {experiment['experiment']} ({experiment['problem_type']}, seeds {experiment['seeds']})",
            "",
            "| head | chosen on validation | " + " | ".join(f"test {n}" for n in names) + " | "
            + " | ".join(f"validation {n}" for n in names) + " | wall time per run (s) |",
            "|---|---|" + "---|" * (2 * len(names) + 1),
        ]  # fmt: skip
        for head, row in experiment["heads"].items():
            chosen = ", ".join(f"{k}={v}" for k, v in row["chosen"].items()) or "-"
            cells = [f"{row[f'test_{n}']['mean']:.4f} ± {row[f'test_{n}']['std']:.4f}" for n in names]
            cells += [f"{row[f'validation_{n}']['mean']:.4f} ± {row[f'validation_{n}']['std']:.4f}" for n in names]
            cells.append(f"{row['wall_seconds']['mean']:.0f}")
            lines.append(f"| {head} | {chosen} | " + " | ".join(cells) + " |")
        args = ", ".join(f"{k}={v}" for k, v in experiment["train_args"].items())
        lines += ["", f"Training arguments (both heads): {args}."]
        if experiment["sweep"]:
            lines.append(f"Swept on validation, seed {experiment['seeds'][0]}, the same for both heads:")
            for head, row in experiment["heads"].items():
                scores = "; ".join(
                    ", ".join(f"{k}={v}" for k, v in score["setting"].items())
                    + f": {next(value for key, value in score.items() if key != 'setting'):.4f}"
                    for score in row["sweep"]
                )
                lines.append(f"- {head} (validation {names[0]}): {scores}")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="+", help="Experiment config files (JSON).")
    parser.add_argument("--runs-dir", default=str(REPO / "benchmarks" / "runs"))
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "comparison"))
    parser.add_argument(
        "--override", action="append", default=[], metavar="KEY=VALUE",
        help="Override a training argument for every run (e.g. max_train_samples=8 for a smoke test).",
    )  # fmt: skip
    parser.add_argument("--seeds", help="Comma-separated seeds instead of the configs' (e.g. for a smoke test).")
    args = parser.parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.override)
    experiments = []
    for path in args.configs:
        config = {**json.loads(Path(path).read_text()), "path": path}
        if args.seeds:
            config["seeds"] = [int(seed) for seed in args.seeds.split(",")]
        experiments.append(compare(config, Path(args.runs_dir), overrides))
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(experiments, indent=2))
    output.with_suffix(".md").write_text(markdown(experiments))
    print(markdown(experiments))
    return 0


if __name__ == "__main__":
    sys.exit(main())
