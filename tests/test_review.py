"""Chart review: reviews arrive like every other table, set each verdict's review status and final category, and
the agreement figures (PPV with Wilson intervals, Cohen's kappa) match a hand computation."""

from __future__ import annotations

import csv
import itertools
import math

import pytest

from assets.classify.assets import CLASSIFICATION_COLUMNS
from assets.ingest.contract import REVIEW_CATEGORIES
from tests.conftest import referral, scan, write_csv

CATEGORIES = list(REVIEW_CATEGORIES)


# --- a small warehouse: verdicts, current scans and reviews, written directly -----------------------------------

def _warehouse(con, verdicts: list[tuple], scans: list[str] | None = None):
    """verdicts: (scan_id, rule_set, version, category[, reasons])."""
    from assets.ingest.readers import ensure_tables

    ensure_tables(con)
    columns = ", ".join(f"{n} {t}" for n, t in CLASSIFICATION_COLUMNS)
    con.execute(f"CREATE OR REPLACE TABLE mri_classification ({columns})")
    for v in verdicts:
        scan_id, rule_set, version, category, *rest = v
        con.execute(
            "INSERT INTO mri_classification (scan_id, patient_id, scan_date, rule_set, rule_set_version, category, "
            "reasons, review_status, final_category) VALUES (?, 'P', DATE '2025-03-01', ?, ?, ?, ?, 'unreviewed', ?)",
            [scan_id, rule_set, version, category, rest[0] if rest else "early_imaging_no_red_flags", category],
        )
    con.execute("CREATE OR REPLACE TABLE scans_current (scan_id VARCHAR)")
    for s in scans if scans is not None else sorted({v[0] for v in verdicts}):
        con.execute("INSERT INTO scans_current VALUES (?)", [s])


_row = itertools.count(1)


def _review(con, scan_id, category, reviewer="RV1", date="2025-04-01", rule_set="standard", partition="2025-04-01",
            reasons=None, source="chart_reviews_2025-04-01.csv"):
    con.execute(
        "INSERT INTO chart_reviews (scan_id, rule_set, reviewer_id, review_date, reviewed_category, reviewed_reasons, "
        "note, _source_file, _source_row, _load_partition) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)",
        [scan_id, rule_set, reviewer, date, category, reasons, source, next(_row), partition],
    )


def _status(con, scan_id="S1", rule_set="standard"):
    return con.execute("SELECT review_status, final_category FROM mri_classification WHERE scan_id = ? AND rule_set = ?",
                       [scan_id, rule_set]).fetchone()


@pytest.mark.parametrize(("automated", "reviewed"), list(itertools.product(CATEGORIES, CATEGORIES)),
                         ids=[f"{a}->{b}" for a, b in itertools.product(CATEGORIES, CATEGORIES)])
def test_each_category_pair(con, automated, reviewed):
    from assets.review.reviews import apply_reviews

    _warehouse(con, [("S1", "standard", "1.3.0", automated)])
    _review(con, "S1", reviewed)
    apply_reviews(con)
    assert _status(con) == ("confirmed" if automated == reviewed else "overridden", reviewed)
    agrees, = con.execute("SELECT agrees FROM chart_review_results").fetchone()
    assert agrees is (automated == reviewed)


def test_an_unreviewed_verdict_keeps_its_category(con):
    from assets.review.reviews import apply_reviews

    _warehouse(con, [("S1", "standard", "1.3.0", "indicated"), ("S2", "standard", "1.3.0", "indicated")])
    _review(con, "S1", "potentially_unnecessary")
    apply_reviews(con)
    assert _status(con, "S2") == ("unreviewed", "indicated")


def test_repeated_reviews_are_all_kept_and_the_latest_decides(con):
    from assets.review.reviews import apply_reviews

    _warehouse(con, [("S1", "standard", "1.3.0", "potentially_unnecessary")])
    _review(con, "S1", "indicated", date="2025-04-01")
    _review(con, "S1", "potentially_unnecessary", date="2025-05-01")  # the same reviewer changes their mind
    _review(con, "S1", "insufficient_information", date="2025-03-01", partition="2025-06-01")  # late, but older
    apply_reviews(con)
    assert _status(con) == ("confirmed", "potentially_unnecessary")
    assert con.execute("SELECT count(*) FROM chart_review_results").fetchone()[0] == 3
    # on the same review date, the later delivery decides
    _review(con, "S1", "indicated", date="2025-05-01", partition="2025-06-02")
    apply_reviews(con)
    assert _status(con) == ("overridden", "indicated")
    assert con.execute("SELECT count(*) FROM chart_reviews").fetchone()[0] == 4


