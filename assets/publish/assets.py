"""Publish stage: exports and dashboards under the output directory."""


import dagster as dg

from assets.classify.assets import hedis_lbp, mri_classification
from assets.ingest.assets import WRITER_POOL
from assets.quality.assets import quarantine_report
from assets.resources import WarehouseResource
from assets.review.assets import chart_review_results

GROUP = "publish"
OWNERS = ["team:clinical-quality"]


@dg.asset(group_name=GROUP, owners=OWNERS, kinds={"csv"}, deps=[mri_classification, chart_review_results],
          pool=WRITER_POOL)
def classification_export(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """`exports/mri_classification.csv`: the same rows as the warehouse table, for spreadsheets; and
    `exports/review_agreement.csv`: agreement between verdicts and chart reviews per rule set and category."""
    from assets.publish.files import copy_query_to_csv, write_text_atomic
    from assets.review.agreement import agreement, agreement_csv

    with warehouse.publishing("exports") as exports, warehouse.connect(read_only=True) as con:
        # One file, renamed into place whole: the part switches in one step.
        rows = copy_query_to_csv(
            con, "SELECT * FROM mri_classification ORDER BY scan_id, rule_set", exports / "mri_classification.csv",
        )
        write_text_atomic(exports / "review_agreement.csv", agreement_csv(agreement(con)))
    return dg.MaterializeResult(metadata={"rows": dg.MetadataValue.int(rows)})


def _stamp() -> str:
    import datetime as dt
    from zoneinfo import ZoneInfo

    from assets.settings import load_settings

    return dt.datetime.now(ZoneInfo(load_settings().timezone)).date().isoformat()


def _publish(warehouse: WarehouseResource, folder: str, build):
    """Build `folder` aside from a read-only warehouse, swap it in, keep today's copy; returns (result, seconds).

    Staged runs (imaging-audit run) archive after publishing the whole run instead.
    """
    import time

    from assets.publish.files import publish_directory
    from assets.settings import load_settings

    started = time.perf_counter()
    with warehouse.publishing(folder) as target, warehouse.connect(read_only=True) as con:
        result = publish_directory(target, lambda out: build(con, out), archive_root=warehouse.archive_root,
                                   stamp=_stamp(), keep_days=load_settings().archive_days)
    return result, round(time.perf_counter() - started, 2)


@dg.asset(
    group_name=GROUP, owners=OWNERS, kinds={"html", "plotly"},
    deps=[mri_classification, hedis_lbp, quarantine_report, chart_review_results],
    pool=WRITER_POOL,
)
def utilization_dashboard(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """`dashboards/`: self-contained pages with Plotly embedded (overview, trends and variation, breakdowns,
    rule sets and resources), published atomically with a dated copy under `archive/`."""
    from assets.publish.dashboard import build_dashboards

    sizes, seconds = _publish(warehouse, "dashboards", build_dashboards)
    context.log.info(f"{len(sizes)} dashboard pages, {sum(sizes.values()) / 1e6:.1f} MB, in {seconds} s")
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(warehouse.root / "dashboards" / "index.html")),
        "seconds": dg.MetadataValue.float(seconds),
        **{f"bytes_{name.removesuffix('.html')}": dg.MetadataValue.int(size) for name, size in sizes.items()},
    })


@dg.asset(
    group_name=GROUP, owners=OWNERS, kinds={"html", "csv"},
    deps=[mri_classification, hedis_lbp, quarantine_report, chart_review_results],
    pool=WRITER_POOL,
)
def overtreatment_reports(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """`reports/`: downstream interventions after potentially unnecessary versus indicated MRIs (90/180/365
    days), provider and facility tables, the chart-review case list, worklist, review page and validation page,
    the methodology page, and `feedback/` (one PDF per referring provider with enough volume); published
    atomically with a dated copy under `archive/`."""
    import datetime as dt

    from assets.publish.reports import build_reports

    now = dt.datetime.now(dt.timezone.utc)
    # Feedback PDFs whose content did not change are copied from the published version instead of re-rendered.
    published = warehouse.published_version
    previous = published / "reports" / "feedback" if published else None
    summary, seconds = _publish(warehouse, "reports", lambda con, out: build_reports(con, out, now, previous))
    context.log.info(f"overtreatment reports in {seconds} s")
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(warehouse.root / "reports" / "index.html")),
        "seconds": dg.MetadataValue.float(seconds),
        "summary": dg.MetadataValue.json(summary if isinstance(summary, dict) else {}),
    })


@dg.asset(
    group_name=GROUP, owners=OWNERS, pool=WRITER_POOL,
    deps=[classification_export, utilization_dashboard, overtreatment_reports, quarantine_report],
)
def published_outputs(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """The last step of a nightly run: the output tree switches to everything this run built (warehouse,
    exports, quality, dashboards, reports) in one atomic step, and the dashboards and reports get their dated
    copy under `archive/`. Until this step readers see the previous run's outputs, whole; a run killed or failed
    before it publishes nothing. (`imaging-audit run` publishes its own way, after the job.)"""
    from assets.publish.layout import OutputsMoved
    from assets.settings import load_settings

    try:
        released = warehouse.release(stamp=_stamp(), keep_days=load_settings().archive_days)
    except OutputsMoved as exc:
        raise dg.Failure(description=str(exc)) from None
    if released:
        context.log.info(f"published run {warehouse.run_id} as the current outputs of {warehouse.output_root}")
    return dg.MaterializeResult(metadata={"published": dg.MetadataValue.bool(released)})


publish_assets = [classification_export, utilization_dashboard, overtreatment_reports, published_outputs]
