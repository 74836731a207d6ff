"""Long documents: label attention reading 512 to 4,096 tokens in windows, against vanilla truncated to 512.

    python benchmarks/long_documents.py --output benchmarks/results/long_documents

Inference on one document at a time (batch 1, label embeddings cached), each figure from its own process (see
`speed.py`): seconds per document, the cost per token as a ratio to that at the encoder's window (target: within 1.2
at 4,096 tokens, i.e. time grows linearly), and peak resident memory. Vanilla ([CLS] + linear) reads at most the
encoder's window, so its row is the price of truncating. Writes `<output>.json` and `<output>.md`.
"""

import argparse
import json
import sys

import torch
from compare_heads import whole_numbers
from speed import cpu_name, encoder_and_name, measure_in_subprocess, write_results


def markdown(results) -> str:
    lines = [
        f"Encoder: `{results['encoder_name']}` (window {results['window']} tokens); {results['num_labels']} labels; "
        f"batch 1; {results['threads']} CPU threads; {results['cpu']}.",
        "",
        "| tokens | label attention s/document | cost per token vs window | peak RSS (MiB) | "
        "vanilla (truncated) s/document | peak RSS (MiB) |",
        "|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        attention, vanilla = row["label-attention"], row["linear"]
        lines.append(
            f"| {row['length']} | {attention['seconds_per_batch']:.3f} | **{row['per_token_ratio']:.2f}** | "
            f"{attention['peak_rss_mib']:.0f} | {vanilla['seconds_per_batch']:.3f} | {vanilla['peak_rss_mib']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default=None, help="Default: the bundled all-MiniLM-L6-v2.")
    parser.add_argument(
        "--lengths", type=whole_numbers, default="512,1024,2048,4096",
        help="Document lengths; the first is the baseline.",
    )  # fmt: skip
    parser.add_argument("--window", type=int, default=512, help="The encoder's positions (vanilla reads this many).")
    parser.add_argument("--num-labels", type=int, default=10)
    parser.add_argument("--steps", type=int, default=10, help="Timed documents per measurement.")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--output", default="benchmarks/results/long_documents")
    args = parser.parse_args(argv)

    encoder, encoder_name = encoder_and_name(args.encoder)
    common = dict(encoder=encoder, mode="inference", num_labels=args.num_labels, batch_size=1, steps=args.steps,
                  warmup=args.warmup)  # fmt: skip
    results = {
        "encoder_name": encoder_name,
        "window": args.window,
        "num_labels": args.num_labels,
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
        "rows": [],
    }
    for length in args.lengths:
        row = {
            "length": length,
            "label-attention": measure_in_subprocess(head="label-attention", length=length, **common),
            "linear": measure_in_subprocess(head="linear", length=min(length, args.window), **common),
        }
        baseline = results["rows"][0] if results["rows"] else row
        per_token = row["label-attention"]["seconds_per_batch"] / length
        row["per_token_ratio"] = per_token / (baseline["label-attention"]["seconds_per_batch"] / baseline["length"])
        results["rows"].append(row)
        print(json.dumps(row), flush=True)

    write_results(args.output, results, markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
