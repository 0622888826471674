"""The overview's filters: every view a reader can reach with them, counted in the warehouse and protected as
one system before it is embedded in the page.

A view is (body region, period, facet): the region lumbar, cervical, thoracic or all spine; the period the whole
span, a year or a quarter (a custom range is summed in the page from quarters, and only when every quarter in
it is published); the facet at most one of care setting, referring specialty and facility (the page lets a
reader pick one at a time). Its cells: the in-scope spine MRIs, the potentially unnecessary ones under each
rule set (with their cost), and for lumbar MRIs the OP-8 numerator and denominator.

A reader can add and subtract views: regions add up to all spine, quarters to years to the whole span, the
values of a facet to the unfaceted view, and potentially unnecessary plus the rest to the spine MRIs. These are
the equations of one `Protection` (zeros shown like small counts, so that labels alone never pin a cell), so no
count of 1-10 is shown or can be worked out from any combination of views. A cost is shown only where its
count is.
"""

from __future__ import annotations

import json

from assets.sql import literal

REGIONS = ("lumbar", "cervical", "thoracic")
FACETS = {"setting": "care_setting", "specialty": "referring_specialty", "facility": "facility_id"}
FACET_LABELS = {"setting": "care setting", "specialty": "referring specialty", "facility": "facility"}
ALL = "*"
UNKNOWN = "unknown"


def gather_cells(con, joined: str, rule_sets: list[str]) -> dict:
    """Quarter-level counts per region and facet value (one GROUPING SETS pass over the joined verdicts):
    (region or *, quarter, facet name or *, facet value or *) -> [n, pu per rule set, cost per rule set,
    op8 numerator, op8 denominator]."""
    pu = [f"count(*) FILTER (WHERE m.rule_set = {literal(rs)} AND m.category = 'potentially_unnecessary')"
          for rs in rule_sets]
    cost = [f"coalesce(sum(m.unit_cost) FILTER (WHERE m.rule_set = {literal(rs)} "
            f"AND m.category = 'potentially_unnecessary'), 0)" for rs in rule_sets]
    primary = literal(rule_sets[0])
    facet_cols = ", ".join(f"coalesce(CAST(m.{col} AS VARCHAR), {literal(UNKNOWN)}) AS f_{name}"
                           for name, col in FACETS.items())
    sets = ["(" + ", ".join(x for x in (region, "quarter", f"f_{facet}" if facet else None) if x) + ")"
            for region in ("region", None) for facet in (None, *FACETS)]
    nf = len(FACETS)
    rows = con.execute(f"""
        SELECT grouping(region), {', '.join(f'grouping(f_{f})' for f in FACETS)}, region, quarter,
               {', '.join(f'f_{f}' for f in FACETS)},
               count(DISTINCT m.scan_id), {', '.join(pu)}, {', '.join(cost)},
               count(*) FILTER (WHERE m.rule_set = {primary} AND m.op8_numerator),
               count(*) FILTER (WHERE m.rule_set = {primary} AND m.op8_numerator IS NOT NULL)
        FROM (SELECT *, body_region AS region, strftime(scan_date, '%Y') || '-Q' || quarter(scan_date) AS quarter,
                     {facet_cols}
              FROM {joined} m WHERE m.category <> 'out_of_scope'
                AND m.body_region IN ({', '.join(literal(r) for r in REGIONS)})) m
        GROUP BY GROUPING SETS ({', '.join(sets)})""").fetchall()
    cells = {}
    for r in rows:
        g_region, g_facets = r[0], r[1:1 + nf]
        region, quarter, *values = r[1 + nf:3 + 2 * nf]
        facet = next(((name, values[i]) for i, name in enumerate(FACETS) if not g_facets[i]), (ALL, ALL))
        cells[(ALL if g_region else region, quarter) + facet] = [float(x or 0) for x in r[3 + 2 * nf:]]
    return cells


def _periods(quarters: list[str]) -> dict[str, list[str]]:
    periods = {ALL: list(quarters)}
    for q in quarters:
        periods.setdefault(q[:4], []).append(q)
    for q in quarters:
        periods[q] = [q]
    return periods


