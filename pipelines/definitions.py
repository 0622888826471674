"""The Dagster code location: every asset, check, job, schedule and sensor of imaging-audit.

Kept cheap to import (no DuckDB, pandas, GX or Plotly at module level) so `dagster dev` loads it quickly.
"""

import dagster as dg

from assets.classify.assets import classify_assets
from assets.ingest.assets import ingest_assets
from assets.publish.assets import publish_assets
from assets.quality.assets import quality_assets, quality_checks
from assets.resources import default_resources
from assets.review.assets import review_assets
from assets.text.assets import text_assets
from pipelines.jobs import nightly_audit
from pipelines.progress import progress_logger
from pipelines.schedules import nightly_schedule
from pipelines.sensors import landing_sensor

defs = dg.Definitions(
    assets=[*ingest_assets, *quality_assets, *text_assets, *classify_assets, *review_assets, *publish_assets],
    asset_checks=quality_checks,
    jobs=[nightly_audit],
    schedules=[nightly_schedule],
    sensors=[landing_sensor],
    resources=default_resources(),
    # Dagster's console log for `dagster dev`; the CLI selects the concise progress log instead.
    loggers={**dg.default_loggers(), "progress": progress_logger},
    # DuckDB has one writer: steps run one after another in the run's process.
    executor=dg.in_process_executor,
)
