"""The identifier guard: direct identifiers are masked in free text, quarantined elsewhere, and never reach any
output, the DuckDB file included."""

from __future__ import annotations

import pytest

from assets.ingest.readers import discover_native_files, ensure_tables, load_file
from pipelines.cli import run_audit
from tests.conftest import REPO_ROOT, event, referral, scan, write_csv

IDENTIFIERS = {
    "phone": ["call 555-123-4567", "tel (555) 987-6543", "+1 555.222.3333"],
    "email": ["contact jane.doe@example.org"],
    "ssn": ["SSN 123-45-6789", "ssn 987 65 4321"],
    "mrn": ["MRN: 00123456", "medical record number 7788-99"],
    "birth_date": ["DOB: 1960-04-03", "date of birth 04/03/1960", "born March 4, 1961"],
    "address": ["lives at 12 Oak Street", "1600 Pennsylvania Avenue"],
    "name": ["Mrs. Jones called", "Patient name: John Smith"],
}
CASES = [(kind, text) for kind, texts in IDENTIFIERS.items() for text in texts]


def output_bytes(path) -> bytes:
    """A file's bytes as a reader would search them: a PDF's text is compressed in its streams, so the feedback
    reports are searched in their extracted text."""
    if path.suffix == ".pdf":
        from pypdf import PdfReader

        return " ".join(page.extract_text() for page in PdfReader(path).pages).encode()
    return path.read_bytes()


def _load_referrals(tmp_path, con, rows):
    write_csv(tmp_path / "referrals.csv", rows)
    ensure_tables(con)
    (f,) = discover_native_files(tmp_path)
    return load_file(con, f, "2025-01-01")


@pytest.mark.parametrize("kind,text", CASES)
def test_identifiers_in_free_text_are_masked_and_the_row_kept(tmp_path, con, kind, text):
    _load_referrals(tmp_path, con, [referral(clinical_indication=f"LBP 3 wks; {text}; no red flags")])
    (stored,) = con.execute("SELECT clinical_indication FROM referrals").fetchone()
    assert f"[{kind}]" in stored and "LBP 3 wks" in stored and "no red flags" in stored
    for token in text.split():
        if any(ch.isdigit() for ch in token) or token[:1].isupper() and token not in ("LBP",):
            if token.strip(":,") not in ("MRN", "SSN", "DOB", "Patient", "Mrs.", "March"):
                assert token.strip(":,") not in stored, token
    assert con.execute("SELECT kind, action FROM privacy_findings").fetchall() == [(kind, "masked")]


@pytest.mark.parametrize(
    "phrase",
    ["2 views ct, seen by dr", "L4-5 disc, S1 radicular pain", "fall 2025-03-01, r/o compression fx",
     "hx breast ca, new back pain", "72148 requested, 6 wks PT failed", "pain 8/10 x 3 wks", "T12-L1 fracture"],
)
def test_clinical_phrases_are_not_masked(tmp_path, con, phrase):
    _load_referrals(tmp_path, con, [referral(clinical_indication=phrase)])
    assert con.execute("SELECT clinical_indication FROM referrals").fetchone()[0] == phrase


@pytest.mark.parametrize(
    "column,value,kind",
    [("patient_id", "123-45-6789", "ssn"), ("referring_provider_id", "jdoe@example.org", "email"),
     ("facility_id", "555-123-4567", "phone"), ("referral_id", "MRN 12345678", "mrn")],
)
def test_identifiers_in_structured_columns_quarantine_the_row_without_the_value(tmp_path, con, column, value, kind):
    second = {**referral(referral_id="R2"), column: value}
    result = _load_referrals(tmp_path, con, [referral(referral_id="R1"), second])
    assert (result.rows_loaded, result.rows_quarantined) == (1, 1)
    (reason,) = con.execute("SELECT reason FROM quarantine").fetchone()
    assert reason == f"{column} looks like a direct identifier ({kind})" and value not in reason


@pytest.mark.parametrize("age,stored", [(89, 89), (90, 90), (91, 90), (104, 90)])
def test_ages_over_89_become_90(tmp_path, con, age, stored):
    _load_referrals(tmp_path, con, [referral(patient_age=str(age))])
    assert con.execute("SELECT patient_age FROM referrals").fetchone()[0] == stored


