"""The dashboards' filters: every view a reader can reach on any page, counted in the warehouse and protected as
one system before it is embedded in the pages.

A view is (body region, period, unit): the region lumbar, cervical, thoracic or all spine; the period the whole
span, a year, a quarter or (for all units together) a month; the unit at most one value of one dimension. The
overview offers care setting, referring specialty and facility as units; the breakdowns page draws every value
of those and of age band, findings and time from referral to scan; the trends page draws facilities and
referring providers (providers over the whole span or a year only: by quarter nearly every provider is small).
A view's cells: the in-scope spine MRIs; per rule set the potentially unnecessary and the insufficient-
information ones, with the cost of the first and its case-mix expectation; for lumbar MRIs the OP-8 numerator
and denominator. Views of all units together also count, per rule set, each reason code and the safety and
contrast reviews.

A reader can add and subtract views, on one page or across pages: regions add up to all spine, months to
quarters to years to the whole span, the values of a dimension to the view of all units, the verdicts to the
spine MRIs, and the reason codes of a verdict whose scans carry exactly one reason to that verdict's count.
These are the equations of one `Protection` (zeros shown like small counts, so that labels alone never pin a
cell), so no count of 1-10 is shown or can be worked out from any combination of views. A cost, an expectation
or a rate is shown only where its counts are.
"""

from __future__ import annotations

import json

from assets.sql import literal

REGIONS = ("lumbar", "cervical", "thoracic")
ALL = "*"
UNKNOWN = "unknown"
WAIT_BIN_DAYS = 10
WAIT_BINS = ("0-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60+")
NOT_LINKED = "no referral date"

# The units the overview offers, then the further dimensions the breakdowns and trends pages draw.
FACETS = {"setting": "care_setting", "specialty": "referring_specialty", "facility": "facility_id"}
FACET_LABELS = {"setting": "care setting", "specialty": "referring specialty", "facility": "facility",
                "age": "age band", "findings": "findings", "wait": "days from referral to scan",
                "provider": "referring provider"}


def _dimension_sql() -> dict[str, str]:
    from assets.publish.casemix import AGE_BAND_SQL

    wait = (f"CASE WHEN m.referral_date IS NULL OR m.scan_date < m.referral_date THEN {literal(NOT_LINKED)} "
            + " ".join(f"WHEN m.scan_date - m.referral_date < {WAIT_BIN_DAYS * (i + 1)} THEN {literal(b)}"
                       for i, b in enumerate(WAIT_BINS[:-1]))
            + f" ELSE {literal(WAIT_BINS[-1])} END")
    dims = {name: f"coalesce(CAST(m.{col} AS VARCHAR), {literal(UNKNOWN)})" for name, col in FACETS.items()}
    dims.update({
        "age": AGE_BAND_SQL.format(age="m.patient_age"),
        "findings": "coalesce(m.findings_category, 'not reported')",
        "wait": wait,
        "provider": f"coalesce(m.referring_provider_id, {literal(UNKNOWN)})",
    })
    return dims


# Dimensions drawn over these periods only (a provider by quarter is almost always a small count).
COARSE = {"provider"}


def columns(rule_sets: list[str]) -> list[str]:
    """The cells of one view, in the order the pages read them."""
    return (["n"] + [f"pu:{rs}" for rs in rule_sets] + [f"ii:{rs}" for rs in rule_sets]
            + [f"cost:{rs}" for rs in rule_sets] + [f"exp:{rs}" for rs in rule_sets] + ["op8n", "op8d"])


