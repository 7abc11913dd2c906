#!/usr/bin/env bash
# The first thing to run: set up ember, get Fashion-MNIST, train LeNet-5 with a progress bar.
#   bash scripts/demo.sh            (or: make demo)
# Environment knobs: PYTHON (interpreter for the venv), VENV (default .venv), EPOCHS (default 60; 15 for a quick look),
# DEMO_OUT (default runs/demo-lenet5), EMBER_DATA (dataset cache folder).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
EPOCHS=${EPOCHS:-60}
OUT=${DEMO_OUT:-runs/demo-lenet5}

if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating a virtual environment in $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
PY="$VENV/bin/python"
if ! "$PY" -c "import ember, numpy, safetensors, tqdm" 2>/dev/null; then
  echo "==> installing ember (pip install -e .[plot])"
  "$PY" -m pip install -q -e ".[plot]"
fi
"$PY" -c "import matplotlib" 2>/dev/null || echo "    (matplotlib not installed: the loss/accuracy plot will be skipped; pip install matplotlib)"

# Fashion-MNIST: the Debian package when we are root with apt; otherwise ember looks in the
# cache and system folders and downloads into the cache with checksums.
if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ "$(id -u)" = 0 ] \
   && command -v apt-get >/dev/null 2>&1; then
  echo "==> trying the Debian package dataset-fashion-mnist"
  apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || echo "    (package not available; ember will download instead)"
fi
echo "==> locating Fashion-MNIST"
"$PY" - <<'PYEOF'
from ember.data.datasets import FashionMNIST
for train in (True, False):
    ds = FashionMNIST(train=train, download=True)
print(f"    Fashion-MNIST: {len(ds)} test images; route taken: {ds.source}")
PYEOF

echo "==> training LeNet-5 for $EPOCHS epochs with random crops and flips (Ctrl+C saves a checkpoint; add --resume to continue)"
"$PY" -m ember train --model lenet5 --data fashion-mnist --epochs "$EPOCHS" --batch-size 64 \
  --optimizer sgd --lr 0.03 --momentum 0.9 --nesterov --weight-decay 5e-4 --schedule cosine --warmup 1 \
  --augment --val-split 0 --seed 0 --out "$OUT" "$@"
echo "==> saved model: $OUT/best.safetensors   evaluate it with:"
echo "    $PY -m ember eval --checkpoint $OUT/best.safetensors"
