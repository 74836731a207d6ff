"""Explanations from the label-attention weights: which words each label looked at.

A label-attention model lets every label attend over the document's tokens before it scores the label, so the
attention weights say, for each label, which words it read (Nguyen and Ji, arXiv 2108.11809). This module turns them
into per-label rankings of the document's words, with character offsets into the original text, and renders them.

Python API:

    from label_attention.explain import load, explain, render_html, render_heatmap

    model, tokenizer = load("path/to/saved-model")        # or a Hub repo id (trust_remote_code=True)
    [doc] = explain(model, tokenizer, ["Tumour cells evade the immune system."], top_k=5)
    for label in doc.labels:                               # every label, in id2label order
        print(label.label, label.score, label.predicted)
        for word in label.words:                           # ranked, heaviest first
            print(word.word, word.weight, word.start, word.end)
    open("report.html", "w").write(render_html([doc]))    # one highlighted section per predicted label
    render_heatmap(doc, "heatmap.png")                     # labels x words

Command line (console script `label-attention-explain`, or `python -m label_attention.explain`):

    label-attention-explain --model DIR "some text" ["another text" ...]   # top words per label
    label-attention-explain --model DIR --input docs.jsonl --output report.html
    label-attention-explain --model DIR "some text" --heatmap heatmap.png --json

How the weights are combined (see `combine_attentions`): each block's weights are averaged over its heads, then
the per-block maps are averaged over blocks (or one block is taken, `block=k`); a model with the shared scorer
(`label_scorer="shared"`) adds the scorer's own attention, which its logits read, as one more map after the blocks'.
By default (`contrast=True`, see `label_contrast`) each label keeps only what it attends to more than the labels'
mean: the labels of a model share much of their attention, and what they share explains no label in particular.
Special tokens and padding are dropped; a word gets the largest weight of its sub-word tokens
(`word_aggregation="max"`; or "sum", "mean", "first"); each label's word weights are renormalised to sum to 1. A
word's weight is therefore its share of that label's (own) attention on the document's words. Both defaults were
chosen on HoC validation by how much the top words matter to the label's probability (`benchmarks/explanations.py`).

A "word" is a word of the tokenizer's pre-tokenizer (`word_ids()` of a fast tokenizer): BERT-style tokenizers split
on whitespace and punctuation, so "IL-6," gives the words "IL", "-", "6" and ",". Each occurrence of a word is
ranked separately. Only the tokens the model read count: a document longer than `max_length` tokens is truncated
(`DocumentExplanation.truncated`) and its remaining words get no weight.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jinja2
import numpy as np
import torch

if __package__:
    from .data_label_attention import DataError, jsonl_objects
    from .modeling_label_attention import decisions_from_logits
else:  # run as a script from the repo root: use the installed package
    from label_attention.data_label_attention import DataError, jsonl_objects
    from label_attention.modeling_label_attention import decisions_from_logits

__all__ = [
    "LABEL_CONTRAST",
    "WORD_AGGREGATION",
    "WORD_AGGREGATIONS",
    "AttendedWord",
    "DocumentExplanation",
    "ExplainError",
    "LabelExplanation",
    "combine_attentions",
    "document_words",
    "explain",
    "format_explanation",
    "label_contrast",
    "load",
    "main",
    "read_jsonl",
    "render_heatmap",
    "render_html",
    "word_weights",
    "write_html",
]


# How a word's sub-word tokens share its weight (`word_weights`): the sum of their weights, their mean, the largest,
# or the first token's. Chosen on HoC validation (benchmarks/results/explanations_validation.md): with the largest,
# removing a label's top words costs it most and keeping only them keeps most; the sum favoured long words split
# into many pieces.
WORD_AGGREGATIONS = ("sum", "mean", "max", "first")
WORD_AGGREGATION = "max"
# Explanations show what each label attends to more than the labels' mean (`label_contrast`): on HoC validation the
# labels' top words then differ (top-5 overlap 0.18 instead of 0.37), and they are at least as faithful.
LABEL_CONTRAST = True


class ExplainError(ValueError):
    """Bad input to the explainer (model, text, file): the message says what is wrong; the CLI prints it."""


@dataclass
class AttendedWord:
    """One occurrence of a word in the document, with the share of a label's attention it received."""

    word: str  # the word as written in the original text: text[start:end]
    weight: float  # share of the label's attention on the document's words (a label's weights sum to 1)
    start: int  # character offsets into the original text
    end: int


