"""Ingest stage: landing files -> typed warehouse tables, quarantine, and scan-to-referral links."""


import time
import warnings

import dagster as dg

from assets.ingest.contract import PATIENT_TABLES, TABLES
from assets.partitions import daily_partitions, partition_for
from assets.resources import LandingResource, WarehouseResource, relation_kind
from assets.transactions import rollback_after_failure

GROUP = "ingest"
OWNERS = ["team:data-engineering"]
WRITER_POOL = "duckdb_writer"


def _partition_bounds(context: dg.AssetExecutionContext) -> tuple[str, str]:
    keys = context.partition_keys
    return min(keys), max(keys)


def _ingest_table(
    context: dg.AssetExecutionContext, table: str, landing: LandingResource, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    import os

    from assets.ingest import identifiers
    from assets.ingest.changes import begin_change
    from assets.ingest.readers import (
        FileResult,
        detect_format,
        discover_native_files,
        ensure_tables,
        file_sha256,
        ignored_native_files,
        load_file,
        native_source_dir,
        record_repeated_file,
    )

    from assets.quality.expectations import warm_up_in_background

    warm_up_in_background()  # the quality gate runs next; its library loads while this step works
    first, last = _partition_bounds(context)
    fmt = detect_format(landing.path, landing.input_format)
    # Claims and FHIR exports are converted to the native layout first (once for all three tables).
    source_dir = native_source_dir(landing.path, fmt, warehouse.root)
    if fmt != "native" and table == "scans":  # the conversion is shared: report it once
        import json

        summary = json.loads((source_dir / ".summary.json").read_text())
        for name, counts in summary.get("files", {}).items():
            skipped = {k: v for k, v in counts.get("rows_skipped", {}).items() if v}
            context.log.info(
                f"{name}: {counts['rows_in']:,} rows in, {counts['rows_used']:,} used"
                + (f", skipped: {skipped}" if skipped else "")
            )
    files = [
        f for f in discover_native_files(source_dir)
        if f.table == table and first <= partition_for(f.drop_date) <= last
    ]
    started = time.perf_counter()
    results = []
    key = os.environ.get(identifiers.PSEUDONYM_KEY_ENV, "")
    with warehouse.connect() as con:
        ensure_tables(con)
        if key:
            identifiers.set_pseudonym_key(con, key)
            context.log.info(
                f"ids ({', '.join(sorted(identifiers.PSEUDONYM_COLUMNS))}) are stored as keyed hashes (HMAC-SHA256)"
            )
        con.execute("BEGIN TRANSACTION")
        try:
            # Downstream steps recompute only the patients this load touches (assets/ingest/changes.py); a
            # chart review changes no verdict, only its review status (assets/review/).
            if table in PATIENT_TABLES:
                begin_change(con, table, first, last)
            # Idempotent re-runs: forget what these partitions loaded before, then load their files again.
            con.execute(f"DELETE FROM {table} WHERE _load_partition BETWEEN ? AND ?", [first, last])
            con.execute(
                "DELETE FROM quarantine WHERE table_name = ? AND stage IN ('read', 'ingest') "
                "AND load_partition BETWEEN ? AND ?",
                [table, first, last],
            )
            for bookkeeping in ("ingest_files", "privacy_findings"):
                con.execute(
                    f"DELETE FROM {bookkeeping} WHERE table_name = ? AND load_partition BETWEEN ? AND ?",
                    [table, first, last],
                )
            if table == "scans":  # files no table reads: named once per load, never skipped silently
                con.execute("DELETE FROM ignored_files WHERE load_partition BETWEEN ? AND ?", [first, last])
                for name, reason in ignored_native_files(source_dir):
                    shown = identifiers.mask_file_name(con, name)
                    con.execute("INSERT INTO ignored_files VALUES (?, ?, ?)", [shown, reason, last])
                    context.log.warning(f"{shown}: not read ({reason})")
            for f in files:
                partition = partition_for(f.drop_date)
                digest = file_sha256(f.path)
                earlier = con.execute(
                    "SELECT min(source_file) FROM ingest_files WHERE table_name = ? AND content_sha256 = ?",
                    [table, digest],
                ).fetchone()[0]
                if earlier is not None:
                    rows = record_repeated_file(con, f, partition, digest, earlier)
                    results.append(FileResult(identifiers.mask_file_name(con, f.path.name), table, rows, 0, 0))
                    context.log.warning(
                        f"{results[-1].source_file}: repeats {earlier} (same content); its {rows:,} rows are "
                        "not loaded again"
                    )
                    continue
                result = load_file(con, f, partition, pseudonymize=bool(key), content_sha256=digest)
                results.append(result)
                context.log.info(
                    f"{result.source_file}: {result.rows_in:,} rows in, {result.rows_loaded:,} loaded, "
                    f"{result.rows_quarantined:,} quarantined"
                )
                findings = con.execute(
                    """SELECT action, column_name, string_agg(kind || ' ' || rows, ', ' ORDER BY kind), sum(rows)
                       FROM (SELECT action, column_name, kind, sum(rows) AS rows FROM privacy_findings
                             WHERE source_file = ? AND load_partition = ? GROUP BY ALL)
                       GROUP BY ALL ORDER BY 1, 2""",
                    [result.source_file, partition],
                ).fetchall()
                for action, column, kinds, n in findings:
                    context.log.warning(
                        f"{result.source_file}: {action} {n:,} identifier-like value(s) in {column} ({kinds})"
                    )
                if result.dropped_columns:
                    context.log.warning(
                        f"{result.source_file}: dropped {len(result.dropped_columns)} column(s) outside the contract: "
                        f"{', '.join(result.dropped_columns)}"
                    )
            con.execute("COMMIT")
        except BaseException:
            rollback_after_failure(con)
            raise
        finally:
            if key:
                identifiers.clear_pseudonym_key(con)
        table_rows = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    rows_in = sum(r.rows_in for r in results)
    loaded = sum(r.rows_loaded for r in results)
    quarantined = sum(r.rows_quarantined for r in results)
    return dg.MaterializeResult(
        metadata={
            "files": dg.MetadataValue.int(len(results)),
            "rows_in": dg.MetadataValue.int(rows_in),
            "rows_loaded": dg.MetadataValue.int(loaded),
            "rows_quarantined": dg.MetadataValue.int(quarantined),
            "reconciled": dg.MetadataValue.bool(rows_in == loaded + quarantined),
            "dropped_columns": dg.MetadataValue.text(
                ", ".join(sorted({c for r in results for c in r.dropped_columns})) or "none"
            ),
            "table_rows_total": dg.MetadataValue.int(table_rows),
            "seconds": dg.MetadataValue.float(round(time.perf_counter() - started, 3)),
            "partitions": dg.MetadataValue.text(first if first == last else f"{first} .. {last}"),
        }
    )


def _ingest_asset(table: str):
    spec = TABLES[table]
    # Single-run backfills (one run loads many days) are marked beta in Dagster 1.13; we rely on them knowingly.
    warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)

    @dg.asset(
        name=table,
        group_name=GROUP,
        owners=OWNERS,
        kinds={"duckdb"},
        partitions_def=daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WRITER_POOL,
        description=(
            f"{spec.description} Typed rows from the landing files of this day's partition "
            f"(`{table}*.csv|parquet`); rows that cannot be typed go to `quarantine` with the reason."
        ),
    )
    def _asset(
        context: dg.AssetExecutionContext, landing: LandingResource, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        return _ingest_table(context, table, landing, warehouse)

    return _asset


referrals = _ingest_asset("referrals")
scans = _ingest_asset("scans")
clinical_events = _ingest_asset("clinical_events")
chart_reviews = _ingest_asset("chart_reviews")


@dg.asset(
    group_name=GROUP,
    owners=OWNERS,
    kinds={"duckdb"},
    deps=[referrals, scans],
    pool=WRITER_POOL,
)
def scan_links(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """One row per scan with its body region and the referral it fulfils: named by the scan, else the
    patient's latest referral for the same region in the 90 days before the scan, else none. Also keeps
    `referrals_current` and `scans_current` (the latest delivery of each record) up to date."""
    from assets.ingest.changes import CHANGED_PATIENTS, consuming, record_patients, signature
    from assets.ingest.contract import SPINE_MRI_REGIONS
    from assets.ingest.linking import LINK_WINDOW_DAYS, build_scan_links

    config = signature("links-1", LINK_WINDOW_DAYS, SPINE_MRI_REGIONS)
    with warehouse.connect() as con:
        present = all(
            relation_kind(con, t) == "TABLE" for t in ("scan_links", "referrals_current", "scans_current")
        )
        # Links are per patient: a nightly run relinks only the patients whose records changed.
        with consuming(con, "scan_links", config, present) as pending:
            summary = build_scan_links(con, None if pending.full else CHANGED_PATIENTS)
            relinked = summary.pop("relinked_patients")
            if relinked:  # scans naming another patient's referral: their patients are reclassified too
                pending.last_change = record_patients(con, "scan_links", relinked)
        total = con.execute("SELECT count(*) FROM scan_links").fetchall()[0][0]
    context.log.info(f"links {'rebuilt' if pending.full else 'updated'} ({pending.why})")
    return dg.MaterializeResult(
        metadata={"scans": dg.MetadataValue.int(total), "mode": dg.MetadataValue.text(pending.why),
                  **{k: dg.MetadataValue.int(v) for k, v in summary.items()}}
    )


ingest_assets = [referrals, scans, clinical_events, chart_reviews, scan_links]
