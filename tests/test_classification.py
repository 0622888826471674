"""Guideline classification: every rule branch, every window on both sides of its boundary, each red-flag family
from each source, the seed test vectors T1-T10 of the clinical reference, and the two rule sets disagreeing where
they should.

Each case is one patient: a referral, a scan dated SCAN (day 0 below is the scan date unless stated) and history
events given as (days before the scan, code system, code[, days supply]).
"""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from assets.classify.assets import classify_scans
from assets.classify.rule_sets import load_rule_sets
from assets.ingest.linking import build_scan_links
from assets.ingest.readers import discover_native_files, ensure_tables, load_file
from assets.text.findings import build_text_findings
from tests.conftest import write_csv

SCAN = dt.date(2025, 6, 30)
EVENT_TYPE = {"ICD10CM": "diagnosis", "CPT": "procedure", "HCPCS": "procedure", "RXNORM": "medication",
              "ICD10PCS": "procedure"}


def day(n: int) -> str:
    """The ISO date n days before the scan."""
    return (SCAN - dt.timedelta(days=n)).isoformat()


def classify(
    tmp_path,
    *,
    referral_codes: str | None = "M54.50",
    onset: int | None = 20,
    history: list[tuple] = (),
    procedure: str = "72148",
    scan_codes: str = "",
    age: int = 45,
    specialty: str = "primary_care",
    setting: str = "outpatient",
    extra_scans: list[tuple] = (),
    rule_set: str | None = None,
    indication: str = "",
    rule_sets=None,
):
    """Load one patient's data and classify; returns {rule_set: row dict} (or the row of `rule_set`).
    `indication` is the referral's free text (read by the text stage, as in a run)."""
    folder = tmp_path / "input"
    referrals = []
    if referral_codes is not None:
        referrals.append({
            "referral_id": "R1", "patient_id": "P1", "referral_date": day(3),
            "requested_procedure_code": procedure, "diagnosis_codes": referral_codes, "patient_age": str(age),
            "symptom_onset_date": day(onset) if onset is not None else "", "referring_specialty": specialty,
            "care_setting": setting, "clinical_indication": indication,
        })
    # a second patient keeps the referral file valid when the case has no referral
    referrals.append({"referral_id": "R_other", "patient_id": "P_other", "referral_date": day(3),
                      "requested_procedure_code": "72148", "diagnosis_codes": "M54.50", "patient_age": "50"})
    write_csv(folder / "referrals.csv", referrals)
    scans = [{"scan_id": "S1", "patient_id": "P1", "scan_date": SCAN.isoformat(), "procedure_code": procedure,
              "referral_id": "R1" if referral_codes is not None else "", "diagnosis_codes": scan_codes}]
    for i, (days_before, code) in enumerate(extra_scans):
        scans.append({"scan_id": f"S_prior{i}", "patient_id": "P1", "scan_date": day(days_before),
                      "procedure_code": code})
    write_csv(folder / "scans.csv", scans)
    events = []
    for item in history:
        days_before, system, code, *rest = item
        events.append({"patient_id": "P1", "event_date": day(days_before), "event_type": EVENT_TYPE[system],
                       "code_system": system, "code": code, "days_supply": str(rest[0]) if rest else ""})
    write_csv(folder / "clinical_events.csv", events or [
        {"patient_id": "P_other", "event_date": day(400), "event_type": "diagnosis", "code_system": "ICD10CM",
         "code": "I10"}])
    con = duckdb.connect()
    try:
        ensure_tables(con)
        for f in discover_native_files(folder):
            load_file(con, f, "2025-01-01")
        build_scan_links(con)
        build_text_findings(con)
        classify_scans(con, rule_sets or load_rule_sets())
        cur = con.execute("SELECT * FROM mri_classification WHERE scan_id = 'S1'")
        names = [d[0] for d in cur.description]
        rows = {r[names.index("rule_set")]: dict(zip(names, r)) for r in cur.fetchall()}
    finally:
        con.close()
    return rows[rule_set] if rule_set else rows


def verdict(row) -> tuple[str, str]:
    return row["category"], row["reasons"].split(";")[0]


PT = (20, "CPT", "97110")  # physical therapy 20 days before: conservative care in the OP-8 window


# --- every branch of `standard`, in rule order ------------------------------------------------------------

