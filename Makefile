# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
OUT    ?= demo

.PHONY: demo test clean

# The virtualenv with pip up to date.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The package (editable) with an extra; redone when pyproject.toml changes.
$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[$*]'
	touch $@

demo: $(VENV)/.installed-samples
	$(BIN)/python examples/sample_photos.py $(OUT)/photos
	$(BIN)/gradcam explain $(OUT)/photos --out $(OUT)/gradcam
	@echo "Pictures written to $(OUT)/gradcam/ (open *_gradcam.png for the labelled figures)."

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