@dataclass
class LabelExplanation:
    """One label's score, decision and the words it attended to."""

    label: str
    label_id: int
    description: str | None
    score: float  # sigmoid probability (multi-label) or softmax probability (single-label)
    predicted: bool  # the model's decision (`decisions_from_logits`: thresholds or argmax)
    threshold: float | None  # multi-label decision threshold; None for single-label
    words: list[AttendedWord]  # the top_k words, heaviest first


@dataclass
class DocumentExplanation:
    """Explanation of one document: every label (id2label order) and the full label-by-word weight matrix."""

    text: str
    labels: list[LabelExplanation]
    word_spans: list[tuple[int, int]] = field(default_factory=list)  # (start, end) of every word read, in order
    word_weights: list[list[float]] = field(default_factory=list)  # [label_id][word index], each row sums to 1
    truncated: bool = False  # the text was longer than max_length tokens; only its beginning was read
    problem_type: str = "multi_label_classification"
    contrast: bool = LABEL_CONTRAST  # the weights are each label's attention minus the labels' mean (`label_contrast`)
    word_aggregation: str = WORD_AGGREGATION  # how sub-word weights were merged into words (`word_weights`)

    @property
    def predicted_labels(self) -> list[LabelExplanation]:
        """The labels the model predicts for this document, in id2label order."""
        return [label for label in self.labels if label.predicted]

    @property
    def words(self) -> list[str]:
        """Every word read, in document order, as written in the text."""
        return [self.text[start:end] for start, end in self.word_spans]

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (without the full weight matrix, which `word_weights` holds)."""
        return {
            "text": self.text,
            "truncated": self.truncated,
            "problem_type": self.problem_type,
            "contrast": self.contrast,
            "word_aggregation": self.word_aggregation,
            "labels": [asdict(label) for label in self.labels],
        }


# ----------------------------------------------------------------------------------------------------------------
# Loading


def load(model_name_or_path: str | os.PathLike, device: str | torch.device = "cpu", **from_pretrained_kwargs):
    """Load a saved label-attention classifier and its tokenizer from a folder or a Hub repo id.

    Uses `AutoModelForSequenceClassification` and `AutoTokenizer` with `trust_remote_code=True` (the model's code
    travels with its weights). Extra keyword arguments (e.g. `revision`, `token`) go to both `from_pretrained`
    calls. Returns `(model, tokenizer)`, the model in eval mode on `device`. Raises `ExplainError` with a readable
    message when nothing loadable is there.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    name = os.fspath(model_name_or_path)
    if not name.strip():
        raise ExplainError("No model given: pass a saved model folder or a Hub repo id.")
    # A Hub repo id is "name" or "owner/name"; anything else that is not here was meant as a local folder.
    looks_local = os.path.isabs(name) or name.startswith((".", "~")) or name.count("/") > 1 or "\\" in name
    if os.path.exists(name):
        if not os.path.isdir(name):
            raise ExplainError(f"{name!r} is a file; pass the folder the model was saved to.")
        if not os.path.isfile(os.path.join(name, "config.json")):
            raise ExplainError(f"{name!r} holds no config.json: it is not a saved model folder.")
    elif looks_local:
        raise ExplainError(f"Model folder {name!r} does not exist.")
    kwargs = {"trust_remote_code": True, **from_pretrained_kwargs}
    try:
        model = AutoModelForSequenceClassification.from_pretrained(name, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(name, **kwargs)
    except (OSError, ValueError, KeyError) as err:  # damaged weights too: the model class names the file
        where = "folder" if os.path.isdir(name) else "folder here, nor as a Hub repo id"
        raise ExplainError(f"Cannot load a model and tokenizer from {name!r} (as a {where}): {err}") from err
    _check_model(model)
    _check_tokenizer(tokenizer)
    return model.to(device).eval(), tokenizer


def _check_model(model):
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) != "label_attention":
        raise ExplainError(
            f"Expected a label-attention classifier (model_type 'label_attention'), got "
            f"{type(model).__name__} with model_type {getattr(config, 'model_type', None)!r}."
        )


