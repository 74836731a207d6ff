"""In-process behaviour of the label-attention model over tiny random encoders of several families."""

import pytest
import torch
from tiny_models import (
    DOCUMENTS,
    FAMILIES,
    LABEL_DESCRIPTIONS,
    LABEL_NAMES,
    encode,
    tiny_config,
)

from label_attention import LabelAttentionForSequenceClassification, LabelAttentionModel

NUM_LABELS = len(LABEL_NAMES)


@pytest.mark.parametrize("family", FAMILIES)
def test_output_shapes(make_model, tokenizer, family):
    model = make_model(family, label_attention_blocks=2)
    batch = encode(tokenizer, DOCUMENTS)
    batch_size, seq_len = batch["input_ids"].shape

    with torch.no_grad():
        outputs = model(**batch, output_attentions=True)
        base_outputs = model.label_attention(**batch)
        plain = model(**batch)

    assert outputs.logits.shape == (batch_size, NUM_LABELS)
    assert len(outputs.attentions) == 2
    heads = model.config.label_attention_heads
    for weights in outputs.attentions:
        assert weights.shape == (batch_size, heads, NUM_LABELS, seq_len)
        # Each label's attention is a distribution over the document's real tokens; padding gets nothing.
        torch.testing.assert_close(weights.sum(-1), torch.ones(batch_size, heads, NUM_LABELS))
        padding = batch["attention_mask"] == 0
        assert padding.any()
        assert (weights.masked_select(padding[:, None, None, :]) == 0).all()
    assert plain.attentions is None
    assert base_outputs.last_hidden_state.shape == (batch_size, NUM_LABELS, 32)
    assert base_outputs.encoder_last_hidden_state.shape == (batch_size, seq_len, 32)


def test_tuple_outputs(make_model, tokenizer):
    model = make_model()
    batch = encode(tokenizer, DOCUMENTS)
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    with torch.no_grad():
        expected = model(**batch, labels=labels)
        loss, logits = model(**batch, labels=labels, return_dict=False)
        (logits_only,) = model(**batch, return_dict=False)
    torch.testing.assert_close(loss, expected.loss)
    torch.testing.assert_close(logits, expected.logits)
    torch.testing.assert_close(logits_only, expected.logits)


@pytest.mark.parametrize("family", FAMILIES)
def test_multi_label_loss(make_model, tokenizer, family):
    model = make_model(family).train()
    batch = encode(tokenizer, DOCUMENTS)
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    outputs = model(**batch, labels=labels)
    assert outputs.loss.dim() == 0 and torch.isfinite(outputs.loss)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(outputs.logits, labels)
    torch.testing.assert_close(outputs.loss, expected)
    outputs.loss.backward()


@pytest.mark.parametrize("family", FAMILIES)
def test_single_label_loss(make_model, tokenizer, family):
    model = make_model(family, problem_type="single_label_classification").train()
    batch = encode(tokenizer, DOCUMENTS)
    labels = torch.tensor([2, 0])
    outputs = model(**batch, labels=labels)
    assert outputs.logits.shape == (2, NUM_LABELS)
    expected = torch.nn.functional.cross_entropy(outputs.logits, labels)
    torch.testing.assert_close(outputs.loss, expected)
    outputs.loss.backward()


def _token_id(tokenizer, word):
    (token_id,) = tokenizer(word, add_special_tokens=False)["input_ids"]
    return token_id


