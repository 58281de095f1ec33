# Everything a fresh machine needs: `make demo` and `make test` create the virtualenv themselves.
PYTHON ?= $(shell command -v python3.13 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export SAM_CLI_TELEMETRY := 0

.PHONY: demo test lint typecheck validate unit integration e2e bench build clean

$(STAMP): pyproject.toml functions/email/requirements.txt layers/jobkit/requirements.txt layers/apps/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]' -r functions/email/requirements.txt
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/jobkit dev --demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

validate: $(STAMP)
	$(BIN)/sam validate --lint --template template.yaml --region us-east-1
	$(BIN)/sam validate --lint --template functions/worker.yaml --region us-east-1

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

integration: $(STAMP)
	$(BIN)/pytest tests/integration -q -n 2

e2e: $(STAMP)
	$(BIN)/pytest tests/e2e -q

# The dashboard's browser tests drive Debian's chromium (Playwright never downloads a browser).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	$(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq
	$(if $(filter 0,$(shell id -u)),,sudo) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

# --dist loadgroup: the browser tests share one stack and one browser on one worker.
test: lint typecheck validate $(CHROMIUM)
	$(BIN)/pytest -q -n 2 --dist loadgroup

# `make bench ONLY=throughput` (or ONLY="warm throughput") runs only those; without it, all.
bench: $(STAMP)
	$(BIN)/python -m benchmarks $(foreach b,$(ONLY),--only $(b))

build: $(STAMP)
	$(BIN)/sam build --template template.yaml

clean:
	rm -rf $(VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache
