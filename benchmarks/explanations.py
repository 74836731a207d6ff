"""Are a label-attention model's explanations label-specific and faithful? Measured on a data split (issue #16).

    python benchmarks/explanations.py outputs/hoc/model [MODEL_DIR ...] --data-dir ../shared/data/hoc --split test \
        --output benchmarks/results/explanations

Every document of the split (the first `--max-documents`) is read as `explain` reads it, truncated to `--max-length`
tokens. The explanations of each label measured (`--explanations`, default: what `explain` shows):

- `attention:RULE`: the label-attention weights (heads averaged, then blocks, as `explain` combines them) merged
  from sub-word tokens into words by RULE (sum, mean, max or first; `label_attention.explain.word_weights`);
- `contrast:RULE`: the same from each label's attention minus the labels' mean (`explain(..., contrast=True)`);
- gradient × input, the reference that is not attention: the gradient of the label's logit with respect to the
  input (word) embeddings, dotted with them, summed over a word's tokens. It is signed: a word's top rank means it
  pushes the logit up most.

Label specificity, per document: the mean over pairs of labels of the Jensen-Shannon divergence between their
attention distributions over the words (nats, between 0 and ln 2 = 0.693; for attention only: gradient × input is
not a distribution), and of the overlap of their top-5 words (shared words / 5). Over every pair of labels, and over
the pairs of predicted labels (documents with at least two). `attention:tokens` is the same over tokens, as the
issue first measured it.

Faithfulness, ERASER-style (DeYoung et al., ACL 2020), over every label the model predicts (its own decisions,
`decisions_from_logits`; documents with no predicted label are skipped and counted), at each k of `--ks`:

- comprehensiveness: p(label | document) - p(label | document without some words), the words being the label's
  top-k, k random words (the mean over `--random-draws` draws, fixed seed), or the top-k words of the document's
  least likely label (the label with the lowest score, which the model does not predict);
- sufficiency: p(label | document) - p(label | only some words): the label's top-k, or k random words.

A word is removed by deleting its sub-word tokens from the input ids ([CLS] and [SEP] stay); "only the words" keeps
the special tokens and those words' tokens. Each perturbed input is scored once (all labels at a time), in batches of
inputs of similar length. Writes `<output>.json` and `<output>.md`; with `--examples N`, the HTML report and heatmaps
of N documents of the first model whose predicted labels' top-5 attended words overlap least, into
`<output>_examples/`. The default run takes 13 minutes on the HoC test set on one thread of 2 shared CPU cores (half
of it for the gradients); each further k or explanation adds its perturbed inputs.
"""

import argparse
import functools
import itertools
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from speed import cpu_name, write_results

from label_attention.data_label_attention import jsonl_objects
from label_attention.explain import (
    LABEL_CONTRAST,
    WORD_AGGREGATION,
    WORD_AGGREGATIONS,
    ExplainError,
    _decisions,
    _max_length,
    _run_batch,
    _scores,
    _skip_ids,
    combine_attentions,
    document_words,
    explain,
    label_contrast,
    load,
    render_heatmap,
    word_weights,
    write_html,
)

# An attention explanation is named WEIGHTS:RULE: the attention ("attention") or each label's attention minus the
# labels' mean ("contrast", `label_contrast`), merged into words by RULE, or "tokens" (specificity only).
ATTENTION_EXPLANATIONS = [f"{weights}:{rule}" for weights in ("attention", "contrast") for rule in WORD_AGGREGATIONS]
EXPLAIN_DEFAULT = f"{'contrast' if LABEL_CONTRAST else 'attention'}:{WORD_AGGREGATION}"  # what `explain` shows
GRADIENT = "gradient×input"
TOKENS = "attention:tokens"
TOP = 5  # specificity compares the labels' top-5 words


