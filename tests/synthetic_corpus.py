"""A synthetic keyword corpus for tests: each label is triggered by one planted keyword.

Every document is a short run of neutral filler words into which the keyword of each of its labels is planted once,
at a random position. A label is present exactly when its keyword is in the text, so a model that learns the task
must find the keyword, and the keyword is the right answer to "which word made this label fire?". Each label's
description contains its keyword, as label-attention models expect descriptions to name what they look for.

    corpus = make_corpus(200, num_labels=4, seed=0)
    corpus.texts[0]          # 'Sample angiogenesis noted the clinic ...'
    corpus.labels[0]         # [0]  (label ids, sorted)
    corpus.multi_hot()[0]    # [1.0, 0.0, 0.0, 0.0]
    corpus.label_names, corpus.label_descriptions, corpus.keywords

Single-label corpora: `make_corpus(n, min_labels=1, max_labels=1)` (then `corpus.class_ids()`).
Everything is drawn from `random.Random(seed)`: the same arguments give the same corpus.
"""

import random
from dataclasses import dataclass

# Keywords, in label order. Several split into sub-word tokens in BERT-style vocabularies (angiogenesis ->
# ang ##io ##genesis), so tests also see sub-words merged back into words.
KEYWORDS = (
    "angiogenesis",
    "apoptosis",
    "inflammation",
    "metastasis",
    "fibrosis",
    "immunity",
    "necrosis",
    "hypoxia",
)

# Neutral filler words (none of them is, or contains, a keyword).
FILLER = (
    "the a patient was seen in clinic after two weeks and report noted stable results with no further change "
    "during follow up visit today later study group data sample were measured using standard methods on day "
    "three of treatment team reviewed chart again next morning before discharge home family asked about plan "
    "doctor nurse wrote short summary for record at hospital last year this case also showed similar findings"
).split()


@dataclass
class SyntheticCorpus:
    texts: list[str]
    labels: list[list[int]]  # label ids of each document, sorted
    label_names: list[str]
    label_descriptions: list[str]
    keywords: list[str]  # keywords[label_id] triggers that label

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.label_names))

    def multi_hot(self) -> list[list[float]]:
        """Labels as multi-hot float vectors, one per document (multi-label training targets)."""
        return [[float(i in doc_labels) for i in range(len(self.label_names))] for doc_labels in self.labels]

    def class_ids(self) -> list[int]:
        """Labels as one class id per document; only for single-label corpora."""
        if any(len(doc_labels) != 1 for doc_labels in self.labels):
            raise ValueError("class_ids() needs exactly one label per document (make_corpus(max_labels=1)).")
        return [doc_labels[0] for doc_labels in self.labels]


def make_corpus(
    num_docs: int,
    *,
    num_labels: int = 4,
    min_labels: int = 1,
    max_labels: int = 2,
    min_words: int = 6,
    max_words: int = 14,
    capitalize: bool = True,
    seed: int = 0,
) -> SyntheticCorpus:
    """Generate `num_docs` documents over `num_labels` keyword-triggered labels.

    Each document has between `min_labels` and `max_labels` labels (uniformly), between `min_words` and
    `max_words` filler words, its keywords planted at random positions, and ends with a full stop. With
    `capitalize`, the first word is capitalised (so a planted keyword may appear as "Apoptosis" in the text).
    """
    if not 1 <= num_labels <= len(KEYWORDS):
        raise ValueError(f"num_labels must be between 1 and {len(KEYWORDS)}, got {num_labels}.")
    if not 0 <= min_labels <= max_labels <= num_labels:
        raise ValueError("Need 0 <= min_labels <= max_labels <= num_labels.")
    rng = random.Random(seed)
    keywords = list(KEYWORDS[:num_labels])
    texts, labels = [], []
    for _ in range(num_docs):
        doc_labels = sorted(rng.sample(range(num_labels), rng.randint(min_labels, max_labels)))
        words = [rng.choice(FILLER) for _ in range(rng.randint(min_words, max_words))]
        for label_id in doc_labels:
            words.insert(rng.randint(0, len(words)), keywords[label_id])
        if capitalize:
            words[0] = words[0].capitalize()
        texts.append(" ".join(words) + ".")
        labels.append(doc_labels)
    descriptions = [f"The text mentions {keyword}." for keyword in keywords]
    return SyntheticCorpus(
        texts=texts,
        labels=labels,
        label_names=list(keywords),
        label_descriptions=descriptions,
        keywords=keywords,
    )
