"""Scan-to-referral linking (docs/data-contract.md §2a, "scans") and the scope decisions of `mri_classification`."""

from __future__ import annotations

import pytest

from assets.classify.assets import classify_scans
from assets.classify.rule_sets import load_rule_sets
from assets.ingest.linking import build_scan_links
from assets.ingest.readers import discover_native_files, ensure_tables, load_file
from tests.conftest import event, referral, scan, write_csv


def _load(con, folder):
    ensure_tables(con)
    for f in discover_native_files(folder):
        load_file(con, f, "2025-01-01")
    build_scan_links(con)


def _link(con, scan_id="S1"):
    return con.execute(
        "SELECT referral_id, link_method, body_region FROM scan_links WHERE scan_id = ?", [scan_id]
    ).fetchone()


@pytest.mark.parametrize(
    "referral_date,expected",
    [
        ("2025-03-10", ("R1", "inferred_90d", "lumbar")),  # same day
        ("2024-12-10", ("R1", "inferred_90d", "lumbar")),  # 90 days before: inside the window
        ("2024-12-09", (None, "none", "lumbar")),  # 91 days before: outside
        ("2025-03-11", (None, "none", "lumbar")),  # after the scan
    ],
)
def test_inferred_link_window_is_0_to_90_days(tmp_path, con, referral_date, expected):
    write_csv(tmp_path / "referrals.csv", [referral(referral_date=referral_date)])
    write_csv(tmp_path / "scans.csv", [scan(scan_date="2025-03-10", referral_id="")])
    _load(con, tmp_path)
    assert _link(con) == expected


def test_explicit_link_wins_even_outside_the_window(tmp_path, con):
    write_csv(tmp_path / "referrals.csv", [referral(referral_date="2024-01-01")])
    write_csv(tmp_path / "scans.csv", [scan(scan_date="2025-03-10", referral_id="R1")])
    _load(con, tmp_path)
    assert _link(con) == ("R1", "explicit", "lumbar")


def test_latest_referral_for_the_same_region_is_chosen(tmp_path, con):
    write_csv(tmp_path / "referrals.csv", [
        referral(referral_id="R_old", referral_date="2025-02-01"),
        referral(referral_id="R_new", referral_date="2025-03-01"),
        referral(referral_id="R_neck", referral_date="2025-03-05", requested_procedure_code="72141"),
        referral(referral_id="R_other_patient", patient_id="P2", referral_date="2025-03-06"),
    ])
    write_csv(tmp_path / "scans.csv", [scan(scan_date="2025-03-10", referral_id="")])
    _load(con, tmp_path)
    assert _link(con) == ("R_new", "inferred_90d", "lumbar")


def test_a_named_referral_that_does_not_exist_falls_back_to_the_rule(tmp_path, con):
    write_csv(tmp_path / "referrals.csv", [referral(referral_id="R1", referral_date="2025-03-01")])
    write_csv(tmp_path / "scans.csv", [scan(scan_date="2025-03-10", referral_id="R_missing")])
    _load(con, tmp_path)
    assert _link(con) == ("R1", "inferred_90d", "lumbar")
    assert con.execute("SELECT named_referral_missing FROM scan_links").fetchone()[0] is True


def test_non_spine_scans_link_only_to_an_order_for_the_same_procedure(tmp_path, con):
    write_csv(tmp_path / "referrals.csv", [
        referral(referral_id="R_knee", requested_procedure_code="73721", referral_date="2025-03-01"),
        referral(referral_id="R_brain", requested_procedure_code="70551", referral_date="2025-03-02"),
    ])
    write_csv(tmp_path / "scans.csv", [scan(procedure_code="73721", referral_id="", scan_date="2025-03-10")])
    _load(con, tmp_path)
    assert _link(con) == ("R_knee", "inferred_90d", "other")


@pytest.mark.parametrize(
    "code,region",
    [("72141", "cervical"), ("72142", "cervical"), ("72156", "cervical"),
     ("72146", "thoracic"), ("72147", "thoracic"), ("72157", "thoracic"),
     ("72148", "lumbar"), ("72149", "lumbar"), ("72158", "lumbar"),
     ("72131", "other"), ("70551", "other")],
)
def test_body_region_of_every_scope_code(tmp_path, con, code, region):
    write_csv(tmp_path / "referrals.csv", [referral()])
    write_csv(tmp_path / "scans.csv", [scan(procedure_code=code)])
    _load(con, tmp_path)
    assert _link(con)[2] == region


def _classify(con):
    classify_scans(con, load_rule_sets(["standard"]))
    return con.execute(
        "SELECT scan_id, category, reasons FROM mri_classification ORDER BY scan_id"
    ).fetchall()


def test_no_indication_only_when_nothing_indicates_the_scan(tmp_path, con):
    write_csv(tmp_path / "referrals.csv", [referral(referral_id="R1", patient_id="P1")])
    write_csv(tmp_path / "scans.csv", [
        scan(scan_id="S_brain", patient_id="P1", procedure_code="70551", referral_id=""),
        scan(scan_id="S_linked", patient_id="P1", referral_id="R1"),  # the referral's codes indicate it
        scan(scan_id="S_bare", patient_id="P2", referral_id=""),  # nothing to judge it by
        scan(scan_id="S_codes", patient_id="P3", referral_id="", diagnosis_codes="M54.50"),  # own codes
        scan(scan_id="S_history", patient_id="P4", referral_id=""),  # back pain in the history
    ])
    write_csv(tmp_path / "clinical_events.csv", [event(patient_id="P4", event_date="2025-01-10")])
    _load(con, tmp_path)
    got = dict((s, (c, r)) for s, c, r in _classify(con))
    assert got["S_brain"] == ("out_of_scope", "not_spine_mri")
    assert got["S_bare"] == ("insufficient_information", "no_indication")
    for scan_id in ("S_linked", "S_codes", "S_history"):
        assert got[scan_id][1] != "no_indication", scan_id


def test_every_rule_set_gets_a_row_per_decided_scan(tmp_path, con):
    write_csv(tmp_path / "referrals.csv", [referral()])
    write_csv(tmp_path / "scans.csv", [scan(procedure_code="70551", referral_id="")])
    _load(con, tmp_path)
    rule_sets = load_rule_sets()
    classify_scans(con, rule_sets)
    got = con.execute("SELECT rule_set, rule_set_version FROM mri_classification ORDER BY 1").fetchall()
    assert len(rule_sets) >= 2
    assert got == sorted((r.name, r.version) for r in rule_sets)


def test_unknown_rule_set_is_named(tmp_path):
    with pytest.raises(ValueError, match="unknown rule set nope"):
        load_rule_sets(["nope"])