STANDARD_BRANCHES = {
    "not_spine_mri": (dict(procedure="70551", referral_codes="G43.909"), ("out_of_scope", "not_spine_mri")),
    "cauda_equina": (dict(referral_codes="M54.50;G83.4"), ("indicated", "red_flag_cauda_equina")),
    "cancer": (dict(referral_codes="M54.50;C79.51"), ("indicated", "red_flag_cancer")),
    "infection": (dict(referral_codes="M54.50;M46.26"), ("indicated", "red_flag_infection")),
    "immunosuppression": (dict(history=[(200, "ICD10CM", "B20")]), ("indicated", "red_flag_immunosuppression")),
    "fracture_risk": (dict(history=[(30, "ICD10CM", "S32.010A")]), ("indicated", "red_flag_fracture_risk")),
    "weight_loss": (dict(referral_codes="M54.50;R63.4"), ("indicated", "red_flag_weight_loss")),
    "progressive_deficit": (dict(referral_codes="M54.50;M21.371"), ("indicated", "progressive_neurological_deficit")),
    "prior_lumbar_surgery": (dict(history=[(800, "CPT", "63030")]), ("indicated", "prior_lumbar_surgery")),
    "surgery_site_unknown": (dict(history=[(800, "ICD10CM", "M96.1")]),
                             ("insufficient_information", "prior_spine_surgery_site_unknown")),
    "neurological": (dict(referral_codes="M54.16"), ("indicated", "neurological_symptoms")),
    "disc_herniation": (dict(referral_codes="M51.26"), ("indicated", "suspected_disc_herniation")),
    "no_indication": (dict(referral_codes=None), ("insufficient_information", "no_indication")),
    "repeat": (dict(onset=100, history=[PT, (200, "CPT", "72148")]), ("potentially_unnecessary", "repeat_imaging_no_change")),
    "early": (dict(onset=20), ("potentially_unnecessary", "early_imaging_no_red_flags")),
    "unknown_onset": (dict(onset=None), ("insufficient_information", "unknown_onset")),
    "persistent": (dict(onset=100, history=[PT]), ("indicated", "persistent_despite_conservative_care")),
    "no_conservative_care": (dict(onset=100), ("potentially_unnecessary", "no_conservative_care")),
}


@pytest.mark.parametrize("branch", sorted(STANDARD_BRANCHES))
def test_every_branch_of_the_standard_rule_set(tmp_path, branch):
    case, expected = STANDARD_BRANCHES[branch]
    assert verdict(classify(tmp_path, rule_set="standard", **case)) == expected


ACR_BRANCHES = {
    "v4_cauda_equina": (dict(referral_codes="M54.50;R33.9"), ("indicated", "red_flag_cauda_equina")),
    "v7_cancer": (dict(history=[(900, "ICD10CM", "Z85.3")]), ("indicated", "red_flag_cancer")),
    "v7_infection": (dict(history=[(100, "ICD10CM", "F11.20")]), ("indicated", "red_flag_infection")),
    "v7_immunosuppression": (dict(history=[(500, "ICD10CM", "Z94.0")]), ("indicated", "red_flag_immunosuppression")),
    "v7_weight_loss": (dict(referral_codes="M54.50;R63.4"), ("indicated", "red_flag_weight_loss")),
    "v6_osteoporosis": (dict(history=[(700, "ICD10CM", "M81.0")]), ("indicated", "red_flag_fracture_risk")),
    "v6_elderly": (dict(age=74), ("indicated", "red_flag_fracture_risk")),
    "progressive_deficit": (dict(referral_codes="M54.50;M21.371"), ("indicated", "progressive_neurological_deficit")),
    "v5_prior_surgery": (dict(history=[(900, "CPT", "22612")]), ("indicated", "prior_lumbar_surgery")),
    "v5_surgery_site_unknown": (dict(history=[(900, "ICD10CM", "Z98.1")]),
                                ("insufficient_information", "prior_spine_surgery_site_unknown")),
    "no_indication": (dict(referral_codes=None), ("insufficient_information", "no_indication")),
    "repeat": (dict(onset=100, history=[PT, (200, "CPT", "72148")]), ("potentially_unnecessary", "repeat_imaging_no_change")),
    "v1_acute": (dict(onset=20), ("potentially_unnecessary", "early_imaging_no_red_flags")),
    "unknown_onset": (dict(onset=None), ("insufficient_information", "unknown_onset")),
    "v2_no_management": (dict(onset=100), ("potentially_unnecessary", "no_conservative_care")),
    "v3_candidate": (dict(onset=100, history=[PT], specialty="orthopedics"), ("indicated", "persistent_despite_conservative_care")),
    "v3_candidacy_undocumented": (dict(onset=100, history=[PT]), ("insufficient_information", "candidacy_undocumented")),
}