@dataclass
class Document:
    """One document as the model read it, and what the explanations need of it."""

    index: int  # position in the split
    input_ids: np.ndarray  # the tokens read (no padding)
    word_tokens: list[list[int]]  # each word's token positions, in document order
    scores: np.ndarray  # every label's probability
    predicted: list[int]  # the labels the model predicts
    attention: np.ndarray  # (num_labels, tokens): heads averaged, then blocks
    gradient: dict[int, np.ndarray] = field(default_factory=dict)  # label id -> gradient × input per token

    @functools.cached_property
    def contrast(self) -> np.ndarray:
        return label_contrast(torch.from_numpy(self.attention)).numpy()

    @property
    def least_likely(self) -> int | None:
        """The lowest-scoring label the model does not predict (None if it predicts every label)."""
        others = set(range(len(self.scores))) - set(self.predicted)
        return min(others, key=lambda label: self.scores[label]) if others else None

    @property
    def explained_labels(self) -> list[int]:
        """The labels whose explanations the faithfulness measures use: the predicted ones and the least likely."""
        return self.predicted + ([self.least_likely] if self.least_likely is not None else [])

    def without(self, words) -> np.ndarray:
        """The input ids with these words' tokens deleted."""
        keep = np.ones(len(self.input_ids), dtype=bool)
        keep[[token for word in words for token in self.word_tokens[word]]] = False
        return self.input_ids[keep]

    def only(self, words) -> np.ndarray:
        """The input ids of the special tokens and these words' tokens only."""
        keep = np.ones(len(self.input_ids), dtype=bool)
        keep[[token for tokens in self.word_tokens for token in tokens]] = False
        keep[[token for word in words for token in self.word_tokens[word]]] = True
        return self.input_ids[keep]


# ----------------------------------------------------------------------------------------------------------------
# Reading the documents: attentions, scores, decisions, gradients


def read_texts(data_dir: Path, split: str, max_documents: int | None) -> list[str]:
    return [record["text"] for _, record in jsonl_objects(data_dir / f"{split}.jsonl")][:max_documents]


@torch.no_grad()  # not inference_mode: the label embeddings cached here are used with gradients later
def read_documents(model, tokenizer, texts, max_length, batch_size) -> list[Document]:
    """Every text as the model reads it for `explain`: its words, scores, decisions and attention per token."""
    length, skip_ids = _max_length(model, tokenizer, max_length), _skip_ids(tokenizer)
    documents = []
    for start in range(0, len(texts), batch_size):
        batch = texts[start : start + batch_size]
        encoding, outputs = _run_batch(model, tokenizer, batch, length)
        scores = _scores(model.config, outputs.logits).numpy()
        decisions = _decisions(model.config, outputs.logits).numpy()
        attention = combine_attentions(outputs.attentions).numpy()
        for row, text in enumerate(batch):
            _, word_tokens = document_words(encoding, row, text, skip_ids)
            read = int(encoding["attention_mask"][row].sum())  # right padding: the first `read` tokens
            documents.append(
                Document(
                    index=start + row,
                    input_ids=encoding["input_ids"][row, :read].numpy(),
                    word_tokens=word_tokens,
                    scores=scores[row],
                    predicted=np.flatnonzero(decisions[row]).tolist(),
                    attention=attention[row, :, :read],
                )
            )
    return documents