def _check_tokenizer(tokenizer):
    if not getattr(tokenizer, "is_fast", False):
        raise ExplainError(
            f"Explanations need a fast tokenizer (character offsets and word ids); got {type(tokenizer).__name__}."
        )


# ----------------------------------------------------------------------------------------------------------------
# Explaining


def combine_attentions(attentions: tuple[torch.Tensor, ...], block: int | None = None) -> torch.Tensor:
    """Combine the label-attention weights of all heads and blocks into one map per label.

    `attentions` is the model's `attentions` output: one tensor per block (and, with the shared scorer, one more for
    its own attention), each `(batch, heads, num_labels, seq_len)`. Each block's weights are averaged over its heads;
    the per-block maps are then averaged over blocks (every block attends over the same encoder token states, so
    their maps are comparable), or, with `block=k`,
    block `k` alone is used (e.g. `block=-1`, the last). Each head's weights sum to 1 over the document's tokens
    and padding gets 0, so the result, `(batch, num_labels, seq_len)`, does too.
    """
    if not attentions:
        raise ExplainError("The model returned no label-attention weights.")
    per_block = [weights.float().mean(dim=1) for weights in attentions]
    if block is not None:
        try:
            return per_block[block]
        except IndexError:
            raise ExplainError(f"block={block} but the model has {len(per_block)} attention maps.") from None
    return torch.stack(per_block).mean(dim=0)


def label_contrast(weights: torch.Tensor) -> torch.Tensor:
    """What each label attends to more than the labels do on average: `(batch, num_labels, seq_len)` weights minus
    their mean over the labels, clipped at 0.

    The labels of a model share much of their attention (words every label reads, such as the topic of the
    document); this keeps each label's own share. A model with one label has nothing to contrast: its weights are
    returned as they are.
    """
    if weights.shape[-2] < 2:
        return weights
    return (weights - weights.mean(dim=-2, keepdim=True)).clamp(min=0)


def _max_length(model, tokenizer, max_length: int) -> int:
    limits = [max_length]
    if getattr(model.config, "max_document_length", None):  # longer documents are read in windows up to this
        limits.append(model.config.max_document_length)
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_limit, int) and tokenizer_limit < 1_000_000:  # "very large" means unset
        limits.append(tokenizer_limit)
    return min(limits)


def document_words(encoding, row: int, text: str, skip_ids) -> tuple[list[tuple[int, int]], list[list[int]]]:
    """The words read of document `row` of a tokenised batch (a fast tokenizer's `BatchEncoding` with offsets).

    Returns each word's span (start, end) in `text` and its token positions, in document order. Tokens outside any
    word (special tokens added by the tokenizer), special tokens written in the text (`skip_ids`) and padding belong
    to no word.
    """
    token_ids, attention_mask = encoding["input_ids"][row].tolist(), encoding["attention_mask"][row].tolist()
    offsets = encoding["offset_mapping"][row].tolist()
    word_tokens: dict[int, list[int]] = {}
    word_span: dict[int, list[int]] = {}
    for position, word_id in enumerate(encoding.word_ids(row)):
        if word_id is None or not attention_mask[position] or int(token_ids[position]) in skip_ids:
            continue
        word_tokens.setdefault(word_id, []).append(position)
        start, end = (int(x) for x in offsets[position])
        if end > start:  # zero-width tokens (e.g. a lone SentencePiece "▁") count for their word but mark nothing
            span = word_span.setdefault(word_id, [start, end])
            span[0], span[1] = min(span[0], start), max(span[1], end)
    spans, tokens = [], []
    for word_id in sorted(word_span, key=lambda w: word_span[w][0]):
        start, end = word_span[word_id]
        while start < end and text[start].isspace():  # some tokenizers' offsets include the leading space
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if end > start:
            spans.append((start, end))
            tokens.append(word_tokens[word_id])
    return spans, tokens


