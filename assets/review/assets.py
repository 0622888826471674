"""Review stage: chart reviews applied to the verdicts (review status, final category, agreement)."""


import dagster as dg

from assets.classify.assets import mri_classification
from assets.ingest.assets import WRITER_POOL, chart_reviews
from assets.resources import WarehouseResource

GROUP = "review"
OWNERS = ["team:clinical-quality"]


@dg.asset(group_name=GROUP, owners=OWNERS, kinds={"duckdb"}, deps=[mri_classification, chart_reviews],
          pool=WRITER_POOL)
def chart_review_results(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Every chart review with the verdict it was made against (`chart_review_results`, `chart_review_log`), and
    `mri_classification.review_status` / `final_category` from the latest review of each scan and rule set.
    Reviews naming no known scan are kept and listed in the quarantine (stage `review`) until the scan arrives."""
    from assets.review.reviews import apply_reviews

    with warehouse.connect() as con:
        counts = apply_reviews(con)
    if counts["unmatched"]:
        context.log.warning(f"{counts['unmatched']:,} chart review(s) match no verdict yet (quarantine, stage review)")
    if counts["older_version"]:
        context.log.warning(f"{counts['older_version']:,} chart review(s) were made against an older rule-set version")
    context.log.info(f"{counts['reviews']:,} chart review(s): {counts['confirmed']:,} verdicts confirmed, "
                     f"{counts['overridden']:,} overridden")
    return dg.MaterializeResult(metadata={k: dg.MetadataValue.int(v) for k, v in counts.items()})


review_assets = [chart_review_results]