def gather_cells(con, joined: str, rule_sets: list[str]) -> dict:
    """Month-level counts per region and dimension value (one GROUPING SETS pass over the joined verdicts):
    (region or *, month, dimension or *, value or *) -> the `columns` of that cell."""
    dims = _dimension_sql()
    cells_sql = ["count(DISTINCT m.scan_id)"]
    for category in ("potentially_unnecessary", "insufficient_information"):
        cells_sql += [f"count(*) FILTER (WHERE m.rule_set = {literal(rs)} AND m.category = {literal(category)})"
                      for rs in rule_sets]
    # The cost of the potentially unnecessary MRIs, and the case-mix expectation of their number.
    cells_sql += [f"coalesce(sum(m.unit_cost) FILTER (WHERE m.rule_set = {literal(rs)} "
                  "AND m.category = 'potentially_unnecessary'), 0)" for rs in rule_sets]
    cells_sql += [f"coalesce(sum(m.expected_pu) FILTER (WHERE m.rule_set = {literal(rs)}), 0)" for rs in rule_sets]
    primary = literal(rule_sets[0])
    cells_sql += [f"count(*) FILTER (WHERE m.rule_set = {primary} AND m.op8_numerator)",
                  f"count(*) FILTER (WHERE m.rule_set = {primary} AND m.op8_numerator IS NOT NULL)"]
    sets = ["(" + ", ".join(x for x in (region, "month", f"d_{dim}" if dim else None) if x) + ")"
            for region in ("region", None) for dim in (None, *dims)]
    nd = len(dims)
    rows = con.execute(f"""
        SELECT grouping(region), {', '.join(f'grouping(d_{d})' for d in dims)}, region, month,
               {', '.join(f'd_{d}' for d in dims)}, {', '.join(cells_sql)}
        FROM (SELECT *, body_region AS region, strftime(scan_date, '%Y-%m') AS month,
                     {', '.join(f'{sql} AS d_{d}' for d, sql in dims.items())}
              FROM {joined} m WHERE m.category <> 'out_of_scope'
                AND m.body_region IN ({', '.join(literal(r) for r in REGIONS)})) m
        GROUP BY GROUPING SETS ({', '.join(sets)})""").fetchall()
    cells = {}
    for r in rows:
        g_region, g_dims = r[0], r[1:1 + nd]
        region, month, *values = r[1 + nd:3 + 2 * nd]
        dim = next(((name, values[i]) for i, name in enumerate(dims) if not g_dims[i]), (ALL, ALL))
        cells[(ALL if g_region else region, month) + dim] = [float(x or 0) for x in r[3 + 2 * nd:]]
    return _merge_small_units(cells)


SMALL_UNITS = "fewer than 11 spine MRIs each"
NAMED = {"setting", "specialty", "facility", "provider"}  # units with names; the other dimensions are bins


def _merge_small_units(cells: dict) -> dict:
    """Units of a named dimension with 1-10 spine MRIs over the whole span are counted together as one unit: a
    small unit's name is never shown, and the sum of the units shown still adds up to the total with the
    merged unit as one of its parts (dropping it instead would let a reader take the list for complete)."""
    from assets.publish.statistics import SMALL_CELL_MAX

    whole: dict = {}
    for (region, _, dim, value), row in cells.items():
        if region == ALL and dim in NAMED:
            whole[(dim, value)] = whole.get((dim, value), 0) + row[0]
    small = {k for k, n in whole.items() if n <= SMALL_CELL_MAX}
    if not small:
        return cells
    out: dict = {}
    for (region, month, dim, value), row in cells.items():
        key = (region, month, dim, SMALL_UNITS if (dim, value) in small else value)
        out[key] = [a + b for a, b in zip(out[key], row)] if key in out else list(row)
    return out


