# CNN Explorer. `make run` serves the dashboard; `make test` runs the whole suite, browser tests
# included. Both create .venv and install what they need on a fresh Debian machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum < requirements.txt | cut -d' ' -f1)
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
PORT ?= 8501

.PHONY: run lint test test-random test-slow bench chromium demo-model screenshots clean

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	@rm -f $(VENV)/.installed-*
	@touch $@

run: $(STAMP)
	$(PY) -m streamlit run app.py --server.port $(PORT)

chromium:
	@test -x $(CHROMIUM) || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }

# Lint and layout (ruff.toml): pyflakes and pycodestyle's layout rules (indentation, blank
# lines, line length, whitespace), which check the hand-wrapped layout instead of rewriting it.
lint: $(STAMP)
	$(PY) -m ruff check .

# REQUIRE_BROWSER=1 / REQUIRE_WEIGHTS=1: a missing Chromium or ../shared/weights (the test-only
# MobileNet weights) fails the tests that need them instead of skipping them;
# `make test REQUIRE_WEIGHTS=0` skips those where the weights are not at hand.
REQUIRE_WEIGHTS ?= 1
REQUIRE := REQUIRE_BROWSER=1 REQUIRE_WEIGHTS=$(REQUIRE_WEIGHTS) CHROMIUM_PATH=$(CHROMIUM)
test: lint chromium
	$(REQUIRE) $(PY) -m pytest

# The same tests in a random order across the whole suite; the header prints the seed, and
# `make test-random SEED=n` runs that order again.
test-random: $(STAMP) chromium
	$(REQUIRE) $(PY) -m pytest --random-order-bucket=global $(if $(SEED),--random-order-seed=$(SEED))

# Heavier checks on real networks (every Keras application, ...), kept out of the default run.
test-slow: $(STAMP)
	$(PY) -m pytest -m slow

# Each prints JSON with its ratio against the plain Keras / tf-keras-vis way, measured in the same run.
# Each script's docstring gives its settings; actmax and saliency take minutes on 2 CPU cores.
bench: $(STAMP) chromium
	$(PY) bench/predict.py
	$(PY) bench/feature_maps.py
	$(PY) bench/dataset_report.py
	$(PY) bench/model_report.py
	$(PY) bench/training.py
	$(PY) bench/small_data.py
	$(PY) bench/saliency.py --quick
	$(PY) bench/leaderboard.py
	$(PY) bench/actmax.py --filters 16
	CHROMIUM_PATH=$(CHROMIUM) $(PY) bench/classroom.py --sessions 30

# Retrain the bundled demo model (about 5 minutes on 2 CPU cores) and rewrite its model card.
demo-model: $(STAMP)
	$(PY) -m engine.models.demo --out assets

# Screenshots of every page (docs/<page>.png, shown in the README) from the running app.
screenshots: $(STAMP) chromium
	CHROMIUM_PATH=$(CHROMIUM) $(PY) bench/screenshots.py

clean:
	rm -rf $(VENV)
