"""Nightly runs recompute only the patients a day's files touch, and end exactly where a full rebuild would."""

from __future__ import annotations

import datetime as dt
import shutil

import duckdb
import pytest

from assets.classify.assets import classify_scans
from assets.classify.measures import build_hedis_lbp
from assets.classify.rule_sets import load_rule_sets
from assets.classify.value_sets import load_value_sets
from assets.ingest.changes import ensure_change_tables, mark_consumed, pending_changes
from assets.ingest.linking import build_scan_links
from assets.partitions import BASELINE_PARTITION
from data_samples.generate import generate
from tests.conftest import event, run_partition, write_csv

DERIVED_TABLES = {
    "referrals_current": "SELECT * FROM referrals_current ORDER BY ALL",
    "scans_current": "SELECT * FROM scans_current ORDER BY ALL",
    "scan_links": "SELECT * FROM scan_links ORDER BY ALL",
    "mri_classification": "SELECT * FROM mri_classification ORDER BY ALL",
    "scan_features": "SELECT * FROM scan_features ORDER BY ALL",
    "hedis_lbp": "SELECT * FROM hedis_lbp ORDER BY ALL",
}


def _run(landing, out, partition):
    """The nightly job for one partition; the classification's and the measure's materialization metadata."""
    result = run_partition(landing, out, partition)
    meta = {}
    for e in result.get_asset_materialization_events():
        m = e.materialization
        if m.asset_key.path[-1] in ("mri_classification", "hedis_lbp"):
            meta[m.asset_key.path[-1]] = {k: v.value for k, v in m.metadata.items()}
    return meta


def _derived(path):
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {name: con.execute(sql).fetchall() for name, sql in DERIVED_TABLES.items()}
    finally:
        con.close()


def _full_rebuild(warehouse, tmp_path):
    """The same warehouse classified and measured from scratch."""
    copy = tmp_path / "full.duckdb"
    shutil.copy(warehouse, copy)
    con = duckdb.connect(str(copy))
    try:
        build_scan_links(con)
        rule_sets = load_rule_sets()
        result = classify_scans(con, rule_sets, full_refresh=True)
        assert result["mode"] == "full"
        load_value_sets(con)
        build_hedis_lbp(con, next(r for r in rule_sets if r.name == "standard").parameters)
    finally:
        con.close()
    return _derived(copy)


@pytest.mark.slow
def test_nightly_days_are_incremental_and_equal_a_full_rebuild(tmp_path):
    landing, out = tmp_path / "landing", tmp_path / "out"
    generate(landing, n_scans=1500, seed=31, drop_days=2)
    days = sorted({p.stem.split("_")[-1] for p in landing.glob("scans_*.csv")})
    assert len(days) == 2

    first = _run(landing, out, BASELINE_PARTITION)
    assert first["mri_classification"]["mode"].startswith("full")

    for day in days:
        meta = _run(landing, out, day)
        # Only the day's patients were reclassified, and the result is what a rebuild gives.
        assert meta["mri_classification"]["mode"].startswith("incremental")
        assert 0 < meta["mri_classification"]["scans_classified"] < 300
        assert _derived(out / "warehouse.duckdb") == _full_rebuild(out / "warehouse.duckdb", tmp_path)

    # A corrected re-delivery of the last day removes a patient's history rows: that patient is recomputed too.
    events = landing / f"clinical_events_{days[-1]}.csv"
    lines = events.read_text().splitlines()
    assert len(lines) >= 2
    events.write_text(lines[0] + "\n")
    meta = _run(landing, out, days[-1])
    assert meta["mri_classification"]["mode"].startswith("incremental")
    assert _derived(out / "warehouse.duckdb") == _full_rebuild(out / "warehouse.duckdb", tmp_path)

    # Nothing loaded since: the classification has nothing to do and keeps every row.
    before = _derived(out / "warehouse.duckdb")
    con = duckdb.connect(str(out / "warehouse.duckdb"))
    result = classify_scans(con, load_rule_sets())
    con.close()
    assert (result["mode"], result["scans_classified"]) == ("incremental", 0)
    assert _derived(out / "warehouse.duckdb") == before


