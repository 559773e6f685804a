# CNN Explorer. `make run` serves the dashboard; `make test` runs the whole suite, browser tests
# included. Both create .venv and install what they need on a fresh Debian machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum < requirements.txt | cut -d' ' -f1)
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
PORT ?= 8501

.PHONY: run test test-slow bench chromium demo-model clean

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	@rm -f $(VENV)/.installed-*
	@touch $@

run: $(STAMP)
	$(PY) -m streamlit run app.py --server.port $(PORT)

chromium:
	@test -x $(CHROMIUM) || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }

# REQUIRE_BROWSER=1: a missing Chromium fails the browser tests instead of skipping them.
test: $(STAMP) chromium
	REQUIRE_BROWSER=1 CHROMIUM_PATH=$(CHROMIUM) $(PY) -m pytest

# Heavier checks on real networks (every Keras application, ...), kept out of the default run.
test-slow: $(STAMP)
	$(PY) -m pytest -m slow

# Each prints JSON with its ratio against the plain Keras / tf-keras-vis way, measured in the same run.
# The defaults are the issue's settings; actmax and saliency take minutes on 2 CPU cores.
bench: $(STAMP) chromium
	$(PY) bench/predict.py
	$(PY) bench/feature_maps.py
	$(PY) bench/dataset_report.py
	$(PY) bench/training.py
	$(PY) bench/saliency.py --quick
	$(PY) bench/actmax.py --filters 16
	CHROMIUM_PATH=$(CHROMIUM) $(PY) bench/classroom.py --sessions 30

# Retrain the bundled demo model (about 5 minutes on 2 CPU cores) and rewrite its model card.
demo-model: $(STAMP)
	$(PY) -m engine.models.demo --out assets

clean:
	rm -rf $(VENV)
