"""The overtreatment reports' SQL: per-scan downstream events and follow-up (DuckDB, set-based), the aggregates
per category, provider and facility, the chart-review cases, and gathering them into small lists."""

from __future__ import annotations

from assets.publish.report_definitions import (
    CATEGORIES, INTERVENTIONS, OPIOID_LOOKBACK_DAYS, PRIMARY_RULE_SET, PROVIDER_WINDOW, UNKNOWN, WINDOWS)
from assets.sql import literal


def per_scan_ctes(rule_sets: list[str]) -> str:
    """CTEs ending in `per_scan`: one row per spine MRI with its categories and first downstream events.

    `per_scan` columns: scan_id, patient_id, scan_date, procedure_code, body_region, referral_id, facility_id,
    referring_provider_id, referring_specialty, care_setting, scan_minutes, unit_cost (reference/unit_costs.yaml
    by CPT and care setting), expected_pu (the primary rule set's potentially unnecessary share among all spine
    MRIs of the same case mix: age band, sex, care setting, body region and specialty; summed over a provider's
    scans it is the count indirect standardisation expects), cat_0.. (the category under each rule set, in the
    order given; cat_0 the primary), data_end (the last date the data cover), follow_up_days (data_end -
    scan_date) and first_<intervention> (days from the scan to the first such event, 1..365, NULL when none).
    """
    from assets.classify.value_sets import concept_match_sql
    from assets.publish.costs import load_unit_costs

    from assets.publish.casemix import expected_share_sql

    unit_cost = load_unit_costs().sql("l.procedure_code", "r.care_setting")
    expected = expected_share_sql("c.cat_0 = 'potentially_unnecessary'", "r.patient_age", "r.patient_sex",
                                  "r.care_setting", "l.body_region", "r.referring_specialty")

    max_window = max(WINDOWS)
    cats = ", ".join(
        f"max(category) FILTER (WHERE rule_set = {literal(rs)}) AS cat_{i}" for i, rs in enumerate(rule_sets)
    )
    cat_cols = ", ".join(f"c.cat_{i}" for i in range(len(rule_sets)))
    concepts = ", ".join(literal(iv.concept) for iv in INTERVENTIONS)
    firsts = ",\n               ".join(
        f"min(e.event_date - s.scan_date) FILTER (WHERE e.concept = {literal(iv.concept)} "
        f"AND e.event_date > s.scan_date) AS first_{iv.key}"
        for iv in INTERVENTIONS
    )
    first_cols = ", ".join(
        f"h.first_{iv.key}" for iv in INTERVENTIONS if iv.key != "opioid_start"
    )
    in_scope = ", ".join(literal(c) for c in CATEGORIES)
    return f"""
    WITH cls AS (
        SELECT scan_id, {cats} FROM mri_classification GROUP BY scan_id
    ),
    spine AS (
        SELECT l.scan_id, l.patient_id, l.scan_date, l.procedure_code, l.body_region, l.referral_id,
               s.facility_id, r.referring_provider_id, r.referring_specialty, r.care_setting, s.scan_minutes,
               {unit_cost} AS unit_cost,
               {expected} AS expected_pu,
               {cat_cols}
        FROM scan_links l
        JOIN cls c USING (scan_id)
        LEFT JOIN scans_current s USING (scan_id)
        LEFT JOIN referrals_current r ON r.referral_id = l.referral_id
        WHERE c.cat_0 IN ({in_scope})
    ),
    data_end AS (
        SELECT greatest(coalesce((SELECT max(event_date) FROM clinical_events), DATE '1900-01-01'),
                        coalesce((SELECT max(scan_date) FROM scans_current), DATE '1900-01-01')) AS d
    ),
    codes AS (
        SELECT DISTINCT code_system, code FROM clinical_events
        UNION SELECT DISTINCT 'CPT', procedure_code FROM scans_current
    ),
    -- Codes are matched to the intervention concepts first (a few hundred distinct codes), so only the
    -- matching rows of the history are read further.
    ev_concepts AS (SELECT * FROM ({concept_match_sql('codes')}) WHERE concept IN ({concepts})),
    ev_raw AS (
        SELECT patient_id, event_date, code_system, code, 'event' AS src FROM clinical_events
        WHERE (code_system, code) IN (SELECT (code_system, code) FROM ev_concepts)
        UNION ALL
        SELECT patient_id, scan_date, 'CPT', procedure_code, 'scan' FROM scans_current
    ),
    ev AS (
        SELECT r.patient_id, r.event_date, c.concept
        FROM ev_raw r JOIN ev_concepts c USING (code_system, code)
        WHERE (r.src = 'event' OR c.concept = 'advanced_spine_imaging')   -- later scans: imaging only
          AND NOT (c.concept = 'lumbar_surgery' AND r.code_system = 'ICD10CM')  -- status diagnoses
    ),
    hits AS (
        SELECT s.scan_id,
               {firsts},
               bool_or(e.concept = 'opioid' AND e.event_date <= s.scan_date) AS prior_opioid
        FROM spine s
        JOIN ev e ON e.patient_id = s.patient_id
         AND e.event_date >= s.scan_date - {OPIOID_LOOKBACK_DAYS} AND e.event_date <= s.scan_date + {max_window}
        GROUP BY s.scan_id
    ),
    per_scan AS (
        SELECT s.*, de.d AS data_end, de.d - s.scan_date AS follow_up_days, {first_cols},
               CASE WHEN NOT coalesce(h.prior_opioid, false) THEN h.first_opioid_start END AS first_opioid_start
        FROM spine s CROSS JOIN data_end de LEFT JOIN hits h USING (scan_id)
    )
    """


