"""Daily partitions: one per landing date, in the hospital's time zone.

A file whose name carries an ISO date (`scans_2026-03-14.csv`) is that day's nightly drop and loads into that
day's partition. A file without a date (`scans.csv`, `scans.part0001.parquet`) is a baseline extract and loads
into the first partition. Re-running a partition deletes what that partition loaded before and loads its files
again, so re-runs are idempotent.
"""

from __future__ import annotations

import dagster as dg

from assets.settings import load_settings

_settings = load_settings()

# end_offset=1: today's partition exists, so a drop that lands today can be loaded today (sensor).
daily_partitions = dg.DailyPartitionsDefinition(
    start_date=_settings.start_date, timezone=_settings.timezone, end_offset=1
)
BASELINE_PARTITION = _settings.start_date


def partition_for(drop_date: str | None) -> str:
    """The partition a file loads into, given the date in its name (None for baseline files)."""
    if drop_date is None or drop_date < BASELINE_PARTITION:
        return BASELINE_PARTITION
    return drop_date
