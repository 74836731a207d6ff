"""Reproduce the paper's comparison: label attention against vanilla fine-tuning of the same encoder.

    python benchmarks/compare_heads.py benchmarks/configs/hoc.json benchmarks/configs/mtc5.json

Each config file names a data folder, the heads, the seeds and the training arguments; every head gets the same
arguments, data and seeds. Each run is `train_accelerate.py` in its own process (checkpoint chosen and thresholds
tuned on validation only); finished runs are reused, so an interrupted comparison picks up where it stopped.
Writes `benchmarks/results/comparison.json` and `.md`: test metrics as mean and standard deviation over seeds, and
wall time.
"""

import argparse
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


def run_one(config, head, seed, runs_dir: Path, overrides: dict) -> dict:
    output_dir = runs_dir / Path(config["path"]).stem / head / f"seed{seed}"
    results_file = output_dir / "eval_results.json"
    if not results_file.exists():
        train_args = {**config["train_args"], **overrides}
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


def compare(config, runs_dir, overrides):
    problem_type = json.loads((REPO / config["data_dir"] / "labels.json").read_text())["task"]
    metric_names = MAIN_METRICS[problem_type]
    rows = {}
    for head in config["heads"]:
        runs = [run_one(config, head, seed, runs_dir, overrides) for seed in config["seeds"]]
        rows[head] = {
            **{f"test_{name}": summarise([run["test"][name] for run in runs]) for name in metric_names},
            **{f"validation_{name}": summarise([run["validation"][name] for run in runs]) for name in metric_names},
            "wall_seconds": summarise([run.get("wall_seconds", run["training_seconds"]) for run in runs]),
            "best_epochs": [run["best_epoch"] for run in runs],
        }
    return {"experiment": Path(config["path"]).stem, "problem_type": problem_type, "metrics": metric_names,
            "seeds": config["seeds"], "train_args": {**config["train_args"], **overrides}, "heads": rows}  # fmt: skip


def markdown(experiments) -> str:
    lines = []
    for experiment in experiments:
        names = experiment["metrics"]
        lines += [
            f"### {experiment['experiment']} ({experiment['problem_type']}, seeds {experiment['seeds']})",
            "",
            "| head | " + " | ".join(f"test {n}" for n in names) + " | "
            + " | ".join(f"validation {n}" for n in names) + " | wall time per run (s) |",
            "|---|" + "---|" * (2 * len(names) + 1),
        ]  # fmt: skip
        for head, row in experiment["heads"].items():
            cells = [f"{row[f'test_{n}']['mean']:.4f} ± {row[f'test_{n}']['std']:.4f}" for n in names]
            cells += [f"{row[f'validation_{n}']['mean']:.4f} ± {row[f'validation_{n}']['std']:.4f}" for n in names]
            cells.append(f"{row['wall_seconds']['mean']:.0f}")
            lines.append(f"| {head} | " + " | ".join(cells) + " |")
        args = ", ".join(f"{k}={v}" for k, v in experiment["train_args"].items())
        lines += ["", f"Training arguments (both heads): {args}.", ""]
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
