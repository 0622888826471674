"""Classify stage: one row per scan per rule set in `mri_classification`."""


import dagster as dg

from assets.ingest.assets import WRITER_POOL, clinical_events, scan_links
from assets.resources import WarehouseResource

GROUP = "classify"
OWNERS = ["team:clinical-quality"]

# Types of the contract's output columns (CONTRACT.md §4).
CLASSIFICATION_COLUMNS = [
    ("scan_id", "VARCHAR"), ("patient_id", "VARCHAR"), ("scan_date", "DATE"), ("procedure_code", "VARCHAR"),
    ("body_region", "VARCHAR"), ("rule_set", "VARCHAR"), ("rule_set_version", "VARCHAR"),
    ("category", "VARCHAR"), ("reasons", "VARCHAR"), ("evidence", "VARCHAR"), ("days_since_onset", "INTEGER"),
    ("conservative_care", "BOOLEAN"), ("op8_numerator", "BOOLEAN"), ("contrast_review", "BOOLEAN"),
    ("safety_review", "BOOLEAN"),
]


class ClassificationConfig(dg.Config):
    # Empty: every rule set in guidelines/rule_sets/.
    rule_sets: list[str] = []


def classify_scans(con, rule_sets) -> dict:
    """Rebuild `mri_classification` for the given rule sets; returns counts per category.

    This version decides what the data settle without clinical criteria: out-of-scope procedures, and spine
    MRIs with nothing to judge them by. Other spine MRIs are counted as awaiting classification.
    """
    from assets.ingest.contract import SPINE_MRI_REGIONS

    con.execute("CREATE OR REPLACE TEMP TABLE _rule_sets (rule_set VARCHAR, rule_set_version VARCHAR)")
    con.executemany("INSERT INTO _rule_sets VALUES (?, ?)", [[r.name, r.version] for r in rule_sets])
    spine_codes = ", ".join(sorted(SPINE_MRI_REGIONS))
    con.execute(
        f"""CREATE OR REPLACE TABLE mri_classification AS
        WITH history AS (
            SELECT l.scan_id, count(e.patient_id) AS events_365d
            FROM scan_links l
            LEFT JOIN clinical_events e
              ON e.patient_id = l.patient_id
             AND e.event_date BETWEEN l.scan_date - INTERVAL 365 DAY AND l.scan_date
            GROUP BY l.scan_id
        ),
        decided AS (
            SELECT l.scan_id, l.patient_id, l.scan_date, l.procedure_code, l.body_region,
                   CASE WHEN l.body_region = 'other' THEN 'out_of_scope' ELSE 'insufficient_information' END
                       AS category,
                   CASE WHEN l.body_region = 'other' THEN 'not_spine_mri' ELSE 'no_indication' END AS reasons,
                   CASE WHEN l.body_region = 'other'
                        THEN 'procedure ' || l.procedure_code || ' is not a spine MRI ({spine_codes})'
                        ELSE 'no referral linked (none named; none for the ' || l.body_region
                             || ' spine in the 90 days before ' || strftime(l.scan_date, '%Y-%m-%d')
                             || '); no diagnosis codes on the scan; no history in the 365 days before'
                   END AS evidence
            FROM scan_links l
            JOIN scans_current s USING (scan_id)
            JOIN history h USING (scan_id)
            WHERE l.body_region = 'other'
               OR (l.referral_id IS NULL AND len(s.diagnosis_codes) = 0 AND h.events_365d = 0)
        )
        SELECT d.scan_id, d.patient_id, d.scan_date, d.procedure_code, d.body_region,
               rs.rule_set, rs.rule_set_version, d.category, d.reasons, d.evidence,
               CAST(NULL AS INTEGER) AS days_since_onset, CAST(NULL AS BOOLEAN) AS conservative_care,
               CAST(NULL AS BOOLEAN) AS op8_numerator, CAST(NULL AS BOOLEAN) AS contrast_review,
               CAST(NULL AS BOOLEAN) AS safety_review
        FROM decided d CROSS JOIN _rule_sets rs
        ORDER BY d.scan_id, rs.rule_set"""
    )
    counts = dict(
        con.execute("SELECT category, count(*) FROM mri_classification GROUP BY ALL").fetchall()
    )
    awaiting = con.execute(
        """SELECT count(*) FROM scan_links l
           WHERE NOT EXISTS (SELECT 1 FROM mri_classification m WHERE m.scan_id = l.scan_id)"""
    ).fetchone()[0]
    return {"by_category": counts, "awaiting_clinical_rules": awaiting}


@dg.asset(
    group_name=GROUP,
    owners=OWNERS,
    kinds={"duckdb"},
    deps=[scan_links, clinical_events],
    pool=WRITER_POOL,
)
def mri_classification(
    context: dg.AssetExecutionContext, config: ClassificationConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Every scan judged under each guideline rule set: category, reason codes, and the evidence that decided.
    One row per scan per rule set (CONTRACT.md §4)."""
    from assets.classify.rule_sets import load_rule_sets

    rule_sets = load_rule_sets(config.rule_sets or None)
    with warehouse.connect() as con:
        result = classify_scans(con, rule_sets)
        rows = con.execute("SELECT count(*) FROM mri_classification").fetchone()[0]
    if result["awaiting_clinical_rules"]:
        context.log.info(
            f"{result['awaiting_clinical_rules']:,} spine MRIs await the clinical criteria of a later rule-set version"
        )
    return dg.MaterializeResult(
        metadata={
            "rows": dg.MetadataValue.int(rows),
            "rule_sets": dg.MetadataValue.text(", ".join(f"{r.name} {r.version}" for r in rule_sets)),
            "awaiting_clinical_rules": dg.MetadataValue.int(result["awaiting_clinical_rules"]),
            **{f"category_{k}": dg.MetadataValue.int(v) for k, v in result["by_category"].items()},
        }
    )


classify_assets = [mri_classification]
