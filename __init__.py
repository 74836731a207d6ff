"""label-attention: fine-tuning pretrained encoders with label attention (Nguyen and Ji, arXiv 2108.11809)."""

from .configuration_label_attention import LabelAttentionConfig
from .modeling_label_attention import (
    LabelAttentionForSequenceClassification,
    LabelAttentionModel,
    LabelAttentionModelOutput,
    LabelAttentionPreTrainedModel,
)

__all__ = [
    "LabelAttentionConfig",
    "LabelAttentionForSequenceClassification",
    "LabelAttentionModel",
    "LabelAttentionModelOutput",
    "LabelAttentionPreTrainedModel",
]
