"""Quality stage: the quarantine and the per-file reconciliation, published under `quality/`."""


import dagster as dg

from assets.ingest.assets import WRITER_POOL, chart_reviews, clinical_events, referrals, scans
from assets.resources import WarehouseResource
from assets.review.assets import chart_review_results

GROUP = "quality"
OWNERS = ["team:data-engineering"]


@dg.asset(
    group_name=GROUP,
    owners=OWNERS,
    kinds={"duckdb", "csv"},
    # after the review stage: reviews that match no scan yet are quarantined there (stage `review`)
    deps=[referrals, scans, clinical_events, chart_reviews, chart_review_results],
    pool=WRITER_POOL,
)
def quarantine_report(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """`quality/quarantine.csv` (source file, source row, table, reason: every row kept out of the warehouse),
    `quality/reconciliation.csv` (per file: rows in = rows loaded + rows quarantined) and
    `quality/privacy_findings.csv` (identifier-like values masked or quarantined, counts only)."""
    import shutil

    from assets.ingest.readers import ensure_tables
    from assets.publish.files import copy_query_to_csv, publish_directory, write_text_atomic
    from assets.quality.report import render_quality_page

    with warehouse.publishing("quality") as quality_dir, warehouse.connect() as con:
        ensure_tables(con)

        def build(folder):
            quarantined = copy_query_to_csv(
                con,
                "SELECT source_file, source_row, table_name AS \"table\", reason, stage, load_partition, record_key, "
                "column_name, value FROM quarantine ORDER BY table_name, source_file, source_row",
                folder / "quarantine.csv",
            )
            copy_query_to_csv(
                con,
                "SELECT source_file, table_name AS \"table\", load_partition, rows_in, rows_loaded, rows_quarantined, "
                "coalesce(rows_repeated, 0) AS rows_repeated, repeats_file, "
                "rows_in = rows_loaded + rows_quarantined + coalesce(rows_repeated, 0) AS reconciled, "
                "array_to_string(dropped_columns, ';') AS dropped_columns FROM ingest_files "
                "UNION ALL SELECT source_file, NULL, load_partition, NULL, NULL, NULL, NULL, NULL, false, "
                "'not read: ' || reason FROM ignored_files ORDER BY 2 NULLS LAST, 1",
                folder / "reconciliation.csv",
            )
            copy_query_to_csv(
                con,
                "SELECT source_file, table_name AS \"table\", column_name, kind, action, sum(rows) AS rows "
                "FROM privacy_findings GROUP BY ALL ORDER BY ALL",
                folder / "privacy_findings.csv",
            )
            write_text_atomic(folder / "index.html", render_quality_page(con))
            # The Data Docs the quality gate published just before this step stay with the part.
            if (quality_dir / "data_docs").is_dir():
                shutil.copytree(quality_dir / "data_docs", folder / "data_docs")
            return quarantined

        # The whole of quality/ is replaced in one step: its files always come from one run.
        quarantined = publish_directory(quality_dir, build)
        unreconciled = con.execute(
            "SELECT count(*) FROM ingest_files WHERE rows_in <> rows_loaded + rows_quarantined + coalesce(rows_repeated, 0)"
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
            "WHERE rows_in <> rows_loaded + rows_quarantined + coalesce(rows_repeated, 0)"
        ).fetchall()
        files = con.execute("SELECT count(*) FROM ingest_files").fetchone()[0]
    return dg.AssetCheckResult(
        passed=not bad,
        metadata={"files": files, "files_unreconciled": len(bad), "examples": str(bad[:5])},
    )


def _run_partition_range(context) -> tuple[str, str] | None:
    """The partitions the current run loaded (None when the check runs on its own: then all of them)."""
    tags = context.run.tags
    if "dagster/asset_partition_range_start" in tags:
        return tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]
    if "dagster/partition" in tags:
        return tags["dagster/partition"], tags["dagster/partition"]
    return None