@pytest.mark.parametrize("family", FAMILIES)
def test_gradients_reach_encoder_through_documents_and_descriptions(make_model, tokenizer, family):
    batch = encode(tokenizer, DOCUMENTS)
    # "vessels" is read only in a label description, "mice" only in a document.
    description_only, document_only = _token_id(tokenizer, "vessels"), _token_id(tokenizer, "mice")
    assert description_only not in batch["input_ids"]
    assert document_only in batch["input_ids"]

    def embedding_grads(fixed_label_embeddings):
        model = make_model(family, fixed_label_embeddings=fixed_label_embeddings).train()
        assert description_only in model.label_attention.label_input_ids
        assert document_only not in model.label_attention.label_input_ids
        model(**batch, labels=torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])).loss.backward()
        grad = model.get_input_embeddings().weight.grad
        return grad[description_only].abs().sum().item(), grad[document_only].abs().sum().item()

    through_description, through_document = embedding_grads(fixed_label_embeddings=False)
    assert through_description > 0, "no gradient reached the encoder through the label descriptions"
    assert through_document > 0, "no gradient reached the encoder through the documents"

    through_description, through_document = embedding_grads(fixed_label_embeddings=True)
    assert through_description == 0, "fixed label embeddings must not pass gradients to the encoder"
    assert through_document > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_padding_does_not_change_logits(make_model, tokenizer, family):
    model = make_model(family, label_attention_blocks=2)
    document = DOCUMENTS[0]
    with torch.no_grad():
        alone = model(**encode(tokenizer, [document])).logits[0]
        # Padded to the longer document of a batch, and to a fixed, longer length.
        in_batch = model(**encode(tokenizer, [document, DOCUMENTS[1]])).logits[0]
        padded = encode(tokenizer, [document], padding="max_length", max_length=40)
        assert (padded["attention_mask"] == 0).sum() > 10
        long_padded = model(**padded).logits[0]
    torch.testing.assert_close(in_batch, alone, rtol=0, atol=1e-5)
    torch.testing.assert_close(long_padded, alone, rtol=0, atol=1e-5)


@pytest.mark.parametrize("label_pooling", ["first", "mean"])
@pytest.mark.parametrize("label_max_length", [12, 40])
def test_label_embedding_pooling(make_model, tokenizer, label_pooling, label_max_length):
    """Each label embedding is the first token state, or the mean of the token states, of its description read
    alone: the padding of the batch of descriptions changes nothing."""
    model = make_model("roberta", label_pooling=label_pooling, label_max_length=label_max_length)
    encoder = model.label_attention.encoder
    with torch.no_grad():
        embeddings = model.label_attention.encode_label_descriptions()
        for label_id, description in enumerate(LABEL_DESCRIPTIONS):
            states = encoder(**encode(tokenizer, [description])).last_hidden_state[0]
            expected = states[0] if label_pooling == "first" else states.mean(0)
            torch.testing.assert_close(embeddings[label_id], expected, rtol=0, atol=1e-5)


def _count_description_encodings(model):
    """Count the encoder calls that read the label descriptions (recognised by their batch of num_labels rows)."""
    calls = []
    label_ids = model.label_attention.label_input_ids

    def hook(module, args, kwargs):
        input_ids = kwargs["input_ids"]
        if input_ids.shape[0] == label_ids.shape[0] and torch.equal(input_ids, label_ids[:, : input_ids.shape[1]]):
            calls.append(input_ids.shape)

    model.label_attention.encoder.register_forward_pre_hook(hook, with_kwargs=True)
    return calls


def test_label_embeddings_cached_in_eval_and_recomputed_in_train(make_model, tokenizer):
    model = make_model()
    batch = encode(tokenizer, DOCUMENTS)  # 2 documents, 3 labels: the batch sizes tell the calls apart
    calls = _count_description_encodings(model)

    with torch.no_grad():
        first = model(**batch).logits
        assert len(calls) == 1
        # Only as wide as the longest description, not label_max_length.
        assert calls[0][1] == model.label_attention.label_attention_mask.sum(-1).max() < model.config.label_max_length
        second = model(**batch).logits
        assert len(calls) == 1, "eval mode must reuse the cached label embeddings"
    torch.testing.assert_close(second, first)

    model.train()
    model(**batch)
    model(**batch)
    assert len(calls) == 3, "training must re-encode the descriptions at every forward"

    # Change the encoder while training; back in eval mode the cache must reflect the new weights.
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(1.5)
    model.eval()
    with torch.no_grad():
        updated = model(**batch).logits
        assert len(calls) == 4
        model(**batch)
        assert len(calls) == 4
    cached = model.label_attention._cached_label_embeddings
    with torch.no_grad():
        torch.testing.assert_close(cached, model.label_attention.encode_label_descriptions())
    assert not torch.allclose(updated, first)