def test_conflicting_reviewers(con):
    """Two reviewers disagree: the latest review sets the final category; agreement counts both reviewers, and
    the inter-reviewer kappa sees the pair."""
    from assets.review.agreement import rule_set_agreement
    from assets.review.reviews import apply_reviews

    _warehouse(con, [("S1", "standard", "1.3.0", "potentially_unnecessary")])
    _review(con, "S1", "potentially_unnecessary", reviewer="RV1", date="2025-04-01")
    _review(con, "S1", "indicated", reviewer="RV2", date="2025-04-02")
    apply_reviews(con)
    assert _status(con) == ("overridden", "indicated")
    result = rule_set_agreement(con, "standard")
    assert (result["all"]["reviewed"], result["all"]["confirmed"]) == (2, 1)
    assert result["reviewer_pairs"] == 1


def test_a_review_of_an_unknown_scan_is_quarantined_and_applies_when_the_scan_arrives(con):
    from assets.review.reviews import apply_reviews

    _warehouse(con, [("S1", "standard", "1.3.0", "indicated")])
    _review(con, "S9", "indicated")  # S9 arrives later
    counts = apply_reviews(con)
    assert counts["unmatched"] == 1
    reason, stage = con.execute("SELECT reason, stage FROM quarantine WHERE table_name = 'chart_reviews'").fetchone()
    assert stage == "review" and reason.startswith("scan_id is not a known scan")
    # the scan arrives and is classified: the review applies, and its quarantine row goes
    con.execute("INSERT INTO scans_current VALUES ('S9')")
    con.execute("INSERT INTO mri_classification (scan_id, rule_set, rule_set_version, category, reasons, review_status, "
                "final_category) VALUES ('S9', 'standard', '1.3.0', 'potentially_unnecessary', 'no_conservative_care', "
                "'unreviewed', 'potentially_unnecessary')")
    counts = apply_reviews(con)
    assert counts["unmatched"] == 0 and _status(con, "S9") == ("overridden", "indicated")
    assert con.execute("SELECT count(*) FROM quarantine WHERE table_name = 'chart_reviews'").fetchone()[0] == 0


def test_a_review_of_a_rule_set_without_a_verdict_waits(con):
    from assets.review.reviews import apply_reviews

    _warehouse(con, [("S1", "standard", "1.3.0", "indicated")])
    _review(con, "S1", "indicated", rule_set="acr-2021")
    apply_reviews(con)
    reason, = con.execute("SELECT reason FROM quarantine WHERE table_name = 'chart_reviews'").fetchone()
    assert reason.startswith("no verdict of rule set acr-2021")


def test_a_rule_set_version_change_marks_earlier_reviews(con):
    """The review was made against 1.3.0's verdict; after 1.4.0 changes the verdict, the review still counts
    against what the reviewer saw, is marked as made against the older version, and still sets the final
    category."""
    from assets.review.agreement import rule_set_agreement
    from assets.review.reviews import apply_reviews

    _warehouse(con, [("S1", "standard", "1.3.0", "potentially_unnecessary")])
    _review(con, "S1", "potentially_unnecessary")
    apply_reviews(con)
    con.execute("UPDATE mri_classification SET rule_set_version = '1.4.0', category = 'indicated', "
                "final_category = 'indicated', reasons = 'neurological_symptoms'")
    counts = apply_reviews(con)
    assert counts["older_version"] == 1
    assert _status(con) == ("overridden", "potentially_unnecessary")
    result = rule_set_agreement(con, "standard")
    assert result["all"]["confirmed"] == 1  # against the verdict the reviewer saw
    assert result["versions"] == [{"reviewed_version": "1.3.0", "current_version": "1.4.0", "n": 1}]


# --- the statistics against a hand computation ---------------------------------------------------------------