def _volume_outcomes(con, last: str):
    """Rows the newest partition loaded, against the median of the 14 loaded days before it (baseline excluded)."""
    from assets.partitions import BASELINE_PARTITION
    from assets.quality.expectations import CheckOutcome

    outcomes = []
    for table in ("referrals", "scans", "clinical_events"):
        rows = dict(con.execute(
            f"""SELECT _load_partition, count(*) FROM {table}
                WHERE _load_partition > ? AND _load_partition <= ? GROUP BY ALL""",
            [BASELINE_PARTITION, last],
        ).fetchall())
        today = rows.pop(last, 0)
        history = sorted(rows.items())[-14:]
        if len(history) < 3 or last == BASELINE_PARTITION:
            passed, note, median = True, "fewer than 3 earlier nightly drops: nothing to compare", None
        else:
            counts = sorted(n for _, n in history)
            median = counts[len(counts) // 2]
            passed = 0.5 * median <= today <= 2.0 * median
            note = f"{today:,} rows against a median of {median:,} over the previous {len(history)} drops"
        outcomes.append(CheckOutcome(
            table=table, name=f"{table}__volume_within_trailing_range", blocking=False, passed=passed,
            violated=0 if passed else 1, percent=0.0, denominator=today, dimension="plausibility",
            description="A nightly drop holds between half and twice the median rows of the previous 14 drops. "
                        + note,
        ))
    return outcomes


def _quality_check_specs():
    from assets.ingest.assets import clinical_events, referrals, scans
    from assets.quality.expectations import check_definitions

    assets_by_table = {"referrals": referrals, "scans": scans, "clinical_events": clinical_events}
    specs = [
        dg.AssetCheckSpec(d.name, asset=assets_by_table[d.table], blocking=d.blocking,
                          description=f"[{d.dimension}] {d.description}")
        for d in check_definitions()
    ]
    specs += [
        dg.AssetCheckSpec(f"{t}__volume_within_trailing_range", asset=a, blocking=False,
                          description="[plausibility] A nightly drop holds between half and twice the median rows "
                                      "of the previous 14 drops.")
        for t, a in assets_by_table.items()
    ]
    return specs


@dg.multi_asset_check(
    specs=_quality_check_specs(),
    name="data_quality_suites",
    description="Great Expectations suites (expectations/*.json) on the rows this run loaded; volume against the "
                "trailing drops. Critical expectations block downstream assets, warnings report.",
    pool=WRITER_POOL,
)
def data_quality_suites(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource):
    import datetime as dt
    import time
    from zoneinfo import ZoneInfo

    from assets.quality.expectations import run_suites
    from assets.settings import load_settings

    bounds = _run_partition_range(context) or ("0000-00-00", "9999-99-99")
    run_date = dt.datetime.now(ZoneInfo(load_settings().timezone)).date().isoformat()
    started = time.perf_counter()
    from assets.publish.files import publish_directory

    with warehouse.publishing("quality") as quality_dir, warehouse.connect() as con:
        # Data Docs are built in a fresh folder and swapped in whole for quality/data_docs.
        outcomes = publish_directory(quality_dir / "data_docs",
                                     lambda docs: run_suites(con, bounds[0], bounds[1], run_date, docs))
        outcomes += _volume_outcomes(con, bounds[1] if bounds[1] != "9999-99-99" else "0000-00-00")
        con.execute(
            """CREATE TABLE IF NOT EXISTS quality_check_results (
                checked_at TIMESTAMP, partition_first VARCHAR, partition_last VARCHAR, table_name VARCHAR,
                check_name VARCHAR, blocking BOOLEAN, passed BOOLEAN, violated BIGINT, percent DOUBLE,
                denominator BIGINT, dimension VARCHAR, description VARCHAR, error VARCHAR)"""
        )
        # Re-checking the same partitions replaces their earlier results.
        con.execute(
            "DELETE FROM quality_check_results WHERE partition_first = ? AND partition_last = ?", list(bounds)
        )
        checked_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)  # one time stamp for the whole run
        con.executemany(
            "INSERT INTO quality_check_results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [[checked_at, bounds[0], bounds[1], o.table, o.name, o.blocking, o.passed, o.violated, o.percent, o.denominator,
              o.dimension, o.description, o.error] for o in outcomes],
        )
    seconds = round(time.perf_counter() - started, 2)
    failed = [o.name for o in outcomes if not o.passed]
    context.log.info(
        f"{len(outcomes)} data-quality checks in {seconds} s: "
        + (f"{len(failed)} not met ({', '.join(failed)})" if failed else "all met")
    )
    for o in outcomes:
        yield dg.AssetCheckResult(
            asset_key=o.table,
            check_name=o.name,
            passed=o.passed,
            severity=dg.AssetCheckSeverity.ERROR if o.blocking else dg.AssetCheckSeverity.WARN,
            description=o.description,
            metadata={
                "violated": dg.MetadataValue.int(o.violated),
                "percent": dg.MetadataValue.float(o.percent),
                "denominator": dg.MetadataValue.int(o.denominator),
                "dimension": dg.MetadataValue.text(o.dimension),
                "partitions": dg.MetadataValue.text(f"{bounds[0]} .. {bounds[1]}"),
                "seconds_for_all_checks": dg.MetadataValue.float(seconds),
                **({"error": dg.MetadataValue.text(o.error)} if o.error else {}),
            },
        )


quality_assets = [quarantine_report]
quality_checks = [rows_reconcile, data_quality_suites]
