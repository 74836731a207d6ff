"""Explanations from the label-attention weights (label_attention.explain).

The central test trains a tiny model on a synthetic corpus where each label is triggered by one planted keyword, and
checks that, for each correctly predicted label, the keyword is the word the label attended to most, in at least
90 % of held-out documents. The other tests check the word merging and offsets, the HTML report, the PNG heatmap,
loading saved folders (every encoder family) and the command line, including its error messages.
"""

import json
import re

import numpy as np
import pytest
import torch
from synthetic_corpus import make_corpus
from tiny_models import FAMILIES, TINY_SHAPE, build_tiny_model
from transformers import BertConfig

from label_attention import LabelAttentionConfig, LabelAttentionForSequenceClassification
from label_attention.explain import (
    ExplainError,
    combine_attentions,
    explain,
    label_contrast,
    load,
    main,
    read_jsonl,
    render_heatmap,
    render_html,
    word_weights,
)
from label_attention.modeling_label_attention import attention_overlap

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[PAD]", "[MASK]")
SECTION = '<section class="label"'


def _exact_match(model, tokenizer, corpus) -> float:
    with torch.no_grad():
        logits = model(**tokenizer(corpus.texts, padding=True, return_tensors="pt")).logits
    decisions = model.predict_from_logits(logits)
    return (decisions == torch.tensor(corpus.multi_hot())).all(-1).float().mean().item()


def _train_keyword_model(tokenizer, corpus, seed=0, epochs=15, batch_size=16, lr=3e-3, **config_kwargs):
    """A tiny BERT-like label-attention classifier trained from scratch on `corpus` (plain AdamW loop)."""
    torch.manual_seed(seed)
    config = LabelAttentionConfig(
        encoder=BertConfig(**{**TINY_SHAPE, "num_attention_heads": 2, "intermediate_size": 64}),
        id2label=corpus.id2label,
        label_descriptions=corpus.label_descriptions,
        **config_kwargs,
    )
    model = LabelAttentionForSequenceClassification(config)
    model.set_label_descriptions(tokenizer)
    inputs = tokenizer(corpus.texts, padding=True, return_tensors="pt")
    targets = torch.tensor(corpus.multi_hot())
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    order = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        permutation = torch.randperm(len(targets), generator=order)
        for start in range(0, len(targets), batch_size):
            batch = permutation[start : start + batch_size]
            loss = model(
                input_ids=inputs["input_ids"][batch],
                attention_mask=inputs["attention_mask"][batch],
                labels=targets[batch],
            ).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def keyword_setup(tokenizer, tmp_path_factory):
    """Train once per module: (model, tokenizer, held-out corpus, its explanations, saved model folder)."""
    train = make_corpus(300, num_labels=4, seed=1)
    test = make_corpus(100, num_labels=4, seed=2)
    model = _train_keyword_model(tokenizer, train)
    explanations = explain(model, tokenizer, test.texts, top_k=None)
    folder = tmp_path_factory.mktemp("keyword-model")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model, tokenizer, test, explanations, folder


def test_planted_keyword_is_the_top_word_of_each_correct_label(keyword_setup):
    _, _, corpus, explanations, _ = keyword_setup
    predicted = [[label.label_id for label in doc.predicted_labels] for doc in explanations]
    exact = sum(labels == gold for labels, gold in zip(predicted, corpus.labels))
    assert exact / len(corpus) >= 0.9, f"the model did not learn the task: exact match {exact}/{len(corpus)}"

    good, failures = 0, []
    for doc, gold in zip(explanations, corpus.labels):
        correct = [label for label in doc.predicted_labels if label.label_id in gold]
        tops = {label.label: label.words[0].word for label in correct}
        if correct and all(tops[label.label].lower() == corpus.keywords[label.label_id] for label in correct):
            good += 1
        else:
            failures.append((doc.text, tops))
    assert good / len(corpus) >= 0.9, f"keyword first in only {good}/{len(corpus)} documents, e.g. {failures[:3]}"


