"""The one job: ingest -> quality -> classify -> publish, for one or more daily partitions."""

from __future__ import annotations

import dagster as dg

NIGHTLY_JOB_NAME = "nightly_audit"

nightly_audit = dg.define_asset_job(
    name=NIGHTLY_JOB_NAME,
    selection=dg.AssetSelection.all(),
    description=(
        "Load the day's landing files, check and quarantine, classify every scan under each rule set, and "
        "publish exports and dashboards. The CLI runs this same job over every partition its input holds."
    ),
)
