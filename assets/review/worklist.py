"""The next chart-review sample: `reports/review_worklist.csv` and the cases the review page shows.

Two parts, both of unreviewed verdicts:

- a stratified random sample: up to `IMAGING_AUDIT_REVIEW_PER_STRATUM` scans per rule set, category and month
  of scan (out-of-scope scans are not sampled: they are not spine MRIs), so reviewers see the typical case of
  every category and period. "Random" is an order by the MD5 of the seed and the scan id: the same seed and data
  give the same sample, on any machine and DuckDB version;
- every referring provider and facility a funnel plot of the standard rule set puts outside its 99.8% limits
  (the dashboards' `trends.html`): up to `IMAGING_AUDIT_REVIEW_PER_OUTLIER` of its scans in the direction of its
  deviation (potentially unnecessary ones above the limit, the others below), so reviewers see the outliers.
"""

from __future__ import annotations

WORKLIST_COLUMNS = [
    "scan_id", "rule_set", "rule_set_version", "category", "reasons", "scan_date", "month", "body_region",
    "referring_provider_id", "referring_specialty", "facility_id", "selected_because", "evidence",
]


def _verdicts_sql() -> str:
    return """SELECT m.scan_id, m.rule_set, m.rule_set_version, m.category, m.reasons, m.scan_date,
                     strftime(m.scan_date, '%Y-%m') AS month, m.body_region, m.evidence, m.review_status,
                     r.referring_provider_id, r.referring_specialty, s.facility_id, r.clinical_indication,
                     l.referral_id
              FROM mri_classification m
              LEFT JOIN scan_links l USING (scan_id)
              LEFT JOIN referrals_current r ON r.referral_id = l.referral_id
              LEFT JOIN scans_current s ON s.scan_id = m.scan_id"""


def outlier_units(con) -> list[tuple[str, str, str]]:
    """(unit kind, unit id, 'above' or 'below') for providers and facilities outside the 99.8% funnel limits of
    the standard rule set, among those the dashboards show (no count of 1-10)."""
    from assets.publish.statistics import funnel_position, is_small

    totals = con.execute(
        """SELECT count(*) FILTER (WHERE category <> 'out_of_scope'),
                  count(*) FILTER (WHERE category = 'potentially_unnecessary')
           FROM mri_classification WHERE rule_set = 'standard'"""
    ).fetchone()
    if not totals or not totals[0]:
        return []
    centre = totals[1] / totals[0]
    out = []
    for kind, column in (("referring_provider_id", "referring_provider_id"), ("facility_id", "facility_id")):
        rows = con.execute(
            f"""SELECT {column}, count(*), count(*) FILTER (WHERE category = 'potentially_unnecessary')
                FROM ({_verdicts_sql()}) v
                WHERE rule_set = 'standard' AND category <> 'out_of_scope' AND {column} IS NOT NULL
                GROUP BY 1"""
        ).fetchall()
        for unit, n, x in rows:
            if is_small(n) or is_small(x) or is_small(n - x):
                continue
            position = funnel_position(x / n, centre, n)
            if position in ("above_998", "below_998"):
                out.append((kind, unit, position.split("_")[0]))
    return out


def worklist_sql(per_stratum: int, per_outlier: int, seed: str, outliers: list[tuple[str, str, str]]) -> str:
    from assets.sql import literal

    draw = f"md5({literal(seed + ':')} || scan_id || ':' || rule_set)"  # the seeded random order
    outlier_rows = " UNION ALL ".join(
        f"SELECT {literal(kind)} AS kind, {literal(unit)} AS unit, {literal(side)} AS side"
        for kind, unit, side in outliers
    ) or "SELECT NULL::VARCHAR AS kind, NULL::VARCHAR AS unit, NULL::VARCHAR AS side WHERE false"
    return f"""
        WITH v AS ({_verdicts_sql()}),
        pending AS (SELECT *, {draw} AS draw FROM v
                    WHERE review_status = 'unreviewed' AND category <> 'out_of_scope'),
        sample AS (
            SELECT *, 'sample: ' || rule_set || ', ' || category || ', ' || month AS selected_because, 1 AS part
            FROM (SELECT v.*, row_number() OVER (PARTITION BY rule_set, category, month ORDER BY draw) AS k
                  FROM pending v)
            WHERE k <= {int(per_stratum)}),
        units AS ({outlier_rows}),
        outlying AS (
            SELECT *, 2 AS part FROM (
                SELECT v.*, 'funnel: ' || replace(u.kind, '_id', '') || ' ' || u.unit || ' is ' || u.side
                           || ' the 99.8% limit' AS selected_because,
                       row_number() OVER (PARTITION BY u.kind, u.unit ORDER BY v.draw) AS k
                FROM pending v JOIN units u
                  ON (u.kind = 'referring_provider_id' AND v.referring_provider_id = u.unit
                      OR u.kind = 'facility_id' AND v.facility_id = u.unit)
                WHERE v.rule_set = 'standard'
                  AND (u.side = 'above') = (v.category = 'potentially_unnecessary')
                  AND NOT EXISTS (SELECT 1 FROM sample s WHERE s.scan_id = v.scan_id AND s.rule_set = v.rule_set))
            WHERE k <= {int(per_outlier)}),
        chosen AS (SELECT * FROM sample UNION ALL BY NAME SELECT * FROM outlying),
        one AS (  -- a scan in two outlying units is listed once, for the first reason
            SELECT * FROM chosen QUALIFY row_number() OVER (PARTITION BY scan_id, rule_set
                                                            ORDER BY part, selected_because) = 1)
        SELECT * EXCLUDE (k, part, draw) FROM one
        ORDER BY part, rule_set <> 'standard', rule_set, category, month, draw
    """


def build_worklist(con) -> list[dict]:
    """The worklist's cases, in order, with what the review page shows beside the CSV's columns."""
    from assets.settings import load_settings

    settings = load_settings()
    sql = worklist_sql(settings.review_per_stratum, settings.review_per_outlier, settings.review_seed,
                       outlier_units(con))
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def worklist_csv(cases: list[dict]) -> str:
    """The worklist as CSV (text cells neutralised against spreadsheet formulas, assets/publish/files.py)."""
    from assets.publish.files import csv_text

    return csv_text(WORKLIST_COLUMNS, ([case.get(c) for c in WORKLIST_COLUMNS] for case in cases))
