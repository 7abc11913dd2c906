# Two commands do everything on a fresh machine:
#   make demo   set up a virtual environment, get Fashion-MNIST, train LeNet-5 with a progress bar
#   make test   install the test extras (pytest, hypothesis, PyTorch CPU as the oracle) and run the suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: demo test venv bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

venv: $(PY)
	$(PY) -m pip install -q -e '.[plot]'

demo: venv
	bash scripts/demo.sh

test: $(PY)
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pytest -q -p no:cacheprovider

bench: venv
	$(PY) -m pip install -q 'torch==2.13.0' threadpoolctl
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) bench/bench_mlp.py
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) bench/bench_conv.py
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) bench/bench_layers.py
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) bench/bench_ops.py
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) bench/bench_cnn.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
