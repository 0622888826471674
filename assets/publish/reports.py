"""Overtreatment reports: what followed spine MRIs, who ordered them, and the cases to review.

`build_reports(con, out_dir, generated_at)` reads the warehouse with plain SELECT queries (a read-only connection
is enough: no tables or views are created, not even temporary ones) and writes into `out_dir`:

- `index.html`: headline figures and links.
- `downstream.html`, `downstream_interventions.csv`: spine MRIs followed by an injection, spine surgery, EMG/NCS,
  repeat advanced imaging or a new opioid within 90, 180 and 365 days, per category and rule set.
- `providers.html`, `providers.csv`, `facilities.html`, `facilities.csv`: per referring provider and per facility,
  spine MRIs, the potentially unnecessary rate under each rule set, injections after potentially unnecessary MRIs.
- `chart_review_cases.csv`: every scan the primary rule set calls potentially unnecessary, for chart review.
- `methodology.html`: rule sets, windows, value sets, suppression, data coverage, sources.

Per-scan work (matching codes to value-set concepts, each scan's first downstream event, its follow-up time) is
DuckDB SQL; Python only sees aggregated rows (one per category, provider or facility), and the small-cell
protection runs on those. Every published count of 1-10 is suppressed, and further cells are withheld wherever a
published total, complement or difference would let a reader work a suppressed cell out (`Protection`).

By concern: `report_definitions` (interventions, windows, benchmarks, sources), `report_queries` (the SQL and
gathering), `report_protection` (the cells and equations), `report_pages` and `report_methodology` (the pages),
`report_files` (the CSV files); this module writes them.
"""


from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from assets.publish.files import copy_query_to_csv, write_text_atomic
from assets.publish.report_files import downstream_csv, units_csv
from assets.publish.report_methodology import render_methodology
from assets.publish.report_pages import render_downstream, render_index, render_units, unit_rows
from assets.publish.report_protection import build_protection
from assets.publish.report_queries import cases_sql, gather


def build_reports(con, out_dir: Path, generated_at: datetime, previous_feedback: Path | None = None) -> dict:
    """Write the overtreatment reports into `out_dir`; returns the files written and their row counts.

    `con` may be read-only: only SELECT and COPY ... TO are run. Needs the warehouse tables `mri_classification`,
    `scan_links`, `scans_current`, `referrals_current`, `clinical_events`, `value_set_codes`, `ingest_files` and
    `quarantine`.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = gather(con)
    protection = build_protection(figures)
    names = figures["names"]
    from assets.review.pages import reviewed_rates

    figures["reviewed_rates"] = reviewed_rates(con)

    rows: dict[str, int] = {}
    case_path = out_dir / "chart_review_cases.csv"
    rows[case_path.name] = copy_query_to_csv(con, cases_sql(names, with_ctes=False), case_path)
    text, rows["downstream_interventions.csv"] = downstream_csv(protection, figures)
    write_text_atomic(out_dir / "downstream_interventions.csv", text)
    text, rows["providers.csv"] = units_csv(protection, figures, "provider")
    write_text_atomic(out_dir / "providers.csv", text)
    text, rows["facilities.csv"] = units_csv(protection, figures, "facility")
    write_text_atomic(out_dir / "facilities.csv", text)
    pages = {
        "downstream.html": render_downstream(protection, figures, generated_at),
        "providers.html": render_units(protection, figures, "provider", generated_at),
        "facilities.html": render_units(protection, figures, "facility", generated_at),
        "methodology.html": render_methodology(protection, figures, generated_at),
        "index.html": render_index(protection, figures, generated_at),
    }
    for name, text in pages.items():
        write_text_atomic(out_dir / name, text)
    from assets.review.pages import write_review_reports

    rows.update(write_review_reports(con, out_dir, generated_at))
    from assets.publish.feedback import write_feedback

    feedback = write_feedback(con, protection, figures, unit_rows(protection, figures, "provider"),
                              out_dir / "feedback", generated_at, previous=previous_feedback)
    total = figures["total"] or {}
    return {
        "files": sorted({*rows, *pages, *feedback.pop("files")}),
        "rows": rows,
        "rule_sets": [f"{rs} {v}" for rs, v in figures["rule_sets"]],
        "period": [str(x) if x is not None else None for x in (total.get("first_scan"), total.get("last_scan"))],
        "follow_up_through": str(total["data_end"]) if total.get("data_end") else None,
        "cells": protection.counts(),
        **feedback,
        "seconds": round(time.perf_counter() - started, 2),
    }
