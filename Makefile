# Two entry points for a fresh machine: `make demo` and `make test`. Each builds .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint

$(BIN)/avlm: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(BIN)/avlm

install: $(BIN)/avlm

demo: install
	$(BIN)/avlm demo --out avlm-demo

lint: install
	$(BIN)/ruff check .

test: install lint
	$(BIN)/pytest -n 2 -q