def test_new_history_for_one_patient_changes_only_that_patient(tmp_path):
    landing, out = tmp_path / "landing", tmp_path / "out"
    generate(landing, n_scans=300, seed=8)
    _run(landing, out, BASELINE_PARTITION)
    con = duckdb.connect(str(out / "warehouse.duckdb"), read_only=True)
    patient, scan_date, before = con.execute(
        """SELECT patient_id, scan_date, category FROM mri_classification
           WHERE rule_set = 'standard' AND category = 'potentially_unnecessary'
             AND reasons = 'early_imaging_no_red_flags' ORDER BY scan_id LIMIT 1"""
    ).fetchall()[0]
    others = con.execute(
        "SELECT * FROM mri_classification WHERE patient_id <> ? ORDER BY ALL", [patient]
    ).fetchall()
    con.close()
    # A late-arriving history row: cancer coded a week before the scan makes the MRI indicated.
    write_csv(landing / "clinical_events_2025-06-01.csv", [
        event(patient_id=patient, event_date=str(scan_date - dt.timedelta(days=7)),
              code="C79.51"),
    ])
    meta = _run(landing, out, "2025-06-01")
    assert meta["mri_classification"]["scans_classified"] == 1
    con = duckdb.connect(str(out / "warehouse.duckdb"), read_only=True)
    after = con.execute(
        "SELECT category, reasons FROM mri_classification WHERE patient_id = ? AND rule_set = 'standard'", [patient]
    ).fetchall()
    assert after == [("indicated", "red_flag_cancer")] and before == "potentially_unnecessary"
    assert con.execute(
        "SELECT * FROM mri_classification WHERE patient_id <> ? ORDER BY ALL", [patient]
    ).fetchall() == others
    con.close()


@pytest.mark.parametrize("case, expected_full, why", [
    ("first_run", True, "first run"),
    ("same_signature", False, "patient(s) changed"),
    ("new_signature", True, "changed since the last run"),
    ("tables_missing", True, "output tables missing"),
    ("forced", True, "full refresh requested"),
])
def test_when_a_consumer_rebuilds_everything(con, case, expected_full, why):
    ensure_change_tables(con)
    con.execute("CREATE TABLE scans (patient_id VARCHAR, _load_partition VARCHAR)")
    con.execute("INSERT INTO scans SELECT 'P' || i, 'baseline' FROM range(100) t(i)")
    if case != "first_run":
        mark_consumed(con, "c", "sig-a", 0)
    con.execute("INSERT INTO scans VALUES ('P1', '2025-06-01')")
    con.execute("INSERT INTO ingest_changes VALUES (1, 'scans', '2025-06-01', '2025-06-01', now())")
    pending = pending_changes(
        con, "c", "sig-b" if case == "new_signature" else "sig-a",
        tables_present=case != "tables_missing", force_full=case == "forced",
    )
    assert pending.full is expected_full and why in pending.why
    assert pending.last_change == 1
    if not expected_full:
        assert pending.patients == 1


def test_changes_touching_most_patients_rebuild_everything(con, monkeypatch):
    from assets.ingest import changes

    monkeypatch.setattr(changes, "FULL_REBUILD_MIN_PATIENTS", 10)
    ensure_change_tables(con)
    con.execute("CREATE TABLE scans (patient_id VARCHAR, _load_partition VARCHAR)")
    con.execute("INSERT INTO scans SELECT 'P' || i, CASE WHEN i < 30 THEN 'd2' ELSE 'd1' END FROM range(100) t(i)")
    mark_consumed(con, "c", "s", 0)
    con.execute("INSERT INTO ingest_changes VALUES (1, 'scans', 'd2', 'd2', now())")
    pending = pending_changes(con, "c", "s", tables_present=True)
    assert pending.full and "30 of 100 patients" in pending.why


def test_a_scan_naming_another_patients_referral_is_relinked_and_reclassified(tmp_path):
    from tests.conftest import referral, scan

    landing, out = tmp_path / "landing", tmp_path / "out"
    write_csv(landing / "referrals.csv", [referral(referral_id="R_A", patient_id="A")])
    write_csv(landing / "scans.csv", [scan(scan_id="S_A", patient_id="A", referral_id="R_B")])
    write_csv(landing / "clinical_events.csv", [event(patient_id="A")])
    # Patient B's referral arrives in a nightly drop; A's scan names it (a data error the links must follow).
    write_csv(landing / "referrals_2025-06-01.csv", [
        referral(referral_id="R_B", patient_id="B", diagnosis_codes="C79.51", referral_date="2025-03-02"),
    ])
    _run(landing, out, BASELINE_PARTITION)
    _run(landing, out, "2025-06-01")
    link = "SELECT link_method, referral_id FROM scan_links WHERE scan_id = 'S_A'"
    verdict = "SELECT reasons FROM mri_classification WHERE scan_id = 'S_A' AND rule_set = 'standard'"
    con = duckdb.connect(str(out / "warehouse.duckdb"), read_only=True)
    assert con.execute(link).fetchall() == [("explicit", "R_B")]
    assert con.execute(verdict).fetchall() == [("red_flag_cancer",)]
    con.close()

    # The drop is re-delivered without that referral: A's scan falls back to A's own referral.
    write_csv(landing / "referrals_2025-06-01.csv", [referral(referral_id="R_C", patient_id="C")])
    meta = _run(landing, out, "2025-06-01")
    assert meta["mri_classification"]["mode"].startswith("incremental")
    con = duckdb.connect(str(out / "warehouse.duckdb"), read_only=True)
    assert con.execute(link).fetchall() == [("inferred_90d", "R_A")]
    assert con.execute(verdict).fetchall() != [("red_flag_cancer",)]
    con.close()
    assert _derived(out / "warehouse.duckdb") == _full_rebuild(out / "warehouse.duckdb", tmp_path)
