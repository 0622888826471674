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
    # Both kinds of unit in one pass over the verdicts (grouping sets), not one join and scan per kind.
    rows = con.execute(
        """SELECT grouping(r.referring_provider_id) = 1 AS by_facility,
                  coalesce(r.referring_provider_id, s.facility_id), count(*),
                  count(*) FILTER (WHERE m.category = 'potentially_unnecessary')
           FROM mri_classification m
           LEFT JOIN scan_links l USING (scan_id)
           LEFT JOIN referrals_current r ON r.referral_id = l.referral_id
           LEFT JOIN scans_current s ON s.scan_id = m.scan_id
           WHERE m.rule_set = 'standard' AND m.category <> 'out_of_scope'
           GROUP BY GROUPING SETS ((r.referring_provider_id), (s.facility_id))"""
    ).fetchall()
    out = []
    for by_facility, unit, n, x in rows:
        kind = "facility_id" if by_facility else "referring_provider_id"
        if unit is None or is_small(n) or is_small(x) or is_small(n - x):
            continue
        position = funnel_position(x / n, centre, n)
        if position in ("above_998", "below_998"):
            out.append((kind, unit, position.split("_")[0]))
    out.sort(key=lambda o: (o[0] != "referring_provider_id", o[1]))
    return out


def worklist_sql(per_stratum: int, per_outlier: int, seed: str, outliers: list[tuple[str, str, str]]) -> str:
    from assets.sql import literal

    draw = f"md5({literal(seed + ':')} || m.scan_id || ':' || m.rule_set)"  # the seeded random order
    # One VALUES list (a UNION of a thousand SELECTs takes seconds to plan).
    outlier_rows = (
        "SELECT * FROM (VALUES " + ", ".join(
            f"({literal(kind)}, {literal(unit)}, {literal(side)})" for kind, unit, side in outliers
        ) + ") AS t(kind, unit, side)"
    ) if outliers else "SELECT NULL::VARCHAR AS kind, NULL::VARCHAR AS unit, NULL::VARCHAR AS side WHERE false"
    # The draw runs on narrow rows (keys and stratum); the wide columns (evidence, referral text) are joined only
    # to the few scans chosen. Outlying units join by provider and by facility separately: one equality join
    # each, not one join on an OR, which would compare every pending scan with every unit.
    return f"""
        WITH pending AS MATERIALIZED (  -- one draw per verdict, read by the sample and the outlying units
            SELECT m.scan_id, m.rule_set, m.category, strftime(m.scan_date, '%Y-%m') AS month, {draw} AS draw
            FROM mri_classification m
            WHERE m.review_status = 'unreviewed' AND m.category <> 'out_of_scope'),
        sample AS (  -- the first {int(per_stratum)} of each stratum in the draw's order (a top-n, not a sort)
            SELECT *, 'sample: ' || rule_set || ', ' || category || ', ' || month AS selected_because, 1 AS part
            FROM (SELECT unnest(first_n, recursive := true)
            FROM (SELECT min_by({{'scan_id': scan_id, 'rule_set': rule_set, 'category': category, 'month': month,
                                  'draw': draw}}, draw, {int(per_stratum)}) AS first_n
                  FROM pending GROUP BY rule_set, category, month))),
        units AS ({outlier_rows}),
        unit_scans AS (  -- the scans of each outlying unit, reached from the unit (few) rather than every scan
            SELECT u.kind, u.unit, u.side, l.scan_id FROM units u
            JOIN referrals_current r ON u.kind = 'referring_provider_id' AND r.referring_provider_id = u.unit
            JOIN scan_links l ON l.referral_id = r.referral_id
            UNION ALL
            SELECT u.kind, u.unit, u.side, s.scan_id FROM units u
            JOIN scans_current s ON u.kind = 'facility_id' AND s.facility_id = u.unit),
        in_units AS (
            SELECT v.*, us.kind, us.unit, us.side FROM unit_scans us
            JOIN pending v ON v.scan_id = us.scan_id AND v.rule_set = 'standard'),
        outlying AS (
            SELECT scan_id, rule_set, category, month, draw,
                   'funnel: ' || replace(kind, '_id', '') || ' ' || unit || ' is ' || side || ' the 99.8% limit'
                       AS selected_because, 2 AS part
            FROM (SELECT kind, unit, side, unnest(first_n, recursive := true)
                  FROM (SELECT kind, unit, side,
                               min_by({{'scan_id': c.scan_id, 'rule_set': c.rule_set, 'category': c.category,
                                        'month': c.month, 'draw': c.draw}}, c.draw, {int(per_outlier)}) AS first_n
                        FROM in_units c ANTI JOIN sample s ON s.scan_id = c.scan_id AND s.rule_set = c.rule_set
                        WHERE (c.side = 'above') = (c.category = 'potentially_unnecessary')
                        GROUP BY kind, unit, side))),
        chosen AS (SELECT * FROM sample UNION ALL BY NAME SELECT * FROM outlying),
        one AS (  -- a scan in two outlying units is listed once, for the first reason
            SELECT * FROM chosen QUALIFY row_number() OVER (PARTITION BY scan_id, rule_set
                                                            ORDER BY part, selected_because) = 1)
        SELECT m.scan_id, m.rule_set, m.rule_set_version, m.category, m.reasons, m.scan_date, one.month,
               m.body_region, m.evidence, m.review_status, r.referring_provider_id, r.referring_specialty,
               s.facility_id, r.clinical_indication, l.referral_id, one.selected_because
        FROM one
        JOIN mri_classification m ON m.scan_id = one.scan_id AND m.rule_set = one.rule_set
        LEFT JOIN scan_links l ON l.scan_id = m.scan_id
        LEFT JOIN referrals_current r ON r.referral_id = l.referral_id
        LEFT JOIN scans_current s ON s.scan_id = m.scan_id
        ORDER BY one.part, one.rule_set <> 'standard', one.rule_set, one.category, one.month, one.draw
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
