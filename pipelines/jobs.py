"""The one job: ingest -> quality -> classify -> publish, for one or more daily partitions."""

from __future__ import annotations

import dagster as dg

NIGHTLY_JOB_NAME = "nightly_audit"
# Runs of the job queue one behind another (deploy/dagster.yaml limits this tag to one run in progress): each
# run builds on the outputs the one before it published.
OUTPUT_WRITER_TAG = "imaging-audit/output-writer"

nightly_audit = dg.define_asset_job(
    name=NIGHTLY_JOB_NAME,
    selection=dg.AssetSelection.all(),
    tags={OUTPUT_WRITER_TAG: "nightly"},
    description=(
        "Load the day's landing files, check and quarantine, classify every scan under each rule set, and "
        "publish exports and dashboards. The CLI runs this same job over every partition its input holds."
    ),
)
