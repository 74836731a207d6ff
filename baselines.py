"""The mean-pooling baseline: the encoder's token states averaged over the document, then one linear layer.

It is the natural classifier for a sentence-transformers encoder such as all-MiniLM-L6-v2 (trained with mean pooling),
and one of the two vanilla baselines that label attention is compared with (the other, [CLS] + linear, is
`transformers`' own `AutoModelForSequenceClassification`). Train it with `train_accelerate.py --head mean-pooling`.
"""

import torch
from torch import nn
from transformers import AutoConfig, PreTrainedConfig, PreTrainedModel
from transformers.configuration_utils import SubConfigSpec
from transformers.modeling_outputs import SequenceClassifierOutput

from .modeling_label_attention import _build_encoder, _load_pretrained_encoder, classification_loss, mean_pool


class MeanPoolingConfig(PreTrainedConfig):
    r"""
    Args:
        encoder (`PreTrainedConfig` or `dict`, *optional*): configuration of the text encoder. Defaults to BERT.
        classifier_dropout (`float`, *optional*, defaults to 0.1): dropout before the linear layer.
        initializer_range (`float`, *optional*, defaults to 0.02): standard deviation of the linear layer's weights.
    """

    model_type = "mean_pooling_classifier"
    sub_configs_defaults = {"encoder": SubConfigSpec(config_class=AutoConfig, model_type="bert")}

    encoder: PreTrainedConfig | dict | None = None
    problem_type: str | None = "multi_label_classification"
    classifier_dropout: float = 0.1
    initializer_range: float = 0.02


class MeanPoolingForSequenceClassification(PreTrainedModel):
    config: MeanPoolingConfig
    config_class = MeanPoolingConfig
    base_model_prefix = "encoder"

    def __init__(self, config: MeanPoolingConfig):
        super().__init__(config)
        self.encoder = _build_encoder(config.encoder)
        self.dropout = nn.Dropout(config.classifier_dropout)
        hidden_size = getattr(config.encoder, "hidden_size", None) or config.encoder.dim  # DistilBERT: dim
        self.classifier = nn.Linear(hidden_size, config.num_labels)
        self.post_init()

    @classmethod
    def from_encoder_pretrained(cls, encoder_name_or_path: str, encoder_kwargs: dict | None = None, **config_kwargs):
        """A fresh classifier on the pretrained encoder's weights; `encoder_kwargs` override the encoder's config,
        `config_kwargs` are `MeanPoolingConfig`'s."""
        encoder = _load_pretrained_encoder(encoder_name_or_path, encoder_kwargs)
        model = cls(MeanPoolingConfig(encoder=encoder.config, **config_kwargs))
        model.encoder = encoder
        return model

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        encoder_inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            encoder_inputs["token_type_ids"] = token_type_ids
        states = self.encoder(**encoder_inputs).last_hidden_state
        logits = self.classifier(self.dropout(mean_pool(states, attention_mask)))
        loss = classification_loss(logits, labels, self.config.problem_type) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


MeanPoolingConfig.register_for_auto_class()
MeanPoolingForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
