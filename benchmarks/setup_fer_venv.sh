#!/usr/bin/env bash
# A separate virtualenv with the `fer` package, for benchmarks/inference.py's comparison column.
# fer needs TensorFlow (about 1.7 GB installed), so it stays out of ferkit's own environment.
# fer's other declared dependencies (facenet-pytorch, which pins an old torch, moviepy, ...) are
# only used by features the benchmark does not touch, hence --no-deps for fer itself.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -m venv .venv-fer
.venv-fer/bin/pip install "tensorflow-cpu==2.21.0" "opencv-python-headless<5" "setuptools<81" requests Pillow
.venv-fer/bin/pip install --no-deps "fer==25.10.3"
.venv-fer/bin/python -c "from fer.fer import FER; FER(); print('fer ready')"
