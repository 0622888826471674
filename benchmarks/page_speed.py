"""The published pages as a reader opens them: the dashboards folder's size, each page's time to load and draw
in headless Chromium (the first opening, with Plotly's library not yet cached, and a second), and the time to
render the referrers' feedback PDFs, on the sample (data_samples/).

    python -m benchmarks.page_speed

Writes benchmarks/page_speed.json (read by benchmarks/report.py). Needs Debian's chromium and chromium-driver.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("index", "trends", "breakdowns", "rule_sets")
DRAWN = ("return [...document.querySelectorAll('.plotly-graph-div')]"
         ".every(g => g.querySelector('.main-svg') !== null)")


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--host-resolver-rules=MAP * ~NOTFOUND"):
        options.add_argument(arg)
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def _open(driver, page: Path) -> float:
    started = time.perf_counter()
    driver.get(page.as_uri())
    while not driver.execute_script(DRAWN):
        time.sleep(0.01)
    return round(time.perf_counter() - started, 2)


def main() -> int:
    from pipelines.cli import run_audit

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        started = time.perf_counter()
        run_audit(ROOT / "data_samples", out, quiet=True)
        run_seconds = round(time.perf_counter() - started, 1)
        folder = (out / "dashboards").resolve()
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        driver = _browser()
        try:
            first = {p: _open(driver, folder / f"{p}.html") for p in PAGES}
            second = {p: _open(driver, folder / f"{p}.html") for p in PAGES}
        finally:
            driver.quit()
        pdfs = sorted((out / "reports" / "feedback").glob("*.pdf"))
        # The feedback stage alone: render every report again from the warehouse.
        import datetime as dt

        import duckdb

        from assets.publish.reports import build_reports

        con = duckdb.connect(str((out / "warehouse.duckdb").resolve()), read_only=True)
        try:
            started = time.perf_counter()
            summary = build_reports(con, Path(tmp) / "reports-again", dt.datetime.now(dt.timezone.utc))
            reports_seconds = round(time.perf_counter() - started, 1)
        finally:
            con.close()
    result = {
        "measured_at": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {platform.processor() or ''}",
        "python": sys.version.split()[0], "whole_run_seconds": run_seconds,
        "dashboards_bytes": size, "first_open_seconds": first, "second_open_seconds": second,
        "feedback_pdfs": len(pdfs), "reports_with_feedback_seconds": reports_seconds,
        "feedback_rendered": summary["feedback_rendered"],
    }
    (ROOT / "benchmarks" / "page_speed.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