def test_ppv_and_kappa_agree_with_a_hand_computation(con):
    """Ten reviewed verdicts. Automated potentially unnecessary: 6, of which the reviewer confirmed 4; automated
    indicated: 4, confirmed 3. Table (rows automated, columns reviewer) over (indicated, potentially unnecessary):
    [[3, 1], [2, 4]]."""
    from assets.review.agreement import rule_set_agreement
    from assets.review.reviews import apply_reviews

    pairs = ([("indicated", "indicated")] * 3 + [("indicated", "potentially_unnecessary")]
             + [("potentially_unnecessary", "indicated")] * 2 + [("potentially_unnecessary", "potentially_unnecessary")] * 4)
    _warehouse(con, [(f"S{i}", "standard", "1.3.0", a) for i, (a, _) in enumerate(pairs)])
    for i, (_, b) in enumerate(pairs):
        _review(con, f"S{i}", b)
    apply_reviews(con)
    result = rule_set_agreement(con, "standard")
    rows = {r["category"]: r for r in result["rows"]}

    z = 1.959963984540054
    def wilson(x, n):  # Wilson 1927: (p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)
        p = x / n
        centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)

    pu = rows["potentially_unnecessary"]
    assert (pu["reviewed"], pu["confirmed"]) == (6, 4) and pu["ppv"] == pytest.approx(4 / 6)
    assert (pu["ppv_ci_low"], pu["ppv_ci_high"]) == pytest.approx(wilson(4, 6))
    assert rows["indicated"]["ppv"] == pytest.approx(3 / 4)
    assert (rows["indicated"]["ppv_ci_low"], rows["indicated"]["ppv_ci_high"]) == pytest.approx(wilson(3, 4))
    # kappa: observed agreement 7/10; chance (4/10)(5/10) + (6/10)(5/10) = 0.5; kappa = (0.7 - 0.5) / 0.5 = 0.4
    assert result["all"]["kappa"] == pytest.approx(0.4)
    # its large-sample standard error (Fleiss, Cohen and Everitt 1969):
    # var = [sum_i p_ii (1 - (p_i. + p_.i)(1 - k))^2 + (1 - k)^2 sum_{i != j} p_ij (p_.i + p_j.)^2
    #        - (k - p_e (1 - k))^2] / ((1 - p_e)^2 n)
    n, pe, k = 10, 0.5, 0.4
    p = [[0.3, 0.1], [0.2, 0.4]]
    row, col = [0.4, 0.6], [0.5, 0.5]  # p_i. (automated), p_.j (reviewer)
    a = sum(p[i][i] * (1 - (row[i] + col[i]) * (1 - k)) ** 2 for i in range(2))
    b = (1 - k) ** 2 * sum(p[i][j] * (col[i] + row[j]) ** 2 for i in range(2) for j in range(2) if i != j)
    c = (k - pe * (1 - k)) ** 2
    se = math.sqrt((a + b - c) / (1 - pe) ** 2 / n)
    assert (result["all"]["kappa_ci_low"], result["all"]["kappa_ci_high"]) == pytest.approx((k - z * se, k + z * se))
    assert result["matrix"][0][:2] == [3, 1] and result["matrix"][1][:2] == [2, 4]


def test_kappa_is_undefined_when_every_answer_is_one_category():
    from assets.review.agreement import kappa

    assert kappa([[5, 0], [0, 0]]) == (None, None, None)
    assert kappa([[0, 0], [0, 0]]) == (None, None, None)


def test_the_agreement_export_has_the_contract_columns(con):
    from assets.review.agreement import AGREEMENT_COLUMNS, agreement_csv, rule_set_agreement
    from assets.review.reviews import apply_reviews

    _warehouse(con, [("S1", "standard", "1.3.0", "indicated"), ("S2", "standard", "1.3.0", "potentially_unnecessary")])
    _review(con, "S1", "indicated")
    _review(con, "S2", "indicated")
    apply_reviews(con)
    rows = list(csv.DictReader(agreement_csv([rule_set_agreement(con, "standard")]).splitlines()))
    assert list(rows[0]) == AGREEMENT_COLUMNS == [
        "rule_set", "category", "reviewed", "confirmed", "ppv", "ppv_ci_low", "ppv_ci_high", "kappa",
        "kappa_ci_low", "kappa_ci_high"]
    by = {r["category"]: r for r in rows}
    assert (by["indicated"]["reviewed"], by["indicated"]["confirmed"], by["indicated"]["ppv"]) == ("1", "1", "1.0")
    assert by["potentially_unnecessary"]["ppv"] == "0.0" and by["all"]["reviewed"] == "2"
    assert by["indicated"]["kappa"] == "" and by["all"]["ppv"] == ""


