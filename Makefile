# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
OUT    ?= demo

.PHONY: demo test serve chromium clean

# The virtualenv with pip up to date.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The package (editable) with an extra; redone when pyproject.toml changes.
$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[$*]'
	touch $@

demo: $(VENV)/.installed-demo
	$(BIN)/python examples/sample_photos.py $(OUT)/photos
	$(BIN)/gradcam explain $(OUT)/photos --out $(OUT)/gradcam --save all
	@echo "Pictures written to $(OUT)/gradcam/ (open *_gradcam.png for the labelled figures)."

test: $(VENV)/.installed-test chromium
	$(BIN)/python -m pytest -q

serve: $(VENV)/.installed-demo
	$(BIN)/gradcam serve

# The browser test drives Debian's Chromium (headless); install it when it is missing.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { echo "installing chromium for the browser test"; \
	    if [ "$$(id -u)" = 0 ]; then apt-get install -y -q chromium || { apt-get update -q && apt-get install -y -q chromium; }; \
	    else sudo apt-get install -y -q chromium || { sudo apt-get update -q && sudo apt-get install -y -q chromium; }; fi; }

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
