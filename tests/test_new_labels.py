"""New labels without retraining: the shared scorer (`label_scorer="shared"`) trains like the per-label one, and a
model using it takes new labels from their descriptions (`add_labels`) and drops labels (`remove_labels`); saved,
reloaded through remote code, in `pipeline` and in ONNX, the model carries the labels it has now."""

import pytest
import torch
from fresh_process import probe_checkpoints
from test_loading import PIPELINE_TEXTS, assert_loads_like_saved, assert_pipeline_scores, save_checkpoint
from tiny_models import DOCUMENTS, LABEL_DESCRIPTIONS, LABEL_NAMES, encode

from label_attention import LabelAttentionForSequenceClassification
from label_attention.explain import explain
from label_attention.modeling_label_attention import NEW_LABEL_THRESHOLD
from label_attention.onnx_export import OnnxTextClassificationPipeline, export_onnx

LONG_DOCUMENT = "Tumour cells divide and spread. " * 110  # over the encoder's 512 positions: read in windows
NEW_NAME, NEW_DESCRIPTION = "metastasis", "Cancer cells invade tissue and spread to distant organs."


def logits(model, inputs):
    with torch.no_grad():
        return model(**inputs).logits


@pytest.fixture
def batch(tokenizer):
    return encode(tokenizer, DOCUMENTS)


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"trained_labels_per_step": 2},
        {"fixed_label_embeddings": True},
        {"label_attention_blocks": 2},
        {"shared_scorer_metric": False},
    ],
)
def test_shared_scorer_trains_and_scores_the_embeddings_the_blocks_read(make_model, tokenizer, batch, config):
    model = make_model(label_scorer="shared", **config).train()
    loss = model(**batch, labels=torch.tensor([[1.0, 0, 1], [0, 1, 0]])).loss
    loss.backward()
    assert torch.isfinite(loss)
    for name, parameter in model.scorer.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    model.eval()
    outputs = model.label_attention(**batch)
    torch.testing.assert_close(outputs.label_embeddings, model.label_attention.label_embeddings())
    padding = batch["attention_mask"] == 0
    states = outputs.last_hidden_state, outputs.label_embeddings, outputs.encoder_last_hidden_state
    expected, no_weights = model.scorer(*states, padding)
    torch.testing.assert_close(logits(model, batch), expected)
    assert no_weights is None


def test_shared_scorer_returns_its_attention_after_the_blocks(make_model, batch):
    """With `output_attentions`, the shared scorer's own attention (what its logit reads) follows the blocks'; the
    logits are the same as without it."""
    model = make_model(label_scorer="shared", label_attention_blocks=2)
    with torch.no_grad():
        outputs = model(**batch, output_attentions=True)
    assert len(outputs.attentions) == 3
    scorer_weights = outputs.attentions[-1]
    assert scorer_weights.shape == (2, 1, 3, batch["input_ids"].shape[1])
    padding = (batch["attention_mask"] == 0)[:, None, None, :].expand_as(scorer_weights)
    assert padding.any() and (scorer_weights[padding] == 0).all()
    torch.testing.assert_close(scorer_weights.sum(-1), torch.ones(2, 1, 3))
    torch.testing.assert_close(outputs.logits, logits(model, batch), atol=1e-5, rtol=1e-5)


def test_explanations_of_a_shared_scorer_model_read_the_scorers_attention(make_model, tokenizer):
    model = make_model(label_scorer="shared")
    [scorer_only] = explain(model, tokenizer, DOCUMENTS[:1], top_k=None, block=-1, contrast=False)
    [blocks_only] = explain(model, tokenizer, DOCUMENTS[:1], top_k=None, block=0, contrast=False)
    for from_scorer, from_block in zip(scorer_only.labels, blocks_only.labels):
        assert sum(word.weight for word in from_scorer.words) == pytest.approx(1.0)
        assert [w.weight for w in from_scorer.words] != pytest.approx([w.weight for w in from_block.words])


def test_shared_scorer_reads_long_documents_in_windows(make_model, tokenizer):
    model = make_model(label_scorer="shared")
    inputs = encode(tokenizer, [LONG_DOCUMENT, DOCUMENTS[0]])
    assert inputs["input_ids"].shape[1] > model.label_attention.window_length
    assert logits(model, inputs).shape == (2, 3)


