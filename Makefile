# Local CPU environment and the everyday commands of gskd-mm.
#   make setup      create .venv (torch CPU, mmcv 2.1.0 built once, the rest
#                   from PyPI) and install gskd-mm in editable mode
#   make test       set up, then run the test suite
#   make demo       set up, then run the CPU demo (tools/demo.py)
#   make benchmark  set up, then time the GSKD loss and the CIRKD terms
#                   (tools/benchmark_gskd.py, tools/benchmark_cirkd.py)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.gskd-mm-installed
PYTEST_ARGS ?=

.PHONY: setup test demo benchmark clean

setup: $(STAMP)

# Re-runs only when the requirements or packaging change: a ready
# environment costs a file-time check, not a rebuild.
$(STAMP): setup.py requirements/*.txt tools/build_mmcv.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install torch==2.13.0 wheel ninja
	bash tools/build_mmcv.sh $(PY)
	$(PIP) install -r requirements/local.txt -e .
	$(PY) -c "import gskd_mm, mmrazor.models, mmseg.models"
	touch $@

test: setup
	$(PY) -m pytest tests $(PYTEST_ARGS)

demo: setup
	$(PY) tools/demo.py

benchmark: setup
	$(PY) tools/benchmark_gskd.py
	$(PY) tools/benchmark_cirkd.py

clean:
	rm -rf $(VENV) build *.egg-info gskd_mm/.mim
