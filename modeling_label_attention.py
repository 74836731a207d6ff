"""Label attention on top of a pretrained encoder (Nguyen and Ji, arXiv 2108.11809).

The encoder reads the document (token states H) and a short description of each label (one embedding per label,
E). Label-attention blocks let every label embedding attend over the document's tokens, and a scorer turns each
label's attended representation into that label's logit: with weights of each label's own (the paper's), or with
weights computed from the label's embedding, which lets a trained model take new labels from their descriptions.
"""

import inspect
import math
import os
from dataclasses import dataclass

import torch
from safetensors import SafetensorError
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, initialization as init
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils import ModelOutput, logging

from .configuration_label_attention import LabelAttentionConfig

logger = logging.get_logger(__name__)

# Label descriptions encoded at a time: bounds the memory of encoding thousands of them.
LABEL_ENCODING_BATCH = 256
# Decision threshold of a label added after training (`add_labels`): that of every label whose threshold was not tuned.
NEW_LABEL_THRESHOLD = 0.5


@dataclass
class LabelAttentionModelOutput(ModelOutput):
    r"""
    Output of [`LabelAttentionModel`].

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, num_labels, hidden_size)`):
            Label-aware representation of the document: one vector per label, from the last label-attention block.
        encoder_last_hidden_state (`torch.FloatTensor` of shape `(batch_size, sequence_length, hidden_size)`):
            The encoder's token states of the document.
        attentions (`tuple(torch.FloatTensor)`, *optional*, returned when `output_attentions=True`):
            The label-attention weights of every block, each of shape `(batch_size, num_heads, num_labels,
            sequence_length)`; padding positions get weight 0.
        label_embeddings (`torch.FloatTensor` of shape `(num_labels, hidden_size)`):
            The label embeddings that entered the first block (the pooled descriptions), shared by the batch.
    """

    last_hidden_state: torch.FloatTensor | None = None
    encoder_last_hidden_state: torch.FloatTensor | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    label_embeddings: torch.FloatTensor | None = None


class LabelAttentionBlock(nn.Module):
    """Labels attend over the document's tokens; then residual + LayerNorm, and (unless
    `config.label_attention_feed_forward` is off) feed-forward, residual + LayerNorm."""

    def __init__(self, config: LabelAttentionConfig):
        super().__init__()
        hidden_size = config.hidden_size
        self.attention = nn.MultiheadAttention(
            hidden_size, config.label_attention_heads, dropout=config.label_attention_dropout, batch_first=True
        )
        self.attention_norm = nn.LayerNorm(hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = self.output_norm = None
        if config.label_attention_feed_forward:  # per label and document: most of the block's cost at many labels
            self.feed_forward = nn.Sequential(
                nn.Linear(hidden_size, config.label_attention_intermediate_size),
                nn.GELU(),
                nn.Dropout(config.label_attention_dropout),
                nn.Linear(config.label_attention_intermediate_size, hidden_size),
            )
            self.output_norm = nn.LayerNorm(hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.label_attention_dropout)
        self.center_queries = config.label_query_centering

    def forward(self, label_states, document_states, document_padding_mask, output_attentions=False):
        """`label_states`: `(batch, num_labels, hidden)`, or `(num_labels, hidden)` shared by the batch (the label
        embeddings entering the first block), whose query projection is then computed once, not per document."""
        attended, weights = self._attend(label_states, document_states, document_padding_mask, output_attentions)
        label_states = self.attention_norm(label_states + self.dropout(attended))
        if self.feed_forward is not None:
            label_states = self.output_norm(label_states + self.dropout(self.feed_forward(label_states)))
        return label_states, weights

    def _attend(self, label_states, document_states, document_padding_mask, output_attentions):
        """`self.attention`'s computation with its own weights, projecting shared label states once for the whole
        batch; through `scaled_dot_product_attention` (no `(batch, heads, labels, tokens)` weights kept) unless the
        weights are asked for."""
        attention = self.attention
        heads, head_size = attention.num_heads, attention.head_dim
        query_weight, key_weight, value_weight = attention.in_proj_weight.chunk(3)
        query_bias, key_bias, value_bias = attention.in_proj_bias.chunk(3)
        batch_size, length = document_states.shape[:2]

        def split_heads(states):  # (..., n, hidden) -> (..., heads, n, head_size)
            return states.unflatten(-1, (heads, head_size)).transpose(-3, -2)

        queries = nn.functional.linear(label_states, query_weight, query_bias)
        if self.center_queries:  # what every label would attend to cancels out of each label's scores
            queries = queries - queries.mean(-2, keepdim=True)
        queries = split_heads(queries).expand(batch_size, -1, -1, -1)
        keys = split_heads(nn.functional.linear(document_states, key_weight, key_bias))
        values = split_heads(nn.functional.linear(document_states, value_weight, value_bias))
        attend_to = ~document_padding_mask.view(batch_size, 1, 1, length)
        dropout = attention.dropout if self.training else 0.0
        weights = None
        if output_attentions:
            scores = (queries @ keys.transpose(-1, -2)) / head_size**0.5
            weights = scores.masked_fill(~attend_to, float("-inf")).softmax(-1)
            attended = nn.functional.dropout(weights, dropout, self.training) @ values
        else:
            attended = nn.functional.scaled_dot_product_attention(queries, keys, values, attend_to, dropout_p=dropout)
        return attention.out_proj(attended.transpose(1, 2).flatten(-2)), weights


class LabelScorer(nn.Module):
    """One weight vector and bias per label: logit_l = <w_l, h_l> + b_l."""

    def __init__(self, num_labels: int, hidden_size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_labels, hidden_size))
        self.bias = nn.Parameter(torch.empty(num_labels))

    def forward(self, label_states):
        return (label_states * self.weight).sum(-1) + self.bias

    def keep_labels(self, label_ids: list[int]):
        self.weight = nn.Parameter(self.weight.detach()[label_ids])
        self.bias = nn.Parameter(self.bias.detach()[label_ids])


