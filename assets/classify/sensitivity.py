"""What-if classification for analysts: re-run a rule set with changed windows, without touching the warehouse.

The warehouse is attached read-only to an in-memory DuckDB database; the tables classification needs are
copied there, and the same engine the pipeline uses classifies them under the changed parameters.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

NEEDED = ("referrals", "scans", "clinical_events")


def open_scratch(warehouse: Path):
    """An in-memory DuckDB holding copies of the input tables of `warehouse` (opened read-only)."""
    import duckdb

    from assets.ingest.linking import build_scan_links

    from assets.publish.layout import resolve
    from assets.resources import without_progress_bar
    from assets.sql import path_literal

    con = without_progress_bar(duckdb.connect())
    # ATTACH takes no bound parameter: the path goes in as a quoted literal (a folder may be named O'Brien).
    con.execute(f"ATTACH {path_literal(resolve(Path(warehouse)))} AS wh (READ_ONLY)")
    for table in NEEDED:
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM wh.{table}")
    con.execute("DETACH wh")
    build_scan_links(con)
    return con


def what_if(warehouse: Path, rule_set: str = "standard", **parameters):
    """Classify every scan under `rule_set` with `parameters` changed; returns a pandas frame comparing the
    verdicts with those under the rule set as published (columns scan_id, category_published,
    reasons_published, category_what_if, reasons_what_if, changed)."""
    from assets.classify.assets import classify_scans
    from assets.classify.rule_sets import load_rule_sets

    (published,) = load_rule_sets([rule_set])
    unknown = sorted(set(parameters) - set(published.parameters))
    if unknown:
        raise ValueError(f"{rule_set} has no parameter {', '.join(unknown)}")
    changed = replace(published, parameters={**published.parameters, **parameters},
                      version=published.version + "+what-if")
    con = open_scratch(warehouse)
    try:
        classify_scans(con, [published])
        con.execute("CREATE TABLE published AS SELECT scan_id, category, reasons FROM mri_classification")
        classify_scans(con, [changed])
        return con.execute(
            """SELECT p.scan_id, p.category AS category_published, p.reasons AS reasons_published,
                      w.category AS category_what_if, w.reasons AS reasons_what_if,
                      p.category <> w.category AS changed
               FROM published p JOIN mri_classification w USING (scan_id) ORDER BY p.scan_id"""
        ).df()
    finally:
        con.close()


def shift_table(comparison):
    """Counts of scans by published verdict (rows) and what-if verdict (columns)."""
    return comparison.pivot_table(index="category_published", columns="category_what_if", values="scan_id",
                                  aggfunc="count", fill_value=0)