def test_shared_scorer_ignores_padding(make_model, tokenizer):
    """A document's logits are the same alone and padded in a batch with a longer one: the scorer's own attention
    over the tokens skips padding."""
    model = make_model(label_scorer="shared")
    short, long = DOCUMENTS[0], DOCUMENTS[0] + " " + DOCUMENTS[1] * 3
    alone = logits(model, encode(tokenizer, [short]))
    padded = logits(model, encode(tokenizer, [short, long]))[:1]
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("learn_metric", [True, False])
def test_untrained_shared_scorer_is_the_encoder_similarity(make_model, tokenizer, batch, learn_metric):
    """Before training, a label's logit is -5 + 10 cos(attended tokens, description): what makes a new label's score
    meaningful is the encoder's own similarity, which training only adjusts. Without a learnt metric the scorer holds
    none."""
    model = make_model(label_scorer="shared", shared_scorer_metric=learn_metric)
    assert ("metric" in dict(model.scorer.named_parameters())) == learn_metric
    outputs = model.label_attention(**batch)
    documents, labels = outputs.encoder_last_hidden_state, outputs.label_embeddings
    unit = torch.nn.functional.normalize
    scores = torch.einsum("bth,lh->blt", unit(documents, dim=-1), unit(labels, dim=-1)) * 10
    scores = scores.masked_fill((batch["attention_mask"] == 0)[:, None, :], float("-inf"))
    attended = torch.einsum("blt,bth->blh", scores.softmax(-1), documents)
    expected = 10 * (unit(attended, dim=-1) * unit(labels, dim=-1)).sum(-1) - 5
    torch.testing.assert_close(logits(model, batch), expected, atol=1e-4, rtol=1e-4)


def test_an_added_label_is_scored_as_if_it_had_been_trained_with(make_model, tokenizer, batch):
    """Nothing in the shared scorer depends on the number of labels: two labels plus an added third give the logits of
    the same weights built with all three."""
    model = make_model(label_scorer="shared", num_labels=2)
    before = logits(model, batch)
    model.add_labels(LABEL_NAMES[2:], LABEL_DESCRIPTIONS[2:], tokenizer)
    after = logits(model, batch)
    assert after.shape == (2, 3) and model.config.num_labels == 3
    torch.testing.assert_close(after[:, :2], before)
    torch.testing.assert_close(after, logits(make_model(label_scorer="shared"), batch))
    assert model.config.id2label == dict(enumerate(LABEL_NAMES))
    assert model.config.label2id == {name: i for i, name in enumerate(LABEL_NAMES)}
    assert model.config.label_descriptions == LABEL_DESCRIPTIONS
    assert model.label_attention.label_input_ids.shape == model.label_attention.label_attention_mask.shape == (3, 64)


def test_removing_then_adding_a_label_gives_back_its_logits(make_model, tokenizer, batch):
    model = make_model(label_scorer="shared")
    before = logits(model, batch)
    model.remove_labels(["apoptosis"])
    assert list(model.config.id2label.values()) == ["angiogenesis", "inflammation"]
    torch.testing.assert_close(logits(model, batch), before[:, [0, 2]])
    model.add_labels(["apoptosis"], [LABEL_DESCRIPTIONS[1]], tokenizer)
    torch.testing.assert_close(logits(model, batch), before[:, [0, 2, 1]])


def test_fixed_label_embeddings_of_the_trained_labels_stay(make_model, tokenizer, batch):
    model = make_model(label_scorer="shared", fixed_label_embeddings=True)
    fixed = model.label_attention.fixed_label_embeddings.clone()
    before = logits(model, batch)
    model.add_labels([NEW_NAME], [NEW_DESCRIPTION], tokenizer)
    assert torch.equal(model.label_attention.fixed_label_embeddings[:3], fixed)
    torch.testing.assert_close(logits(model, batch)[:, :3], before)
    model.remove_labels(["angiogenesis"])
    assert torch.equal(model.label_attention.fixed_label_embeddings[:2], fixed[1:])


def test_thresholds_of_new_and_removed_labels(make_model, tokenizer, batch):
    model = make_model(label_scorer="shared", decision_thresholds=[0.3, 0.4, 0.6])
    model.add_labels([NEW_NAME], [NEW_DESCRIPTION], tokenizer)
    assert model.config.decision_thresholds == [0.3, 0.4, 0.6, NEW_LABEL_THRESHOLD] and NEW_LABEL_THRESHOLD == 0.5
    assert model.predict_from_logits(logits(model, batch)).shape == (2, 4)
    model.remove_labels(["apoptosis", "inflammation"])
    assert model.config.decision_thresholds == [0.3, NEW_LABEL_THRESHOLD]
    untuned = make_model(label_scorer="shared")
    untuned.add_labels([NEW_NAME], [NEW_DESCRIPTION], tokenizer)
    assert untuned.config.decision_thresholds is None  # every label at 0.5


