#!/usr/bin/env bash
# One command installs ferkit for development, on a fresh Debian machine: the runtime and training
# both, and everything the tests need:
#   ./install.sh
# - a virtual environment in .venv with PyTorch 2.13.0, pinned in the same pip call: machines of
#   this project's kind keep its CPU wheel on disk, where pip finds it; elsewhere add
#   --index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple
#   to that pip line to avoid a multi-GB CUDA build,
# - ferkit in editable mode with the train, serve, ray, dev, opencv and video extras (users who only
#   predict install `pip install ferkit`, or `pip install 'ferkit[serve]'`; see the README; ray adds
#   about 520 MB and a couple of minutes of tests, tests/test_ray_batch.py, which skip where it is
#   absent),
# - Debian's Chromium for the browser test (when run as root with apt; skipped otherwise).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
# The opencv extra here (OpenCV 4): the Haar detector's tests, the detector benchmarks that compare
# against it and FaceDetectorYN, and the tests that check ferkit's numpy image code against OpenCV's.
# The runtime itself needs no OpenCV (.ci/runtime checks a fresh virtualenv without it).
.venv/bin/pip install --quiet "torch==2.13.0" -e ".[train,serve,ray,dev,opencv,video]"
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
echo "ferkit installed: $(.venv/bin/ferkit --version 2>/dev/null || .venv/bin/python -c 'import ferkit; print(ferkit.__version__)')"
