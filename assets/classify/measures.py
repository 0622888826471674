"""The HEDIS "Use of Imaging Studies for Low Back Pain" (LBP) measure, episode level, in DuckDB SQL.

Decomposed as quality measures usually are: index episode -> denominator -> exclusions -> numerator, one row per
patient and measurement year in `hedis_lbp`:

- Index episode start date (IESD): the patient's first low-back-pain diagnosis in the intake period (January 1 to
  December 3 of the year) with no low-back-pain diagnosis in the 180 days before it.
- Denominator: age 18-75 as of December 31 of the measurement year (HEDIS MY2025 "Ages"). Inputs carry the age
  at each referral, not a birth date: the age at the referral closest to December 31, plus the whole years from
  that referral to December 31 (minus them, rounded up, for a referral after it).
- Exclusions, each in its window around the IESD (through IESD + 28 days): cancer (malignant neoplasms including
  non-melanoma skin cancer, history of cancer, and D00-D49 as the payer summary lists), HIV, organ transplant,
  osteoporosis (diagnosis or medication), lumbar surgery (any time); trauma of any spine region (90 days
  before); IV drug use, neurological impairment, spinal infection (365 days before); 90+ consecutive days of
  systemic steroids (365 days before); palliative care. Not applied, for want of data or of a public value set:
  spondylopathy, hospice, death, frailty with advanced illness, continuous enrollment.
- Numerator: lumbar imaging (X-ray, CT or MRI) on the IESD through IESD + 28 days. The published rate is
  inverted: 1 - numerator / denominator (higher is better).

Diagnoses come from history events, referrals (on the referral date) and scans (on the scan date); imaging from
scans and from history procedures.
"""

from __future__ import annotations

from assets.classify.value_sets import concept_match_sql

# concept -> (days before the IESD it counts from; None = any time)
EXCLUSIONS = {
    "cancer": None,
    "nonmelanoma_skin_cancer": None,
    "other_neoplasm": None,
    "hiv": None,
    "organ_transplant": None,
    "osteoporosis": None,
    "lumbar_surgery": None,
    "palliative_care": None,
    "spinal_trauma": 90,
    "iv_drug_use": 365,
    "cauda_equina": 365,
    "motor_deficit": 365,
    "spinal_infection": 365,
}


NUMERATOR_CONCEPTS = ("low_back_pain", "lumbar_imaging", "systemic_corticosteroid")