def padded(sequences: list[np.ndarray], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(ids) for ids in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, ids in enumerate(sequences):
        input_ids[row, : len(ids)] = torch.from_numpy(ids)
        attention_mask[row, : len(ids)] = 1
    return input_ids, attention_mask


def by_length(items: list, length, max_tokens: int) -> list[list]:
    """`items` in batches of similar `length(item)` (little padding is computed), each of at most `max_tokens`
    padded tokens: the short inputs of sufficiency go many at a time."""
    batches, batch = [], []
    for item in sorted(items, key=length):
        if batch and (len(batch) + 1) * length(item) > max_tokens:
            batches.append(batch)
            batch = []
        batch.append(item)
    return batches + [batch] if batch else batches


def add_gradients(model, documents: list[Document], pad_id: int, max_tokens: int):
    """Gradient × input per token for each document's predicted labels and its least likely label: one input row per
    (document, label), the gradient of that row's label logit with respect to the word embeddings the encoder read."""
    embeddings = []
    hook = model.get_input_embeddings().register_forward_hook(lambda module, args, output: embeddings.append(output))
    rows = [(document, label) for document in documents if document.predicted for label in document.explained_labels]
    try:
        for batch in by_length(rows, lambda row: len(row[0].input_ids), max_tokens):
            embeddings.clear()
            input_ids, attention_mask = padded([document.input_ids for document, _ in batch], pad_id)
            logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
            (inputs,) = embeddings  # label embeddings are cached: the encoder read only the documents
            labels = torch.tensor([label for _, label in batch])
            (gradient,) = torch.autograd.grad(logits[torch.arange(len(batch)), labels].sum(), inputs)
            gradient_x_input = (gradient * inputs).sum(-1).detach().numpy()
            for row, (document, label) in enumerate(batch):
                document.gradient[label] = gradient_x_input[row, : len(document.input_ids)]
    finally:
        hook.remove()


# ----------------------------------------------------------------------------------------------------------------
# Explanations: one score per (label, word); NaN rows for labels not explained


def explanation(document: Document, name: str) -> np.ndarray:
    """`(num_labels, num_words)` word scores of the explanation `name`: WEIGHTS:RULE (see `ATTENTION_EXPLANATIONS`;
    "attention:tokens" has one "word" per token) or gradient × input (the predicted and least likely labels only;
    NaN for the others)."""
    if name == GRADIENT:
        scores = np.full((len(document.scores), len(document.word_tokens)), np.nan)
        for label, per_token in document.gradient.items():
            scores[label] = [per_token[tokens].sum() for tokens in document.word_tokens]
        return scores
    weights, rule = name.split(":")
    token_weights = document.contrast if weights == "contrast" else document.attention
    if rule == "tokens":
        return word_weights(token_weights, [[token] for tokens in document.word_tokens for token in tokens])
    return word_weights(token_weights, document.word_tokens, rule)


def top_words(scores: np.ndarray, k: int) -> tuple[int, ...]:
    """The k highest-scoring words, in rank order (ties in document order)."""
    return tuple(np.argsort(-scores, kind="stable")[:k].tolist())


def random_words(document: Document, draw: int, k: int, seed: int) -> tuple[int, ...]:
    """k random words of the document: draw `draw`'s permutation of its words (the same for every k), cut at k."""
    generator = np.random.default_rng([seed, document.index, draw])
    return tuple(generator.permutation(len(document.word_tokens))[:k].tolist())


# ----------------------------------------------------------------------------------------------------------------
# Label specificity


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence of two distributions, in nats (0 to ln 2)."""
    middle = (p + q) / 2
    return float(sum(np.sum(a[a > 0] * np.log(a[a > 0] / middle[a > 0])) for a in (p, q)) / 2)


def top_overlap(a: np.ndarray, b: np.ndarray) -> float:
    top_a, top_b = top_words(a, TOP), top_words(b, TOP)
    return len(set(top_a) & set(top_b)) / len(top_a)


def pairwise_mean(rows: np.ndarray, labels: list[int], measure) -> float:
    return float(np.mean([measure(rows[a], rows[b]) for a, b in itertools.combinations(labels, 2)]))


def specificity(documents: list[Document], name: str) -> dict:
    """Mean over documents of the labels' mean pairwise JSD and top-5 overlap, over all labels (where the
    explanation covers all of them) and over the predicted labels (documents with at least two)."""
    measures = {"jsd": js_divergence, "top_5_overlap": top_overlap}
    groups = {
        "all_labels": lambda document: range(len(document.scores)),
        "predicted": lambda document: document.predicted,
    }
    if name == GRADIENT:  # signed scores, not a distribution, for the predicted and least likely labels only
        del measures["jsd"], groups["all_labels"]
    results = {}
    for group, labels_of in groups.items():
        chosen = [document for document in documents if len(labels_of(document)) >= 2 and document.word_tokens]
        rows = [explanation(document, name) for document in chosen]
        for measure, function in measures.items():
            values = [pairwise_mean(row, labels_of(document), function) for document, row in zip(chosen, rows)]
            results[f"{measure}_{group}"] = summary(values)
    return results


# ----------------------------------------------------------------------------------------------------------------
# Faithfulness


def perturbations(document: Document, names: list[str], ks: list[int], draws: int, seed: int) -> dict:
    """Every perturbed input the faithfulness measures need of one document, as {(kind, words): None} with kind
    "without" or "only"; the same words are scored once, whichever explanation chose them."""
    wanted = {}
    for name in names:
        scores = explanation(document, name)
        for k in ks:
            for label in document.explained_labels:
                wanted[("without", top_words(scores[label], k))] = None
            for label in document.predicted:
                wanted[("only", top_words(scores[label], k))] = None
    for draw, k in itertools.product(range(draws), ks):
        words = random_words(document, draw, k, seed)
        wanted[("without", words)] = wanted[("only", words)] = None
    return wanted


@torch.no_grad()
def score_perturbations(model, documents: list[Document], wanted: list[dict], pad_id: int, max_tokens: int):
    """Fill each document's `wanted` with the probabilities of every label for that perturbed input."""
    items = [(document, key, wants) for document, wants in zip(documents, wanted) for key in wants]
    started, batches = time.perf_counter(), by_length(items, lambda item: len(perturbed(*item[:2])), max_tokens)
    for number, batch in enumerate(batches, start=1):
        input_ids, attention_mask = padded([perturbed(document, key) for document, key, _ in batch], pad_id)
        scores = _scores(model.config, model(input_ids=input_ids, attention_mask=attention_mask).logits).numpy()
        for row, (_, key, wants) in enumerate(batch):
            wants[key] = scores[row]
        if number % 50 == 0 or number == len(batches):
            seconds = time.perf_counter() - started
            print(f"  {number}/{len(batches)} batches of perturbed inputs, {seconds:.0f} s", flush=True)


