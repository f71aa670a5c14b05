#!/usr/bin/env bash
# Install the full mmcv 2.1.0, with its compiled ops, into the environment
# of PYTHON (`make setup MMCV=full` runs it). gskd-mm's recipes need only
# mmcv-lite, which `make setup` installs; this is for models that run
# mmcv's ops (see the README). PyPI has only mmcv's source, so it is built
# here against the installed torch (minutes on a laptop CPU; pip caches the
# wheel, so a rebuilt environment reuses it). Building needs
# setuptools < 70, while torch >= 2.6 needs setuptools >= 77: the old one is
# installed only for the build and replaced right after.
set -euo pipefail
PYTHON=${1:-python}
# The compiled extension itself: gskd-mm's import hook makes `mmcv.ops`
# import on mmcv-lite too.
if "$PYTHON" -c "import mmcv, mmcv._ext; assert mmcv.__version__ == '2.1.0'" \
    2>/dev/null; then
  echo "mmcv 2.1.0 with ops is already installed"
  exit 0
fi
# mmcv-lite installs the same package `mmcv`: remove it rather than
# overwrite its files.
"$PYTHON" -m pip uninstall -y mmcv-lite
"$PYTHON" -m pip install "setuptools<70" wheel ninja
"$PYTHON" -m pip install --no-build-isolation mmcv==2.1.0
"$PYTHON" -m pip install "setuptools>=77.0.3,<81"
GSKD_MM_COMPAT=0 "$PYTHON" -c "import mmcv.ops"
