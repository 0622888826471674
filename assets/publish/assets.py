"""Publish stage: exports and dashboards under the output directory."""


import dagster as dg

from assets.classify.assets import mri_classification
from assets.ingest.assets import WRITER_POOL
from assets.quality.assets import quarantine_report
from assets.resources import WarehouseResource

GROUP = "publish"
OWNERS = ["team:clinical-quality"]


@dg.asset(group_name=GROUP, owners=OWNERS, kinds={"csv"}, deps=[mri_classification], pool=WRITER_POOL)
def classification_export(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """`exports/mri_classification.csv`: the same rows as the warehouse table, for spreadsheets."""
    from assets.publish.files import copy_query_to_csv

    with warehouse.connect(read_only=True) as con:
        rows = copy_query_to_csv(
            con,
            "SELECT * FROM mri_classification ORDER BY scan_id, rule_set",
            warehouse.root / "exports" / "mri_classification.csv",
        )
    return dg.MaterializeResult(metadata={"rows": dg.MetadataValue.int(rows)})


@dg.asset(
    group_name=GROUP, owners=OWNERS, kinds={"html"}, deps=[mri_classification, quarantine_report], pool=WRITER_POOL
)
def utilization_dashboard(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """`dashboards/index.html`: self-contained page with the run's row counts, regions, links and verdicts."""
    from assets.publish.dashboard import gather, render_index
    from assets.publish.files import write_text_atomic

    with warehouse.connect(read_only=True) as con:
        page = render_index(gather(con))
    path = warehouse.root / "dashboards" / "index.html"
    write_text_atomic(path, page)
    return dg.MaterializeResult(
        metadata={"path": dg.MetadataValue.path(str(path)), "bytes": dg.MetadataValue.int(len(page.encode()))}
    )


publish_assets = [classification_export, utilization_dashboard]