def materialize_per_scan(con, rule_sets: list[str]) -> None:
    """`per_scan` as a temporary table (allowed on a read-only connection): the aggregates and the case list
    both read it, and it is the expensive part (each scan's downstream events)."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE per_scan AS {per_scan_ctes(rule_sets)} SELECT * FROM per_scan")


def aggregate_sql(rule_sets: list[str], with_ctes: bool = True) -> str:
    """One pass over `per_scan`, grouped by each rule set's category, by provider, by facility and overall."""
    dims = [f"cat_{i}" for i in range(len(rule_sets))] + ["provider_key", "facility_key"]
    cols = ["count(*) AS scans", "min(scan_date) AS first_scan", "max(scan_date) AS last_scan",
            "any_value(data_end) AS data_end", "histogram(referring_specialty) AS specialties"]
    for i in range(len(rule_sets)):
        cols += [f"count(*) FILTER (WHERE cat_{i} = {literal(c)}) AS r{i}_{c}" for c in CATEGORIES]
    for w in WINDOWS:
        cols.append(f"count(*) FILTER (WHERE follow_up_days >= {w}) AS den_{w}")
        cols += [
            f"count(*) FILTER (WHERE follow_up_days >= {w} AND first_{iv.key} <= {w}) AS n_{iv.key}_{w}"
            for iv in INTERVENTIONS
        ]
    pu = "cat_0 = 'potentially_unnecessary'"
    cols += [
        "sum(expected_pu) AS pu_expected",
        f"sum(unit_cost) FILTER (WHERE {pu}) AS pu_cost",
        # Scanner hours: scans without a table time count at the mean of those with one.
        f"avg(scan_minutes) FILTER (WHERE {pu}) * count(*) FILTER (WHERE {pu}) / 60.0 AS pu_hours",
        f"count(*) FILTER (WHERE {pu} AND follow_up_days >= {PROVIDER_WINDOW}) AS pu_fu",
        f"count(*) FILTER (WHERE {pu} AND follow_up_days >= {PROVIDER_WINDOW} "
        f"AND first_injection <= {PROVIDER_WINDOW}) AS pu_inj",
    ]
    # The other interventions per unit, for the referrers' feedback reports ("what followed").
    cols += [
        f"count(*) FILTER (WHERE {pu} AND follow_up_days >= {PROVIDER_WINDOW} "
        f"AND first_{iv.key} <= {PROVIDER_WINDOW}) AS pu_{iv.key}"
        for iv in INTERVENTIONS if iv.key != "injection"
    ]
    grouping = ", ".join(f"grouping({d}) AS g_{d}" for d in dims)
    sets = ", ".join(f"({d})" for d in dims) + ", ()"
    return (
        (per_scan_ctes(rule_sets) if with_ctes else "")
        + f"""
    SELECT {grouping}, {', '.join(dims)}, {', '.join(cols)}
    FROM (SELECT *, coalesce(referring_provider_id, {literal(UNKNOWN)}) AS provider_key,
                    coalesce(facility_id, {literal(UNKNOWN)}) AS facility_key
          FROM per_scan)
    GROUP BY GROUPING SETS ({sets})
    """
    )


