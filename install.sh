#!/usr/bin/env bash
# One command installs ferkit for development, on a fresh Debian machine: the runtime and training
# both, and everything the tests need:
#   ./install.sh
# - a virtual environment in .venv with PyTorch 2.13.0, pinned in the same pip call: machines of
#   this project's kind keep its CPU wheel on disk, where pip finds it; elsewhere add
#   --index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple
#   to that pip line to avoid a multi-GB CUDA build,
# - ferkit in editable mode with the train, serve, ray and dev extras (users who only predict install
#   `pip install ferkit`, or `pip install 'ferkit[serve]'`; see the README; ray adds about 520 MB and
#   a couple of minutes of tests, tests/test_ray_batch.py, which skip where it is absent),
# - Debian's Chromium for the browser test (when run as root with apt; skipped otherwise).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
# OpenCV 4 here, for the Haar cascades that the detector benchmarks compare against (OpenCV 5 has
# none); the runtime allows OpenCV 5, which .ci/runtime's fresh virtualenv gets.
.venv/bin/pip install --quiet "torch==2.13.0" "opencv-python-headless<5" -e ".[train,serve,ray,dev]"
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
echo "ferkit installed: $(.venv/bin/ferkit --version 2>/dev/null || .venv/bin/python -c 'import ferkit; print(ferkit.__version__)')"
