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

# deploy/setup.sh starts what is installed but down, enables the broker's management
# plugin and installs the test tools (as root with apt); otherwise it says what to do.
demo: $(STAMP)
	@bash deploy/setup.sh demo
	$(VENV)/bin/vdx demo

test: $(STAMP)
	@bash deploy/setup.sh test
	$(VENV)/bin/python -m pytest -q

bench: $(STAMP)
	$(VENV)/bin/python bench/run.py

lint: $(STAMP)
	$(VENV)/bin/pip install --quiet ruff && $(VENV)/bin/ruff check vdx adapters cli.py tests bench
