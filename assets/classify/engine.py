"""The classification engine: features per scan in DuckDB SQL, then the rule set's ordered rules.

Set-based, without a Python loop over scans:

1. `_ctx` (once per run): each scan with its linked referral, keyed by an integer `sid`.
2. `_cfacts` (once per run): every coded fact about the scan's patient up to the scan date that maps to a
   concept the rules read - the referral's and the scan's diagnosis codes, and history events no older than
   any rule set looks back - with the days between fact and scan.
3. Base features (once per distinct set of window parameters): `_hits` (facts that make a coded feature of
   guidelines/features.yaml true within its look-back, plus runs of systemic steroids long enough to count as
   immunosuppression), their evidence text, the episode start, conservative care in the OP-8 windows, prior
   MRI of the same region; stored in `scan_feature_values` (the view `scan_features` adds the rule set and
   its derived features).
4. `mri_classification` rows per rule set: the first rule that holds decides the category; every rule of that
   category that holds adds its reason and its evidence, most decisive first.

With a set of patients (a nightly run) the same SQL runs on their scans only.
"""

from __future__ import annotations

from assets.classify.rule_sets import RuleSet
from assets.classify.value_sets import concept_match_sql
from assets.ingest.contract import SPINE_MRI_REGIONS
from assets.ingest.linking import region_case

CONTRAST_CODES = ("72142", "72147", "72149", "72156", "72157", "72158")
INTERVENTION_SPECIALTIES = ("orthopedics", "neurosurgery", "pain_medicine", "physiatry")

# Features computed here (besides the coded features of features.yaml) that rules may use.
DERIVED_FEATURES = {
    "not_spine_mri": "body_region = 'other'",
    "prior_lumbar_surgery": "body_region = 'lumbar' AND lumbar_surgery",
    # Z98.1 / M96.1 name no site: on a lumbar MRI with no lumbar procedure code they neither justify the scan nor
    # let it be called unnecessary (docs/rule-authoring.md, "Prior spine surgery").
    "surgery_site_unknown": "body_region = 'lumbar' AND spine_surgery_site_unknown AND NOT lumbar_surgery",
    "early": "days_since_onset IS NOT NULL AND days_since_onset < {early_mri_days}",
    "established": "days_since_onset IS NOT NULL AND days_since_onset >= {early_mri_days}",
    "onset_unknown": "days_since_onset IS NULL AND pain_indication",
    "conservative_care": "conservative_care",
    "repeat_mri": "repeat_mri",
    "no_indication": "NOT pain_indication AND episode_start IS NULL",
    "elderly": "coalesce(patient_age >= {elderly_min_age}, false)",
    "intervention_candidate": (
        "neurological_symptoms OR motor_deficit OR coalesce(referring_specialty IN "
        + str(INTERVENTION_SPECIALTIES)
        + ", false)"
    ),
}


def _lit(value) -> str:
    return "NULL" if value is None else str(int(value))


