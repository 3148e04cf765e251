# Two entry points (see README "Quick start"); each creates .venv on first use.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint

$(STAMP): setup.cfg pyproject.toml
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/vdx demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

bench: $(STAMP)
	$(VENV)/bin/python bench/run.py

lint: $(STAMP)
	$(VENV)/bin/pip install --quiet ruff && $(VENV)/bin/ruff check vdx adapters cli.py tests bench
