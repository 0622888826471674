"""The HEDIS LBP episode measure: index episode, age range, exclusions and the 28-day numerator, at boundaries."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from assets.classify.measures import build_hedis_lbp
from assets.classify.rule_sets import load_rule_sets
from assets.classify.value_sets import load_value_sets
from assets.ingest.linking import build_current_views
from assets.ingest.readers import discover_native_files, ensure_tables, load_file
from tests.conftest import write_csv

IESD = dt.date(2025, 5, 1)
TYPES = {"ICD10CM": "diagnosis", "CPT": "procedure", "RXNORM": "medication", "ICD10PCS": "procedure"}


def d(offset: int) -> str:
    return (IESD + dt.timedelta(days=offset)).isoformat()


def measure(tmp_path, *, events=(), scans=(), age=45, referral_offset=0, iesd=None, more_referrals=()):
    """One patient with a low-back-pain diagnosis on the IESD (or `iesd`); events are (offset, system, code[, supply]);
    `more_referrals` are further (ISO date, age at that referral) of the same patient."""
    start = iesd or IESD
    folder = tmp_path / "in"
    write_csv(folder / "referrals.csv", [{
        "referral_id": "R1", "patient_id": "P1",
        "referral_date": (start + dt.timedelta(days=referral_offset)).isoformat(),
        "requested_procedure_code": "72148", "diagnosis_codes": "M54.50", "patient_age": str(age)}] + [
        {"referral_id": f"R{i + 2}", "patient_id": "P1", "referral_date": date, "requested_procedure_code": "72148",
         "diagnosis_codes": "M54.50", "patient_age": str(years)} for i, (date, years) in enumerate(more_referrals)])
    write_csv(folder / "scans.csv", [
        {"scan_id": f"S{i}", "patient_id": "P1", "scan_date": d(off), "procedure_code": code}
        for i, (off, code) in enumerate(scans)] or [
        {"scan_id": "S_none", "patient_id": "P_other", "scan_date": d(0), "procedure_code": "72148"}])
    rows = [{"patient_id": "P1", "event_date": start.isoformat(), "event_type": "diagnosis",
             "code_system": "ICD10CM", "code": "M54.50"}]
    for off, system, code, *rest in events:
        rows.append({"patient_id": "P1", "event_date": d(off), "event_type": TYPES[system], "code_system": system,
                     "code": code, "days_supply": str(rest[0]) if rest else ""})
    write_csv(folder / "clinical_events.csv", rows)
    con = duckdb.connect()
    try:
        ensure_tables(con)
        for f in discover_native_files(folder):
            load_file(con, f, "2025-01-01")
        build_current_views(con)
        load_value_sets(con)
        (standard,) = load_rule_sets(["standard"])
        summary = build_hedis_lbp(con, standard.parameters)
        cur = con.execute("SELECT * FROM hedis_lbp WHERE patient_id = 'P1'")
        names = [c[0] for c in cur.description]
        rows = [dict(zip(names, r)) for r in cur.fetchall()]
    finally:
        con.close()
    return rows, summary


@pytest.mark.parametrize("offset,expected", [(0, True), (27, True), (28, True), (29, False)])
def test_numerator_is_lumbar_imaging_within_28_days_of_the_iesd(tmp_path, offset, expected):
    (row,), summary = measure(tmp_path, scans=[(offset, "72148")])
    assert row["iesd"] == IESD and row["in_denominator"]
    assert row["imaging_within_window"] is expected
    assert summary["numerator"] == int(expected) and summary["denominator"] == 1


@pytest.mark.parametrize("code", ["72100", "72131", "72148", "72158"])
def test_any_lumbar_imaging_counts_x_ray_ct_and_mri(tmp_path, code):
    (row,), _ = measure(tmp_path, scans=[(5, code)])
    assert row["imaging_within_window"] and row["imaging_code"] == code


def test_imaging_from_history_procedures_counts(tmp_path):
    (row,), _ = measure(tmp_path, events=[(3, "CPT", "72110")])
    assert row["imaging_within_window"] and row["days_to_imaging"] == 3


@pytest.mark.parametrize("age,expected", [(17, False), (18, True), (75, True), (76, False)])
def test_age_range_18_to_75(tmp_path, age, expected):
    (row,), _ = measure(tmp_path, age=age)
    assert row["age_at_year_end"] == age and row["in_denominator"] is expected


def test_age_is_shifted_from_the_referral_date(tmp_path):
    # the only age known is at a referral 500 days after the IESD (2026-09-13): 50 then, so 49 on 2025-12-31
    rows, _ = measure(tmp_path, age=50, referral_offset=500)
    (row,) = [r for r in rows if r["iesd"] == IESD]
    assert row["age_at_year_end"] == 49


@pytest.mark.parametrize(
    "age,later_referrals,age_at_year_end,expected",
    [
        (75, [], 75, True),                       # 75 at the IESD and nothing later: 75 on December 31
        (75, [("2025-12-20", 76)], 76, False),    # turns 76 before December 31: outside 18-75 (HEDIS MY2025)
        (17, [], 17, False),                      # 17 at the IESD, no later age known
        (17, [("2025-11-01", 18)], 18, True),     # 18 by December 31: inside, although 17 at the IESD
        (74, [("2026-03-01", 75)], 74, True),     # a referral after the year: whole years back, rounded up
    ],
)
def test_age_is_taken_on_december_31_of_the_measurement_year(tmp_path, age, later_referrals, age_at_year_end,
                                                               expected):
    rows, _ = measure(tmp_path, age=age, more_referrals=later_referrals)
    (row,) = [r for r in rows if r["iesd"] == IESD]
    assert row["age_at_year_end"] == age_at_year_end and row["in_denominator"] is expected


@pytest.mark.parametrize(
    "event",
    [(-500, "ICD10CM", "D84.9"),   # immunodeficiency: a red flag of the rule sets, not a HEDIS exclusion
     (-500, "ICD10CM", "Z79.62"),  # long-term immunosuppressant use: likewise
     (-500, "ICD10CM", "Z98.1"),   # arthrodesis status without a site is not lumbar surgery
     (-30, "ICD10CM", "S39.012A")],  # a lower-back strain is not HEDIS trauma here (reference §1.7)
)
def test_codes_outside_the_hedis_exclusion_lists_do_not_exclude(tmp_path, event):
    (row,), _ = measure(tmp_path, events=[event])
    assert row["exclusions"] is None and row["in_denominator"]


@pytest.mark.parametrize("gap,new_episode", [(180, False), (181, True)])
def test_negative_diagnosis_history_of_180_days(tmp_path, gap, new_episode):
    rows, _ = measure(tmp_path, events=[(-gap, "ICD10CM", "M54.59")])
    iesds = [r["iesd"] for r in rows if r["measurement_year"] == 2025]
    assert (IESD in iesds) is new_episode


@pytest.mark.parametrize(
    "event,exclusion",
    [
        ((-2000, "ICD10CM", "C50.911"), "cancer"),  # any time before
        ((20, "ICD10CM", "Z85.3"), "cancer"),  # through IESD + 28
        ((-500, "ICD10CM", "B20"), "hiv"),
        ((-500, "ICD10CM", "Z94.0"), "organ_transplant"),
        ((-500, "ICD10PCS", "0TY00Z0"), "organ_transplant"),
        ((-300, "ICD10CM", "C44.91"), "nonmelanoma_skin_cancer"),  # in the C00-C96 range of the HEDIS list
        ((-300, "ICD10CM", "D12.6"), "other_neoplasm"),  # D00-D49 of the HEDIS list
        ((-900, "ICD10CM", "M81.0"), "osteoporosis"),
        ((-900, "CPT", "63030"), "lumbar_surgery"),
        ((-90, "ICD10CM", "S32.010A"), "spinal_trauma"),
        ((-365, "ICD10CM", "F11.20"), "iv_drug_use"),
        ((-100, "ICD10CM", "G83.4"), "cauda_equina"),
        ((-100, "ICD10CM", "M46.26"), "spinal_infection"),
        ((-10, "ICD10CM", "Z51.5"), "palliative_care"),
    ],
)
def test_exclusions_inside_their_windows(tmp_path, event, exclusion):
    (row,), _ = measure(tmp_path, events=[event])
    assert exclusion in row["exclusions"].split(";") and not row["in_denominator"]


@pytest.mark.parametrize(
    "event",
    [(-91, "ICD10CM", "S32.010A"), (-366, "ICD10CM", "F11.20"), (29, "ICD10CM", "C50.911")],
)
def test_exclusions_outside_their_windows_do_not_count(tmp_path, event):
    (row,), _ = measure(tmp_path, events=[event])
    assert row["exclusions"] is None and row["in_denominator"]


@pytest.mark.parametrize("days,excluded", [(89, False), (90, True)])
def test_long_term_steroid_exclusion(tmp_path, days, excluded):
    fills = [(-days, "RXNORM", "8640", 30), (-days + 30, "RXNORM", "8640", 30), (-days + 60, "RXNORM", "8640", days - 60)]
    (row,), _ = measure(tmp_path, events=fills)
    assert (row["exclusions"] == "long_term_steroids") is excluded


@pytest.mark.parametrize("month_day,counted", [("12-03", True), ("12-04", False)])
def test_intake_period_ends_december_3(tmp_path, month_day, counted):
    iesd = dt.date.fromisoformat(f"2025-{month_day}")
    rows, _ = measure(tmp_path, iesd=iesd)
    assert any(r["iesd"] == iesd for r in rows) is counted
