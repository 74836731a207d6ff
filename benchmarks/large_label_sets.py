"""Large label sets: label attention with 10,000 labels on this machine, in inference and in training.

    python benchmarks/large_label_sets.py --output benchmarks/results/large_label_sets

Each figure from its own process (see `speed.py`): seconds per batch and peak resident memory for
- inference (label embeddings cached: the descriptions are encoded once, in slices);
- a training step re-encoding every description (the paper's scheme), and one re-encoding a random sample of
  them (`trained_labels_per_step`; the others come from a cache);
- the full block and the lighter one without the per-label feed-forward layer (`label_attention_feed_forward`);
- vanilla ([CLS] + linear) with as many outputs, for reference;
- inference time per document, peak memory and FLOPs per document (counted by torch) by number of labels
  (`--label-counts`), against vanilla; `--flops-only` adds the FLOPs to an existing `<output>.json` without timing.
A configuration that does not fit in `--memory-limit-gib` (or fails) is recorded as such. Writes `<output>.json` and
`<output>.md`.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch
from compare_heads import whole_numbers
from speed import cpu_name, encoder_and_name, make_step, measure_in_subprocess, model_flops, write_results

CASES = [  # (name, head, mode, label-attention config)
    ("label attention, full block", "label-attention", "inference", {}),
    ("label attention, lighter block", "label-attention", "inference", {"label_attention_feed_forward": False}),
    ("vanilla", "linear", "inference", None),
    ("label attention, every description re-encoded", "label-attention", "train", {}),
    ("label attention, {sample} descriptions re-encoded", "label-attention", "train", {"trained_labels_per_step": 0}),
    ("label attention, lighter block, {sample} re-encoded", "label-attention", "train",
     {"trained_labels_per_step": 0, "label_attention_feed_forward": False}),
    ("vanilla", "linear", "train", None),
]  # fmt: skip

SWEEP_MODELS = [  # (name, head, label-attention config) of the sweep over label counts
    ("vanilla", "linear", None),
    ("label attention", "label-attention", {}),
    ("lighter block", "label-attention", {"label_attention_feed_forward": False}),
]


def flops_per_document(encoder, head, num_labels, length, config) -> float:
    """FLOPs of one document's inference (label embeddings cached, as in the timings), counted by torch."""
    _, step = make_step(head, "inference", encoder, num_labels, 1, length, config)
    step()  # caches the label embeddings
    return model_flops(step)


def add_flops(rows, encoder, length):
    for row in rows:
        for name, head, config in SWEEP_MODELS:
            row[name]["flops_per_document"] = flops_per_document(encoder, head, row["num_labels"], length, config)


def failure_reason(stderr: str, returncode: int, memory_limit_gib: float) -> str:
    """A measurement's failure in a table cell: running out of the capped address space is said as such (torch's
    allocator message is long), anything else by the last line of its error output."""
    if "can't allocate memory" in stderr or "MemoryError" in stderr:
        return f"failed: out of memory under the {memory_limit_gib:g} GiB cap"
    last_line = stderr.strip().splitlines()[-1:] or [f"exit code {returncode}"]
    return f"failed: {last_line[0][:160]}"


