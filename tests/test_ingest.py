"""Ingestion of the native layout: every contract column, required columns, quarantine and reconciliation."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assets.ingest.contract import TABLES
from assets.ingest.readers import (
    InputError,
    discover_native_files,
    ensure_tables,
    load_file,
    preflight_native,
)
from tests.conftest import event, referral, scan, write_csv

FULL_ROWS = {
    "referrals": {
        "row": {
            "referral_id": "R9", "patient_id": "P9", "referral_date": "2025-03-01",
            "requested_procedure_code": "72148", "diagnosis_codes": "M54.16; m5450 ;G83.4",
            "patient_age": "95", "patient_sex": "female", "symptom_onset_date": "2025-01-15",
            "referring_provider_id": "DR7", "referring_specialty": "Primary Care", "care_setting": "outpatient",
            "facility_id": "F03", "clinical_indication": "LBP with L5 radiating pain, 6 weeks",
        },
        "expected": {
            "referral_id": "R9", "patient_id": "P9", "referral_date": dt.date(2025, 3, 1),
            "requested_procedure_code": "72148", "diagnosis_codes": ["M5416", "M5450", "G834"],
            # 95 is stored as 90: "90 or older" (HIPAA Safe Harbor).
            "patient_age": 90, "patient_sex": "F", "symptom_onset_date": dt.date(2025, 1, 15),
            "referring_provider_id": "DR7", "referring_specialty": "primary_care", "care_setting": "outpatient",
            "facility_id": "F03", "clinical_indication": "LBP with L5 radiating pain, 6 weeks",
        },
    },
    "scans": {
        "row": {
            "scan_id": "S9", "patient_id": "P9", "scan_date": "2025-03-10T14:30:00", "procedure_code": "72158",
            "referral_id": "R9", "diagnosis_codes": "C79.51", "facility_id": "F03",
            "findings_category": "Tumor", "scan_minutes": "42",
        },
        "expected": {
            "scan_id": "S9", "patient_id": "P9", "scan_date": dt.date(2025, 3, 10),
            "scan_datetime": dt.datetime(2025, 3, 10, 14, 30), "procedure_code": "72158", "referral_id": "R9",
            "diagnosis_codes": ["C7951"], "facility_id": "F03", "findings_category": "tumor", "scan_minutes": 42,
        },
    },
    "clinical_events": {
        "row": {
            "patient_id": "P9", "event_date": "2025-02-01", "event_type": "medication",
            "code_system": "RxNorm", "code": "8640", "days_supply": "30",
        },
        "expected": {
            "patient_id": "P9", "event_date": dt.date(2025, 2, 1), "event_type": "medication",
            "code_system": "RXNORM", "code": "8640", "days_supply": 30,
        },
    },
}


def _load_one(con, folder, table):
    ensure_tables(con)
    (f,) = [f for f in discover_native_files(folder) if f.table == table]
    return load_file(con, f, "2025-01-01")


@pytest.mark.parametrize("table", sorted(FULL_ROWS))
def test_every_contract_column_is_ingested_typed_and_normalised(tmp_path, con, table):
    case = FULL_ROWS[table]
    write_csv(tmp_path / f"{table}.csv", [case["row"]])
    result = _load_one(con, tmp_path, table)
    assert (result.rows_in, result.rows_loaded, result.rows_quarantined) == (1, 1, 0)
    columns = list(case["expected"])
    got = con.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchone()
    assert dict(zip(columns, got)) == case["expected"]
    # Every contract column is covered by the case above.
    assert set(TABLES[table].names) <= set(columns)


@pytest.mark.parametrize("table", sorted(FULL_ROWS))
def test_parquet_input_gives_the_same_rows_as_csv(tmp_path, con, table):
    case = FULL_ROWS[table]
    pq.write_table(pa.Table.from_pylist([case["row"]]), tmp_path / f"{table}.parquet")
    _load_one(con, tmp_path, table)
    columns = list(case["expected"])
    got = con.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchone()
    assert dict(zip(columns, got)) == case["expected"]


def test_typed_parquet_columns_are_accepted(tmp_path, con):
    rows = pa.table({
        "scan_id": ["S1"], "patient_id": ["P1"], "scan_date": [dt.date(2025, 3, 5)],
        "procedure_code": ["72148"], "scan_minutes": pa.array([30], pa.int32()),
    })
    pq.write_table(rows, tmp_path / "scans.parquet")
    _load_one(con, tmp_path, "scans")
    assert con.execute("SELECT scan_date, scan_minutes FROM scans").fetchone() == (dt.date(2025, 3, 5), 30)


REQUIRED = [(t.name, c) for t in TABLES.values() for c in t.required]


@pytest.mark.parametrize("table,column", REQUIRED)
def test_missing_required_column_is_a_one_line_error_naming_file_and_column(tmp_path, con, table, column):
    review = {"scan_id": "S1", "reviewer_id": "RV1", "review_date": "2025-04-01", "reviewed_category": "indicated"}
    rows = {"referrals": referral(), "scans": scan(), "clinical_events": event(), "chart_reviews": review}[table]
    columns = [c for c in TABLES[table].names if c != column]
    path = write_csv(tmp_path / f"{table}.csv", [rows], columns=columns)
    with pytest.raises(InputError) as err:
        _load_one(con, tmp_path, table)
    message = str(err.value)
    assert str(path) in message and repr(column) in message and "\n" not in message


def test_preflight_names_a_missing_table(tmp_path):
    write_csv(tmp_path / "referrals.csv", [referral()])
    with pytest.raises(InputError, match="no scans file"):
        preflight_native(tmp_path)


def test_semicolon_separated_file_gets_a_hint(tmp_path, con):
    (tmp_path / "scans.csv").write_text("scan_id;patient_id;scan_date;procedure_code\nS1;P1;2025-03-05;72148\n")
    with pytest.raises(InputError, match="not comma-separated"):
        _load_one(con, tmp_path, "scans")


def test_empty_file_is_a_clear_error(tmp_path, con):
    (tmp_path / "scans.csv").write_text("")
    with pytest.raises(InputError, match="empty"):
        _load_one(con, tmp_path, "scans")


def test_non_utf8_file_is_a_clear_error(tmp_path, con):
    (tmp_path / "scans.csv").write_bytes("scan_id,patient_id,scan_date,procedure_code\n".encode("utf-16"))
    with pytest.raises(InputError, match="scans.csv"):
        _load_one(con, tmp_path, "scans")


# One malformed row per kind, mixed with good rows; the quarantine must name each row and reason.
MALFORMED = [
    ("scan_date", "2025-02-30", "scan_date is not an ISO 8601 date"),
    ("scan_date", "05/03/2025", "scan_date is not an ISO 8601 date"),
    ("scan_date", "", "scan_date is missing"),
    ("patient_id", "  ", "patient_id is missing"),
    ("procedure_code", "7214", "procedure_code is not a CPT or HCPCS code"),
    ("scan_minutes", "thirty", "scan_minutes is not a whole number"),
    ("scan_minutes", "30.5", "scan_minutes is not a whole number"),
]


@pytest.mark.parametrize("column,value,reason", MALFORMED)
def test_malformed_row_goes_to_quarantine_and_counts_reconcile(tmp_path, con, column, value, reason):
    rows = [scan(scan_id="S1"), scan(scan_id="S2", **{column: value}), scan(scan_id="S3")]
    write_csv(tmp_path / "scans.csv", rows)
    result = _load_one(con, tmp_path, "scans")
    assert (result.rows_in, result.rows_loaded, result.rows_quarantined) == (3, 2, 1)
    assert con.execute("SELECT list(scan_id ORDER BY scan_id) FROM scans").fetchone()[0] == ["S1", "S3"]
    # Row 3 as a spreadsheet shows it: header row 1, S1 row 2, S2 row 3.
    assert con.execute("SELECT source_file, source_row, table_name, reason FROM quarantine").fetchall() == [
        ("scans.csv", 3, "scans", reason)
    ]


@pytest.mark.parametrize(
    "age,outcome",
    [("-1", "patient_age is outside 0-120"), ("121", "patient_age is outside 0-120"),
     ("forty", "patient_age is not a whole number"), ("0", None), ("120", None)],
)
def test_patient_age_bounds(tmp_path, con, age, outcome):
    write_csv(tmp_path / "referrals.csv", [referral(patient_age=age)])
    result = _load_one(con, tmp_path, "referrals")
    reasons = [r[0] for r in con.execute("SELECT reason FROM quarantine").fetchall()]
    assert reasons == ([outcome] if outcome else [])
    assert result.rows_loaded == (0 if outcome else 1)


@pytest.mark.parametrize(
    "column,value,reason",
    [("event_type", "lab", "event_type is not diagnosis, procedure or medication"),
     ("code_system", "SNOMED", "code_system is not one of ICD10CM, CPT, HCPCS, ICD10PCS, RXNORM"),
     ("code", "", "code is missing")],
)
def test_clinical_event_value_sets_protect_downstream_logic(tmp_path, con, column, value, reason):
    write_csv(tmp_path / "clinical_events.csv", [event(), event(**{column: value})])
    result = _load_one(con, tmp_path, "clinical_events")
    assert (result.rows_loaded, result.rows_quarantined) == (1, 1)
    assert con.execute("SELECT reason FROM quarantine").fetchone()[0] == reason


def test_several_problems_in_one_row_are_all_named(tmp_path, con):
    write_csv(tmp_path / "referrals.csv", [referral(referral_date="yesterday", diagnosis_codes="", patient_age="x")])
    _load_one(con, tmp_path, "referrals")
    reason = con.execute("SELECT reason FROM quarantine").fetchone()[0]
    assert reason.split("; ") == [
        "referral_date is not an ISO 8601 date", "diagnosis_codes is missing", "patient_age is not a whole number",
    ]


def test_unparseable_csv_records_are_quarantined_with_their_line(tmp_path, con):
    header = ",".join(TABLES["scans"].names)
    lines = [
        header,
        "S1,P1,2025-03-05,72148,R1,,,,",
        "S2,P1,2025-03-05,72148",  # too few fields
        "S3,P1,2025-03-05,72148,R1,,,,",
        "S4,P1,2025-03-05,72148,R1,,,,,extra,fields",  # too many
        "S5,P1,2025-03-05,72148,R1,\"M54.50;M54.16\",,,",
    ]
    (tmp_path / "scans.csv").write_text("\n".join(lines) + "\n")
    result = _load_one(con, tmp_path, "scans")
    assert (result.rows_in, result.rows_loaded, result.rows_quarantined) == (5, 3, 2)
    assert con.execute("SELECT source_row FROM quarantine ORDER BY 1").fetchall() == [(3,), (5,)]
    assert con.execute("SELECT scan_id, _source_row FROM scans ORDER BY 1").fetchall() == [
        ("S1", 2), ("S3", 4), ("S5", 6)
    ]


def test_columns_outside_the_contract_never_reach_the_warehouse(tmp_path, con):
    row = referral(patient_name="Jane Example", ssn="123-45-6789")
    write_csv(tmp_path / "referrals.csv", [row], columns=TABLES["referrals"].required + ["patient_name", "ssn"])
    result = _load_one(con, tmp_path, "referrals")
    assert sorted(result.dropped_columns) == ["patient_name", "ssn"]
    columns = {r[0] for r in con.execute("DESCRIBE referrals").fetchall()}
    assert "ssn" not in columns and "patient_name" not in columns
    assert con.execute("SELECT dropped_columns FROM ingest_files").fetchone()[0] == ["patient_name", "ssn"]


def test_several_files_per_table_and_drop_dates_from_file_names(tmp_path):
    write_csv(tmp_path / "scans.csv", [scan()])
    write_csv(tmp_path / "scans_2025-03-14.csv", [scan(scan_id="S2")])
    write_csv(tmp_path / "scans.part0002.csv", [scan(scan_id="S3")])
    (tmp_path / "notes.txt").write_text("not an input")
    found = {(f.name, f.table, f.drop_date) for f in discover_native_files(tmp_path)}
    assert found == {
        ("scans.csv", "scans", None),
        ("scans_2025-03-14.csv", "scans", "2025-03-14"),
        ("scans.part0002.csv", "scans", None),
    }


def test_duplicate_ids_within_a_partition_are_quarantined_first_row_stands(tmp_path, con):
    write_csv(tmp_path / "scans.csv", [scan(scan_id="S1"), scan(scan_id="S2"), scan(scan_id="S1")])
    write_csv(tmp_path / "scans.part0002.csv", [scan(scan_id="S2"), scan(scan_id="S3")])
    ensure_tables(con)
    results = [load_file(con, f, "2025-01-01") for f in discover_native_files(tmp_path)]
    assert [(r.rows_in, r.rows_loaded, r.rows_quarantined) for r in results] == [(3, 2, 1), (2, 1, 1)]
    assert con.execute("SELECT list(scan_id ORDER BY scan_id) FROM scans").fetchone()[0] == ["S1", "S2", "S3"]
    assert con.execute("SELECT source_file, source_row, reason FROM quarantine ORDER BY 1, 2").fetchall() == [
        ("scans.csv", 4, "duplicate scan_id: an earlier row of this file has the same id"),
        ("scans.part0002.csv", 2, "duplicate scan_id: already loaded from another file of this partition"),
    ]


def test_a_record_delivered_again_in_a_later_partition_replaces_the_earlier(tmp_path, con):
    from assets.ingest.linking import build_current_views

    write_csv(tmp_path / "a" / "scans.csv", [scan(scan_id="S1", procedure_code="72148")])
    write_csv(tmp_path / "b" / "scans_2025-03-14.csv", [scan(scan_id="S1", procedure_code="72158")])
    ensure_tables(con)
    load_file(con, discover_native_files(tmp_path / "a")[0], "2025-01-01")
    load_file(con, discover_native_files(tmp_path / "b")[0], "2025-03-14")
    build_current_views(con)
    assert con.execute("SELECT procedure_code FROM scans_current").fetchall() == [("72158",)]


def test_the_same_delivery_twice_changes_no_verdict(tmp_path):
    """A history file delivered again (under another name, and on a later night) is counted, not loaded twice:
    a 25-day NSAID fill read twice would make a 50-day medication trial (42 days count) and change the verdict."""
    import shutil

    import duckdb

    from pipelines.cli import run_audit

    def audit(folder, out):
        run_audit(folder, out, rule_sets=["standard"], quiet=True)
        c = duckdb.connect(str(out / "warehouse.duckdb"), read_only=True)
        try:
            verdict = c.execute("SELECT category, reasons, conservative_care FROM mri_classification").fetchone()
            files = c.execute(
                "SELECT source_file, rows_in, rows_loaded, rows_repeated, repeats_file FROM ingest_files "
                "WHERE table_name = 'clinical_events' ORDER BY load_partition, source_file").fetchall()
        finally:
            c.close()
        return verdict, files

    once = tmp_path / "once"
    write_csv(once / "referrals.csv", [referral(referral_date="2025-06-20", symptom_onset_date="2025-03-01")])
    write_csv(once / "scans.csv", [scan(scan_date="2025-06-23")])
    write_csv(once / "clinical_events.csv", [
        event(event_date="2025-05-01", event_type="medication", code_system="RXNORM", code="5640", days_supply="25"),
    ])
    twice = tmp_path / "twice"
    shutil.copytree(once, twice)
    shutil.copy(twice / "clinical_events.csv", twice / "clinical_events_resent.csv")
    shutil.copy(twice / "clinical_events.csv", twice / "clinical_events_2025-06-22.csv")
    single, _ = audit(once, tmp_path / "out_once")
    repeated, files = audit(twice, tmp_path / "out_twice")
    assert single == repeated and single[2] is False
    loaded = [f for f in files if f[2] > 0]
    repeats = [f for f in files if f[3] > 0]
    assert len(loaded) == 1 and len(repeats) == 2
    assert all(f[1] == f[3] == 1 and f[4] == loaded[0][0] for f in repeats)
