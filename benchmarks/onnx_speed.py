"""PyTorch against ONNX Runtime (fp32 and dynamically quantised int8) for a saved label-attention model, on CPU.

    python benchmarks/onnx_speed.py --output benchmarks/results/onnx_speed

In one run, with the same threads and the same tokenised batches for every runtime:
- documents per second at batch 1 and batch 16 (model time only: tokenisation, the same for all, is left out), on
  the first `--timing-documents` test documents, best of `--repeats` passes (runtimes interleaved, so that a burst
  of load elsewhere on the machine hits all of them), at each `--threads` intra-op thread count (default 2 and 1);
- the largest |logit difference| between ONNX Runtime fp32 and PyTorch over the whole test split;
- the test metric of each runtime (multi-label: micro-F1 at the model's decision thresholds, through
  `decisions_from_logits` and the local `metrics/` module; single-label: accuracy).
Writes `<output>.json` and `<output>.md`. Exports the model first (into a temporary folder, or reuses
`MODEL_DIR/onnx` with `--reuse-export`).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from speed import cpu_name, write_results

REPO = Path(__file__).resolve().parent.parent
METRICS_DIR = REPO / "metrics"
RUNTIMES = ("pytorch", "onnxruntime-fp32", "onnxruntime-int8")


def read_test_split(data_dir: Path, id2label: dict[int, str], problem_type: str):
    """Texts and gold targets (multi-hot `(n, num_labels)` or class ids `(n,)`) in the model's label order."""
    label_ids = {name: i for i, name in id2label.items()}
    texts, gold = [], []
    with open(data_dir / "test.jsonl", encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            record = json.loads(line)
            unknown = [name for name in record["labels"] if name not in label_ids]
            if unknown:
                raise SystemExit(f"{data_dir / 'test.jsonl'}:{number}: label {unknown[0]!r} is not one of the model's")
            texts.append(record["text"])
            if problem_type == "multi_label_classification":
                gold.append([int(id2label[i] in record["labels"]) for i in range(len(id2label))])
            else:
                gold.append(label_ids[record["labels"][0]])
    return texts, np.asarray(gold)


def batches(tokenizer, texts, batch_size, max_length, input_names):
    """Tokenised batches (numpy int64), each padded to its longest document, holding the graph's inputs."""
    out = []
    for start in range(0, len(texts), batch_size):
        encoded = tokenizer(texts[start : start + batch_size], padding=True, truncation=True, max_length=max_length,
                            return_tensors="np")  # fmt: skip
        batch = {}
        for name in input_names:
            value = encoded.get(name)
            batch[name] = np.zeros_like(encoded["input_ids"]) if value is None else value.astype(np.int64)
        out.append(batch)
    return out


def runners(model, sessions):
    def pytorch(batch):
        with torch.inference_mode():
            return model(**{name: torch.from_numpy(value) for name, value in batch.items()}).logits.numpy()

    def onnxruntime_run(session):
        return lambda batch: session.run(["logits"], batch)[0]

    return {"pytorch": pytorch, **{name: onnxruntime_run(session) for name, session in sessions.items()}}


def run_all(run, prepared):
    return np.concatenate([run(batch) for batch in prepared])


def metric(problem_type, logits, gold, thresholds, decisions_from_logits):
    import evaluate

    decisions = decisions_from_logits(torch.from_numpy(logits), problem_type, thresholds).numpy()
    module = evaluate.load(str(METRICS_DIR / problem_type))
    if problem_type == "multi_label_classification":
        result = module.compute(predictions=decisions.tolist(), references=gold.tolist())
        return {"name": "micro_f1", "value": result["micro_f1"], "macro_f1": result["macro_f1"]}
    result = module.compute(predictions=decisions.tolist(), references=gold.tolist(), num_labels=logits.shape[1])
    return {"name": "accuracy", "value": result["accuracy"], "macro_f1": result["macro_f1"]}


def markdown(results) -> str:
    speed = {(row["threads"], row["runtime"], row["batch_size"]): row for row in results["speed"]}
    sizes = sorted({row["batch_size"] for row in results["speed"]})
    metric_name = next(iter(results["metric"].values()))["name"]
    differing = results["decisions_differing"]
    lines = [
        f"Model: `{results['model']}` ({results['encoder']} encoder, {results['num_labels']} labels, "
        f"{results['problem_type']}); documents truncated to {results['max_length']} tokens, each batch padded to "
        f"its longest document. CPU: {results['cpu']} ({results['cpu_count']} cores), the same intra-op thread count "
        f"for every runtime (torch {results['versions']['torch']}, onnxruntime {results['versions']['onnxruntime']}).",
        "",
        f"Documents per second (model time, tokenisation left out) on the first {results['timing_documents']} test "
        f"documents, best of {results['repeats']} passes; in parentheses the ratio to PyTorch at the same batch size "
        "and thread count:",
        "",
        "| threads | runtime | " + " | ".join(f"batch {size}: documents/s" for size in sizes) + " | model file (MB) |",
        "|---|---|" + "---|" * len(sizes) + "---|",
    ]
    for threads in results["threads"]:
        for runtime in RUNTIMES:
            cells = []
            for size in sizes:
                row = speed[(threads, runtime, size)]
                cells.append(f"{row['documents_per_second']:.1f} ({row['ratio_to_pytorch']:.2f}×)")
            size_mb = results["model_size_mb"][runtime]
            lines.append(f"| {threads} | {runtime} | " + " | ".join(cells) + f" | {size_mb:.1f} |")
    lines += [
        "",
        f"Test split ({results['test_documents']} documents, batch 16): largest |logit difference| between ONNX "
        f"Runtime fp32 and PyTorch **{results['max_abs_logit_difference_fp32']:.2e}** (int8: "
        f"{results['max_abs_logit_difference_int8']:.2e}); decisions that differ from PyTorch's: fp32 "
        f"{differing['onnxruntime-fp32']}, int8 {differing['onnxruntime-int8']} (of {results['test_documents']}).",
        "",
        f"| runtime | test {metric_name} | test macro-F1 |",
        "|---|---|---|",
    ]
    for runtime in RUNTIMES:
        row = results["metric"][runtime]
        lines.append(f"| {runtime} | {row['value']:.4f} | {row['macro_f1']:.4f} |")
    lines += [
        "",
        f"Multi-label decisions at the model's thresholds ({'tuned' if results['thresholds_tuned'] else '0.5'}), by "
        "`decisions_from_logits`. int8: `onnxruntime.quantization.quantize_dynamic` of the MatMul weights (signed, "
        "per channel, reduce_range). " + results["note"],
    ]
    if len(results["threads"]) > 1:
        lines += [
            "",
            "Several thread counts: where other processes keep the cores busy, a runtime whose intra-op threads wait "
            "for one another (PyTorch's OpenMP pool) loses most at 2 threads; at 1 thread the runtimes compare "
            "without that effect.",
        ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default="outputs/hoc/model")
    parser.add_argument("--data-dir", default=str(Path("..") / "shared" / "data" / "hoc"))
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1],
                        help="intra-op thread counts to measure, each for every runtime (default: 2 1)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--timing-documents", type=int, default=96, help="test documents timed per pass")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes; the best is kept")
    parser.add_argument("--reuse-export", action="store_true",
                        help="use MODEL_DIR/onnx/{model,model_quantized}.onnx instead of exporting afresh")
    parser.add_argument("--note", default="The CPU was shared with other jobs (background trainings, test suites) "
                        "while this ran: speeds are noisy, the ratios (same passes) more reliable than the rates.")
    parser.add_argument("--output", default="benchmarks/results/onnx_speed")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        return benchmark(args, Path(scratch))


