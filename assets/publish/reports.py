"""Overtreatment reports: what followed spine MRIs, who ordered them, and the cases to review.

`build_reports(con, out_dir, generated_at)` reads the warehouse with plain SELECT queries (a read-only connection
is enough: no tables or views are created, not even temporary ones) and writes into `out_dir`:

- `index.html`: headline figures and links.
- `downstream.html`, `downstream_interventions.csv`: spine MRIs followed by an injection, spine surgery, EMG/NCS,
  repeat advanced imaging or a new opioid within 90, 180 and 365 days, per category and rule set.
- `providers.html`, `providers.csv`, `facilities.html`, `facilities.csv`: per referring provider and per facility,
  spine MRIs, the potentially unnecessary rate under each rule set, injections after potentially unnecessary MRIs.
- `chart_review_cases.csv`: every scan the primary rule set calls potentially unnecessary, for chart review.
- `methodology.html`: rule sets, windows, value sets, suppression, data coverage, sources.

Per-scan work (matching codes to value-set concepts, each scan's first downstream event, its follow-up time) is
DuckDB SQL; Python only sees aggregated rows (one per category, provider or facility), and the small-cell
protection runs on those. Every published count of 1-10 is suppressed, and further cells are withheld wherever a
published total, complement or difference would let a reader work a suppressed cell out (`Protection`).
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import combinations
from pathlib import Path

from assets.html import page, table
from assets.publish.files import copy_query_to_csv, csv_text, write_text_atomic
from assets.publish.protection import WITHHELD, Protection  # noqa: F401  (Protection: also imported from here)
from assets.sql import literal
from assets.publish.statistics import SMALL_CELL_MAX, SUPPRESSED, funnel_position, is_small, rate, show

# --- definitions -------------------------------------------------------------------------------------------

WINDOWS = (90, 180, 365)  # days after the scan: day 1..N counts, the scan day itself does not
OPIOID_LOOKBACK_DAYS = 365  # an opioid is a *start* only without an opioid in this many days before the scan
PROVIDER_WINDOW = 180  # the injection window shown per provider and facility (Webster 2014: 6 months)
PRIMARY_RULE_SET = "standard"
CATEGORIES = ("potentially_unnecessary", "indicated", "insufficient_information")
CATEGORY_LABEL = {
    "potentially_unnecessary": "Potentially unnecessary",
    "indicated": "Indicated",
    "insufficient_information": "Insufficient information",
}
UNKNOWN = "(unknown)"


@dataclass(frozen=True)
class Intervention:
    key: str  # column stem
    concept: str  # value-set concept (value_set_codes.concept)
    label: str
    definition: str


INTERVENTIONS = (
    Intervention(
        "injection", "spine_injection", "Epidural or facet injection",
        "an epidural steroid injection, facet-joint injection or facet-nerve radiofrequency procedure "
        "(value set spine_injection)",
    ),
    Intervention(
        "surgery", "lumbar_surgery", "Spine surgery",
        "a lumbar decompression or fusion procedure (value set lumbar_surgery, procedure codes only: the "
        "diagnoses Z98.1 arthrodesis status and M96.1 postlaminectomy syndrome record earlier surgery and are "
        "not counted)",
    ),
    Intervention(
        "electrodiagnostic", "electrodiagnostic", "EMG or nerve conduction study",
        "needle electromyography or a nerve conduction study (value set electrodiagnostic)",
    ),
    Intervention(
        "repeat_imaging", "advanced_spine_imaging", "Repeat advanced spine imaging",
        "a spine MRI or CT (value set advanced_spine_imaging), recorded as a history event or as a later scan "
        "of the same patient",
    ),
    Intervention(
        "opioid_start", "opioid", "New opioid prescription",
        f"an opioid medication event (value set opioid) for a patient with no opioid event in the "
        f"{OPIOID_LOOKBACK_DAYS} days before the scan or on the scan day",
    ),
)
BY_KEY = {iv.key: iv for iv in INTERVENTIONS}
FOLLOWED = tuple(iv.key for iv in INTERVENTIONS if iv.key != "injection")  # per provider besides injections

# The window each published benchmark uses, and the intervention compared with it in the reading.
READING = (("injection", 180), ("surgery", 365), ("electrodiagnostic", 180), ("repeat_imaging", 180),
           ("opioid_start", 365))

JACOBS_URL = ("https://ohsu.pure.elsevier.com/en/publications/"
              "observational-study-of-the-downstream-consequences-of-inappropria")
BENCHMARKS = (
    ("Jacobs JC et al., J Gen Intern Med 2020;35:3605-3612",
     JACOBS_URL,
     "VA primary care, 405,965 new non-specific low back pain episodes; lumbar MRI within 6 weeks of the first "
     "visit, without red flags, against no early MRI", "1 year",
     "Lumbar surgery 1.48% vs 0.12%; prescription opioids 35.1% vs 28.6%"),
    ("Webster BS et al., Spine 2014", "https://pmc.ncbi.nlm.nih.gov/articles/PMC4105318",
     "Workers' compensation, 3,022 patients; guideline-non-adherent early MRI against the reference group",
     "6 months",
     "Adjusted relative risk 6.5 to 54.9 for EMG, nerve conduction testing, advanced imaging, injections "
     "and surgery"),
)

SOURCES = (
    ("ACR Appropriateness Criteria, Low Back Pain (2021 revision)",
     "Hutchins TA et al., J Am Coll Radiol 2021;18(11S):S361-S379, doi:10.1016/j.jacr.2021.08.002",
     "https://acsearch.acr.org/list/GetAppendix?PanelName=Neurologic&TopicId=141"),
    ("Choosing Wisely: low back pain imaging",
     "AAFP, NASS, ACEP, ASA, ACA and AMSSM recommendations: no imaging in the first six weeks without red flags",
     "https://aafp.org/content/brand/aafp/family-physician/patient-care/clinical-recommendations/"
     "all-clinical-recommendations/cw-back-pain.html"),
    ("NICE NG59: Low back pain and sciatica in over 16s",
     "Published 30 Nov 2016, updated 11 Dec 2020; recommendations 1.1.4-1.1.6 on imaging",
     "https://www.nice.org.uk/guidance/ng59/chapter/Recommendations"),
    ("CMS Hospital OQR measure OP-8, MRI Lumbar Spine for Low Back Pain (CBE/NQF #0514)",
     "Lumbar MRI without antecedent conservative therapy (physical therapy or chiropractic in the 60 days "
     "before, or an office E&M visit 28-60 days before); its denominator exclusions are unverified and not applied",
     "https://p4qm.org/measures/0514"),
    ("NCQA HEDIS Use of Imaging Studies for Low Back Pain (LBP); eCQM CMS166 (NQF #0052)",
     "HEDIS MY2025 Volume 2 specification; CMS166v7",
     "https://ecqi.healthit.gov/sites/default/files/ecqm/measures/CMS166v7.html"),
    ("Webster BS et al., Spine 2014",
     "Cascade of services after guideline-non-adherent early MRI (workers' compensation, N = 3,022)",
     "https://pmc.ncbi.nlm.nih.gov/articles/PMC4105318"),
    ("Jacobs JC et al., J Gen Intern Med 2020;35:3605-3612",
     "Downstream consequences of inappropriate early lumbar MRI (VA, N = 405,965 episodes)",
     JACOBS_URL),
)

PAGES = (
    ("index.html", "Overview"),
    ("downstream.html", "Downstream interventions"),
    ("providers.html", "Referring providers"),
    ("facilities.html", "Facilities"),
    ("methodology.html", "Methodology"),
    ("feedback/index.html", "Referrer feedback (PDF)"),
    ("chart_review_cases.csv", "Chart-review cases (CSV)"),
)

EXTRA_CSS = """<style>
main{max-width:1280px} th,td{padding:6px 8px}
nav.rnav{margin:0 0 16px;font-size:14px} nav.rnav a{margin-right:14px;color:#0b3c5d}
nav.rnav a.here{font-weight:600;text-decoration:none;color:#1f2933}
.bench{background:#fff8e6;border-left:4px solid #d69e2e}
.tag{display:inline-block;font-size:12px;font-weight:600;padding:2px 8px;border-radius:10px;background:#d69e2e;
color:#fff;margin-left:8px;vertical-align:middle}
td.grp{font-weight:600;vertical-align:top} td.num,td.win{white-space:nowrap} tr.sep td{border-top:2px solid #cbd2d9}
tr.total td{font-weight:600;background:#f0f4f8}
ul.reading li{margin:6px 0}
td.hi{color:#b42318;font-weight:600} td.lo{color:#1b7f3b;font-weight:600}
code{font-size:13px}
</style>"""


# --- SQL ---------------------------------------------------------------------------------------------------

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
        f"p.cat_{i} AS {_slug(rs)}_category" for i, rs in enumerate(rule_sets) if i > 0
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


def _slug(name: str) -> str:
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


# --- protection model --------------------------------------------------------------------------------------

def _window_chain(p: Protection, n_keys: dict, den_keys: dict, stem: tuple) -> None:
    """Where two windows have the same denominator (every scan followed up for both), the difference of their
    counts is itself a count (scans whose first event fell between the windows): protect it. With different
    denominators the difference mixes two groups of scans and reveals neither."""
    for w1, w2 in combinations(WINDOWS, 2):
        if p.values[den_keys[w1]] != p.values[den_keys[w2]]:
            continue
        diff = p.values[n_keys[w2]] - p.values[n_keys[w1]]
        if diff < 0:  # cannot happen for one group of scans; never fail a report over it
            continue
        p.equation(n_keys[w2], n_keys[w1], p.add(stem + ("diff", w1, w2), diff, implicit=True))


# How long a cell stays published when one of an equation's cells must be withheld (higher: kept longer).
KEEP_CATEGORY = {"potentially_unnecessary": 3, "indicated": 2, "insufficient_information": 1}


def build_protection(figures: dict) -> Protection:
    """Every count the reports publish, as cells, with the equations that bind them (see `Protection`)."""
    p = Protection()
    names = figures["names"]
    primary = names[0]
    total = figures["total"] or {}
    pu = "potentially_unnecessary"

    def val(row, col):
        return int((row or {}).get(col) or 0)

    # Overall (all spine MRIs): shared by every table. The per-intervention totals are withheld first.
    all_scans = p.add(("scans", "all"), val(total, "scans"), keep=20)
    for w in WINDOWS:
        den = p.add(("den", "all", w), val(total, f"den_{w}"), keep=4)
        for iv in INTERVENTIONS:
            n = p.add(("n", "all", iv.key, w), val(total, f"n_{iv.key}_{w}"), keep=0)
            m = p.add(("m", "all", iv.key, w), val(total, f"den_{w}") - val(total, f"n_{iv.key}_{w}"),
                      implicit=True)
            p.equation(den, n, m)
    for iv in INTERVENTIONS:
        _window_chain(p, {w: ("n", "all", iv.key, w) for w in WINDOWS}, {w: ("den", "all", w) for w in WINDOWS},
                      ("n", "all", iv.key))

    # Per rule set and category (downstream table; the providers' and facilities' totals).
    for rs in names:
        rows = figures["by_category"].get(rs, {})
        p.equation(all_scans, *[p.add(("scans", rs, c), val(rows.get(c), "scans"), keep=10 + KEEP_CATEGORY[c])
                                for c in CATEGORIES])
        for w in WINDOWS:
            dens = [p.add(("den", rs, c, w), val(rows.get(c), f"den_{w}"), keep=5 + KEEP_CATEGORY[c])
                    for c in CATEGORIES]
            p.equation(("den", "all", w), *dens)
            for iv in INTERVENTIONS:
                ns = []
                for c in CATEGORIES:
                    row = rows.get(c)
                    n = p.add(("n", rs, c, iv.key, w), val(row, f"n_{iv.key}_{w}"), keep=5 + KEEP_CATEGORY[c])
                    m = p.add(("m", rs, c, iv.key, w), val(row, f"den_{w}") - val(row, f"n_{iv.key}_{w}"),
                              implicit=True)
                    p.equation(("den", rs, c, w), n, m)
                    ns.append(n)
                p.equation(("n", "all", iv.key, w), *ns)
        for c in CATEGORIES:
            for iv in INTERVENTIONS:
                _window_chain(p, {w: ("n", rs, c, iv.key, w) for w in WINDOWS},
                              {w: ("den", rs, c, w) for w in WINDOWS}, ("n", rs, c, iv.key))

    # Providers and facilities: rows of units adding up to the overall totals above. Within a row the
    # potentially unnecessary count and the spine MRIs (the rate) are kept longest.
    pu_fu_total = ("den", primary, pu, PROVIDER_WINDOW)
    pu_inj_total = ("n", primary, pu, "injection", PROVIDER_WINDOW)
    p.equation(("scans", primary, pu), pu_fu_total,
               p.add(("pu_nofu", "all"), p.values[("scans", primary, pu)] - p.values[pu_fu_total], implicit=True))
    for rs in names[1:]:
        p.equation(all_scans, ("scans", rs, pu),
                   p.add(("not_pu", "all", rs), p.values[all_scans] - p.values[("scans", rs, pu)], implicit=True))
    unit_keep = {"indicated": 0, "insufficient_information": 0, "potentially_unnecessary": 2}
    for dim, rows in (("provider", figures["providers"]), ("facility", figures["facilities"])):
        columns: dict = {}
        for row in rows:
            u = row[f"{dim}_key"]
            n = p.add((dim, u, "scans"), row["scans"], keep=3)
            cats = [p.add((dim, u, primary, c), row[f"r0_{c}"], keep=unit_keep[c]) for c in CATEGORIES]
            p.equation(n, *cats)
            columns.setdefault("scans", []).append(n)
            for c, key in zip(CATEGORIES, cats):
                columns.setdefault(c, []).append(key)
            for i, rs in enumerate(names[1:], start=1):
                k = p.add((dim, u, rs, pu), row[f"r{i}_{pu}"], keep=1)
                rest = p.add((dim, u, rs, "not_pu"), row["scans"] - row[f"r{i}_{pu}"], implicit=True)
                p.equation(n, k, rest)
                columns.setdefault((rs, pu), []).append(k)
                columns.setdefault((rs, "not_pu"), []).append(rest)
            fu = p.add((dim, u, "pu_fu"), row["pu_fu"], keep=0)
            inj = p.add((dim, u, "pu_inj"), row["pu_inj"], keep=1)
            nofu = p.add((dim, u, "pu_nofu"), row[f"r0_{pu}"] - row["pu_fu"], implicit=True)
            noinj = p.add((dim, u, "pu_noinj"), row["pu_fu"] - row["pu_inj"], implicit=True)
            p.equation((dim, u, primary, pu), fu, nofu)
            p.equation(fu, inj, noinj)
            for col, key in (("pu_fu", fu), ("pu_inj", inj), ("pu_nofu", nofu), ("pu_noinj", noinj)):
                columns.setdefault(col, []).append(key)
            if dim == "provider":  # what followed, in the feedback reports: bound like the injections
                for iv in FOLLOWED:
                    k = p.add((dim, u, f"pu_{iv}"), row[f"pu_{iv}"], keep=1)
                    rest = p.add((dim, u, f"pu_no_{iv}"), row["pu_fu"] - row[f"pu_{iv}"], implicit=True)
                    p.equation(fu, k, rest)
                    columns.setdefault(f"pu_{iv}", []).append(k)
                    columns.setdefault(f"pu_no_{iv}", []).append(rest)
        if not rows:
            continue
        totals = {"scans": all_scans, "pu_fu": pu_fu_total, "pu_inj": pu_inj_total,
                  "pu_nofu": ("pu_nofu", "all"), "pu_noinj": ("m", primary, pu, "injection", PROVIDER_WINDOW)}
        for iv in FOLLOWED:
            totals[f"pu_{iv}"] = ("n", primary, pu, iv, PROVIDER_WINDOW)
            totals[f"pu_no_{iv}"] = ("m", primary, pu, iv, PROVIDER_WINDOW)
        totals.update({c: ("scans", primary, c) for c in CATEGORIES})
        for rs in names[1:]:
            totals[(rs, pu)] = ("scans", rs, pu)
            totals[(rs, "not_pu")] = ("not_pu", "all", rs)
        for col, keys in columns.items():
            p.equation(totals[col], *keys)

    # Data coverage (methodology).
    regions = figures["regions"]
    spine = ("lumbar", "cervical", "thoracic")
    spine_total = p.add(("region", "spine"), sum(regions.get(r, 0) for r in spine), keep=20)
    p.equation(spine_total, *[p.add(("region", r), regions.get(r, 0), keep=2) for r in spine])
    p.equation(p.add(("region", "all"), sum(regions.values()), keep=20), spine_total,
               p.add(("region", "other"), regions.get("other", 0), keep=1))
    n_cov, linked, history, follow = figures["coverage"]
    cov = p.add(("coverage", "scans"), n_cov, keep=20)
    for name, value in (("linked", linked), ("history", history), ("follow_up", follow)):
        p.equation(cov, p.add(("coverage", name), value, keep=1),
                   p.add(("coverage", f"no_{name}"), n_cov - value, implicit=True))
    for table_name, rows_in, _, quarantined in figures["files"]:
        if quarantined > rows_in:  # rows quarantined after loading as well: no simple total
            p.add(("rows_in", table_name), rows_in, keep=20)
            p.add(("quarantined", table_name), quarantined, keep=1)
            continue
        p.equation(p.add(("rows_in", table_name), rows_in, keep=20),
                   p.add(("quarantined", table_name), quarantined, keep=1),
                   p.add(("loaded", table_name), rows_in - quarantined, implicit=True))
    return p.solve()


# --- rendering helpers -------------------------------------------------------------------------------------

def _pct(x) -> str:
    return "–" if x is None else f"{x:.1%}"


def _frac(p: Protection, num_key, den_key) -> str:
    """`n / d (p%)` with suppressed parts shown as such and the percentage only when both are published."""
    r = p.rate(num_key, den_key)
    tail = f" ({_pct(r)})" if r is not None else ""
    return f"{p.text(num_key)} / {p.text(den_key)}{tail}"


def _nav(here: str) -> str:
    here_attr = ' class="here"'
    links = " ".join(
        f'<a href="{href}"{here_attr if href == here else ""}>{html.escape(label)}</a>' for href, label in PAGES
    )
    return f'{EXTRA_CSS}<nav class="rnav">{links}</nav>'


def _raw_table(headers: list[str], rows: list[list[str]], numeric: set[int] = frozenset(),
               row_classes: list[str] | None = None) -> str:
    """A table whose cells are already HTML (escaped by the caller)."""
    head = "".join(f'<th class="{"num" if i in numeric else ""}">{html.escape(h)}</th>' for i, h in enumerate(headers))
    body = []
    for j, r in enumerate(rows):
        cls = f' class="{row_classes[j]}"' if row_classes and row_classes[j] else ""
        body.append(f"<tr{cls}>" + "".join(
            c if c.startswith("<td") else f'<td class="{"num" if i in numeric else ""}">{c}</td>'
            for i, c in enumerate(r)
        ) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _stamp(generated_at: datetime) -> str:
    if generated_at.tzinfo is not None:
        generated_at = generated_at.astimezone(timezone.utc)
    return generated_at.strftime("%Y-%m-%d %H:%M UTC")


def _period(figures: dict) -> str:
    total = figures["total"]
    if not total or not total["scans"]:
        return "No spine MRIs in the warehouse"
    return f"Spine MRIs dated {total['first_scan']} to {total['last_scan']}"


def _rs_label(figures: dict, name: str) -> str:
    version = dict(figures["rule_sets"]).get(name)
    return f"{name} {version}" if version else name


SUPPRESSION_NOTE = (
    f"Counts of 1 to {SMALL_CELL_MAX} are shown as <b>{html.escape(SUPPRESSED)}</b>. A count marked "
    f"<b>{WITHHELD}</b> is not small, but is withheld because it, together with a published total, complement "
    "or neighbouring window, would let a reader work out a suppressed count. Percentages are shown only when "
    "both of their counts are published."
)


# --- pages -------------------------------------------------------------------------------------------------

READING_WHAT = {
    "injection": "an epidural or facet injection",
    "surgery": "spine surgery",
    "electrodiagnostic": "an EMG or nerve conduction study",
    "repeat_imaging": "repeat advanced spine imaging",
    "opioid_start": "a new opioid prescription",
}


def _reading(p: Protection, figures: dict, rs: str) -> list[str]:
    """Plain-language sentences comparing potentially unnecessary with indicated MRIs, from published counts."""
    pu, ind = "potentially_unnecessary", "indicated"
    out = []
    for key, w in READING:
        what = READING_WHAT[key]
        n_pu, d_pu = ("n", rs, pu, key, w), ("den", rs, pu, w)
        n_ind, d_ind = ("n", rs, ind, key, w), ("den", rs, ind, w)
        r_pu, r_ind = p.rate(n_pu, d_pu), p.rate(n_ind, d_ind)
        if r_pu is None or r_ind is None:
            out.append(
                f"{html.escape(what[0].upper() + what[1:])} within {w} days: this comparison cannot be published "
                f"(too few scans with {w} days of follow-up, or counts under 11)."
            )
            continue
        ratio = f"; {r_pu / r_ind:.1f} times the rate" if r_ind else ""
        out.append(
            f"After potentially unnecessary MRIs, <b>{_pct(r_pu)}</b> ({p.text(n_pu)} of {p.text(d_pu)}) had "
            f"{html.escape(what)} within {w} days, against <b>{_pct(r_ind)}</b> ({p.text(n_ind)} of "
            f"{p.text(d_ind)}) after indicated MRIs{ratio}."
        )
    return out


def render_downstream(p: Protection, figures: dict, generated_at: datetime) -> str:
    names = figures["names"]
    primary = names[0]
    total = figures["total"]
    data_end = total["data_end"] if total else None
    sections = [_nav("downstream.html")]
    reading = _reading(p, figures, primary)
    sections.append(
        f"""<section><h2>What this shows ({html.escape(_rs_label(figures, primary))} rule set)</h2>
<ul class="reading">{''.join(f'<li>{s}</li>' for s in reading)}</ul>
<p class="note">A scan counts once per intervention when at least one such event falls on day 1 to N after the scan
date (events on the scan day itself do not count). Each window counts only the scans whose whole window lies
within the data (follow-up data through {html.escape(str(data_end))}), so the denominators shrink as the window
grows. These are associations in routine data, not effects of the MRI: patients with indicated MRIs differ
(red flags, neurological signs), and an intervention may have been planned before the scan.</p></section>"""
    )
    for rs in names:
        headers = ["Intervention", "Within", *[CATEGORY_LABEL[c] for c in CATEGORIES], "All spine MRIs"]
        rows, classes = [], []
        rows.append(["Spine MRIs (all dates)", "", *[p.text(("scans", rs, c)) for c in CATEGORIES],
                     p.text(("scans", "all"))])
        classes.append("total")
        for j, w in enumerate(WINDOWS):
            label = ('<td class="grp" rowspan="3">Spine MRIs with the whole window of follow-up in the data</td>'
                     if j == 0 else None)
            cells = [f"{w} days", *[p.text(("den", rs, c, w)) for c in CATEGORIES], p.text(("den", "all", w))]
            rows.append(([label] if label else []) + cells)
            classes.append("")
        for iv in INTERVENTIONS:
            for j, w in enumerate(WINDOWS):
                label = (f'<td class="grp" rowspan="{len(WINDOWS)}">{html.escape(iv.label)}</td>' if j == 0
                         else None)
                cells = [f"{w} days", *[_frac(p, ("n", rs, c, iv.key, w), ("den", rs, c, w)) for c in CATEGORIES],
                         _frac(p, ("n", "all", iv.key, w), ("den", "all", w))]
                rows.append(([label] if label else []) + cells)
                classes.append("sep" if j == 0 else "")
        body = _downstream_table(headers, rows, classes)
        sections.append(
            f"""<section><h2>Rule set {html.escape(_rs_label(figures, rs))}: spine MRIs followed by each
intervention</h2>{body}
<p class="note">Each cell: scans followed by the intervention / scans with the whole window of follow-up
(percentage). Categories as decided by the <code>{html.escape(rs)}</code> rule set; out-of-scope scans are
excluded. {SUPPRESSION_NOTE}</p></section>"""
        )
    bench_rows = []
    pu, ind = "potentially_unnecessary", "indicated"
    for study, url, design, window, finding in BENCHMARKS:
        bench_rows.append([f'<a href="{html.escape(url)}">{html.escape(study)}</a>', html.escape(design),
                           html.escape(window), html.escape(finding)])
    ours = []
    for key, w in (("surgery", 365), ("opioid_start", 365), ("injection", 180)):
        ours.append(
            f"<li>{html.escape(BY_KEY[key].label)} within {w} days: potentially unnecessary "
            f"{_frac(p, ('n', primary, pu, key, w), ('den', primary, pu, w))}, indicated "
            f"{_frac(p, ('n', primary, ind, key, w), ('den', primary, ind, w))}</li>"
        )
    sections.append(
        f"""<section class="bench"><h2>Published benchmarks <span class="tag">not our data</span></h2>
{_raw_table(["Study", "Population and comparison", "Window", "Published finding"], bench_rows)}
<p class="note">These figures come from the literature (clinical reference §8.2), for orientation only. The
studies compare early or guideline-non-adherent MRI with no early MRI in other populations and with other
definitions, so they are not directly comparable with this audit's categories. The closest figures in this
audit ({html.escape(_rs_label(figures, primary))}):</p><ul class="note">{''.join(ours)}</ul></section>"""
    )
    sections.append(
        """<section><h2>Definitions</h2><ul class="note">"""
        + "".join(f"<li><b>{html.escape(iv.label)}</b>: {html.escape(iv.definition)}.</li>" for iv in INTERVENTIONS)
        + """</ul><p class="note">Codes, windows and coverage: <a href="methodology.html">methodology</a>.
The same figures as a spreadsheet: <a href="downstream_interventions.csv">downstream_interventions.csv</a>.</p>
</section>"""
    )
    subtitle = f"{_period(figures)} · follow-up data through {data_end} · published {_stamp(generated_at)}"
    return page("Downstream interventions after spine MRI", subtitle, "\n".join(sections))


def _downstream_table(headers, rows, classes) -> str:
    head = "".join(f'<th class="{"num" if i >= 2 else ""}">{html.escape(h)}</th>' for i, h in enumerate(headers))
    body = []
    for r, cls in zip(rows, classes):
        cells = []
        grouped = r[0] is not None and str(r[0]).startswith("<td")
        offset = 0 if (grouped or len(r) == len(headers)) else 1  # rows inside a rowspan lack the first cell
        for i, c in enumerate(r):
            if str(c).startswith("<td"):
                cells.append(c)
                continue
            col = i + offset
            cells.append(f'<td class="{"num" if col >= 2 else "win" if col == 1 else ""}">{c}</td>')
        attr = f' class="{cls}"' if cls else ""
        body.append(f"<tr{attr}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


FUNNEL_LABEL = {
    "within": "within", "above_95": "▲ above 95%", "above_998": "▲ above 99.8%",
    "below_95": "▼ below 95%", "below_998": "▼ below 99.8%",
}


def unit_rows(p: Protection, figures: dict, dim: str) -> list[dict]:
    """The rows of the provider or facility table (published values only), sorted for the page."""
    names = figures["names"]
    primary = names[0]
    pu = "potentially_unnecessary"
    centre = p.rate(("scans", primary, pu), ("scans", "all"))
    out = []
    for row in figures["providers" if dim == "provider" else "facilities"]:
        u = row[f"{dim}_key"]
        specialties = row.get("specialties") or {}
        specialty = (min(specialties.items(), key=lambda kv: (-kv[1], kv[0]))[0] if specialties else None)
        r = p.rate((dim, u, primary, pu), (dim, u, "scans"))
        item = {
            "unit": u, "specialty": specialty, "scans": (dim, u, "scans"),
            **_case_mix_and_cost(p, row, (dim, u, primary, pu), (dim, u, "scans"), centre),
            "cats": {c: (dim, u, primary, c) for c in CATEGORIES},
            "rate": r,
            "other": {rs: ((dim, u, rs, pu), p.rate((dim, u, rs, pu), (dim, u, "scans"))) for rs in names[1:]},
            "fu": (dim, u, "pu_fu"), "inj": (dim, u, "pu_inj"),
            "inj_rate": p.rate((dim, u, "pu_inj"), (dim, u, "pu_fu")),
            "funnel": (funnel_position(r, centre, p.get((dim, u, "scans")))
                       if r is not None and centre is not None and 0 < centre < 1 else None),
        }
        out.append(item)
    out.sort(key=lambda it: (it["rate"] is None, -(it["rate"] or 0), -(p.get(it["scans"]) or 0), it["unit"]))
    return out


def _case_mix_and_cost(p: Protection, row: dict, pu_key, scans_key, centre) -> dict:
    """The expected rate from the unit's case mix, its adjusted rate, and the cost and scanner hours of its
    potentially unnecessary MRIs: published only with the counts they are derived from (each would reveal
    them)."""
    from assets.publish.casemix import adjusted_rate

    observed, scans = p.get(pu_key), p.get(scans_key)
    if observed is None or scans is None or not scans:
        return {"expected_rate": None, "adjusted_rate": None, "pu_cost": None, "pu_hours": None}
    expected = float(row.get("pu_expected") or 0.0)
    return {
        "expected_rate": expected / scans,
        "adjusted_rate": adjusted_rate(observed, expected, centre),
        "pu_cost": row.get("pu_cost") or 0.0,
        "pu_hours": row.get("pu_hours"),
    }


def _total_item(p: Protection, figures: dict) -> dict:
    names = figures["names"]
    primary = names[0]
    pu = "potentially_unnecessary"
    centre = p.rate(("scans", primary, pu), ("scans", "all"))
    return {
        "unit": "All", "specialty": None, "scans": ("scans", "all"),
        **_case_mix_and_cost(p, figures["total"] or {}, ("scans", primary, pu), ("scans", "all"), centre),
        "cats": {c: ("scans", primary, c) for c in CATEGORIES},
        "rate": p.rate(("scans", primary, pu), ("scans", "all")),
        "other": {rs: (("scans", rs, pu), p.rate(("scans", rs, pu), ("scans", "all"))) for rs in names[1:]},
        "fu": ("den", primary, pu, PROVIDER_WINDOW), "inj": ("n", primary, pu, "injection", PROVIDER_WINDOW),
        "inj_rate": p.rate(("n", primary, pu, "injection", PROVIDER_WINDOW), ("den", primary, pu, PROVIDER_WINDOW)),
        "funnel": None,
    }


def render_units(p: Protection, figures: dict, dim: str, generated_at: datetime) -> str:
    from assets.publish.costs import load_unit_costs

    costs = load_unit_costs()
    names = figures["names"]
    primary = names[0]
    noun, plural = ("referring provider", "referring providers") if dim == "provider" else ("facility", "facilities")
    items = unit_rows(p, figures, dim)
    total = _total_item(p, figures)
    headers = [noun.capitalize()] + (["Specialty"] if dim == "provider" else []) + [
        "Spine MRIs", "Indicated", "Potentially unnecessary", "Insufficient information",
        f"Rate, {primary}", "Expected from case mix", "Case-mix adjusted", *[f"Rate, {rs}" for rs in names[1:]],
        "Funnel limits", f"Injection within {PROVIDER_WINDOW} days",
        f"Cost of potentially unnecessary ({costs.currency})", "Their scanner hours",
    ]
    first_num = 2 if dim == "provider" else 1
    funnel_col = len(headers) - 4
    numeric = set(range(first_num, len(headers))) - {funnel_col}

    def cells(it, label):
        row = [html.escape(label)]
        if dim == "provider":
            row.append(html.escape((it["specialty"] or "–").replace("_", " ")))
        row += [p.text(it["scans"]), *[p.text(it["cats"][c]) for c in
                                       ("indicated", "potentially_unnecessary", "insufficient_information")]]
        row.append(f"<b>{_pct(it['rate'])}</b>")
        row += [_pct(it["expected_rate"]), _pct(it["adjusted_rate"])]
        row += [_pct(r) for _, r in it["other"].values()]
        f = it["funnel"]
        cls = "hi" if f and f.startswith("above") else "lo" if f and f.startswith("below") else ""
        row.append(f'<td class="win {cls}">{html.escape(FUNNEL_LABEL.get(f, "–"))}</td>')
        row.append(_frac(p, it["inj"], it["fu"]))
        row.append("–" if it["pu_cost"] is None else f"{it['pu_cost']:,.0f}")
        row.append("–" if it["pu_hours"] is None else f"{it['pu_hours']:,.0f}")
        return row

    rows = [cells(total, f"All {plural}")] + [cells(it, it["unit"]) for it in items]
    classes = ["total"] + [""] * len(items)
    n_units = len(items)
    overall = total["rate"]
    others = ", ".join(f"{_pct(r)} under {html.escape(rs)}" for rs, (_, r) in total["other"].items())
    intro = (
        f"Overall, <b>{_pct(overall)}</b> of spine MRIs ({p.text(total['cats']['potentially_unnecessary'])} of "
        f"{p.text(total['scans'])}) were potentially unnecessary under the {html.escape(_rs_label(figures, primary))} "
        f"rule set{'; ' + others if others else ''}. {n_units:,} {plural} are listed, highest potentially "
        "unnecessary rate first; those whose rate cannot be published (small numbers) follow, largest first."
    )
    if dim == "provider":
        who = ("The referring provider is the one on the referral linked to the scan (named by the scan, or the "
               "patient's latest referral for the same region in the 90 days before it); "
               f"<b>{UNKNOWN}</b> collects scans with no linked referral or no provider on it. The specialty "
               "shown is the one most often recorded on that provider's referrals.")
    else:
        who = f"The facility is the one recorded on the scan; <b>{UNKNOWN}</b> collects scans without one."
    stem = "providers" if dim == "provider" else "facilities"
    body = f"""{_nav(stem + '.html')}
<section><h2>Potentially unnecessary spine MRIs by {noun}</h2><p>{intro}</p>
{_raw_table(headers, rows, numeric=numeric, row_classes=classes)}
<p class="note">Spine MRIs: cervical, thoracic and lumbar MRIs (out-of-scope scans excluded). Counts per category
under {html.escape(_rs_label(figures, primary))}. Rate: potentially unnecessary MRIs / spine MRIs under each
rule set. Funnel limits: whether the {html.escape(primary)} rate lies above (▲) or below (▼) the 95% or 99.8%
control limits around the overall rate for a {noun} with that many spine MRIs (Spiegelhalter 2005); outside the
99.8% limits is unlikely to be chance alone. Expected from case mix: the share the {noun}'s own mix of patients
would have at the overall rates of their stratum (age band, sex, care setting, body region, referring
specialty); case-mix adjusted: observed / expected x the overall rate (indirect standardisation), so a {noun}
whose patients are mostly in high-rate strata is not penalised for it. Cost: {html.escape(costs.describe())}
({html.escape(costs.source)}); scanner hours from the scans' table time. Injection within
{PROVIDER_WINDOW} days: potentially unnecessary MRIs followed by an epidural or facet injection within
{PROVIDER_WINDOW} days / potentially unnecessary MRIs with {PROVIDER_WINDOW} days of follow-up in the data
(percentage). {who} {SUPPRESSION_NOTE}</p>
<p class="note">The same table as a spreadsheet: <a href="{stem}.csv">{stem}.csv</a>.
The individual scans: <a href="chart_review_cases.csv">chart_review_cases.csv</a>.</p></section>"""
    subtitle = (f"{_period(figures)} · rule sets {', '.join(_rs_label(figures, rs) for rs in names)} · "
                f"published {_stamp(generated_at)}")
    title = "Spine MRI by referring provider" if dim == "provider" else "Spine MRI by facility"
    return page(title, subtitle, body)


def render_methodology(p: Protection, figures: dict, generated_at: datetime) -> str:
    from assets.classify.rule_sets import load_rule_sets

    in_warehouse = dict(figures["rule_sets"])
    try:
        available = {rs.name: rs for rs in load_rule_sets()}
    except (OSError, ValueError):
        available = {}
    names = figures["names"]
    toc = [("coverage", "Data coverage")]
    toc += [(f"rules-{_slug(n)}", f"Rule set {n}") for n in names]
    toc += [("downstream", "Downstream interventions"), ("suppression", "Small-cell suppression"),
            ("value-sets", "Value sets"), ("sources", "Sources")]
    sections = [_nav("methodology.html"), '<section><h2>Contents</h2><p>' + " · ".join(
        f'<a href="#{a}">{html.escape(t)}</a>' for a, t in toc) + "</p></section>"]

    # What was audited.
    period = figures["period"]
    ev_start, ev_end = figures["events_period"]
    region_rows = [
        ("lumbar", p.text(("region", "lumbar"))), ("cervical", p.text(("region", "cervical"))),
        ("thoracic", p.text(("region", "thoracic"))), ("spine MRIs, total", p.text(("region", "spine"))),
        ("other scans (out of scope)", p.text(("region", "other"))), ("all scans", p.text(("region", "all"))),
    ]
    cov = ("coverage", "scans")
    cov_rows = [
        ["with a linked referral (named by the scan, or inferred within 90 days)",
         _frac(p, ("coverage", "linked"), cov)],
        ["whose patient has history events on or before the scan date", _frac(p, ("coverage", "history"), cov)],
        ["whose patient has events after the scan date (follow-up)", _frac(p, ("coverage", "follow_up"), cov)],
    ]
    file_rows = [[html.escape(t), p.text(("rows_in", t)), p.text(("quarantined", t)),
                  _pct(p.rate(("quarantined", t), ("rows_in", t)))] for t, _, _, _ in figures["files"]]
    total = figures["total"] or {}
    sections.append(
        f"""<section id="coverage"><h2>Data coverage</h2>
<p>Scans dated {html.escape(str(period[0]))} to {html.escape(str(period[1]))}; history and follow-up events dated
{html.escape(str(ev_start))} to {html.escape(str(ev_end))}. Follow-up is counted through
{html.escape(str(total.get('data_end') or '–'))}, the latest event or scan date in the warehouse.</p>
{table(["scans by body region", "scans"], region_rows, numeric={1})}
<p></p>{_raw_table(["spine MRIs ...", "scans / spine MRIs (share)"], cov_rows, numeric={1})}
<p></p>{_raw_table(["input table", "rows received", "rows quarantined", "share quarantined"], file_rows,
                    numeric={1, 2, 3})}
<p class="note">Quarantined rows are kept out of the warehouse with their reason (see the quality report). A scan
without a linked referral is classified from its own codes and history; a patient without history events can
show no conservative care and no downstream events.</p></section>"""
    )

    # The rule sets.
    base_params = available[names[0]].parameters if names and names[0] in available else {}
    for name in names:
        rs = available.get(name)
        version = in_warehouse.get(name, "–")
        anchor = f"rules-{_slug(name)}"
        if rs is None:
            sections.append(f'<section id="{anchor}"><h2>Rule set {html.escape(name)} {html.escape(version)}</h2>'
                            "<p class='note'>Its definition file is not in guidelines/rule_sets/.</p></section>")
            continue
        note = ""
        if rs.version != version:
            note = (f"<p class='warn'>The warehouse was classified with version {html.escape(version)}; the "
                    f"definition shown is version {html.escape(rs.version)}.</p>")
        if name == names[0] or not base_params:
            params = sorted(rs.parameters.items())
            params_note = "Parameters (windows in days; empty means any time before the scan):"
        else:
            params = sorted((k, v) for k, v in rs.parameters.items() if base_params.get(k) != v)
            params_note = f"Parameters: the same as {html.escape(names[0])}" + (", except:" if params else ".")
        params_html = (table(["parameter", "value"], [(k, "any time" if v is None else str(v)) for k, v in params])
                       if params else "")
        rules_html = table(
            ["#", "rule", "category", "reason", "description", "citation"],
            [(i, r["id"], r["category"], r["reason"], r["description"], r["citation"])
             for i, r in enumerate(rs.rules, start=1)],
            numeric={0},
        )
        sections.append(
            f"""<section id="{anchor}"><h2>Rule set <code>{html.escape(name)}</code> {html.escape(version)}:
{html.escape(rs.title)}</h2>
{note}<p>{html.escape(rs.description)}</p>
<p class="note">Rules are tried in order; the first that holds decides the category, and every rule of that
category that holds adds its reason, so the most decisive reason comes first.</p>{rules_html}
<p class="note" style="margin-top:14px">{params_note}</p>{params_html}</section>"""
        )

    # Downstream interventions.
    codes: dict = {}
    for concept, system, code, match, _ in figures["downstream_codes"]:
        codes.setdefault((concept, system), []).append(code + ("*" if match == "prefix" else ""))
    code_rows = []
    for iv in INTERVENTIONS:
        for (concept, system), values in codes.items():
            if concept != iv.concept:
                continue
            counted = not (iv.concept == "lumbar_surgery" and system == "ICD10CM")
            code_rows.append((iv.label, concept, system, ", ".join(values),
                              "yes" if counted else "no: records earlier surgery"))
    sections.append(
        f"""<section id="downstream"><h2>Downstream interventions</h2>
<p>For each spine MRI, the first event of each kind on day 1 to N after the scan date is looked up in the
patient's history events (<code>clinical_events</code>) and, for repeat imaging, in the patient's later scans.
The scan day itself does not count. Windows: {', '.join(str(w) for w in WINDOWS)} days (Webster 2014 used
6 months, Jacobs 2020 one year). A scan counts once per intervention and window, however many events follow it.
Each window counts only the scans whose whole window lies within the data, so that recent scans, whose follow-up
is not complete yet, do not lower the rates.</p><ul>"""
        + "".join(f"<li><b>{html.escape(iv.label)}</b>: {html.escape(iv.definition)}.</li>" for iv in INTERVENTIONS)
        + f"""</ul>{table(["intervention", "value set", "code system", "codes (* every code under the prefix)",
                          "counted as an event"], code_rows)}</section>"""
    )
    sections.append(
        f"""<section id="suppression"><h2>Small-cell suppression</h2><p>{SUPPRESSION_NOTE}</p>
<p>This follows the CMS cell-size suppression policy: no cell counting 1 to {SMALL_CELL_MAX} scans, patients or
events is published, nor any figure from which one could be calculated. The reports check every total (categories
add up to all spine MRIs, providers and facilities add up to the overall row), every complement (scans with and
without an event), differences between windows, and what the <b>{html.escape(SUPPRESSED)}</b> and
<b>{WITHHELD}</b> labels themselves reveal (for example, two suppressed cells that must add up to 2 are both 1),
and withhold further counts until no count of 1 to {SMALL_CELL_MAX} can be worked out. The chart-review case list
(<code>chart_review_cases.csv</code>) is row-level, not an aggregate: one row per scan with its pseudonymous scan
id and no patient id, for clinical review inside the organisation.</p></section>"""
    )
    sections.append(
        f"""<section id="value-sets"><h2>Value sets</h2><p class="note">Code lists in force for the run, per
concept (from <code>guidelines/value_sets/</code>, loaded as <code>value_set_codes</code>). These are sizes of
definitions, not counts of patients, and are not suppressed.</p>
{table(["concept", "codes", "code systems", "match"], figures["value_sets"], numeric={1})}</section>"""
    )
    source_rows = [[html.escape(name), html.escape(detail),
                    f'<a href="{html.escape(url)}" style="word-break:break-all">{html.escape(url)}</a>']
                   for name, detail, url in SOURCES]
    sections.append(
        f"""<section id="sources"><h2>Sources</h2>{_raw_table(["source", "what it provides", "link"], source_rows)}
<p class="note">Clinical detail behind each rule and code list: the sources above, the code lists with the
source of every code in <code>guidelines/value_sets/</code>, every change with its source in
<code>guidelines/CHANGELOG.md</code>, and how each figure is made in <code>docs/methodology.md</code>.</p></section>"""
    )
    subtitle = f"{_period(figures)} · published {_stamp(generated_at)}"
    return page("Spine MRI audit: methodology", subtitle, "\n".join(sections))


def render_index(p: Protection, figures: dict, generated_at: datetime) -> str:
    names = figures["names"]
    primary = names[0]
    pu, ind = "potentially_unnecessary", "indicated"
    w = PROVIDER_WINDOW
    tiles = [
        (p.text(("scans", "all")), "spine MRIs audited (cervical, thoracic, lumbar)"),
        (_pct(p.rate(("scans", primary, pu), ("scans", "all"))),
         f"potentially unnecessary under {_rs_label(figures, primary)} "
         f"({p.text(('scans', primary, pu))} of {p.text(('scans', 'all'))})"),
    ]
    for rs in names[1:]:
        tiles.append((_pct(p.rate(("scans", rs, pu), ("scans", "all"))),
                      f"potentially unnecessary under {_rs_label(figures, rs)}"))
    tiles.append((
        f"{_pct(p.rate(('n', primary, pu, 'injection', w), ('den', primary, pu, w)))} vs "
        f"{_pct(p.rate(('n', primary, ind, 'injection', w), ('den', primary, ind, w)))}",
        f"injection within {w} days after potentially unnecessary vs indicated MRIs",
    ))
    tiles_html = "".join(
        f'<div class="tile"><div class="n">{html.escape(str(n))}</div><div class="l">{html.escape(label)}</div></div>'
        for n, label in tiles
    )
    links = [
        ("downstream.html", "Downstream interventions",
         "Injections, surgery, EMG/nerve conduction studies, repeat imaging and new opioid prescriptions within "
         "90, 180 and 365 days, after potentially unnecessary against indicated MRIs, with published benchmarks."),
        ("providers.html", "Referring providers",
         "Spine MRIs and potentially unnecessary rates per referring provider, against the overall rate."),
        ("facilities.html", "Facilities", "The same per facility."),
        ("chart_review_cases.csv", "Chart-review case list (CSV)",
         f"Every scan classified potentially unnecessary under {primary}, one row per scan (pseudonymous scan "
         "id, reasons, evidence, the other rule sets' verdicts and downstream flags), for clinical review inside "
         "the organisation."),
        ("review.html", "Chart review",
         "The next review sample (review_worklist.csv), one case at a time: reviewers confirm or correct verdicts "
         "offline and save a chart_reviews file for the landing folder."),
        ("validation.html", "How far the automation can be trusted",
         "Agreement between verdicts and chart reviews: PPV per category, Cohen's kappa, the confusion matrix and "
         "the rules reviewers overturn most."),
        ("methodology.html", "Methodology",
         "Rule sets and their rules, windows, code lists, small-cell suppression, data coverage and sources."),
    ]
    links_html = "".join(
        f'<li><a href="{href}"><b>{html.escape(label)}</b></a>: {html.escape(text)}</li>' for href, label, text in links
    )
    total = figures["total"]
    data_end = total["data_end"] if total else "–"
    from assets.review.pages import reviewed_rates_section

    rates = reviewed_rates_section(figures["reviewed_rates"], "validation.html") if figures.get("reviewed_rates") else ""
    body = f"""{_nav("index.html")}<div class="tiles">{tiles_html}</div>{rates}
<section><h2>Reports</h2><ul class="reading">{links_html}</ul>
<p class="note">Rule sets: {', '.join(html.escape(_rs_label(figures, rs)) for rs in names)}. Follow-up data through
{html.escape(str(data_end))}. {SUPPRESSION_NOTE} Utilization dashboard:
<a href="../dashboards/index.html">dashboards</a>.</p></section>"""
    subtitle = f"{_period(figures)} · published {_stamp(generated_at)}"
    return page("Spine MRI overtreatment reports", subtitle, body)


# --- CSV files ---------------------------------------------------------------------------------------------

def _pct_csv(x):
    return "" if x is None else round(100 * x, 1)


class _Count:
    """A protected count in a CSV row: its number when published, else an empty cell and a flag."""

    __slots__ = ("key",)

    def __init__(self, key):
        self.key = key


SUPPRESSED_COLUMN = "suppressed"  # `column:small;column:withheld`, the cells left empty in this row


def _csv_row(p: Protection, header: list[str], cells: list) -> list:
    """Counts stay numbers in numeric columns (spreadsheets and pandas read them as such); a suppressed or
    withheld count is an empty cell, and the row's `suppressed` column names it and says which."""
    values, flags = [], []
    for column, cell in zip(header, cells):
        if isinstance(cell, _Count):
            status = p.status(cell.key)
            if status == "published":
                values.append(p.values[cell.key])
                continue
            flags.append(f"{column}:{'small' if status == 'small' else 'withheld'}")
            cell = ""
        values.append(cell)
    return values + [";".join(flags)]


def downstream_csv(p: Protection, figures: dict) -> tuple[str, int]:
    header = ["rule_set", "rule_set_version", "category", "intervention", "intervention_concept", "window_days",
              "spine_mris", "scans_with_full_follow_up", "scans_with_event", "percent"]
    rows = []
    versions = dict(figures["rule_sets"])
    for rs in figures["names"]:
        for c in (*CATEGORIES, "all"):
            scans_key = ("scans", "all") if c == "all" else ("scans", rs, c)
            for iv in INTERVENTIONS:
                for w in WINDOWS:
                    n = ("n", "all", iv.key, w) if c == "all" else ("n", rs, c, iv.key, w)
                    d = ("den", "all", w) if c == "all" else ("den", rs, c, w)
                    rows.append(_csv_row(p, header, [
                        rs, versions.get(rs, ""), "all_spine_mri" if c == "all" else c, iv.key, iv.concept, w,
                        _Count(scans_key), _Count(d), _Count(n), _pct_csv(p.rate(n, d))]))
    return csv_text(header + [SUPPRESSED_COLUMN], rows), len(rows)


def units_csv(p: Protection, figures: dict, dim: str) -> tuple[str, int]:
    names = figures["names"]
    primary = names[0]
    slug0 = _slug(primary)
    id_col = "referring_provider_id" if dim == "provider" else "facility_id"
    header = ["row_type", id_col] + (["referring_specialty"] if dim == "provider" else []) + [
        "spine_mris", f"{slug0}_indicated", f"{slug0}_potentially_unnecessary",
        f"{slug0}_insufficient_information", f"{slug0}_potentially_unnecessary_pct",
    ]
    for rs in names[1:]:
        header += [f"{_slug(rs)}_potentially_unnecessary", f"{_slug(rs)}_potentially_unnecessary_pct"]
    header += [f"pu_mris_with_{PROVIDER_WINDOW}d_follow_up", f"pu_mris_injection_within_{PROVIDER_WINDOW}d",
               f"injection_within_{PROVIDER_WINDOW}d_pct", "funnel_position",
               f"{slug0}_expected_pct", f"{slug0}_case_mix_adjusted_pct", "cost_of_pu_mris", "scanner_hours_of_pu_mris"]
    out = []
    for kind, it in [("total", _total_item(p, figures))] + [(dim, it) for it in unit_rows(p, figures, dim)]:
        row = [kind, "(all)" if kind == "total" else it["unit"]]
        if dim == "provider":
            row.append(it["specialty"] or "")
        row += [_Count(it["scans"]), _Count(it["cats"]["indicated"]), _Count(it["cats"]["potentially_unnecessary"]),
                _Count(it["cats"]["insufficient_information"]), _pct_csv(it["rate"])]
        for rs in names[1:]:
            key, r = it["other"][rs]
            row += [_Count(key), _pct_csv(r)]
        row += [_Count(it["fu"]), _Count(it["inj"]), _pct_csv(it["inj_rate"]), it["funnel"] or ""]
        row += [_pct_csv(it["expected_rate"]), _pct_csv(it["adjusted_rate"]),
                "" if it["pu_cost"] is None else round(it["pu_cost"], 2),
                "" if it["pu_hours"] is None else round(it["pu_hours"], 1)]
        out.append(_csv_row(p, header, row))
    return csv_text(header + [SUPPRESSED_COLUMN], out), len(out)


# --- entry point -------------------------------------------------------------------------------------------

def build_reports(con, out_dir: Path, generated_at: datetime, previous_feedback: Path | None = None) -> dict:
    """Write the overtreatment reports into `out_dir`; returns the files written and their row counts.

    `con` may be read-only: only SELECT and COPY ... TO are run. Needs the warehouse tables `mri_classification`,
    `scan_links`, `scans_current`, `referrals_current`, `clinical_events`, `value_set_codes`, `ingest_files` and
    `quarantine`.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = gather(con)
    protection = build_protection(figures)
    names = figures["names"]
    from assets.review.pages import reviewed_rates

    figures["reviewed_rates"] = reviewed_rates(con)

    rows: dict[str, int] = {}
    case_path = out_dir / "chart_review_cases.csv"
    rows[case_path.name] = copy_query_to_csv(con, cases_sql(names, with_ctes=False), case_path)
    text, rows["downstream_interventions.csv"] = downstream_csv(protection, figures)
    write_text_atomic(out_dir / "downstream_interventions.csv", text)
    text, rows["providers.csv"] = units_csv(protection, figures, "provider")
    write_text_atomic(out_dir / "providers.csv", text)
    text, rows["facilities.csv"] = units_csv(protection, figures, "facility")
    write_text_atomic(out_dir / "facilities.csv", text)
    pages = {
        "downstream.html": render_downstream(protection, figures, generated_at),
        "providers.html": render_units(protection, figures, "provider", generated_at),
        "facilities.html": render_units(protection, figures, "facility", generated_at),
        "methodology.html": render_methodology(protection, figures, generated_at),
        "index.html": render_index(protection, figures, generated_at),
    }
    for name, text in pages.items():
        write_text_atomic(out_dir / name, text)
    from assets.review.pages import write_review_reports

    rows.update(write_review_reports(con, out_dir, generated_at))
    from assets.publish.feedback import write_feedback

    feedback = write_feedback(con, protection, figures, unit_rows(protection, figures, "provider"),
                              out_dir / "feedback", generated_at, previous=previous_feedback)
    total = figures["total"] or {}
    return {
        "files": sorted({*rows, *pages, *feedback.pop("files")}),
        "rows": rows,
        "rule_sets": [f"{rs} {v}" for rs, v in figures["rule_sets"]],
        "period": [str(x) if x is not None else None for x in (total.get("first_scan"), total.get("last_scan"))],
        "follow_up_through": str(total["data_end"]) if total.get("data_end") else None,
        "cells": protection.counts(),
        **feedback,
        "seconds": round(time.perf_counter() - started, 2),
    }
