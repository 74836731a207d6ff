"""Documents longer than the encoder's positions: read in windows encoded as one batch, with the labels attending
over the token states of all windows (`config.max_document_length`, `config.document_window_overlap`)."""

import json
import logging

import pytest
import torch
from tiny_models import ABSOLUTE_POSITION_FAMILIES, LABEL_NAMES, tiny_config
from transformers import AutoModelForSequenceClassification, pipeline

from label_attention import LabelAttentionForSequenceClassification

WINDOW = 32


def windowed_model(tokenizer, family="bert", seed=0, **kwargs):
    """A tiny random classifier whose encoder accepts `WINDOW` positions, in eval mode."""
    config = tiny_config(family, **kwargs)
    # RoBERTa numbers positions from pad_token_id + 1.
    config.encoder.max_position_embeddings = WINDOW + (1 if family == "roberta" else 0)
    torch.manual_seed(seed)
    model = LabelAttentionForSequenceClassification(config)
    model.set_label_descriptions(tokenizer)
    return model.eval()


def random_documents(length, batch=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(1000, 2000, (batch, length), generator=generator)


@pytest.mark.parametrize("family", ABSOLUTE_POSITION_FAMILIES)
@pytest.mark.parametrize("overlap", [0, 5, 12])
def test_each_token_state_comes_from_the_window_where_it_is_most_central(tokenizer, family, overlap):
    model = windowed_model(tokenizer, family, document_window_overlap=overlap)
    base = model.label_attention
    assert base.window_length == WINDOW
    input_ids = random_documents(100)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 70:] = 0  # a shorter document beside a longer one
    with torch.no_grad():
        states = base.encode_documents(input_ids, attention_mask)
        stride = WINDOW - overlap
        starts = range(0, 100 - overlap, stride)
        windows = [
            base.encoder(input_ids=input_ids[:, s : s + WINDOW], attention_mask=attention_mask[:, s : s + WINDOW])
            for s in starts
        ]
        outputs = model(input_ids=input_ids, attention_mask=attention_mask, output_attentions=True)
    assert states.shape == (2, 100, 32)
    for position in range(100):
        # Window k keeps the positions from its start + overlap // 2 (0 for the first) to the next one's.
        k = min(max(position - overlap // 2, 0) // stride, len(windows) - 1)
        for row in range(2):
            if attention_mask[row, position]:
                expected = windows[k].last_hidden_state[row, position - starts[k]]
                torch.testing.assert_close(states[row, position], expected, atol=1e-5, rtol=1e-5)
    # The labels attend over every token of the document, and over none of the padding.
    (weights,) = outputs.attentions
    assert weights.shape == (2, model.config.label_attention_heads, len(LABEL_NAMES), 100)
    assert (weights[1, ..., 70:] == 0).all() and (weights[0, ..., WINDOW:] > 0).all()


def test_words_past_the_window_change_the_scores_and_past_the_limit_do_not(tokenizer, caplog):
    model = windowed_model(tokenizer, max_document_length=3 * WINDOW)
    input_ids = random_documents(4 * WINDOW, batch=1)
    changed_after_window = input_ids.clone()
    changed_after_window[:, WINDOW + 3 :] = random_documents(3 * WINDOW - 3, batch=1, seed=1)
    changed_after_limit = input_ids.clone()
    changed_after_limit[:, 3 * WINDOW :] = random_documents(WINDOW, batch=1, seed=1)
    with torch.no_grad(), caplog.at_level(logging.WARNING):
        logits = model(input_ids=input_ids).logits
        assert not torch.allclose(model(input_ids=changed_after_window).logits, logits)
        torch.testing.assert_close(model(input_ids=changed_after_limit).logits, logits)
    assert "longer than max_document_length (96 tokens) are truncated" in caplog.text


def test_documents_within_the_window_are_read_as_before(tokenizer):
    model = windowed_model(tokenizer)
    input_ids = random_documents(WINDOW)
    mask = torch.ones_like(input_ids)
    with torch.no_grad():
        direct = model.label_attention.encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state
        assert torch.equal(model.label_attention.encode_documents(input_ids, mask), direct)


def test_relative_position_encoder_reads_long_documents_at_once(make_model):
    model = make_model("deberta-v2")
    assert model.label_attention.window_length is None
    with torch.no_grad():
        assert model(input_ids=random_documents(700)).logits.shape == (2, len(LABEL_NAMES))


def test_overlap_must_leave_the_windows_moving(tokenizer):
    with pytest.raises(ValueError, match="document_window_overlap \\(32\\) must be less than the encoder's window"):
        windowed_model(tokenizer, document_window_overlap=WINDOW)
    with pytest.raises(ValueError, match="max_document_length must be at least 1"):
        tiny_config(max_document_length=0)


def test_saved_model_keeps_the_settings_and_old_checkpoints_load(tokenizer, tmp_path):
    model = windowed_model(tokenizer, max_document_length=200, document_window_overlap=4)
    model.save_pretrained(tmp_path / "new")
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "new", trust_remote_code=True)
    assert (loaded.config.max_document_length, loaded.config.document_window_overlap) == (200, 4)
    # A checkpoint saved before these settings existed reads long documents in windows, up to the default length.
    model.save_pretrained(tmp_path / "old")
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    del config["max_document_length"], config["document_window_overlap"]
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    old = AutoModelForSequenceClassification.from_pretrained(tmp_path / "old", trust_remote_code=True).eval()
    assert (old.config.max_document_length, old.config.document_window_overlap) == (4096, 0)
    with torch.no_grad():
        assert old(input_ids=random_documents(150)).logits.shape == (2, len(LABEL_NAMES))


def test_pipeline_reads_a_long_text_without_special_arguments(tokenizer, tmp_path):
    model = windowed_model(tokenizer)
    tokenizer.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    # As `from_encoder_pretrained` and `train_accelerate.py` save it: truncation keeps what the model reads.
    long_tokenizer = AutoTokenizer.from_pretrained(tmp_path, model_max_length=model.config.max_document_length)
    classifier = pipeline("text-classification", model=model, tokenizer=long_tokenizer, top_k=None)
    text = "Tumour cells divide and spread. " * 12 + "The immune system reacts with swelling. " * 6
    assert len(long_tokenizer(text)["input_ids"]) > 2 * WINDOW
    (scores,) = classifier([text])
    with torch.no_grad():
        logits = model(**long_tokenizer(text, return_tensors="pt", return_token_type_ids=False)).logits[0]
        first_window = model(**long_tokenizer(text, return_tensors="pt", truncation=True, max_length=WINDOW)).logits[0]
    expected = {LABEL_NAMES[i]: p.item() for i, p in enumerate(torch.sigmoid(logits))}
    assert {result["label"]: pytest.approx(result["score"], abs=1e-6) for result in scores} == expected
    assert not torch.allclose(logits, first_window)


def test_evidence_past_the_window_is_learned_with_windows_and_lost_with_truncation(tokenizer):
    """A synthetic task whose only evidence lies past the first window: its class's keyword after filler text."""
    torch.manual_seed(0)
    filler = "the results of this study were measured in the samples of each group and compared".split()
    keywords = ["angiogenesis", "apoptosis"]

    def documents(count, seed):
        generator = torch.Generator().manual_seed(seed)
        texts, classes = [], []
        for _ in range(count):
            label = int(torch.randint(2, (1,), generator=generator))
            words = [filler[int(i)] for i in torch.randint(len(filler), (2 * WINDOW,), generator=generator)]
            texts.append(" ".join([*words, keywords[label], *words[:4]]))
            classes.append(label)
        return tokenizer(texts, padding=True, return_tensors="pt", return_token_type_ids=False), torch.tensor(classes)

    model = windowed_model(tokenizer, num_labels=2, problem_type="single_label_classification")
    train_inputs, train_labels = documents(64, seed=0)
    assert train_inputs["input_ids"].shape[1] > 2 * WINDOW
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(60):
        batch = slice(16 * (step % 4), 16 * (step % 4 + 1))
        loss = model(**{k: v[batch] for k, v in train_inputs.items()}, labels=train_labels[batch]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    test_inputs, test_labels = documents(64, seed=1)
    with torch.no_grad():
        windowed_accuracy = (model(**test_inputs).logits.argmax(-1) == test_labels).float().mean().item()
        model.config.max_document_length = WINDOW  # the same weights, reading only the first window
        truncated_accuracy = (model(**test_inputs).logits.argmax(-1) == test_labels).float().mean().item()
    assert windowed_accuracy >= 0.95 and truncated_accuracy <= 0.7, (windowed_accuracy, truncated_accuracy)


def test_explanations_point_into_the_whole_text(tokenizer):
    from label_attention.explain import explain

    model = windowed_model(tokenizer)
    text = " ".join(f"word{i} tumour" for i in range(60))  # about 4 windows of tokens
    (doc,) = explain(model, tokenizer, [text], top_k=None, max_length=1000)
    assert not doc.truncated
    last_window_start = tokenizer(text, return_offsets_mapping=True)["offset_mapping"][3 * WINDOW][0]
    for label in doc.labels:
        assert all(text[word.start : word.end] == word.word for word in label.words)
        assert any(word.start >= last_window_start for word in label.words[:20])
        assert sum(word.weight for word in label.words) == pytest.approx(1.0, abs=1e-4)


def test_long_document_benchmark_runs_and_writes_its_table(tiny_encoder, tmp_path, monkeypatch):
    """Smoke test (not a measure): the script times a window and two windows, and writes its table."""
    from training_runs import import_benchmark

    script = import_benchmark("long_documents", monkeypatch)
    output = tmp_path / "long"
    script.main(["--encoder", str(tiny_encoder), "--lengths", "128,256", "--window", "128", "--steps", "1",
                 "--warmup", "0", "--output", str(output)])  # fmt: skip
    rows = json.loads(output.with_suffix(".json").read_text())["rows"]
    assert [row["length"] for row in rows] == [128, 256] and rows[0]["per_token_ratio"] == 1.0
    assert "cost per token" in output.with_suffix(".md").read_text()
