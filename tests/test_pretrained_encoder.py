"""`from_encoder_pretrained`: a classifier around a pretrained encoder, in-process (saving and reloading it in a
fresh process is in test_loading.py)."""

import pytest
import torch
from safetensors.torch import load_file
from tiny_models import DOCUMENTS, LABEL_DESCRIPTIONS, LABEL_NAMES, MINILM_PATH, encode, tiny_encoder_config
from transformers import AutoModel, AutoTokenizer, pipeline

from label_attention import LabelAttentionConfig, LabelAttentionForSequenceClassification


def test_minilm_weights_and_descriptions():
    model, tokenizer = LabelAttentionForSequenceClassification.from_encoder_pretrained(
        MINILM_PATH, LABEL_NAMES, LABEL_DESCRIPTIONS, label_pooling="mean"
    )
    encoder = model.label_attention.encoder
    pretrained = load_file(f"{MINILM_PATH}/model.safetensors")
    state = encoder.state_dict()
    for name in ("embeddings.word_embeddings.weight", "encoder.layer.5.output.dense.weight"):
        assert torch.equal(state[name], pretrained[name]), name
    assert encoder.pooler is None
    assert not [name for name, _ in model.named_parameters() if "pooler" in name]
    assert model.config.hidden_size == 384 and model.config.label_attention_heads == 12
    assert model.config.id2label == dict(enumerate(LABEL_NAMES))
    assert model.config.label_pooling == "mean"
    assert tokenizer.model_max_length == model.config.max_document_length == 4096  # read in windows of 512
    expected_ids = tokenizer(LABEL_DESCRIPTIONS, padding="max_length", max_length=64, return_tensors="pt")["input_ids"]
    assert torch.equal(model.label_attention.label_input_ids, expected_ids)
    outputs = model.eval()(**tokenizer(DOCUMENTS, padding=True, return_tensors="pt"))
    assert outputs.logits.shape == (2, len(LABEL_NAMES)) and torch.isfinite(outputs.logits).all()


@pytest.fixture
def half_precision_encoder(tmp_path, tokenizer):
    """A tiny BERT checkpoint stored in float16, whose tokenizer declares no maximum length, and that accepts 64
    positions."""
    torch.manual_seed(0)
    config = tiny_encoder_config("bert")
    config.max_position_embeddings = 64
    AutoModel.from_config(config).to(torch.float16).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(MINILM_PATH, model_max_length=int(1e30)).save_pretrained(tmp_path)
    return tmp_path


def test_half_precision_checkpoint_builds_a_float32_model(half_precision_encoder, tokenizer):
    model, _ = LabelAttentionForSequenceClassification.from_encoder_pretrained(
        half_precision_encoder, LABEL_NAMES, LABEL_DESCRIPTIONS
    )
    assert {parameter.dtype for parameter in model.parameters()} == {torch.float32}
    with torch.no_grad():
        logits = model.eval()(**encode(tokenizer, DOCUMENTS)).logits
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()


def test_encoder_config_saved_in_half_precision_builds_a_float32_model(tokenizer):
    encoder_config = tiny_encoder_config("electra")
    encoder_config.dtype = torch.float16  # as read from a float16 checkpoint's config.json
    config = LabelAttentionConfig(
        encoder=encoder_config, id2label=dict(enumerate(LABEL_NAMES)), label_descriptions=LABEL_DESCRIPTIONS
    )
    model = LabelAttentionForSequenceClassification(config)
    assert {parameter.dtype for parameter in model.parameters()} == {torch.float32}
    model.set_label_descriptions(tokenizer)
    with torch.no_grad():
        assert torch.isfinite(model.eval()(**encode(tokenizer, DOCUMENTS)).logits).all()


def test_pipeline_truncates_to_the_longest_document_read(half_precision_encoder):
    model, tokenizer = LabelAttentionForSequenceClassification.from_encoder_pretrained(
        half_precision_encoder, LABEL_NAMES, LABEL_DESCRIPTIONS
    )
    assert tokenizer.model_max_length == model.config.max_document_length  # the tokenizer declared none
    classifier = pipeline("text-classification", model=model.eval(), tokenizer=tokenizer, top_k=None)
    long_text = "Tumour cells divide and spread. " * 40
    (scores,) = classifier([long_text], truncation=True)
    with torch.no_grad():
        logits = model(**tokenizer(long_text, truncation=True, return_tensors="pt")).logits[0]
    assert {result["label"]: pytest.approx(result["score"], abs=1e-6) for result in scores} == {
        LABEL_NAMES[i]: probability.item() for i, probability in enumerate(torch.sigmoid(logits))
    }


def test_load_in_another_dtype(tmp_path, make_model, tokenizer):
    make_model("deberta-v2").save_pretrained(tmp_path)
    model = LabelAttentionForSequenceClassification.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert {parameter.dtype for parameter in model.parameters()} == {torch.bfloat16}
    with torch.no_grad():
        assert model(**encode(tokenizer, DOCUMENTS)).logits.dtype == torch.bfloat16