def word_weights(token_weights: np.ndarray, word_tokens: list[list[int]], aggregation: str = WORD_AGGREGATION):
    """Merge token weights `(num_labels, seq_len)` into word weights `(num_labels, num_words)`.

    A word gets the `aggregation` (one of `WORD_AGGREGATIONS`) of its tokens' weights; each label's row is then
    renormalised to sum to 1 (a row of zeros stays zero).
    """
    if not word_tokens:
        return np.zeros((token_weights.shape[0], 0))
    merge = {"sum": np.sum, "mean": np.mean, "max": np.max}.get(aggregation)
    if merge is None:  # "first": the word's first token
        weights = token_weights[:, [tokens[0] for tokens in word_tokens]]
    else:
        weights = np.stack([merge(token_weights[:, tokens], axis=1) for tokens in word_tokens], axis=1)
    totals = weights.sum(axis=1, keepdims=True)
    return np.divide(weights, totals, out=np.zeros_like(weights), where=totals > 0)


def _scores(config, logits: torch.Tensor) -> torch.Tensor:
    """Label scores (batch, num_labels): sigmoid probabilities (multi-label) or softmax probabilities (single-label)."""
    logits = logits.float()
    if config.problem_type == "single_label_classification":
        return torch.softmax(logits, dim=-1)
    return torch.sigmoid(logits)


def _decisions(config, logits: torch.Tensor) -> torch.Tensor:
    """Multi-hot decisions (batch, num_labels) by the rule every model decides with (`decisions_from_logits`)."""
    decisions = decisions_from_logits(logits, config.problem_type, config.decision_thresholds)
    if decisions.dim() == 1:  # single-label: class ids
        decisions = torch.nn.functional.one_hot(decisions, logits.shape[-1])
    return decisions.bool()


@torch.no_grad()
def explain(
    model,
    tokenizer,
    texts: str | list[str],
    top_k: int | None = 10,
    max_length: int = 512,
    batch_size: int = 16,
    block: int | None = None,
    word_aggregation: str = WORD_AGGREGATION,
    contrast: bool = LABEL_CONTRAST,
) -> list[DocumentExplanation]:
    """Explain a label-attention classifier's decisions on `texts` (a string or a list of strings).

    Returns one `DocumentExplanation` per text: every label's score, decision and its `top_k` attended words
    (`None`: all words), ranked by weight, with character offsets into the text. Weights: the label-attention
    weights averaged over heads, then over blocks (`block=k`: block `k` only), with `contrast` minus the labels'
    mean (`label_contrast`), special tokens and padding dropped, sub-word tokens merged into words by
    `word_aggregation` (one of `WORD_AGGREGATIONS`), renormalised to sum to 1 per label (see the module docstring).

    `model` is a label-attention `...ForSequenceClassification` (e.g. from `load`); `tokenizer` must be fast.
    Texts are truncated to `max_length` tokens (and to what the encoder accepts). The model is run in eval mode and
    put back in its previous mode afterwards.
    """
    texts = _checked_texts(model, tokenizer, texts, top_k, max_length, batch_size, word_aggregation)
    if tokenizer.pad_token_id is None:
        batch_size = 1  # nothing to pad with
    length = _max_length(model, tokenizer, max_length)
    skip_ids = _skip_ids(tokenizer)

    was_training = model.training
    model.eval()
    explanations = []
    try:
        for batch_start in range(0, len(texts), batch_size):
            batch = texts[batch_start : batch_start + batch_size]
            encoding, outputs = _run_batch(model, tokenizer, batch, length)
            token_weights = combine_attentions(outputs.attentions, block)
            if contrast:
                token_weights = label_contrast(token_weights)
            explanations += _explain_batch(
                model.config, batch, encoding, outputs.logits, token_weights.cpu().numpy(), skip_ids, top_k,
                word_aggregation, contrast,
            )
    finally:
        model.train(was_training)
    return explanations