def gather_extras(con, joined: str, rule_sets: list[str]) -> tuple[dict, dict]:
    """Per (region or *, month): per rule set the scans carrying each reason code, and the safety and contrast
    reviews. Returns (cells, partitions): partitions name, per rule set and verdict whose scans each carry
    exactly one reason, the codes that add up to that verdict's count."""
    rs_list = ", ".join(literal(rs) for rs in rule_sets)
    base = f"""FROM {joined} m WHERE m.category <> 'out_of_scope' AND m.rule_set IN ({rs_list})
               AND m.body_region IN ({', '.join(literal(r) for r in REGIONS)})"""
    cells: dict = {}

    def put(region, month, name, n):
        cells.setdefault((region or ALL, month), {})[name] = float(n)

    for g, region, month, rs, code, n in con.execute(f"""
            SELECT grouping(m.body_region), m.body_region, month, m.rule_set, code, count(*)
            FROM (SELECT m.*, strftime(m.scan_date, '%Y-%m') AS month,
                         unnest(string_split(coalesce(m.reasons, ''), ';')) AS code {base}) m
            WHERE code <> '' GROUP BY GROUPING SETS ((m.body_region, month, m.rule_set, code),
                                                      (month, m.rule_set, code))""").fetchall():
        put(None if g else region, month, f"reason:{rs}:{code}", n)
    for g, region, month, rs, safety, contrast in con.execute(f"""
            SELECT grouping(m.body_region), m.body_region, strftime(m.scan_date, '%Y-%m') AS month, m.rule_set,
                   count(*) FILTER (WHERE m.safety_review), count(*) FILTER (WHERE m.contrast_review) {base}
            GROUP BY GROUPING SETS ((m.body_region, month, m.rule_set), (month, m.rule_set))""").fetchall():
        put(None if g else region, month, f"safety:{rs}", safety)
        put(None if g else region, month, f"contrast:{rs}", contrast)
    if len(rule_sets) >= 2:  # the rule-set page's cross-tabulation of the first two rule sets
        for g, region, month, a, b, n in con.execute(f"""
                SELECT grouping(a.body_region), a.body_region, strftime(a.scan_date, '%Y-%m') AS month,
                       a.category, b.category, count(*)
                FROM {joined} a JOIN {joined} b ON b.scan_id = a.scan_id AND b.rule_set = {literal(rule_sets[1])}
                WHERE a.rule_set = {literal(rule_sets[0])} AND a.category <> 'out_of_scope'
                  AND b.category <> 'out_of_scope'
                  AND a.body_region IN ({', '.join(literal(r) for r in REGIONS)})
                GROUP BY GROUPING SETS ((a.body_region, month, a.category, b.category),
                                        (month, a.category, b.category))""").fetchall():
            put(None if g else region, month, f"cross:{a}:{b}", n)
    # A verdict whose scans each carry exactly one reason, none of its codes used by another verdict.
    partitions: dict = {}
    verdict_of: dict = {}
    for rs, category, codes, most in con.execute(f"""
            SELECT rule_set, category, list(DISTINCT code ORDER BY code), max(n) FROM (
                SELECT rule_set, category, unnest(string_split(coalesce(reasons, ''), ';')) AS code,
                       len(string_split(coalesce(reasons, ''), ';')) AS n
                FROM {joined} m WHERE rule_set IN ({rs_list}) AND category <> 'out_of_scope')
            GROUP BY ALL""").fetchall():
        for code in codes:
            verdict_of.setdefault((rs, code), set()).add(category)
        if category in ("potentially_unnecessary", "insufficient_information") and most == 1 and "" not in codes:
            partitions[(rs, "pu" if category == "potentially_unnecessary" else "ii")] = codes
    partitions = {k: codes for k, codes in partitions.items()
                  if all(len(verdict_of[(k[0], c)]) == 1 for c in codes)}
    return cells, partitions


AMOUNTS = ("count", "minutes", "timed", "cost")


def gather_amounts(con, joined: str, rule_sets: list[str]) -> dict:
    """Per (region or *, month, rule set, verdict): scans, scanner minutes, scans with a time, and cost; the
    parts of the rule-set page's scanner hours (scans without a time at the mean of those with one) and cost,
    which it shows only beside a published count."""
    rs_list = ", ".join(literal(rs) for rs in rule_sets)
    out: dict = {}
    for g, region, month, rs, category, *values in con.execute(f"""
            SELECT grouping(m.body_region), m.body_region, strftime(m.scan_date, '%Y-%m') AS month, m.rule_set,
                   m.category, count(*), coalesce(sum(m.scan_minutes), 0), count(m.scan_minutes),
                   coalesce(sum(m.unit_cost), 0)
            FROM {joined} m WHERE m.category <> 'out_of_scope' AND m.rule_set IN ({rs_list})
              AND m.body_region IN ({', '.join(literal(r) for r in REGIONS)})
            GROUP BY GROUPING SETS ((m.body_region, month, m.rule_set, m.category),
                                    (month, m.rule_set, m.category))""").fetchall():
        out[(ALL if g else region, month, rs, category)] = [float(v) for v in values]
    return out