def _sql_str(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


# ---------------------------------------------------------------------------------------------------------
# Rule conditions: a feature name, or {all: [...]}, {any: [...]}, {not: ...}.

def compile_condition(expr, known: set[str]) -> str:
    if isinstance(expr, str):
        if expr not in known:
            raise ValueError(f"unknown feature {expr!r} (known: {', '.join(sorted(known))})")
        return f"f.{expr}"
    if isinstance(expr, dict) and len(expr) == 1:
        (op, arg), = expr.items()
        if op == "not":
            return f"(NOT coalesce({compile_condition(arg, known)}, false))"
        if op in ("all", "any") and isinstance(arg, list) and arg:
            joiner = " AND " if op == "all" else " OR "
            return "(" + joiner.join(f"coalesce({compile_condition(a, known)}, false)" for a in arg) + ")"
    raise ValueError(f"cannot read rule condition {expr!r}: use a feature name, all, any or not")


def condition_features(expr) -> list[str]:
    """Feature names a condition uses positively (their evidence explains the verdict)."""
    if isinstance(expr, str):
        return [expr]
    (op, arg), = expr.items()
    if op == "not":
        return []
    return [name for a in arg for name in condition_features(a)]


def validate_rule_set(rule_set: RuleSet, coded_features: dict) -> None:
    """Raise ValueError naming the file when a rule uses an unknown feature or a parameter is missing."""
    known = set(coded_features) | set(DERIVED_FEATURES)
    for rule in rule_set.rules:
        try:
            compile_condition(rule["when"], known)
        except ValueError as exc:
            raise ValueError(f"{rule_set.path}: rule {rule['id']}: {exc}") from None
    for feature, spec in coded_features.items():
        for item in spec["concepts"]:
            if item.get("lookback") is not None and item["lookback"] not in rule_set.parameters:
                raise ValueError(f"{rule_set.path}: no parameter {item['lookback']!r} (used by feature {feature})")
    needed = {"early_mri_days", "lbp_clean_period_days", "episode_link_lookback_days", "op8_pt_lookback_days",
              "op8_chiro_lookback_days", "op8_em_min_days", "op8_em_max_days", "conservative_min_days",
              "medication_trial_lookback_days", "steroid_lookback_days", "steroid_min_consecutive_days",
              "repeat_mri_lookback_days", "elderly_min_age", "conservative_care_counts_osteopathic_manipulation",
              "conservative_care_counts_emergency_visits"}
    missing = sorted(needed - set(rule_set.parameters))
    if missing:
        raise ValueError(f"{rule_set.path}: missing parameter(s) {', '.join(missing)}")


# ---------------------------------------------------------------------------------------------------------

# Concepts the engine reads besides those of features.yaml, with how far back in the history each is read:
# a parameter name, None for the whole history, or False when only the referral's and scan's own codes count.
ENGINE_CONCEPTS = {
    "spine_pain": None,                 # episodes: a clean period may reach back years
    "low_back_pain": False,             # the indication: referral and scan codes only
    "physical_therapy": "op8_pt_lookback_days",
    "chiropractic": "op8_chiro_lookback_days",
    "osteopathic_manipulation": "op8_chiro_lookback_days",
    "evaluation_management": "op8_em_max_days",
    "emergency_visit": "op8_em_max_days",
    "first_line_medication": "medication_trial_lookback_days",
    "systemic_corticosteroid": None,    # fills chain into runs that may start before the window
}


def history_lookbacks(rule_sets: list[RuleSet], coded_features: dict) -> dict:
    """For each concept, how many days of history any of the rule sets can read (None: all; False: none).

    Facts older than that cannot change a verdict, so they are never joined to scans: at a million scans this
    skips most of the history (E&M visits, for one, count only 28-60 days before the scan).
    """
    needs: dict[str, list] = {}
    for feature in coded_features.values():
        for item in feature["concepts"]:
            needs.setdefault(item["concept"], []).append(item.get("lookback"))
    for concept, parameter in ENGINE_CONCEPTS.items():
        needs.setdefault(concept, []).append(parameter)
    lookbacks = {}
    for concept, parameters in needs.items():
        days = []
        for parameter in parameters:
            if parameter is False:
                continue
            for rule_set in rule_sets:
                days.append(None if parameter is None else rule_set.parameters.get(parameter))
        lookbacks[concept] = False if not days else (None if None in days else max(days))
    return lookbacks


def build_context(con, rule_sets: list[RuleSet], coded_features: dict, patients: str | None = None) -> None:
    """Scans with their linked referral (`_ctx`), and every coded fact about each scan's patient up to the scan
    that maps to a concept the rules use (`_cfacts`).

    Scans get an integer key `sid` (their row id in `scan_links`; numbering them with a window function would
    run on one thread): every later join and grouping runs on it, several times cheaper than hashing VARCHAR
    ids. Facts are matched to concepts before they are joined to scans, and history older than any rule set
    looks back is left out, so codes no rule reads never multiply by the scans of their patient. With
    `patients` (a table with `patient_id`) only their scans are built.
    """
    lookbacks = history_lookbacks(rule_sets, coded_features)
    concepts = sorted(lookbacks)
    only = f"WHERE l.patient_id IN (SELECT patient_id FROM {patients})" if patients else ""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _ctx AS
        SELECT l.rowid AS sid,
               l.scan_id, l.patient_id, l.scan_date, l.procedure_code, l.body_region, l.referral_id, l.link_method,
               r.referral_date, r.diagnosis_codes AS referral_codes, s.diagnosis_codes AS scan_codes,
               CASE WHEN r.symptom_onset_date <= l.scan_date THEN r.symptom_onset_date END AS documented_onset,
               r.patient_age, r.referring_specialty, r.care_setting
        FROM scan_links l
        JOIN scans_current s USING (scan_id)
        LEFT JOIN referrals_current r ON r.referral_id = l.referral_id
        {only}"""
    )
    concept_list = ", ".join(_sql_str(c) for c in concepts)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _code_concepts AS
        WITH c AS (
            SELECT DISTINCT code_system, code FROM clinical_events
            UNION SELECT 'ICD10CM', unnest(referral_codes) FROM _ctx
            UNION SELECT 'ICD10CM', unnest(scan_codes) FROM _ctx
        ),
        m AS ({concept_match_sql('c', with_region=True)})
        SELECT * FROM m WHERE concept IN ({concept_list})"""
    )
    history_rows = ", ".join(
        f"({_sql_str(c)}, {'NULL' if days is None else _lit(days)})"
        for c, days in lookbacks.items() if days is not False
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _cfacts AS
        WITH own AS (
            SELECT sid, 'referral' AS source, referral_date AS fact_date, unnest(referral_codes) AS code
            FROM _ctx WHERE referral_codes IS NOT NULL
            UNION ALL
            SELECT sid, 'scan', scan_date, unnest(scan_codes) FROM _ctx
        ),
        reach (concept, lookback) AS (VALUES {history_rows}),
        events AS (
            SELECT e.patient_id, e.event_date, e.code_system, e.code, e.days_supply, cc.concept, cc.region, r.lookback
            FROM clinical_events e JOIN _code_concepts cc USING (code_system, code) JOIN reach r USING (concept)
        )
        SELECT o.sid, o.source, o.fact_date, 'ICD10CM' AS code_system, o.code, CAST(NULL AS INTEGER) AS days_supply,
               cc.concept, c.scan_date - o.fact_date AS days_before
        FROM own o
        JOIN _code_concepts cc ON cc.code_system = 'ICD10CM' AND cc.code = o.code
        JOIN _ctx c USING (sid)
        WHERE cc.region IS NULL OR cc.region = c.body_region
        UNION ALL
        SELECT c.sid, 'history', e.event_date, e.code_system, e.code, e.days_supply, e.concept,
               c.scan_date - e.event_date
        FROM events e JOIN _ctx c ON c.patient_id = e.patient_id AND e.event_date <= c.scan_date
        WHERE (e.lookback IS NULL OR c.scan_date - e.event_date <= e.lookback)
          AND (e.region IS NULL OR e.region = c.body_region)"""
    )
    _add_text_facts(con, concepts)


def _add_text_facts(con, concepts: list[str]) -> None:
    """Findings read in the referral's text (assets/text/) that can count, as facts of source 'text': dated by
    the referral, or by "... ago" when the text says when ("fall 3 weeks ago"); `code` is the quoted words with
    their status. Also `_text_context`: per scan, the text's symptom onset, conservative care with a duration,
    and the mentions seen but not counted. Empty when the text stage has not run."""
    from assets.resources import relation_kind
    from assets.text.findings import FINDINGS_TABLE

    if relation_kind(con, FINDINGS_TABLE) is None:
        con.execute(
            """CREATE OR REPLACE TEMP TABLE _text_context (sid BIGINT, text_onset DATE, text_onset_quote VARCHAR,
                   text_care_days INTEGER, ev_text_care VARCHAR, ev_text_not_counted VARCHAR)"""
        )
        return
    concept_list = ", ".join(_sql_str(c) for c in concepts)
    con.execute(
        f"""INSERT INTO _cfacts
        SELECT c.sid, 'text', c.referral_date - coalesce(t.days_ago, 0), 'TEXT',
               '"' || t.quote || '" (' || t.status || ')', CAST(NULL AS INTEGER), t.concept,
               c.scan_date - (c.referral_date - coalesce(t.days_ago, 0))
        FROM _ctx c JOIN {FINDINGS_TABLE} t ON t.referral_id = c.referral_id
        WHERE t.kind = 'finding' AND t.counts AND t.concept IN ({concept_list})
          AND c.referral_date - coalesce(t.days_ago, 0) <= c.scan_date"""
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _text_context AS
        WITH t AS (
            SELECT c.sid, c.referral_date, t.*,
                   CASE WHEN t.kind = 'symptom_duration' THEN c.referral_date - t.days
                        WHEN t.kind = 'onset' AND t.onset_month IS NOT NULL
                        THEN make_date(year(c.referral_date) - CAST(t.onset_month > month(c.referral_date) AS INTEGER),
                                       t.onset_month, 1)
                        WHEN t.kind = 'onset' THEN c.referral_date - t.days END AS onset_date
            FROM _ctx c JOIN {FINDINGS_TABLE} t ON t.referral_id = c.referral_id
        )
        SELECT sid,
               min(onset_date) AS text_onset,
               arg_min('"' || quote || '"', onset_date) AS text_onset_quote,
               max(days) FILTER (WHERE kind = 'care' AND counts) AS text_care_days,
               nullif(array_to_string(list('text: "' || quote || '" (' || replace(concept, '_', ' ')
                   || coalesce(', ' || days || ' days', ', duration not stated') || ')' ORDER BY span_start)
                   FILTER (WHERE kind = 'care' AND counts), '; '), '') AS ev_text_care,
               nullif(array_to_string(list('text: "' || quote || '" (' || status || ', not counted)' ORDER BY span_start)
                   FILTER (WHERE kind IN ('finding', 'care') AND NOT counts), '; '), '') AS ev_text_not_counted
        FROM t GROUP BY sid"""
    )