def perturbed(document: Document, key) -> np.ndarray:
    kind, words = key
    return document.without(words) if kind == "without" else document.only(words)


def probability_drop(document: Document, probabilities: dict, label: int, kind: str, words) -> float:
    """How much the label's probability falls from the document to its perturbed input `(kind, words)`."""
    return float(document.scores[label] - probabilities[(kind, words)][label])


def faithfulness(documents, scored, names, ks, draws, seed) -> dict:
    """Comprehensiveness and sufficiency over every predicted label, per explanation and k; random words under
    "random"."""
    results = {}
    for k in ks:
        drops = {name: {"top": [], "other_label": [], "sufficiency": []} for name in names}
        drops["random"] = {"top": [], "sufficiency": []}
        for document, probabilities in zip(documents, scored):
            explanations = {name: explanation(document, name) for name in names}
            for label in document.predicted:
                drop = functools.partial(probability_drop, document, probabilities, label)
                for name, scores in explanations.items():
                    drops[name]["top"].append(drop("without", top_words(scores[label], k)))
                    drops[name]["sufficiency"].append(drop("only", top_words(scores[label], k)))
                    if document.least_likely is not None:
                        other = top_words(scores[document.least_likely], k)
                        drops[name]["other_label"].append(drop("without", other))
                randoms = [random_words(document, draw, k, seed) for draw in range(draws)]
                drops["random"]["top"].append(np.mean([drop("without", words) for words in randoms]))
                drops["random"]["sufficiency"].append(np.mean([drop("only", words) for words in randoms]))
        results[k] = {name: {measure: summary(drop) for measure, drop in row.items()} for name, row in drops.items()}
        random_drop = results[k]["random"]["top"]["mean"]
        for name in names:
            row = results[k][name]
            row["ratio_to_random"] = ratio(row["top"]["mean"], random_drop)
            row["ratio_to_other_label"] = ratio(row["top"]["mean"], row["other_label"]["mean"])
    return results


