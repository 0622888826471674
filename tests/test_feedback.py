"""Feedback reports for referring providers (assets/publish/feedback.py): who gets one, that its figures are the
provider table's, that peers are only providers whose figures are published, that no small count is printed,
and that an unchanged report is carried over rather than rendered again. The PDFs are read back with pypdf."""

from __future__ import annotations

import datetime as dt
import re

import duckdb
import pytest

from assets.publish.reports import build_reports
from tests.test_reports import Cohort, read_csv

GENERATED = dt.datetime(2026, 1, 5, 6, 0, tzinfo=dt.timezone.utc)


def pdf_text(path) -> str:
    from pypdf import PdfReader

    return " ".join(" ".join(page.extract_text() for page in PdfReader(path).pages).split())  # lines unwrapped


def build(db, out, previous=None):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return build_reports(con, out, GENERATED, previous_feedback=previous)
    finally:
        con.close()


@pytest.fixture(scope="module")
def cohort_db(tmp_path_factory):
    """Primary care: DR_A 40 MRIs (24 potentially unnecessary), DR_B 36 (12), DR_C 12 (5) and DR_D 12 (4): small
    providers, no report, and not peers (their suppressed counts would be revealed). Orthopedics: DR_O 31 (11).
    Injections follow 3 of DR_A's potentially unnecessary MRIs (a small count)."""
    tmp = tmp_path_factory.mktemp("feedback")
    c = Cohort()
    c.group("A_pu", 21, provider="DR_A")
    c.group("A_inj", 3, provider="DR_A", events=[(30, "CPT", "64483")])
    c.group("A_ind", 16, codes="M54.16", provider="DR_A")
    c.group("B_pu", 12, provider="DR_B")
    c.group("B_ind", 24, codes="M54.16", provider="DR_B")
    c.group("C_pu", 5, provider="DR_C")
    c.group("C_ind", 7, codes="M54.16", provider="DR_C")
    c.group("D_pu", 4, provider="DR_D")
    c.group("D_ind", 8, codes="M54.16", provider="DR_D")
    c.group("O_pu", 11, provider="DR_O", specialty="orthopedics")
    c.group("O_ind", 20, codes="M54.16", provider="DR_O", specialty="orthopedics")
    c.follow_up_until(400)
    return c.warehouse(tmp), tmp


@pytest.fixture(scope="module")
def feedback(cohort_db):
    db, tmp = cohort_db
    out = tmp / "reports"
    summary = build(db, out)
    return out, summary


def test_one_report_per_provider_with_enough_volume(feedback):
    out, summary = feedback
    files = sorted(p.name for p in (out / "feedback").glob("*.pdf"))
    assert files == ["feedback_DR_A.pdf", "feedback_DR_B.pdf", "feedback_DR_O.pdf"]  # DR_C has 12 (< 30)
    assert summary["feedback_reports"] == 3 and summary["feedback_rendered"] == 3
    index = (out / "feedback" / "index.html").read_text(encoding="utf-8")
    assert all(f'href="{name}"' in index for name in files) and "DR_C" not in index
    rows = {r["referring_provider_id"]: r for r in read_csv(out / "providers.csv")}
    assert rows["DR_C"]["standard_potentially_unnecessary"] == rows["DR_D"]["standard_potentially_unnecessary"] == "<11"


def test_the_report_states_the_providers_rate_against_peers_of_the_same_specialty(feedback):
    out, _ = feedback
    text = pdf_text(out / "feedback" / "feedback_DR_A.pdf")
    rows = {r["referring_provider_id"]: r for r in read_csv(out / "providers.csv")}
    assert rows["DR_A"]["standard_potentially_unnecessary_pct"] == "60.0"
    assert "60.0%" in text and "of your 40 spine MRIs" in text and "(24)" in text
    # Peers: DR_B only (DR_C's and DR_D's figures are suppressed; DR_O is another specialty).
    assert "1 other primary care referrer(s), 36 spine MRIs" in text and "33.3%" in text
    assert "rule set standard" in text and "How this report is made" in text
    ortho = pdf_text(out / "feedback" / "feedback_DR_O.pdf")
    assert "no peers of your specialty" in ortho


def test_the_case_list_names_every_potentially_unnecessary_scan_of_the_provider(feedback):
    out, _ = feedback
    text = pdf_text(out / "feedback" / "feedback_DR_A.pdf")
    listed = set(re.findall(r"S_A_(?:pu|inj)\d\d", text))
    assert len(listed) == 24
    assert not re.search(r"S_[BCO]_", text)


