"""The dashboard index page: what was loaded, quarantined and classified, for a person to read.

Self-contained HTML (inline CSS, no scripts or network), so it opens offline on a hospital intranet.
"""

from __future__ import annotations

import html
from datetime import datetime, timezone

from assets.html import CSS as _CSS, num as _num, table as _table

CATEGORY_ORDER = ["indicated", "potentially_unnecessary", "insufficient_information", "out_of_scope"]


def gather(con) -> dict:
    """The figures the index page shows, read from the warehouse."""
    q = lambda sql: con.execute(sql).fetchall()  # noqa: E731
    return {
        "tables": q(
            """SELECT table_name, count(DISTINCT source_file), sum(rows_in), sum(rows_loaded), sum(rows_quarantined)
               FROM ingest_files GROUP BY ALL ORDER BY 1"""
        ),
        "regions": q(
            """SELECT body_region, count(*) AS n FROM scan_links GROUP BY body_region
               ORDER BY list_position(['lumbar', 'cervical', 'thoracic', 'other'], body_region)"""
        ),
        "links": q("SELECT link_method, count(*) FROM scan_links GROUP BY ALL ORDER BY 2 DESC"),
        "categories": q(
            """SELECT rule_set, rule_set_version, category, count(*) FROM mri_classification
               GROUP BY ALL ORDER BY rule_set, category"""
        ),
        "standard_share": con.execute(
            """SELECT count(*) FILTER (WHERE category = 'potentially_unnecessary'),
                      count(*) FILTER (WHERE category <> 'out_of_scope')
               FROM mri_classification WHERE rule_set = 'standard'"""
        ).fetchone(),
        "quarantine": q("SELECT table_name, reason, count(*) FROM quarantine GROUP BY ALL ORDER BY 3 DESC LIMIT 15"),
        "period": con.execute("SELECT min(scan_date), max(scan_date) FROM scan_links").fetchone(),
    }


def render_index(figures: dict, generated_at: datetime | None = None) -> str:
    generated_at = generated_at or datetime.now(timezone.utc)
    scans_total = sum(n for _, n in figures["regions"])
    spine = sum(n for region, n in figures["regions"] if region != "other")
    quarantined = sum(r[4] or 0 for r in figures["tables"])
    start, end = figures["period"]
    period = f"{start} to {end}" if start else "no scans loaded"
    unnecessary, judged = figures["standard_share"]
    share = f"{unnecessary / judged:.1%}" if judged else "–"
    tiles = [
        (scans_total, "scans loaded"),
        (spine, "spine MRIs (cervical, thoracic, lumbar)"),
        (share, f"potentially unnecessary (standard rule set; {unnecessary:,} of {judged:,} spine MRIs)"),
        (quarantined, "input rows quarantined"),
    ]
    tiles_html = "".join(f'<div class="tile"><div class="n">{_num(n)}</div><div class="l">{html.escape(label)}</div></div>' for n, label in tiles)
    quarantine_html = (
        _table(["table", "reason", "rows"], figures["quarantine"], numeric={2})
        if figures["quarantine"]
        else '<p class="note">No rows were quarantined.</p>'
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Spine MRI utilization audit</title><style>{_CSS}</style></head>
<body>
<header><h1>Spine MRI utilization audit</h1>
<p>Scans dated {html.escape(period)} · published {generated_at.strftime('%Y-%m-%d %H:%M UTC')}</p></header>
<main>
<div class="tiles">{tiles_html}</div>
<section><h2>Rows loaded per table</h2>
{_table(["table", "files", "rows in", "loaded", "quarantined"], figures["tables"], numeric={1, 2, 3, 4})}
<p class="note">Every input row is either loaded or quarantined with a reason. Data-quality checks, quarantine
reasons and the identifier guard: <a href="../quality/index.html">quality report</a>.</p></section>
<section><h2>Scans by body region</h2>{_table(["body region", "scans"], figures["regions"], numeric={1})}</section>
<section><h2>Scan-to-referral links</h2>{_table(["link", "scans"], figures["links"], numeric={1})}
<p class="note">explicit: the scan names its referral · inferred_90d: the patient's latest referral for the same
region in the 90 days before the scan · none: classified from the scan's own codes and history.</p></section>
<section><h2>Classification by rule set</h2>
{_table(["rule set", "version", "category", "scans"], figures["categories"], numeric={3})}
<p class="note">One row per scan per rule set; the reasons and evidence of each verdict are in
<code>exports/mri_classification.csv</code>.</p></section>
<section><h2>Quarantine: most frequent reasons</h2>{quarantine_html}</section>
</main></body></html>
"""