class SharedLabelScorer(nn.Module):
    """One scorer for every label, in the encoder's own similarity space, so that a label added after training is
    scored from its description alone, as the trained labels are.

    A metric P maps the encoder's states: P = I + M with M learnt (starts at 0), or P = I where `learn_metric` is
    False. Each label's description embedding e_l attends over the document's token states x_t by their cosine,
    alpha_lt = softmax_t(s_a cos(P x_t, P e_l)), and the label's logit is the cosine of what it attended to with its
    description, plus a shared vector's reading of the label-attention blocks' output h_l (starts at 0):

        logit_l = s cos(P sum_t alpha_lt x_t, P e_l) + <c, h_l> + b

    Every weight (M, s_a, s, c, b) is shared by the labels, so a new label's probability is calibrated like the
    trained ones'. Weights computed from e_l by a learnt map (a hypernetwork) fit the labels trained on and score a
    new label at chance; scoring by similarity in the encoder's space carries over. A learnt M bends that space
    toward the labels trained on; without it, only the fine-tuned encoder shapes the similarity.
    """

    def __init__(self, hidden_size: int, learn_metric: bool = True):
        super().__init__()
        # M: P = I + M; None: P = I
        self.metric = nn.Parameter(torch.empty(hidden_size, hidden_size)) if learn_metric else None
        self.attention_scale = nn.Parameter(torch.empty(()))  # s_a
        self.logit_scale = nn.Parameter(torch.empty(()))  # s
        self.weight = nn.Parameter(torch.empty(hidden_size))  # c
        self.bias = nn.Parameter(torch.empty(()))  # b

    def project(self, states):
        """P x, scaled to unit length."""
        if self.metric is not None:
            states = states + nn.functional.linear(states, self.metric)
        return nn.functional.normalize(states, dim=-1)

    def forward(self, label_states, label_embeddings, document_states, document_padding_mask, output_attentions=False):
        """`label_states`: the blocks' output `(batch, num_labels, hidden)`; `label_embeddings`: `(num_labels,
        hidden)`; `document_states`: the encoder's `(batch, length, hidden)`; `document_padding_mask`: `(batch,
        length)`, True at padding. Returns the logits `(batch, num_labels)` and, with `output_attentions`, the
        scorer's attention weights alpha `(batch, 1, num_labels, length)` (else None)."""
        batch_size, length = document_states.shape[:2]
        labels = self.project(label_embeddings)
        queries = (labels * self.attention_scale).expand(batch_size, 1, -1, -1)  # (batch, 1 head, labels, hidden)
        keys = self.project(document_states).unsqueeze(1)
        values = document_states.unsqueeze(1)
        attend_to = ~document_padding_mask.view(batch_size, 1, 1, length)
        weights = None
        if output_attentions:
            weights = (queries @ keys.transpose(-1, -2)).masked_fill(~attend_to, float("-inf")).softmax(-1)
            attended = (weights @ values).squeeze(1)
        else:  # no (labels, tokens) weights kept
            attended = nn.functional.scaled_dot_product_attention(queries, keys, values, attend_to, scale=1.0)
            attended = attended.squeeze(1)
        similarity = (self.project(attended) * labels).sum(-1)
        return self.logit_scale * similarity + label_states @ self.weight + self.bias, weights


class LabelAttentionPreTrainedModel(PreTrainedModel):
    config: LabelAttentionConfig
    config_class = LabelAttentionConfig
    base_model_prefix = "label_attention"
    _supports_sdpa = True

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except SafetensorError as error:  # its message names no file
            weights = os.path.join(str(pretrained_model_name_or_path), "model.safetensors")
            weights = weights if os.path.isfile(weights) else f"The weights of {pretrained_model_name_or_path}"
            raise OSError(
                f"{weights} cannot be read ({error}): the file is damaged or cut short; save or download it again."
            ) from None

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, LabelScorer):
            init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            init.zeros_(module.bias)
        elif isinstance(module, SharedLabelScorer):
            # The encoder's own cosine similarity (P = I), sharp attention, a logit of -5 + 10 cos: a description
            # close to the document scores high before any training; the blocks' term starts at 0.
            if module.metric is not None:
                init.zeros_(module.metric)
            init.constant_(module.attention_scale, 10.0)
            init.constant_(module.logit_scale, 10.0)
            init.zeros_(module.weight)
            init.constant_(module.bias, -5.0)
        elif isinstance(module, LabelAttentionModel):
            init.zeros_(module.label_input_ids)
            init.zeros_(module.label_attention_mask)
            if module.config.fixed_label_embeddings:
                init.zeros_(module.fixed_label_embeddings)


