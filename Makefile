# The two set-up commands: `make demo` and `make test`. Each creates the virtualenv
# and installs what the project needs on first use (and again when pyproject changes).
VENV := .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: demo test lint sandbox clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/failover demo

sandbox: $(BIN)/.installed
	$(BIN)/failover sandbox up

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/pytest -ra

clean:
	rm -rf $(VENV) .state .pytest_cache .ruff_cache
