"""Rule and value-set corrections against their sources (guidelines/CHANGELOG.md, standard 1.2.0 and acr-2021
1.1.0): each fix has the case that must count and the one that must not.

Cases reuse the one-patient harness of tests/test_classification.py: a referral 3 days before the scan, history
events as (days before the scan, code system, code[, days supply]).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import simple_icd_10_cm as icd

from tests.test_classification import PT, classify, verdict

VALUE_SETS = Path(__file__).resolve().parents[1] / "guidelines" / "value_sets"
LUMBAR, CERVICAL, THORACIC = ("72148", "M54.50"), ("72141", "M54.2"), ("72146", "M54.6")


# --- chronic systemic corticosteroids: fracture risk as well as immunosuppression ---------------------------

@pytest.mark.parametrize("rule_set", ["standard", "acr-2021"])
@pytest.mark.parametrize(
    "case",
    [dict(referral_codes="M54.50;Z79.52"),                                  # long-term use code
     dict(history=[(95, "RXNORM", "8640", 30), (65, "RXNORM", "8640", 30), (35, "RXNORM", "8640", 35)])],  # 100 days
    ids=["Z79.52", "90-day supply run"],
)
def test_chronic_steroids_give_both_immunosuppression_and_fracture_risk(tmp_path, case, rule_set):
    row = classify(tmp_path, rule_set=rule_set, **case)
    assert row["category"] == "indicated"
    assert row["reasons"].split(";")[:2] == ["red_flag_immunosuppression", "red_flag_fracture_risk"]
    assert row["evidence"].count("immunosuppression:") == 1 and row["evidence"].count("fracture risk:") == 1


def test_a_short_steroid_burst_is_neither(tmp_path):
    row = classify(tmp_path, history=[(40, "RXNORM", "8640", 10)], rule_set="standard")
    assert verdict(row) == ("potentially_unnecessary", "early_imaging_no_red_flags")


# --- trauma and surgery must match the imaged region --------------------------------------------------------

@pytest.mark.parametrize(
    "exam,trauma,expected",
    [
        (LUMBAR, "S32.010A", "red_flag_fracture_risk"),        # lumbar fracture, lumbar MRI
        (LUMBAR, "S33.5XXA", "red_flag_fracture_risk"),        # lumbar sprain, lumbar MRI
        (LUMBAR, "S13.4XXA", "early_imaging_no_red_flags"),    # cervical sprain says nothing of the lumbar spine
        (LUMBAR, "S22.050A", "early_imaging_no_red_flags"),    # thoracic fracture, lumbar MRI
        (CERVICAL, "S13.4XXA", "red_flag_fracture_risk"),      # cervical sprain, cervical MRI
        (CERVICAL, "S33.5XXA", "early_imaging_no_red_flags"),  # lumbar sprain, cervical MRI
        (THORACIC, "S22.050A", "red_flag_fracture_risk"),
        (LUMBAR, "M48.52XA", "red_flag_fracture_risk"),        # a fragility fracture anywhere: osteoporosis
    ],
)
def test_trauma_counts_only_for_the_imaged_region(tmp_path, exam, trauma, expected):
    procedure, pain = exam
    row = classify(tmp_path, procedure=procedure, referral_codes=pain, history=[(30, "ICD10CM", trauma)],
                   rule_set="standard")
    assert verdict(row)[1] == expected


@pytest.mark.parametrize(
    "history,procedure,expected",
    [
        ([(800, "CPT", "63030")], "72148", ("indicated", "prior_lumbar_surgery")),
        ([(800, "ICD10PCS", "0SG00AJ")], "72148", ("indicated", "prior_lumbar_surgery")),   # PCS lumbar fusion
        ([(800, "ICD10PCS", "0SB20ZZ")], "72148", ("indicated", "prior_lumbar_surgery")),   # PCS lumbar discectomy
        ([(800, "ICD10CM", "Z98.1")], "72148", ("insufficient_information", "prior_spine_surgery_site_unknown")),
        ([(800, "ICD10CM", "M96.1")], "72148", ("insufficient_information", "prior_spine_surgery_site_unknown")),
        ([(800, "ICD10CM", "Z98.1"), (800, "CPT", "22612")], "72148", ("indicated", "prior_lumbar_surgery")),
        ([(800, "ICD10CM", "Z98.1")], "72141", ("potentially_unnecessary", "early_imaging_no_red_flags")),
        ([(800, "CPT", "63030")], "72141", ("potentially_unnecessary", "early_imaging_no_red_flags")),
    ],
    ids=["cpt", "pcs-fusion", "pcs-discectomy", "Z98.1-alone", "M96.1-alone", "Z98.1-with-cpt",
         "Z98.1-cervical-mri", "lumbar-cpt-cervical-mri"],
)
def test_prior_lumbar_surgery_needs_a_lumbar_procedure_code(tmp_path, history, procedure, expected):
    pain = "M54.50" if procedure == "72148" else "M54.2"
    row = classify(tmp_path, procedure=procedure, referral_codes=pain, history=history, rule_set="standard")
    assert verdict(row) == expected
    if expected[1] == "prior_lumbar_surgery":
        assert "Z98.1" not in row["evidence"]  # evidence states only the facts that decided


def test_unsited_surgery_does_not_hide_a_neurological_indication(tmp_path):
    row = classify(tmp_path, referral_codes="M54.16", history=[(800, "ICD10CM", "Z98.1")], rule_set="standard")
    assert verdict(row) == ("indicated", "neurological_symptoms")


# --- evidence states only the facts that decided -------------------------------------------------------------

@pytest.mark.parametrize("age,history,elderly_stated", [(45, [(700, "ICD10CM", "M81.0")], False),
                                                        (74, [], True), (74, [(700, "ICD10CM", "M81.0")], True)])
def test_acr_elderly_is_stated_only_for_elderly_patients(tmp_path, age, history, elderly_stated):
    row = classify(tmp_path, age=age, history=history, rule_set="acr-2021")
    assert verdict(row) == ("indicated", "red_flag_fracture_risk")
    assert ("elderly" in row["evidence"]) is elderly_stated
    assert ("M81.0" in row["evidence"]) is bool(history)


# --- motor deficit and neurological codes, checked against their sources ------------------------------------

@pytest.mark.parametrize(
    "codes,expected",
    [
        ("M54.50;M62.81", "early_imaging_no_red_flags"),           # generalised weakness: not focal, not neurological
        ("M54.50;M21.371", "progressive_neurological_deficit"),    # foot drop
        ("M54.50;G83.11", "progressive_neurological_deficit"),     # monoplegia of a lower limb
        ("M54.50;M54.12", "early_imaging_no_red_flags"),           # cervical radiculopathy on a lumbar MRI
        ("M54.50;M54.15", "neurological_symptoms"),                # thoracolumbar radiculopathy: lumbar and thoracic
        ("M54.50;M54.10", "neurological_symptoms"),                # radiculopathy, site unspecified
        ("M54.50;M50.121", "early_imaging_no_red_flags"),          # cervical disc with radiculopathy
        ("M54.50;M50.21", "early_imaging_no_red_flags"),           # cervical disc displacement on a lumbar MRI
        ("M54.50;R33.0", "early_imaging_no_red_flags"),            # drug-induced urinary retention
        ("M54.50;R33.9", "red_flag_cauda_equina"),
        ("M54.50;R15.2", "early_imaging_no_red_flags"),            # fecal urgency is not incontinence
        ("M54.50;R15.9", "red_flag_cauda_equina"),
        ("M54.50;N31.9", "early_imaging_no_red_flags"),            # neurogenic bladder NOS: no source names it
    ],
)
def test_neurological_and_deficit_codes_on_a_lumbar_mri(tmp_path, codes, expected):
    assert verdict(classify(tmp_path, referral_codes=codes, rule_set="standard"))[1] == expected


@pytest.mark.parametrize("codes,expected", [("M54.2;M54.12", "neurological_symptoms"),
                                            ("M54.2;M54.16", "early_imaging_no_red_flags"),
                                            ("M54.2;M50.21", "suspected_disc_herniation")])
def test_neurological_codes_on_a_cervical_mri(tmp_path, codes, expected):
    row = classify(tmp_path, procedure="72141", referral_codes=codes, rule_set="standard")
    assert verdict(row)[1] == expected


@pytest.mark.parametrize(
    "code,expected",
    [
        ("C44.91", "early_imaging_no_red_flags"),    # basal/squamous cell skin cancer: not a spine red flag
        ("Z85.828", "early_imaging_no_red_flags"),   # ... nor its history code
        ("C43.9", "red_flag_cancer"), ("Z85.820", "red_flag_cancer"),    # melanoma, and its history
        ("C4A.9", "red_flag_cancer"), ("Z85.821", "red_flag_cancer"),    # Merkel cell carcinoma, and its history
        ("Z85.3", "red_flag_cancer"),
        ("D12.6", "early_imaging_no_red_flags"),     # benign neoplasm
        ("D84.1", "early_imaging_no_red_flags"),     # complement defect (hereditary angioedema)
        ("D84.821", "red_flag_immunosuppression"),   # immunodeficiency due to drugs
        ("Z94.7", "early_imaging_no_red_flags"),     # corneal graft
        ("Z94.4", "red_flag_immunosuppression"),     # liver transplant
        ("R50.83", "early_imaging_no_red_flags"),    # postvaccination fever
        ("R50.9", "red_flag_infection"),
    ],
)
def test_red_flag_value_sets_are_consistent(tmp_path, code, expected):
    row = classify(tmp_path, history=[(10, "ICD10CM", code)], rule_set="standard")
    assert verdict(row)[1] == expected


# --- OP-8 uses only the lists its specification names ---------------------------------------------------------

@pytest.mark.parametrize(
    "care,op8_numerator,conservative_care",
    [
        ((40, "CPT", "99213"), False, True),   # office E&M 28-60 days before: OP-8 conservative therapy
        ((40, "CPT", "99283"), True, False),   # emergency visit: unconfirmed for OP-8, and no trial of therapy
        ((20, "CPT", "98940"), False, True),   # chiropractic manipulation
        ((20, "CPT", "98925"), True, True),    # osteopathic manipulation: care in `standard`, not OP-8
        ((20, "CPT", "97012"), True, False),   # mechanical traction: in no source's list
    ],
)
def test_op8_counts_only_its_named_code_lists(tmp_path, care, op8_numerator, conservative_care):
    row = classify(tmp_path, onset=100, history=[care], rule_set="standard")
    assert row["op8_numerator"] is op8_numerator
    assert row["conservative_care"] is conservative_care


def test_op8_applies_no_unverified_exclusion(tmp_path):
    row = classify(tmp_path, onset=100, referral_codes="M54.50;C79.51;F11.20", rule_set="standard")
    assert row["category"] == "indicated" and row["op8_numerator"] is True


def test_persistent_pain_after_osteopathic_manipulation(tmp_path):
    row = classify(tmp_path, onset=100, history=[(20, "CPT", "98926")], rule_set="standard")
    assert verdict(row) == ("indicated", "persistent_despite_conservative_care")
    assert "osteopathic manipulation 98926" in row["evidence"]


# --- every ICD-10-CM code of the value sets exists in the FY2026 code set -------------------------------------

def _icd_rows():
    for path in sorted(VALUE_SETS.glob("*.csv")):
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if row["code_system"] == "ICD10CM" and len(row["code"].replace(".", "")) >= 3:
                    yield path.name, row["code"]


def test_every_icd10cm_code_in_the_value_sets_exists():
    missing = [f"{name}: {code}" for name, code in _icd_rows() if not icd.is_valid_item(code)]
    assert not missing and len(list(_icd_rows())) > 150, missing


def test_regions_are_declared_for_region_specific_codes():
    rows = [r for p in sorted(VALUE_SETS.glob("*.csv")) for r in csv.DictReader(open(p, encoding="utf-8"))]
    by_concept = {}
    for r in rows:
        by_concept.setdefault(r["concept"], set()).add(r["region"])
    assert by_concept["spinal_trauma"] == {"cervical", "thoracic", "lumbar"}
    assert by_concept["lumbar_surgery"] == {"lumbar"}
    assert "" not in by_concept["disc_herniation"]
