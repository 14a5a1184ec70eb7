# Two commands do all set-up on a fresh machine:
#   make run    the provider on the embedded default (SQLite, in-memory store, console delivery)
#   make test   the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 5000
CONNEXION_PORT ?= 5001
# The demo's pages are served as http://localhost:...: browsers allow security keys and
# passkeys (WebAuthn) on localhost, never on an IP address. The servers bind to BIND.
HOST   ?= localhost
BIND   ?= 127.0.0.1
# Installs come from the lock files in requirements/ (every version and hash pinned):
# `make run` gets the runtime dependencies only, `make test` the test ones on top.
RUN_STAMP  := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test

CONNEXION_URL = http://$(HOST):$(CONNEXION_PORT)

# The embedded default, for `make run` only (tests set their own settings).
run: export IDP_ISSUER ?= http://$(HOST):$(PORT)
run: export IDP_SERVER_PORT ?= $(PORT)
run: export IDP_SERVER_HOST ?= $(BIND)
run: export IDP_UI_SERVICE_NAME ?= CMS IDM
run: export IDP_MFA_ENFORCE_FROM ?= $(shell date -u -d '+30 days' +%F 2>/dev/null)
run: export IDP_UI_HELP_PHONE ?= 877-577-5331
run: export IDP_UI_HELP_HOURS ?= 9 a.m. to 5:30 p.m. Eastern, Monday to Friday
run: export IDP_UI_HELP_HOURS_ES ?= de 9 a.m. a 5:30 p.m., hora del Este, de lunes a viernes

.PHONY: run test lint format venv clean lock wheel translations messages language

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The locked dependencies, then the provider and the idp-verify companion app (its own
# project, clients/verify) without resolving anything again.
$(RUN_STAMP): requirements/run.txt pyproject.toml clients/verify/pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r requirements/run.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e . -e clients/verify
	touch $@

$(TEST_STAMP): requirements/test.txt $(RUN_STAMP)
	$(BIN)/pip install --quiet --require-hashes -r requirements/test.txt
	touch $@

venv: $(TEST_STAMP) translations

# Translations (README: "Adding a language"). The catalogs (messages.po) are committed;
# their compiled .mo files are built here, by every install step, and into the wheel by
# setup.py, never committed. Connexion, the sample portal, has catalogs of its own.
CATALOGS := $(wildcard idp/translations/*/LC_MESSAGES/messages.po \
	clients/connexion/translations/*/LC_MESSAGES/messages.po)
BABEL_KEYWORDS := -k _l -k lazy_gettext -k lazy_ngettext:1,2
# Where each catalog's English text comes from (babel.cfg: the Python modules and Jinja
# templates of the provider; clients/connexion/babel.cfg: Connexion's).
POT_IDP       := build/i18n/idp.pot
POT_CONNEXION := build/i18n/connexion.pot

%.mo: %.po | $(RUN_STAMP)
	$(BIN)/pybabel compile --statistics -i $< -o $@

translations: $(CATALOGS:.po=.mo)

# Extract every string to translate and merge it into each language's catalog; then
# translate what `msgfmt`-style tools list as untranslated or fuzzy, and `make translations`.
messages: $(RUN_STAMP)
	mkdir -p build/i18n
	$(BIN)/pybabel extract -F babel.cfg $(BABEL_KEYWORDS) --no-wrap --sort-by-file \
		--project idp -o $(POT_IDP) idp
	@# The languages' catalogs, once `make language` has started them.
	if ls idp/translations/*/LC_MESSAGES/messages.po >/dev/null 2>&1; then \
		$(BIN)/pybabel update --no-wrap -i $(POT_IDP) -d idp/translations; fi
	$(BIN)/pybabel extract -F clients/connexion/babel.cfg $(BABEL_KEYWORDS) --no-wrap \
		--sort-by-file --project connexion -o $(POT_CONNEXION) clients/connexion
	if ls clients/connexion/translations/*/LC_MESSAGES/messages.po >/dev/null 2>&1; then \
		$(BIN)/pybabel update --no-wrap -i $(POT_CONNEXION) -d clients/connexion/translations; fi

# A new language: `make language NEW_LANGUAGE=fr` starts its catalogs from the English text.
language: messages
	test -n "$(NEW_LANGUAGE)" || { echo "usage: make language NEW_LANGUAGE=fr" >&2; exit 2; }
	$(BIN)/pybabel init --no-wrap -i $(POT_IDP) -d idp/translations -l $(NEW_LANGUAGE)
	$(BIN)/pybabel init --no-wrap -i $(POT_CONNEXION) -d clients/connexion/translations \
		-l $(NEW_LANGUAGE)

run: $(RUN_STAMP) translations
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
	CONNEXION_MFA_DEADLINE=$(IDP_MFA_ENFORCE_FROM) \
	CONNEXION_HOST=$(BIND) CONNEXION_PORT=$(CONNEXION_PORT) $(BIN)/python -m clients.connexion & \
	trap 'kill $$! 2>/dev/null' EXIT INT TERM; $(BIN)/idp run

test: $(TEST_STAMP) translations
	bash .ci/test-setup
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(TEST_STAMP)
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
bench: $(TEST_STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Refresh the vendored U.S. Web Design System (idp/static/uswds/, committed) from the npm
# registry at the version pinned in scripts/vendor-uswds.sh (needs npm; `make run` does not).
.PHONY: vendor-uswds
vendor-uswds:
	bash scripts/vendor-uswds.sh

# Refresh the lock files (requirements/README.md): every dependency at its newest version
# allowed by pyproject.toml, with the hashes pip checks at install time.
LOCK_VENV := .cache/lock-venv
LOCK_ARGS := --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
	--no-emit-find-links --upgrade
lock:
	test -x $(LOCK_VENV)/bin/pip-compile || \
		{ $(PYTHON) -m venv $(LOCK_VENV) && $(LOCK_VENV)/bin/pip install --quiet pip-tools; }
	cd requirements && ../$(LOCK_VENV)/bin/pip-compile $(LOCK_ARGS) --output-file run.txt \
		../pyproject.toml ../clients/verify/pyproject.toml build.in
	cd requirements && ../$(LOCK_VENV)/bin/pip-compile $(LOCK_ARGS) --extra test \
		--constraint run.txt --output-file test.txt \
		../pyproject.toml ../clients/verify/pyproject.toml build.in

# The release: a wheel of the provider (with its migrations, templates, compiled
# translations and idp.wsgi) in build/dist/ (git-ignored).
wheel: $(RUN_STAMP)
	$(BIN)/pip wheel --quiet --no-deps --no-build-isolation --wheel-dir build/dist .