def cases_sql(rule_sets: list[str], with_ctes: bool = True) -> str:
    """The chart-review case list: every spine MRI the primary rule set calls potentially unnecessary."""
    other = ", ".join(
        f"p.cat_{i} AS {slug(rs)}_category" for i, rs in enumerate(rule_sets) if i > 0
    )
    max_window = max(WINDOWS)
    flags = []
    summary = []
    for iv in INTERVENTIONS:
        col = f"p.first_{iv.key}"
        # TRUE: seen; FALSE: none although the data cover the whole year; empty: none seen, year not covered.
        flags.append(
            f"CASE WHEN {col} IS NOT NULL THEN true WHEN p.follow_up_days >= {max_window} THEN false END "
            f"AS {iv.key}_within_{max_window}d"
        )
        summary.append(f"CASE WHEN {col} IS NOT NULL THEN {literal(iv.key.replace('_', ' ') + ' day ')} || {col} END")
    any_col = " OR ".join(f"p.first_{iv.key} IS NOT NULL" for iv in INTERVENTIONS)
    return (
        (per_scan_ctes(rule_sets) if with_ctes else "")
        + f"""
    SELECT p.scan_id, p.scan_date, p.procedure_code, p.body_region, p.facility_id, p.referring_provider_id,
           p.referring_specialty, m.reasons, m.evidence, m.days_since_onset, m.conservative_care,
           {other + ',' if other else ''}
           least(p.follow_up_days, {max_window}) AS follow_up_days_observed,
           {', '.join(flags)},
           CASE WHEN {any_col} THEN true WHEN p.follow_up_days >= {max_window} THEN false END
               AS any_downstream_within_{max_window}d,
           concat_ws('; ', {', '.join(summary)}) AS first_downstream_events
    FROM per_scan p
    JOIN mri_classification m ON m.scan_id = p.scan_id AND m.rule_set = {literal(rule_sets[0])}
    WHERE p.cat_0 = 'potentially_unnecessary'
    ORDER BY p.facility_id NULLS LAST, p.referring_provider_id NULLS LAST, p.scan_date, p.scan_id
    """
    )


def slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name).lower()


# --- gathering ---------------------------------------------------------------------------------------------

def _rule_sets_in(con) -> list[tuple[str, str]]:
    rows = con.execute(
        "SELECT rule_set, min(rule_set_version) FROM mri_classification GROUP BY rule_set"
    ).fetchall()
    rows.sort(key=lambda r: (r[0] != PRIMARY_RULE_SET, r[0]))
    return [(r[0], r[1]) for r in rows]


def gather(con) -> dict:
    """Everything the reports publish, read from the warehouse (aggregated, before suppression)."""
    rule_sets = _rule_sets_in(con)
    names = [rs for rs, _ in rule_sets] or [PRIMARY_RULE_SET]
    materialize_per_scan(con, names)
    cur = con.execute(aggregate_sql(names, with_ctes=False))
    columns = [d[0] for d in cur.description]
    rows = [dict(zip(columns, r)) for r in cur.fetchall()]
    dims = [f"cat_{i}" for i in range(len(names))] + ["provider_key", "facility_key"]

    def grouped_by(dim):
        return [r for r in rows if r[f"g_{dim}"] == 0 and all(r[f"g_{d}"] == 1 for d in dims if d != dim)]

    total = [r for r in rows if all(r[f"g_{d}"] == 1 for d in dims)]
    figures = {
        "rule_sets": rule_sets,
        "names": names,
        "total": total[0] if total else None,
        "by_category": {rs: {r[f"cat_{i}"]: r for r in grouped_by(f"cat_{i}")} for i, rs in enumerate(names)},
        "providers": sorted(grouped_by("provider_key"), key=lambda r: r["provider_key"]),
        "facilities": sorted(grouped_by("facility_key"), key=lambda r: r["facility_key"]),
    }
    q = lambda sql: con.execute(sql).fetchall()  # noqa: E731
    figures["regions"] = dict(q("SELECT body_region, count(*) FROM scan_links GROUP BY ALL"))
    figures["period"] = con.execute("SELECT min(scan_date), max(scan_date) FROM scan_links").fetchone()
    figures["coverage"] = con.execute(
        """WITH span AS (SELECT patient_id, min(event_date) AS first_event, max(event_date) AS last_event
                         FROM clinical_events GROUP BY patient_id)
           SELECT count(*),
                  count(*) FILTER (WHERE l.referral_id IS NOT NULL),
                  count(*) FILTER (WHERE span.first_event <= l.scan_date),
                  count(*) FILTER (WHERE span.last_event > l.scan_date)
           FROM scan_links l LEFT JOIN span USING (patient_id) WHERE l.body_region <> 'other'"""
    ).fetchone()
    figures["events_period"] = con.execute("SELECT min(event_date), max(event_date) FROM clinical_events").fetchone()
    figures["files"] = q(
        """SELECT f.table_name, sum(f.rows_in)::BIGINT, count(DISTINCT f.source_file),
                  coalesce(any_value(qq.n), 0)::BIGINT
           FROM ingest_files f
           LEFT JOIN (SELECT table_name, count(*) AS n FROM quarantine GROUP BY ALL) qq USING (table_name)
           GROUP BY f.table_name ORDER BY f.table_name"""
    )
    figures["value_sets"] = q(
        """SELECT concept, count(*), string_agg(DISTINCT code_system, ', ' ORDER BY code_system),
                  string_agg(DISTINCT match, ', ' ORDER BY match)
           FROM value_set_codes GROUP BY concept ORDER BY concept"""
    )
    downstream_concepts = ", ".join(literal(iv.concept) for iv in INTERVENTIONS)
    figures["downstream_codes"] = q(
        f"""SELECT concept, code_system, code, match, description FROM value_set_codes
            WHERE concept IN ({downstream_concepts}) ORDER BY concept, code_system, code"""
    )
    return figures
