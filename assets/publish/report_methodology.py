"""The methodology page: rule sets, windows, value sets, suppression, data coverage and sources."""

from __future__ import annotations

import html
from datetime import datetime

from assets.html import page, table
from assets.publish.protection import WITHHELD, Protection
from assets.publish.report_definitions import INTERVENTIONS, SOURCES, WINDOWS
from assets.publish.report_pages import (
    SUPPRESSION_NOTE, fraction, report_nav, percent, period_text, raw_table, stamp_text)
from assets.publish.report_queries import slug
from assets.publish.statistics import SMALL_CELL_MAX, SUPPRESSED


def render_methodology(p: Protection, figures: dict, generated_at: datetime) -> str:
    from assets.classify.rule_sets import load_rule_sets

    in_warehouse = dict(figures["rule_sets"])
    try:
        available = {rs.name: rs for rs in load_rule_sets()}
    except (OSError, ValueError):
        available = {}
    names = figures["names"]
    toc = [("coverage", "Data coverage")]
    toc += [(f"rules-{slug(n)}", f"Rule set {n}") for n in names]
    toc += [("downstream", "Downstream interventions"), ("suppression", "Small-cell suppression"),
            ("value-sets", "Value sets"), ("sources", "Sources")]
    sections = [report_nav("methodology.html"), '<section><h2>Contents</h2><p>' + " · ".join(
        f'<a href="#{a}">{html.escape(t)}</a>' for a, t in toc) + "</p></section>"]

    # What was audited.
    period = figures["period"]
    ev_start, ev_end = figures["events_period"]
    region_rows = [
        ("lumbar", p.text(("region", "lumbar"))), ("cervical", p.text(("region", "cervical"))),
        ("thoracic", p.text(("region", "thoracic"))), ("spine MRIs, total", p.text(("region", "spine"))),
        ("other scans (out of scope)", p.text(("region", "other"))), ("all scans", p.text(("region", "all"))),
    ]
    cov = ("coverage", "scans")
    cov_rows = [
        ["with a linked referral (named by the scan, or inferred within 90 days)",
         fraction(p, ("coverage", "linked"), cov)],
        ["whose patient has history events on or before the scan date", fraction(p, ("coverage", "history"), cov)],
        ["whose patient has events after the scan date (follow-up)", fraction(p, ("coverage", "follow_up"), cov)],
    ]
    file_rows = [[html.escape(t), p.text(("rows_in", t)), p.text(("quarantined", t)),
                  percent(p.rate(("quarantined", t), ("rows_in", t)))] for t, _, _, _ in figures["files"]]
    total = figures["total"] or {}
    sections.append(
        f"""<section id="coverage"><h2>Data coverage</h2>
<p>Scans dated {html.escape(str(period[0]))} to {html.escape(str(period[1]))}; history and follow-up events dated
{html.escape(str(ev_start))} to {html.escape(str(ev_end))}. Follow-up is counted through
{html.escape(str(total.get('data_end') or '–'))}, the latest event or scan date in the warehouse.</p>
{table(["scans by body region", "scans"], region_rows, numeric={1})}
<p></p>{raw_table(["spine MRIs ...", "scans / spine MRIs (share)"], cov_rows, numeric={1})}
<p></p>{raw_table(["input table", "rows received", "rows quarantined", "share quarantined"], file_rows,
                    numeric={1, 2, 3})}
<p class="note">Quarantined rows are kept out of the warehouse with their reason (see the quality report). A scan
without a linked referral is classified from its own codes and history; a patient without history events can
show no conservative care and no downstream events.</p></section>"""
    )

    # The rule sets.
    base_params = available[names[0]].parameters if names and names[0] in available else {}
    for name in names:
        rs = available.get(name)
        version = in_warehouse.get(name, "–")
        anchor = f"rules-{slug(name)}"
        if rs is None:
            sections.append(f'<section id="{anchor}"><h2>Rule set {html.escape(name)} {html.escape(version)}</h2>'
                            "<p class='note'>Its definition file is not in guidelines/rule_sets/.</p></section>")
            continue
        note = ""
        if rs.version != version:
            note = (f"<p class='warn'>The warehouse was classified with version {html.escape(version)}; the "
                    f"definition shown is version {html.escape(rs.version)}.</p>")
        if name == names[0] or not base_params:
            params = sorted(rs.parameters.items())
            params_note = "Parameters (windows in days; empty means any time before the scan):"
        else:
            params = sorted((k, v) for k, v in rs.parameters.items() if base_params.get(k) != v)
            params_note = f"Parameters: the same as {html.escape(names[0])}" + (", except:" if params else ".")
        params_html = (table(["parameter", "value"], [(k, "any time" if v is None else str(v)) for k, v in params])
                       if params else "")
        rules_html = table(
            ["#", "rule", "category", "reason", "description", "citation"],
            [(i, r["id"], r["category"], r["reason"], r["description"], r["citation"])
             for i, r in enumerate(rs.rules, start=1)],
            numeric={0},
        )
        sections.append(
            f"""<section id="{anchor}"><h2>Rule set <code>{html.escape(name)}</code> {html.escape(version)}:
{html.escape(rs.title)}</h2>
{note}<p>{html.escape(rs.description)}</p>
<p class="note">Rules are tried in order; the first that holds decides the category, and every rule of that
category that holds adds its reason, so the most decisive reason comes first.</p>{rules_html}
<p class="note" style="margin-top:14px">{params_note}</p>{params_html}</section>"""
        )

    # Downstream interventions.
    codes: dict = {}
    for concept, system, code, match, _ in figures["downstream_codes"]:
        codes.setdefault((concept, system), []).append(code + ("*" if match == "prefix" else ""))
    code_rows = []
    for iv in INTERVENTIONS:
        for (concept, system), values in codes.items():
            if concept != iv.concept:
                continue
            counted = not (iv.concept == "lumbar_surgery" and system == "ICD10CM")
            code_rows.append((iv.label, concept, system, ", ".join(values),
                              "yes" if counted else "no: records earlier surgery"))
    sections.append(
        f"""<section id="downstream"><h2>Downstream interventions</h2>
<p>For each spine MRI, the first event of each kind on day 1 to N after the scan date is looked up in the
patient's history events (<code>clinical_events</code>) and, for repeat imaging, in the patient's later scans.
The scan day itself does not count. Windows: {', '.join(str(w) for w in WINDOWS)} days (Webster 2014 used
6 months, Jacobs 2020 one year). A scan counts once per intervention and window, however many events follow it.
Each window counts only the scans whose whole window lies within the data, so that recent scans, whose follow-up
is not complete yet, do not lower the rates.</p><ul>"""
        + "".join(f"<li><b>{html.escape(iv.label)}</b>: {html.escape(iv.definition)}.</li>" for iv in INTERVENTIONS)
        + f"""</ul>{table(["intervention", "value set", "code system", "codes (* every code under the prefix)",
                          "counted as an event"], code_rows)}</section>"""
    )
    sections.append(
        f"""<section id="suppression"><h2>Small-cell suppression</h2><p>{SUPPRESSION_NOTE}</p>
<p>This follows the CMS cell-size suppression policy: no cell counting 1 to {SMALL_CELL_MAX} scans, patients or
events is published, nor any figure from which one could be calculated. The reports check every total (categories
add up to all spine MRIs, providers and facilities add up to the overall row), every complement (scans with and
without an event), differences between windows, and what the <b>{html.escape(SUPPRESSED)}</b> and
<b>{WITHHELD}</b> labels themselves reveal (for example, two suppressed cells that must add up to 2 are both 1),
and withhold further counts until no count of 1 to {SMALL_CELL_MAX} can be worked out. The chart-review case list
(<code>chart_review_cases.csv</code>) is row-level, not an aggregate: one row per scan with its pseudonymous scan
id and no patient id, for clinical review inside the organisation.</p></section>"""
    )
    sections.append(
        f"""<section id="value-sets"><h2>Value sets</h2><p class="note">Code lists in force for the run, per
concept (from <code>guidelines/value_sets/</code>, loaded as <code>value_set_codes</code>). These are sizes of
definitions, not counts of patients, and are not suppressed.</p>
{table(["concept", "codes", "code systems", "match"], figures["value_sets"], numeric={1})}</section>"""
    )
    source_rows = [[html.escape(name), html.escape(detail),
                    f'<a href="{html.escape(url)}" style="word-break:break-all">{html.escape(url)}</a>']
                   for name, detail, url in SOURCES]
    sections.append(
        f"""<section id="sources"><h2>Sources</h2>{raw_table(["source", "what it provides", "link"], source_rows)}
<p class="note">Clinical detail behind each rule and code list: the sources above, the code lists with the
source of every code in <code>guidelines/value_sets/</code>, every change with its source in
<code>guidelines/CHANGELOG.md</code>, and how each figure is made in <code>docs/methodology.md</code>.</p></section>"""
    )
    subtitle = f"{period_text(figures)} · published {stamp_text(generated_at)}"
    return page("Spine MRI audit: methodology", subtitle, "\n".join(sections))
