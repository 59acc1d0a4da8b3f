# The two commands of the README, each self-contained on a fresh machine:
#   make dev   — install into .venv if needed, then run the pipeline on the embedded PostgreSQL
#   make test  — install into .venv if needed, then run the test suite (pytest)
VENV ?= .venv
PYTHON ?= python3

.PHONY: dev test install

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test,dev]'
	touch $@

install: $(VENV)/.installed

dev: $(VENV)/.installed
	$(VENV)/bin/fastfeast dev

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest
