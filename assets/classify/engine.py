"""The classification engine: features per scan in DuckDB SQL, then the rule set's ordered rules.

For one rule set it builds, set-based and without a Python loop over scans:

1. `_ctx`: each scan with its linked referral.
2. `_facts`: every coded fact about the scan's patient up to the scan date: the referral's and the scan's
   diagnosis codes, the patient's history events, and the patient's earlier scans.
3. `_cfacts`: those facts matched to value-set concepts, with the days between fact and scan.
4. `_hits`: the facts that make a coded feature true, within the feature's look-back window
   (guidelines/features.yaml), plus runs of systemic steroids long enough to count as immunosuppression.
5. `scan_features` rows: booleans (red flags, timing, conservative care, repeat imaging, ...) and the evidence
   text behind each, with the episode start and days since onset.
6. `mri_classification` rows: the first rule that holds decides the category; every rule of that category that
   holds adds its reason and its evidence, most decisive first.
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
              "repeat_mri_lookback_days", "elderly_min_age"}
    missing = sorted(needed - set(rule_set.parameters))
    if missing:
        raise ValueError(f"{rule_set.path}: missing parameter(s) {', '.join(missing)}")


# ---------------------------------------------------------------------------------------------------------

def build_context(con) -> None:
    """Scans with their linked referral, and every coded fact about each scan's patient up to the scan."""
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _ctx AS
        SELECT l.scan_id, l.patient_id, l.scan_date, l.procedure_code, l.body_region, l.referral_id, l.link_method,
               r.referral_date, r.diagnosis_codes AS referral_codes, s.diagnosis_codes AS scan_codes,
               CASE WHEN r.symptom_onset_date <= l.scan_date THEN r.symptom_onset_date END AS documented_onset,
               r.patient_age, r.referring_specialty, r.care_setting
        FROM scan_links l
        JOIN scans_current s USING (scan_id)
        LEFT JOIN referrals_current r ON r.referral_id = l.referral_id"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _facts AS
        SELECT scan_id, 'referral' AS source, referral_date AS fact_date, 'ICD10CM' AS code_system,
               unnest(referral_codes) AS code, CAST(NULL AS INTEGER) AS days_supply
        FROM _ctx WHERE referral_codes IS NOT NULL
        UNION ALL
        SELECT scan_id, 'scan', scan_date, 'ICD10CM', unnest(scan_codes), NULL FROM _ctx
        UNION ALL
        SELECT c.scan_id, 'history', e.event_date, e.code_system, e.code, e.days_supply
        FROM _ctx c JOIN clinical_events e ON e.patient_id = c.patient_id AND e.event_date <= c.scan_date
        UNION ALL
        SELECT c.scan_id, 'prior_scan', p.scan_date, 'CPT', p.procedure_code, NULL
        FROM _ctx c JOIN scans_current p
          ON p.patient_id = c.patient_id AND p.scan_date < c.scan_date AND p.scan_id <> c.scan_id"""
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE _code_concepts AS {concept_match_sql('_facts')}")
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _cfacts AS
        SELECT f.scan_id, f.source, f.fact_date, f.code_system, f.code, f.days_supply, cc.concept,
               c.scan_date - f.fact_date AS days_before
        FROM _facts f
        JOIN _code_concepts cc USING (code_system, code)
        JOIN _ctx c USING (scan_id)"""
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
        f"{dotted(prefix + 'code', prefix + 'code_system')} || CASE {prefix}source "
        f"WHEN 'referral' THEN ' on the referral (' WHEN 'scan' THEN ' on the scan (' "
        f"WHEN 'prior_scan' THEN ' prior scan (' ELSE ' in history (' END "
        f"|| strftime({prefix}fact_date, '%Y-%m-%d') || ')'"
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