def by_label_count_markdown(rows) -> list[str]:
    lines = [
        "",
        "Inference by number of labels (seconds per document; ratio to vanilla with as many outputs):",
        "",
        "| labels | label attention | ratio | peak RSS (MiB) | lighter block | ratio | peak RSS (MiB) | vanilla | "
        "peak RSS (MiB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        full, light, vanilla = row["label attention"], row["lighter block"], row["vanilla"]
        lines.append(
            f"| {row['num_labels']} | {full['seconds_per_document']:.4f} | {full['ratio']:.2f} | "
            f"{full['peak_rss_mib']:.0f} | {light['seconds_per_document']:.4f} | {light['ratio']:.2f} | "
            f"{light['peak_rss_mib']:.0f} | {vanilla['seconds_per_document']:.4f} | {vanilla['peak_rss_mib']:.0f} |"
        )
    if rows and all("flops_per_document" in row["vanilla"] for row in rows):
        lines += ["", "FLOPs per document (GFLOP, counted by torch; ratio to vanilla):", "",
                  "| labels | vanilla | label attention | ratio | lighter block | ratio |", "|---|---|---|---|---|---|"]
        for row in rows:
            vanilla, full, light = (row[name]["flops_per_document"] for name, _, _ in SWEEP_MODELS)
            lines.append(f"| {row['num_labels']} | {vanilla / 1e9:.2f} | {full / 1e9:.2f} | {full / vanilla:.2f} | "
                         f"{light / 1e9:.2f} | {light / vanilla:.2f} |")  # fmt: skip
    return lines


def markdown(results) -> str:
    lines = [
        f"Encoder: `{results['encoder_name']}`; {results['num_labels']} labels (synthetic descriptions); batch "
        f"{results['batch_size']}, {results['length']} tokens; {results['threads']} CPU threads; {results['cpu']}.",
        "",
        "| mode | model | seconds per batch | peak RSS (MiB) |",
        "|---|---|---|---|",
    ]
    for row in results["rows"]:
        if "error" in row:
            lines.append(f"| {row['mode']} | {row['name']} | {row['error']} | |")
        else:
            lines.append(
                f"| {row['mode']} | {row['name']} | {row['seconds_per_batch']:.2f} | {row['peak_rss_mib']:.0f} |"
            )
    lines += by_label_count_markdown(results.get("by_num_labels", []))
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default=None, help="Default: the bundled all-MiniLM-L6-v2.")
    parser.add_argument("--num-labels", type=int, default=10_000)
    parser.add_argument("--sample", type=int, default=256, help="trained_labels_per_step of the sampled cases.")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3, help="Timed steps per measurement.")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument(
        "--label-counts", type=whole_numbers, default="10,100,1000,10000", help="The inference sweep over label counts."
    )
    parser.add_argument("--memory-limit-gib", type=float, default=16, help="Address-space cap of each measurement.")
    parser.add_argument("--output", default="benchmarks/results/large_label_sets")
    parser.add_argument(
        "--flops-only", action="store_true",
        help="Only count FLOPs (no timing: any load will do) and add them to <output>.json.",
    )  # fmt: skip
    args = parser.parse_args(argv)

    encoder, encoder_name = encoder_and_name(args.encoder)
    if args.flops_only:
        path = Path(f"{args.output}.json")
        if not path.is_file():
            parser.error(f"--flops-only adds to an earlier run's results, and {path} does not exist.")
        results = json.loads(path.read_text())
        add_flops(results["by_num_labels"], encoder, results["length"])
        write_results(args.output, results, markdown(results))
        return 0
    results = {
        "encoder_name": encoder_name,
        "num_labels": args.num_labels,
        "batch_size": args.batch_size,
        "length": args.length,
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
        "rows": [],
    }
    for name, head, mode, config in CASES:
        if config and "trained_labels_per_step" in config:
            config = {**config, "trained_labels_per_step": args.sample}
        row = {"name": name.format(sample=args.sample), "mode": mode, "config": config}
        try:
            row.update(
                measure_in_subprocess(
                    head=head, mode=mode, encoder=encoder, num_labels=args.num_labels, batch_size=args.batch_size,
                    length=args.length, steps=args.steps, warmup=args.warmup, config=config,
                    memory_limit_gib=args.memory_limit_gib,
                )
            )  # fmt: skip
        except subprocess.CalledProcessError as error:  # e.g. out of memory under the cap
            row["error"] = failure_reason(error.stderr or "", error.returncode, args.memory_limit_gib)
        results["rows"].append(row)
        print(json.dumps(row), flush=True)

    results["by_num_labels"] = []
    inference = dict(mode="inference", encoder=encoder, batch_size=args.batch_size, length=args.length,
                     steps=args.steps, warmup=args.warmup, memory_limit_gib=args.memory_limit_gib)  # fmt: skip
    for count in args.label_counts:
        row = {"num_labels": count}
        for name, head, config in SWEEP_MODELS:
            measured = measure_in_subprocess(head=head, num_labels=count, config=config, **inference)
            row[name] = {"seconds_per_document": measured["seconds_per_batch"] / args.batch_size,
                         "peak_rss_mib": measured["peak_rss_mib"]}  # fmt: skip
            row[name]["ratio"] = row[name]["seconds_per_document"] / row["vanilla"]["seconds_per_document"]
        results["by_num_labels"].append(row)
        print(json.dumps(row), flush=True)
    add_flops(results["by_num_labels"], encoder, args.length)

    write_results(args.output, results, markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
