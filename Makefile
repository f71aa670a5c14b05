# Local CPU environment and the everyday commands of gskd-mm.
#   make setup      create .venv (torch CPU, mmcv-lite, the rest from PyPI)
#                   and install gskd-mm in editable mode; an mmcv with its
#                   compiled ops already in .venv is kept
#   make setup MMCV=full
#                   the same with the full mmcv 2.1.0, built once from
#                   source (tools/build_mmcv.sh), for models that run its ops
#   make test       set up, then run the fast tier of the tests (not those
#                   marked slow: see docs/en/get_started.md, "The tests")
#   make test-all   set up, then run every test
#   make demo       set up, then run the CPU demo (projects/gskd_demo/demo.py)
#   make study      set up, then run the demo's full study (40 seeds, every
#                   method, every GSKD variant, the balancer, and no KD at
#                   each method's compute)
#   make compute ITERS=600 [SEEDS=20]
#                   set up, then run the demo's compute-matched study at a
#                   schedule (resumes; SEEDS=10 then SEEDS=20 runs it in
#                   parts)
#   make costs      set up, then measure the demo's step cost ratios (an
#                   idle machine) into projects/gskd_demo/step_costs.json
#   make benchmark  set up, then time the GSKD loss, the CIRKD terms and
#                   the balancer (tools/analysis_tools/benchmark_gskd.py,
#                   benchmark_cirkd.py and benchmark_balancer.py)
PYTHON ?= python3
VENV ?= .venv
MMCV ?= lite
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.gskd-mm-installed-mmcv-$(MMCV)
PYTEST_ARGS ?=

ifeq ($(MMCV),full)
INSTALL_MMCV := bash tools/build_mmcv.sh $(PY)
else ifeq ($(MMCV),lite)
# mmcv and mmcv-lite both install the package `mmcv`: never put one over
# the other, so a full mmcv already here (MMCV=full before, or installed by
# hand) stays.
INSTALL_MMCV := $(PY) -c "import importlib.metadata as m; m.version('mmcv')" \
	2>/dev/null && echo "keeping the full mmcv already installed" \
	|| $(PIP) install mmcv-lite==2.1.0
else
$(error MMCV must be lite or full, not "$(MMCV)")
endif

ITERS ?= 600
SEEDS ?= 20

.PHONY: setup test test-all demo study compute costs benchmark clean

setup: $(STAMP)

# Re-runs only when the requirements or packaging change: a ready
# environment costs a file-time check, not a reinstall.
$(STAMP): setup.py requirements/*.txt tools/build_mmcv.sh gskd_mm_compat.pth
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install torch==2.13.0 wheel
	$(INSTALL_MMCV)
	$(PIP) install -r requirements/local.txt -e .
	$(PY) -c "import gskd_mm, mmrazor.models, mmseg.models"
	touch $@

test: setup
	$(PY) -m pytest tests projects -m "not slow" $(PYTEST_ARGS)

test-all: setup
	$(PY) -m pytest tests projects $(PYTEST_ARGS)

demo: setup
	$(PY) projects/gskd_demo/demo.py

study: setup
	$(PY) projects/gskd_demo/demo.py --study

compute: setup
	$(PY) projects/gskd_demo/demo.py --compute --iters $(ITERS) --seeds $(SEEDS)

costs: setup
	$(PY) projects/gskd_demo/demo.py --measure-costs

benchmark: setup
	$(PY) tools/analysis_tools/benchmark_gskd.py
	$(PY) tools/analysis_tools/benchmark_cirkd.py
	$(PY) tools/analysis_tools/benchmark_balancer.py

clean:
	rm -rf $(VENV) build *.egg-info gskd_mm/.mim
