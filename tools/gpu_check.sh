#!/usr/bin/env bash
# The GPU check of gskd-mm in one command: CUDA tests and GPU benchmarks.
#
#   bash tools/gpu_check.sh --prepare DIR   # where PyPI is reachable
#   bash tools/gpu_check.sh DIR [RESULTS]   # on the GPU machine, offline
#
# The GPU machine has one NVIDIA GPU, Python 3.12 and a CUDA build of torch
# with the libraries such images ship beside it (numpy, OpenCV, SciPy,
# Matplotlib, Pillow), and no network. `--prepare` puts the wheels of
# everything else into DIR/wheels (mmcv-lite instead of mmcv: nothing to
# compile; about 13 MB, at most 60 MB). The check then installs them into
# a virtual environment on top of the machine's packages, runs
# tests/test_cuda.py, tools/analysis_tools/benchmark_gskd.py and
# tools/analysis_tools/benchmark_step.py on the GPU, and writes one
# results file (default DIR/gpu_check.md). Each stage has a time limit
# (3 + 1.5 + 4 min), so the whole check stays within 10 minutes and a
# stage that overruns still leaves the others' results.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
# The GPU machine's Python, for the wheels --prepare downloads.
GPU_PYTHON_VERSION=${GPU_PYTHON_VERSION:-3.12}
# Pinned as tested on the CPU (requirements/); setuptools < 81 gives
# MMEngine the pkg_resources that resolves `mmseg::` configs.
PACKAGES="mmengine==0.10.7 mmcv-lite==2.1.0 mmsegmentation==1.2.2
  mmrazor==1.0.0 joblib ftfy regex setuptools>=77.0.3,<81 pytest"
# Shipped with torch on GPU images, and too large to carry (150 MB).
PROVIDED='^(numpy|opencv_python|scipy|matplotlib|pillow|fonttools|contourpy|kiwisolver)-'
MAX_MB=60
STEP_RECIPE=configs/gskd/dist-gskd_deeplabv3_r101-d8_deeplabv3_r18-d8_4xb4-40k_cityscapes-512x1024.py

if [ "${1:-}" = "--prepare" ]; then
  DIR=${2:?usage: tools/gpu_check.sh --prepare DIR}
  mkdir -p "$DIR/wheels"
  all=$(mktemp -d)
  # shellcheck disable=SC2086
  "$PYTHON" -m pip download --quiet --only-binary=:all: \
    --python-version "$GPU_PYTHON_VERSION" \
    --implementation cp --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$all" $PACKAGES
  for wheel in "$all"/*.whl; do
    basename "$wheel" | grep -Eiq "$PROVIDED" || cp "$wheel" "$DIR/wheels/"
  done
  rm -rf "$all"
  mb=$(du -sm "$DIR/wheels" | cut -f1)
  echo "$(ls "$DIR/wheels" | wc -l) wheels, $mb MB in $DIR/wheels"
  [ "$mb" -le "$MAX_MB" ] || { echo "over $MAX_MB MB" >&2; exit 1; }
  exit 0
fi

DIR=${1:?usage: tools/gpu_check.sh DIR [RESULTS] (after --prepare DIR)}
DIR=$(cd "$DIR" && pwd)
RESULTS=${2:-$DIR/gpu_check.md}
[ -n "$(ls "$DIR"/wheels/*.whl 2>/dev/null)" ] \
  || { echo "no wheels in $DIR/wheels: run --prepare first" >&2; exit 1; }
VENV=$DIR/venv
"$PYTHON" -m venv --system-site-packages "$VENV"
PY=$VENV/bin/python
"$PY" -m pip install --quiet --no-index --no-deps "$DIR"/wheels/*.whl
# gskd-mm from this checkout, with its start-up hook, without a build.
SITE=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
printf '%s\nimport gskd_mm_compat\n' "$REPO" > "$SITE/gskd_mm_checkout.pth"
cd "$REPO"
"$PY" -c "import gskd_mm, mmseg.models, mmrazor.models, cv2, scipy" \
  || { echo "a package is missing above: add it to --prepare" >&2; exit 1; }
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU'"

status=0
{
  echo "# gskd-mm GPU check, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  "$PY" -c "import torch; print(f'GPU: {torch.cuda.get_device_name()}; '
                                f'torch {torch.__version__}, CUDA {torch.version.cuda}')"
  echo
  echo '## CUDA tests (tests/test_cuda.py)'
  echo '```'
  timeout 180 "$PY" -m pytest tests/test_cuda.py -v -p no:cacheprovider \
    2>&1 | tail -n 25 || status=1
  echo '```'
  echo
  echo '## GSKD loss (tools/analysis_tools/benchmark_gskd.py --device cuda)'
  timeout 90 "$PY" tools/analysis_tools/benchmark_gskd.py --device cuda \
    --repeats 20 2>/dev/null || status=1
  echo
  echo '## Training steps (tools/analysis_tools/benchmark_step.py --device cuda)'
  timeout 240 "$PY" tools/analysis_tools/benchmark_step.py "$STEP_RECIPE" \
    --device cuda --precisions fp32 fp16 --repeats 5 --teacher \
    --out "${RESULTS%.md}_steps.json" 2>/dev/null || status=1
} > "$RESULTS" 2>&1
cat "$RESULTS"
exit $status
