"""Classify stage: one row per scan per rule set in `mri_classification`."""


import dagster as dg

from assets.ingest.assets import WRITER_POOL, clinical_events, scan_links
from assets.resources import WarehouseResource, drop_relation, relation_kind
from assets.text.assets import indication_findings

GROUP = "classify"
OWNERS = ["team:clinical-quality"]

# Types of the contract's output columns (docs/data-contract.md §4, "mri_classification").
CLASSIFICATION_COLUMNS = [
    ("scan_id", "VARCHAR"), ("patient_id", "VARCHAR"), ("scan_date", "DATE"), ("procedure_code", "VARCHAR"),
    ("body_region", "VARCHAR"), ("rule_set", "VARCHAR"), ("rule_set_version", "VARCHAR"),
    ("category", "VARCHAR"), ("reasons", "VARCHAR"), ("evidence", "VARCHAR"), ("days_since_onset", "INTEGER"),
    ("conservative_care", "BOOLEAN"), ("op8_numerator", "BOOLEAN"), ("contrast_review", "BOOLEAN"),
    ("safety_review", "BOOLEAN"), ("review_status", "VARCHAR"), ("final_category", "VARCHAR"),
]


class ClassificationConfig(dg.Config):
    # Empty: every rule set in guidelines/rule_sets/.
    rule_sets: list[str] = []
    # Reclassify every scan even when only some patients changed since the last run.
    full_refresh: bool = False


CONSUMER = "mri_classification"
# Bumped when the engine's SQL changes what it computes, so warehouses classified before are rebuilt.
ENGINE_VERSION = "4"  # 3: facts from the referral text (assets/text/); 4: review_status, final_category


def classification_signature(rule_sets, coded_features: dict) -> str:
    """Everything the verdicts depend on besides the data: a change here means every scan is reclassified."""
    from assets.classify.value_sets import read_value_sets
    from assets.ingest.changes import signature

    from assets.text.reader import load_lexicon

    return signature(
        ENGINE_VERSION, [[r.name, r.version, r.parameters, r.rules] for r in rule_sets], coded_features,
        read_value_sets(), load_lexicon().version,
    )


def classify_scans(con, rule_sets, full_refresh: bool = False) -> dict:
    """Bring `mri_classification` and `scan_features` up to date for the given rule sets; returns counts.

    Only the patients whose records changed since the last classification are reclassified, unless the rule
    sets, features or value sets changed (or `full_refresh`), in which case every scan is. Either way the
    writes are one transaction: a failure leaves the previous verdicts in place.
    """
    from assets.classify.engine import build_context, classify_rule_set, record_feature_sets
    from assets.classify.rule_sets import load_coded_features
    from assets.classify.value_sets import load_value_sets
    from assets.ingest.changes import CHANGED_PATIENTS, consuming

    load_value_sets(con)
    coded_features = load_coded_features()
    signature = classification_signature(rule_sets, coded_features)
    present = all(
        relation_kind(con, t) == "TABLE"
        for t in ("mri_classification", "scan_feature_values", "rule_set_feature_sets")
    )
    with consuming(con, CONSUMER, signature, present, force_full=full_refresh) as pending:
        if pending.full:
            columns = ", ".join(f"{name} {sql_type}" for name, sql_type in CLASSIFICATION_COLUMNS)
            con.execute(f"CREATE OR REPLACE TABLE mri_classification ({columns})")
            for name in ("scan_features", "scan_feature_values"):
                drop_relation(con, name)
            build_context(con, rule_sets, coded_features)
        else:
            build_context(con, rule_sets, coded_features, CHANGED_PATIENTS)
            for table in ("mri_classification", "scan_feature_values"):
                con.execute(f"DELETE FROM {table} WHERE patient_id IN (SELECT patient_id FROM {CHANGED_PATIENTS})")
        scans = con.execute("SELECT count(*) FROM _ctx").fetchall()[0][0]
        cache: dict = {}
        if scans or pending.full:
            for rule_set in rule_sets:
                classify_rule_set(con, rule_set, coded_features, cache=cache)
            record_feature_sets(con, rule_sets)
    counts = dict(
        con.execute("SELECT category, count(*) FROM mri_classification GROUP BY ALL").fetchall()
    )
    unmatched = con.execute(
        "SELECT count(*) FROM mri_classification WHERE reasons = 'no_rule_applies'"
    ).fetchall()[0][0]
    return {
        "by_category": counts, "no_rule_applies": unmatched, "mode": "full" if pending.full else "incremental",
        "why": pending.why, "scans_classified": scans,
    }


@dg.asset(
    group_name=GROUP,
    owners=OWNERS,
    kinds={"duckdb"},
    deps=[scan_links, clinical_events, indication_findings],
    pool=WRITER_POOL,
)
def mri_classification(
    context: dg.AssetExecutionContext, config: ClassificationConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Every scan judged under each guideline rule set: category, reason codes, and the evidence that decided.
    One row per scan per rule set (docs/data-contract.md §4, "mri_classification"); the features behind each
    verdict are in `scan_features`."""
    from assets.classify.rule_sets import load_rule_sets

    rule_sets = load_rule_sets(config.rule_sets or None)
    with warehouse.connect() as con:
        result = classify_scans(con, rule_sets, full_refresh=config.full_refresh)
        context.log.info(
            f"{result['mode']} classification ({result['why']}): {result['scans_classified']:,} scan(s) "
            f"x {len(rule_sets)} rule set(s)"
        )
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
            "mode": dg.MetadataValue.text(f"{result['mode']}: {result['why']}"),
            "scans_classified": dg.MetadataValue.int(result["scans_classified"]),
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
    deps=[scan_links, clinical_events, indication_findings],
    pool=WRITER_POOL,
)
def hedis_lbp(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """HEDIS Use of Imaging Studies for Low Back Pain, one row per patient and measurement year: index episode
    start, age, exclusions, and lumbar imaging within 28 days. The published rate is 1 - numerator/denominator."""
    from assets.classify.measures import EXCLUSIONS, build_hedis_lbp
    from assets.classify.rule_sets import load_rule_sets
    from assets.classify.value_sets import load_value_sets, read_value_sets
    from assets.ingest.changes import CHANGED_PATIENTS, consuming, signature

    (standard,) = load_rule_sets(["standard"])
    config = signature(ENGINE_VERSION, standard.parameters, EXCLUSIONS, read_value_sets())
    with warehouse.connect() as con:
        load_value_sets(con)
        present = relation_kind(con, "hedis_lbp") == "TABLE"
        # Per patient, like the classification: only patients with new or removed records are recomputed.
        with consuming(con, "hedis_lbp", config, present) as pending:
            measure = build_hedis_lbp(con, standard.parameters, None if pending.full else CHANGED_PATIENTS)
    context.log.info(
        f"HEDIS LBP ({'full' if pending.full else 'incremental'}: {pending.why}): {measure['denominator']:,} "
        f"episodes in the denominator, {measure['numerator']:,} imaged within 28 days"
    )
    return dg.MaterializeResult(
        metadata={
            **{k: (dg.MetadataValue.float(v) if isinstance(v, float) else dg.MetadataValue.int(v or 0))
               for k, v in measure.items()},
            "mode": dg.MetadataValue.text(f"{'full' if pending.full else 'incremental'}: {pending.why}"),
        }
    )


classify_assets = [mri_classification, hedis_lbp]
