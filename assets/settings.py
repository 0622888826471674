"""Settings read from the environment, with the defaults an operator gets when nothing is set.

| variable | default | meaning |
|---|---|---|
| IMAGING_AUDIT_INPUT | data_samples | landing directory the nightly run and the sensor read |
| IMAGING_AUDIT_OUTPUT | output | where the warehouse and published outputs live |
| IMAGING_AUDIT_INPUT_FORMAT | auto | auto, native, claims or fhir |
| IMAGING_AUDIT_TIMEZONE | UTC | the hospital's time zone: partitions, schedule and "yesterday" follow it |
| IMAGING_AUDIT_START_DATE | 2025-01-01 | first daily partition (set it to the go-live date); undated baseline files, and drops dated earlier, load into it |
| IMAGING_AUDIT_SCHEDULE | 0 2 * * * | cron of the nightly run, in IMAGING_AUDIT_TIMEZONE |
| IMAGING_AUDIT_ARCHIVE_DAYS | 90 | days of `archive/<date>/` kept; older days are removed when a run archives (0: keep all) |
| IMAGING_AUDIT_REVIEW_PER_STRATUM | 2 | unreviewed scans the chart-review worklist samples per rule set, category and month |
| IMAGING_AUDIT_REVIEW_PER_OUTLIER | 10 | unreviewed scans it adds per referring provider or facility outside the funnel plot's 99.8% limits |
| IMAGING_AUDIT_REVIEW_SEED | 20250101 | seed of the worklist's random sample (the same seed and data give the same sample) |
| IMAGING_AUDIT_FEEDBACK_MIN_SCANS | 30 | spine MRIs a referring provider needs for a feedback report (`reports/feedback/`) |
| IMAGING_AUDIT_FEEDBACK_CASES | 50 | the most recent potentially unnecessary MRIs a feedback report lists (0: all; the CSV has all) |
| IMAGING_AUDIT_FEEDBACK_REFRESH_DAYS | 7 | days a set of feedback reports stands before runs render it again (0: every run) |
| IMAGING_AUDIT_UNIT_COSTS | reference/unit_costs.yaml | unit costs of spine MRIs by CPT code and care setting, for the cost figures |
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
    archive_days: int = 90
    review_per_stratum: int = 2
    review_per_outlier: int = 10
    review_seed: str = "20250101"
    feedback_min_scans: int = 30
    feedback_cases: int = 50
    feedback_refresh_days: int = 7


def _archive_days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        raise ValueError(f"IMAGING_AUDIT_ARCHIVE_DAYS must be a whole number of days (0: keep all), not {text!r}")
    if days < 0:
        raise ValueError(f"IMAGING_AUDIT_ARCHIVE_DAYS must be 0 or more, not {days}")
    return days


def _count(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip() or str(default)
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {text!r}") from None
    if value < 0:
        raise ValueError(f"{name} must be 0 or more, not {value}")
    return value


def load_settings() -> Settings:
    return Settings(
        input_dir=os.environ.get("IMAGING_AUDIT_INPUT", "data_samples"),
        output_dir=os.environ.get("IMAGING_AUDIT_OUTPUT", "output"),
        input_format=os.environ.get("IMAGING_AUDIT_INPUT_FORMAT", "auto"),
        timezone=os.environ.get("IMAGING_AUDIT_TIMEZONE", "UTC"),
        start_date=os.environ.get("IMAGING_AUDIT_START_DATE", "2025-01-01"),
        schedule_cron=os.environ.get("IMAGING_AUDIT_SCHEDULE", "0 2 * * *"),
        archive_days=_archive_days(os.environ.get("IMAGING_AUDIT_ARCHIVE_DAYS", "90").strip() or "90"),
        review_per_stratum=_count("IMAGING_AUDIT_REVIEW_PER_STRATUM", 2),
        review_per_outlier=_count("IMAGING_AUDIT_REVIEW_PER_OUTLIER", 10),
        review_seed=os.environ.get("IMAGING_AUDIT_REVIEW_SEED", "").strip() or "20250101",
        feedback_min_scans=max(1, _count("IMAGING_AUDIT_FEEDBACK_MIN_SCANS", 30)),
        feedback_cases=_count("IMAGING_AUDIT_FEEDBACK_CASES", 50),
        feedback_refresh_days=_count("IMAGING_AUDIT_FEEDBACK_REFRESH_DAYS", 7),
    )