def build_features(con, rule_set: RuleSet, coded_features: dict, cache: dict | None = None) -> None:
    """Create `_features` for one rule set: one row per scan."""
    p = rule_set.parameters
    key = _base_key(p)
    if cache is None or cache.get("base_key") != key:
        _build_base_features(con, p, coded_features)
        if cache is not None:
            cache["base_key"] = key
    derived = ",\n".join(
        f"({sql.format(**{k: _lit(v) if not isinstance(v, str) else v for k, v in p.items()})}) AS {name}"
        for name, sql in DERIVED_FEATURES.items()
        if name not in ("conservative_care", "repeat_mri")
    )
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
            SELECT scan_id, fact_date AS start_date,
                   fact_date + CAST(greatest(coalesce(days_supply, 1), 1) - 1 AS INTEGER) AS end_date
            FROM _cfacts WHERE concept = 'systemic_corticosteroid' AND source = 'history'
        ),
        ordered AS (
            SELECT *, max(end_date) OVER (PARTITION BY scan_id ORDER BY start_date, end_date
                                          ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end
            FROM fills
        ),
        runs AS (
            SELECT *, sum(CASE WHEN prev_end IS NULL OR start_date > prev_end + 1 THEN 1 ELSE 0 END)
                      OVER (PARTITION BY scan_id ORDER BY start_date, end_date) AS run_id
            FROM ordered
        )
        SELECT r.scan_id, min(r.start_date) AS run_start, max(r.end_date) AS run_end,
               least(max(r.end_date), any_value(c.scan_date))
                 - greatest(min(r.start_date), any_value(c.scan_date) - {_lit(p['steroid_lookback_days'])}) + 1
                 AS days_in_window
        FROM runs r JOIN _ctx c USING (scan_id)
        GROUP BY r.scan_id, r.run_id"""
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _hits AS
        SELECT f.scan_id, fc.feature, fc.label, f.source, f.fact_date, f.code_system, f.code, f.days_before
        FROM _cfacts f JOIN _feature_concepts fc USING (concept)
        WHERE f.source IN ('referral', 'scan') OR fc.lookback IS NULL OR f.days_before <= fc.lookback
        UNION ALL
        SELECT scan_id, 'immunosuppression', 'immunosuppression', 'history', run_end, 'RXNORM',
               'systemic corticosteroids ' || days_in_window || ' consecutive days to', 0
        FROM _steroid_runs WHERE days_in_window >= {_lit(p['steroid_min_consecutive_days'])}"""
    )
    feature_names = list(coded_features)
    flags = ",\n".join(f"bool_or(feature = '{f}') AS {f}" for f in feature_names)
    evidence = ",\n".join(
        f"""string_agg(DISTINCT CASE WHEN feature = '{f}' THEN {_fact_text()} END, '; ') AS ev_{f}"""
        for f in feature_names
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _hit_summary AS
        SELECT scan_id, {flags}, {evidence} FROM _hits GROUP BY scan_id"""
    )

    # Episode: documented onset, else the latest back-pain diagnosis that follows a clean period, provided
    # back pain was coded within the link look-back before the scan.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _episodes AS
        WITH d AS (
            SELECT DISTINCT scan_id, fact_date, first(code ORDER BY code) OVER (PARTITION BY scan_id, fact_date) AS code
            FROM _cfacts WHERE concept = 'spine_pain' AND source = 'history'
        ),
        g AS (
            SELECT scan_id, fact_date, code,
                   fact_date - lag(fact_date) OVER (PARTITION BY scan_id ORDER BY fact_date) AS gap
            FROM d
        )
        SELECT scan_id, max(fact_date) AS last_pain_dx,
               max(fact_date) FILTER (WHERE gap IS NULL OR gap > {_lit(p['lbp_clean_period_days'])}) AS start_dx,
               arg_max(code, fact_date) FILTER (WHERE gap IS NULL OR gap > {_lit(p['lbp_clean_period_days'])})
                   AS start_code
        FROM g GROUP BY scan_id"""
    )
    # Conservative care in the OP-8 windows, and first-line medication trials.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _care AS
        SELECT scan_id,
            bool_or(concept = 'physical_therapy' AND days_before BETWEEN 1 AND {_lit(p['op8_pt_lookback_days'])}) AS pt,
            bool_or(concept = 'chiropractic' AND days_before BETWEEN 1 AND {_lit(p['op8_chiro_lookback_days'])}) AS chiro,
            bool_or(concept = 'evaluation_management'
                    AND days_before BETWEEN {_lit(p['op8_em_min_days'])} AND {_lit(p['op8_em_max_days'])}) AS em,
            coalesce(sum(days_supply) FILTER (WHERE concept = 'first_line_medication'
                    AND days_before BETWEEN 1 AND {_lit(p['medication_trial_lookback_days'])}), 0) AS medication_days,
            string_agg(DISTINCT CASE
                WHEN (concept = 'physical_therapy' AND days_before BETWEEN 1 AND {_lit(p['op8_pt_lookback_days'])})
                  OR (concept = 'chiropractic' AND days_before BETWEEN 1 AND {_lit(p['op8_chiro_lookback_days'])})
                  OR (concept = 'evaluation_management'
                      AND days_before BETWEEN {_lit(p['op8_em_min_days'])} AND {_lit(p['op8_em_max_days'])})
                THEN replace(concept, '_', ' ') || ' ' || code || ' on ' || strftime(fact_date, '%Y-%m-%d')
                END, '; ') AS ev_care
        FROM _cfacts
        WHERE source = 'history'
          AND concept IN ('physical_therapy', 'chiropractic', 'evaluation_management', 'first_line_medication')
        GROUP BY scan_id"""
    )
    # Prior MRI of the same spine region within the repeat window (history events and earlier scans).
    mri_codes = ", ".join(f"'{c}'" for c in sorted(SPINE_MRI_REGIONS))
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _prior_mri AS
        SELECT f.scan_id, arg_max(f.code, f.fact_date) AS code, max(f.fact_date) AS prior_date
        FROM _facts f JOIN _ctx c USING (scan_id)
        WHERE f.source IN ('history', 'prior_scan') AND f.code_system = 'CPT' AND f.code IN ({mri_codes})
          AND {region_case('f.code')} = c.body_region
          AND c.scan_date - f.fact_date BETWEEN 1 AND {_lit(p['repeat_mri_lookback_days'])}
        GROUP BY f.scan_id"""
    )
    # Whether the referral or the scan carries a back-pain code (the indication).
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _indication AS
        SELECT scan_id,
               bool_or(concept = 'spine_pain') AS pain_indication,
               bool_or(concept = 'low_back_pain') AS lbp_indication
        FROM _cfacts WHERE source IN ('referral', 'scan') GROUP BY scan_id"""
    )
    coded_cols = ",\n".join(f"coalesce(h.{f}, false) AS {f}, h.ev_{f}" for f in feature_names)
    contrast = ", ".join(f"'{c}'" for c in CONTRAST_CODES)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _base_features AS
        WITH joined AS (
        SELECT c.*, {coded_cols},
            coalesce(c.documented_onset,
                     CASE WHEN c.scan_date - e.last_pain_dx <= {_lit(p['episode_link_lookback_days'])}
                          THEN e.start_dx END) AS episode_start,
            CASE WHEN c.documented_onset IS NOT NULL THEN 'documented onset'
                 WHEN c.scan_date - e.last_pain_dx <= {_lit(p['episode_link_lookback_days'])} AND e.start_dx IS NOT NULL
                 THEN 'first back-pain diagnosis ' || {dotted('e.start_code')} || ' after '
                      || {_lit(p['lbp_clean_period_days'])} || ' days without one' END AS episode_basis,
            coalesce(i.pain_indication, false) AS pain_indication,
            coalesce(i.lbp_indication, false) AS lbp_indication,
            coalesce(k.pt, false) AS care_pt, coalesce(k.chiro, false) AS care_chiro, coalesce(k.em, false) AS care_em,
            coalesce(k.medication_days, 0) AS care_medication_days, k.ev_care,
            m.prior_date IS NOT NULL AS repeat_mri, m.code AS prior_mri_code, m.prior_date AS prior_mri_date,
            c.procedure_code IN ({contrast}) AS contrast
        FROM _ctx c
        LEFT JOIN _hit_summary h USING (scan_id)
        LEFT JOIN _episodes e USING (scan_id)
        LEFT JOIN _indication i USING (scan_id)
        LEFT JOIN _care k USING (scan_id)
        LEFT JOIN _prior_mri m USING (scan_id)
        )
        SELECT *,
            CAST(scan_date - episode_start AS INTEGER) AS days_since_onset,
            care_pt OR care_chiro OR care_em OR care_medication_days >= {_lit(p['conservative_min_days'])}
                AS conservative_care,
            care_pt OR care_chiro OR care_em AS op8_conservative_care
        FROM joined"""
    )