def targets(specificity: dict, faithfulness: dict, names: list[str]) -> dict:
    """The issue's targets, at k = 5 over every predicted label, for each attention explanation."""
    if 5 not in faithfulness:
        return {}
    rows = faithfulness[5]
    random, reference = rows["random"], rows[GRADIENT]
    met = {}
    for name in names:
        row, labels = rows[name], specificity[name]
        top = row["top"]["mean"]
        met[name] = {
            "removal_at_least_10x_random": top >= 10 * random["top"]["mean"],
            "removal_at_least_3x_least_likely_label": row["other_label"]["mean"] is not None
            and top >= 3 * row["other_label"]["mean"],
            "as_faithful_as_gradient_x_input": top >= reference["top"]["mean"]
            and row["sufficiency"]["mean"] <= reference["sufficiency"]["mean"],
            "top_5_overlap_at_most_0.2": labels["top_5_overlap_all_labels"]["mean"] <= 0.2,
            "jsd_at_least_0.05": labels["jsd_all_labels"]["mean"] >= 0.05,
        }
    return met


def summary(values) -> dict:
    values = np.asarray(values, dtype=float)
    error = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else None
    return {"mean": float(values.mean()) if len(values) else None, "standard_error": error, "count": len(values)}


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """None where either drop is missing (a model that predicts every label has no least likely label) or the
    denominator is not positive."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


# ----------------------------------------------------------------------------------------------------------------
# One model


def measure_model(model_dir, texts, args, examples: int) -> dict:
    model, tokenizer = load(model_dir)
    if tokenizer.padding_side != "right":
        raise SystemExit(f"{model_dir}: the benchmark reads right-padded batches; the tokenizer pads on the left.")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    names = [*args.explanations, GRADIENT]
    started = time.perf_counter()
    documents = read_documents(model, tokenizer, texts, args.max_length, args.batch_size)
    explained = [document for document in documents if document.predicted and document.word_tokens]
    print(f"{model_dir}: {len(explained)} of {len(documents)} documents have a predicted label", flush=True)
    max_tokens = args.batch_size * args.max_length  # per batch, padding included
    add_gradients(model, explained, pad_id, max_tokens)
    print(f"  gradients: {time.perf_counter() - started:.0f} s", flush=True)
    wanted = [perturbations(document, names, args.ks, args.random_draws, args.seed) for document in explained]
    print(f"  {sum(map(len, wanted))} perturbed inputs to score", flush=True)
    score_perturbations(model, explained, wanted, pad_id, max_tokens)
    result = {
        "model": str(model_dir),
        "documents": len(documents),
        "documents_without_predicted_label": len(documents) - len(explained),
        "predicted_labels": sum(len(document.predicted) for document in explained),
        "documents_with_two_or_more_predicted_labels": sum(len(document.predicted) >= 2 for document in documents),
        "perturbed_inputs": sum(map(len, wanted)),
        "specificity": {name: specificity(documents, name) for name in [*names, TOKENS]},
        "faithfulness": faithfulness(explained, wanted, names, args.ks, args.random_draws, args.seed),
        "seconds": time.perf_counter() - started,
    }
    result["targets"] = targets(result["specificity"], result["faithfulness"], args.explanations)
    if examples:
        result["examples"] = write_examples(model, tokenizer, texts, documents, examples, args)
    return result


def write_examples(model, tokenizer, texts, documents, count, args) -> list[str]:
    """The HTML report and a heatmap of the `count` documents whose predicted labels' top-5 attended words (by
    `explain`'s word aggregation) overlap least: where the labels' evidence differs most."""
    name = EXPLAIN_DEFAULT
    several = [d for d in documents if len(d.predicted) >= 2]
    overlap = {d.index: pairwise_mean(explanation(d, name), d.predicted, top_overlap) for d in several}
    chosen = sorted(overlap, key=lambda index: (overlap[index], index))[:count]
    folder = Path(f"{args.output}_examples")
    folder.mkdir(parents=True, exist_ok=True)
    docs = explain(model, tokenizer, [texts[index] for index in chosen], max_length=args.max_length)
    ids = [f"{args.split} document {index}" for index in chosen]
    title = f"Label attention on {args.data_dir.name} {args.split}: the documents whose labels' evidence differs most"
    paths = [write_html(docs, folder / "report.html", ids=ids, title=title)]
    for doc, doc_id in zip(docs, ids):
        paths.append(render_heatmap(doc, folder / f"{doc_id.split()[-1]}.png", title=doc_id))
    return [str(path) for path in paths]


# ----------------------------------------------------------------------------------------------------------------
# Report


def number(value, digits=3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def times(ratio) -> str:
    return "—" if ratio is None else f"{ratio:.2f}" if ratio < 10 else f"{ratio:.0f}"


def with_error(entry) -> str:
    if entry is None:
        return "n/a"
    error = entry["standard_error"]
    return number(entry["mean"]) + (f" ± {number(error)}" if error else "")


GROUPS = ("all_labels", "predicted")
TARGET_NAMES = {
    "removal_at_least_10x_random": "≥ 10× random",
    "removal_at_least_3x_least_likely_label": "≥ 3× least likely label",
    "as_faithful_as_gradient_x_input": "≥ gradient × input",
    "top_5_overlap_at_most_0.2": "top-5 overlap ≤ 0.2",
    "jsd_at_least_0.05": "JSD ≥ 0.05",
}


def specificity_table(model) -> list[str]:
    lines = [
        "Label specificity (mean over documents of the mean over pairs of labels; ± standard error):",
        "",
        "| explanation | JSD, all labels (nats) | top-5 overlap, all labels | JSD, predicted labels "
        "| top-5 overlap, predicted labels |",
        "|---|---|---|---|---|",
    ]
    for name, row in model["specificity"].items():
        cells = [row.get(f"{measure}_{group}") for group in GROUPS for measure in ("jsd", "top_5_overlap")]
        lines.append(f"| {name} | " + " | ".join(map(with_error, cells)) + " |")
    return lines


def faithfulness_table(model) -> list[str]:
    lines = [
        "Faithfulness over every predicted label: comprehensiveness (the drop of the label's probability when "
        "words are removed: its top-k, k random words, the least likely label's top-k) and sufficiency (the drop "
        "when only the words are kept: lower is better); ± standard error:",
        "",
        "| explanation | k | remove top-k | remove k random | remove least likely label's top-k | × random | "
        "× least likely | keep only top-k | keep only k random |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for k, rows in model["faithfulness"].items():
        random = rows["random"]
        for name, row in rows.items():
            if name != "random":
                cells = [
                    with_error(row["top"]), with_error(random["top"]), with_error(row["other_label"]),
                    times(row["ratio_to_random"]), times(row["ratio_to_other_label"]),
                    with_error(row["sufficiency"]), with_error(random["sufficiency"]),
                ]  # fmt: skip
                lines.append(f"| {name} | {k} | " + " | ".join(cells) + " |")
    return lines + ["", "×: the ratio of the two drops (— where the denominator is not positive)."]


def targets_table(model) -> list[str]:
    lines = [
        "The issue's targets (k = 5, every predicted label): removing the top-5 words lowers the label's probability "
        "≥ 10× more than 5 random words and ≥ 3× more than the least likely label's top 5; at least as faithful as "
        "gradient × input (comprehensiveness ≥, sufficiency ≤); labels' top-5 words overlap ≤ 0.2 and JSD ≥ 0.05 "
        "nats (all labels):",
        "",
        "| explanation | " + " | ".join(TARGET_NAMES.values()) + " |",
        "|---|" + "---|" * len(TARGET_NAMES),
    ]
    for name, met in model["targets"].items():
        lines.append(f"| {name} | " + " | ".join("yes" if met[key] else "**no**" for key in TARGET_NAMES) + " |")
    return lines


def markdown(results, output) -> str:
    lines = [
        f"Split `{results['split']}` of `{results['data_dir']}`: {results['documents']} documents, each truncated to "
        f"{results['max_length']} tokens. Random words: {results['random_draws']} draws, seed {results['seed']}. "
        f"CPU: {results['cpu']}, {results['threads']} thread(s). See `benchmarks/explanations.py` for the measures.",
        "",
        f"    {results['command']}",
    ]
    for model in results["models"]:
        skipped = model["documents_without_predicted_label"]
        lines += [
            "",
            f"## `{model['model']}`",
            "",
            f"{model['predicted_labels']} predicted labels in {model['documents'] - skipped} documents ({skipped} "
            f"documents with no predicted label skipped; {model['documents_with_two_or_more_predicted_labels']} with "
            f"two or more); {model['perturbed_inputs']} perturbed inputs, {model['seconds'] / 60:.1f} minutes.",
            "",
            *specificity_table(model),
            "",
            *faithfulness_table(model),
        ]
        if model["targets"]:
            lines += ["", *targets_table(model)]
        if model.get("examples"):
            links = ", ".join(f"[{Path(path).name}]({link(path, output)})" for path in model["examples"])
            lines += ["", f"Examples: {links}"]
    return "\n".join(lines) + "\n"


def link(path, output) -> str:
    """`path` relative to the folder of the report `output`, as Markdown links it."""
    return Path(os.path.relpath(path, Path(output).parent)).as_posix()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", metavar="MODEL_DIR", help="saved label-attention model folders")
    parser.add_argument("--data-dir", type=Path, default=Path("..") / "shared" / "data" / "hoc")
    parser.add_argument("--split", default="test")
    parser.add_argument("--max-documents", type=int, default=None, help="the first N documents (default: all)")
    parser.add_argument("--max-length", type=int, default=256, help="tokens read per document (default 256)")
    parser.add_argument("--ks", type=int, nargs="+", default=[5],
                        help="words removed or kept (default 5, the targets'; each k costs as much again)")  # fmt: skip
    parser.add_argument("--random-draws", type=int, default=3)
    parser.add_argument("--explanations", nargs="+", choices=ATTENTION_EXPLANATIONS, default=[EXPLAIN_DEFAULT],
                        help=f"attention explanations to measure (default: explain's, {EXPLAIN_DEFAULT})")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16,
                        help="documents per batch (of perturbed inputs: as many tokens)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--examples", type=int, default=0, help="example documents to render (first model)")
    parser.add_argument("--output", default="benchmarks/results/explanations")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(args.threads)
    texts = read_texts(args.data_dir, args.split, args.max_documents)
    try:
        models = [
            measure_model(model_dir, texts, args, examples=args.examples if position == 0 else 0)
            for position, model_dir in enumerate(args.models)
        ]
    except ExplainError as err:  # a model folder that is not one: say so, without a traceback
        parser.error(str(err))
    results = {
        "command": " ".join(["python", "benchmarks/explanations.py", *map(str, argv or sys.argv[1:])]),
        "split": args.split,
        "data_dir": str(args.data_dir),
        "documents": len(texts),
        "max_length": args.max_length,
        "ks": args.ks,
        "random_draws": args.random_draws,
        "seed": args.seed,
        "explanations": args.explanations,
        "cpu": cpu_name(),
        "threads": args.threads,
        "models": models,
    }
    write_results(args.output, results, markdown(results, args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
