#!/usr/bin/env bash
# The main job: install (CPU torch), fine-tune label attention on HoC with the bundled all-MiniLM-L6-v2, print the test
# metrics, write the Hub-ready folder outputs/hoc/model, and classify an abstract with `pipeline`.
# The recipe is train_accelerate.py's defaults (benchmarks/configs/hoc.json, hoc_no_attention_dropout.json,
# hoc_label_attention_heads_1.json and hoc_shared_scorer_learnt.json, chosen on validation): 256 tokens, 3 epochs,
# encoder learning rate 3e-5, label-attention layers 3e-3, one-head label-attention blocks, the shared scorer with its
# learnt metric, mean-pooled descriptions, no dropout on the encoder's attention weights, decisions at 0.5.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q torch==2.13.0 -e .
.venv/bin/python train_accelerate.py --data-dir ../shared/data/hoc --output-dir outputs/hoc --seed 1
.venv/bin/python examples/classify_abstract.py outputs/hoc/model
