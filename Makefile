# The two commands of the README: `make run` (main job) and `make test` (whole test suite).
# Both create .venv and install what they need on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# torch==2.13.0 is a local CPU wheel on these machines; elsewhere pip takes it from the registry.
WHEELS := $(wildcard /opt/wheels)
PIP_FLAGS := $(if $(WHEELS),--find-links $(WHEELS),)

.PHONY: run test install redis-server chromium bench clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(PIP_FLAGS) -e ".[dev,dags]"
	touch $@

install: $(BIN)/.installed

# A real Redis server for the tests (the test session starts and stops its own on a free port).
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server >/dev/null; }
	@redis-server --version

# Debian's chromium + chromium-driver for the dashboard's browser test (Selenium drives them; browser
# builds that download themselves fail here).
chromium:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; }
	@chromedriver --version

# With TOPICFEED_ONLINE_STORE=redis, a local redis-server is installed and started when none answers.
run: install
	@if [ "$${TOPICFEED_ONLINE_STORE:-sqlite}" = redis ]; then \
	  $(MAKE) --no-print-directory redis-server; \
	  redis-cli -u "$${TOPICFEED_REDIS_URL:-redis://127.0.0.1:6379/0}" ping >/dev/null 2>&1 || redis-server --daemonize yes --save "" --appendonly no; \
	fi
	$(BIN)/topicfeed run

test: install redis-server chromium
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

# Every speed benchmark of the README's figures table (about 20 minutes on 2 cores; trains the
# classifier first if MODEL holds none). Quality figures have their own commands (see the README).
MODEL ?= topicfeed-data/models/classifier
bench: install redis-server
	$(BIN)/python benchmarks/bench_simulator.py
	$(BIN)/python benchmarks/bench_preferences.py
	$(BIN)/python benchmarks/eval_preferences.py
	$(BIN)/python benchmarks/bench_materialize.py
	$(BIN)/python benchmarks/bench_online.py --gc-freeze
	$(BIN)/python benchmarks/bench_wire.py
	test -f $(MODEL)/topicfeed_classifier.json || $(BIN)/topicfeed classify train --out $(MODEL)
	$(BIN)/python benchmarks/bench_classifier.py --model $(MODEL)
	command -v wrk >/dev/null || { SUDO=$$(command -v sudo || true); $$SUDO apt-get install -y -qq wrk >/dev/null; }
	$(BIN)/python benchmarks/bench_feed.py

clean:
	rm -rf $(VENV) topicfeed-data .pytest_cache