def test_offsets_point_into_the_original_text(keyword_setup):
    _, _, corpus, explanations, _ = keyword_setup
    subword_keyword_seen = False
    for doc, gold in zip(explanations, corpus.labels):
        assert len(doc.labels) == len(corpus.label_names)
        starts = [start for start, _ in doc.word_spans]
        assert starts == sorted(starts)
        for label in doc.labels:
            assert len(label.words) == len(doc.word_spans)  # top_k=None: every word
            assert sum(word.weight for word in label.words) == pytest.approx(1.0, abs=1e-5)
            weights = [word.weight for word in label.words]
            assert weights == sorted(weights, reverse=True)
            for word in label.words:
                assert doc.text[word.start : word.end] == word.word
                assert word.word.strip() == word.word and word.word
                assert word.word not in SPECIAL_TOKENS
        for label_id in gold:
            # The keyword is one word even where the tokenizer splits it (angiogenesis -> ang ##io ##genesis).
            keyword = corpus.keywords[label_id]
            matches = [word for word in doc.labels[label_id].words if word.word.lower() == keyword]
            assert len(matches) == 1
            assert doc.text[matches[0].start : matches[0].end].lower() == keyword
            subword_keyword_seen |= keyword == "angiogenesis"
    assert subword_keyword_seen


def test_special_tokens_in_the_text_and_truncation(keyword_setup):
    model, tokenizer, _, _, _ = keyword_setup
    text = "Angiogenesis [SEP] noted [CLS] in clinic [PAD] today."
    [doc] = explain(model, tokenizer, text, top_k=3)
    assert not doc.truncated
    assert set(doc.words) == {"Angiogenesis", "noted", "in", "clinic", "today", "."}
    assert all(len(label.words) == 3 for label in doc.labels)
    assert doc.labels[0].predicted and doc.labels[0].words[0].word == "Angiogenesis"
    assert (doc.labels[0].words[0].start, doc.labels[0].words[0].end) == (0, 12)

    long_text = "the patient was seen in clinic " * 20 + "apoptosis"
    [doc] = explain(model, tokenizer, long_text, max_length=16)
    assert doc.truncated
    assert len(doc.word_spans) == 14  # 16 tokens minus [CLS] and [SEP], all whole words here
    assert all(end <= len("the patient was seen in clinic ") * 3 for _, end in doc.word_spans)
    for row in doc.word_weights:
        assert sum(row) == pytest.approx(1.0, abs=1e-5)


def test_bad_texts_are_rejected(keyword_setup):
    model, tokenizer, _, _, _ = keyword_setup
    with pytest.raises(ExplainError, match="Text 1 is empty"):
        explain(model, tokenizer, ["fine", "   "])
    with pytest.raises(ExplainError, match="not a string"):
        explain(model, tokenizer, [3])


def test_html_report_has_one_section_per_predicted_label(keyword_setup, tmp_path):
    model, tokenizer, _, explanations, _ = keyword_setup
    docs = explanations[:10] + explain(model, tokenizer, ["Inflammation <b>bold</b> & apoptosis, seen in clinic."])
    report = render_html(docs, ids=[f"doc-{i}" for i in range(len(docs))])
    predicted = [label for doc in docs for label in doc.predicted_labels]
    assert predicted
    assert report.count(SECTION) == len(predicted)
    for doc in docs:  # in document order, each document's sections are its predicted labels
        for label in doc.predicted_labels:
            assert f'data-label="{label.label}"' in report
    assert not re.search(r"https?://", report)
    assert not re.search(r"<(script|link|img|iframe)\b|\bsrc=|@import|url\(", report)
    assert "<b>" not in report and "&lt;</mark>" in report and "&amp;</mark>" in report  # escaped, then marked
    # The top word of each predicted label is the fully shaded one.
    assert re.search(r'rgba\(\d+, \d+, \d+, 1\.000\)" title="weight [0-9.]+">Inflammation</mark>', report)


def test_heatmap_png(keyword_setup, tmp_path):
    _, _, _, explanations, _ = keyword_setup
    path = render_heatmap(explanations[0], tmp_path / "heatmap.png")
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    import matplotlib.image

    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50
    PIL = pytest.importorskip("PIL.Image")
    with PIL.open(path) as png:
        png.verify()

    many_words = explain(keyword_setup[0], keyword_setup[1], "metastasis " + "the clinic " * 40)[0]
    render_heatmap(many_words, tmp_path / "wide.png", max_words=12)
    assert (tmp_path / "wide.png").read_bytes().startswith(PNG_SIGNATURE)


