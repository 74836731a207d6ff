"""Classify an abstract with a saved label-attention model through the `pipeline` API.

    python examples/classify_abstract.py outputs/hoc/model ["abstract text"]

Without a text, it classifies the first labelled abstract of ../shared/data/hoc/test.jsonl.
"""

import json
import sys
from pathlib import Path

from transformers import pipeline

HOC_TEST = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "hoc" / "test.jsonl"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(__doc__)
        return 2
    model_dir = argv[0]
    if len(argv) > 1:
        text, gold = argv[1], None
    else:
        records = (json.loads(line) for line in HOC_TEST.open())
        record = next(record for record in records if record["labels"])
        text, gold = record["text"], record["labels"]
    classifier = pipeline("text-classification", model=model_dir, trust_remote_code=True, top_k=None)
    scores = classifier([text], truncation=True)[0]  # every label with its score
    print(f"Abstract: {text[:300]}{'...' if len(text) > 300 else ''}")
    if gold is not None:
        print(f"Gold labels: {gold}")
    for item in scores:
        print(f"  {item['score']:.3f}  {item['label']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
