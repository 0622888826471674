# Two commands on a fresh machine with Python 3.11+ and make:
#   make run    set up, then run the audit on data_samples/ (writes output/)
#   make test   set up, then run the whole test suite
# Set-up installs uv (pinned) into .tools/ and the locked dependencies into .venv/.

PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
VENV := .venv
UV := $(TOOLS)/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: setup run test dev generate clean browser bench

setup: $(VENV)/.synced

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock $(UV)
	$(UV) sync --locked --python $(PYTHON)
	touch $@

run: setup
	$(VENV)/bin/imaging-audit run --input data_samples --output output

test: setup browser
	$(VENV)/bin/python -m pytest

# The page tests open the dashboards in Debian's Chromium (headless, network off); install it when missing.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Debian's chromium for the page tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null; }

# Benchmarks (benchmarks/run.py): generated input under benchmarks/data/, results and RESULTS.md in benchmarks/.
SIZES ?= 100k,1M
bench: setup
	$(VENV)/bin/python -m benchmarks.run --sizes $(SIZES)
	$(VENV)/bin/python -m benchmarks.report

# The Dagster UI with the daemon (schedule and sensor) and a persistent instance in .dagster_home/.
dev: setup
	mkdir -p .dagster_home && cp deploy/dagster.yaml .dagster_home/dagster.yaml
	DAGSTER_HOME=$(CURDIR)/.dagster_home $(VENV)/bin/dagster dev

clean:
	rm -rf $(VENV) $(TOOLS) output .dagster_home