@pytest.mark.parametrize("branch", sorted(ACR_BRANCHES))
def test_every_branch_of_the_acr_2021_rule_set(tmp_path, branch):
    case, expected = ACR_BRANCHES[branch]
    assert verdict(classify(tmp_path, rule_set="acr-2021", **case)) == expected


# --- the two rule sets disagree where they should ----------------------------------------------------------

@pytest.mark.parametrize(
    "case,standard,acr",
    [
        # Radiculopathy alone within six weeks: the brief indicates MRI; ACR variant 1 says usually not appropriate.
        (dict(referral_codes="M54.16", onset=20), ("indicated", "neurological_symptoms"),
         ("potentially_unnecessary", "early_imaging_no_red_flags")),
        # A disc displacement within six weeks: the brief's (c) indicates MRI; ACR variant 1 does not.
        (dict(referral_codes="M54.50;M51.26", onset=20), ("indicated", "suspected_disc_herniation"),
         ("potentially_unnecessary", "early_imaging_no_red_flags")),
        # Age alone: not a red flag in the brief; "elderly" is in ACR variant 6.
        (dict(age=78, onset=20), ("potentially_unnecessary", "early_imaging_no_red_flags"),
         ("indicated", "red_flag_fracture_risk")),
        # Radiculopathy after six weeks without prior management: indicated by the brief, ACR variant 2 UNA.
        (dict(referral_codes="M54.41", onset=100), ("indicated", "neurological_symptoms"),
         ("potentially_unnecessary", "no_conservative_care")),
    ],
)
def test_rule_sets_disagree_where_the_guidelines_do(tmp_path, case, standard, acr):
    rows = classify(tmp_path, **case)
    assert verdict(rows["standard"]) == standard
    assert verdict(rows["acr-2021"]) == acr


# --- windows on both sides of each boundary ----------------------------------------------------------------

@pytest.mark.parametrize(
    "onset,expected",
    [(41, "early_imaging_no_red_flags"), (42, "no_conservative_care"), (43, "no_conservative_care")],
)
def test_six_week_boundary(tmp_path, onset, expected):
    row = classify(tmp_path, onset=onset, rule_set="standard")
    assert row["reasons"] == expected and row["days_since_onset"] == onset


@pytest.mark.parametrize(
    "care,expected",
    [
        ((0, "CPT", "97110"), False),  # on the day of the MRI: not before it
        ((1, "CPT", "97110"), True),
        ((59, "CPT", "97110"), True),
        ((60, "CPT", "97110"), True),
        ((61, "CPT", "97110"), False),
        ((60, "CPT", "98940"), True),  # chiropractic, same window
        ((61, "CPT", "98940"), False),
        ((27, "CPT", "99213"), False),  # E&M must be 28-60 days before
        ((28, "CPT", "99213"), True),
        ((29, "CPT", "99213"), True),
        ((59, "CPT", "99213"), True),
        ((60, "CPT", "99213"), True),
        ((61, "CPT", "99213"), False),
    ],
)
def test_op8_conservative_care_windows(tmp_path, care, expected):
    row = classify(tmp_path, onset=100, history=[care], rule_set="standard")
    assert row["conservative_care"] is expected
    assert row["op8_numerator"] is (not expected)
    assert verdict(row)[1] == ("persistent_despite_conservative_care" if expected else "no_conservative_care")


