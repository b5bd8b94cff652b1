# Every target but `install` runs `install` first, which is a quick no-op when nothing changed.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ROOT ?= .nodeloom

.PHONY: install serve run test lint bench clean web web-check

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first and exactly: anything that pulls it in later must find this CPU build, not a multi-GB CUDA one.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

serve: install
	$(BIN)/nodeloom serve --root $(ROOT)

run: install
	$(BIN)/nodeloom run examples/graphs/iterate_collect.json

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy src tests

bench: install
	$(BIN)/python bench/graph_engine.py
	$(BIN)/python bench/session_queue.py
	$(BIN)/python bench/soak.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/images.py
	$(BIN)/python bench/diffusion.py
	$(BIN)/python bench/models.py
	$(BIN)/python bench/scale_out.py
	$(BIN)/python bench/socket_replay.py
	$(BIN)/python bench/web.py

# The web UI (web/) builds into src/nodeloom/web/dist, which is committed: serving it needs no Node.js.
# `make web` regenerates the API types from the server's OpenAPI schema, then builds.
web: install
	$(BIN)/python -m nodeloom.app.api.openapi_dump > web/openapi.json
	cd web && npm ci && npm run types && npm run build

# CI: the committed build and API types must be what the sources and the lockfile make.
web-check: web
	cd web && npm test
	git diff --exit-code -- src/nodeloom/web/dist web/src/api/schema.d.ts
	test -z "$$(git status --porcelain -- src/nodeloom/web/dist)"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache web/node_modules
