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
    """Rebuild `mri_classification` and `scan_features` for the given rule sets; returns counts."""
    from assets.classify.engine import build_context, classify_rule_set
    from assets.classify.rule_sets import load_coded_features
    from assets.classify.value_sets import load_value_sets

    load_value_sets(con)
    coded_features = load_coded_features()
    columns = ", ".join(f"{name} {sql_type}" for name, sql_type in CLASSIFICATION_COLUMNS)
    con.execute(f"CREATE OR REPLACE TABLE mri_classification ({columns})")
    con.execute("DROP TABLE IF EXISTS scan_features")
    build_context(con)
    cache: dict = {}
    for i, rule_set in enumerate(rule_sets):
        classify_rule_set(con, rule_set, coded_features, create_features_table=(i == 0), cache=cache)
    counts = dict(
        con.execute("SELECT category, count(*) FROM mri_classification GROUP BY ALL").fetchall()
    )
    unmatched = con.execute(
        "SELECT count(*) FROM mri_classification WHERE reasons = 'no_rule_applies'"
    ).fetchone()[0]
    return {"by_category": counts, "no_rule_applies": unmatched}


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
    One row per scan per rule set (CONTRACT.md §4); the features behind each verdict are in `scan_features`."""
    from assets.classify.rule_sets import load_rule_sets

    rule_sets = load_rule_sets(config.rule_sets or None)
    with warehouse.connect() as con:
        result = classify_scans(con, rule_sets)
        rows = con.execute("SELECT count(*) FROM mri_classification").fetchone()[0]
        # How often each reason code fired, per rule set (any position in `reasons`).
        hits = con.execute(
            """SELECT rule_set, reason, count(*) FROM
               (SELECT rule_set, unnest(string_split(reasons, ';')) AS reason FROM mri_classification)
               GROUP BY ALL ORDER BY rule_set, 3 DESC"""
        ).fetchall()
    if result["no_rule_applies"]:
        context.log.warning(f"{result['no_rule_applies']:,} scan verdicts matched no rule (reason no_rule_applies)")
    return dg.MaterializeResult(
        metadata={
            "rows": dg.MetadataValue.int(rows),
            "rule_sets": dg.MetadataValue.text(", ".join(f"{r.name} {r.version}" for r in rule_sets)),
            "no_rule_applies": dg.MetadataValue.int(result["no_rule_applies"]),
            "reason_hits": dg.MetadataValue.md(
                "| rule set | reason | scans |\n|---|---|---|\n"
                + "\n".join(f"| {rs} | {reason} | {n:,} |" for rs, reason, n in hits)
            ),
            **{f"category_{k}": dg.MetadataValue.int(v) for k, v in result["by_category"].items()},
        }
    )


@dg.asset(
    group_name=GROUP,
    owners=OWNERS,
    kinds={"duckdb"},
    deps=[scan_links, clinical_events],
    pool=WRITER_POOL,
)
def hedis_lbp(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """HEDIS Use of Imaging Studies for Low Back Pain, one row per patient and measurement year: index episode
    start, age, exclusions, and lumbar imaging within 28 days. The published rate is 1 - numerator/denominator."""
    from assets.classify.measures import build_hedis_lbp
    from assets.classify.rule_sets import load_rule_sets
    from assets.classify.value_sets import load_value_sets

    (standard,) = load_rule_sets(["standard"])
    with warehouse.connect() as con:
        load_value_sets(con)
        measure = build_hedis_lbp(con, standard.parameters)
    context.log.info(
        f"HEDIS LBP: {measure['denominator']:,} episodes in the denominator, {measure['numerator']:,} imaged "
        f"within 28 days"
    )
    return dg.MaterializeResult(
        metadata={k: (dg.MetadataValue.float(v) if isinstance(v, float) else dg.MetadataValue.int(v or 0))
                  for k, v in measure.items()}
    )


classify_assets = [mri_classification, hedis_lbp]