def protect_views(cells: dict, rule_sets: list[str]):
    """(protection, views, periods, facets): views map (region, period, facet name, facet value) to the
    keys of their cells."""
    from assets.publish.protection import Protection

    k = len(rule_sets)
    quarters = sorted({key[1] for key in cells})
    periods = _periods(quarters)
    facets = [(ALL, ALL)] + sorted({(key[2], key[3]) for key in cells if key[2] != ALL})
    p = Protection(zeros_small=True)
    views: dict = {}
    for region in (ALL, *REGIONS):
        for period, covered in periods.items():
            for facet in facets:
                total = [0.0] * (1 + 2 * k + 2)
                for q in covered:
                    row = cells.get((region, q) + facet)
                    if row:
                        total = [a + (b or 0) for a, b in zip(total, row)]
                if not total[0] and facet != (ALL, ALL):
                    continue  # a facet value with no scans here is not offered
                key = (region, period) + facet
                # Totals are withheld last, then years before quarters, unfaceted before faceted.
                keep = (20 if period == ALL else 10 if len(period) == 4 else 0) + 5 * (facet == (ALL, ALL)) \
                    + 5 * (region == ALL)
                n = p.add(("n",) + key, int(total[0]), keep=keep + 2)
                view = {"n": n, "cost": {}}
                for i, rs in enumerate(rule_sets):
                    view[rs] = p.add(("pu", rs) + key, int(total[1 + i]), keep=keep + 1)
                    view[("rest", rs)] = p.add(("rest", rs) + key, int(total[0] - total[1 + i]), implicit=True)
                    p.equation(n, view[rs], view[("rest", rs)])
                    view["cost"][rs] = total[1 + k + i]
                if region == "lumbar":
                    view["op8d"] = p.add(("op8d",) + key, int(total[-1]), keep=keep + 1)
                    view["op8n"] = p.add(("op8n",) + key, int(total[-2]), keep=keep)
                    view["op8r"] = p.add(("op8r",) + key, int(total[-1] - total[-2]), implicit=True)
                    p.equation(view["op8d"], view["op8n"], view["op8r"])
                views[key] = view
    stats = ["n", *rule_sets, *[("rest", rs) for rs in rule_sets]]

    def add_up(total_key, part_keys, names):
        parts = [views[x] for x in part_keys if x in views]
        if total_key in views and parts:
            for s in names:
                if s in views[total_key]:
                    p.equation(views[total_key][s], *[v[s] for v in parts if s in v])

    years = [x for x in periods if len(x) == 4]
    for period in periods:
        for facet in facets:
            add_up((ALL, period) + facet, [(r, period) + facet for r in REGIONS], stats)
    for region in (ALL, *REGIONS):
        names = stats + (["op8n", "op8d", "op8r"] if region == "lumbar" else [])
        for facet in facets:
            add_up((region, ALL) + facet, [(region, y) + facet for y in years], names)
            for y in years:
                add_up((region, y) + facet, [(region, q) + facet for q in periods[y] if q != y], names)
        for period in periods:
            for name in FACETS:
                add_up((region, period, ALL, ALL), [(region, period) + f for f in facets if f[0] == name], names)
    p.solve().seal()
    return p, views, periods, facets


def page_data(con, joined: str, rule_sets: list[str], currency: str) -> dict:
    """What the overview embeds: every view's published cells (a hidden one as its label, `<11` or
    `withheld`), the filter choices, and the currency."""
    cells = gather_cells(con, joined, rule_sets)
    p, views, periods, facets = protect_views(cells, rule_sets)

    def cell(key):
        return p.get(key) if p.status(key) == "published" else p.text(key)

    out = {}
    for (region, period, fname, fval), v in views.items():
        row = [cell(v["n"])]
        for rs in rule_sets:
            row.append(cell(v[rs]))
        for rs in rule_sets:
            row.append(round(v["cost"][rs]) if p.status(v[rs]) == "published" else None)
        if "op8n" in v:
            row += [cell(v["op8n"]), cell(v["op8d"])]
        out["|".join((region, period, fname, fval))] = row
    return {
        "rule_sets": rule_sets, "regions": [ALL, *REGIONS], "periods": list(periods),
        "quarters": [q for q in periods if "Q" in q],
        "facets": {name: sorted(v for f, v in facets if f == name) for name in FACETS},
        "facet_labels": FACET_LABELS, "currency": currency, "views": out,
        "cells": p.counts(),
    }


def embed(data: dict) -> str:
    """The data as a JSON script element (text from inputs, such as facility codes, cannot close it)."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=True)
    return ('<script type="application/json" id="filter-data">'
            + text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") + "</script>")


def first_view(data: dict) -> dict:
    """The tiles of the panel's first view (lumbar, whole period, first rule set, no unit), as the page's
    script would fill them: the page reads right before (or without) its script."""
    rs = data["rule_sets"][0]
    k = len(data["rule_sets"])
    row = data["views"].get("lumbar|*|*|*")
    describes = f"lumbar MRIs, the whole period, rule set {rs}"
    if not row:
        return {"describes": describes, "n": "–", "n_label": "lumbar MRIs: none", "pu": "–",
                "pu_label": f"potentially unnecessary under the {rs} rule set", "op8": "–", "op8_label": "CMS OP-8",
                "cost": "–", "cost_label": "estimated cost"}

    def fmt(x):
        return f"{x:,}" if isinstance(x, (int, float)) else str(x)

    def pct(a, b):
        return f"{100 * a / b:.1f}%" if isinstance(a, int) and isinstance(b, int) and b > 0 else "–"

    n, pu, cost, op8n, op8d = row[0], row[1], row[1 + k], row[1 + 2 * k], row[2 + 2 * k]
    return {
        "describes": describes, "n": fmt(n), "n_label": "lumbar MRIs in scope", "pu": pct(pu, n),
        "pu_label": f"potentially unnecessary under the {rs} rule set ({fmt(pu)} of {fmt(n)})",
        "op8": pct(op8n, op8d),
        "op8_label": f"CMS OP-8: lumbar MRIs without prior conservative therapy ({fmt(op8n)} of {fmt(op8d)} "
                     "eligible; lower is better)",
        "cost": f"{cost:,} {data['currency']}" if cost is not None else "–",
        "cost_label": "estimated cost of the potentially unnecessary MRIs",
    }


def render_panel(data: dict) -> str:
    from pathlib import Path

    import jinja2

    from assets.publish.statistics import SMALL_CELL_MAX

    folder = Path(__file__).parent / "templates"
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(folder), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    script = (folder / "filters.js").read_text(encoding="utf-8")
    return env.get_template("filters_panel.html.j2").render(
        data=data, first=first_view(data), small_max=SMALL_CELL_MAX, data_script=embed(data), script=script)
