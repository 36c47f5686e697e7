# Two commands on a fresh machine: `make demo` and `make test`.
# `make test` and `make demo` install the exact versions of constraints.txt (the lock), so that a new
# release of a dependency cannot turn them red overnight; `make test-latest` tries the newest releases.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
OUT    ?= demo
LOCK   := constraints.txt
LATEST := .venv-latest
# pytest-xdist workers for the suite: one per core of the 2-core machines it is sized for (each test file on one)
WORKERS ?= 2

.PHONY: demo test test-latest lock serve chromium clean

# The virtualenv with the locked pip.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c $(LOCK) pip

# The package (editable) with an extra, at the locked versions; redone when pyproject.toml or the lock changes.
$(VENV)/.installed-%: pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[$*]'
	touch $@

demo: $(VENV)/.installed-demo
	$(BIN)/python examples/sample_photos.py $(OUT)/photos
	$(BIN)/gradcam explain $(OUT)/photos --out $(OUT)/gradcam --save all
	@echo "Pictures written to $(OUT)/gradcam/ (open *.figure.png for the labelled figures)."

test: $(VENV)/.installed-test chromium
	$(BIN)/python -m pytest -q -n $(WORKERS) --dist loadfile

# The suite with the newest release of every dependency (not in CI): what the next lock would be.
test-latest: chromium
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --upgrade pip
	$(LATEST)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e '.[test]'
	$(LATEST)/bin/python -m pip freeze --all --exclude-editable | grep -v '^gradcam' > $(LATEST)/freeze.txt
	$(LATEST)/bin/python -m pytest -q -n $(WORKERS) --dist loadfile

# Write the versions `make test-latest` was green with into the lock (commit it with the reason).
lock:
	@test -f $(LATEST)/freeze.txt || { echo "run make test-latest first (and see it pass)"; exit 1; }
	{ sed -n '1,2p' $(LOCK); cat $(LATEST)/freeze.txt; } > $(LOCK).new && mv $(LOCK).new $(LOCK)
	@echo "$(LOCK) updated: review git diff $(LOCK), run make test, commit"

serve: $(VENV)/.installed-demo
	$(BIN)/gradcam serve

# The browser test drives Debian's Chromium (headless); install it when it is missing.
# Chromium for the browser test, only when it is missing; nothing else is upgraded (--no-upgrade).
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { echo "chromium is missing: installing Debian's chromium package for the browser test (apt-get install --no-upgrade chromium)"; \
	    SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	    $$SUDO apt-get install -y -q --no-upgrade chromium || \
	      { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q --no-upgrade chromium; }; }

clean:
	rm -rf $(VENV) $(LATEST) $(OUT) .pytest_cache