@pytest.mark.parametrize("supply,expected", [(41, False), (42, True)])
def test_medication_trial_counts_as_conservative_care_from_42_days(tmp_path, supply, expected):
    history = [(80, "RXNORM", "5640", supply // 2), (40, "RXNORM", "7258", supply - supply // 2)]
    row = classify(tmp_path, onset=100, history=history, rule_set="standard")
    assert row["conservative_care"] is expected
    assert row["op8_numerator"] is True  # medication is not OP-8 conservative therapy


@pytest.mark.parametrize("days,expected", [(89, True), (90, True), (91, False)])
def test_trauma_window_90_days(tmp_path, days, expected):
    row = classify(tmp_path, onset=20, history=[(days, "ICD10CM", "S32.040A")], rule_set="standard")
    assert (verdict(row)[1] == "red_flag_fracture_risk") is expected


@pytest.mark.parametrize("days,expected", [(364, True), (365, True), (366, False)])
def test_recent_diagnosis_window_365_days(tmp_path, days, expected):
    row = classify(tmp_path, onset=20, history=[(days, "ICD10CM", "F11.20")], rule_set="standard")
    assert (verdict(row)[1] == "red_flag_infection") is expected


@pytest.mark.parametrize("days,expected", [(29, True), (30, True), (31, False)])
def test_fever_counts_only_when_recent(tmp_path, days, expected):
    row = classify(tmp_path, onset=20, history=[(days, "ICD10CM", "R50.9")], rule_set="standard")
    assert (verdict(row)[1] == "red_flag_infection") is expected


@pytest.mark.parametrize("days,expected", [(364, True), (365, True), (366, False)])
def test_repeat_imaging_window(tmp_path, days, expected):
    row = classify(tmp_path, onset=400, history=[PT, (days, "CPT", "72148")], rule_set="standard")
    assert (verdict(row)[1] == "repeat_imaging_no_change") is expected


def test_repeat_imaging_needs_the_same_region(tmp_path):
    row = classify(tmp_path, onset=100, history=[PT, (200, "CPT", "72141")], rule_set="standard")
    assert verdict(row) == ("indicated", "persistent_despite_conservative_care")


def test_an_earlier_scan_in_the_scans_table_is_prior_imaging(tmp_path):
    row = classify(tmp_path, onset=100, history=[PT], extra_scans=[(150, "72148")], rule_set="standard")
    assert verdict(row) == ("potentially_unnecessary", "repeat_imaging_no_change")
    assert "72148" in row["evidence"]


@pytest.mark.parametrize("run_days,expected", [(89, False), (90, True), (91, True)])
def test_steroid_run_of_90_consecutive_days(tmp_path, run_days, expected):
    # Three chained fills ending the day before the scan; the last fill sets the run length.
    fills = [(run_days, "RXNORM", "8640", 30), (run_days - 30, "RXNORM", "8640", 30),
             (run_days - 60, "RXNORM", "8640", run_days - 60)]
    row = classify(tmp_path, onset=20, history=fills, rule_set="standard")
    assert (verdict(row)[1] == "red_flag_immunosuppression") is expected


def test_a_gap_between_steroid_fills_breaks_the_run(tmp_path):
    fills = [(120, "RXNORM", "8640", 60), (58, "RXNORM", "8640", 58)]  # day 60 before the scan not covered
    row = classify(tmp_path, onset=20, history=fills, rule_set="standard")
    assert verdict(row)[1] == "early_imaging_no_red_flags"


@pytest.mark.parametrize(
    "previous_gap,expected_start",
    [(180, 220), (181, 40)],  # a back-pain diagnosis 180 days before keeps the old episode; 181 starts a new one
)
def test_episode_clean_period_180_days(tmp_path, previous_gap, expected_start):
    history = [(40 + previous_gap, "ICD10CM", "M54.50"), (40, "ICD10CM", "M54.50")]
    row = classify(tmp_path, onset=None, history=history, rule_set="standard")
    assert row["days_since_onset"] == expected_start


@pytest.mark.parametrize("days,expected", [(364, 364), (365, 365), (366, None)])
def test_episode_links_only_with_back_pain_in_the_last_365_days(tmp_path, days, expected):
    row = classify(tmp_path, onset=None, history=[(days, "ICD10CM", "M54.59")], rule_set="standard")
    assert row["days_since_onset"] == expected
    if expected is None:
        assert verdict(row) == ("insufficient_information", "unknown_onset")


def test_documented_onset_wins_over_history(tmp_path):
    row = classify(tmp_path, onset=10, history=[(300, "ICD10CM", "M54.50")], rule_set="standard")
    assert row["days_since_onset"] == 10


# --- each red-flag family from each source ----------------------------------------------------------------

FAMILY_CODES = {
    "red_flag_cauda_equina": ("ICD10CM", "G83.4"),
    "red_flag_cancer": ("ICD10CM", "C50.911"),
    "red_flag_infection": ("ICD10CM", "G06.1"),
    "red_flag_immunosuppression": ("ICD10CM", "D84.9"),
    "red_flag_fracture_risk": ("ICD10CM", "M48.56XA"),
    "red_flag_weight_loss": ("ICD10CM", "R63.4"),
    "progressive_neurological_deficit": ("ICD10CM", "M21.371"),
    "neurological_symptoms": ("ICD10CM", "R20.2"),
}


@pytest.mark.parametrize("source", ["referral", "scan", "history"])
@pytest.mark.parametrize("reason", sorted(FAMILY_CODES))
def test_each_red_flag_family_from_each_source(tmp_path, reason, source):
    system, code = FAMILY_CODES[reason]
    case = {"referral": dict(referral_codes=f"M54.50;{code}"),
            "scan": dict(scan_codes=code),
            "history": dict(history=[(10, system, code)])}[source]
    row = classify(tmp_path, onset=20, rule_set="standard", **case)
    assert verdict(row) == ("indicated", reason)
    assert code in row["evidence"]


@pytest.mark.parametrize(
    "medication,reason",
    [
        ([(200, "RXNORM", "8640", 100)], "red_flag_immunosuppression"),  # 100 days of prednisone
        ([(300, "RXNORM", "46041", 30)], "red_flag_fracture_risk"),  # alendronate: osteoporosis
        ([(300, "HCPCS", "J0897")], "red_flag_fracture_risk"),  # denosumab injection
    ],
)
def test_red_flags_from_medications(tmp_path, medication, reason):
    row = classify(tmp_path, onset=20, history=medication, rule_set="standard")
    assert verdict(row) == ("indicated", reason)


def test_pcs_transplant_procedure_is_immunosuppression(tmp_path):
    row = classify(tmp_path, onset=20, history=[(900, "ICD10PCS", "0TY00Z0")], rule_set="standard")
    assert verdict(row) == ("indicated", "red_flag_immunosuppression")


def test_several_reasons_most_decisive_first(tmp_path):
    row = classify(tmp_path, referral_codes="M54.16;C79.51;G83.4", onset=20, rule_set="standard")
    assert row["reasons"] == "red_flag_cauda_equina;red_flag_cancer;neurological_symptoms"


# --- review flags -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "procedure,codes,expected",
    [("72148", "M54.50", False), ("72158", "M54.50", True), ("72149", "M54.50", True),
     ("72158", "M54.50;C79.51", False), ("72156", "M54.2", True), ("72158", "M54.50;G83.4", False)],
)
def test_contrast_review(tmp_path, procedure, codes, expected):
    row = classify(tmp_path, procedure=procedure, referral_codes=codes, rule_set="standard")
    assert row["contrast_review"] is expected


@pytest.mark.parametrize("history,expected", [([(500, "ICD10CM", "Z95.0")], True), ([], False),
                                              ([(900, "CPT", "33249")], True)])
def test_safety_review(tmp_path, history, expected):
    row = classify(tmp_path, history=history, rule_set="standard")
    assert row["safety_review"] is expected


@pytest.mark.parametrize(
    "case,expected",
    [
        (dict(onset=100), True),  # lumbar, outpatient, LBP, no conservative therapy
        (dict(onset=100, history=[PT]), False),
        (dict(onset=100, setting="emergency"), None),  # not outpatient: not OP-8 eligible
        (dict(onset=100, procedure="72141", referral_codes="M54.2"), None),  # cervical
        # OP-8's denominator exclusions are unverified (reference §5.2), so none is applied
        (dict(onset=100, referral_codes="M54.50;C79.51"), True),
        (dict(onset=100, referral_codes="R51.9"), None),  # no low back pain diagnosis
    ],
)
def test_op8_numerator_and_eligibility(tmp_path, case, expected):
    assert classify(tmp_path, rule_set="standard", **case)["op8_numerator"] is expected


# --- seed test vectors T1-T10 of the clinical reference (§9.4); day 0 = first LBP diagnosis ---------------

def test_T1_early_mri_uncomplicated(tmp_path):
    # LBP dx day 0 (none in the prior 180 days); 72148 on day 10.
    row = classify(tmp_path, onset=None, history=[(10, "ICD10CM", "M54.50")], rule_set="standard")
    assert verdict(row) == ("potentially_unnecessary", "early_imaging_no_red_flags")
    assert row["days_since_onset"] == 10


def test_T2_history_of_bone_metastasis(tmp_path):
    history = [(10, "ICD10CM", "M54.50"), (10 + 730, "ICD10CM", "C79.51")]
    row = classify(tmp_path, onset=None, history=history, rule_set="standard")
    assert verdict(row) == ("indicated", "red_flag_cancer")


def test_T3_mri_on_day_35_is_still_early(tmp_path):
    row = classify(tmp_path, onset=None, history=[(35, "ICD10CM", "M54.50")], rule_set="standard")
    assert verdict(row) == ("potentially_unnecessary", "early_imaging_no_red_flags")


def test_T4_pt_then_mri_day_50_surgical_candidate(tmp_path):
    pt = [(50 - d, "CPT", "97110") for d in range(5, 41, 5)]
    history = [(50, "ICD10CM", "M54.50"), *pt]
    rows = classify(tmp_path, onset=None, history=history, specialty="neurosurgery")
    for rule_set in ("standard", "acr-2021"):
        assert verdict(rows[rule_set]) == ("indicated", "persistent_despite_conservative_care"), rule_set
        assert rows[rule_set]["op8_numerator"] is False


def test_T5_em_visit_10_days_before_mri_does_not_meet_op8(tmp_path):
    history = [(50, "ICD10CM", "M54.50"), (10, "CPT", "99213")]
    row = classify(tmp_path, onset=None, history=history, rule_set="standard")
    assert row["op8_numerator"] is True


def test_T6_trauma_100_days_before_is_outside_the_window(tmp_path):
    history = [(7, "ICD10CM", "M54.50"), (100, "ICD10CM", "S32.010A")]
    row = classify(tmp_path, onset=None, history=history, rule_set="standard")
    assert verdict(row) == ("potentially_unnecessary", "early_imaging_no_red_flags")


def test_T7_chained_prednisone_95_days(tmp_path):
    fills = [(95, "RXNORM", "8640", 30), (65, "RXNORM", "8640", 30), (35, "RXNORM", "8640", 35)]
    row = classify(tmp_path, onset=None, history=[(1, "ICD10CM", "M54.50"), *fills], rule_set="standard")
    assert verdict(row) == ("indicated", "red_flag_immunosuppression")
    assert "consecutive days" in row["evidence"]


def test_T8_repeat_mri_after_8_months(tmp_path):
    history = [(300, "ICD10CM", "M54.50"), (240, "CPT", "72148"), PT]
    row = classify(tmp_path, onset=None, history=history, rule_set="standard")
    assert verdict(row) == ("potentially_unnecessary", "repeat_imaging_no_change")


def test_T9_prior_surgery_new_radiculopathy_with_contrast(tmp_path):
    row = classify(tmp_path, procedure="72158", referral_codes="M54.16", history=[(700, "CPT", "22612")],
                   rule_set="standard")
    assert row["category"] == "indicated"
    assert row["reasons"].split(";")[:2] == ["prior_lumbar_surgery", "neurological_symptoms"]
    assert row["contrast_review"] is False  # ACR variant 5: contrast appropriate after surgery


def test_T10_lbp_with_another_lbp_diagnosis_120_days_earlier_is_not_a_new_episode(tmp_path):
    history = [(130, "ICD10CM", "M54.50"), (10, "ICD10CM", "M54.50")]
    row = classify(tmp_path, onset=None, history=history, rule_set="standard")
    assert row["days_since_onset"] == 130  # the episode began at the earlier diagnosis


# --- every verdict explains itself ------------------------------------------------------------------------

def test_evidence_names_codes_dates_and_timing(tmp_path):
    row = classify(tmp_path, referral_codes="M54.50", onset=None,
                   history=[(25, "ICD10CM", "M54.50")], rule_set="standard")
    assert "episode start " + day(25) in row["evidence"]
    assert "M54.50" in row["evidence"] and "25 days before the scan" in row["evidence"]
    row = classify(tmp_path / "b", referral_codes="M54.50;C7951", rule_set="standard")
    assert "C79.51 on the referral (" + day(3) + ")" in row["evidence"]


def test_a_rule_naming_an_unknown_feature_is_reported_with_its_file(tmp_path):
    from assets.classify.engine import validate_rule_set
    from assets.classify.rule_sets import load_coded_features

    (standard,) = load_rule_sets(["standard"])
    broken = standard.__class__(**{**standard.__dict__, "rules": standard.rules + (
        {"id": "x", "when": {"all": ["early", "sunburn"]}, "category": "indicated", "reason": "x",
         "description": "", "citation": ""},)})
    with pytest.raises(ValueError, match="standard.yaml: rule x: unknown feature 'sunburn'"):
        validate_rule_set(broken, load_coded_features())
    for rule_set in load_rule_sets():
        validate_rule_set(rule_set, load_coded_features())  # the shipped rule sets are valid
