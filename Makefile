# The two commands a new user types: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
ADDR   ?= 127.0.0.1:8000

.PHONY: run test install install-dev lint format openapi openapi-check proof bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml client/pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/pip install --quiet -e ./client
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

## make run: the embedded default (SQLite, in-process cache and jobs) on http://localhost:8000
run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py welcome --base-url http://localhost:8000
	$(BIN)/python manage.py serve $(ADDR)

## make test: the suite (PostgreSQL and Redis when DATABASE_URL / REDIS_URL are set)
test: install-dev
	$(BIN)/pytest -q

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## openapi.yaml is generated from the code and committed; CI fails when it drifts.
openapi: install-dev
	$(BIN)/python manage.py spectacular --file openapi.yaml --validate

openapi-check: install-dev
	$(BIN)/python manage.py spectacular --file $(VENV)/openapi.check.yaml --validate
	diff -u openapi.yaml $(VENV)/openapi.check.yaml

## make proof: the whole stack under load, faults and hostile input (long form)
proof: install-dev
	PROOF_FULL=1 $(BIN)/pytest -q -m system tests/system

bench: install-dev
	@echo "see README.md, section Benchmarks"

clean:
	rm -rf $(VENV) db.sqlite3 db.sqlite3-wal db.sqlite3-shm staticfiles
