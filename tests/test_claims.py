"""Claims extracts (Tuva input layer): the two demo snapshots end to end, and the conversion's rules."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import duckdb
import pytest

from assets.ingest.claims import convert_claims
from assets.ingest.readers import InputError, detect_format
from pipelines.cli import run_audit

# Vendored, trimmed to the patients with spine imaging (fixtures/tuva-demo-synthetic-claims/README.md).
TUVA = Path(__file__).resolve().parent / "fixtures" / "tuva-demo-synthetic-claims"
SNAPSHOTS = {"2022-12-13_commit-0e4363b": 15, "2023-05-09_commit-88f8ce5": 6}  # lumbar MRI events (README)


@pytest.fixture(scope="module", params=sorted(SNAPSHOTS))
def snapshot_run(request, tmp_path_factory):
    source = TUVA / request.param
    folder = tmp_path_factory.mktemp("claims") / "in"
    shutil.copytree(source, folder)
    out = folder.parent / "out"
    run_audit(folder, out, quiet=True)
    con = duckdb.connect(str(out / "warehouse.duckdb"), read_only=True)
    yield request.param, folder, out, con
    con.close()


def test_auto_detects_the_claims_layout(snapshot_run):
    _, folder, _, _ = snapshot_run
    assert detect_format(folder) == "claims"


def test_every_lumbar_mri_event_is_classified_exactly_once_per_rule_set(snapshot_run):
    name, _, _, con = snapshot_run
    rows = con.execute("""SELECT rule_set, count(*), count(DISTINCT scan_id) FROM mri_classification
                          WHERE body_region = 'lumbar' GROUP BY 1 ORDER BY 1""").fetchall()
    assert rows == [("acr-2021", SNAPSHOTS[name], SNAPSHOTS[name]), ("standard", SNAPSHOTS[name], SNAPSHOTS[name])]


def test_professional_and_facility_lines_make_one_scan(snapshot_run):
    name, folder, _, con = snapshot_run
    lines = duckdb.connect().execute(
        f"""SELECT count(*) FROM read_csv('{folder / 'medical_claim.csv'}', all_varchar=true)
            WHERE hcpcs_code IN ('72148', '72149', '72158')""").fetchall()[0][0]
    scans = con.execute("SELECT count(*) FROM scans WHERE procedure_code IN ('72148', '72149', '72158')").fetchall()[0][0]
    assert lines > scans == SNAPSHOTS[name]  # 23 lines -> 15 scans; 9 lines -> 6 scans


def test_names_addresses_phones_and_birth_dates_never_reach_the_outputs(snapshot_run):
    _, folder, out, _ = snapshot_run
    with open(folder / "eligibility.csv", newline="") as fh:
        people = list(csv.DictReader(fh))
    needles = {p[c] for p in people for c in ("first_name", "last_name", "address", "phone", "birth_date")
               if p.get(c) and len(p[c]) > 3}
    assert any(p["birth_date"] for p in people)
    for path in (p for p in out.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for needle in needles:
            assert needle.encode() not in data, f"{needle} in {path.name}"


# Hand-checked verdicts (standard rule set), with the reasoning a clinician would accept from the codes.
HAND_CHECKED = {
    # History of prostate cancer (Z85.46) coded on the MRI claim itself: a red flag.
    "CLM-S-10053-20180429-lumbar": ("indicated", "red_flag_cancer"),
    # Lumbar fusion (CPT 22633) three months before, arthrodesis status Z98.1: ACR variant 5.
    "CLM-S-10114-20180426-lumbar": ("indicated", "prior_lumbar_surgery"),
    # Urinary incontinence (R32) coded two months before, with osteoporosis: cauda equina signs come first.
    "CLM-S-10243-20180418-lumbar": ("indicated", "red_flag_cauda_equina"),
    # Lumbar spondylosis (M47.816) first coded the day of the MRI, nothing else: early imaging.
    "CLM-S-10400-20180219-lumbar": ("potentially_unnecessary", "early_imaging_no_red_flags"),
    # Sciatica (M54.41) coded 112 days before, no red flag, no PT/chiropractic or E&M in the OP-8 windows.
    "CLM-S-13094-20180519-lumbar": ("potentially_unnecessary", "no_conservative_care"),
    # Breast cancer (C50.412) on the imaging claim: a red flag.
    "CLM-S-10408-20180814-lumbar": ("indicated", "red_flag_cancer"),
    # Radiculopathy (M54.16) on the imaging claim; osteoporosis (M81.0) in the history comes first.
    "CLM-S-12697-20180311-lumbar": ("indicated", "red_flag_fracture_risk"),
    # Thoracolumbar disc displacement (M51.25) on the imaging claim: the brief's suspected herniation.
    "CLM-S-121-20180818-lumbar": ("indicated", "suspected_disc_herniation"),
}


def test_hand_checked_verdicts(snapshot_run):
    _, _, _, con = snapshot_run
    got = dict(((s, (c, r.split(";")[0])) for s, c, r in con.execute(
        "SELECT scan_id, category, reasons FROM mri_classification WHERE rule_set = 'standard'").fetchall()))
    checked = {k: v for k, v in HAND_CHECKED.items() if k in got}
    assert checked, "none of the hand-checked scans is in this snapshot"
    for scan_id, expected in checked.items():
        assert got[scan_id] == expected, scan_id


def test_every_claim_line_is_accounted_for(tmp_path):
    source = TUVA / "2023-05-09_commit-88f8ce5"
    summary = convert_claims(source, tmp_path / "native")
    for name, counts in summary["files"].items():
        assert counts["rows_in"] == counts["rows_used"] + sum(counts["rows_skipped"].values()), name
    assert summary["files"]["medical_claim.csv"]["rows_in"] == 2025  # the vendored copy (6,075 upstream)
    assert summary["files"]["pharmacy_claim.csv"]["rows_used"] == 0  # NDC: no crosswalk, reported as skipped


def test_a_claims_extract_without_a_required_column_is_one_line(tmp_path):
    (tmp_path / "medical_claim.csv").write_text("claim_id,patient_id,claim_start_date\n1,2,2018-01-01\n")
    with pytest.raises(InputError, match="medical_claim.csv: missing required column 'hcpcs_code'"):
        convert_claims(tmp_path, tmp_path / "native")
