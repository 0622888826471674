"""Shared fixtures: small native inputs written row by row, and a warehouse connection."""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb
import pytest

from assets.ingest.contract import TABLES

REPO_ROOT = Path(__file__).resolve().parents[1]


def write_csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    """Write rows as a contract CSV; `columns` defaults to the table's contract columns."""
    table = path.name.split(".")[0].split("_2")[0]
    if columns is None:
        columns = TABLES[table].names if table in TABLES else list(rows[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})
    return path


def referral(**overrides) -> dict:
    row = {
        "referral_id": "R1", "patient_id": "P1", "referral_date": "2025-03-01",
        "requested_procedure_code": "72148", "diagnosis_codes": "M54.50", "patient_age": "44",
    }
    row.update(overrides)
    return row


def scan(**overrides) -> dict:
    row = {
        "scan_id": "S1", "patient_id": "P1", "scan_date": "2025-03-05", "procedure_code": "72148",
        "referral_id": "R1",
    }
    row.update(overrides)
    return row


def event(**overrides) -> dict:
    row = {
        "patient_id": "P1", "event_date": "2025-02-20", "event_type": "diagnosis",
        "code_system": "ICD10CM", "code": "M54.50",
    }
    row.update(overrides)
    return row


@pytest.fixture
def con():
    connection = duckdb.connect()
    yield connection
    connection.close()


@pytest.fixture
def native_input(tmp_path):
    """A minimal valid native input folder: one referral, one scan, one history event."""
    folder = tmp_path / "input"
    write_csv(folder / "referrals.csv", [referral()])
    write_csv(folder / "scans.csv", [scan()])
    write_csv(folder / "clinical_events.csv", [event()])
    return folder


def run_partition(input_dir, output_dir, partition):
    """The nightly job for one partition, as the schedule runs it; returns the Dagster result."""
    import dagster as dg

    from pipelines.definitions import defs
    from pipelines.jobs import NIGHTLY_JOB_NAME

    job = defs.resolve_job_def(NIGHTLY_JOB_NAME)
    result = job.execute_in_process(
        partition_key=partition,
        instance=dg.DagsterInstance.ephemeral(),
        run_config={"resources": {
            "landing": {"config": {"input_dir": str(input_dir)}},
            "warehouse": {"config": {"output_dir": str(output_dir)}},
        }},
    )
    assert result.success
    return result


def pytest_configure(config):
    """Pseudonymization keys made during the tests go to a scratch folder, not the user's configuration folder
    (set in the environment, so the CLI runs the tests start inherit it)."""
    import os
    import tempfile

    from assets.ingest.identifiers import KEY_FILE_ENV

    os.environ.setdefault(KEY_FILE_ENV, str(Path(tempfile.mkdtemp(prefix="imaging-audit-key-")) / "pseudonym.key"))