def _evidence_sql(features: list[str], p: dict, coded: frozenset = frozenset()) -> str:
    """Readable evidence for the features behind one rule; `coded` are the features of features.yaml, each with
    its `ev_<name>` column (so a feature added there explains itself without a change here)."""
    parts = []
    for name in dict.fromkeys(features):
        if name == "not_spine_mri":
            parts.append("'procedure ' || f.procedure_code || ' is not a spine MRI'")
        elif name in ("early", "established", "onset_unknown"):
            parts.append(
                "CASE WHEN f.episode_start IS NULL THEN 'episode start unknown: no documented onset and no "
                f"back-pain diagnosis in the {_lit(p['episode_link_lookback_days'])} days before the scan' "
                "ELSE 'episode start ' || strftime(f.episode_start, '%Y-%m-%d') || ' (' || f.episode_basis || '), ' "
                "|| f.days_since_onset || ' days before the scan' END"
            )
        elif name == "conservative_care":
            parts.append(
                "CASE WHEN f.ev_care IS NOT NULL THEN 'conservative care: ' || f.ev_care "
                "WHEN f.care_medication_days > 0 THEN 'conservative care: ' || f.care_medication_days "
                "|| ' days of first-line medication' END"
            )
        elif name == "repeat_mri":
            parts.append(
                "'prior ' || f.body_region || ' MRI ' || f.prior_mri_code || ' on ' "
                "|| strftime(f.prior_mri_date, '%Y-%m-%d') || ' (' || (f.scan_date - f.prior_mri_date) "
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
        elif name in coded:
            parts.append(f"'{name.replace('_', ' ')}: ' || f.ev_{name}")
    if not parts:
        return "NULL"
    return "concat_ws('; ', " + ", ".join(parts) + ")"


def classify_rule_set(
    con, rule_set: RuleSet, coded_features: dict, create_features_table: bool = False, cache: dict | None = None
) -> None:
    """Append this rule set's rows to `mri_classification` and `scan_features`."""
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
    timing = _evidence_sql(["early"], p)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _decided AS
        WITH c AS (SELECT f.*, {category_case} AS category FROM _features f)
        SELECT f.*,
               list_filter({reasons}, lambda x: x IS NOT NULL) AS reason_list,
               list_filter({evidence}, lambda x: x IS NOT NULL AND x <> '') AS evidence_list
        FROM c f"""
    )
    version = _sql_str(rule_set.version)
    name = _sql_str(rule_set.name)
    con.execute(
        f"""INSERT INTO mri_classification
        SELECT scan_id, patient_id, scan_date, procedure_code, body_region, {name}, {version}, category,
               CASE WHEN len(reason_list) = 0 THEN 'no_rule_applies' ELSE array_to_string(reason_list, ';') END,
               CASE WHEN category = 'out_of_scope' THEN array_to_string(evidence_list, ' | ')
                    ELSE concat_ws(' | ', array_to_string(evidence_list, ' | '),
                                   CASE WHEN NOT list_contains(reason_list, 'early_imaging_no_red_flags')
                                         AND NOT list_contains(reason_list, 'no_conservative_care')
                                         AND NOT list_contains(reason_list, 'persistent_despite_conservative_care')
                                         AND NOT list_contains(reason_list, 'unknown_onset')
                                        THEN {timing} END) END,
               CASE WHEN category <> 'out_of_scope' THEN days_since_onset END,
               CASE WHEN category <> 'out_of_scope' THEN conservative_care END,
               CASE WHEN body_region = 'lumbar' AND coalesce(care_setting, 'outpatient') = 'outpatient'
                         AND lbp_indication
                         AND NOT (cancer OR infection OR immunosuppression OR cauda_equina OR motor_deficit
                                  OR recent_trauma OR prior_lumbar_surgery)
                    THEN NOT op8_conservative_care END,
               CASE WHEN category <> 'out_of_scope'
                    THEN contrast AND NOT (cancer OR infection OR immunosuppression OR cauda_equina
                                           OR prior_lumbar_surgery) END,
               CASE WHEN category <> 'out_of_scope' THEN mri_contraindication END
        FROM _decided f ORDER BY scan_id"""
    )
    select = f"""SELECT {name} AS rule_set, {version} AS rule_set_version,
                  * EXCLUDE (referral_codes, scan_codes, reason_list, evidence_list, category)
                  FROM _decided"""
    if create_features_table:
        con.execute(f"CREATE TABLE scan_features AS {select}")
    else:
        con.execute(f"INSERT INTO scan_features BY NAME {select}")
