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
BROWSER_PACKAGES := chromium chromium-driver fonts-dejavu-core
browser:
	@{ command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; } && command -v chromedriver >/dev/null 2>&1 || { \
		if ! command -v apt-get >/dev/null 2>&1; then \
			echo "make test: the page tests need Chromium and chromedriver; install them (Debian/Ubuntu: apt-get install $(BROWSER_PACKAGES)) and re-run" >&2; exit 2; \
		elif [ "$$(id -u)" != 0 ] && ! command -v sudo >/dev/null 2>&1; then \
			echo "make test: the page tests need Chromium and chromedriver; as root run: apt-get install $(BROWSER_PACKAGES)" >&2; exit 2; \
		fi; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		echo "installing Debian's $(BROWSER_PACKAGES) with apt-get for the page tests"; \
		{ $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(BROWSER_PACKAGES) >/dev/null; } || { \
			echo "make test: apt-get could not install $(BROWSER_PACKAGES) (no network or no permission?); install them and re-run" >&2; exit 2; }; }

# The referrers' feedback PDFs are laid out by WeasyPrint, which loads Pango at run time. Debian installs it with
# any desktop library (Chromium included); on a bare system this installs just the two libraries.
PANGO_PACKAGES := libpango-1.0-0 libpangoft2-1.0-0
pango:
	@{ ldconfig -p 2>/dev/null || /sbin/ldconfig -p; } | grep -q 'libpangoft2-1.0.so.0' || { \
		if ! command -v apt-get >/dev/null 2>&1; then \
			echo "make: the feedback reports need Pango (libpango-1.0 and libpangoft2-1.0); install them and re-run" >&2; exit 2; \
		fi; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		echo "installing Debian's $(PANGO_PACKAGES) with apt-get for the feedback PDFs"; \
		{ $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(PANGO_PACKAGES) >/dev/null; } || { \
			echo "make: apt-get could not install $(PANGO_PACKAGES); install them and re-run" >&2; exit 2; }; }

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
