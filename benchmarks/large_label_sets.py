"""Large label sets: label attention with 10,000 labels on this machine, in inference and in training.

    python benchmarks/large_label_sets.py --output benchmarks/results/large_label_sets

Each figure from its own process (see `speed.py`): seconds per batch and peak resident memory for
- inference (label embeddings cached: the descriptions are encoded once, in slices);
- a training step re-encoding every description (the paper's scheme), and one re-encoding a random sample of
  them (`trained_labels_per_step`; the others come from a cache);
- the full block and the lighter one without the per-label feed-forward layer (`label_attention_feed_forward`);
- vanilla ([CLS] + linear) with as many outputs, for reference;
- inference time per document and peak memory by number of labels (`--label-counts`), against vanilla.
A configuration that does not fit in `--memory-limit-gib` (or fails) is recorded as such. Writes `<output>.json` and
`<output>.md`.
"""

import argparse
import json
import subprocess
import sys

import torch
from speed import cpu_name, encoder_and_name, measure_in_subprocess, write_results

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
    parser.add_argument("--label-counts", default="10,100,1000,10000", help="The inference sweep over label counts.")
    parser.add_argument("--memory-limit-gib", type=float, default=16, help="Address-space cap of each measurement.")
    parser.add_argument("--output", default="benchmarks/results/large_label_sets")
    args = parser.parse_args(argv)

    encoder, encoder_name = encoder_and_name(args.encoder)
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
            reason = (error.stderr or "").strip().splitlines()[-1:] or [f"exit code {error.returncode}"]
            row["error"] = f"failed: {reason[0][:160]}"
        results["rows"].append(row)
        print(json.dumps(row), flush=True)

    results["by_num_labels"] = []
    inference = dict(mode="inference", encoder=encoder, batch_size=args.batch_size, length=args.length,
                     steps=args.steps, warmup=args.warmup, memory_limit_gib=args.memory_limit_gib)  # fmt: skip
    for count in map(int, args.label_counts.split(",")):
        row = {"num_labels": count}
        for name, head, config in (("vanilla", "linear", None), ("label attention", "label-attention", {}),
                                   ("lighter block", "label-attention", {"label_attention_feed_forward": False})):
            measured = measure_in_subprocess(head=head, num_labels=count, config=config, **inference)
            row[name] = {"seconds_per_document": measured["seconds_per_batch"] / args.batch_size,
                         "peak_rss_mib": measured["peak_rss_mib"]}  # fmt: skip
            row[name]["ratio"] = row[name]["seconds_per_document"] / row["vanilla"]["seconds_per_document"]
        results["by_num_labels"].append(row)
        print(json.dumps(row), flush=True)

    write_results(args.output, results, markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
