# cryostash — the two commands of the README:
#   make demo   venv + install + CRIU, then examples/quickstart.py on the default store
#   make test   venv + install + CRIU, then ruff, mypy and the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install criu demo test lint

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# CRIU >= 4.2: the system one if it is good enough, else a private prefix (idempotent).
criu: install
	$(BIN)/python -m cryostash.engines.criu_provision

demo: criu
	$(BIN)/python examples/quickstart.py

lint: install
	$(BIN)/ruff check src tests examples $(wildcard bench)
	$(BIN)/mypy

test: criu lint
	$(BIN)/pytest
