"""Linking scans to the referrals they fulfil (docs/data-contract.md §2a, "scans": `scans.referral_id`).

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

    Temporary views while data are being checked (always fresh, and they shadow the warehouse tables for this
    connection only); tables once the links are built, so classification, measures and dashboards - which read
    them dozens of times - do not redo the window each time (about 0.3 s per read at a million rows).
    """
    from assets.resources import drop_relation

    for name, sql in CURRENT_SQL.items():
        if materialize:
            drop_relation(con, name)
            con.execute(f"CREATE TABLE {name} AS {sql}")
        else:
            con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {sql}")


LINK_COLUMNS = ("scan_id", "patient_id", "scan_date", "procedure_code", "body_region", "named_referral_id",
                "referral_id", "link_method", "named_referral_missing")


def _links_sql(scans_filter: str = "") -> str:
    """The links of the current scans (those in `scans_filter`, a WHERE on alias s, when given)."""
    region_scan = region_case("s.procedure_code")
    region_ref = region_case("r.requested_procedure_code")
    return f"""
        WITH s AS (
            SELECT s.scan_id, s.patient_id, s.scan_date, s.procedure_code, s.referral_id AS named_referral_id,
                   {region_scan} AS body_region,
                   CASE WHEN {region_scan} = 'other' THEN s.procedure_code ELSE {region_scan} END AS region_key
            FROM scans_current s {scans_filter}
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


def build_scan_links(con, patients: str | None = None) -> dict:
    """(Re)build `referrals_current`, `scans_current` and `scan_links` (one row per current scan with its region
    and linked referral).

    With `patients` (a table of the patients whose records changed, assets/ingest/changes.py) only the records
    those changes can affect are redone: every id any of their rows carries (an id may have moved between
    patients), and every scan that names, or was linked to, one of those referrals. Returns the link counts;
    `relinked_patients` lists the patients outside `patients` whose scans were relinked (a scan naming another
    patient's referral), who need reclassifying too.
    """
    if patients is None:
        build_current_views(con, materialize=True)
        con.execute(f"CREATE OR REPLACE TABLE scan_links AS {_links_sql()}")
        extra: list[str] = []
    else:
        only = f"patient_id IN (SELECT patient_id FROM {patients})"
        for table, key in (("referrals", "referral_id"), ("scans", "scan_id")):
            con.execute(
                f"""CREATE OR REPLACE TEMP TABLE _ids_{table} AS
                SELECT {key} FROM {table} WHERE {only} UNION SELECT {key} FROM {table}_current WHERE {only}"""
            )
            con.execute(f"DELETE FROM {table}_current WHERE {key} IN (SELECT {key} FROM _ids_{table})")
            con.execute(
                f"""INSERT INTO {table}_current
                SELECT * FROM ({CURRENT_SQL[table + '_current']}) WHERE {key} IN (SELECT {key} FROM _ids_{table})"""
            )
        con.execute(
            """CREATE OR REPLACE TEMP TABLE _relink AS
            SELECT scan_id FROM _ids_scans
            UNION SELECT scan_id FROM scans_current WHERE referral_id IN (SELECT referral_id FROM _ids_referrals)
            UNION SELECT scan_id FROM scan_links WHERE referral_id IN (SELECT referral_id FROM _ids_referrals)"""
        )
        extra = [r[0] for r in con.execute(
            f"""SELECT DISTINCT patient_id FROM scan_links
                WHERE scan_id IN (SELECT scan_id FROM _relink) AND NOT {only}"""
        ).fetchall()]
        con.execute("DELETE FROM scan_links WHERE scan_id IN (SELECT scan_id FROM _relink)")
        con.execute(
            f"INSERT INTO scan_links {_links_sql('WHERE s.scan_id IN (SELECT scan_id FROM _relink)')}"
        )
    rows = con.execute(
        """SELECT link_method, count(*) FROM scan_links GROUP BY ALL ORDER BY 1"""
    ).fetchall()
    missing = con.execute("SELECT count(*) FROM scan_links WHERE named_referral_missing").fetchall()[0][0]
    summary = {f"links_{method}": n for method, n in rows}
    summary["named_referral_not_found"] = missing
    summary["relinked_patients"] = extra
    return summary