def benchmark(args, scratch: Path) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import onnxruntime
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from label_attention.modeling_label_attention import decisions_from_logits
    from label_attention.onnx_export import MODEL_FILE, QUANTIZED_FILE, export_onnx, ort_session

    model_dir = Path(args.model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, trust_remote_code=True,
                                                               dtype=torch.float32).eval()  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=True)
    config = model.config
    onnx_dir = model_dir / "onnx"
    if not (args.reuse_export and (onnx_dir / MODEL_FILE).is_file() and (onnx_dir / QUANTIZED_FILE).is_file()):
        started = time.perf_counter()
        onnx_dir = export_onnx(model_dir, scratch / "onnx", quantize=True).output_dir
        print(f"Exported to ONNX (fp32 and int8) in {time.perf_counter() - started:.0f} s", flush=True)
    files = {"onnxruntime-fp32": onnx_dir / MODEL_FILE, "onnxruntime-int8": onnx_dir / QUANTIZED_FILE}
    sizes = {name: path.stat().st_size / 1e6 for name, path in files.items()}
    weights = model_dir / "model.safetensors"
    sizes["pytorch"] = weights.stat().st_size / 1e6 if weights.is_file() else float("nan")

    def runners_for(threads):
        torch.set_num_threads(threads)
        return runners(model, {name: ort_session(path, threads=threads) for name, path in files.items()})

    input_names = [node.name for node in ort_session(files["onnxruntime-fp32"]).get_inputs()]
    id2label = {int(i): name for i, name in config.id2label.items()}
    texts, gold = read_test_split(Path(args.data_dir), id2label, config.problem_type)
    timing_texts = texts[: args.timing_documents]

    # Speed: the same batches for every runtime, runtimes interleaved within each pass; the best pass is kept.
    prepared = {size: batches(tokenizer, timing_texts, size, args.max_length, input_names) for size in args.batch_sizes}
    speed = []
    for threads in args.threads:
        run = runners_for(threads)
        for name in RUNTIMES:  # warm-up: first-call allocations, ONNX Runtime's kernel selection
            run[name](prepared[max(args.batch_sizes)][0])
        seconds = {(name, size): [] for name in RUNTIMES for size in args.batch_sizes}
        for repeat in range(args.repeats):
            for size in args.batch_sizes:
                for name in RUNTIMES:
                    started = time.perf_counter()
                    run_all(run[name], prepared[size])
                    seconds[(name, size)].append(time.perf_counter() - started)
                    rate = len(timing_texts) / seconds[(name, size)][-1]
                    print(f"{threads} threads, pass {repeat + 1}, batch {size}, {name}: {rate:.1f} documents/s",
                          flush=True)  # fmt: skip
        for size in args.batch_sizes:
            baseline = min(seconds[("pytorch", size)])
            for name in RUNTIMES:
                best = min(seconds[(name, size)])
                speed.append({
                    "threads": threads, "runtime": name, "batch_size": size,
                    "documents_per_second": len(timing_texts) / best, "ratio_to_pytorch": baseline / best,
                    "seconds_per_pass": seconds[(name, size)],
                    "median_documents_per_second": len(timing_texts) / statistics.median(seconds[(name, size)]),
                })  # fmt: skip

    # Quality: every test document, batch 16 (the first thread count; the logits do not depend on it beyond rounding).
    run = runners_for(args.threads[0])
    test_batches = batches(tokenizer, texts, 16, args.max_length, input_names)
    logits = {name: run_all(run[name], test_batches) for name in RUNTIMES}
    thresholds = config.decision_thresholds if config.problem_type == "multi_label_classification" else None
    decisions = {name: decisions_from_logits(torch.from_numpy(value), config.problem_type, thresholds).numpy()
                 for name, value in logits.items()}  # fmt: skip
    results = {
        "model": str(model_dir),
        "encoder": config.encoder.model_type,
        "num_labels": config.num_labels,
        "problem_type": config.problem_type,
        "thresholds_tuned": config.decision_thresholds is not None,
        "max_length": args.max_length,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "timing_documents": len(timing_texts),
        "repeats": args.repeats,
        "test_documents": len(texts),
        "speed": speed,
        "model_size_mb": sizes,
        "max_abs_logit_difference_fp32": float(np.abs(logits["onnxruntime-fp32"] - logits["pytorch"]).max()),
        "max_abs_logit_difference_int8": float(np.abs(logits["onnxruntime-int8"] - logits["pytorch"]).max()),
        "decisions_differing": {
            name: int((decisions[name] != decisions["pytorch"]).reshape(len(texts), -1).any(-1).sum())
            for name in RUNTIMES[1:]
        },
        "metric": {name: metric(config.problem_type, value, gold, thresholds, decisions_from_logits)
                   for name, value in logits.items()},  # fmt: skip
        "note": args.note,
    }
    write_results(args.output, results, markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