def _skip_ids(tokenizer) -> set[int]:
    """Token ids that belong to no word: special tokens, also where written in the text (e.g. a literal "[SEP]");
    [UNK] stands for a real word."""
    return set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}


def _checked_texts(model, tokenizer, texts, top_k, max_length, batch_size, word_aggregation) -> list[str]:
    """Check `explain`'s arguments before the model runs; returns the texts as a list."""
    _check_model(model)
    _check_tokenizer(tokenizer)
    texts = [texts] if isinstance(texts, str) else list(texts)
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise ExplainError(f"Text {index} is a {type(text).__name__}, not a string.")
        if not text.strip():
            raise ExplainError(f"Text {index} is empty.")
    if top_k is not None and top_k < 1:
        raise ExplainError(f"top_k must be at least 1 (or None for all words), got {top_k}.")
    if batch_size < 1:
        raise ExplainError(f"batch_size must be at least 1, got {batch_size}.")
    if word_aggregation not in WORD_AGGREGATIONS:
        raise ExplainError(f"word_aggregation={word_aggregation!r} is not one of {', '.join(WORD_AGGREGATIONS)}.")
    if max_length <= tokenizer.num_special_tokens_to_add():
        raise ExplainError(f"max_length={max_length} leaves no room for the text after the special tokens.")
    return texts


def _run_batch(model, tokenizer, batch: list[str], max_length: int):
    """Tokenise a batch (padded, truncated, with character offsets) and run the model with its attentions out."""
    encoding = tokenizer(
        batch,
        padding=True,
        truncation=True,
        max_length=max_length,
        return_offsets_mapping=True,
        return_tensors="pt",
    )
    device = next(model.parameters()).device
    outputs = model(
        input_ids=encoding["input_ids"].to(device),
        attention_mask=encoding["attention_mask"].to(device),
        output_attentions=True,
        return_dict=True,
    )
    return encoding, outputs


def _explain_batch(
    config, batch, encoding, logits, token_weights, skip_ids, top_k, word_aggregation, contrast
) -> list[DocumentExplanation]:
    """One `DocumentExplanation` per text of a batch the model has run on; `token_weights`: `(batch, num_labels,
    seq_len)`."""
    scores = _scores(config, logits)
    decisions = _decisions(config, logits)
    documents = []
    for row, text in enumerate(batch):
        spans, tokens = document_words(encoding, row, text, skip_ids)
        weights = word_weights(token_weights[row], tokens, word_aggregation)
        documents.append(
            DocumentExplanation(
                text=text,
                labels=_label_explanations(config, text, spans, weights, scores[row], decisions[row], top_k),
                word_spans=spans,
                word_weights=weights.tolist(),
                truncated=bool(encoding.encodings[row].overflowing),
                problem_type=config.problem_type,
                contrast=contrast,
                word_aggregation=word_aggregation,
            )
        )
    return documents


def _label_explanations(config, text, spans, weights, scores, decisions, top_k) -> list[LabelExplanation]:
    """Every label's explanation of one document, in id2label order; `weights` is (num_labels, num_words)."""
    multi_label = config.problem_type != "single_label_classification"
    thresholds = config.decision_thresholds or [0.5] * config.num_labels
    descriptions = config.label_descriptions or [None] * config.num_labels
    return [
        LabelExplanation(
            label=str(config.id2label[label_id]),
            label_id=label_id,
            description=descriptions[label_id],
            score=float(scores[label_id]),
            predicted=bool(decisions[label_id]),
            threshold=float(thresholds[label_id]) if multi_label else None,
            words=_top_words(text, spans, weights[label_id], top_k),
        )
        for label_id in range(config.num_labels)
    ]


