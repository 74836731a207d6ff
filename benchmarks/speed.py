"""Speed and memory of label attention against the vanilla linear head, measured in one run.

    python benchmarks/speed.py --output benchmarks/results/speed

Measures, at equal batch size and document length, with the same encoder, the steps of the two heads alternated in
one process (the load of a shared machine then falls on both alike):
- training tokens per second (label descriptions re-encoded at every step, the paper's scheme);
- inference documents per second (label embeddings cached);
- peak memory (resident set size of a fresh process per head and mode);
- the overhead of label attention as a ratio to vanilla (targets: <= 1.10 at inference, <= 1.15 in training);
- model FLOPs per second (counted by torch on the batch measured) as a fraction of the machine's peak, measured in the
  same run by large fp32 matrix products (MFU), and the bf16 peak where the CPU has native bf16;
- training with the encoder's attention dropout off (`--encoder-attention-dropout 0`, `train_accelerate.py`'s
  default), against the encoder's own (0.1 for BERT; the first table);
- where the CPU has native bf16 (AVX512-BF16 or AMX; `--bf16 always` measures it anyway), the same training step under
  bf16 autocast (`--mixed-precision bf16`) against fp32: which precision trains faster on this CPU;
- how inference time grows with the number of labels (synthetic descriptions) and with the document length.
Writes `<output>.json` and `<output>.md`.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from compare_heads import whole_numbers
from torch.utils import flop_counter
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from label_attention import LabelAttentionForSequenceClassification

HEADS = ("linear", "label-attention")
WORDS = "cell tumour growth signal immune vessel energy genome death invasion repair division".split()
# The CPU flags that set the peak of matrix products: vector width (AVX2, AVX-512) and native bf16 (AVX512-BF16, AMX).
MATMUL_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
# torch's FLOP counter knows the GPU kernels of scaled_dot_product_attention but not the CPU one that inference runs
# (torch 2.13), which would leave the encoder's attention out of MFU: counted with the same formulas (unwrapped, as
# the counter wraps the formulas it is given).
CPU_ATTENTION_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: flop_counter.sdpa_flop.__wrapped__,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: flop_counter.sdpa_backward_flop.__wrapped__,
}


def cpuinfo(field: str) -> str | None:
    """The first value of `field` in /proc/cpuinfo (None without that file or field)."""
    path = Path("/proc/cpuinfo")
    for line in path.read_text().splitlines() if path.exists() else []:
        name, _, value = line.partition(":")
        if name.strip() == field:
            return value.strip()
    return None


def cpu_name() -> str:
    """The CPU's model name, for the tables (timings differ between machines)."""
    return cpuinfo("model name") or platform.processor() or "unknown CPU"


def cpu_flags() -> list[str]:
    """Which of `MATMUL_FLAGS` this CPU has."""
    flags = set((cpuinfo("flags") or "").split())
    return [flag for flag in MATMUL_FLAGS if flag in flags]


