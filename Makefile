# The two set-up commands: `make demo` and `make test`. Each creates the virtualenv
# and installs what the project needs on first use (and again when pyproject changes).
VENV := .venv
BIN := $(VENV)/bin
PYTHON ?= python3

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint sandbox clean system-packages

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# Real Redis and Varnish for the storefront in the sandbox (Debian packages; neither is
# started as a service: the sandbox and the tests start their own on loopback ports),
# docker-compose, with which tests/test_deploy.py validates docker-compose.yml, and
# Prometheus for promtool, which checks and unit-tests deploy/prometheus/rules.yaml.
system-packages:
	@if [ ! -x /usr/bin/redis-server ] || [ ! -x /usr/sbin/varnishd ] || \
	    [ ! -x /usr/bin/docker-compose ] || [ ! -x /usr/bin/promtool ]; then \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server varnish \
	    docker-compose prometheus; \
	fi

demo: system-packages $(BIN)/.installed
	$(BIN)/failover demo

sandbox: system-packages $(BIN)/.installed
	$(BIN)/failover sandbox up

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Two workers, whole files each: the crash matrix (real processes, mostly waiting) runs beside
# the rest instead of after it. The two-Region sandbox's modules (each a whole storefront in
# two Regions: Temporal, moto, two Redis, Varnish, app stand-ins) run as a second phase, among
# themselves: beside the rest on two cores they starved its timing-sensitive tests.
test: system-packages lint
	$(BIN)/pytest -ra -n 2 --dist loadfile -m "not regions"
	$(BIN)/pytest -ra -n 2 --dist loadfile -m regions

clean:
	rm -rf $(VENV) .state .pytest_cache .ruff_cache
