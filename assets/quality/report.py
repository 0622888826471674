"""`quality/index.html`: the data-quality results of the latest run, readable offline.

GX Data Docs (quality/data_docs/) load their styles and tables from the internet; this page needs nothing but
the file, so a quality team can read it on an isolated intranet.
"""

from __future__ import annotations

import html
from datetime import datetime, timezone

from assets.html import page, table


def render_quality_page(con, generated_at: datetime | None = None) -> str:
    generated_at = generated_at or datetime.now(timezone.utc)
    has_checks = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'quality_check_results'"
    ).fetchall()[0][0]
    checks = con.execute(
        """SELECT table_name, check_name, dimension, blocking, passed, violated, percent, denominator, description,
                  partition_first, partition_last
           FROM quality_check_results
           WHERE checked_at = (SELECT max(checked_at) FROM quality_check_results)
           ORDER BY passed, NOT blocking, table_name, check_name"""
    ).fetchall() if has_checks else []
    files = con.execute(
        """SELECT source_file, table_name, load_partition, rows_in, rows_loaded, rows_quarantined
           FROM ingest_files ORDER BY table_name, source_file"""
    ).fetchall()
    reasons = con.execute(
        "SELECT table_name, reason, count(*) FROM quarantine GROUP BY ALL ORDER BY 3 DESC, 1, 2 LIMIT 25"
    ).fetchall()
    privacy = con.execute(
        """SELECT table_name, column_name, kind, action, sum(rows) FROM privacy_findings
           GROUP BY ALL ORDER BY 5 DESC"""
    ).fetchall()

    def status(blocking: bool, passed: bool) -> str:
        if passed:
            return '<span class="ok">met</span>'
        return '<span class="fail">BLOCKING</span>' if blocking else '<span class="warnc">warning</span>'

    rows_html = "".join(
        "<tr>" + "".join(f"<td{' class=num' if i in (4, 5, 6) else ''}>{v}</td>" for i, v in enumerate([
            html.escape(t), html.escape(name.split("__", 1)[1]), html.escape(dim or ""), status(blocking, passed),
            f"{violated:,}", f"{percent:.2f}%", f"{denominator:,}", html.escape(description or ""),
        ])) + "</tr>"
        for t, name, dim, blocking, passed, violated, percent, denominator, description, *_ in checks
    )
    failed = sum(1 for c in checks if not c[4])
    blocking_failed = sum(1 for c in checks if not c[4] and c[3])
    period = f"partitions {checks[0][9]} to {checks[0][10]}" if checks else "no checks recorded"
    quarantined = sum(f[5] for f in files)
    body = f"""
<div class="tiles">
<div class="tile"><div class="n">{len(checks) - failed:,} / {len(checks):,}</div><div class="l">checks met ({html.escape(period)})</div></div>
<div class="tile"><div class="n">{blocking_failed:,}</div><div class="l">blocking checks failed (downstream assets stop)</div></div>
<div class="tile"><div class="n">{quarantined:,}</div><div class="l">input rows quarantined (quarantine.csv)</div></div>
<div class="tile"><div class="n">{sum(p[4] for p in privacy):,}</div><div class="l">identifier-like values masked or quarantined</div></div>
</div>
<section><h2>Checks</h2>
<table><thead><tr><th>table</th><th>check</th><th>dimension</th><th>status</th><th class="num">violated rows</th>
<th class="num">percent</th><th class="num">of rows</th><th>what it checks</th></tr></thead><tbody>{rows_html}</tbody></table>
<p class="note">Blocking checks protect the correctness of the classification: when one fails, nothing downstream
of its table is refreshed. Warnings are reported and the run goes on. The Great Expectations suites are in
<code>expectations/</code>; their Data Docs are in <a href="data_docs/index.html">data_docs/</a> (styled when online).</p>
</section>
<section><h2>Rows per file</h2>
{table(["file", "table", "partition", "rows in", "loaded", "quarantined"], files, numeric={3, 4, 5})}
<p class="note">Every row is loaded or quarantined: rows in = loaded + quarantined for every file.</p></section>
<section><h2>Quarantine reasons</h2>
{table(["table", "reason", "rows"], reasons, numeric={2}) if reasons else '<p class="note">No row was quarantined.</p>'}
</section>
<section><h2>Identifier guard</h2>
{table(["table", "column", "looked like", "action", "values"], privacy, numeric={4}) if privacy else '<p class="note">No identifier-like value was found.</p>'}
<p class="note">Values are never shown: only where they were and what was done. Columns outside the data contract
are dropped before loading (see reconciliation.csv).</p></section>
"""
    return page("Data quality", f"published {generated_at.strftime('%Y-%m-%d %H:%M UTC')}", body)
