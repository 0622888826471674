# Two commands on a fresh machine with Python 3.11+ and make:
#   make run    set up, then run the audit on data_samples/ (writes output/)
#   make test   set up, then run the whole test suite
# Set-up installs uv (pinned) into .tools/ and the locked dependencies into .venv/, and Debian's Pango libraries
# (libpango-1.0-0, libpangoft2-1.0-0, for WeasyPrint's PDFs) with apt-get when they are missing (see `pango`);
# `make test` also installs Debian's chromium, chromium-driver and fonts-dejavu-core when one is missing
# (see `browser`).

PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
VENV := .venv
UV := $(TOOLS)/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: setup run test dev generate clean browser bench pango

setup: $(VENV)/.synced pango

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

# The page tests open the dashboards in a real browser: Debian's chromium package (headless, network off),
# chromium-driver (the review page's round trip is driven through it by Selenium) and fonts-dejavu-core (so
# pages render with the same glyphs everywhere). These system packages are the only thing set-up installs
# outside the project folder, and only when chromium or chromedriver is missing; without apt (or root) the
# target stops with one line saying what to install.
# $(call apt_install,packages,what needs them): install Debian packages with apt-get (through sudo when not
# root), or stop with one line saying what to install when apt-get, root or the network is missing.
apt_install = if ! command -v apt-get >/dev/null 2>&1; then \
		echo "make: $(2) need $(1); install them (Debian/Ubuntu: apt-get install $(1)) and re-run" >&2; exit 2; \
	elif [ "$$(id -u)" != 0 ] && ! command -v sudo >/dev/null 2>&1; then \
		echo "make: $(2) need $(1); as root run: apt-get install $(1)" >&2; exit 2; \
	fi; \
	SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	echo "installing Debian's $(1) with apt-get for $(2)"; \
	{ $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(1) >/dev/null; } || { \
		echo "make: apt-get could not install $(1) (no network or no permission?); install them and re-run" >&2; exit 2; }

BROWSER_PACKAGES := chromium chromium-driver fonts-dejavu-core
browser:
	@{ command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; } && command -v chromedriver >/dev/null 2>&1 || { \
		$(call apt_install,$(BROWSER_PACKAGES),the page tests); }

# The referrers' feedback PDFs are laid out by WeasyPrint, which loads Pango at run time. Debian installs it with
# any desktop library (Chromium included); on a bare system this installs just the two libraries.
PANGO_PACKAGES := libpango-1.0-0 libpangoft2-1.0-0
pango:
	@{ ldconfig -p 2>/dev/null || /sbin/ldconfig -p; } | grep -q 'libpangoft2-1.0.so.0' || { \
		$(call apt_install,$(PANGO_PACKAGES),the feedback reports); }

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
