"""Settings read from the environment, with the defaults an operator gets when nothing is set.

| variable | default | meaning |
|---|---|---|
| IMAGING_AUDIT_INPUT | data_samples | landing directory the nightly run and the sensor read |
| IMAGING_AUDIT_OUTPUT | output | where the warehouse and published outputs live |
| IMAGING_AUDIT_INPUT_FORMAT | auto | auto, native, claims or fhir |
| IMAGING_AUDIT_TIMEZONE | UTC | the hospital's time zone: partitions, schedule and "yesterday" follow it |
| IMAGING_AUDIT_START_DATE | 2025-01-01 | first daily partition (set it to the go-live date); undated baseline files, and drops dated earlier, load into it |
| IMAGING_AUDIT_SCHEDULE | 0 2 * * * | cron of the nightly run, in IMAGING_AUDIT_TIMEZONE |
"""

from __future__ import annotations

import os
from dataclasses import dataclass

PROJECT_ROOT_MARKER = "pyproject.toml"


@dataclass(frozen=True)
class Settings:
    input_dir: str
    output_dir: str
    input_format: str
    timezone: str
    start_date: str
    schedule_cron: str


def load_settings() -> Settings:
    return Settings(
        input_dir=os.environ.get("IMAGING_AUDIT_INPUT", "data_samples"),
        output_dir=os.environ.get("IMAGING_AUDIT_OUTPUT", "output"),
        input_format=os.environ.get("IMAGING_AUDIT_INPUT_FORMAT", "auto"),
        timezone=os.environ.get("IMAGING_AUDIT_TIMEZONE", "UTC"),
        start_date=os.environ.get("IMAGING_AUDIT_START_DATE", "2025-01-01"),
        schedule_cron=os.environ.get("IMAGING_AUDIT_SCHEDULE", "0 2 * * *"),
    )
