"""The Dagster definitions: they load, cheaply; partitions re-run idempotently; schedule and sensor."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import dagster as dg
import duckdb
import pytest

from assets.partitions import BASELINE_PARTITION, partition_for
from pipelines.definitions import defs
from pipelines.jobs import NIGHTLY_JOB_NAME
from pipelines.schedules import nightly_schedule
from pipelines.sensors import landing_changes, landing_sensor
from tests.conftest import REPO_ROOT, event, referral, run_partition as _run_partition, scan, write_csv

EXPECTED_ASSETS = {
    "referrals", "scans", "clinical_events", "scan_links", "quarantine_report", "mri_classification", "hedis_lbp",
    "classification_export", "utilization_dashboard", "overtreatment_reports", "indication_findings",
    "chart_reviews", "chart_review_results",
    "published_outputs",
}


def test_definitions_load_with_every_asset_schedule_and_sensor():
    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert keys == EXPECTED_ASSETS
    assert [s.name for s in repo.schedule_defs] == ["nightly_schedule"]
    assert [s.name for s in repo.sensor_defs] == ["landing_sensor"]
    assert defs.resolve_job_def(NIGHTLY_JOB_NAME).partitions_def is not None


def test_every_asset_has_a_group_owner_and_description():
    graph = defs.get_repository_def().asset_graph
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.group_name in {"ingest", "quality", "text", "classify", "review", "publish"}, key
        assert node.owners, key
        assert node.description, key


def test_writing_assets_share_the_single_writer_pool():
    graph = defs.get_repository_def().asset_graph
    for key in graph.get_all_asset_keys():
        assert graph.get(key).pools == {"duckdb_writer"}, key


def test_loading_the_definitions_imports_nothing_heavy():
    # `dagster dev` must load the code quickly: DuckDB, pandas, GX and Plotly load only when a step runs.
    code = (
        "import sys, pipelines.definitions; "
        "print(sorted(m for m in ('duckdb','pandas','great_expectations','plotly','pyarrow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "drop_date,expected",
    [(None, BASELINE_PARTITION), ("2025-06-01", "2025-06-01"), ("2019-05-05", BASELINE_PARTITION)],
)
def test_partition_of_a_file(drop_date, expected):
    assert partition_for(drop_date) == expected


def _snapshot(output_dir):
    con = duckdb.connect(str(output_dir / "warehouse.duckdb"), read_only=True)
    try:
        return {
            t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
            for t in ("referrals", "scans", "clinical_events", "quarantine")
        }
    finally:
        con.close()


def test_rerunning_a_partition_replaces_that_day_only(tmp_path):
    landing, out = tmp_path / "landing", tmp_path / "out"
    write_csv(landing / "referrals.csv", [referral()])
    write_csv(landing / "scans.csv", [scan()])
    write_csv(landing / "scans_2025-03-14.csv", [scan(scan_id="S2"), scan(scan_id="S3", scan_date="bad")])
    write_csv(landing / "clinical_events_2025-03-14.csv", [event()])

    _run_partition(landing, out, BASELINE_PARTITION)
    _run_partition(landing, out, "2025-03-14")
    first = _snapshot(out)
    assert sorted(r[0] for r in first["scans"]) == ["S1", "S2"]
    assert len(first["quarantine"]) == 1

    _run_partition(landing, out, "2025-03-14")  # same day again: same warehouse
    assert _snapshot(out) == first

    # The day's drop is corrected and re-delivered: only that day's rows change.
    write_csv(landing / "scans_2025-03-14.csv", [scan(scan_id="S2"), scan(scan_id="S3")])
    _run_partition(landing, out, "2025-03-14")
    second = _snapshot(out)
    assert sorted(r[0] for r in second["scans"]) == ["S1", "S2", "S3"]
    assert second["quarantine"] == []
    assert second["referrals"] == first["referrals"]


def test_schedule_requests_yesterdays_partition():
    context = dg.build_schedule_context(
        scheduled_execution_time=dt.datetime(2025, 3, 15, 2, 0, tzinfo=dt.timezone.utc)
    )
    request = nightly_schedule(context)
    assert request.partition_key == "2025-03-14"


def test_sensor_requests_a_run_per_partition_with_new_or_changed_files(tmp_path):
    write_csv(tmp_path / "scans.csv", [scan()])
    write_csv(tmp_path / "scans_2025-03-14.csv", [scan(scan_id="S2")])
    changed, state = landing_changes(tmp_path, {})
    assert changed == {BASELINE_PARTITION: ["scans.csv"], "2025-03-14": ["scans_2025-03-14.csv"]}
    assert landing_changes(tmp_path, state)[0] == {}

    from assets.resources import LandingResource

    landing = LandingResource(input_dir=str(tmp_path))
    result = landing_sensor(dg.build_sensor_context(cursor=json.dumps(state), resources={"landing": landing}))
    assert not result.run_requests
    write_csv(tmp_path / "referrals_2025-03-15.csv", [referral()])
    result = landing_sensor(dg.build_sensor_context(cursor=json.dumps(state), resources={"landing": landing}))
    assert [r.partition_key for r in result.run_requests] == ["2025-03-15"]
    assert json.loads(result.cursor).keys() == {"scans.csv", "scans_2025-03-14.csv", "referrals_2025-03-15.csv"}
