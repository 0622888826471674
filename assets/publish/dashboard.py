"""The utilization dashboards: self-contained HTML pages with Plotly embedded, so they open offline.

`build_dashboards(con, out_dir)` reads the warehouse (read-only) and writes:
- `index.html`: headline figures with their denominators, what was loaded, links to the other pages;
- `trends.html`: the monthly p-chart and the funnel plots of referring providers and facilities;
- `breakdowns.html`: reasons, specialties, facilities, care settings, age bands, referral-to-scan time,
  findings yield, safety and contrast reviews;
- `rule_sets.html`: the rule sets side by side, and the scanner time and cost of potentially unnecessary MRIs.

Every count of 1-10 is suppressed (with its complement where a total would reveal it). The pages share one copy
of Plotly's library (`plotly.min.js`) in the same folder, so the folder opens offline as a whole.
"""

from __future__ import annotations

import html
from datetime import datetime, timezone
from pathlib import Path

from assets.html import CSS, num, table
from assets.publish.statistics import SMALL_CELL_MAX, SUPPRESSED, is_small, rate, show, suppress_row
from assets.sql import literal

CATEGORIES = ["indicated", "potentially_unnecessary", "insufficient_information"]
WAIT_BIN_DAYS = 10
WAIT_BINS = ["0-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60+"]
PLOTLY_JS = "plotly.min.js"
PAGES = [("index.html", "Overview"), ("trends.html", "Trends and variation"),
         ("breakdowns.html", "Breakdowns"), ("rule_sets.html", "Rule sets and resources")]


def _q(con, sql: str, params=None):
    return con.execute(sql, params or []).fetchall()


def _pct(x) -> str:
    return "–" if x is None else f"{x:.1%}"


def _nav(current: str) -> str:
    links = " · ".join(
        f"<b>{html.escape(label)}</b>" if name == current else f'<a href="{name}">{html.escape(label)}</a>'
        for name, label in PAGES
    )
    return (f'<nav class="note" style="margin-bottom:16px">{links} · <a href="../reports/index.html">Overtreatment '
            f'reports</a> · <a href="../quality/index.html">Data quality</a></nav>')


def _page(title: str, subtitle: str, body: str, current: str, with_plotly: bool) -> str:
    # Plotly's library is one file beside the pages (written by build_dashboards), not copied into each.
    script = f'<script src="{PLOTLY_JS}"></script>' if with_plotly else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{html.escape(title)}</title><style>{CSS}