def test_new_descriptions_drop_the_cache(make_model, tokenizer):
    model = make_model()
    batch = encode(tokenizer, DOCUMENTS)
    with torch.no_grad():
        before = model(**batch).logits
        model.set_label_descriptions(tokenizer, ["Cells hide from the immune system.", *LABEL_DESCRIPTIONS[1:]])
        after = model(**batch).logits
    assert model.config.label_descriptions[0] == "Cells hide from the immune system."
    assert not torch.allclose(after[:, 0], before[:, 0])
    torch.testing.assert_close(after[:, 1:], before[:, 1:])


def test_fixed_label_embeddings_are_set_once(make_model, tokenizer):
    model = make_model(fixed_label_embeddings=True)
    fixed = model.label_attention.fixed_label_embeddings.clone()
    calls = _count_description_encodings(model)
    model.train()
    model(**encode(tokenizer, DOCUMENTS))
    assert calls == []
    torch.testing.assert_close(model.label_attention.label_embeddings(), fixed)


def test_token_type_ids(make_model, tokenizer):
    bert = make_model("bert")
    batch = encode(tokenizer, DOCUMENTS)
    with torch.no_grad():
        without = bert(**batch).logits
        with_zeros = bert(**batch, token_type_ids=torch.zeros_like(batch["input_ids"])).logits
    torch.testing.assert_close(with_zeros, without)
    distilbert = make_model("distilbert")
    with pytest.raises(ValueError, match="takes no token_type_ids"):
        distilbert(**batch, token_type_ids=torch.zeros_like(batch["input_ids"]))


def test_predict_from_logits(make_model):
    model = make_model(decision_thresholds=[0.5, 0.9, 0.1])
    logits = torch.logit(torch.tensor([[0.6, 0.8, 0.2], [0.4, 0.95, 0.05]]))
    assert model.predict_from_logits(logits).tolist() == [[1, 0, 1], [0, 1, 0]]
    single = make_model(problem_type="single_label_classification")
    assert single.predict_from_logits(logits).tolist() == [1, 1]


# Bad input


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (torch.tensor([[1, 0, 1], [0, 1, 0]]), "float multi-hot"),  # integer multi-hot
        (torch.tensor([1.0, 0.0]), "float multi-hot"),  # one value per document
        (torch.tensor([[1.0, 0.0], [0.0, 1.0]]), "float multi-hot"),  # too few labels
        (torch.tensor([[1.0, 0.0, 1.0]]), "float multi-hot"),  # batch size mismatch
    ],
)
def test_multi_label_bad_labels(make_model, tokenizer, labels, message):
    model = make_model()
    with pytest.raises(ValueError, match=message):
        model(**encode(tokenizer, DOCUMENTS), labels=labels)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), "integer class ids"),  # one-hot floats
        (torch.tensor([1.0, 0.0]), "integer class ids"),  # float ids
        (torch.tensor([[1], [0]]), "integer class ids"),  # extra dimension
        (torch.tensor([True, False]), "integer class ids"),
        (torch.tensor([0, 3]), r"Class ids must lie in \[0, 3\)"),
        (torch.tensor([-1, 0]), r"Class ids must lie in \[0, 3\)"),
    ],
)
def test_single_label_bad_labels(make_model, tokenizer, labels, message):
    model = make_model(problem_type="single_label_classification")
    with pytest.raises(ValueError, match=message):
        model(**encode(tokenizer, DOCUMENTS), labels=labels)


def test_input_ids_required_and_two_dimensional(make_model):
    model = make_model()
    with pytest.raises(ValueError, match="input_ids are required"):
        model(attention_mask=torch.ones(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"shape \(batch_size, sequence_length\)"):
        model(input_ids=torch.tensor([101, 2000, 102]))


def test_descriptions_must_be_tokenised_before_use():
    model = LabelAttentionForSequenceClassification(tiny_config()).eval()
    with pytest.raises(ValueError, match="set_label_descriptions"):
        model(input_ids=torch.tensor([[101, 2000, 102]]))


def test_base_model_alone(tokenizer):
    model = LabelAttentionModel(tiny_config("roberta"))
    model.set_label_descriptions(tokenizer)
    outputs = model.eval()(**encode(tokenizer, DOCUMENTS), output_attentions=True)
    assert outputs.last_hidden_state.shape == (2, NUM_LABELS, 32)
    assert len(outputs.attentions) == 1
