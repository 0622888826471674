"""Quality stage: the quarantine and the per-file reconciliation, published under `quality/`."""


import dagster as dg

from assets.ingest.assets import WRITER_POOL, clinical_events, referrals, scans
from assets.resources import WarehouseResource

GROUP = "quality"
OWNERS = ["team:data-engineering"]


@dg.asset(
    group_name=GROUP,
    owners=OWNERS,
    kinds={"duckdb", "csv"},
    deps=[referrals, scans, clinical_events],
    pool=WRITER_POOL,
)
def quarantine_report(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """`quality/quarantine.csv` (source file, source row, table, reason: every row kept out of the warehouse),
    `quality/reconciliation.csv` (per file: rows in = rows loaded + rows quarantined) and
    `quality/privacy_findings.csv` (identifier-like values masked or quarantined, counts only)."""
    from assets.ingest.readers import ensure_tables
    from assets.publish.files import copy_query_to_csv

    quality_dir = warehouse.root / "quality"
    with warehouse.connect() as con:
        ensure_tables(con)
        quarantined = copy_query_to_csv(
            con,
            "SELECT source_file, source_row, table_name AS \"table\", reason, stage, load_partition "
            "FROM quarantine ORDER BY table_name, source_file, source_row",
            quality_dir / "quarantine.csv",
        )
        copy_query_to_csv(
            con,
            "SELECT source_file, table_name AS \"table\", load_partition, rows_in, rows_loaded, rows_quarantined, "
            "rows_in = rows_loaded + rows_quarantined AS reconciled, array_to_string(dropped_columns, ';') "
            "AS dropped_columns FROM ingest_files ORDER BY table_name, source_file",
            quality_dir / "reconciliation.csv",
        )
        copy_query_to_csv(
            con,
            "SELECT source_file, table_name AS \"table\", column_name, kind, action, sum(rows) AS rows "
            "FROM privacy_findings GROUP BY ALL ORDER BY ALL",
            quality_dir / "privacy_findings.csv",
        )
        unreconciled = con.execute(
            "SELECT count(*) FROM ingest_files WHERE rows_in <> rows_loaded + rows_quarantined"
        ).fetchone()[0]
        by_reason = con.execute(
            "SELECT reason, count(*) FROM quarantine GROUP BY ALL ORDER BY 2 DESC LIMIT 10"
        ).fetchall()
    return dg.MaterializeResult(
        metadata={
            "rows_quarantined": dg.MetadataValue.int(quarantined),
            "files_unreconciled": dg.MetadataValue.int(unreconciled),
            "top_reasons": dg.MetadataValue.md(
                "\n".join(f"- {reason}: {n:,}" for reason, n in by_reason) or "none"
            ),
        }
    )


@dg.asset_check(asset=quarantine_report, blocking=True, description="Every row of every file is either loaded or quarantined.")
def rows_reconcile(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connect(read_only=True) as con:
        bad = con.execute(
            "SELECT source_file, rows_in, rows_loaded, rows_quarantined FROM ingest_files "
            "WHERE rows_in <> rows_loaded + rows_quarantined"
        ).fetchall()
        files = con.execute("SELECT count(*) FROM ingest_files").fetchone()[0]
    return dg.AssetCheckResult(
        passed=not bad,
        metadata={"files": files, "files_unreconciled": len(bad), "examples": str(bad[:5])},
    )


quality_assets = [quarantine_report]
quality_checks = [rows_reconcile]