# --- the input: quarantine with reasons, notes masked ------------------------------------------------------------

def _load_reviews(con, tmp_path, rows):
    from assets.ingest.readers import InputFile, ensure_tables, load_file

    ensure_tables(con)
    path = write_csv(tmp_path / "chart_reviews_2025-04-01.csv", rows)
    return load_file(con, InputFile(path, "chart_reviews", "csv", "2025-04-01"), "2025-04-01")


GOOD = {"scan_id": "S1", "reviewer_id": "RV1", "review_date": "2025-04-01", "reviewed_category": "indicated",
        "reviewed_reasons": "neurological_symptoms"}


@pytest.mark.parametrize(("overrides", "reason"), [
    ({"reviewed_category": "maybe"}, "reviewed_category is not one of"),
    ({"reviewed_category": ""}, "reviewed_category is missing"),
    ({"reviewer_id": ""}, "reviewer_id is missing"),
    ({"scan_id": ""}, "scan_id is missing"),
    ({"review_date": "2999-01-01"}, "review_date is in the future"),
    ({"review_date": "01/04/2025"}, "review_date is not an ISO 8601 date"),
    ({"rule_set": "nice-2016"}, "rule_set nice-2016 is not a rule set of this audit"),
    ({"reviewed_reasons": "gut_feeling"}, "reviewed_reasons has unknown reason codes: gut_feeling"),
    ({"reviewed_reasons": "early_imaging_no_red_flags"}, "reviewed_reasons do not belong to indicated"),
])
def test_a_bad_review_is_quarantined_with_its_reason(con, tmp_path, overrides, reason):
    result = _load_reviews(con, tmp_path, [GOOD, {**GOOD, **overrides}])
    assert (result.rows_in, result.rows_loaded, result.rows_quarantined) == (2, 1, 1)
    reasons, = con.execute("SELECT reason FROM quarantine WHERE table_name = 'chart_reviews'").fetchone()
    assert reason in reasons


def test_a_good_review_is_stored_normalised_with_its_note_masked(con, tmp_path):
    _load_reviews(con, tmp_path, [{**GOOD, "rule_set": "", "reviewed_category": "Potentially Unnecessary",
                                   "reviewed_reasons": " Early_Imaging_No_Red_Flags ; no_conservative_care",
                                   "note": "called pt at 555-867-5309, MRN 12345678; agrees"}])
    row = con.execute("SELECT rule_set, reviewed_category, reviewed_reasons, note FROM chart_reviews").fetchone()
    assert row[:3] == ("standard", "potentially_unnecessary", "early_imaging_no_red_flags;no_conservative_care")
    assert "555-867-5309" not in row[3] and "12345678" not in row[3] and "agrees" in row[3]


def test_reviews_arrive_in_a_nightly_drop_before_their_scan(tmp_path):
    """A review of S2 arrives a day before S2: it waits in the quarantine (stage review), then applies."""
    import duckdb

    from tests.conftest import run_partition

    landing, out = tmp_path / "landing", tmp_path / "out"
    write_csv(landing / "referrals_2025-04-02.csv", [referral(), referral(referral_id="R2", patient_id="P2")])
    write_csv(landing / "scans_2025-04-02.csv", [scan()])
    write_csv(landing / "chart_reviews_2025-04-02.csv", [
        {**GOOD, "reviewed_category": "potentially_unnecessary", "reviewed_reasons": ""},
        {**GOOD, "scan_id": "S2", "reviewer_id": "RV2"}])
    run_partition(landing, out, "2025-04-02")
    with duckdb.connect(str(out / "warehouse.duckdb"), read_only=True) as db:
        assert db.execute("SELECT review_status FROM mri_classification WHERE scan_id = 'S1' AND rule_set = 'standard'"
                          ).fetchone()[0] in ("confirmed", "overridden")
        assert db.execute("SELECT count(*) FROM quarantine WHERE stage = 'review'").fetchone()[0] == 1
    quarantine = (out / "quality" / "quarantine.csv").read_text()
    assert "scan_id is not a known scan" in quarantine
    write_csv(landing / "scans_2025-04-03.csv", [scan(scan_id="S2", patient_id="P2", referral_id="R2")])
    run_partition(landing, out, "2025-04-03")
    with duckdb.connect(str(out / "warehouse.duckdb"), read_only=True) as db:
        status, final = db.execute("SELECT review_status, final_category FROM mri_classification "
                                   "WHERE scan_id = 'S2' AND rule_set = 'standard'").fetchone()
        assert final == "indicated" and status in ("confirmed", "overridden")
        assert db.execute("SELECT count(*) FROM quarantine WHERE stage = 'review'").fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM chart_reviews").fetchone()[0] == 2
    agreement = list(csv.DictReader((out / "exports" / "review_agreement.csv").read_text().splitlines()))
    assert {r["category"] for r in agreement if r["rule_set"] == "standard"} >= {"all"}


