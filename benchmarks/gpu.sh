#!/usr/bin/env bash
# The one prepared GPU measurement (issue 29, item 6), for a machine with a CUDA device and this project installed
# (`make install` and `pip install -e ".[test,train]"` beforehand: the device machines reach no network). Writes
# benchmarks/results/inject_cuda.json (injections/s, eager and compiled) and train_cuda.json (EfficientNetV2-S
# training and ResNet-18 scoring samples/s, loader on and off), each naming the GPU; about 5 minutes on an H100.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
$PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: nothing to measure')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 300 $PY benchmarks/bench_inject.py --cuda-only
timeout 300 $PY benchmarks/bench_train.py --archs efficientnet_v2_s resnet18