def test_no_identifier_reaches_any_output_file(tmp_path, monkeypatch):
    """Acceptance: identifiers seeded in free text and extra columns appear nowhere under the output folder, the
    referrer's feedback PDF included (twelve referrals of one provider, so that it has a report)."""
    monkeypatch.setenv("IMAGING_AUDIT_FEEDBACK_MIN_SCANS", "12")
    planted = {
        "phone": "555-867-5309", "email": "leak.test@example.org", "ssn": "078-05-1120",
        "mrn": "MRN 99887766", "dob": "DOB: 1951-07-04", "address": "4411 Maplewood Avenue",
        "name": "Mrs. Quintessa Farnsworth",
    }
    extra = {"patient_name": "Quintessa Farnsworth", "ssn": "078-05-1120", "home_phone": "555-867-5309",
             "street_address": "4411 Maplewood Avenue", "birth_date": "1951-07-04"}
    folder = tmp_path / "in"
    text = "LBP 2 wks; " + "; ".join(planted.values())
    ref_columns = list(referral()) + ["clinical_indication", *extra]
    ref_columns.append("referring_provider_id")
    write_csv(folder / "referrals.csv", [
        *({**referral(referral_id=f"R{i}", patient_id=f"P{i}"), "clinical_indication": text, **extra,
           "referring_provider_id": "DR1"} for i in range(1, 13)),
        {**referral(referral_id="RX", patient_id="078-05-1120"), **extra, "referring_provider_id": "DR1"},
    ], columns=ref_columns)
    write_csv(folder / "scans.csv", [{**scan(scan_id=f"S{i}", patient_id=f"P{i}", referral_id=f"R{i}"),
                                      "patient_name": "Quintessa Farnsworth"} for i in range(1, 13)],
              columns=list(scan()) + ["patient_name"])
    write_csv(folder / "clinical_events.csv", [{**event(), "home_phone": "555-867-5309"}],
              columns=list(event()) + ["home_phone"])
    out = tmp_path / "out"
    run_audit(folder, out, quiet=True)
    needles = ["555-867-5309", "leak.test@example.org", "078-05-1120", "99887766", "1951-07-04",
               "Maplewood", "Quintessa", "Farnsworth"]
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name == "warehouse.duckdb" for p in files)
    pdfs = [p for p in files if p.suffix == ".pdf"]
    assert pdfs and {p.name for p in pdfs} == {"feedback_DR1.pdf"}  # the published one and its archived copy
    assert b"DR1" in output_bytes(pdfs[0])  # its text is read, not its compressed streams
    for path in files:
        data = output_bytes(path)
        for needle in needles:
            assert needle.encode() not in data, f"{needle} found in {path.relative_to(out)}"
    findings = (out / "quality" / "privacy_findings.csv").read_text()
    assert "masked" in findings and "quarantined" in findings
    assert "ssn,quarantined" in findings.replace('"', "")


def test_the_committed_sample_has_no_identifier_like_text(con):
    from assets.ingest import identifiers

    path = REPO_ROOT / "data_samples" / "referrals.csv"
    found = con.execute(
        f"""SELECT count(*), count(*) FILTER (WHERE len({identifiers.found_kinds_expr('clinical_indication')}) > 0)
            FROM read_csv('{path}', all_varchar=true)"""
    ).fetchone()
    assert found[0] > 1000 and found[1] == 0


def test_pseudonymization_with_a_keyed_hash_keeps_links_and_hides_ids(tmp_path, monkeypatch):
    import hashlib
    import hmac

    import duckdb

    key = "a-secret-only-the-operator-knows"
    monkeypatch.setenv("IMAGING_AUDIT_PSEUDONYMIZE_KEY", key)
    folder = tmp_path / "in"
    write_csv(folder / "referrals.csv", [referral(referral_id="ORDER-77", patient_id="PATIENT-12")])
    write_csv(folder / "scans.csv", [scan(scan_id="ACC-901", patient_id="PATIENT-12", referral_id="ORDER-77")])
    write_csv(folder / "clinical_events.csv", [event(patient_id="PATIENT-12")])
    out = tmp_path / "out"
    run_audit(folder, out, quiet=True)

    def expected(value: str) -> str:
        return "ps_" + hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()[:24]

    con = duckdb.connect(str(out / "warehouse.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT scan_id, patient_id, referral_id, link_method FROM scan_links").fetchall() == [
            (expected("ACC-901"), expected("PATIENT-12"), expected("ORDER-77"), "explicit")]
        assert con.execute("SELECT DISTINCT patient_id FROM clinical_events").fetchall() == [(expected("PATIENT-12"),)]
    finally:
        con.close()
    for path in (p for p in out.rglob("*") if p.is_file()):
        data = output_bytes(path)
        for needle in ("PATIENT-12", "ORDER-77", "ACC-901", key):
            assert needle.encode() not in data, f"{needle} in {path.name}"


@pytest.mark.parametrize("value", [
    "M54.50", "P000123", "Mr. Smith", "mr. smith", "MRS Jones", "call 555-123-4567", "mrn: 12345", "MRN#A-123",
    "dob 01/02/1990", "Born on March 3, 1950", "12 Main street", "12 main st.", "x@y.com", "name: Bob",
    "Patient Name = Ann Lee", "medical record no. 1234", "123-45-6789", "72148", "back pain 6 weeks", "",
    "PT 3x/week", "seen by Dr Who", "12 Ct scan", "NAME:x",
])
def test_one_pass_over_all_patterns_finds_what_each_pattern_finds(con, value):
    from assets.ingest.identifiers import ANY_PATTERN, PATTERNS

    each = any(con.execute("SELECT regexp_matches(?, ?)", [value, p]).fetchall()[0][0] for p in PATTERNS.values())
    assert con.execute("SELECT regexp_matches(?, ?)", [value, ANY_PATTERN]).fetchall()[0][0] == each