nav a{{color:#0b3c5d}} .figure{{margin-bottom:8px}}</style>{script}</head>
<body><header><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p></header>
<main>{_nav(current)}{body}</main></body></html>
"""


def _fig_html(fig) -> str:
    return '<div class="figure">' + fig.to_html(full_html=False, include_plotlyjs=False,
                                                 config={"displaylogo": False, "responsive": True}) + "</div>"


def _section(title: str, content: str, note: str = "") -> str:
    note_html = f'<p class="note">{note}</p>' if note else ""
    return f"<section><h2>{html.escape(title)}</h2>{content}{note_html}</section>"


# Stacked charts show two series: with three, a small "insufficient information" cell would force its complement
# (usually the potentially unnecessary count) out of the chart as well.
SERIES = ["potentially_unnecessary", "other_in_scope"]


# Verdicts with their referral's and scan's attributes, joined once per publication (temporary, so a read-only
# connection can make it): the breakdowns and funnels read it a dozen times. Their label expressions use `m.`.
JOINED = "_verdicts_joined"


def _join_once(con) -> None:
    from assets.publish.casemix import expected_share_sql
    from assets.publish.costs import load_unit_costs

    # expected_pu: the share of the scan's case-mix stratum (in scope, per rule set), for indirect standardisation.
    expected = expected_share_sql("m.category = 'potentially_unnecessary'", "r.patient_age", "r.patient_sex",
                                  "r.care_setting", "m.body_region", "r.referring_specialty",
                                  within=("m.rule_set", "m.category = 'out_of_scope'"))
    con.execute(f"""CREATE OR REPLACE TEMP TABLE {JOINED} AS
        SELECT m.scan_id, m.rule_set, m.category, m.scan_date, m.body_region, m.procedure_code, m.op8_numerator,
               r.referring_provider_id, r.referring_specialty, r.care_setting, r.patient_age, r.referral_date,
               s.facility_id, s.scan_minutes,
               {load_unit_costs().sql("m.procedure_code", "r.care_setting")} AS unit_cost,
               {expected} AS expected_pu
        FROM mri_classification m
        JOIN scan_links l USING (scan_id)
        LEFT JOIN referrals_current r ON r.referral_id = l.referral_id
        LEFT JOIN scans_current s ON s.scan_id = m.scan_id""")


def _category_rows(con, label_sql: str, rule_set: str = "standard", where: str = "TRUE", order: str = "2 DESC"):
    """(label, total, [potentially unnecessary, other in scope]) with small cells suppressed per row."""
    rows = _q(con, f"""
        SELECT {label_sql} AS label, count(*) AS total,
               count(*) FILTER (WHERE m.category = 'potentially_unnecessary'),
               count(*) FILTER (WHERE m.category <> 'potentially_unnecessary')
        FROM {JOINED} m
        WHERE m.rule_set = ? AND m.category <> 'out_of_scope' AND {where}
        GROUP BY 1 ORDER BY {order}""", [rule_set])
    out = []
    for label, total, *counts in rows:
        if is_small(total):
            continue  # the whole label is too small to show
        out.append((label if label is not None else "unknown", total, suppress_row(list(counts))))
    return out


def gather(con) -> dict:
    """Everything the pages show, as small lists read from the warehouse."""
    figures = _gather(con)
    from assets.publish.costs import load_unit_costs
    from assets.publish.filters import page_data
    from assets.review.pages import reviewed_rates

    figures["reviewed_rates"] = reviewed_rates(con)
    rule_sets = [rs for rs, _ in figures["rule_sets"]]
    figures["filters"] = page_data(con, JOINED, rule_sets, load_unit_costs().currency) if rule_sets else None
    return figures


def _gather(con) -> dict:
    spine_total, unnecessary = _q(con, """
        SELECT count(*), count(*) FILTER (WHERE category = 'potentially_unnecessary')
        FROM mri_classification WHERE rule_set = 'standard' AND category <> 'out_of_scope'""")[0]
    op8_num, op8_den = _q(con, """SELECT count(*) FILTER (WHERE op8_numerator), count(op8_numerator)
                                  FROM mri_classification WHERE rule_set = 'standard'""")[0]
    has_hedis = _q(con, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'hedis_lbp'")[0][0]
    hedis_num, hedis_den = _q(con, """SELECT count(*) FILTER (WHERE in_denominator AND imaging_within_window),
                                      count(*) FILTER (WHERE in_denominator) FROM hedis_lbp""")[0] if has_hedis else (0, 0)
    months = _q(con, """
        SELECT strftime(scan_date, '%Y-%m') AS month, count(*),
               count(*) FILTER (WHERE category = 'potentially_unnecessary'),
               {cats}
        FROM mri_classification WHERE rule_set = 'standard' AND category <> 'out_of_scope'
        GROUP BY 1 ORDER BY 1""".format(cats=", ".join(
        f"count(*) FILTER (WHERE category = {literal(c)})" for c in CATEGORIES)))
    return {
        "period": _q(con, "SELECT min(scan_date), max(scan_date) FROM scan_links")[0],
        "scans_total": _q(con, "SELECT count(*) FROM scan_links")[0][0],
        "spine_total": spine_total,
        "unnecessary": unnecessary,
        "op8": (op8_num, op8_den),
        "hedis": (hedis_num, hedis_den),
        "rule_sets": _q(con, """SELECT DISTINCT rule_set, rule_set_version FROM mri_classification ORDER BY
                               rule_set <> 'standard', rule_set"""),
        "months": months,
        "tables": _q(con, """SELECT table_name, count(DISTINCT source_file), sum(rows_in), sum(rows_loaded),
                                    sum(rows_quarantined) FROM ingest_files GROUP BY ALL ORDER BY 1"""),
        "regions": _q(con, """SELECT body_region, count(*) FROM scan_links GROUP BY body_region
                              ORDER BY list_position(['lumbar', 'cervical', 'thoracic', 'other'], body_region)"""),
    }


def _headline(figures: dict) -> str:
    """The filter panel (tiles for lumbar MRIs over the whole period first), then the measure the filters do not
    cut: HEDIS LBP counts episodes of patients, not scans."""
    from assets.publish.filters import render_panel

    hedis_num, hedis_den = figures["hedis"]
    hedis = None if rate(hedis_num, hedis_den) is None else 1 - rate(hedis_num, hedis_den)
    panel = render_panel(figures["filters"]) if figures.get("filters") else ""
    tile = (f'<div class="tiles"><div class="tile"><div class="n">{_pct(hedis)}</div><div class="l">HEDIS LBP: '
            f"episodes without imaging in 28 days ({num(hedis_den - hedis_num)} of {num(hedis_den)}; higher is "
            "better; all episodes, not filtered)</div></div></div>")
    return panel + tile


def render_index(figures: dict, generated_at: datetime | None = None) -> str:
    generated_at = generated_at or datetime.now(timezone.utc)
    start, end = figures["period"]
    rule_sets = ", ".join(f"{n} {v}" for n, v in figures["rule_sets"])
    quarantined = sum(r[4] or 0 for r in figures["tables"])
    small = lambda n: show(n) if is_small(n) else n  # noqa: E731  (row counts are published like any count)
    from assets.review.pages import reviewed_rates_section

    rates = reviewed_rates_section(figures["reviewed_rates"], "../reports/validation.html") \
        if figures.get("reviewed_rates") else ""
    body = _headline(figures) + rates + _section(
        "What is here",
        "<ul>"
        '<li><a href="trends.html">Trends and variation</a>: the monthly share of potentially unnecessary MRIs as a '
        "control chart, and referring providers and facilities against the overall rate (funnel plots).</li>"
        '<li><a href="breakdowns.html">Breakdowns</a>: reasons, specialties, facilities, care settings, age bands, '
        "time from referral to scan, findings yield, safety and contrast reviews.</li>"
        '<li><a href="rule_sets.html">Rule sets and resources</a>: how verdicts shift between rule sets, and the '
        "scanner time and cost of potentially unnecessary MRIs.</li>"
        '<li><a href="../reports/index.html">Overtreatment reports</a>: what followed the MRIs, per provider and '
        "facility, the chart-review case list and the methodology.</li>"
        '<li><a href="../reports/feedback/index.html">Referrer feedback</a>: one printable report per referring '
        "provider, against peers of the same specialty, with the cases for chart review.</li>"
        '<li><a href="../quality/index.html">Data quality</a>: checks, quarantine and identifier guard.</li></ul>',
        f"Rule sets: {html.escape(rule_sets)}. Denominators are spine MRIs classified in scope unless stated. "
        f"Counts of 1-{SMALL_CELL_MAX} are shown as &lt;11.",
    ) + _section(
        "Rows loaded per table",
        table(["table", "files", "rows in", "loaded", "quarantined"],
              [(t, f, small(i), small(lo), small(q)) for t, f, i, lo, q in figures["tables"]], numeric={1, 2, 3, 4}),
        f"{small(quarantined)} input rows were quarantined with a reason (see the data-quality page).",
    ) + _section(
        "Scans by body region",
        table(["body region", "scans"], [(r, show(n) if is_small(n) else n) for r, n in figures["regions"]], numeric={1}),
    )
    subtitle = f"Scans dated {start} to {end} · published {generated_at.strftime('%Y-%m-%d %H:%M UTC')}"
    return _page("Spine MRI utilization audit", subtitle, body, "index.html", with_plotly=True)


def render_trends(con, figures: dict, subtitle: str) -> str:
    from assets.publish.figures import funnel_figure, p_chart_figure, stacked_categories_figure

    months = [m for m in figures["months"] if not is_small(m[1])]
    parts = []
    if len(months) >= 2:
        fig, chart = p_chart_figure([m[0] for m in months], [m[2] for m in months], [m[1] for m in months], "standard")
        signals = [m[0] for m, p in zip(months, chart["points"]) if p["beyond_limits"] or p["run"]]
        parts.append(_section(
            "Monthly share, statistical process control", _fig_html(fig),
            "p-chart: centre line = overall share; limits = 3 standard errors for each month's number of spine MRIs. "
            + (f"Special-cause signals in {', '.join(signals)}." if signals else "No special-cause signal: the "
               "variation is what chance alone would give.")
            + " Months with 1-10 spine MRIs are left out.",
        ))
        counts = {c: [] for c in SERIES}
        for m in months:
            for c, v in zip(SERIES, suppress_row([m[2], m[1] - m[2]])):
                counts[c].append(v)
        parts.append(_section("Monthly volume by verdict", _fig_html(stacked_categories_figure(
            [m[0] for m in months], counts, "Spine MRIs per month by verdict (standard rule set)", "month of scan"))))
    centre = rate(figures["unnecessary"], figures["spine_total"]) or 0.0
    for unit, label_sql, join_note in (
        ("referring provider", "coalesce(m.referring_provider_id, 'unknown')", "via the linked referral"),
        ("facility", "coalesce(m.facility_id, 'unknown')", "where the scan was performed"),
    ):
        rows = _q(con, f"""
            SELECT {label_sql}, count(*), count(*) FILTER (WHERE m.category = 'potentially_unnecessary'),
                   sum(m.expected_pu)
            FROM {JOINED} m
            WHERE m.rule_set = 'standard' AND m.category <> 'out_of_scope' GROUP BY 1""")
        shown = [(u, n, x, e) for u, n, x, e in rows if not is_small(n) and not is_small(x) and not is_small(n - x)]
        hidden = len(rows) - len(shown)
        if shown:
            fig = funnel_figure([u for u, *_ in shown], [x for _, _, x, _ in shown], [n for _, n, _, _ in shown],
                                unit, centre)
            plural = "facilities" if unit == "facility" else unit + "s"
            parts.append(_section(
                f"Variation between {plural}", _fig_html(fig),
                f"Each point is one {unit} ({join_note}), at its crude rate. Points outside the 99.8% limits differ "
                f"from the overall rate by more than chance would explain; between the 95% and 99.8% limits, look "
                f"closer. {hidden} {unit}(s) with counts of 1-{SMALL_CELL_MAX} are not shown.",
            ))
            # Indirect standardisation: observed / expected from the unit's own case mix, times the overall rate.
            adjusted = [min(n, x / float(e) * centre * n) if e else 0.0 for _, n, x, e in shown]
            fig = funnel_figure([u for u, *_ in shown], adjusted, [n for _, n, _, _ in shown],
                                unit, centre, adjusted=True)
            parts.append(_section(
                f"Variation between {plural}, adjusted for case mix", _fig_html(fig),
                f"The same {plural} at their case-mix-adjusted rate: observed / expected x the overall rate, where "
                "the expected count is what the overall rates of each stratum (age band, sex, care setting, body "
                f"region, referring specialty) give for the {unit}'s own patients. A {unit} that sees mostly "
                "high-rate strata moves towards the centre; one that stays outside the limits differs for reasons "
                "the case mix does not explain.",
            ))
    parts.append(_op8_by_facility(con, figures))
    return _page("Trends and variation", subtitle, "".join(parts), "trends.html", with_plotly=True)


def _op8_by_facility(con, figures: dict) -> str:
    """CMS OP-8 is a facility measure: each facility's share of eligible lumbar MRIs without antecedent
    conservative therapy, against the overall share and a published reference rate."""
    from assets.publish.figures import funnel_figure
    from assets.publish.reference_rates import reference_rate

    op8_num, op8_den = figures["op8"]
    centre = rate(op8_num, op8_den)
    if centre is None or not 0 < centre < 1:
        return ""
    rows = _q(con, f"""SELECT coalesce(m.facility_id, 'unknown'), count(m.op8_numerator),
                              count(*) FILTER (WHERE m.op8_numerator)
                       FROM {JOINED} m WHERE m.rule_set = 'standard' AND m.op8_numerator IS NOT NULL GROUP BY 1""")
    shown = [(u, n, x) for u, n, x in rows if not is_small(n) and not is_small(x) and not is_small(n - x)]
    if not shown:
        return ""
    ref = reference_rate("op8")
    fig = funnel_figure([u for u, _, _ in shown], [x for *_, x in shown], [n for _, n, _ in shown], "facility",
                        centre, title="CMS OP-8 by facility: lumbar MRIs without prior conservative therapy",
                        y_title="share without prior conservative therapy",
                        x_title="OP-8-eligible lumbar MRIs per facility",
                        reference=(ref.rate, f"{ref.label} {ref.rate:.0%}") if ref else None)
    cite = (f" Reference line: {html.escape(ref.label)}, {ref.rate:.0%} — {html.escape(ref.population)} "
            f"({html.escape(ref.citation)}). It is a published figure for orientation, measured on another "
            "population and period; the funnel limits are around this audit's own rate.") if ref else ""
    return _section("CMS OP-8 by facility", _fig_html(fig),
                    f"OP-8-eligible lumbar MRIs per facility (standard rule set's OP-8 logic); lower is better. "
                    f"{len(rows) - len(shown)} facility(ies) with counts of 1-{SMALL_CELL_MAX} are not shown."
                    + cite)


def render_breakdowns(con, subtitle: str) -> str:
    from assets.publish.figures import histogram_by_category_figure, share_bar_figure, stacked_categories_figure

    parts = ['<p class="note">In every chart a grey cross marks a suppressed cell: 1-10 scans, or the cell that '
             'would reveal one. Its number is not in the page.</p>']
    reasons = _q(con, """SELECT reason, count(*) FROM (SELECT unnest(string_split(reasons, ';')) AS reason
                         FROM mri_classification WHERE rule_set = 'standard' AND category <> 'out_of_scope')
                         GROUP BY 1 ORDER BY 2 DESC""")
    parts.append(_section(
        "Reasons (standard rule set)",
        table(["reason code", "spine MRIs"], [(r, show(n) if is_small(n) else n) for r, n in reasons], numeric={1}),
        "A scan with several reasons counts once under each.",
    ))

    def stacked(title: str, label_sql: str, label_name: str, order: str = "2 DESC"):
        rows = _category_rows(con, label_sql, order=order)
        counts = {c: [r[2][i] for r in rows] for i, c in enumerate(SERIES)}
        return stacked_categories_figure([str(r[0]) for r in rows], counts, title, label_name, horizontal=True)

    rows = _category_rows(con, "coalesce(m.referring_specialty, 'unknown')")
    shares = [rate(r[2][0], r[1]) if r[2][0] is not None else None for r in rows]
    parts.append(_section("By referring specialty", _fig_html(share_bar_figure(
        [r[0] for r in rows], shares, [r[1] for r in rows],
        "Share of spine MRIs potentially unnecessary, by referring specialty", "referring specialty"))
        + _fig_html(stacked("Spine MRIs by referring specialty and verdict",
                            "coalesce(m.referring_specialty, 'unknown')", "referring specialty"))))
    parts.append(_section("By facility", _fig_html(stacked(
        "Spine MRIs by facility and verdict", "coalesce(m.facility_id, 'unknown')", "facility", order="1"))))
    parts.append(_section("By care setting", _fig_html(stacked(
        "Spine MRIs by care setting and verdict", "coalesce(m.care_setting, 'unknown')", "care setting"))))
    from assets.publish.casemix import AGE_BAND_SQL

    age_band = AGE_BAND_SQL.format(age="m.patient_age")
    parts.append(_section("By age band", _fig_html(stacked(
        "Spine MRIs by age band and verdict", age_band, "age at referral (years)", order="1"))))
    # Ten-day bins with the last open-ended; every verdict in scope, side by side.
    waits = _q(con, f"""SELECT m.category, least((m.scan_date - r.referral_date) // {WAIT_BIN_DAYS},
                                                 {len(WAIT_BINS) - 1}) AS bin, count(*)
                       FROM mri_classification m JOIN scan_links l USING (scan_id)
                       JOIN referrals_current r ON r.referral_id = l.referral_id
                       WHERE m.rule_set = 'standard' AND m.category <> 'out_of_scope'
                         AND m.scan_date >= r.referral_date GROUP BY 1, 2 ORDER BY 1, 2""")
    grid = {c: [0] * len(WAIT_BINS) for c in CATEGORIES}
    for category, index, n in waits:
        if category in grid:
            grid[category][index] = n
    # A verdict's bins add up to its count of scans, so one small bin takes a complement with it.
    values = {c: suppress_row(bins) for c, bins in grid.items() if any(bins)}
    medians = _q(con, """SELECT m.category, median(m.scan_date - r.referral_date) FROM mri_classification m
                         JOIN scan_links l USING (scan_id) JOIN referrals_current r ON r.referral_id = l.referral_id
                         WHERE m.rule_set = 'standard' AND m.category <> 'out_of_scope' GROUP BY 1 ORDER BY 1""")
    if values:
        parts.append(_section("Time from referral to scan", _fig_html(histogram_by_category_figure(
            WAIT_BINS, values, "Days from referral to scan, by verdict (standard rule set)",
            "days from referral to scan")),
            "; ".join(f"{c.replace('_', ' ')}: median {m:.0f} days" for c, m in medians if c in CATEGORIES)
            + ". A cross marks a bin of 1-10 scans, or the bin that would reveal one (suppressed)."))
    findings = _q(con, """
        SELECT coalesce(s.findings_category, 'not reported') AS finding,
               count(*) FILTER (WHERE m.category = 'potentially_unnecessary'),
               count(*) FILTER (WHERE m.category <> 'potentially_unnecessary')
        FROM mri_classification m JOIN scans_current s USING (scan_id)
        WHERE m.rule_set = 'standard' AND m.category <> 'out_of_scope' GROUP BY 1 ORDER BY 1""")
    rows = [(f, suppress_row(list(c))) for f, *c in findings]
    parts.append(_section("Findings yield", _fig_html(stacked_categories_figure(
        [f for f, _ in rows], {c: [r[1][i] for r in rows] for i, c in enumerate(SERIES)},
        "Findings by verdict (standard rule set)", "findings category", horizontal=True)),
        "A potentially unnecessary MRI that found a fracture or tumour is a case for chart review, not a "
        "vindication of the order: the verdict is about what was known when it was ordered."))
    reviews = _q(con, """SELECT rule_set, count(*) FILTER (WHERE safety_review), count(*) FILTER (WHERE contrast_review),
                                count(*) FILTER (WHERE category <> 'out_of_scope')
                         FROM mri_classification GROUP BY 1 ORDER BY rule_set <> 'standard', rule_set""")
    parts.append(_section("Safety and contrast reviews", table(
        ["rule set", "MRI contraindication documented", "contrast without an indication for it", "spine MRIs"],
        [(rs, show(a) if is_small(a) else a, show(b) if is_small(b) else b, n) for rs, a, b, n in reviews],
        numeric={1, 2, 3}),
        "Safety review: a pacemaker, defibrillator, neurostimulator or cochlear implant is on record. Contrast "
        "review: a with-contrast code without cancer, infection, immunosuppression, prior surgery or cauda equina."))
    return _page("Breakdowns", subtitle, "".join(parts), "breakdowns.html", with_plotly=True)


def render_rule_sets(con, subtitle: str) -> str:
    from assets.publish.figures import rule_set_shift_figure

    from assets.publish.protection import Protection

    parts = []
    every = CATEGORIES + ["out_of_scope"]
    per_set = _q(con, f"""SELECT rule_set, rule_set_version,
                          {', '.join(f"count(*) FILTER (WHERE category = {literal(c)})" for c in every)}
                          FROM mri_classification GROUP BY 1, 2 ORDER BY rule_set <> 'standard', rule_set""")
    names = [r[0] for r in per_set]
    both = "standard" in names and "acr-2021" in names
    # One protection for the page: the per-set counts, the cross-tabulation (its rows add up to the standard
    # counts and its columns to the acr-2021 ones) and the scan total the overview shows, so no suppressed cell
    # can be worked out from the other table's margins.
    p = Protection()
    total = p.add(("scans",), _q(con, "SELECT count(*) FROM scan_links")[0][0], keep=9)
    for rs, _, *counts in per_set:
        for c, n in zip(every, counts):
            p.add(("set", rs, c), n, keep=5)
        p.equation(total, *[("set", rs, c) for c in every])
    cats = CATEGORIES
    if both:
        cross = _q(con, f"""SELECT a.category, b.category, count(*) FROM mri_classification a
                           JOIN mri_classification b ON b.scan_id = a.scan_id AND b.rule_set = 'acr-2021'
                           WHERE a.rule_set = 'standard' AND a.category <> 'out_of_scope'
                             AND b.category <> 'out_of_scope' GROUP BY ALL""")
        grid = {(a, b): n for a, b, n in cross}
        for a in cats:
            for b in cats:
                p.add(("cross", a, b), grid.get((a, b), 0))
        for a in cats:
            p.equation(("set", "standard", a), *[("cross", a, b) for b in cats])
        for b in cats:
            p.equation(("set", "acr-2021", b), *[("cross", a, b) for a in cats])
    p.solve()
    rows = [(rs, v, *[p.text(("set", rs, c)) if p.status(("set", rs, c)) != "published" else n
                      for c, n in zip(every, counts)]) for rs, v, *counts in per_set]
    parts.append(_section("Verdicts per rule set", table(
        ["rule set", "version", "indicated", "potentially unnecessary", "insufficient information", "out of scope"],
        rows, numeric={2, 3, 4, 5})))
    if both:
        z = [[p.get(("cross", a, b)) for b in cats] for a in cats]
        labels = [[p.text(("cross", a, b)) for b in cats] for a in cats]
        parts.append(_section("How verdicts shift between rule sets",
                              _fig_html(rule_set_shift_figure(cats, cats, z, labels)),
            "Rows: the verdict under the standard rule set; columns: under acr-2021. The ACR criteria do not accept "
            "radiculopathy alone before six weeks and, after six weeks, ask for surgical or interventional "
            f"candidacy; they count age over 70 as a fracture-risk flag. {SUPPRESSED} marks a cell of 1-10 scans; "
            "withheld, a cell left out because it, with the totals of the table above, would reveal one."))
    from assets.publish.costs import load_unit_costs

    costs = load_unit_costs()
    resource_rows = _q(con, f"""
        SELECT m.rule_set, m.category, count(*), avg(m.scan_minutes) * count(*) / 60.0, sum(m.unit_cost)
        FROM {JOINED} m
        WHERE m.category <> 'out_of_scope' GROUP BY 1, 2 ORDER BY m.rule_set <> 'standard', m.rule_set, 2""")
    rows = []
    for rule_set, category, n, hours, cost in resource_rows:
        key = ("set", rule_set, category)
        if key in p.values and p.status(key) != "published":  # hours and cost would reveal the count
            rows.append((rule_set, category.replace("_", " "), p.text(key), "–", "–"))
            continue
        rows.append((rule_set, category.replace("_", " "), n, "–" if hours is None else f"{hours:,.0f}",
                     f"{cost or 0:,.0f}"))
    parts.append(_section("Scanner time and cost", table(
        ["rule set", "verdict", "spine MRIs", "scanner hours", f"estimated cost ({costs.currency})"], rows,
        numeric={2, 3, 4}),
        "Scanner hours from the scans' table time (scans without it counted at the mean of those with it). Cost: "
        f"{html.escape(costs.describe())}. Source: {html.escape(costs.source)}"))
    return _page("Rule sets and resources", subtitle, "".join(parts), "rule_sets.html", with_plotly=True)


VENDOR = Path(__file__).parent / "vendor"


def plotly_library() -> str:
    """The plotly.js the pages load: the vendored cartesian bundle (scatter, bar, heatmap: all the pages draw)
    when it is the version the installed plotly package expects, else the full library that package ships."""
    from plotly.offline import get_plotlyjs, get_plotlyjs_version

    bundle = VENDOR / f"plotly-cartesian-{get_plotlyjs_version()}.min.js"
    return bundle.read_text(encoding="utf-8") if bundle.is_file() else get_plotlyjs()


def build_dashboards(con, out_dir: Path, generated_at: datetime | None = None) -> dict:
    """Write every dashboard page into `out_dir`; returns page sizes in bytes."""
    generated_at = generated_at or datetime.now(timezone.utc)
    _join_once(con)
    figures = gather(con)
    start, end = figures["period"]
    subtitle = (f"Scans dated {start} to {end} · standard rule set unless stated · published "
                f"{generated_at.strftime('%Y-%m-%d %H:%M UTC')}")
    pages = {
        "index.html": render_index(figures, generated_at),
        "trends.html": render_trends(con, figures, subtitle),
        "breakdowns.html": render_breakdowns(con, subtitle),
        "rule_sets.html": render_rule_sets(con, subtitle),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    pages[PLOTLY_JS] = plotly_library()
    sizes = {}
    for name, text in pages.items():
        (out_dir / name).write_text(text, encoding="utf-8")
        sizes[name] = len(text.encode())
    return sizes
