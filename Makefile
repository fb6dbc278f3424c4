# The two commands a new clone needs are `make demo` and `make test`.
# Each installs whatever is missing (virtualenv, locked Python deps, Kafka jars)
# and is safe to run again.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit integration bench venv kafka-jars clean

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

test: kafka-jars lint
	$(BIN)/pytest

bench: kafka-jars
	$(BIN)/python -m bench

clean:
	-$(BIN)/crb kafka down
	rm -rf $(VENV) .crb .mypy_cache .pytest_cache .ruff_cache