def mean_pool(states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token states over the non-padding positions: `(batch, seq, hidden)` -> `(batch, hidden)`."""
    weights = attention_mask.unsqueeze(-1).to(states.dtype)
    return (states * weights).sum(1) / weights.sum(1).clamp(min=1)


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, problem_type: str) -> torch.Tensor:
    """Binary cross-entropy per label (multi-label) or cross-entropy over the labels (single-label), in fp32."""
    if problem_type == "multi_label_classification":
        return nn.functional.binary_cross_entropy_with_logits(logits.float(), labels.float())
    return nn.functional.cross_entropy(logits.float(), labels)


def attention_overlap(attentions: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """How alike the labels' attention is: the cosine similarity between two labels' weights over a document's
    tokens, averaged over every pair of labels and every document. `attentions`: the blocks' weights, each `(batch,
    heads, num_labels, length)`; heads, then blocks, are averaged first, as explanations combine them."""
    weights = torch.stack(attentions).float().mean((0, 2))  # (batch, num_labels, length)
    num_labels = weights.shape[1]
    if num_labels < 2:
        return weights.new_zeros(())
    # The sum over ordered pairs of unit vectors' dot products is |their sum|^2 minus the diagonal: O(labels), not
    # O(labels^2), memory for large label sets.
    summed = nn.functional.normalize(weights, dim=-1).sum(1)
    pairs = (summed.square().sum(-1) - num_labels) / (num_labels * (num_labels - 1))
    return pairs.mean()


def decisions_from_logits(logits: torch.Tensor, problem_type: str, thresholds=None) -> torch.Tensor:
    """The one rule from logits to decisions (training, evaluation, explanations, users): multi-hot
    `(batch, num_labels)` where sigmoid(logit) >= the label's threshold (0.5 where `thresholds` is None) for
    multi-label; class ids `(batch,)` for single-label."""
    if problem_type == "single_label_classification":
        return logits.argmax(-1)
    thresholds = torch.as_tensor(0.5 if thresholds is None else thresholds, dtype=torch.float32, device=logits.device)
    return (torch.sigmoid(logits.float()) >= thresholds).long()


def _without_pooler(encoder):
    # The pooler (BERT, RoBERTa) is never used: without it, data-parallel training sees no unused parameters.
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None
    return encoder


def _build_encoder(encoder_config):
    # In the dtype of the layers around it, not the one the encoder's config was saved with (e.g. float16).
    return _without_pooler(AutoModel.from_config(encoder_config, dtype=torch.get_default_dtype()))


def _load_pretrained_encoder(encoder_name_or_path: str, encoder_kwargs: dict | None = None):
    # A half-precision checkpoint must not load as such: the new layers are built in the default dtype.
    # `encoder_kwargs` override the encoder's config (e.g. its dropout).
    encoder = AutoModel.from_pretrained(encoder_name_or_path, dtype=torch.get_default_dtype(), **(encoder_kwargs or {}))
    return _without_pooler(encoder)


def _max_positions(encoder) -> int | None:
    """Longest input the encoder's absolute position embeddings allow (None for relative-position encoders)."""
    positions = getattr(getattr(encoder, "embeddings", None), "position_embeddings", None)
    if not isinstance(positions, nn.Embedding):
        return None
    # RoBERTa-style embeddings number positions from padding_idx + 1.
    offset = positions.padding_idx + 1 if positions.padding_idx is not None else 0
    return positions.num_embeddings - offset


class LabelAttentionModel(LabelAttentionPreTrainedModel):
    """The encoder and the label-attention blocks: one label-aware document representation per label."""

    def __init__(self, config: LabelAttentionConfig):
        super().__init__(config)
        self.config = config
        self.encoder = _build_encoder(config.encoder)
        self.blocks = nn.ModuleList(LabelAttentionBlock(config) for _ in range(config.label_attention_blocks))
        # The tokenised descriptions live in the checkpoint, so a saved model needs no description file.
        description_shape = (config.num_labels, config.label_max_length)
        self.register_buffer("label_input_ids", torch.zeros(description_shape, dtype=torch.long))
        self.register_buffer("label_attention_mask", torch.zeros(description_shape, dtype=torch.long))
        if config.fixed_label_embeddings:
            self.register_buffer("fixed_label_embeddings", torch.zeros(config.num_labels, config.hidden_size))
        # Label embeddings computed once per eval/inference phase (and, with `trained_labels_per_step`, the detached
        # embeddings of the labels not re-encoded in training); dropped whenever the train/eval mode changes.
        self.register_buffer("_cached_label_embeddings", None, persistent=False)
        self.encoder_accepts_token_type_ids = "token_type_ids" in inspect.signature(self.encoder.forward).parameters
        # Longer documents are read in windows of this many tokens (None: the encoder reads any length at once).
        self.window_length = _max_positions(self.encoder)
        if self.window_length is not None and config.document_window_overlap >= self.window_length:
            raise ValueError(
                f"document_window_overlap ({config.document_window_overlap}) must be less than the encoder's window "
                f"of {self.window_length} tokens."
            )
        self.post_init()

    def get_input_embeddings(self):
        return self.encoder.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.encoder.set_input_embeddings(value)

    def train(self, mode: bool = True):
        self._cached_label_embeddings = None
        return super().train(mode)

    @torch.no_grad()
    def set_label_descriptions(self, tokenizer, label_descriptions: list[str] | None = None):
        """Tokenise the label descriptions (by default `config.label_descriptions`) into the model's buffers.

        With `config.fixed_label_embeddings`, the label embeddings are also computed now, with the current encoder,
        and kept fixed from then on.
        """
        if label_descriptions is not None:
            label_descriptions = list(label_descriptions)
            self.config._check_label_descriptions(label_descriptions)
            self.config.label_descriptions = label_descriptions
        if self.config.label_descriptions is None:
            raise ValueError("The config has no label_descriptions to tokenise.")
        tokens = self._tokenize_descriptions(tokenizer, self.config.label_descriptions)
        self.label_input_ids.copy_(tokens["input_ids"])
        self.label_attention_mask.copy_(tokens["attention_mask"])
        self._cached_label_embeddings = None
        if self.config.fixed_label_embeddings:
            self.fixed_label_embeddings.copy_(self._encode_without_dropout())

    def _tokenize_descriptions(self, tokenizer, label_descriptions: list[str]):
        return tokenizer(
            label_descriptions,
            padding="max_length",
            truncation=True,
            max_length=self.config.label_max_length,
            return_tensors="pt",
        )

    def _encode_without_dropout(self, label_ids: torch.Tensor | None = None) -> torch.Tensor:
        was_training = self.training
        self.eval()
        embeddings = self.encode_label_descriptions(label_ids)
        self.train(was_training)
        return embeddings

    @torch.no_grad()
    def _append_label_descriptions(self, tokenizer, label_descriptions: list[str]):
        """Tokenise the descriptions of new labels into new rows of the buffers. With `config.fixed_label_embeddings`
        their embeddings are computed now, with the current encoder; the other labels keep theirs."""
        tokens = self._tokenize_descriptions(tokenizer, label_descriptions).to(self.label_input_ids.device)
        new_ids = torch.arange(len(label_descriptions), device=self.label_input_ids.device) + len(self.label_input_ids)
        self.label_input_ids = torch.cat([self.label_input_ids, tokens["input_ids"]])
        self.label_attention_mask = torch.cat([self.label_attention_mask, tokens["attention_mask"]])
        self._cached_label_embeddings = None
        if self.config.fixed_label_embeddings:
            new_embeddings = self._encode_without_dropout(new_ids)
            self.fixed_label_embeddings = torch.cat([self.fixed_label_embeddings, new_embeddings])

    @torch.no_grad()
    def _keep_labels(self, label_ids: list[int]):
        """Keep only the rows of `label_ids`, in that order, in every per-label buffer (and in the cache: labels do
        not interact, so the embeddings kept are still those of their descriptions)."""
        for name in ("label_input_ids", "label_attention_mask", "fixed_label_embeddings", "_cached_label_embeddings"):
            rows = getattr(self, name, None)
            if rows is not None:
                setattr(self, name, rows[torch.tensor(label_ids, dtype=torch.long, device=rows.device)])

    def encode_label_descriptions(self, label_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Encode the label descriptions (all, or those of `label_ids`) and pool each into one embedding: shape
        `(num_labels, hidden_size)`. They are encoded `LABEL_ENCODING_BATCH` at a time, so that many labels fit."""
        if not self.label_attention_mask.any():
            raise ValueError(
                "The label descriptions have not been tokenised: call `set_label_descriptions(tokenizer)` or build "
                "the model with `LabelAttentionForSequenceClassification.from_encoder_pretrained`."
            )
        input_ids, mask = self.label_input_ids, self.label_attention_mask
        if label_ids is not None:
            input_ids, mask = input_ids[label_ids], mask[label_ids]
        starts = range(0, len(input_ids), LABEL_ENCODING_BATCH)
        parts = [slice(start, start + LABEL_ENCODING_BATCH) for start in starts]
        return torch.cat([self._pooled_descriptions(input_ids[part], mask[part]) for part in parts])

    def _pooled_descriptions(self, input_ids, mask) -> torch.Tensor:
        used_length = int(mask.sum(-1).max())  # skip padding columns that no description reaches
        input_ids, mask = input_ids[:, :used_length], mask[:, :used_length]
        states = self.encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state
        if self.config.label_pooling == "first":
            return states[:, 0]
        return mean_pool(states, mask)

    def label_embeddings(self) -> torch.Tensor:
        """Label embeddings for this forward pass: re-encoded while training (all of them, or
        `config.trained_labels_per_step` of them), cached otherwise."""
        if self.config.fixed_label_embeddings:
            return self.fixed_label_embeddings
        if not self.training:
            if self._cached_label_embeddings is None:
                with torch.no_grad():
                    self._cached_label_embeddings = self.encode_label_descriptions()
            return self._cached_label_embeddings
        sample = self.config.trained_labels_per_step
        if sample is None or sample >= self.config.num_labels:
            return self.encode_label_descriptions()
        # Many labels: re-encode a random sample with gradients; the others come from a cache of detached embeddings,
        # computed in full (without dropout) when training (re)starts and refreshed whenever a label is re-encoded.
        if self._cached_label_embeddings is None:
            self.encoder.eval()
            with torch.no_grad():
                self._cached_label_embeddings = self.encode_label_descriptions()
            self.encoder.train()
        sampled = torch.randperm(self.config.num_labels, device=self.label_input_ids.device)[:sample]
        fresh = self.encode_label_descriptions(sampled)
        self._cached_label_embeddings[sampled] = fresh.detach()
        return self._cached_label_embeddings.index_copy(0, sampled, fresh)

    def encode_documents(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        """The encoder's token states of the documents, `(batch, sequence_length, hidden_size)`.

        A document longer than the encoder's window is cut into windows (`config.document_window_overlap` tokens
        shared by neighbours) that are encoded as one batch, as PLM-ICD reads long clinical notes; each token's
        state is taken from the window in which it is more central, so position `t` of the result is token `t`.
        """
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        window, length = self.window_length, input_ids.shape[1]
        if window is None or length <= window:
            return self.encoder(**inputs).last_hidden_state
        overlap = self.config.document_window_overlap
        stride = window - overlap
        num_windows = 1 + math.ceil((length - window) / stride)
        padding = (num_windows - 1) * stride + window - length  # the last window is padded (masked) to full length
        windows = {
            name: nn.functional.pad(tensor, (0, padding)).unfold(1, window, stride)  # (batch, num_windows, window)
            for name, tensor in inputs.items()
        }
        has_tokens = windows["attention_mask"].any(-1)  # windows of a short document's padding are not encoded
        encoded = self.encoder(**{name: tensor[has_tokens] for name, tensor in windows.items()}).last_hidden_state
        states = encoded.new_zeros(*has_tokens.shape, window, encoded.shape[-1])
        states[has_tokens] = encoded
        positions = torch.arange(length, device=input_ids.device)
        window_of = ((positions - overlap // 2).clamp(min=0) // stride).clamp(max=num_windows - 1)
        return states[:, window_of, positions - window_of * stride]

    def _check_inputs(self, input_ids, token_type_ids):
        if input_ids is None:
            raise ValueError("input_ids are required.")
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must have shape (batch_size, sequence_length), got {tuple(input_ids.shape)}.")
        if input_ids.numel() == 0:
            raise ValueError(
                f"input_ids are empty (shape {tuple(input_ids.shape)}): pass at least one document of at least one "
                "token."
            )
        vocab_size = self.get_input_embeddings().num_embeddings
        # One check (one device sync) here instead of an IndexError, or a CUDA device-side assert, in the embedding.
        if ((input_ids < 0) | (input_ids >= vocab_size)).any():
            raise ValueError(
                f"input_ids must be token ids in [0, {vocab_size}), the encoder's vocabulary; got ids from "
                f"{int(input_ids.min())} to {int(input_ids.max())}. Tokenise with the model's own tokenizer."
            )
        if token_type_ids is not None and not self.encoder_accepts_token_type_ids:
            raise ValueError(f"The {self.config.encoder.model_type} encoder takes no token_type_ids; leave them out.")

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
    ) -> LabelAttentionModelOutput | tuple:
        r"""
        Returns one label-aware representation of each document per label, shape `(batch_size, num_labels,
        hidden_size)`, the label embeddings that entered the first block and, with `output_attentions=True`, the
        label-attention weights of every block.
        """
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        self._check_inputs(input_ids, token_type_ids)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if input_ids.shape[1] > self.config.max_document_length:
            logger.warning_once(
                f"Documents longer than max_document_length ({self.config.max_document_length} tokens) are truncated "
                "to it; set config.max_document_length to read more."
            )
            keep = slice(None, self.config.max_document_length)
            input_ids, attention_mask = input_ids[:, keep], attention_mask[:, keep]
            token_type_ids = token_type_ids[:, keep] if token_type_ids is not None else None
        document_states = self.encode_documents(input_ids, attention_mask, token_type_ids)

        label_embeddings = self.label_embeddings().to(document_states.dtype)
        label_states = label_embeddings  # shared by the batch until the first block
        padding_mask = attention_mask == 0
        all_attentions = () if output_attentions else None
        for block in self.blocks:
            label_states, weights = block(label_states, document_states, padding_mask, output_attentions)
            if output_attentions:
                all_attentions += (weights,)

        if not return_dict:
            return tuple(v for v in (label_states, document_states, all_attentions, label_embeddings) if v is not None)
        return LabelAttentionModelOutput(
            last_hidden_state=label_states,
            encoder_last_hidden_state=document_states,
            attentions=all_attentions,
            label_embeddings=label_embeddings,
        )


class LabelAttentionForSequenceClassification(LabelAttentionPreTrainedModel):
    """Label attention with a scorer (per label, or shared by the labels: `config.label_scorer`): multi-label
    (sigmoid, BCE) or single-label (softmax, CE)."""

    def __init__(self, config: LabelAttentionConfig):
        super().__init__(config)
        self.config = config
        self.label_attention = LabelAttentionModel(config)
        self.dropout = nn.Dropout(config.classifier_dropout)
        if config.label_scorer == "shared":
            self.scorer = SharedLabelScorer(config.hidden_size, config.shared_scorer_metric)
        else:
            self.scorer = LabelScorer(config.num_labels, config.hidden_size)
        self.post_init()

    @classmethod
    def from_encoder_pretrained(
        cls,
        encoder_name_or_path: str,
        label_names: list[str],
        label_descriptions: list[str],
        problem_type: str = "multi_label_classification",
        encoder_kwargs: dict | None = None,
        **label_attention_kwargs,
    ):
        """Build a classifier from a pretrained encoder, with fresh label-attention layers.

        Loads the encoder's weights and tokenizer (a local folder or a Hub id), tokenises the label descriptions
        with that tokenizer, and returns `(model, tokenizer)`, the model in eval mode. Save the tokenizer beside the
        model so that `pipeline` can load both from the same folder. The tokenizer's `model_max_length` is set to
        `config.max_document_length`, the longest document the model reads, so that `truncation=True` keeps what it
        reads. `encoder_kwargs` override the encoder's config (e.g. `{"attention_probs_dropout_prob": 0.0}`);
        `label_attention_kwargs` are any other [`LabelAttentionConfig`] arguments (e.g. `label_attention_blocks=2`,
        `label_pooling="mean"`).
        """
        tokenizer = AutoTokenizer.from_pretrained(encoder_name_or_path)
        encoder = _load_pretrained_encoder(encoder_name_or_path, encoder_kwargs)
        config = LabelAttentionConfig(
            encoder=encoder.config,
            id2label=dict(enumerate(label_names)),
            label2id={name: i for i, name in enumerate(label_names)},
            label_descriptions=list(label_descriptions),
            problem_type=problem_type,
            **label_attention_kwargs,
        )
        model = cls(config)
        model.label_attention.encoder = encoder
        model.label_attention.set_label_descriptions(tokenizer)
        # `truncation=True` (and `pipeline`) then keeps what the model reads: documents longer than the encoder's
        # window are read in windows.
        tokenizer.model_max_length = config.max_document_length
        model.eval()  # as `from_pretrained` returns it; call `model.train()` to fine-tune
        return model, tokenizer

    def set_label_descriptions(self, tokenizer, label_descriptions: list[str] | None = None):
        """See [`LabelAttentionModel.set_label_descriptions`]."""
        self.label_attention.set_label_descriptions(tokenizer, label_descriptions)

    def _check_labels(self, labels, logits):
        batch_size, num_labels = logits.shape
        if self.config.problem_type == "multi_label_classification":
            if labels.shape != (batch_size, num_labels) or not labels.is_floating_point():
                raise ValueError(
                    "multi_label_classification needs labels as a float multi-hot tensor of shape "
                    f"({batch_size}, {num_labels}); got {labels.dtype} of shape {tuple(labels.shape)}."
                )
        else:
            if labels.shape != (batch_size,) or labels.is_floating_point() or labels.dtype == torch.bool:
                raise ValueError(
                    f"single_label_classification needs labels as integer class ids of shape ({batch_size},); "
                    f"got {labels.dtype} of shape {tuple(labels.shape)}."
                )
            if labels.min() < 0 or labels.max() >= num_labels:
                raise ValueError(f"Class ids must lie in [0, {num_labels}); got {labels.tolist()}.")

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
    ) -> SequenceClassifierOutput | tuple:
        r"""
        labels (`torch.Tensor`, *optional*):
            `multi_label_classification`: float multi-hot vectors of shape `(batch_size, num_labels)`.
            `single_label_classification`: class ids of shape `(batch_size,)`.

        Returns `loss` (when `labels` are given), `logits` of shape `(batch_size, num_labels)` and, with
        `output_attentions=True`, the label-attention weights of every block, each of shape `(batch_size,
        num_heads, num_labels, sequence_length)`, followed, with the shared scorer, by the scorer's own attention
        `(batch_size, 1, num_labels, sequence_length)`.

        With `config.label_attention_overlap_coef > 0`, the loss adds that weight times the labels' attention
        overlap ([`attention_overlap`]).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        overlap_coef = self.config.label_attention_overlap_coef if labels is not None else 0.0
        outputs = self.label_attention(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            output_attentions=output_attentions or overlap_coef > 0,
            return_dict=True,
        )
        label_states = self.dropout(outputs.last_hidden_state)
        attentions = outputs.attentions if output_attentions else None
        if self.config.label_scorer == "shared":
            document_states = outputs.encoder_last_hidden_state
            if attention_mask is None:
                padding_mask = torch.zeros(document_states.shape[:2], dtype=torch.bool, device=document_states.device)
            else:  # cut as the documents were (max_document_length)
                padding_mask = attention_mask[:, : document_states.shape[1]] == 0
            logits, scorer_attentions = self.scorer(
                label_states, outputs.label_embeddings, document_states, padding_mask, output_attentions
            )
            if scorer_attentions is not None:  # what the shared scorer's logit reads: explanations show it too
                attentions = attentions + (scorer_attentions,)
        else:
            logits = self.scorer(label_states)

        loss = None
        if labels is not None:
            self._check_labels(labels, logits)
            loss = classification_loss(logits, labels, self.config.problem_type)
            if overlap_coef > 0:
                loss = loss + overlap_coef * attention_overlap(outputs.attentions)

        if not return_dict:
            output = (logits,) + ((attentions,) if attentions is not None else ())
            return ((loss,) + output) if loss is not None else output
        return SequenceClassifierOutput(loss=loss, logits=logits, attentions=attentions)

    def predict_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Decisions from logits: multi-hot `(batch, num_labels)` using `config.decision_thresholds` (0.5 where
        unset) for multi-label, class ids `(batch,)` for single-label."""
        return decisions_from_logits(logits, self.config.problem_type, self.config.decision_thresholds)

    def add_labels(self, label_names: list[str], label_descriptions: list[str], tokenizer):
        """Add labels to a trained model, without training: each is scored from its description, by the scorer the
        trained labels share. Needs `config.label_scorer="shared"`.

        `tokenizer` is the model's own. The new labels follow the existing ones (whose ids, and logits in eval mode,
        do not change); `config.id2label`, `label2id`, `label_descriptions` and the tokenised descriptions take them,
        so `save_pretrained` and `pipeline` see them. Where `config.decision_thresholds` are set, a new label gets
        `NEW_LABEL_THRESHOLD` (0.5: no data has tuned it). With `config.fixed_label_embeddings`, the new descriptions
        are encoded by the current encoder, while the trained labels keep the embeddings they were trained with.
        """
        if self.config.label_scorer != "shared":
            raise ValueError(
                "This model's scorer holds weights of each label's own (config.label_scorer='per_label'), which a new "
                "label has not got: only a model trained with label_scorer='shared' (train_accelerate.py "
                "--label-scorer shared) can take new labels. Removing labels works with either scorer."
            )
        label_names, label_descriptions = self._label_list(label_names), self._label_list(label_descriptions)
        if not label_names or len(label_names) != len(label_descriptions):
            raise ValueError(
                f"Got {len(label_names)} label names and {len(label_descriptions)} descriptions: give one description "
                "per new label, at least one label."
            )
        for name, description in zip(label_names, label_descriptions):
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"Label names must be non-empty strings, got {name!r}.")
            if not isinstance(description, str) or not description.strip():
                raise ValueError(f"The description of the new label {name!r} is empty; every label needs one.")
        taken = [name for name in label_names if name in self.config.label2id]
        if taken:
            raise ValueError(f"The model already has labels named {taken}; label names must be unique.")
        repeated = sorted({name for name in label_names if label_names.count(name) > 1})
        if repeated:
            raise ValueError(f"Labels named {repeated} are given more than once; label names must be unique.")
        self.label_attention._append_label_descriptions(tokenizer, label_descriptions)
        thresholds = self.config.decision_thresholds
        self._set_labels(
            self._label_names() + label_names,
            self.config.label_descriptions + label_descriptions,
            thresholds + [NEW_LABEL_THRESHOLD] * len(label_names) if thresholds is not None else None,
        )

    def remove_labels(self, label_names: list[str]):
        """Remove labels by name; the others keep their order (their ids close up) and their logits (unless
        `config.label_query_centering`: then every label's attention depends on the label set). Works with either
        scorer (a per-label scorer loses the removed labels' weights)."""
        label_names = self._label_list(label_names)
        unknown = [name for name in label_names if name not in self.config.label2id]
        if unknown:
            raise ValueError(f"No label named {unknown} in this model; its labels: {self._label_names()}.")
        kept = [i for i, name in enumerate(self._label_names()) if name not in label_names]
        single_label = self.config.problem_type == "single_label_classification"
        fewest = 2 if single_label or self.config.label_query_centering else 1
        if len(kept) < fewest:
            raise ValueError(f"Removing {label_names} would leave {len(kept)} label(s); a model needs {fewest}.")
        self.label_attention._keep_labels(kept)
        if isinstance(self.scorer, LabelScorer):
            self.scorer.keep_labels(kept)
        thresholds = self.config.decision_thresholds
        self._set_labels(
            [self.config.id2label[i] for i in kept],
            [self.config.label_descriptions[i] for i in kept],
            [thresholds[i] for i in kept] if thresholds is not None else None,
        )

    @torch.no_grad()
    def calibrate_thresholds(self, label_names: list[str], texts: list[str], tokenizer, max_length: int = 512,
                             batch_size: int = 32) -> dict[str, float]:
        """Decision thresholds, from unlabelled texts, for labels that no labelled data has tuned (e.g. just added by
        `add_labels`, whose probabilities tend to run low): each label in `label_names` gets the threshold at which
        it is predicted for as many of `texts` as the model's other labels are on average, at their own thresholds.

        This assumes a new label is about as frequent as the average trained one. `texts` should be like the
        documents the model will read (a few hundred); no label of theirs is needed. Where you know a label's
        frequency, or have labelled documents, set `config.decision_thresholds` yourself. Multi-label models only
        (a single-label model predicts its most likely class). Sets `config.decision_thresholds` (0.5 for every
        other label where there were none) and returns the new thresholds by label name.
        """  # fmt: skip
        label_names, calibrated = self._labels_to_calibrate(label_names)  # refused before any text is read
        texts = self._label_list(texts)
        if not texts or not all(isinstance(text, str) and text.strip() for text in texts):
            raise ValueError("Give a non-empty list of non-empty texts to calibrate the thresholds on.")
        was_training = self.training
        self.eval()
        logits = torch.cat([
            self(**tokenizer(texts[start : start + batch_size], truncation=True, max_length=max_length,
                             padding=True, return_tensors="pt").to(self.device)).logits.float()
            for start in range(0, len(texts), batch_size)
        ])  # fmt: skip
        self.train(was_training)
        return self._calibrate(label_names, calibrated, logits)

    def calibrate_thresholds_from_logits(self, label_names: list[str], logits: torch.Tensor) -> dict[str, float]:
        """`calibrate_thresholds` from this model's logits `(texts, num_labels)` on the unlabelled texts, where you
        have them already (e.g. scored for something else): the same thresholds, without reading the texts again."""
        label_names, calibrated = self._labels_to_calibrate(label_names)
        logits = torch.as_tensor(logits).float()
        if logits.ndim != 2 or logits.shape[1] != self.config.num_labels or not len(logits):
            raise ValueError(f"Give the logits of at least one text, shaped (texts, {self.config.num_labels}); "
                             f"got {tuple(logits.shape)}.")  # fmt: skip
        return self._calibrate(label_names, calibrated, logits)

    def _calibrate(self, label_names: list[str], calibrated: list[int], logits: torch.Tensor) -> dict[str, float]:
        """Both calibrations' rule, on checked labels and logits; sets `config.decision_thresholds`."""
        others = [i for i in range(self.config.num_labels) if i not in calibrated]
        rate = self.predict_from_logits(logits)[:, others].float().mean().item()
        predicted = max(1, round(rate * len(logits)))  # at least one text: a threshold above every score decides nothing
        thresholds = list(self.config.decision_thresholds or [0.5] * self.config.num_labels)
        for label_id in calibrated:
            thresholds[label_id] = torch.sigmoid(logits[:, label_id]).topk(predicted).values[-1].item()
        self.config.decision_thresholds = thresholds
        return {name: thresholds[label_id] for name, label_id in zip(label_names, calibrated)}

    def _labels_to_calibrate(self, label_names) -> tuple[list[str], list[int]]:
        """The names of the labels to calibrate, as a list, and their ids, after the checks both calibrations
        share."""
        if self.config.problem_type != "multi_label_classification":
            raise ValueError("Thresholds decide only multi-label predictions (a single-label model predicts its argmax).")
        label_names = self._label_list(label_names)
        if not label_names:
            raise ValueError("Give at least one label to calibrate.")
        unknown = [name for name in label_names if name not in self.config.label2id]
        if unknown:
            raise ValueError(f"No label named {unknown} in this model; its labels: {self._label_names()}.")
        calibrated = [self.config.label2id[name] for name in label_names]
        if len(set(calibrated)) == self.config.num_labels:
            raise ValueError("Every label is to be calibrated: the rate to match is that of the model's other labels.")
        return label_names, calibrated

    @staticmethod
    def _label_list(values) -> list:
        if isinstance(values, str):  # a lone name would be read as a list of characters
            raise ValueError(f"Give a list of labels, not one string ({values!r}).")
        return list(values)

    def _label_names(self) -> list[str]:
        return [self.config.id2label[i] for i in range(self.config.num_labels)]

    def _set_labels(self, names: list[str], descriptions: list[str], thresholds: list[float] | None):
        self.config.id2label = dict(enumerate(names))
        self.config.label2id = {name: label_id for label_id, name in enumerate(names)}
        self.config.label_descriptions = descriptions
        self.config.decision_thresholds = thresholds


LabelAttentionConfig.register_for_auto_class()
LabelAttentionModel.register_for_auto_class("AutoModel")
LabelAttentionForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")

__all__ = [
    "LabelAttentionModelOutput",
    "LabelAttentionPreTrainedModel",
    "LabelAttentionModel",
    "LabelAttentionForSequenceClassification",
]
