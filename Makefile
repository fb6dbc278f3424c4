# The two commands a new clone needs are `make demo` and `make test`.
# Each installs whatever is missing (virtualenv, locked Python deps, Kafka jars)
# and is safe to run again.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit integration bench chaos venv kafka-jars chromium asyncapi-parser clean

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	@# setuptools warns about every editable install ("folders with the same name"):
	@# nothing to act on, and 10 lines a new user would read as trouble.
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

kafka-jars: $(STAMP)
	$(BIN)/crb kafka fetch

demo: kafka-jars
	$(BIN)/crb demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest tests/unit

# The browser tests drive Debian's Chromium; installed here when missing and we may.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else \
	    echo "chromium is not installed: the browser tests will be skipped (apt-get install chromium)"; \
	  fi; }

# The official AsyncAPI parser, to validate docs/asyncapi.json (pinned by its lock).
asyncapi-parser: tests/asyncapi/node_modules/.package-lock.json

tests/asyncapi/node_modules/.package-lock.json: tests/asyncapi/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  cd tests/asyncapi && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error; \
	else \
	  echo "npm is not installed: the AsyncAPI document will not be validated by the official parser"; \
	fi

test: kafka-jars lint chromium asyncapi-parser
	$(BIN)/pytest

bench: kafka-jars
	$(BIN)/python -m bench

# 10,000 referrals through the whole federation on a three-broker secured cluster
# while routers, a broker, every receiver and the tracker are killed (bench/chaos.py);
# exit 1 on any loss or duplicate. About 6 minutes; `make test` runs a short one.
chaos: kafka-jars
	$(BIN)/python -m bench.chaos --referrals 10000

clean:
	-$(BIN)/crb kafka down
	rm -rf $(VENV) .crb .mypy_cache .pytest_cache .ruff_cache