def _periods(months: list[str]) -> dict[str, list[str]]:
    """Each period a reader can pick, with the months it covers: the whole span, years, quarters, months."""
    periods = {ALL: list(months)}
    for m in months:
        periods.setdefault(m[:4], []).append(m)
    for m in months:
        periods.setdefault(f"{m[:4]}-Q{(int(m[5:7]) - 1) // 3 + 1}", []).append(m)
    for m in months:
        periods[m] = [m]
    return periods


def kind(period: str) -> str:
    return "all" if period == ALL else "year" if len(period) == 4 else "quarter" if "Q" in period else "month"


def offered(period: str, dim: str) -> bool:
    """Whether a dimension's values are drawn for a period: months only for all units together, providers only
    over the whole span or a year."""
    k = kind(period)
    if dim == ALL:
        return True
    if k == "month":
        return False
    return k in ("all", "year") or dim not in COARSE


def _extra_names(extra_cells: dict) -> list[str]:
    """The extra cells' names (reason codes, reviews, cross-tabulation), in the order the pages read them."""
    return sorted({name for row in extra_cells.values() for name in row})


def protect_views(cells: dict, rule_sets: list[str], extras: tuple[dict, dict] | None = None):
    """(protection, views, periods, dims): views map (region, period, dimension, value) to {cell name: key of
    the protection's cell}, plus "cost" and "exp" (not counts: shown only with their count)."""
    from assets.publish.protection import Protection

    extra_cells, partitions = extras or ({}, {})
    months = sorted({key[1] for key in cells})
    periods = _periods(months)
    dims = [(ALL, ALL)] + sorted({(key[2], key[3]) for key in cells if key[2] != ALL})
    extra_names = _extra_names(extra_cells)
    cols = columns(rule_sets)
    p = Protection(zeros_small=True)
    views: dict = {}
    for region in (ALL, *REGIONS):
        for period, covered in periods.items():
            for dim in dims:
                if not offered(period, dim[0]):
                    continue
                total = [0.0] * len(cols)
                for m in covered:
                    row = cells.get((region, m) + dim)
                    if row:
                        total = [a + (b or 0) for a, b in zip(total, row)]
                if not total[0] and dim != (ALL, ALL):
                    continue  # a value with no scans here is not drawn
                value = dict(zip(cols, total))
                key = (region, period) + dim
                # Totals are withheld last, then years before quarters before months, all units before one.
                keep = {"all": 30, "year": 20, "quarter": 10, "month": 0}[kind(period)] \
                    + 5 * (dim == (ALL, ALL)) + 5 * (region == ALL)
                n = p.add(("n",) + key, int(value["n"]), keep=keep + 2)
                view = {"n": n, "cost": {}, "exp": {}}
                for rs in rule_sets:
                    view[f"pu:{rs}"] = p.add(("pu", rs) + key, int(value[f"pu:{rs}"]), keep=keep + 1)
                    view[f"ii:{rs}"] = p.add(("ii", rs) + key, int(value[f"ii:{rs}"]), keep=keep)
                    view[f"rest:{rs}"] = p.add(("rest", rs) + key,
                                               int(value["n"] - value[f"pu:{rs}"] - value[f"ii:{rs}"]),
                                               implicit=True)
                    p.equation(n, view[f"pu:{rs}"], view[f"ii:{rs}"], view[f"rest:{rs}"])
                    view["cost"][rs] = value[f"cost:{rs}"]
                    view["exp"][rs] = value[f"exp:{rs}"]
                if region == "lumbar":
                    view["op8d"] = p.add(("op8d",) + key, int(value["op8d"]), keep=keep + 1)
                    view["op8n"] = p.add(("op8n",) + key, int(value["op8n"]), keep=keep)
                    view["op8r"] = p.add(("op8r",) + key, int(value["op8d"] - value["op8n"]), implicit=True)
                    p.equation(view["op8d"], view["op8n"], view["op8r"])
                # Reasons, reviews and the cross-tabulation are drawn by quarter at the finest (the pages that
                # show them offer no months), which keeps the system small.
                if dim == (ALL, ALL) and extra_names and kind(period) != "month":
                    for name in extra_names:
                        count = sum(extra_cells.get((region, m), {}).get(name, 0) for m in covered)
                        view[name] = p.add(("x", name) + key, int(count), keep=keep)
                    for (rs, verdict), codes in partitions.items():
                        parts = [view[f"reason:{rs}:{c}"] for c in codes if f"reason:{rs}:{c}" in view]
                        p.equation(view[f"{verdict}:{rs}"], *parts)
                    if len(rule_sets) >= 2 and any(x.startswith("cross:") for x in extra_names):
                        # Rows add up to the first rule set's verdicts, columns to the second's.
                        of = {"indicated": "rest", "potentially_unnecessary": "pu", "insufficient_information": "ii"}
                        for a in of:
                            p.equation(view[f"{of[a]}:{rule_sets[0]}"],
                                       *[view[f"cross:{a}:{b}"] for b in of if f"cross:{a}:{b}" in view])
                        for b in of:
                            p.equation(view[f"{of[b]}:{rule_sets[1]}"],
                                       *[view[f"cross:{a}:{b}"] for a in of if f"cross:{a}:{b}" in view])
                views[key] = view
    counted = ["n", "op8n", "op8d", "op8r", *extra_names] + [f"{s}:{rs}" for s in ("pu", "ii", "rest")
                                                              for rs in rule_sets]

    def add_up(total_key, part_keys):
        parts = [views[x] for x in part_keys if x in views]
        if total_key in views and parts:
            for s in counted:
                if s in views[total_key]:
                    p.equation(views[total_key][s], *[v[s] for v in parts if s in v])

    years = [x for x in periods if kind(x) == "year"]
    quarters = [x for x in periods if kind(x) == "quarter"]
    for period in periods:
        for dim in dims:
            add_up((ALL, period) + dim, [(r, period) + dim for r in REGIONS])
    names = sorted({d for d, _ in dims if d != ALL})
    for region in (ALL, *REGIONS):
        for dim in dims:
            add_up((region, ALL) + dim, [(region, y) + dim for y in years])
            for y in years:
                add_up((region, y) + dim, [(region, q) + dim for q in quarters if q.startswith(y)])
            for q in quarters:
                add_up((region, q) + dim, [(region, m) + dim for m in periods[q]])
        for period in periods:
            for name in names:
                add_up((region, period, ALL, ALL), [(region, period) + d for d in dims if d[0] == name])
    p.solve().seal()
    return p, views, periods, dims