def dotted(code_sql: str, system_sql: str = "'ICD10CM'") -> str:
    """SQL showing an ICD-10-CM code the way clinicians write it (C7951 -> C79.51)."""
    return (
        f"CASE WHEN {system_sql} = 'ICD10CM' AND length({code_sql}) > 3 "
        f"THEN left({code_sql}, 3) || '.' || substr({code_sql}, 4) ELSE {code_sql} END"
    )


def _fact_text(prefix: str = "") -> str:
    """SQL rendering one fact for a clinician: `C79.51 on the referral (2025-03-01)`."""
    return (
        f"CASE WHEN {prefix}source = 'text' THEN 'text: ' ELSE '' END || "
        f"{dotted(prefix + 'code', prefix + 'code_system')} || CASE {prefix}source "
        f"WHEN 'referral' THEN ' on the referral (' WHEN 'text' THEN ' on the referral (' "
        f"WHEN 'scan' THEN ' on the scan (' "
        f"WHEN 'prior_scan' THEN ' prior scan (' ELSE ' in history (' END "
        f"|| CAST({prefix}fact_date AS VARCHAR) || ')'"
    )


# Parameters used only by derived features or by the HEDIS measure: rule sets that differ only in these share
# one computation of the base features.
_DERIVED_ONLY_PARAMETERS = ("early_mri_days", "elderly_min_age")