CALIBRATION_TEXTS = [
    f"{subject} {verb} in {place}." for subject in ("Tumour cells", "New blood vessels", "Immune cells", "Mutations")
    for verb in ("spread", "die", "grow quickly", "swell") for place in ("mice", "the liver")
]  # fmt: skip


def calibration_logits(model, tokenizer) -> torch.Tensor:
    """The model's logits on CALIBRATION_TEXTS, in batches of 5 as the calibrations in these tests read them."""
    batches = [CALIBRATION_TEXTS[start : start + 5] for start in range(0, len(CALIBRATION_TEXTS), 5)]
    return torch.cat([logits(model, encode(tokenizer, batch)) for batch in batches])


@pytest.mark.parametrize("tuned", [True, False])
def test_calibrated_threshold_predicts_a_new_label_as_often_as_the_others(make_model, tokenizer, tuned):
    model = make_model(label_scorer="shared")
    with torch.no_grad():  # the tiny encoder's similarities saturate alike for every text: let c spread the scores
        model.scorer.logit_scale.zero_(), model.scorer.bias.zero_()
        model.scorer.weight.normal_(generator=torch.Generator().manual_seed(0))
    if tuned:  # each trained label at its median probability over the texts: predicted for half of them
        probabilities = torch.sigmoid(logits(model, encode(tokenizer, CALIBRATION_TEXTS)))
        model.config.decision_thresholds = probabilities.median(0).values.tolist()
    model.add_labels([NEW_NAME], [NEW_DESCRIPTION], tokenizer)
    trained = list(model.config.decision_thresholds or [0.5] * 3)[:3]
    calibrated = model.calibrate_thresholds([NEW_NAME], CALIBRATION_TEXTS, tokenizer, batch_size=5)
    assert model.config.decision_thresholds == trained + [calibrated[NEW_NAME]]
    decisions = model.predict_from_logits(calibration_logits(model, tokenizer))
    rate = decisions[:, :3].float().mean().item()
    assert 0 < rate < 1 or not tuned
    assert decisions[:, 3].sum() == max(1, round(rate * len(CALIBRATION_TEXTS)))


def test_calibration_from_logits_gives_the_texts_thresholds(make_model, tokenizer):
    """Logits already computed on the texts calibrate as the texts do, without reading them again."""
    model = make_model(label_scorer="shared")
    model.add_labels([NEW_NAME], [NEW_DESCRIPTION], tokenizer)
    from_texts = model.calibrate_thresholds([NEW_NAME], CALIBRATION_TEXTS, tokenizer, batch_size=5)
    model.config.decision_thresholds = None
    scored = calibration_logits(model, tokenizer)
    assert model.calibrate_thresholds_from_logits([NEW_NAME], scored) == pytest.approx(from_texts)
    config = model.config.to_dict()
    with pytest.raises(ValueError, match=rf"shaped \(texts, 4\); got \({len(CALIBRATION_TEXTS)}, 3\)"):
        model.calibrate_thresholds_from_logits([NEW_NAME], scored[:, :3])
    assert model.config.to_dict() == config


@pytest.mark.parametrize(
    ("kwargs", "names", "texts", "message"),
    [
        ({"problem_type": "single_label_classification"}, [NEW_NAME], CALIBRATION_TEXTS, "only multi-label"),
        ({}, ["metastasis", "invasion"], CALIBRATION_TEXTS, r"No label named \['invasion'\]"),
        ({}, [NEW_NAME, *LABEL_NAMES], CALIBRATION_TEXTS, "the model's other labels"),
        ({}, [], CALIBRATION_TEXTS, "at least one label"),
        ({}, [NEW_NAME], [], "non-empty list of non-empty texts"),
        ({}, [NEW_NAME], ["A text.", " "], "non-empty list of non-empty texts"),
        ({}, [NEW_NAME], "One text.", "not one string"),
    ],
)
def test_bad_calibrations_are_refused_and_change_nothing(make_model, tokenizer, kwargs, names, texts, message):
    model = make_model(label_scorer="shared", **kwargs)
    model.add_labels([NEW_NAME], [NEW_DESCRIPTION], tokenizer)
    config = model.config.to_dict()
    with pytest.raises(ValueError, match=message):
        model.calibrate_thresholds(names, texts, tokenizer)
    assert model.config.to_dict() == config


def test_single_label_model_takes_a_new_class(make_model, tokenizer, batch):
    model = make_model(label_scorer="shared", problem_type="single_label_classification")
    before = logits(model, batch)
    model.add_labels([NEW_NAME], [NEW_DESCRIPTION], tokenizer)
    after = logits(model, batch)
    torch.testing.assert_close(after[:, :3], before)  # the softmax is now over four classes
    assert model.predict_from_logits(after).shape == (2,)
    with pytest.raises(ValueError, match="would leave 1 label.*needs 2"):
        model.remove_labels(LABEL_NAMES)