def test_loading_the_saved_folder_gives_the_same_explanations(keyword_setup):
    _, _, corpus, explanations, folder = keyword_setup
    model, tokenizer = load(folder)
    assert type(model).__module__.startswith("transformers_modules")  # the folder's own code (trust_remote_code)
    reloaded = explain(model, tokenizer, corpus.texts[:8], top_k=None)
    for before, after in zip(explanations[:8], reloaded):
        assert [label.predicted for label in after.labels] == [label.predicted for label in before.labels]
        for old, new in zip(before.labels, after.labels):
            assert new.score == pytest.approx(old.score, abs=1e-5)
            assert new.words[0].start == old.words[0].start


@pytest.mark.parametrize("family", FAMILIES)
def test_every_encoder_family_round_trips(family, tokenizer, tmp_path):
    kwargs = {"label_attention_blocks": 2, "label_pooling": "mean"} if family == "bert" else {}
    if family == "roberta":
        kwargs = {"problem_type": "single_label_classification"}
    model = build_tiny_model(tokenizer, family, **kwargs)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded, loaded_tokenizer = load(tmp_path)
    texts = ["Tumour growth was slowed in mice.", "Cells died (apoptosis) after treatment; IL-6 rose."]
    docs = explain(loaded, loaded_tokenizer, texts, top_k=4)
    for doc, text in zip(docs, texts):
        assert len(doc.labels) == model.config.num_labels
        if model.config.problem_type == "single_label_classification":
            assert len(doc.predicted_labels) == 1
            assert sum(label.score for label in doc.labels) == pytest.approx(1.0, abs=1e-5)
            assert all(label.threshold is None for label in doc.labels)
        for label in doc.labels:
            assert 1 <= len(label.words) <= 4
            for word in label.words:
                assert text[word.start : word.end] == word.word and word.word not in SPECIAL_TOKENS
        for row in doc.word_weights:
            assert sum(row) == pytest.approx(1.0, abs=1e-5)
    assert "apoptosis" in docs[1].words  # a sub-word-split word comes back whole
    if family == "bert":  # two blocks: block=k picks one, the default averages them
        linear = {"contrast": False, "word_aggregation": "sum"}  # word weights linear in the attention weights
        both, first, last = (explain(loaded, loaded_tokenizer, texts[0], block=b, **linear)[0] for b in (None, 0, -1))
        assert first.word_weights != last.word_weights
        # Averaged over blocks before the renormalisation over words, so a convex combination of the two blocks.
        for mean_row, first_row, last_row in zip(both.word_weights, first.word_weights, last.word_weights):
            for mean, a, b in zip(mean_row, first_row, last_row):
                assert min(a, b) - 1e-6 <= mean <= max(a, b) + 1e-6
        with pytest.raises(ExplainError, match="block=2"):
            explain(loaded, loaded_tokenizer, texts[0], block=2)


def test_combine_attentions_means_heads_then_blocks():
    block_1 = torch.tensor([[[[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]]]])  # (batch 1, heads 2, labels 1, seq 3)
    block_2 = torch.tensor([[[[0.0, 0.0, 1.0]], [[0.0, 0.0, 1.0]]]])
    assert combine_attentions((block_1,)).tolist() == [[[0.5, 0.5, 0.0]]]
    assert combine_attentions((block_1, block_2)).tolist() == [[[0.25, 0.25, 0.5]]]
    assert combine_attentions((block_1, block_2), block=-1).tolist() == [[[0.0, 0.0, 1.0]]]


@pytest.mark.parametrize(
    ("aggregation", "expected"),
    [("sum", [0.1, 0.5, 0.4]), ("mean", [0.1, 0.25, 0.4]), ("max", [0.1, 0.3, 0.4]), ("first", [0.1, 0.2, 0.4])],
)
def test_word_weights_merge_sub_words_by_the_rule_then_renormalise(aggregation, expected):
    tokens = np.array([[0.1, 0.2, 0.3, 0.4], [0.0, 0.0, 0.0, 0.0]])  # (labels 2, tokens 4); "##" tokens 1 and 2
    weights = word_weights(tokens, [[0], [1, 2], [3]], aggregation)
    assert weights[0] == pytest.approx(np.array(expected) / sum(expected))
    assert weights[1].tolist() == [0.0, 0.0, 0.0]  # a label with no weight on the words stays at zero