def _base_key(p: dict) -> str:
    import json

    return json.dumps(
        {k: v for k, v in p.items() if k not in _DERIVED_ONLY_PARAMETERS and not k.startswith("hedis_")},
        sort_keys=True,
    )


def feature_set_id(p: dict) -> str:
    """A short stable id for the base features a rule set's parameters produce (rule sets sharing it share rows
    in `scan_feature_values`)."""
    import hashlib

    return hashlib.sha1(_base_key(p).encode()).hexdigest()[:12]


def _derived_columns(values: dict) -> str:
    """The derived features as SQL columns; `values` maps each parameter they use to a literal or a column."""
    return ",\n".join(
        f"({sql.format(**values)}) AS {name}"
        for name, sql in DERIVED_FEATURES.items()
        if name not in ("conservative_care", "repeat_mri")
    )


def build_features(con, rule_set: RuleSet, coded_features: dict, cache: dict | None = None) -> None:
    """Create `_features` for one rule set: one row per scan (base features are reused from the previous rule
    set when only derived-feature parameters differ)."""
    p = rule_set.parameters
    key = _base_key(p)
    if cache is None or cache.get("base_key") != key:
        _build_base_features(con, p, coded_features)
        if cache is not None:
            cache["base_key"] = key
    derived = _derived_columns({k: _lit(p[k]) for k in _DERIVED_ONLY_PARAMETERS})
    con.execute(f"CREATE OR REPLACE TEMP VIEW _features AS SELECT *, {derived} FROM _base_features")