def _top_words(text, spans, weights, top_k) -> list[AttendedWord]:
    """The `top_k` words (None: all) of one label's word weights, heaviest first (ties in document order)."""
    ranked = np.argsort(-weights, kind="stable")[:top_k]
    return [
        AttendedWord(word=text[spans[i][0] : spans[i][1]], weight=float(weights[i]), start=spans[i][0], end=spans[i][1])
        for i in ranked
    ]


# ----------------------------------------------------------------------------------------------------------------
# Rendering

_TEMPLATES = Path(__file__).resolve().parent / "templates"


@functools.cache
def _report_template() -> jinja2.Template:
    # Autoescaping escapes every text, label, description and id; StrictUndefined makes a template typo an error.
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    return environment.get_template("explain_report.html.j2")


def _colour(label_id: int) -> tuple[int, int, int]:
    """The label's colour, (red, green, blue) in 0..255: matplotlib's tab10, cycled."""
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    red, green, blue, _ = palette(label_id % palette.N, bytes=True)
    return int(red), int(green), int(blue)


def _highlights(doc: DocumentExplanation, label: LabelExplanation) -> list[tuple[str, float | None, float | None]]:
    """The document's text in pieces, `(text, weight, shade)`: each word read with its weight and its shade (the
    weight relative to the label's top word), and the text between words with `None`s."""
    weights = doc.word_weights[label.label_id] if doc.word_spans else []
    top = max(weights, default=0.0)
    pieces, position = [], 0
    for (start, end), weight in zip(doc.word_spans, weights):
        pieces.append((doc.text[position:start], None, None))
        pieces.append((doc.text[start:end], weight, weight / top if top > 0 else 0.0))
        position = end
    pieces.append((doc.text[position:], None, None))
    return pieces


def _weighting(doc: DocumentExplanation) -> str:
    """How the document's word weights were computed, for the report."""
    contrast = ", minus the labels' mean (what each label reads more than the others)" if doc.contrast else ""
    merged = f"sub-words merged into words by {doc.word_aggregation}"
    return f"label-attention weights averaged over heads and blocks{contrast}, {merged}"


def render_html(
    explanations: list[DocumentExplanation],
    ids: list[str | None] | None = None,
    title: str = "Label-attention explanations",
) -> str:
    """A self-contained HTML report (inline CSS, no scripts, no external resources).

    For every document: a table of all labels' scores and decisions, then one `<section class="label">` per
    predicted label, with the label's name, description and score and the text highlighted in the label's colour;
    a word's shading is its weight relative to the label's top word (hover for the weight). Rendered from the
    autoescaping Jinja template `templates/explain_report.html.j2`.
    """
    if ids is not None and len(ids) != len(explanations):
        raise ExplainError(f"Got {len(ids)} ids for {len(explanations)} documents.")
    ids = ids if ids is not None else [None] * len(explanations)
    return _report_template().render(
        title=title,
        documents=list(zip(explanations, ids)),
        colour=_colour,
        highlights=_highlights,
        weightings="; ".join(dict.fromkeys(_weighting(doc) for doc in explanations)),
    )


def write_html(explanations: list[DocumentExplanation], path: str | os.PathLike, **kwargs) -> Path:
    """Write `render_html(explanations, **kwargs)` to `path` (UTF-8) and return the path."""
    path = Path(path)
    path.write_text(render_html(explanations, **kwargs), encoding="utf-8")
    return path