def page_data(con, joined: str, rule_sets: list[str], currency: str) -> dict:
    """Every view's published cells (a hidden one as its label, `<11` or `withheld`), the filter choices and
    the currency. `views(data, dims)` takes the part a page embeds."""
    cells = gather_cells(con, joined, rule_sets)
    extras = gather_extras(con, joined, rule_sets)
    p, views, periods, dims = protect_views(cells, rule_sets, extras)
    cols = columns(rule_sets)
    extra_names = _extra_names(extras[0])

    def cell(key):
        return p.get(key) if p.status(key) == "published" else p.text(key)

    out, extra_out = {}, {}
    for (region, period, dname, dval), v in views.items():
        row = []
        for c in cols:
            if c.startswith(("cost:", "exp:")):
                kind_, rs = c.split(":", 1)
                shown = p.status(v[f"pu:{rs}"]) == "published" and p.status(v["n"]) == "published"
                row.append(round(v[kind_][rs], 2 if kind_ == "exp" else 0) if shown else None)
            elif c in v:
                row.append(cell(v[c]))
            else:
                row.append(None)  # OP-8 outside lumbar
        out["|".join((region, period, dname, dval))] = row
        if dname == ALL and extra_names and kind(period) != "month":
            extra_out["|".join((region, period))] = [cell(v[name]) for name in extra_names]
    amounts = _amounts(gather_amounts(con, joined, rule_sets), p, views, periods, rule_sets)
    return {
        "rule_sets": rule_sets,
        "quarters": [x for x in periods if kind(x) == "quarter"],
        "months": [x for x in periods if kind(x) == "month"],
        "years": [x for x in periods if kind(x) == "year"],
        "facets": {name: sorted((v for f, v in dims if f == name), key=_order(name)) for name in FACETS},
        "dims": {name: sorted((v for f, v in dims if f == name), key=_order(name))
                 for name in FACET_LABELS if name not in FACETS},
        "facet_labels": FACET_LABELS, "currency": currency, "columns": cols, "views": out,
        "extra_columns": extra_names, "extras": extra_out, "amounts": amounts,
        "wait_bins": list(WAIT_BINS), "cells": p.counts(),
    }


