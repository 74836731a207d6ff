"""Label-attention model configuration."""

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

PROBLEM_TYPES = ("multi_label_classification", "single_label_classification")
LABEL_POOLING_MODES = ("first", "mean")
LABEL_SCORERS = ("per_label", "shared")


class LabelAttentionConfig(PreTrainedConfig):
    r"""
    Configuration of a label-attention classifier (Nguyen and Ji, arXiv 2108.11809): a pretrained encoder reads the
    document and a short description of every label; label-attention blocks let each label embedding attend over the
    document's tokens; a scorer turns each label's representation into that label's logit.

    Args:
        encoder (`PreTrainedConfig` or `dict`, *optional*):
            Configuration of the text encoder (any `AutoModel` text encoder: BERT, RoBERTa, DistilBERT, DeBERTa-v2,
            ELECTRA, ...). It is nested in `config.json` and read back with its own config class. Defaults to BERT.
        label_descriptions (`list[str]`, *optional*):
            One description per label, in `id2label` order. The encoder reads these to build the label embeddings.
            When given without `id2label`, `num_labels` is taken from its length.
        problem_type (`str`, *optional*, defaults to `"multi_label_classification"`):
            `"multi_label_classification"` (sigmoid per label, binary cross-entropy) or
            `"single_label_classification"` (softmax over labels, cross-entropy).
        label_attention_blocks (`int`, *optional*, defaults to 1):
            Number of stacked label-attention blocks.
        label_attention_heads (`int`, *optional*):
            Number of heads of the label-attention blocks; must divide the encoder's hidden size. Defaults to the
            encoder's number of attention heads. `train_accelerate.py` trains 1 (chosen on validation): one attention
            distribution per label, whose labels read more distinct words than an average over many heads.
        label_attention_intermediate_size (`int`, *optional*):
            Width of the feed-forward layer of each block. Defaults to four times the encoder's hidden size.
        label_attention_feed_forward (`bool`, *optional*, defaults to `True`):
            Whether each block ends with a feed-forward layer (with residual and LayerNorm). It runs per label and
            per document, so with thousands of labels it costs more than the attention; `False` is the lighter block.
        label_query_centering (`bool`, *optional*, defaults to `False`):
            Whether the blocks subtract the labels' mean from each label's attention query. A token's score then
            counts only what sets the label apart from the others, so the labels' attention follows their own
            evidence rather than what every label would read. A label's attention then depends on the whole label
            set: adding or removing labels changes it.
        label_attention_overlap_coef (`float`, *optional*, defaults to 0.0):
            Weight of a term added to the training loss (when `labels` are given) that keeps labels from reading the
            same words: the cosine similarity between two labels' attention over a document's tokens (heads, then
            blocks averaged, as explanations show it), averaged over every pair of labels and every document. 1
            where two labels spread their attention alike, 0 where they share no token. 0 turns it off.
        label_attention_dropout (`float`, *optional*, defaults to 0.1):
            Dropout on the attention weights and on the residual branches of the blocks.
        classifier_dropout (`float`, *optional*, defaults to 0.1):
            Dropout before the scorer.
        label_scorer (`str`, *optional*, defaults to `"per_label"`):
            How a label's representation becomes its logit. `"per_label"` (the paper's): a weight vector and a bias
            learnt for each label, so the label set is fixed once trained. `"shared"`: one scorer for every label, in
            the encoder's similarity space: the label's description embedding attends over the document's tokens by
            cosine similarity (through a metric that starts at the identity: `shared_scorer_metric`), the logit is
            the similarity of what it attended to with the description, plus a shared reading of the blocks' output;
            every weight is shared by the labels, so a trained model takes new labels from their descriptions alone
            ([`LabelAttentionForSequenceClassification.add_labels`]). `train_accelerate.py` trains `"shared"` with
            the learnt metric (chosen on validation, HoC and MTC-5).
        shared_scorer_metric (`bool`, *optional*, defaults to `True`):
            With `label_scorer="shared"`: if `True`, the scorer learns a metric P = I + M on the encoder's states (M
            starts at 0); if `False`, it compares states by the encoder's own cosine (P = I), so only the fine-tuned
            encoder shapes the similarity. A learnt M bends it toward the labels trained on, which can cost labels
            added later. Ignored by the per-label scorer.
        label_pooling (`str`, *optional*, defaults to `"first"`):
            How a description's token states become one label embedding: `"first"` (the first token, e.g. `[CLS]`)
            or `"mean"` (mean over the description's non-padding tokens).
        fixed_label_embeddings (`bool`, *optional*, defaults to `False`):
            If `False` (the paper's scheme), descriptions are re-encoded at every training step, so gradients reach
            the encoder through them too. If `True`, the label embeddings are computed once, when the descriptions
            are set, stored with the weights and never updated.
        trained_labels_per_step (`int`, *optional*):
            For large label sets: at each training step, re-encode (with gradients) only this many randomly chosen
            descriptions; the other labels use embeddings computed without gradients when training (re)starts and
            refreshed whenever their description is re-encoded. `None` (default) re-encodes all of them.
        label_max_length (`int`, *optional*, defaults to 64):
            Length, in tokens, to which label descriptions are truncated and padded when they are tokenised.
        max_document_length (`int`, *optional*, defaults to 4096):
            Longest document read, in tokens; longer inputs are truncated to it (with a warning). Documents longer
            than the encoder accepts (its position embeddings: 512 for BERT) are read in windows of the encoder's
            length, encoded as one batch, and the labels attend over the token states of all windows.
        document_window_overlap (`int`, *optional*, defaults to 0):
            Tokens shared by consecutive windows; each token's state comes from the window in which it is more
            central, so overlapping windows give tokens near a window's edge context on both sides.
        decision_thresholds (`list[float]`, *optional*):
            Multi-label only: one probability threshold per label, used by `predict` (0.5 for every label when
            unset). Training tunes them on validation data.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal initialiser of the new (non-encoder) weights.
        layer_norm_eps (`float`, *optional*, defaults to 1e-12):
            Epsilon of the blocks' layer normalisations.

    Example:

    ```python
    >>> from transformers import BertConfig
    >>> from label_attention import LabelAttentionConfig, LabelAttentionForSequenceClassification

    >>> config = LabelAttentionConfig(
    ...     encoder=BertConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256),
    ...     id2label={0: "angiogenesis", 1: "immune evasion"},
    ...     label_descriptions=["New blood vessels form.", "Cells hide from the immune system."],
    ... )
    >>> model = LabelAttentionForSequenceClassification(config)
    ```"""

    model_type = "label_attention"
    sub_configs_defaults = {"encoder": SubConfigSpec(config_class=AutoConfig, model_type="bert")}

    encoder: PreTrainedConfig | dict | None = None
    label_descriptions: list[str] | None = None
    problem_type: str | None = "multi_label_classification"
    label_attention_blocks: int = 1
    label_attention_heads: int | None = None
    label_attention_intermediate_size: int | None = None
    label_attention_feed_forward: bool = True
    label_query_centering: bool = False
    label_attention_overlap_coef: float = 0.0
    label_attention_dropout: float = 0.1
    classifier_dropout: float = 0.1
    label_scorer: str = "per_label"
    shared_scorer_metric: bool = True
    label_pooling: str = "first"
    fixed_label_embeddings: bool = False
    trained_labels_per_step: int | None = None
    label_max_length: int = 64
    max_document_length: int = 4096
    document_window_overlap: int = 0
    decision_thresholds: list[float] | None = None
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12

    def __post_init__(self, **kwargs):
        if self.label_descriptions is not None and self.id2label is None and "num_labels" not in kwargs:
            kwargs["num_labels"] = len(self.label_descriptions)
        kwargs.setdefault(
            "auto_map",
            {
                "AutoConfig": "configuration_label_attention.LabelAttentionConfig",
                "AutoModel": "modeling_label_attention.LabelAttentionModel",
                "AutoModelForSequenceClassification": "modeling_label_attention.LabelAttentionForSequenceClassification",
            },
        )
        super().__post_init__(**kwargs)
        if self.label2id is None:
            self.label2id = {name: label_id for label_id, name in self.id2label.items()}
        if self.label_attention_heads is None:
            self.label_attention_heads = getattr(self.encoder, "num_attention_heads", 1)
        if self.label_attention_intermediate_size is None:
            self.label_attention_intermediate_size = 4 * self.hidden_size
        self._check_consistency()

    @property
    def hidden_size(self) -> int:
        """Hidden size of the encoder, which the label-attention blocks share."""
        encoder_hidden = getattr(self.encoder, "hidden_size", None) or getattr(self.encoder, "dim", None)
        if encoder_hidden is None:
            raise ValueError(f"Cannot read the hidden size of the encoder config {type(self.encoder).__name__}.")
        return encoder_hidden

    def _check_consistency(self):
        if self.problem_type not in PROBLEM_TYPES:
            raise ValueError(f"problem_type must be one of {PROBLEM_TYPES}, got {self.problem_type!r}.")
        if self.label_pooling not in LABEL_POOLING_MODES:
            raise ValueError(f"label_pooling must be one of {LABEL_POOLING_MODES}, got {self.label_pooling!r}.")
        if self.label_scorer not in LABEL_SCORERS:
            raise ValueError(f"label_scorer must be one of {LABEL_SCORERS}, got {self.label_scorer!r}.")
        if self.label_attention_blocks < 1:
            raise ValueError(f"label_attention_blocks must be at least 1, got {self.label_attention_blocks}.")
        if self.label_attention_heads < 1 or self.hidden_size % self.label_attention_heads:
            raise ValueError(
                f"The encoder's hidden size ({self.hidden_size}) is not divisible by label_attention_heads "
                f"({self.label_attention_heads})."
            )
        if self.max_document_length < 1:
            raise ValueError(f"max_document_length must be at least 1, got {self.max_document_length}.")
        if self.trained_labels_per_step is not None and self.trained_labels_per_step < 1:
            raise ValueError(f"trained_labels_per_step must be at least 1, got {self.trained_labels_per_step}.")
        if self.label_query_centering and self.num_labels < 2:
            raise ValueError("label_query_centering needs at least 2 labels (one label's centred query is zero).")
        if not 0 <= self.label_attention_overlap_coef < float("inf"):
            raise ValueError(
                f"label_attention_overlap_coef must be a finite number >= 0, got {self.label_attention_overlap_coef}."
            )
        if self.document_window_overlap < 0:
            raise ValueError(f"document_window_overlap must be at least 0, got {self.document_window_overlap}.")
        names = list(self.id2label.values())
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"Label names must be unique; duplicated: {duplicates}.")
        if self.label_descriptions is not None:
            self._check_label_descriptions(self.label_descriptions)
        if self.decision_thresholds is not None:
            if self.problem_type != "multi_label_classification":
                raise ValueError("decision_thresholds only apply to multi_label_classification.")
            if len(self.decision_thresholds) != self.num_labels:
                raise ValueError(
                    f"Got {len(self.decision_thresholds)} decision thresholds for {self.num_labels} labels."
                )

    def _check_label_descriptions(self, label_descriptions: list[str]):
        if len(label_descriptions) != self.num_labels:
            raise ValueError(
                f"Got {len(label_descriptions)} label descriptions for {self.num_labels} labels; "
                "give exactly one description per label, in id2label order."
            )
        for label_id, description in enumerate(label_descriptions):
            if not isinstance(description, str) or not description.strip():
                raise ValueError(
                    f"The description of label {label_id} ({self.id2label[label_id]!r}) is empty; "
                    "every label needs a non-empty description."
                )


__all__ = ["LabelAttentionConfig"]
