# Two commands on a fresh machine: `make demo` and `make test`. Both create and reuse .venv, and
# `install` sets up everything they need: the Debian packages chromium (browser tests) and npm
# (fetches OpenSeadragon), installed with apt-get when run as root and named otherwise; torch
# and the project with its `dev` extra (which includes every runtime extra) in .venv;
# OpenSeadragon from the npm registry.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install test demo bench mutation clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml setup.py
	scripts/install_system_packages.sh chromium:chromium npm:npm
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || { echo "$(PYTHON) -m venv failed: on Debian install python3-venv" >&2; exit 1; }
	$(PY) -m pip install -q --upgrade pip
	# the torch and torchvision releases the project is tested with
	$(PY) -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
	# setuptools announces every editable install with a notice block: information only
	PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install -q -e ".[dev]"
	PYTHON=$(PY) scripts/fetch_openseadragon.sh
	touch $(STAMP)

# the browser tests need chromium: without it (and without root to install it) stop here with
# the package named, rather than fail later; `make test PYTEST_ARGS='-m "not browser"'` skips them
test: $(STAMP)
	case "$(PYTEST_ARGS)" in *"not browser"*) ;; *) scripts/install_system_packages.sh --require chromium:chromium ;; esac
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# `make demo PORT=8600` picks the app's port; without it 8501 or the next free one (said when taken)
demo: $(STAMP)
	$(PY) -m lrp_captum.cli.demo $(if $(PORT),--port $(PORT))

bench: $(STAMP)
	$(PY) benchmarks/lrp_speed.py

# mutation testing of the core and the app's guards (hours; not part of `make test`):
# `make mutation TARGETS="paths escaping"` for some targets, scripts/mutation.py --list for all
mutation: $(STAMP)
	$(PY) -m pip install -q -e ".[mutation]"
	$(PY) scripts/mutation.py $(TARGETS)

clean-venv:
	rm -rf $(VENV)