VERDICT_CELL = {"indicated": "rest", "potentially_unnecessary": "pu", "insufficient_information": "ii"}


def _amounts(parts: dict, p, views: dict, periods: dict, rule_sets: list[str]) -> dict:
    """Per view of all units: {"rule set|verdict": [scanner hours, cost]} where the verdict's count can be read
    (published, or indicated with the spine MRIs and the other two published); else nothing."""
    out: dict = {}
    for region in (ALL, *REGIONS):
        for period, covered in periods.items():
            view = views.get((region, period, ALL, ALL))
            if view is None:
                continue
            shown = {}
            for rs in rule_sets:
                for verdict in VERDICT_CELL:
                    if not _readable(p, view, rs, verdict):
                        continue
                    count = minutes = timed = cost = 0.0
                    for m in covered:
                        c, mi, t, co = parts.get((region, m, rs, verdict), (0, 0, 0, 0))
                        count, minutes, timed, cost = count + c, minutes + mi, timed + t, cost + co
                    hours = minutes / timed * count / 60 if timed else None
                    shown[f"{rs}|{verdict}"] = [None if hours is None else round(hours), round(cost)]
            out[f"{region}|{period}"] = shown
    return out


def _readable(p, view: dict, rs: str, verdict: str) -> bool:
    """Whether a view's count of a verdict can be read: published, or (indicated) the spine MRIs and the other
    two verdicts published."""
    name = VERDICT_CELL[verdict]
    needed = [f"pu:{rs}", f"ii:{rs}", "n"] if name == "rest" else [f"{name}:{rs}"]
    return all(p.status(view[c]) == "published" for c in needed)


def _order(name: str):
    if name == "wait":
        return lambda v: (WAIT_BINS + (NOT_LINKED,)).index(v) if v in WAIT_BINS + (NOT_LINKED,) else 99
    return lambda v: (v == SMALL_UNITS, v == UNKNOWN, v)


def for_page(data: dict, dims: set[str], extras: bool = False) -> dict:
    """The part of the data a page draws: its dimensions' views (and all units together), extras if asked."""
    keep = dims | {ALL}
    out = {k: v for k, v in data.items() if k not in ("views", "extras")}
    out["views"] = {k: v for k, v in data["views"].items() if k.split("|")[2] in keep}
    out["extras"] = data["extras"] if extras else {}
    out["dims"] = {k: v for k, v in data["dims"].items() if k in dims}
    return out


def embed(data: dict) -> str:
    """The data as a JSON script element (text from inputs, such as facility codes, cannot close it)."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=True)
    return ('<script type="application/json" id="filter-data">'
            + text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") + "</script>")


def first_view(data: dict) -> dict:
    """The tiles of the panel's first view (lumbar, whole period, first rule set, no unit), as the page's
    script would fill them: the page reads right before (or without) its script."""
    rs = data["rule_sets"][0]
    at = {c: i for i, c in enumerate(data["columns"])}
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

    n, pu, cost = row[at["n"]], row[at[f"pu:{rs}"]], row[at[f"cost:{rs}"]]
    op8n, op8d = row[at["op8n"]], row[at["op8d"]]
    return {
        "describes": describes, "n": fmt(n), "n_label": "lumbar MRIs in scope", "pu": pct(pu, n),
        "pu_label": f"potentially unnecessary under the {rs} rule set ({fmt(pu)} of {fmt(n)})",
        "op8": pct(op8n, op8d),
        "op8_label": f"CMS OP-8: lumbar MRIs without prior conservative therapy ({fmt(op8n)} of {fmt(op8d)} "
                     "eligible; lower is better)",
        "cost": f"{cost:,.0f} {data['currency']}" if cost is not None else "–",
        "cost_label": "estimated cost of the potentially unnecessary MRIs",
    }