def render_heatmap(
    doc: DocumentExplanation,
    path: str | os.PathLike,
    max_words: int = 40,
    title: str | None = None,
    dpi: int = 100,
) -> Path:
    """Write a PNG heatmap of one document: labels (rows) by words (columns, in document order).

    Cells are the word weights of `doc.word_weights`. Documents with more than `max_words` words show the
    `max_words` words with the highest weight for any label, still in document order. Predicted labels are in bold.
    Uses matplotlib's Agg canvas directly (no pyplot, no global backend change).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not doc.word_spans:
        raise ExplainError("The document has no words to plot.")
    weights = np.asarray(doc.word_weights, dtype=float)
    columns = np.arange(weights.shape[1])
    if len(columns) > max_words:
        columns = np.sort(np.argsort(-weights.max(axis=0), kind="stable")[:max_words])
    matrix = weights[:, columns]
    words = [doc.words[i] for i in columns]
    words = [word if len(word) <= 20 else word[:19] + "…" for word in words]
    row_names = [f"{label.label} ({label.score:.2f})" for label in doc.labels]

    figure = Figure(figsize=(max(4.0, 0.38 * len(words) + 3.0), max(2.0, 0.4 * len(row_names) + 1.8)), dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(matrix, aspect="auto", cmap="Reds", vmin=0.0, vmax=max(float(matrix.max()), 1e-9))
    axes.set_xticks(range(len(words)), labels=words, rotation=60, ha="right", rotation_mode="anchor")
    axes.set_yticks(range(len(row_names)), labels=row_names)
    for tick, label in zip(axes.get_yticklabels(), doc.labels):
        if label.predicted:
            tick.set_fontweight("bold")
    shown = f"{len(words)} of {weights.shape[1]} words" if len(words) < weights.shape[1] else "words"
    axes.set_xlabel(shown + (" (text truncated)" if doc.truncated else ""))
    if title is None:
        title = doc.text if len(doc.text) <= 70 else doc.text[:69] + "…"
    axes.set_title(title.replace("\n", " "), fontsize=10)
    figure.colorbar(image, ax=axes, label="word weight", fraction=0.04, pad=0.02)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, format="png")
    return path


# ----------------------------------------------------------------------------------------------------------------
# Command line


def read_jsonl(path: str | os.PathLike) -> tuple[list[str], list[str | None]]:
    """Read documents from a JSON Lines file: one object per line with a non-empty string "text" and an optional
    "id". Blank lines are skipped. Returns `(texts, ids)`; raises `ExplainError` naming `file:line` on bad input."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ExplainError(f"{path}: no such file.")
    texts, ids = [], []
    try:
        for line_number, record in jsonl_objects(path):
            where = f"{path}:{line_number}"
            if "text" not in record:
                raise ExplainError(f'{where}: the object has no "text" field.')
            text = record["text"]
            if not isinstance(text, str):
                raise ExplainError(f'{where}: "text" must be a string, got {type(text).__name__}.')
            if not text.strip():
                raise ExplainError(f'{where}: "text" is empty.')
            texts.append(text)
            doc_id = record.get("id")
            ids.append(None if doc_id is None else str(doc_id))
    except DataError as err:
        raise ExplainError(str(err)) from None
    if not texts:
        raise ExplainError(f"{path}: no documents.")
    return texts, ids


def format_explanation(doc: DocumentExplanation, number: int, doc_id: str | None = None, predicted_only=False) -> str:
    """Plain-text summary: each label's score, decision ('+' predicted, '-' not) and top words with weights."""
    snippet = doc.text.replace("\n", " ")
    snippet = snippet if len(snippet) <= 80 else snippet[:79] + "…"
    header = f"[{number}]" + (f" {doc_id}" if doc_id is not None else "") + f" {snippet}"
    lines = [header + ("  (truncated)" if doc.truncated else "")]
    for label in doc.labels:
        if predicted_only and not label.predicted:
            continue
        words = ", ".join(f"{word.word} {word.weight:.3f}" for word in label.words)
        lines.append(f"  {'+' if label.predicted else '-'} {label.label} (score {label.score:.3f}): {words}")
    if predicted_only and not doc.predicted_labels:
        lines.append("  (no label predicted)")
    return "\n".join(lines)


def _heatmap_paths(path: str, count: int) -> list[Path]:
    path = Path(path)
    if count == 1:
        return [path]
    suffix = path.suffix or ".png"
    return [path.with_name(f"{path.stem}-{number}{suffix}") for number in range(1, count + 1)]


