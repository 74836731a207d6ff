"""LabelAttentionConfig: defaults, JSON round trip, and clear errors for inconsistent settings."""

import pytest
from tiny_models import FAMILIES, LABEL_DESCRIPTIONS, LABEL_NAMES, tiny_config, tiny_encoder_config
from transformers import BertConfig

from label_attention import LabelAttentionConfig


@pytest.mark.parametrize("family", FAMILIES)
def test_defaults_follow_the_encoder(family):
    config = tiny_config(family)
    assert config.hidden_size == 32
    assert config.label_attention_heads == 4
    assert config.label_attention_intermediate_size == 4 * 32
    assert config.num_labels == len(LABEL_NAMES)
    assert config.label2id == {name: i for i, name in enumerate(LABEL_NAMES)}
    assert config.problem_type == "multi_label_classification"
    assert set(config.auto_map) == {"AutoConfig", "AutoModel", "AutoModelForSequenceClassification"}


def test_num_labels_from_descriptions():
    config = LabelAttentionConfig(encoder=tiny_encoder_config("bert"), label_descriptions=LABEL_DESCRIPTIONS)
    assert config.num_labels == len(LABEL_DESCRIPTIONS)


def test_default_encoder_is_bert():
    assert isinstance(LabelAttentionConfig().encoder, BertConfig)


@pytest.mark.parametrize("family", FAMILIES)
def test_json_round_trip(tmp_path, family):
    config = tiny_config(family, problem_type="single_label_classification", label_pooling="mean")
    config.save_pretrained(tmp_path)
    loaded = LabelAttentionConfig.from_pretrained(tmp_path)
    assert type(loaded.encoder) is type(config.encoder)
    assert loaded.encoder.to_dict() == config.encoder.to_dict()
    for name in ("id2label", "label2id", "label_descriptions", "problem_type", "label_pooling", "auto_map"):
        assert getattr(loaded, name) == getattr(config, name), name


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(label_descriptions=LABEL_DESCRIPTIONS[:2]), "2 label descriptions for 3 labels"),
        (dict(label_descriptions=[LABEL_DESCRIPTIONS[0], "", LABEL_DESCRIPTIONS[2]]), "label 1 .*'apoptosis'.* empty"),
        (dict(label_descriptions=[LABEL_DESCRIPTIONS[0], "  \n", LABEL_DESCRIPTIONS[2]]), "label 1 .* empty"),
        (dict(id2label={0: "apoptosis", 1: "angiogenesis", 2: "apoptosis"}), r"unique; duplicated: \['apoptosis'\]"),
        (dict(problem_type="regression"), "problem_type must be one of .*'regression'"),
        (dict(label_attention_heads=5), r"hidden size \(32\) is not divisible by label_attention_heads \(5\)"),
        (dict(label_pooling="max"), "label_pooling must be one of"),
        (dict(label_attention_blocks=0), "label_attention_blocks must be at least 1"),
        (dict(decision_thresholds=[0.5, 0.5]), "2 decision thresholds for 3 labels"),
        (
            dict(problem_type="single_label_classification", decision_thresholds=[0.5] * 3),
            "decision_thresholds only apply to multi_label_classification",
        ),
    ],
)
def test_inconsistent_config_raises(kwargs, message):
    settings = dict(
        encoder=tiny_encoder_config("bert"),
        id2label=dict(enumerate(LABEL_NAMES)),
        label_descriptions=LABEL_DESCRIPTIONS,
    )
    settings.update(kwargs)
    with pytest.raises(ValueError, match=message):
        LabelAttentionConfig(**settings)


def test_bad_new_descriptions_leave_the_model_unchanged(make_model, tokenizer):
    model = make_model()
    label_ids = model.label_attention.label_input_ids.clone()
    for bad in (LABEL_DESCRIPTIONS[:2], ["A description.", "", "Another one."]):
        with pytest.raises(ValueError):
            model.set_label_descriptions(tokenizer, bad)
        assert model.config.label_descriptions == LABEL_DESCRIPTIONS
        assert (model.label_attention.label_input_ids == label_ids).all()
