# Two commands on a fresh machine: `make demo` and `make test`. Both create and reuse .venv.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test demo bench clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the releases that lie on this machine's disk (see shared/ENVIRONMENT.md)
	$(PY) -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(PY) -m pip install -q -e ".[all,dev]"
	if [ -x scripts/fetch_openseadragon.sh ]; then scripts/fetch_openseadragon.sh; fi
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

demo: $(STAMP)
	$(PY) -m lrp_captum.demo

bench: $(STAMP)
	$(PY) benchmarks/lrp_speed.py

clean-venv:
	rm -rf $(VENV)
