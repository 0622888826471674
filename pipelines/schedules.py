"""The nightly schedule: at IMAGING_AUDIT_SCHEDULE (02:00 by default) in the hospital's time zone, load
yesterday's drop and refresh everything downstream."""


from datetime import timedelta

import dagster as dg

from assets.settings import load_settings
from pipelines.jobs import nightly_audit

_settings = load_settings()


@dg.schedule(
    job=nightly_audit,
    cron_schedule=_settings.schedule_cron,
    execution_timezone=_settings.timezone,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Nightly: yesterday's partition (files named with yesterday's date), then every downstream asset.",
)
def nightly_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    yesterday = (context.scheduled_execution_time - timedelta(days=1)).strftime("%Y-%m-%d")
    return dg.RunRequest(partition_key=yesterday, run_key=f"nightly-{yesterday}")
