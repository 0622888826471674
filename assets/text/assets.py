"""Text stage: findings in the free-text reason for exam, between linking and classification."""

import dagster as dg

from assets.ingest.assets import WRITER_POOL, scan_links
from assets.resources import WarehouseResource

GROUP = "text"
OWNERS = ["team:clinical-quality"]


@dg.asset(group_name=GROUP, owners=OWNERS, kinds={"duckdb", "python"}, deps=[scan_links], pool=WRITER_POOL)
def indication_findings(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """`referral_text_findings`: every finding medspaCy reads in each current referral's masked indication
    (concept, phrase, span, ConText status: affirmed, negated, hypothetical, uncertain, family, historical),
    conservative care with its duration, and symptom duration or onset. Each distinct text is parsed once per
    lexicon version (guidelines/text/lexicon.yaml) and kept in `text_parse_cache` across runs."""
    from assets.text.findings import build_text_findings

    with warehouse.connect() as con:
        summary = build_text_findings(con)
    context.log.info(
        f"{summary['texts_parsed']:,} new texts parsed in {summary['parse_seconds']} s; "
        f"{summary['findings']:,} findings in {summary['referrals_with_findings']:,} referrals"
    )
    return dg.MaterializeResult(metadata={
        k: (dg.MetadataValue.text(v) if isinstance(v, str) else dg.MetadataValue.float(float(v)))
        for k, v in summary.items()
    })


text_assets = [indication_findings]
