# Set-up and everyday commands. Only Python 3.11+ and make are needed beforehand.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint bench serve clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## make demo: create the venv, migrate var/exchange.db, load the sample feeds, serve on :8080
demo: $(STAMP)
	$(BIN)/python -m exchange.demo

## make test: create the venv and run the whole suite (SQLite always, PostgreSQL when reachable)
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -n 2 --dist loadfile -q

lint: $(STAMP)
	$(BIN)/ruff check .

## make bench: the short default benchmark suite (see bench/README.md for options)
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

serve: $(STAMP)
	$(BIN)/exchange serve

clean:
	rm -rf $(VENV) var .pytest_cache
