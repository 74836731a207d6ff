"""Speed and memory of label attention against the vanilla linear head, measured in one run.

    python benchmarks/speed.py --output benchmarks/results/speed

Measures, at equal batch size and document length, with the same encoder:
- training tokens per second (label descriptions re-encoded at every step, the paper's scheme);
- inference documents per second (label embeddings cached);
- peak memory (resident set size of a fresh process per measurement);
- the overhead of label attention as a ratio to vanilla (targets: <= 1.10 at inference, <= 1.25 in training);
- how inference time grows with the number of labels (synthetic descriptions) and with the document length.
Writes `<output>.json` and `<output>.md`.
"""

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from label_attention import LabelAttentionForSequenceClassification

WORDS = "cell tumour growth signal immune vessel energy genome death invasion repair division".split()


def cpu_name() -> str:
    """The CPU's model name, for the tables (timings differ between machines)."""
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def encoder_and_name(encoder: str | None) -> tuple[str, str]:
    """The encoder to time (`--encoder`, else the bundled one, as training chooses it) and its name for the tables."""
    from label_attention.train_accelerate import default_encoder

    return (str(encoder), encoder) if encoder else (str(default_encoder()), "all-MiniLM-L6-v2")


def write_results(output, results: dict, table: str):
    """`<output>.json` and `<output>.md`, and the table on stdout."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    output.with_suffix(".md").write_text(table)
    print(table)


def synthetic_labels(count):
    names = [f"label {i}" for i in range(count)]
    descriptions = [f"{name}: " + " ".join(WORDS[(i + j) % len(WORDS)] for j in range(8)) for i, name in enumerate(names)]
    return names, descriptions


def build(head, encoder, num_labels, config=None):
    """The model to time; `config`: label-attention config arguments (e.g. the lighter block)."""
    names, descriptions = synthetic_labels(num_labels)
    if head == "label-attention":
        model, _ = LabelAttentionForSequenceClassification.from_encoder_pretrained(
            encoder, names, descriptions, **(config or {})
        )
    else:
        model = AutoModelForSequenceClassification.from_pretrained(
            encoder, num_labels=num_labels, problem_type="multi_label_classification"
        )
    return model


def batch_of(tokenizer, batch_size, length):
    text = " ".join(WORDS * (length // len(WORDS) + 1))
    return tokenizer([text] * batch_size, padding="max_length", truncation=True, max_length=length, return_tensors="pt")


def time_steps(step, steps, warmup):
    for _ in range(warmup):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - started) / steps


def measure(head, mode, encoder, num_labels, batch_size, length, steps, warmup, config=None):
    """One measurement, meant to run in its own process so that peak memory is its own."""
    torch.manual_seed(0)
    model = build(head, encoder, num_labels, config)
    inputs = batch_of(AutoTokenizer.from_pretrained(encoder), batch_size, length)
    if mode == "train":
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
        labels = torch.zeros(batch_size, num_labels)

        def step():
            model(**inputs, labels=labels).loss.backward()
            optimizer.step()
            optimizer.zero_grad()

        seconds = time_steps(step, steps, warmup)
        rate = {"tokens_per_second": batch_size * length / seconds}
    else:
        model.eval()

        def step():
            with torch.no_grad():
                model(**inputs)

        seconds = time_steps(step, steps, warmup)
        rate = {"documents_per_second": batch_size / seconds}
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds_per_batch": seconds, "peak_rss_mib": peak_mib, **rate}


def measure_in_subprocess(memory_limit_gib=None, **kwargs):
    """`measure(**kwargs)` in a fresh process; `memory_limit_gib` caps its address space, so that a configuration
    too large for the machine fails alone (CalledProcessError) instead of calling the kernel's OOM killer."""

    def limit_memory():
        limit = int(memory_limit_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    command = [sys.executable, __file__, "--measure", json.dumps(kwargs)]
    output = subprocess.run(
        command, check=True, capture_output=True, text=True, preexec_fn=limit_memory if memory_limit_gib else None
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def markdown(results):
    lines = [
        f"Encoder: `{results['encoder_name']}`; batch {results['batch_size']}, length {results['length']} tokens, "
        f"{results['num_labels']} labels; {results['threads']} CPU threads; `{results['device']}`.",
        "",
        "| head | training tokens/s | inference documents/s | peak RSS training (MiB) | peak RSS inference (MiB) |",
        "|---|---|---|---|---|",
    ]
    for head in ("linear", "label-attention"):
        train, infer = results["train"][head], results["inference"][head]
        lines.append(
            f"| {head} | {train['tokens_per_second']:.0f} | {infer['documents_per_second']:.1f} | "
            f"{train['peak_rss_mib']:.0f} | {infer['peak_rss_mib']:.0f} |"
        )
    ratios = results["overhead"]
    lines += [
        "",
        f"Label-attention time per batch as a ratio to vanilla: training **{ratios['train']:.3f}** (target <= 1.25), "
        f"inference **{ratios['inference']:.3f}** (target <= 1.10).",
        "",
        "Inference time per batch (label attention, cached label embeddings) by number of labels:",
        "",
        "| labels | seconds per batch | ratio to vanilla with as many outputs |",
        "|---|---|---|",
    ]
    for row in results["by_num_labels"]:
        lines.append(f"| {row['num_labels']} | {row['seconds_per_batch']:.3f} | {row['ratio_to_linear']:.3f} |")
    lines += ["", "Inference time per batch by document length:", "", "| length | linear | label attention | ratio |"]
    lines.append("|---|---|---|---|")
    for row in results["by_length"]:
        lines.append(
            f"| {row['length']} | {row['linear']:.3f} | {row['label-attention']:.3f} | {row['ratio']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default=None, help="Default: the bundled all-MiniLM-L6-v2.")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--num-labels", type=int, default=10)
    parser.add_argument("--steps", type=int, default=10, help="Timed steps per measurement.")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--label-counts", default="10,100,1000,5000")
    parser.add_argument("--lengths", default="128,256,512")
    parser.add_argument("--output", default="benchmarks/results/speed")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(**json.loads(args.measure))))
        return 0

    encoder, encoder_name = encoder_and_name(args.encoder)
    common = dict(encoder=encoder, steps=args.steps, warmup=args.warmup)
    results = {
        "encoder_name": encoder_name,
        "batch_size": args.batch_size,
        "length": args.length,
        "num_labels": args.num_labels,
        "threads": torch.get_num_threads(),
        "device": "cpu",
        "train": {},
        "inference": {},
    }
    for head in ("linear", "label-attention"):
        for mode, key in (("train", "train"), ("inference", "inference")):
            results[key][head] = measure_in_subprocess(
                head=head, mode=mode, num_labels=args.num_labels, batch_size=args.batch_size, length=args.length,
                **common,
            )  # fmt: skip
            print(f"{head} {mode}: {results[key][head]}", flush=True)
    results["overhead"] = {
        mode: results[mode]["label-attention"]["seconds_per_batch"] / results[mode]["linear"]["seconds_per_batch"]
        for mode in ("train", "inference")
    }
    results["by_num_labels"] = []
    for count in map(int, args.label_counts.split(",")):
        timings = {
            head: measure_in_subprocess(
                head=head, mode="inference", num_labels=count, batch_size=args.batch_size, length=args.length, **common
            )["seconds_per_batch"]
            for head in ("linear", "label-attention")
        }
        results["by_num_labels"].append(
            {"num_labels": count, "seconds_per_batch": timings["label-attention"],
             "ratio_to_linear": timings["label-attention"] / timings["linear"]}
        )  # fmt: skip
        print(results["by_num_labels"][-1], flush=True)
    results["by_length"] = []
    for length in map(int, args.lengths.split(",")):
        row = {"length": length}
        for head in ("linear", "label-attention"):
            row[head] = measure_in_subprocess(
                head=head, mode="inference", num_labels=args.num_labels, batch_size=args.batch_size, length=length,
                **common,
            )["seconds_per_batch"]  # fmt: skip
        row["ratio"] = row["label-attention"] / row["linear"]
        results["by_length"].append(row)
        print(row, flush=True)

    write_results(args.output, results, markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
