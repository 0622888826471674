"""The data-quality gate: GX suites find each kind of fault, report counts, write Data Docs, and block."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import duckdb
import pytest

from assets.ingest.linking import build_current_views
from assets.ingest.readers import discover_native_files, ensure_tables, load_file
from assets.quality import expectations
from assets.quality.expectations import CheckOutcome, check_definitions, run_suites
from tests.conftest import event, referral, scan, write_csv

RUN_DATE = "2025-06-30"


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """One warehouse holding one instance of every fault the warning checks look for."""
    folder = tmp_path_factory.mktemp("quality") / "in"
    write_csv(folder / "referrals.csv", [
        referral(referral_id="R1", patient_id="P1"),
        referral(referral_id="R_future", patient_id="P2", referral_date="2025-07-15"),
        referral(referral_id="R_onset", patient_id="P3", symptom_onset_date="2025-03-20"),  # after referral
        referral(referral_id="R_icd", patient_id="P4", diagnosis_codes="M54.50;XYZ99"),
        referral(referral_id="R_spec", patient_id="P5", referring_specialty="acupuncture"),
        referral(referral_id="R_late", patient_id="P6", referral_date="2025-03-20"),
    ])
    write_csv(folder / "scans.csv", [
        scan(scan_id="S1", patient_id="P1", referral_id="R1"),
        scan(scan_id="S_missing_ref", patient_id="P1", referral_id="R_nowhere", scan_date="2025-04-01"),
        scan(scan_id="S_before_ref", patient_id="P6", referral_id="R_late", scan_date="2025-03-10"),
        scan(scan_id="S_prof", patient_id="P7", referral_id="", scan_date="2025-05-01"),
        scan(scan_id="S_fac", patient_id="P7", referral_id="", scan_date="2025-05-01"),  # same study twice
        scan(scan_id="S_minutes", patient_id="P1", referral_id="R1", scan_minutes="900", scan_date="2025-03-06"),
    ])
    write_csv(folder / "clinical_events.csv", [
        event(),
        event(patient_id="P_unknown"),
        event(code="Q99.99.9"),  # not an ICD-10-CM code
        event(event_type="medication", code_system="RXNORM", code="5640", days_supply="400"),
        event(event_date="2026-01-01"),  # after the run date
    ])
    con = duckdb.connect()
    ensure_tables(con)
    for f in discover_native_files(folder):
        load_file(con, f, "2025-01-01")
    build_current_views(con)
    docs = folder.parent / "docs"
    result = {o.name: o for o in run_suites(con, "2025-01-01", "2025-01-01", RUN_DATE, docs)}
    # The same checks with the history validated two rows at a time (as a 100-million-row table is, in parts).
    real = expectations.ROWS_PER_BATCH
    expectations.ROWS_PER_BATCH = 2
    try:
        batched = {o.name: o for o in run_suites(con, "2025-01-01", "2025-01-01", RUN_DATE, folder.parent / "d2")}
    finally:
        expectations.ROWS_PER_BATCH = real
    con.close()
    return result, docs, batched


@pytest.mark.parametrize(
    "check,violated",
    [
        ("referrals__referral_date_not_in_future", 1),
        ("referrals__onset_not_after_referral", 1),
        ("referrals__diagnosis_codes_valid_icd10cm", 1),
        ("referrals__referring_specialty_in_value_set", 1),
        ("scans__named_referral_exists", 1),
        ("scans__scan_not_before_referral", 1),
        ("scans__no_duplicate_study", 2),
        ("scans__scan_minutes_plausible", 1),
        ("clinical_events__patient_known", 1),
        ("clinical_events__diagnosis_code_valid_icd10cm", 1),
        ("clinical_events__days_supply_plausible", 1),
        ("clinical_events__event_date_not_in_future", 1),
    ],
)
def test_each_warning_check_finds_its_fault(outcomes, check, violated):
    result, _, _ = outcomes
    outcome = result[check]
    assert not outcome.passed and not outcome.blocking and outcome.error is None
    assert outcome.violated == violated
    assert outcome.denominator > 0 and outcome.percent == pytest.approx(100 * violated / outcome.denominator, abs=0.01) \
        or outcome.percent > 0


def test_history_validated_in_parts_reports_the_same_counts(outcomes):
    whole, _, batched = outcomes
    assert batched == whole
    assert whole["clinical_events__patient_known"].violated == 1
    assert whole["clinical_events__patient_known"].denominator == 5


def test_critical_checks_pass_on_what_ingestion_let_through(outcomes):
    result, _, _ = outcomes
    critical = [o for o in result.values() if o.blocking]
    assert len(critical) >= 10 and all(o.passed and o.error is None for o in critical)


def test_every_suite_expectation_is_reported(outcomes):
    result, _, _ = outcomes
    assert set(result) == {d.name for d in check_definitions()}


def test_data_docs_are_written(outcomes):
    _, docs, _ = outcomes
    index = (docs / "index.html").read_text()
    for table in ("referrals", "scans", "clinical_events"):
        assert table in index


def test_a_suite_with_an_unknown_expectation_type_is_refused(tmp_path, con):
    for table in ("referrals", "scans", "clinical_events"):
        suite = {"name": table, "expectations": [
            {"type": "expect_column_values_to_be_magic", "kwargs": {"column": "x"},
             "meta": {"check": "magic"}, "severity": "warning"}]}
        (tmp_path / f"{table}.json").write_text(json.dumps(suite))
    ensure_tables(con)
    build_current_views(con)
    with pytest.raises(ValueError, match="not known to GX"):
        run_suites(con, "2025-01-01", "2025-01-01", RUN_DATE, tmp_path / "docs", directory=tmp_path)


def test_a_failed_blocking_check_stops_everything_downstream(tmp_path, monkeypatch, native_input):
    import assets.quality.expectations as expectations
    from pipelines.definitions import defs
    from pipelines.jobs import NIGHTLY_JOB_NAME

    real = expectations.run_suites

    def with_a_failure(*args, **kwargs):
        outcomes = real(*args, **kwargs)
        return [CheckOutcome(**{**o.__dict__, "passed": False, "violated": 1}) if o.name == "scans__scan_id_unique"
                else o for o in outcomes]

    monkeypatch.setattr(expectations, "run_suites", with_a_failure)
    result = defs.resolve_job_def(NIGHTLY_JOB_NAME).execute_in_process(
        partition_key="2025-01-01", instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
        run_config={"resources": {"landing": {"config": {"input_dir": str(native_input)}},
                                  "warehouse": {"config": {"output_dir": str(tmp_path / "out")}}}},
    )
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "scans" in materialized
    assert "scan_links" not in materialized and "mri_classification" not in materialized
    assert not result.success


def test_volume_check_flags_a_drop_far_from_the_trailing_median(tmp_path, con):
    from assets.quality.assets import _volume_outcomes

    ensure_tables(con)
    for i, day in enumerate(["2025-03-01", "2025-03-02", "2025-03-03", "2025-03-04"]):
        n = 10 if i < 3 else 2  # the newest drop has a fifth of the usual rows
        con.executemany(
            "INSERT INTO scans (scan_id, patient_id, scan_date, procedure_code, _load_partition) VALUES (?, 'P', ?, '72148', ?)",
            [[f"S{day}{k}", day, day] for k in range(n)],
        )
    by_table = {o.table: o for o in _volume_outcomes(con, "2025-03-04")}
    assert not by_table["scans"].passed and "2 rows against a median of 10" in by_table["scans"].description
    assert by_table["referrals"].passed  # no history: nothing to compare
    by_table = {o.table: o for o in _volume_outcomes(con, "2025-03-03")}
    assert by_table["scans"].passed is True
