"""The review page in a real browser: Debian's Chromium driven through chromedriver (Selenium), network off. A
reviewer fills two cases and saves; the saved file goes into the landing folder; the next run reads it and the
two verdicts are reviewed."""

from __future__ import annotations

import csv
import shutil
import time

import pytest

from pipelines.cli import run_audit
from tests.conftest import REPO_ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def _browser(download_dir, profile_dir):
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.fail("the review-page test needs Debian's chromium and chromium-driver: `make test` installs them")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={profile_dir}"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(download_dir),
                                              "download.prompt_for_download": False})
    # The driver is Debian's: Selenium Manager is never asked to download one.
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)})
    return driver


def _wait_for(folder, pattern, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        found = [p for p in folder.glob(pattern) if not p.name.endswith(".crdownload")]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no {pattern} in {folder} after {seconds} s")


def test_two_reviews_recorded_on_the_page_are_read_by_the_next_run(tmp_path):
    from selenium.webdriver.common.by import By

    landing = tmp_path / "landing"
    shutil.copytree(REPO_ROOT / "data_samples", landing, ignore=shutil.ignore_patterns("truth", "*.py", "*.md"))
    out = tmp_path / "out"
    run_audit(landing, out, quiet=True)
    worklist = list(csv.DictReader((out / "reports" / "review_worklist.csv").open()))
    assert len(worklist) >= 2

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = _browser(downloads, tmp_path / "profile")
    try:
        driver.get((out / "reports" / "review.html").as_uri())
        assert driver.find_element(By.ID, "case-title").text == f"Case 1 of {len(worklist)}"
        assert driver.find_element(By.ID, "f-scan").text == worklist[0]["scan_id"]
        # recording without a reviewer key is refused
        driver.find_element(By.ID, "record").click()
        assert "reviewer key" in driver.find_element(By.ID, "status").text
        driver.find_element(By.ID, "reviewer").send_keys("RV7")
        chosen = []
        for category, note in (("out_of_scope", 'pt moved, "see" note, commas, too'),
                               ("insufficient_information", "")):
            driver.find_element(By.CSS_SELECTOR, f"input[name=category][value={category}]").click()
            reasons = driver.find_elements(By.CSS_SELECTOR, "input[name=reason]")
            assert reasons, "the reasons of the chosen category are offered"
            reasons[0].click()
            chosen.append((driver.find_element(By.ID, "f-scan").text, category, reasons[0].get_attribute("value")))
            driver.find_element(By.ID, "note").send_keys(note)
            driver.find_element(By.ID, "record").click()
        assert driver.find_element(By.ID, "count").text == f"2 of {len(worklist)} cases recorded."
        driver.find_element(By.ID, "save").click()
        saved = _wait_for(downloads, "chart_reviews_*.csv")
    finally:
        driver.quit()

    rows = list(csv.DictReader(saved.open(newline="")))
    assert list(rows[0]) == ["scan_id", "rule_set", "reviewer_id", "review_date", "reviewed_category",
                             "reviewed_reasons", "note"]
    assert [(r["scan_id"], r["reviewed_category"], r["reviewed_reasons"]) for r in rows] == chosen
    assert rows[0]["note"] == 'pt moved, "see" note, commas, too' and rows[0]["reviewer_id"] == "RV7"

    shutil.copy(saved, landing / saved.name)
    run_audit(landing, out, quiet=True)
    verdicts = {(r["scan_id"], r["rule_set"]): r for r in csv.DictReader((out / "exports" / "mri_classification.csv").open())}
    for (scan_id, category, _), case in zip(chosen, worklist):
        row = verdicts[(scan_id, case["rule_set"])]
        assert row["final_category"] == category
        assert row["review_status"] == ("confirmed" if row["category"] == category else "overridden")
    agreement = {(r["rule_set"], r["category"]): r for r in csv.DictReader((out / "exports" / "review_agreement.csv").open())}
    per_rule_set = {}
    for case in worklist[:2]:
        per_rule_set[case["rule_set"]] = per_rule_set.get(case["rule_set"], 0) + 1
    for rule_set, n in per_rule_set.items():
        assert int(agreement[(rule_set, "all")]["reviewed"]) == n
    page = (out / "reports" / "validation.html").read_text()
    for rule_set, n in per_rule_set.items():
        assert f"{rule_set} " in page and f"{n} reviewed verdict" in page
    # reviewed verdicts leave the next worklist
    remaining = {(r["scan_id"], r["rule_set"]) for r in csv.DictReader((out / "reports" / "review_worklist.csv").open())}
    assert not remaining & {(c["scan_id"], c["rule_set"]) for c in worklist[:2]}