def _check_output_path(option: str, path: str):
    """Refuse an output file that cannot be written before the model runs, not after."""
    if Path(path).is_dir():
        raise ExplainError(f"{option} {path} is a folder: give a file name in it.")
    folder = Path(path).parent
    if not folder.is_dir():
        raise ExplainError(
            f"{option} {path}: the folder {folder} does not exist (No such file or directory); create it first."
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="label-attention-explain",
        description="Explain a label-attention classifier's decisions: which words each label attended to.",
    )
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="text(s) to explain")
    parser.add_argument("--model", required=True, help="saved model folder or Hub repo id (trust_remote_code)")
    parser.add_argument(
        "--input", metavar="FILE.jsonl", help='JSON Lines file, one {"text": ..., "id": ...} object per line'
    )
    parser.add_argument("--output", metavar="REPORT.html", help="write a self-contained HTML report")
    parser.add_argument(
        "--heatmap",
        metavar="FILE.png",
        help="write a PNG heatmap (labels by words); with several documents FILE-1.png, FILE-2.png, ...",
    )
    parser.add_argument("--top-k", type=int, default=10, help="words shown per label (default 10)")
    parser.add_argument("--max-length", type=int, default=512, help="tokens read per document (default 512)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--block", type=int, default=None, help="use one label-attention block (default: mean)")
    parser.add_argument(
        "--contrast",
        action=argparse.BooleanOptionalAction,
        default=LABEL_CONTRAST,
        help="show what each label attends to more than the labels' mean (default: %(default)s)",
    )
    parser.add_argument(
        "--word-aggregation",
        choices=WORD_AGGREGATIONS,
        default=WORD_AGGREGATION,
        help=f"how a word's sub-word weights merge (default {WORD_AGGREGATION})",
    )
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--predicted-only", action="store_true", help="print only the predicted labels")
    parser.add_argument("--json", action="store_true", help="print one JSON object per document instead")
    parser.add_argument("--quiet", action="store_true", help="print nothing (with --output / --heatmap)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 ok, 2 bad input)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.input and args.texts:
        parser.error("give texts or --input FILE.jsonl, not both")
    if not args.input and not args.texts:
        parser.error('nothing to explain: give a text ("...") or --input FILE.jsonl')
    if args.top_k < 1:
        parser.error("--top-k must be at least 1")
    if args.max_length < 3:
        parser.error("--max-length must be at least 3")
    try:
        for option, path in (("--output", args.output), ("--heatmap", args.heatmap)):
            if path:
                _check_output_path(option, path)
        if args.input:
            texts, ids = read_jsonl(args.input)
        else:
            texts, ids = list(args.texts), [None] * len(args.texts)
            for number, text in enumerate(texts, start=1):
                if not text.strip():
                    raise ExplainError(f"Text {number} is empty.")
        model, tokenizer = load(args.model, device=args.device)
        explanations = explain(
            model,
            tokenizer,
            texts,
            top_k=args.top_k,
            max_length=args.max_length,
            batch_size=args.batch_size,
            block=args.block,
            word_aggregation=args.word_aggregation,
            contrast=args.contrast,
        )
        if args.output:
            write_html(explanations, args.output, ids=ids)
        if args.heatmap:
            for doc, path in zip(explanations, _heatmap_paths(args.heatmap, len(explanations))):
                render_heatmap(doc, path)
    except (ExplainError, OSError) as err:  # OSError: e.g. the output folder does not exist
        print(f"label-attention-explain: error: {err}", file=sys.stderr)
        return 2
    if not args.quiet:
        for number, (doc, doc_id) in enumerate(zip(explanations, ids), start=1):
            if args.json:
                record = doc.to_dict() | ({"id": doc_id} if doc_id is not None else {})
                print(json.dumps(record, ensure_ascii=False))
            else:
                print(format_explanation(doc, number, doc_id, predicted_only=args.predicted_only))
        if args.output:
            print(f"Wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