def test_no_count_of_1_to_10_is_printed(feedback):
    out, _ = feedback
    for pdf in (out / "feedback").glob("*.pdf"):
        text = pdf_text(pdf)
        # Not counts of people: ids, dates, rates, versions, days, page numbers, the number of peer referrers,
        # the funnel's axis ticks.
        text = re.sub(r"S_\w+|\d{4}-\d{2}-\d{2}|\d{4} Q\d|\d+(\.\d+)?%|\d+ days|day \d+|\d+\.\d+\.\d+|\d{2}:\d{2}"
                      r"|page \d+ of \d+|1-10|<11|at least \d+|Webster \d+|Jacobs \d+|NG59|OP-8|\d+ other"
                      r"|\d{1,3}(,\d{3})+|spine MRIs ordered( \d+)+", " ", text)
        small = [int(n) for n in re.findall(r"\b\d+\b", text) if 1 <= int(n) <= 10]
        assert small == [], (pdf.name, small)
    assert "<11 of" in pdf_text(out / "feedback" / "feedback_DR_A.pdf")  # 3 injections: suppressed


def test_an_unchanged_report_is_carried_over_not_rendered_again(cohort_db, feedback, tmp_path):
    db, _ = cohort_db
    first, _ = feedback
    summary = build(db, tmp_path / "reports", previous=first / "feedback")
    assert summary["feedback_reused"] == 3 and summary["feedback_rendered"] == 0
    again = tmp_path / "reports" / "feedback" / "feedback_DR_A.pdf"
    assert again.read_bytes() == (first / "feedback" / "feedback_DR_A.pdf").read_bytes()


def test_the_volume_threshold_is_a_setting(cohort_db, tmp_path, monkeypatch):
    db, _ = cohort_db
    monkeypatch.setenv("IMAGING_AUDIT_FEEDBACK_MIN_SCANS", "35")
    build(db, tmp_path / "reports")
    assert sorted(p.name for p in (tmp_path / "reports" / "feedback").glob("*.pdf")) == [
        "feedback_DR_A.pdf", "feedback_DR_B.pdf"]


def test_a_set_of_reports_stands_until_the_refresh_interval_has_passed(cohort_db, feedback, tmp_path, monkeypatch):
    """Within IMAGING_AUDIT_FEEDBACK_REFRESH_DAYS the published set is carried over whole; after it, a run renders
    what changed (here: the volume threshold changed what DR_A's peers are, nothing; the manifest is just old)."""
    import json
    import shutil

    db, _ = cohort_db
    first, _ = feedback
    previous = tmp_path / "previous"
    shutil.copytree(first / "feedback", previous)
    later = GENERATED + dt.timedelta(days=6)
    con = duckdb.connect(str(db), read_only=True)
    try:
        standing = build_reports(con, tmp_path / "within", later, previous_feedback=previous)
        manifest = json.loads((previous / "manifest.json").read_text())
        manifest["reports"]["feedback_DR_A.pdf"] = "0" * 64  # as if DR_A's report had been different
        (previous / "manifest.json").write_text(json.dumps(manifest))
        still = build_reports(con, tmp_path / "still", later, previous_feedback=previous)
        stale = build_reports(con, tmp_path / "after", GENERATED + dt.timedelta(days=7), previous_feedback=previous)
        monkeypatch.setenv("IMAGING_AUDIT_FEEDBACK_REFRESH_DAYS", "0")
        every = build_reports(con, tmp_path / "every", later, previous_feedback=previous)
    finally:
        con.close()
    assert (standing["feedback_rendered"], standing["feedback_reused"]) == (0, 3)
    assert (still["feedback_rendered"], still["feedback_reused"]) == (0, 3)  # it still stands: not looked into
    assert (stale["feedback_rendered"], stale["feedback_reused"]) == (1, 2)  # DR_A rendered again, two copied
    assert (every["feedback_rendered"], every["feedback_reused"]) == (1, 2)
    assert json.loads((tmp_path / "after" / "feedback" / "manifest.json").read_text())["rendered_on"] == "2026-01-12"


def test_a_report_lists_the_most_recent_cases_when_capped(cohort_db, tmp_path, monkeypatch):
    db, _ = cohort_db
    monkeypatch.setenv("IMAGING_AUDIT_FEEDBACK_CASES", "10")
    build(db, tmp_path / "reports")
    text = pdf_text(tmp_path / "reports" / "feedback" / "feedback_DR_A.pdf")
    assert len(set(re.findall(r"S_A_(?:pu|inj)\d\d", text))) == 10
    assert "The 10 most recent of your 24" in text and "chart_review_cases.csv" in text
