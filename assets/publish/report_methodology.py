"""The methodology page: rule sets, windows, value sets, suppression, data coverage and sources (template
reports/methodology.html.j2)."""

from __future__ import annotations

from datetime import datetime

from assets.publish.protection import Protection
from assets.publish.report_definitions import INTERVENTIONS, SOURCES, WINDOWS
from assets.publish.report_pages import fraction, percent, period_text, report_page, stamp_text
from assets.publish.report_queries import slug


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

    # What was audited.
    region_rows = [
        ("lumbar", p.text(("region", "lumbar"))), ("cervical", p.text(("region", "cervical"))),
        ("thoracic", p.text(("region", "thoracic"))), ("spine MRIs, total", p.text(("region", "spine"))),
        ("other scans (out of scope)", p.text(("region", "other"))), ("all scans", p.text(("region", "all"))),
    ]
    cov = ("coverage", "scans")
    coverage_rows = [
        ("with a linked referral (named by the scan, or inferred within 90 days)",
         fraction(p, ("coverage", "linked"), cov)),
        ("whose patient has history events on or before the scan date", fraction(p, ("coverage", "history"), cov)),
        ("whose patient has events after the scan date (follow-up)", fraction(p, ("coverage", "follow_up"), cov)),
    ]
    file_rows = [(t, p.text(("rows_in", t)), p.text(("quarantined", t)),
                  percent(p.rate(("quarantined", t), ("rows_in", t)))) for t, _, _, _ in figures["files"]]
    total = figures["total"] or {}

    # The rule sets: each with its rules, and the parameters (of a later rule set, those that differ).
    base_params = available[names[0]].parameters if names and names[0] in available else {}
    rule_sets = []
    for name in names:
        rs = available.get(name)
        item = {"name": name, "version": in_warehouse.get(name, "–"), "anchor": f"rules-{slug(name)}",
                "missing": rs is None}
        if rs is not None:
            if name == names[0] or not base_params:
                params = sorted(rs.parameters.items())
                params_note = "Parameters (windows in days; empty means any time before the scan):"
            else:
                params = sorted((k, v) for k, v in rs.parameters.items() if base_params.get(k) != v)
                params_note = f"Parameters: the same as {names[0]}" + (", except:" if params else ".")
            item.update(
                title=rs.title, description=rs.description, defined_version=rs.version, params_note=params_note,
                params=[(k, "any time" if v is None else str(v)) for k, v in params],
                rules=[(i, r["id"], r["category"], r["reason"], r["description"], r["citation"])
                       for i, r in enumerate(rs.rules, start=1)])
        rule_sets.append(item)

    # Downstream interventions and their codes.
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
    return report_page(
        "reports/methodology.html.j2", "Spine MRI audit: methodology",
        f"{period_text(figures)} · published {stamp_text(generated_at)}", "methodology.html", toc=toc,
        period=[str(x) for x in figures["period"]], events_period=[str(x) for x in figures["events_period"]],
        data_end=str(total.get("data_end") or "–"), region_rows=region_rows, coverage_rows=coverage_rows,
        file_rows=file_rows, rule_sets=rule_sets, windows=[str(w) for w in WINDOWS], interventions=INTERVENTIONS,
        code_rows=code_rows, value_sets=figures["value_sets"],
        sources=[(name, detail, (url, url)) for name, detail, url in SOURCES])