# --- the worklist ------------------------------------------------------------------------------------------------

def _many(con, n_per_month=5):
    rows = []
    for month in ("01", "02"):
        for cat in ("indicated", "potentially_unnecessary"):
            for i in range(n_per_month):
                rows.append((f"S{month}{cat[0]}{i}", "standard", "1.3.0", cat))
    _warehouse(con, rows)
    con.execute("UPDATE mri_classification SET scan_date = CAST('2025-' || substr(scan_id, 2, 2) || '-10' AS DATE), "
                "body_region = 'lumbar'")
    for t in ("scan_links (scan_id VARCHAR, referral_id VARCHAR)",
              "referrals_current (referral_id VARCHAR, referring_provider_id VARCHAR, referring_specialty VARCHAR, "
              "clinical_indication VARCHAR)"):
        con.execute(f"CREATE OR REPLACE TABLE {t}")
    con.execute("ALTER TABLE scans_current ADD COLUMN facility_id VARCHAR")
    con.execute("INSERT INTO scan_links SELECT scan_id, NULL FROM mri_classification")


def test_the_worklist_samples_each_stratum_reproducibly_and_skips_reviewed_scans(con):
    from assets.review.reviews import apply_reviews
    from assets.review.worklist import worklist_sql

    _many(con)
    first = con.execute(worklist_sql(2, 10, "7", [])).fetchall()
    assert len(first) == 8  # 2 per rule set, category and month
    assert con.execute(worklist_sql(2, 10, "7", [])).fetchall() == first  # the same seed, the same sample
    assert con.execute(worklist_sql(2, 10, "8", [])).fetchall() != first  # another seed, another sample
    chosen = first[0][0]
    _review(con, chosen, "indicated")
    apply_reviews(con)
    again = [r[0] for r in con.execute(worklist_sql(2, 10, "7", [])).fetchall()]
    assert chosen not in again and len(again) == 8


def test_the_worklist_adds_the_scans_of_a_funnel_outlier(con):
    from assets.review.worklist import worklist_sql

    _many(con)
    con.execute("UPDATE scans_current SET facility_id = 'F9' WHERE scan_id LIKE 'S01p%'")
    cur = con.execute(worklist_sql(1, 3, "7", [("facility_id", "F9", "above")]))
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r)) for r in cur.fetchall()]
    funnel = [r for r in rows if r["selected_because"].startswith("funnel: facility F9 is above the 99.8% limit")]
    assert len(funnel) == 3 and len(rows) == 4 + 3
    assert all(r["category"] == "potentially_unnecessary" and r["facility_id"] == "F9" for r in funnel)
    assert len({(r["scan_id"], r["rule_set"]) for r in rows}) == len(rows)  # a scan is listed once


# --- the pages ---------------------------------------------------------------------------------------------------

def test_the_review_page_embeds_input_text_safely():
    import datetime as dt

    from assets.review.pages import render_review_page

    hostile = '</script><script>alert("x")</script><img src=x onerror=alert(1)>'
    case = {"scan_id": "S1", "rule_set": "standard", "rule_set_version": "1.3.0", "category": "indicated",
            "reasons": "neurological_symptoms", "rule": "r", "scan_date": "2025-03-05", "body_region": "lumbar",
            "referring_specialty": None, "facility_id": None, "selected_because": "sample",
            "evidence_items": [hostile], "clinical_indication": hostile, "findings": []}
    page = render_review_page([case], dt.datetime(2025, 4, 1, tzinfo=dt.timezone.utc))
    assert hostile not in page and "</script><script>alert" not in page
    assert page.count("<script") == 3  # the two data blocks and the page's own script
    assert "Save reviews as CSV" in page and "http" not in page.split("<script>")[1].split("</script>")[0]