def peak_flops(dtype=torch.float32, size=4096, repeats=5) -> float:
    """FLOP/s of the fastest of `repeats` products of two `size` x `size` matrices, at the current thread count: what
    this machine's matrix products reach, the denominator of MFU."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)

    def product():
        return a @ b

    product()  # warm-up
    return 2 * size**3 / min(time_steps(product, steps=1, warmup=0) for _ in range(repeats))


def model_flops(step) -> int:
    """FLOPs of one call of `step` (matrix products and attention), counted by torch as it runs."""
    counter = flop_counter.FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS)
    with counter:
        step()
    return counter.get_total_flops()


def encoder_and_name(encoder: str | None) -> tuple[str, str]:
    """The encoder to time (`--encoder`, else the bundled one, as training chooses it) and its name for the tables."""
    from label_attention.train_accelerate import default_encoder

    return (str(encoder), encoder) if encoder else (str(default_encoder()), "all-MiniLM-L6-v2")


def write_results(output, results: dict, table: str):
    """`<output>.json` and `<output>.md`, and the table on stdout."""
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{output}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    Path(f"{output}.md").write_text(table)
    print(table)


def synthetic_labels(count):
    names = [f"label {i}" for i in range(count)]
    descriptions = [f"{name}: " + " ".join(WORDS[(i + j) % len(WORDS)] for j in range(8)) for i, name in enumerate(names)]
    return names, descriptions


def build(head, encoder, num_labels, config=None, encoder_kwargs=None):
    """The model to time; `config`: label-attention config arguments (e.g. the lighter block); `encoder_kwargs`:
    changes to the encoder's config (e.g. its attention dropout)."""
    names, descriptions = synthetic_labels(num_labels)
    if head == "label-attention":
        model, _ = LabelAttentionForSequenceClassification.from_encoder_pretrained(
            encoder, names, descriptions, encoder_kwargs=encoder_kwargs, **(config or {})
        )
    else:
        model = AutoModelForSequenceClassification.from_pretrained(
            encoder, num_labels=num_labels, problem_type="multi_label_classification", **(encoder_kwargs or {})
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


def peak_rss_mib() -> float:
    """This process's peak resident memory. Linux's `ru_maxrss` starts from the parent's at the fork that made this
    process (a measurement would report at least the benchmark's own memory); `VmHWM` is this process's alone."""
    status = Path("/proc/self/status")
    for line in status.read_text().splitlines() if status.exists() else []:
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_step(head, mode, encoder, num_labels, batch_size, length, config=None, encoder_kwargs=None, autocast=None):
    """A fresh model and its step: one training step (forward, backward, AdamW) or one inference batch; `autocast`: a
    dtype to run the forward pass in, as `--mixed-precision` does (fp32 weights and optimiser)."""
    torch.manual_seed(0)
    model = build(head, encoder, num_labels, config, encoder_kwargs)
    inputs = batch_of(AutoTokenizer.from_pretrained(encoder), batch_size, length)
    if mode == "train":
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
        labels = torch.zeros(batch_size, num_labels)

        def step():
            with torch.autocast("cpu", dtype=autocast or torch.bfloat16, enabled=autocast is not None):
                loss = model(**inputs, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()

    else:
        model.eval()

        def step():
            with torch.no_grad():
                model(**inputs)

    return model, step


def same_models_as(results: dict, mode: str, baseline: str):
    """`mode` timed the same models as `baseline` another way: their model FLOPs are the baseline's (torch counts
    what the kernels run, e.g. the fused attention's recomputed scores in its backward: kept as
    `counted_flops_per_batch`), and their speed-up is over it."""
    for head, measured in results[mode].items():
        measured["counted_flops_per_batch"] = measured["flops_per_batch"]
        measured["flops_per_batch"] = results[baseline][head]["flops_per_batch"]
        measured["speedup"] = results[baseline][head]["seconds_per_batch"] / measured["seconds_per_batch"]


def rates(mode, batch_size, length, seconds) -> dict:
    """Seconds per batch, and tokens (training) or documents (inference) per second."""
    if mode == "train":
        return {"seconds_per_batch": seconds, "tokens_per_second": batch_size * length / seconds}
    return {"seconds_per_batch": seconds, "documents_per_second": batch_size / seconds}


def measure(head, mode, encoder, num_labels, batch_size, length, steps, warmup, config=None):
    """One measurement, meant to run in its own process so that peak memory is its own."""
    _, step = make_step(head, mode, encoder, num_labels, batch_size, length, config)
    seconds = time_steps(step, steps, warmup)
    return {"peak_rss_mib": peak_rss_mib(), **rates(mode, batch_size, length, seconds)}


def measure_heads(mode, encoder, num_labels, batch_size, length, steps, warmup, encoder_kwargs=None, autocast=None):
    """Both heads in this process, their timed steps alternated (A B A B ...), so that the changing load of a shared
    machine falls on both alike: per head the median seconds per batch, the FLOPs of one batch (counted after the
    timed steps: a label-attention model in eval mode has its label embeddings cached) and the encoder's attention."""
    from label_attention.train_accelerate import encoder_of

    made = {head: make_step(head, mode, encoder, num_labels, batch_size, length, encoder_kwargs=encoder_kwargs,
                            autocast=autocast)
            for head in HEADS}  # fmt: skip
    for _ in range(warmup):
        for _, step in made.values():
            step()
    seconds = {head: [] for head in HEADS}
    for _ in range(steps):
        for head, (_, step) in made.items():
            seconds[head].append(time_steps(step, steps=1, warmup=0))
    return {
        head: {
            **rates(mode, batch_size, length, statistics.median(seconds[head])),
            "flops_per_batch": model_flops(step),
            "attn_implementation": encoder_of(model).config._attn_implementation,
        }
        for head, (model, step) in made.items()
    }


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
    size = results["peak_matrix_size"]
    peaks = ", ".join(f"{dtype} {peak / 1e9:.0f} GFLOP/s" for dtype, peak in results["peak_flops_per_second"].items())
    attention = ", ".join(sorted({measured["attn_implementation"] for measured in results["train"].values()}))
    lines = [
        f"Encoder: `{results['encoder_name']}` (attention: `{attention}`); batch {results['batch_size']}, "
        f"length {results['length']} tokens, {results['num_labels']} labels; {results['threads']} CPU threads "
        f"(OMP_WAIT_POLICY {results['omp_wait_policy']}) of {results['cpu']} ({', '.join(results['cpu_flags'])}); "
        f"torch {results['torch']}.",
        "",
        f"Peak of this machine (products of {size} x {size} matrices, same threads; fp32: the best of "
        f"{len(results['fp32_peak_measurements'])} measurements around the others): {peaks}. MFU: model FLOPs per "
        "second (counted by torch on the batch measured) as a fraction of the fp32 peak.",
        "",
        "| head | training tokens/s (the encoder's own attention dropout) | training MFU | inference documents/s "
        "| inference MFU | peak RSS training (MiB) | peak RSS inference (MiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for head in HEADS:
        train, infer = results["train"][head], results["inference"][head]
        lines.append(
            f"| {head} | {train['tokens_per_second']:.0f} | {train['mfu']:.2f} | {infer['documents_per_second']:.1f} | "
            f"{infer['mfu']:.2f} | {train['peak_rss_mib']:.0f} | {infer['peak_rss_mib']:.0f} |"
        )
    ratios = results["overhead"]
    lines += [
        "",
        f"Label-attention time per batch as a ratio to vanilla: training **{ratios['train']:.3f}** (target <= 1.15), "
        f"inference **{ratios['inference']:.3f}** (target <= 1.10).",
    ]
    if "train_without_attention_dropout" in results:
        lines += ["", "Training with the encoder's attention dropout off (`--encoder-attention-dropout 0`, the training "
                  "default), same run:", "", "| head | tokens/s | MFU | speed-up over the encoder's own dropout |",
                  "|---|---|---|---|"]  # fmt: skip
        for head in HEADS:
            measured = results["train_without_attention_dropout"][head]
            lines.append(f"| {head} | {measured['tokens_per_second']:.0f} | {measured['mfu']:.2f} | "
                         f"{measured['speedup']:.2f} |")  # fmt: skip
    if "train_bf16" in results:
        native = "native" if results["native_bf16"] else "emulated: no AVX512-BF16 or AMX"
        lines += ["", f"Training under bf16 autocast (`--mixed-precision bf16`; bf16 on this CPU: {native}), attention "
                  "dropout off, same run:", "", "| head | tokens/s | speed-up over fp32 | MFU of the bf16 peak |",
                  "|---|---|---|---|"]  # fmt: skip
        for head in HEADS:
            measured = results["train_bf16"][head]
            mfu = "—" if measured["mfu_bf16_peak"] is None else f"{measured['mfu_bf16_peak']:.2f}"
            lines.append(f"| {head} | {measured['tokens_per_second']:.0f} | {measured['speedup']:.2f} | {mfu} |")
    lines += ["", "Inference time per batch (label attention, cached label embeddings) by number of labels:", "",
              "| labels | seconds per batch | ratio to vanilla with as many outputs |", "|---|---|---|"]  # fmt: skip
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
    parser.add_argument("--label-counts", type=whole_numbers, default="10,100,1000,5000")
    parser.add_argument("--lengths", type=whole_numbers, default="128,256,512")
    parser.add_argument("--peak-size", type=int, default=4096, help="Size of the matrices that measure the peak.")
    parser.add_argument(
        "--bf16", choices=("auto", "always"), default="auto",
        help="Time training under bf16 autocast: auto, where the CPU has native bf16 (emulated, a step takes many "
        "times longer); always, even where it is emulated.",
    )  # fmt: skip
    parser.add_argument("--output", default="benchmarks/results/speed")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(**json.loads(args.measure))))
        return 0

    from label_attention.train_accelerate import cpu_has_native_bf16, encoder_overrides

    encoder, encoder_name = encoder_and_name(args.encoder)
    common = dict(encoder=encoder, batch_size=args.batch_size, warmup=args.warmup)
    results = {
        "encoder_name": encoder_name,
        "batch_size": args.batch_size,
        "length": args.length,
        "num_labels": args.num_labels,
        "threads": torch.get_num_threads(),
        # On cores shared with other processes, threads that spin while they wait (OpenMP's default) slow every step.
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "device": "cpu",
        "cpu": cpu_name(),
        "cpu_flags": cpu_flags(),
        "torch": torch.__version__,
        "peak_matrix_size": args.peak_size,
    }
    # The peak is measured around the measurements, at their thread count, and the best kept: the load of a shared
    # machine changes, and the best its matrix products reach is what it can do.
    fp32_peaks = [peak_flops(torch.float32, args.peak_size)]
    for mode in ("train", "inference"):
        results[mode] = measure_heads(mode, num_labels=args.num_labels, length=args.length, steps=args.steps, **common)
        fp32_peaks.append(peak_flops(torch.float32, args.peak_size))
        for head in HEADS:  # peak memory: a fresh process per head, for as many steps as it takes to reach it
            memory = measure_in_subprocess(
                head=head, mode=mode, num_labels=args.num_labels, length=args.length, steps=1, **common
            )
            results[mode][head]["peak_rss_mib"] = memory["peak_rss_mib"]
        print(f"{mode}: {results[mode]}", flush=True)
    no_dropout = encoder_overrides(encoder, attention_dropout=0.0)
    results["train_without_attention_dropout"] = measure_heads(
        "train", num_labels=args.num_labels, length=args.length, steps=args.steps, encoder_kwargs=no_dropout, **common
    )
    fp32_peaks.append(peak_flops(torch.float32, args.peak_size))
    results["fp32_peak_measurements"] = fp32_peaks
    results["peak_flops_per_second"] = {"fp32": max(fp32_peaks)}
    results["native_bf16"] = cpu_has_native_bf16()
    if results["native_bf16"]:  # emulated bf16 is no peak of the machine's
        results["peak_flops_per_second"]["bf16"] = peak_flops(torch.bfloat16, args.peak_size)
    if results["native_bf16"] or args.bf16 == "always":
        results["train_bf16"] = measure_heads(
            "train", num_labels=args.num_labels, length=args.length, steps=args.steps, encoder_kwargs=no_dropout,
            autocast=torch.bfloat16, **common,
        )  # fmt: skip
    print(f"{results['cpu']} ({' '.join(results['cpu_flags'])}): peak {results['peak_flops_per_second']}", flush=True)
    same_models_as(results, "train_without_attention_dropout", "train")
    if "train_bf16" in results:
        same_models_as(results, "train_bf16", "train_without_attention_dropout")  # fp32 as bf16 ran: no dropout
        bf16_peak = results["peak_flops_per_second"].get("bf16")  # none where bf16 is emulated
        for measured in results["train_bf16"].values():
            flops_per_second = measured["flops_per_batch"] / measured["seconds_per_batch"]
            measured["mfu_bf16_peak"] = flops_per_second / bf16_peak if bf16_peak else None
    for mode in ("train", "inference", "train_without_attention_dropout"):
        for measured in results[mode].values():
            measured["mfu"] = measured["flops_per_batch"] / measured["seconds_per_batch"] / max(fp32_peaks)
    results["overhead"] = {
        mode: results[mode]["label-attention"]["seconds_per_batch"] / results[mode]["linear"]["seconds_per_batch"]
        for mode in ("train", "inference")
    }
    results["by_num_labels"] = []
    for count in args.label_counts:
        timings = measure_heads("inference", num_labels=count, length=args.length, steps=args.steps, **common)
        seconds = {head: timings[head]["seconds_per_batch"] for head in HEADS}
        results["by_num_labels"].append(
            {"num_labels": count, "seconds_per_batch": seconds["label-attention"],
             "ratio_to_linear": seconds["label-attention"] / seconds["linear"]}
        )  # fmt: skip
        print(results["by_num_labels"][-1], flush=True)
    results["by_length"] = []
    for length in args.lengths:
        timings = measure_heads("inference", num_labels=args.num_labels, length=length, steps=args.steps, **common)
        row = {"length": length, **{head: timings[head]["seconds_per_batch"] for head in HEADS}}
        row["ratio"] = row["label-attention"] / row["linear"]
        results["by_length"].append(row)
        print(row, flush=True)

    write_results(args.output, results, markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
