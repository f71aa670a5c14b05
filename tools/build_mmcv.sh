#!/usr/bin/env bash
# Install mmcv 2.1.0 with its compiled ops into the environment of PYTHON.
# PyPI has only its source, and MMSeg imports mmcv.ops, so it is built here
# against the installed torch (minutes on a laptop CPU; pip caches the wheel,
# so a rebuilt environment reuses it). Building needs setuptools < 70, while
# torch >= 2.6 needs setuptools >= 77: the old one is installed only for
# the build and replaced right after.
set -euo pipefail
PYTHON=${1:-python}
if "$PYTHON" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '2.1.0'" \
    2>/dev/null; then
  echo "mmcv 2.1.0 with ops is already installed"
  exit 0
fi
"$PYTHON" -m pip install "setuptools<70" wheel ninja
"$PYTHON" -m pip install --no-build-isolation mmcv==2.1.0
"$PYTHON" -m pip install "setuptools>=77.0.3,<81"
"$PYTHON" -c "import mmcv.ops"
