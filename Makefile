# Two commands do all set-up on a fresh machine:
#   make run    the provider on the embedded default (SQLite, in-memory store, console delivery)
#   make test   the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 5000
CONNEXION_PORT ?= 5001
HOST   ?= 127.0.0.1
STAMP  := $(VENV)/.installed

CONNEXION_URL = http://$(HOST):$(CONNEXION_PORT)

# The embedded default, for `make run` only (tests set their own settings).
run: export IDP_ISSUER ?= http://$(HOST):$(PORT)
run: export IDP_SERVER_PORT ?= $(PORT)
run: export IDP_SERVER_HOST ?= $(HOST)
run: export IDP_MFA_ENFORCE_FROM ?= $(shell date -u -d '+30 days' +%F 2>/dev/null)
run: export IDP_UI_HELP_PHONE ?= 877-577-5331
run: export IDP_UI_HELP_HOURS ?= 9 a.m. to 5:30 p.m. Eastern, Monday to Friday

.PHONY: run test lint format venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/idp db upgrade
	$(BIN)/idp keys ensure
	$(BIN)/idp demo --connexion-url $(CONNEXION_URL)
	@echo
	@echo "  start here   $(CONNEXION_URL)   (Connexion, the sample portal)"
	@echo "  provider     $(IDP_ISSUER)"
	@echo "  discovery    $(IDP_ISSUER)/.well-known/openid-configuration"
	@echo "  security     $(IDP_ISSUER)/account/security"
	@echo
	@# Connexion in the background, the provider in the foreground; Ctrl-C stops both.
	CONNEXION_ISSUER=$(IDP_ISSUER) CONNEXION_BASE_URL=$(CONNEXION_URL) \
	CONNEXION_HOST=$(HOST) CONNEXION_PORT=$(CONNEXION_PORT) $(BIN)/python -m clients.connexion & \
	trap 'kill $$! 2>/dev/null' EXIT INT TERM; $(BIN)/idp run

test: $(STAMP)
	bash .ci/test-setup
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) instance .pytest_cache test-artifacts

# Side-by-side benchmark with node-oidc-provider (needs PostgreSQL and Redis as for the
# tests, and Node.js 20+ with npm; the peer is installed into .cache/bench on first use):
#   make bench                               the full run (about 15 minutes)
#   make bench BENCH_ARGS=--quick            a smoke run (about 2 minutes)
#   make bench BENCH_ARGS="--skip-peer"      our provider only
.PHONY: bench
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)
