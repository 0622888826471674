"""Linking scans to the referrals they fulfil (CONTRACT.md §2a, `scans.referral_id`).

1. The scan names its referral and that referral exists: `explicit`.
2. Otherwise the patient's latest referral for the same body region dated 0-90 days before the scan:
   `inferred_90d` (ties broken by the later referral id, so the result is deterministic).
3. Otherwise none: the scan is classified from its own codes and history. A named referral that does not exist
   is reported as `referral_not_found` and falls through to rule 2 when a match exists.

Body region is the spine region for spine MRI codes; for every other procedure the region key is the code itself,
so a knee MRI links only to a knee MRI order.
"""

from __future__ import annotations

from assets.ingest.contract import SPINE_MRI_REGIONS

LINK_WINDOW_DAYS = 90


def region_case(column: str) -> str:
    whens = " ".join(f"WHEN '{code}' THEN '{region}'" for code, region in SPINE_MRI_REGIONS.items())
    return f"CASE {column} {whens} ELSE 'other' END"


CURRENT_SQL = {
    "referrals_current": """SELECT * FROM referrals
           QUALIFY row_number() OVER (PARTITION BY referral_id
                                      ORDER BY _load_partition DESC, _source_file DESC, _source_row DESC) = 1""",
    "scans_current": """SELECT * FROM scans
           QUALIFY row_number() OVER (PARTITION BY scan_id
                                      ORDER BY _load_partition DESC, _source_file DESC, _source_row DESC) = 1""",
}


def build_current_views(con, materialize: bool = False) -> None:
    """One row per id: the latest load wins when a record is delivered again.

    As views while data are being checked (always fresh); materialized as tables once the links are built, so
    classification, measures and dashboards - which read them dozens of times - do not redo the window each
    time (it costs about 0.3 s per read at a million rows).
    """
    for name, sql in CURRENT_SQL.items():
        kinds = con.execute(
            """SELECT 'TABLE' FROM duckdb_tables() WHERE table_name = ? AND NOT temporary
               UNION ALL SELECT 'VIEW' FROM duckdb_views() WHERE view_name = ? AND NOT temporary""",
            [name, name],
        ).fetchall()
        for (kind,) in kinds:
            con.execute(f"DROP {kind} {name}")
        con.execute(f"CREATE {'TABLE' if materialize else 'VIEW'} {name} AS {sql}")


def build_scan_links(con) -> dict:
    """(Re)build `scan_links`: one row per current scan with its region and linked referral."""
    build_current_views(con, materialize=True)
    region_scan = region_case("s.procedure_code")
    region_ref = region_case("r.requested_procedure_code")
    con.execute(
        f"""CREATE OR REPLACE TABLE scan_links AS
        WITH s AS (
            SELECT s.scan_id, s.patient_id, s.scan_date, s.procedure_code, s.referral_id AS named_referral_id,
                   {region_scan} AS body_region,
                   CASE WHEN {region_scan} = 'other' THEN s.procedure_code ELSE {region_scan} END AS region_key
            FROM scans_current s
        ),
        r AS (
            SELECT r.referral_id, r.patient_id, r.referral_date,
                   CASE WHEN {region_ref} = 'other' THEN r.requested_procedure_code ELSE {region_ref} END
                       AS region_key
            FROM referrals_current r
        ),
        inferred AS (
            SELECT s.scan_id, r.referral_id
            FROM s JOIN r ON r.patient_id = s.patient_id AND r.region_key = s.region_key
                 AND r.referral_date BETWEEN s.scan_date - INTERVAL {LINK_WINDOW_DAYS} DAY AND s.scan_date
            QUALIFY row_number() OVER (PARTITION BY s.scan_id
                                       ORDER BY r.referral_date DESC, r.referral_id DESC) = 1
        )
        SELECT s.scan_id, s.patient_id, s.scan_date, s.procedure_code, s.body_region, s.named_referral_id,
               CASE WHEN named.referral_id IS NOT NULL THEN named.referral_id ELSE inferred.referral_id END
                   AS referral_id,
               CASE WHEN named.referral_id IS NOT NULL THEN 'explicit'
                    WHEN inferred.referral_id IS NOT NULL THEN 'inferred_90d'
                    ELSE 'none' END AS link_method,
               s.named_referral_id IS NOT NULL AND named.referral_id IS NULL AS named_referral_missing
        FROM s
        LEFT JOIN referrals_current named ON named.referral_id = s.named_referral_id
        LEFT JOIN inferred ON inferred.scan_id = s.scan_id
        ORDER BY s.scan_id"""
    )
    rows = con.execute(
        """SELECT link_method, count(*) FROM scan_links GROUP BY ALL ORDER BY 1"""
    ).fetchall()
    missing = con.execute("SELECT count(*) FROM scan_links WHERE named_referral_missing").fetchone()[0]
    summary = {f"links_{method}": n for method, n in rows}
    summary["named_referral_not_found"] = missing
    return summary
