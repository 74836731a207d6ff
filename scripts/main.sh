#!/usr/bin/env bash
# The main job: install (CPU torch), fine-tune label attention on HoC with the bundled all-MiniLM-L6-v2,
# print the test metrics, write the Hub-ready folder outputs/hoc/model, and classify an abstract with `pipeline`.
# Hyper-parameters are those of benchmarks/configs/hoc.json (seed 1).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q torch==2.13.0 -e .
.venv/bin/python train_accelerate.py \
  --data-dir ../shared/data/hoc --output-dir outputs/hoc \
  --head label-attention --label-pooling mean --max-length 128 --epochs 2 --batch-size 16 \
  --learning-rate 5e-5 --head-learning-rate 1e-3 --warmup-ratio 0.1 --seed 1
.venv/bin/python examples/classify_abstract.py outputs/hoc/model