def _build_base_features(con, p: dict, coded_features: dict) -> None:
    """The features that depend on the windows of a rule set but not on its rules: `_base_features`."""
    # Which concept makes which feature, and how far back it counts, under this rule set's parameters.
    con.execute("CREATE OR REPLACE TEMP TABLE _feature_concepts (feature VARCHAR, label VARCHAR, concept VARCHAR, lookback INTEGER)")
    rows = []
    for feature, spec in coded_features.items():
        for item in spec["concepts"]:
            lookback = item.get("lookback")
            if lookback is not None and lookback not in p:
                raise ValueError(f"features.yaml: {feature} uses unknown parameter {lookback!r}")
            rows.append([feature, spec.get("label", feature), item["concept"], None if lookback is None else p[lookback]])
    con.executemany("INSERT INTO _feature_concepts VALUES (?, ?, ?, ?)", rows)

    # Runs of systemic corticosteroid supply: fills chained without a gap, clipped to the look-back window.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _steroid_runs AS
        WITH fills AS (
            SELECT sid, fact_date AS start_date,
                   fact_date + CAST(greatest(coalesce(days_supply, 1), 1) - 1 AS INTEGER) AS end_date
            FROM _cfacts WHERE concept = 'systemic_corticosteroid' AND source = 'history'
        ),
        ordered AS (
            SELECT *, max(end_date) OVER (PARTITION BY sid ORDER BY start_date, end_date
                                          ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end
            FROM fills
        ),
        runs AS (
            SELECT *, sum(CASE WHEN prev_end IS NULL OR start_date > prev_end + 1 THEN 1 ELSE 0 END)
                      OVER (PARTITION BY sid ORDER BY start_date, end_date) AS run_id
            FROM ordered
        )
        SELECT r.sid, min(r.start_date) AS run_start, max(r.end_date) AS run_end,
               least(max(r.end_date), any_value(c.scan_date))
                 - greatest(min(r.start_date), any_value(c.scan_date) - {_lit(p['steroid_lookback_days'])}) + 1
                 AS days_in_window
        FROM runs r JOIN _ctx c USING (sid)
        GROUP BY r.sid, r.run_id"""
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _hits AS
        SELECT f.sid, fc.feature, fc.label, f.source, f.fact_date, f.code_system, f.code, f.days_before
        FROM _cfacts f JOIN _feature_concepts fc USING (concept)
        WHERE (f.source IN ('referral', 'scan') OR fc.lookback IS NULL OR f.days_before <= fc.lookback)
          AND (f.source <> 'text' OR {'true' if p.get('text_findings_count', False) else 'false'})
        UNION ALL
        -- a long enough run of steroid supply is a fact of every feature that lists chronic_steroid_supply
        SELECT s.sid, fc.feature, fc.label, 'history', s.run_end, 'RXNORM',
               'systemic corticosteroids ' || s.days_in_window || ' consecutive days to', 0
        FROM _steroid_runs s JOIN _feature_concepts fc ON fc.concept = 'chronic_steroid_supply'
        WHERE s.days_in_window >= {_lit(p['steroid_min_consecutive_days'])}"""
    )
    feature_names = list(coded_features)
    # Evidence text per scan and feature first (one narrow grouping), then one row per scan: far cheaper than a
    # DISTINCT string aggregate per feature over every hit.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _hit_evidence AS
        SELECT sid, feature,
               -- distinct facts in date order (sorting a small list per group beats an ordered aggregate)
               array_to_string(list_transform(list_sort(list(DISTINCT {{'d': fact_date, 't': {_fact_text()}}})),
                                              lambda x: x.t), '; ') AS evidence
        FROM _hits GROUP BY sid, feature"""
    )
    flags = ",\n".join(f"bool_or(feature = '{f}') AS {f}" for f in feature_names)
    evidence = ",\n".join(f"any_value(evidence) FILTER (WHERE feature = '{f}') AS ev_{f}" for f in feature_names)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _hit_summary AS
        SELECT sid, {flags}, {evidence} FROM _hit_evidence GROUP BY sid"""
    )

    # Episode: documented onset, else the latest back-pain diagnosis that follows a clean period, provided
    # back pain was coded within the link look-back before the scan.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _episodes AS
        WITH d AS (
            SELECT sid, fact_date, min(code) AS code
            FROM _cfacts WHERE concept = 'spine_pain' AND source = 'history' GROUP BY sid, fact_date
        ),
        g AS (
            SELECT sid, fact_date, code,
                   fact_date - lag(fact_date) OVER (PARTITION BY sid ORDER BY fact_date) AS gap
            FROM d
        )
        SELECT sid, max(fact_date) AS last_pain_dx,
               max(fact_date) FILTER (WHERE gap IS NULL OR gap > {_lit(p['lbp_clean_period_days'])}) AS start_dx,
               arg_max(code, fact_date) FILTER (WHERE gap IS NULL OR gap > {_lit(p['lbp_clean_period_days'])})
                   AS start_code
        FROM g GROUP BY sid"""
    )
    # Conservative care in the OP-8 windows, and first-line medication trials. Only facts inside a window are
    # grouped; the evidence lists them in date order. OP-8 names physical therapy, chiropractic and E&M visits;
    # osteopathic manipulation (chiropractic window) and emergency visits (E&M window) count as conservative
    # care only where the rule set says so, and never for OP-8.
    pt, chiro = _lit(p['op8_pt_lookback_days']), _lit(p['op8_chiro_lookback_days'])
    em_min, em_max = _lit(p['op8_em_min_days']), _lit(p['op8_em_max_days'])
    counted = ["'physical_therapy'", "'chiropractic'", "'evaluation_management'"]
    if p["conservative_care_counts_osteopathic_manipulation"]:
        counted.append("'osteopathic_manipulation'")
    if p["conservative_care_counts_emergency_visits"]:
        counted.append("'emergency_visit'")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _care AS
        WITH w AS (
            SELECT sid, concept, code, fact_date, days_supply,
                   concept IN ({', '.join(counted)}) AS visit
            FROM _cfacts
            WHERE source = 'history'
              AND ((concept = 'physical_therapy' AND days_before BETWEEN 1 AND {pt})
                OR (concept IN ('chiropractic', 'osteopathic_manipulation') AND days_before BETWEEN 1 AND {chiro})
                OR (concept IN ('evaluation_management', 'emergency_visit')
                    AND days_before BETWEEN {em_min} AND {em_max})
                OR (concept = 'first_line_medication'
                    AND days_before BETWEEN 1 AND {_lit(p['medication_trial_lookback_days'])}))
        )
        SELECT sid,
               bool_or(concept = 'physical_therapy') AS pt,
               bool_or(concept = 'chiropractic') AS chiro,
               bool_or(concept = 'evaluation_management') AS em,
               bool_or(visit) AS care_visit,
               coalesce(sum(days_supply) FILTER (WHERE concept = 'first_line_medication'), 0) AS medication_days,
               -- the visits that count as conservative care, distinct, in date order
               nullif(array_to_string(list_transform(list_sort(
                   list(DISTINCT {{'d': fact_date, 't': replace(concept, '_', ' ') || ' ' || code || ' on '
                                                         || CAST(fact_date AS VARCHAR)}}) FILTER (WHERE visit)),
                   lambda x: x.t), '; '), '') AS ev_care
        FROM w GROUP BY sid"""
    )
    # Prior MRI of the same spine region within the repeat window (history events and earlier scans).
    mri_codes = ", ".join(f"'{c}'" for c in sorted(SPINE_MRI_REGIONS))
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _prior_mri AS
        WITH prior AS (
            SELECT patient_id, event_date AS fact_date, code, NULL AS scan_id FROM clinical_events
            WHERE code_system = 'CPT' AND code IN ({mri_codes})
            UNION ALL
            SELECT patient_id, scan_date, procedure_code, scan_id FROM scans_current
            WHERE procedure_code IN ({mri_codes})
        )
        SELECT c.sid, arg_max(f.code, f.fact_date) AS code, max(f.fact_date) AS prior_date
        FROM prior f JOIN _ctx c ON c.patient_id = f.patient_id
        WHERE {region_case('f.code')} = c.body_region AND f.scan_id IS DISTINCT FROM c.scan_id
          AND c.scan_date - f.fact_date BETWEEN 1 AND {_lit(p['repeat_mri_lookback_days'])}
        GROUP BY c.sid"""
    )
    # Whether the referral or the scan carries a back-pain code (the indication).
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _indication AS
        SELECT sid,
               bool_or(concept = 'spine_pain') AS pain_indication,
               bool_or(concept = 'low_back_pain') AS lbp_indication
        FROM _cfacts WHERE source IN ('referral', 'scan') GROUP BY sid"""
    )
    coded_cols = ",\n".join(f"coalesce(h.{f}, false) AS {f}, h.ev_{f}" for f in feature_names)
    contrast = ", ".join(f"'{c}'" for c in CONTRAST_CODES)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _base_features AS
        WITH joined AS (
        SELECT c.*, {coded_cols},
            -- documented onset, else the coded episode, else the onset or duration the referral's text gives
            coalesce(c.documented_onset,
                     CASE WHEN c.scan_date - e.last_pain_dx <= {_lit(p['episode_link_lookback_days'])}
                          THEN e.start_dx END,
                     CASE WHEN {'true' if p.get('text_findings_count', False) else 'false'} AND x.text_onset <= c.scan_date THEN x.text_onset END) AS episode_start,
            CASE WHEN c.documented_onset IS NOT NULL THEN 'documented onset'
                 WHEN c.scan_date - e.last_pain_dx <= {_lit(p['episode_link_lookback_days'])} AND e.start_dx IS NOT NULL
                 THEN 'first back-pain diagnosis ' || {dotted('e.start_code')} || ' after '
                      || {_lit(p['lbp_clean_period_days'])} || ' days without one'
                 WHEN {'true' if p.get('text_findings_count', False) else 'false'} AND x.text_onset <= c.scan_date
                 THEN 'text: ' || x.text_onset_quote || ' on the referral (' || CAST(c.referral_date AS VARCHAR) || ')'
                 END AS episode_basis,
            CASE WHEN {'true' if p.get('text_findings_count', False) else 'false'} THEN coalesce(x.text_care_days, 0) ELSE 0 END AS care_text_days,
            CASE WHEN {'true' if p.get('text_findings_count', False) else 'false'} THEN x.ev_text_care END AS ev_text_care,
            CASE WHEN {'true' if p.get('text_findings_count', False) else 'false'} THEN x.ev_text_not_counted END
                AS ev_text_not_counted,
            coalesce(i.pain_indication, false) AS pain_indication,
            coalesce(i.lbp_indication, false) AS lbp_indication,
            coalesce(k.pt, false) AS care_pt, coalesce(k.chiro, false) AS care_chiro, coalesce(k.em, false) AS care_em,
            coalesce(k.care_visit, false) AS care_visit,
            coalesce(k.medication_days, 0) AS care_medication_days, k.ev_care,
            m.prior_date IS NOT NULL AS repeat_mri, m.code AS prior_mri_code, m.prior_date AS prior_mri_date,
            c.procedure_code IN ({contrast}) AS contrast
        FROM _ctx c
        LEFT JOIN _hit_summary h USING (sid)
        LEFT JOIN _episodes e USING (sid)
        LEFT JOIN _indication i USING (sid)
        LEFT JOIN _care k USING (sid)
        LEFT JOIN _prior_mri m USING (sid)
        LEFT JOIN _text_context x USING (sid)
        )
        SELECT *,
            CAST(scan_date - episode_start AS INTEGER) AS days_since_onset,
            care_visit OR care_medication_days >= {_lit(p['conservative_min_days'])}
                OR care_text_days >= {_lit(p['conservative_min_days'])} AS conservative_care,
            care_pt OR care_chiro OR care_em AS op8_conservative_care
        FROM joined"""
    )


def _evidence_sql(features: list[str], p: dict, coded: frozenset = frozenset(), only_true: bool = True) -> str:
    """Readable evidence for the features behind one rule; `coded` are the features of features.yaml, each with
    its `ev_<name>` column (so a feature added there explains itself without a change here).

    With `only_true` a feature's evidence is stated only when the feature holds for the scan: a rule that fires
    on `{any: [fracture_risk, elderly]}` must not state the age of a patient who is not elderly."""
    parts = []
    for name in dict.fromkeys(features):
        before = len(parts)
        if name == "not_spine_mri":
            parts.append("'procedure ' || f.procedure_code || ' is not a spine MRI'")
        elif name in ("early", "established", "onset_unknown"):
            parts.append(
                "CASE WHEN f.episode_start IS NULL THEN 'episode start unknown: no documented onset and no "
                f"back-pain diagnosis in the {_lit(p['episode_link_lookback_days'])} days before the scan' "
                "ELSE 'episode start ' || CAST(f.episode_start AS VARCHAR) || ' (' || f.episode_basis || '), ' "
                "|| f.days_since_onset || ' days before the scan' END"
            )
        elif name == "conservative_care":
            parts.append(
                "'conservative care: ' || nullif(concat_ws('; ', f.ev_care, CASE WHEN f.ev_care IS NULL "
                "AND f.care_medication_days > 0 THEN f.care_medication_days || ' days of first-line medication' "
                "END, f.ev_text_care), '')"
            )
        elif name == "repeat_mri":
            parts.append(
                "'prior ' || f.body_region || ' MRI ' || f.prior_mri_code || ' on ' "
                "|| CAST(f.prior_mri_date AS VARCHAR) || ' (' || (f.scan_date - f.prior_mri_date) "
                "|| ' days before), no red flag or neurological symptom since'"
            )
        elif name == "no_indication":
            parts.append(
                "'no back-pain code on the referral or the scan, and no back-pain diagnosis in the history'"
            )
        elif name == "elderly":
            parts.append(f"'age ' || f.patient_age || ' (elderly: ' || {_lit(p['elderly_min_age'])} || ' or older)'")
        elif name == "intervention_candidate":
            parts.append(
                "'candidate for intervention: ' || concat_ws(', ', CASE WHEN f.neurological_symptoms THEN "
                "'neurological symptoms' END, CASE WHEN f.motor_deficit THEN 'motor deficit' END, "
                "CASE WHEN f.referring_specialty IN " + str(INTERVENTION_SPECIALTIES)
                + " THEN 'referred by ' || f.referring_specialty END)"
            )
        elif name == "prior_lumbar_surgery":
            parts.append("'prior lumbar surgery: ' || f.ev_lumbar_surgery")
        elif name == "surgery_site_unknown":
            parts.append(
                "'spine surgery with no site coded: ' || f.ev_spine_surgery_site_unknown "
                "|| ' (no lumbar procedure code shows a prior lumbar operation)'"
            )
        elif name in coded:
            parts.append(f"'{name.replace('_', ' ')}: ' || f.ev_{name}")
        if only_true and len(parts) > before:
            parts[-1] = f"CASE WHEN coalesce(f.{name}, false) THEN {parts[-1]} END"
    if not parts:
        return "NULL"
    return "concat_ws('; ', " + ", ".join(parts) + ")"


def classify_rule_set(con, rule_set: RuleSet, coded_features: dict, cache: dict | None = None) -> None:
    """Append this rule set's rows to `mri_classification`, and its base features to `scan_feature_values` when
    no earlier rule set of this run produced the same ones."""
    build_features(con, rule_set, coded_features, cache)
    p = rule_set.parameters
    known = set(coded_features) | set(DERIVED_FEATURES)
    rules = list(rule_set.rules)
    conds = [compile_condition(r["when"], known) for r in rules]
    category_case = "CASE " + " ".join(
        f"WHEN coalesce({c}, false) THEN {_sql_str(r['category'])}" for c, r in zip(conds, rules)
    ) + " ELSE 'insufficient_information' END"
    reasons = "[" + ", ".join(
        f"CASE WHEN coalesce({c}, false) AND category = {_sql_str(r['category'])} THEN {_sql_str(r['reason'])} END"
        for c, r in zip(conds, rules)
    ) + "]"
    evidence = "[" + ", ".join(
        f"CASE WHEN coalesce({c}, false) AND category = {_sql_str(r['category'])} "
        f"THEN {_evidence_sql(condition_features(r['when']), p, frozenset(coded_features))} END"
        for c, r in zip(conds, rules)
    ) + "]"
    timing = _evidence_sql(["early"], p, only_true=False)  # context on every verdict, not a deciding fact
    version = _sql_str(rule_set.version)
    name = _sql_str(rule_set.name)
    # One pass from the features to the contract's rows (no wide intermediate table).
    con.execute(
        f"""INSERT INTO mri_classification
        WITH c AS (SELECT f.*, {category_case} AS category FROM _features f),
        d AS (
            SELECT f.*,
                   list_filter({reasons}, lambda x: x IS NOT NULL) AS reason_list,
                   list_filter({evidence}, lambda x: x IS NOT NULL AND x <> '') AS evidence_list
            FROM c f
        )
        SELECT scan_id, patient_id, scan_date, procedure_code, body_region, {name}, {version}, category,
               CASE WHEN len(reason_list) = 0 THEN 'no_rule_applies' ELSE array_to_string(reason_list, ';') END,
               CASE WHEN category = 'out_of_scope' THEN array_to_string(evidence_list, ' | ')
                    ELSE concat_ws(' | ', array_to_string(evidence_list, ' | '),
                                   CASE WHEN NOT list_contains(reason_list, 'early_imaging_no_red_flags')
                                         AND NOT list_contains(reason_list, 'no_conservative_care')
                                         AND NOT list_contains(reason_list, 'persistent_despite_conservative_care')
                                         AND NOT list_contains(reason_list, 'unknown_onset')
                                        THEN {timing} END,
                                   ev_text_not_counted) END,
               CASE WHEN category <> 'out_of_scope' THEN days_since_onset END,
               CASE WHEN category <> 'out_of_scope' THEN conservative_care END,
               -- OP-8: its denominator exclusions are not verified against the specification manual, so
               -- none is applied (docs/methodology.md, "CMS OP-8")
               CASE WHEN body_region = 'lumbar' AND coalesce(care_setting, 'outpatient') = 'outpatient'
                         AND lbp_indication
                    THEN NOT op8_conservative_care END,
               CASE WHEN category <> 'out_of_scope'
                    THEN contrast AND NOT (cancer OR infection OR immunosuppression OR cauda_equina
                                           OR prior_lumbar_surgery) END,
               CASE WHEN category <> 'out_of_scope' THEN mri_contraindication END,
               -- until a chart review says otherwise (assets/review/reviews.py)
               'unreviewed', category
        FROM d f"""
    )
    feature_set = feature_set_id(p)
    persisted = cache.setdefault("persisted", set()) if cache is not None else set()
    if feature_set not in persisted:
        persisted.add(feature_set)
        from assets.resources import relation_kind

        if relation_kind(con, "scan_feature_values") != "TABLE":
            create_feature_tables(con)
        con.execute(
            f"""INSERT INTO scan_feature_values BY NAME
            SELECT {_sql_str(feature_set)} AS feature_set, * EXCLUDE (sid, referral_codes, scan_codes)
            FROM _base_features"""
        )


def create_feature_tables(con) -> None:
    """The persistent tables behind `scan_features`, created empty (columns from the temp `_base_features`)."""
    con.execute(
        """CREATE OR REPLACE TABLE scan_feature_values AS
        SELECT CAST(NULL AS VARCHAR) AS feature_set, * EXCLUDE (sid, referral_codes, scan_codes)
        FROM _base_features LIMIT 0"""
    )
    params = ", ".join(f"{k} INTEGER" for k in _DERIVED_ONLY_PARAMETERS)
    con.execute(
        f"""CREATE TABLE IF NOT EXISTS rule_set_feature_sets (
            rule_set VARCHAR, rule_set_version VARCHAR, feature_set VARCHAR, {params})"""
    )


def record_feature_sets(con, rule_sets: list[RuleSet]) -> None:
    """Which feature set each rule set reads, and the view `scan_features`: one row per scan per rule set with
    every feature and its evidence. Rule sets that differ only in derived-feature parameters share the stored
    base rows, so the second rule set costs no second copy of a million wide rows."""
    con.execute("DELETE FROM rule_set_feature_sets")
    names = ", ".join(_DERIVED_ONLY_PARAMETERS)
    con.executemany(
        f"INSERT INTO rule_set_feature_sets (rule_set, rule_set_version, feature_set, {names}) "
        f"VALUES (?, ?, ?{', ?' * len(_DERIVED_ONLY_PARAMETERS)})",
        [[r.name, r.version, feature_set_id(r.parameters), *[r.parameters[k] for k in _DERIVED_ONLY_PARAMETERS]]
         for r in rule_sets],
    )
    derived = _derived_columns({k: f"r.{k}" for k in _DERIVED_ONLY_PARAMETERS})
    con.execute(
        f"""CREATE OR REPLACE VIEW scan_features AS
        SELECT r.rule_set, r.rule_set_version, v.* EXCLUDE (feature_set), {derived}
        FROM scan_feature_values v JOIN rule_set_feature_sets r USING (feature_set)"""
    )