def test_label_contrast_keeps_what_a_label_reads_more_than_the_others(keyword_setup):
    weights = torch.tensor([[[0.5, 0.5, 0.0], [0.9, 0.1, 0.0]]])  # (batch 1, labels 2, seq 3)
    assert label_contrast(weights) == pytest.approx(torch.tensor([[[0.0, 0.2, 0.0], [0.2, 0.0, 0.0]]]))
    model, tokenizer, corpus, _, _ = keyword_setup
    plain, contrasted = (explain(model, tokenizer, corpus.texts[:8], contrast=flag) for flag in (False, True))
    for before, after in zip(plain, contrasted):  # the same scores and decisions; each row still sums to 1
        assert (before.contrast, after.contrast) == (False, True)
        assert [label.score for label in after.labels] == pytest.approx([label.score for label in before.labels])
        assert all(sum(row) == pytest.approx(1.0, abs=1e-5) for row in after.word_weights)
    with pytest.raises(ExplainError, match="word_aggregation='median'"):
        explain(model, tokenizer, "text", word_aggregation="median")


# ---------------------------------------------------------------------------------------------------------------
# Label-specific attention: the overlap term of the loss


def test_attention_overlap_is_the_mean_cosine_over_pairs_of_labels():
    torch.manual_seed(0)
    blocks = [torch.rand(2, 3, 4, 6).softmax(-1) for _ in range(2)]  # (batch, heads, labels, tokens)
    weights = torch.stack(blocks).mean((0, 2))
    pairs = [
        torch.cosine_similarity(weights[:, i], weights[:, j], dim=-1) for i in range(4) for j in range(4) if i != j
    ]
    assert attention_overlap(blocks) == pytest.approx(torch.stack(pairs).mean().item(), abs=1e-6)
    same = torch.full((1, 1, 3, 5), 0.2)
    disjoint = torch.eye(3, 5).view(1, 1, 3, 5)
    assert attention_overlap((same,)).item() == pytest.approx(1.0)
    assert attention_overlap((disjoint,)).item() == pytest.approx(0.0, abs=1e-7)
    assert attention_overlap((same[:, :, :1],)).item() == 0.0  # one label: no pair


def test_the_overlap_term_is_added_to_the_training_loss_only(make_model, tokenizer):
    from tiny_models import DOCUMENTS, encode

    batch = encode(tokenizer, DOCUMENTS)
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    plain, penalised = make_model(), make_model(label_attention_overlap_coef=0.5)
    outputs = plain(**batch, labels=labels, output_attentions=True)
    expected = outputs.loss + 0.5 * attention_overlap(outputs.attentions)
    assert penalised(**batch, labels=labels).loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert penalised(**batch, labels=labels).attentions is None  # weights computed for the loss, not returned
    assert penalised(**batch).loss is None
    penalised.train()
    penalised(**batch, labels=labels).loss.backward()
    query_weight = penalised.label_attention.blocks[0].attention.in_proj_weight
    assert query_weight.grad.abs().sum() > 0


@pytest.mark.parametrize("coef", [-0.1, float("nan"), float("inf")])
def test_a_bad_overlap_coefficient_is_refused(coef):
    with pytest.raises(ValueError, match="label_attention_overlap_coef must be a finite number >= 0"):
        LabelAttentionConfig(
            encoder=BertConfig(**TINY_SHAPE), id2label={0: "a", 1: "b"}, label_attention_overlap_coef=coef
        )