def test_centred_label_queries_keep_two_labels(make_model):
    model = make_model(label_query_centering=True)
    model.remove_labels(LABEL_NAMES[:1])
    with pytest.raises(ValueError, match="would leave 1 label.*needs 2"):
        model.remove_labels(LABEL_NAMES[1:2])


def test_per_label_scorer_removes_labels_with_their_weights(make_model, batch):
    model = make_model()
    before = logits(model, batch)
    model.remove_labels(["angiogenesis"])
    assert model.scorer.weight.shape == (2, 32) and model.scorer.bias.shape == (2,)
    torch.testing.assert_close(logits(model, batch), before[:, 1:])


@pytest.mark.parametrize(
    ("scorer", "call", "message"),
    [
        ("per_label", ("add", [NEW_NAME], [NEW_DESCRIPTION]), "per_label.*--label-scorer shared"),
        ("shared", ("add", ["apoptosis"], [NEW_DESCRIPTION]), r"already has labels named \['apoptosis'\]"),
        ("shared", ("add", [NEW_NAME, NEW_NAME], ["a", "b"]), r"\['metastasis'\] are given more than once"),
        ("shared", ("add", [NEW_NAME, "invasion"], [NEW_DESCRIPTION]), "2 label names and 1 descriptions"),
        ("shared", ("add", [], []), "at least one label"),
        ("shared", ("add", [NEW_NAME], ["  "]), "description of the new label 'metastasis' is empty"),
        ("shared", ("add", NEW_NAME, NEW_DESCRIPTION), "not one string"),
        ("shared", ("remove", ["metastasis"]), r"No label named \['metastasis'\].*'angiogenesis'"),
        ("per_label", ("remove", LABEL_NAMES), "would leave 0 label"),
    ],
)
def test_bad_changes_of_the_label_set_are_refused_and_change_nothing(make_model, tokenizer, scorer, call, message):
    model = make_model(label_scorer=scorer)
    config, buffers = model.config.to_dict(), dict(model.label_attention.named_buffers())
    with pytest.raises(ValueError, match=message):
        if call[0] == "add":
            model.add_labels(*call[1:], tokenizer)
        else:
            model.remove_labels(*call[1:])
    assert model.config.to_dict() == config
    assert all(torch.equal(buffer, buffers[name]) for name, buffer in model.label_attention.named_buffers())


@pytest.mark.parametrize("learn_metric", [True, False])
def test_added_labels_survive_saving_loading_with_remote_code_and_pipeline(
    make_model, tokenizer, tmp_path, learn_metric
):
    model = make_model(
        label_scorer="shared", shared_scorer_metric=learn_metric, num_labels=2, decision_thresholds=[0.3, 0.4]
    )
    model.add_labels([LABEL_NAMES[2], NEW_NAME], [LABEL_DESCRIPTIONS[2], NEW_DESCRIPTION], tokenizer)
    names, descriptions = [*LABEL_NAMES, NEW_NAME], [*LABEL_DESCRIPTIONS, NEW_DESCRIPTION]
    case = save_checkpoint(model, tokenizer, tmp_path / "model", encode(tokenizer, DOCUMENTS), PIPELINE_TEXTS)
    loaded = LabelAttentionForSequenceClassification.from_pretrained(tmp_path / "model")
    assert loaded.config.decision_thresholds == [0.3, 0.4, 0.5, 0.5] and loaded.config.label_scorer == "shared"
    assert loaded.config.shared_scorer_metric == learn_metric

    probe = {key: case[key] for key in ("source", "inputs", "pipeline_texts")}
    (seen,) = probe_checkpoints([probe], tmp_path / "probe")
    assert_loads_like_saved(seen, case, names, descriptions)
    assert_pipeline_scores(seen, case, "multi_label_classification")
    assert {result["label"] for result in seen["pipeline"][0]} == set(names)


def test_onnx_export_of_a_model_with_added_labels(make_model, tokenizer, tmp_path):
    model = make_model(label_scorer="shared")
    model.add_labels([NEW_NAME], [NEW_DESCRIPTION], tokenizer)
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    export = export_onnx(tmp_path / "model", tmp_path / "onnx")  # checks ONNX Runtime's logits against PyTorch's
    assert export.max_difference <= 1e-4
    classifier = OnnxTextClassificationPipeline.from_pretrained(export.output_dir, top_k=None)
    (results,) = classifier(DOCUMENTS[:1], truncation=True)
    assert {result["label"] for result in results} == {*LABEL_NAMES, NEW_NAME}