def build_hedis_lbp(con, p: dict, patients: str | None = None) -> dict:
    """(Re)create `hedis_lbp` under the parameters `p` (the standard rule set's); returns the measure.

    With `patients` (a table with a `patient_id` column) only those patients' rows are recomputed and replaced;
    the measure is per patient, so the others cannot change.
    """
    window = int(p["hedis_imaging_window_days"])
    clean = int(p["lbp_clean_period_days"])
    only = f"WHERE patient_id IN (SELECT patient_id FROM {patients})" if patients else ""
    concepts = ", ".join(f"'{c}'" for c in (*NUMERATOR_CONCEPTS, *EXCLUSIONS))
    # Codes are matched to the measure's concepts once per distinct code, before any row is copied.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _hedis_codes AS
        WITH c AS (
            SELECT DISTINCT code_system, code FROM clinical_events
            UNION SELECT 'ICD10CM', unnest(diagnosis_codes) FROM referrals_current
            UNION SELECT 'ICD10CM', unnest(diagnosis_codes) FROM scans_current
            UNION SELECT 'CPT', procedure_code FROM scans_current
        ),
        m AS ({concept_match_sql('c')})
        SELECT * FROM m WHERE concept IN ({concepts})"""
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _patient_cfacts AS
        WITH f AS (
            SELECT patient_id, event_date AS fact_date, code_system, code, days_supply
            FROM clinical_events {only}
            UNION ALL
            SELECT patient_id, referral_date, 'ICD10CM', unnest(diagnosis_codes), NULL FROM referrals_current {only}
            UNION ALL
            SELECT patient_id, scan_date, 'ICD10CM', unnest(diagnosis_codes), NULL FROM scans_current {only}
            UNION ALL
            SELECT patient_id, scan_date, 'CPT', procedure_code, NULL FROM scans_current {only}
        )
        SELECT DISTINCT f.patient_id, f.fact_date, f.code_system, f.code, f.days_supply, c.concept
        FROM f JOIN _hedis_codes c USING (code_system, code)"""
    )
    exclusion_rows = ", ".join(
        f"('{concept}', {'NULL' if days is None else days})" for concept, days in EXCLUSIONS.items()
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _hedis_rows AS
        WITH lbp AS (
            SELECT DISTINCT patient_id, fact_date, code FROM _patient_cfacts WHERE concept = 'low_back_pain'
        ),
        starts AS (
            SELECT patient_id, fact_date, code,
                   fact_date - lag(fact_date) OVER (PARTITION BY patient_id ORDER BY fact_date, code) AS gap
            FROM lbp
        ),
        candidates AS (
            SELECT patient_id, year(fact_date) AS measurement_year, fact_date AS iesd, code AS index_code
            FROM starts
            WHERE (gap IS NULL OR gap > {clean})
              AND strftime(fact_date, '%m-%d') <= '{p['hedis_intake_end_month_day']}'
            QUALIFY row_number() OVER (PARTITION BY patient_id, year(fact_date) ORDER BY fact_date, code) = 1
        ),
        ages AS (
            -- age on December 31 of the measurement year, from the referral closest to that day
            SELECT c.patient_id, c.measurement_year,
                   arg_min(CASE WHEN r.referral_date <= y.year_end
                                THEN r.patient_age + date_part('year', age(y.year_end, r.referral_date))
                                ELSE r.patient_age - date_part('year', age(r.referral_date, y.year_end))
                                     - CASE WHEN r.referral_date > y.year_end
                                                 + to_years(CAST(date_part('year', age(r.referral_date, y.year_end)) AS INTEGER))
                                            THEN 1 ELSE 0 END END,
                           abs(r.referral_date - y.year_end)) AS age_at_year_end
            FROM candidates c
            CROSS JOIN LATERAL (SELECT make_date(c.measurement_year, 12, 31) AS year_end) y
            JOIN referrals_current r USING (patient_id)
            GROUP BY ALL
        ),
        exclusion_windows (concept, lookback) AS (VALUES {exclusion_rows}),
        excluded AS (
            SELECT c.patient_id, c.measurement_year,
                   string_agg(DISTINCT f.concept, ';' ORDER BY f.concept) AS exclusions
            FROM candidates c
            JOIN _patient_cfacts f USING (patient_id)
            JOIN exclusion_windows w ON w.concept = f.concept
            WHERE f.fact_date <= c.iesd + {window}
              AND (w.lookback IS NULL OR f.fact_date >= c.iesd - w.lookback)
            GROUP BY ALL
        ),
        steroid_fills AS (
            SELECT c.patient_id, c.measurement_year, f.fact_date AS start_date,
                   f.fact_date + CAST(greatest(coalesce(f.days_supply, 1), 1) - 1 AS INTEGER) AS end_date, c.iesd
            FROM candidates c JOIN _patient_cfacts f USING (patient_id)
            WHERE f.concept = 'systemic_corticosteroid'
              AND f.fact_date BETWEEN c.iesd - {int(p['steroid_lookback_days'])} AND c.iesd
        ),
        steroid_ordered AS (
            SELECT *, max(end_date) OVER (PARTITION BY patient_id, measurement_year ORDER BY start_date, end_date
                                          ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end
            FROM steroid_fills
        ),
        steroid_runs AS (
            SELECT patient_id, measurement_year,
                   least(max(end_date), any_value(iesd)) - min(start_date) + 1 AS run_days
            FROM (SELECT *, sum(CASE WHEN prev_end IS NULL OR start_date > prev_end + 1 THEN 1 ELSE 0 END)
                             OVER (PARTITION BY patient_id, measurement_year ORDER BY start_date, end_date) AS run_id
                  FROM steroid_ordered)
            GROUP BY patient_id, measurement_year, run_id
        ),
        steroids AS (
            SELECT DISTINCT patient_id, measurement_year FROM steroid_runs
            WHERE run_days >= {int(p['steroid_min_consecutive_days'])}
        ),
        imaging AS (
            SELECT c.patient_id, c.measurement_year, min(f.fact_date) AS imaging_date,
                   arg_min(f.code, f.fact_date) AS imaging_code
            FROM candidates c JOIN _patient_cfacts f USING (patient_id)
            WHERE f.concept = 'lumbar_imaging' AND f.fact_date BETWEEN c.iesd AND c.iesd + {window}
            GROUP BY ALL
        )
        SELECT c.patient_id, c.measurement_year, c.iesd, c.index_code, a.age_at_year_end,
               nullif(concat_ws(';', e.exclusions,
                                CASE WHEN s.patient_id IS NOT NULL THEN 'long_term_steroids' END), '') AS exclusions,
               coalesce(a.age_at_year_end BETWEEN {int(p['hedis_min_age'])} AND {int(p['hedis_max_age'])}, false)
                   AND e.exclusions IS NULL AND s.patient_id IS NULL AS in_denominator,
               i.imaging_date, i.imaging_code,
               i.imaging_date - c.iesd AS days_to_imaging,
               i.imaging_date IS NOT NULL AS imaging_within_window
        FROM candidates c
        LEFT JOIN ages a USING (patient_id, measurement_year)
        LEFT JOIN excluded e USING (patient_id, measurement_year)
        LEFT JOIN steroids s USING (patient_id, measurement_year)
        LEFT JOIN imaging i USING (patient_id, measurement_year)"""
    )
    if patients:
        con.execute(f"DELETE FROM hedis_lbp WHERE patient_id IN (SELECT patient_id FROM {patients})")
        con.execute("INSERT INTO hedis_lbp SELECT * FROM _hedis_rows ORDER BY patient_id, measurement_year")
    else:
        con.execute(
            "CREATE OR REPLACE TABLE hedis_lbp AS SELECT * FROM _hedis_rows ORDER BY patient_id, measurement_year"
        )
    episodes, denominator, numerator = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE in_denominator), "
        "count(*) FILTER (WHERE in_denominator AND imaging_within_window) FROM hedis_lbp"
    ).fetchall()[0]
    return {
        "episodes": episodes,
        "denominator": denominator,
        "numerator": numerator,
        "rate_inverted": None if not denominator else round(1 - numerator / denominator, 4),
    }