def test_the_overlap_term_makes_labels_read_different_words_and_still_learn(keyword_setup):
    """On the keyword corpus, the same training with the term: the labels' attention overlaps far less, and the
    task is still learnt."""
    model, tokenizer, corpus, _, _ = keyword_setup
    penalised = _train_keyword_model(
        tokenizer, make_corpus(300, num_labels=4, seed=1), label_attention_overlap_coef=0.3
    )
    inputs = tokenizer(corpus.texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        before, after = (attention_overlap(m(**inputs, output_attentions=True).attentions) for m in (model, penalised))
    assert after < before / 2, (before, after)
    assert _exact_match(penalised, tokenizer, corpus) >= 0.9


# ---------------------------------------------------------------------------------------------------------------
# Command line


def test_cli_text_mode_prints_top_words(keyword_setup, tmp_path, capsys):
    _, _, _, _, folder = keyword_setup
    heatmap = tmp_path / "one.png"
    status = main(["--model", str(folder), "--top-k", "3", "--heatmap", str(heatmap), "Seen in clinic, apoptosis."])
    assert status == 0
    out = capsys.readouterr().out
    assert "[1] Seen in clinic, apoptosis." in out
    line = next(line for line in out.splitlines() if line.strip().startswith("+ apoptosis"))
    assert re.match(r"\s*\+ apoptosis \(score [01]\.\d{3}\): apoptosis \d\.\d{3}, ", line)
    assert len([line for line in out.splitlines() if re.match(r"\s*[+-] ", line)]) == 4  # one line per label
    assert heatmap.read_bytes().startswith(PNG_SIGNATURE)

    assert main(["--model", str(folder), "--json", "Fibrosis absent; necrosis absent."]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["text"] == "Fibrosis absent; necrosis absent." and len(record["labels"]) == 4
    assert (record["contrast"], record["word_aggregation"]) == (True, "max")  # the defaults

    assert main(["--model", str(folder), "--json", "--no-contrast", "--word-aggregation", "sum", "Fibrosis."]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["contrast"], record["word_aggregation"]) == (False, "sum")


def test_cli_jsonl_to_html_report(keyword_setup, tmp_path, capsys):
    model, tokenizer, corpus, _, folder = keyword_setup
    texts = corpus.texts[:6]
    source = tmp_path / "docs.jsonl"
    source.write_text(
        "\n".join(json.dumps({"id": f"case-{i}", "text": text}) for i, text in enumerate(texts)) + "\n\n",
        encoding="utf-8",
    )
    report = tmp_path / "report.html"
    heatmaps = tmp_path / "maps.png"
    args = ["--model", str(folder), "--input", str(source), "--output", str(report), "--heatmap", str(heatmaps)]
    assert main(args) == 0
    html_text = report.read_text(encoding="utf-8")
    expected = sum(len(doc.predicted_labels) for doc in explain(model, tokenizer, texts))
    assert html_text.count(SECTION) == expected > 0
    assert html_text.count('<article class="document"') == len(texts)
    assert "case-5" in html_text and not re.search(r"https?://", html_text)
    for number in range(1, len(texts) + 1):
        assert (tmp_path / f"maps-{number}.png").read_bytes().startswith(PNG_SIGNATURE)
    assert "[6] case-5" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"text": "fine"}', '{"text": "broken"'], r"docs\.jsonl:2: not valid JSON"),
        (['{"text": "fine"}', "", '{"id": 3}'], r'docs\.jsonl:3: the object has no "text" field'),
        (['{"text": "  "}'], r'docs\.jsonl:1: "text" is empty'),
        (['["text"]'], r"docs\.jsonl:1: expected a JSON object"),
        ([""], r"docs\.jsonl: no documents"),
    ],
)
def test_cli_reports_bad_jsonl_lines(keyword_setup, tmp_path, capsys, lines, message):
    source = tmp_path / "docs.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["--model", str(keyword_setup[4]), "--input", str(source), "--output", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and "Traceback" not in err
    assert not (tmp_path / "r.html").exists()
    with pytest.raises(ExplainError, match=message):
        read_jsonl(source)


def test_cli_reports_bad_models_and_texts(keyword_setup, tmp_path, capsys):
    folder = str(keyword_setup[4])
    assert main(["--model", str(tmp_path / "missing"), "some text"]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["--model", str(tmp_path / "empty"), "some text"]) == 2
    assert "not a saved model folder" in capsys.readouterr().err
    assert main(["--model", folder, "   "]) == 2
    assert "Text 1 is empty" in capsys.readouterr().err
    assert main(["--model", folder, "--input", str(tmp_path / "nope.jsonl")]) == 2
    assert "nope.jsonl: no such file" in capsys.readouterr().err
    assert main(["--model", folder, "text", "--output", str(tmp_path / "no" / "dir" / "r.html")]) == 2
    assert "No such file or directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # argparse usage errors
        main(["--model", folder])
    assert exit_info.value.code == 2
    assert "nothing to explain" in capsys.readouterr().err
