"""The overtreatment reports stay fast on small, fragmented data: 60 scans whose formula-like and quote-damaged
ids make every provider and facility a unit of one or two scans, so nearly every cell is small."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.conftest import REPO_ROOT
from tests.hostile import hostile_input

REPORTS_SCRIPT = """
import sys, time, datetime as dt
from pathlib import Path
import duckdb
from assets.publish.reports import build_reports
con = duckdb.connect(sys.argv[1], read_only=True)
started = time.perf_counter()
build_reports(con, Path(sys.argv[2]), dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
print(time.perf_counter() - started)
"""
REPORTS_BOUND_S = 20  # generous: 1-3 s here; the exponential candidate search took minutes on this input


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    """The hostile input through the whole pipeline (both rule sets), with the overtreatment reports built
    separately under a time limit: (output folder, reports folder, seconds the reports took)."""
    import assets.publish.reports as reports
    from pipelines.cli import run_audit

    base = tmp_path_factory.mktemp("hostile")
    folder = hostile_input(base / "input")
    out = base / "out"
    real = reports.build_reports
    reports.build_reports = lambda con, out_dir, now, previous=None: {}  # timed on its own below
    try:
        run_audit(folder, out, quiet=True)
    finally:
        reports.build_reports = real
    built = base / "reports"
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-c", REPORTS_SCRIPT, str(out / "warehouse.duckdb"), str(built)],
                              capture_output=True, text=True, cwd=REPO_ROOT, timeout=6 * REPORTS_BOUND_S)
    except subprocess.TimeoutExpired:
        return out, None, time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    return out, built, float(done.stdout.strip().splitlines()[-1])


def test_reports_on_hostile_values_finish_within_the_bound(hostile_run):
    """60 scans with formula-like and quote-damaged ids: small cells everywhere, providers with one scan each.
    The suppression's candidate search followed every path through the equations (exponential); it now visits
    each equation once."""
    _, built, seconds = hostile_run
    assert built is not None and seconds < REPORTS_BOUND_S, f"reports took {seconds:.0f} s"
    assert (built / "providers.csv").is_file()
