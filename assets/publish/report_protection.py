"""The overtreatment reports' small-cell protection model: every count the reports and CSV files publish as a
cell of one `Protection`, with the sums a reader can form as its equations."""

from __future__ import annotations

from itertools import combinations

from assets.publish.protection import Protection
from assets.publish.report_definitions import CATEGORIES, FOLLOWED, INTERVENTIONS, PROVIDER_WINDOW, WINDOWS


def _window_chain(p: Protection, n_keys: dict, den_keys: dict, stem: tuple) -> None:
    """Where two windows have the same denominator (every scan followed up for both), the difference of their
    counts is itself a count (scans whose first event fell between the windows): protect it. With different
    denominators the difference mixes two groups of scans and reveals neither."""
    for w1, w2 in combinations(WINDOWS, 2):
        if p.values[den_keys[w1]] != p.values[den_keys[w2]]:
            continue
        diff = p.values[n_keys[w2]] - p.values[n_keys[w1]]
        if diff < 0:  # cannot happen for one group of scans; never fail a report over it
            continue
        p.equation(n_keys[w2], n_keys[w1], p.add(stem + ("diff", w1, w2), diff, implicit=True))


# How long a cell stays published when one of an equation's cells must be withheld (higher: kept longer).
KEEP_CATEGORY = {"potentially_unnecessary": 3, "indicated": 2, "insufficient_information": 1}


def build_protection(figures: dict) -> Protection:
    """Every count the reports publish, as cells, with the equations that bind them (see `Protection`)."""
    p = Protection()
    names = figures["names"]
    primary = names[0]
    total = figures["total"] or {}
    pu = "potentially_unnecessary"

    def val(row, col):
        return int((row or {}).get(col) or 0)

    # Overall (all spine MRIs): shared by every table. The per-intervention totals are withheld first.
    all_scans = p.add(("scans", "all"), val(total, "scans"), keep=20)
    for w in WINDOWS:
        den = p.add(("den", "all", w), val(total, f"den_{w}"), keep=4)
        for iv in INTERVENTIONS:
            n = p.add(("n", "all", iv.key, w), val(total, f"n_{iv.key}_{w}"), keep=0)
            m = p.add(("m", "all", iv.key, w), val(total, f"den_{w}") - val(total, f"n_{iv.key}_{w}"),
                      implicit=True)
            p.equation(den, n, m)
    for iv in INTERVENTIONS:
        _window_chain(p, {w: ("n", "all", iv.key, w) for w in WINDOWS}, {w: ("den", "all", w) for w in WINDOWS},
                      ("n", "all", iv.key))

    # Per rule set and category (downstream table; the providers' and facilities' totals).
    for rs in names:
        rows = figures["by_category"].get(rs, {})
        p.equation(all_scans, *[p.add(("scans", rs, c), val(rows.get(c), "scans"), keep=10 + KEEP_CATEGORY[c])
                                for c in CATEGORIES])
        for w in WINDOWS:
            dens = [p.add(("den", rs, c, w), val(rows.get(c), f"den_{w}"), keep=5 + KEEP_CATEGORY[c])
                    for c in CATEGORIES]
            p.equation(("den", "all", w), *dens)
            for iv in INTERVENTIONS:
                ns = []
                for c in CATEGORIES:
                    row = rows.get(c)
                    n = p.add(("n", rs, c, iv.key, w), val(row, f"n_{iv.key}_{w}"), keep=5 + KEEP_CATEGORY[c])
                    m = p.add(("m", rs, c, iv.key, w), val(row, f"den_{w}") - val(row, f"n_{iv.key}_{w}"),
                              implicit=True)
                    p.equation(("den", rs, c, w), n, m)
                    ns.append(n)
                p.equation(("n", "all", iv.key, w), *ns)
        for c in CATEGORIES:
            for iv in INTERVENTIONS:
                _window_chain(p, {w: ("n", rs, c, iv.key, w) for w in WINDOWS},
                              {w: ("den", rs, c, w) for w in WINDOWS}, ("n", rs, c, iv.key))

    # Providers and facilities: rows of units adding up to the overall totals above. Within a row the
    # potentially unnecessary count and the spine MRIs (the rate) are kept longest.
    pu_fu_total = ("den", primary, pu, PROVIDER_WINDOW)
    pu_inj_total = ("n", primary, pu, "injection", PROVIDER_WINDOW)
    p.equation(("scans", primary, pu), pu_fu_total,
               p.add(("pu_nofu", "all"), p.values[("scans", primary, pu)] - p.values[pu_fu_total], implicit=True))
    for rs in names[1:]:
        p.equation(all_scans, ("scans", rs, pu),
                   p.add(("not_pu", "all", rs), p.values[all_scans] - p.values[("scans", rs, pu)], implicit=True))
    unit_keep = {"indicated": 0, "insufficient_information": 0, "potentially_unnecessary": 2}
    for dim, rows in (("provider", figures["providers"]), ("facility", figures["facilities"])):
        columns: dict = {}
        for row in rows:
            u = row[f"{dim}_key"]
            n = p.add((dim, u, "scans"), row["scans"], keep=3)
            cats = [p.add((dim, u, primary, c), row[f"r0_{c}"], keep=unit_keep[c]) for c in CATEGORIES]
            p.equation(n, *cats)
            columns.setdefault("scans", []).append(n)
            for c, key in zip(CATEGORIES, cats):
                columns.setdefault(c, []).append(key)
            for i, rs in enumerate(names[1:], start=1):
                k = p.add((dim, u, rs, pu), row[f"r{i}_{pu}"], keep=1)
                rest = p.add((dim, u, rs, "not_pu"), row["scans"] - row[f"r{i}_{pu}"], implicit=True)
                p.equation(n, k, rest)
                columns.setdefault((rs, pu), []).append(k)
                columns.setdefault((rs, "not_pu"), []).append(rest)
            fu = p.add((dim, u, "pu_fu"), row["pu_fu"], keep=0)
            inj = p.add((dim, u, "pu_inj"), row["pu_inj"], keep=1)
            nofu = p.add((dim, u, "pu_nofu"), row[f"r0_{pu}"] - row["pu_fu"], implicit=True)
            noinj = p.add((dim, u, "pu_noinj"), row["pu_fu"] - row["pu_inj"], implicit=True)
            p.equation((dim, u, primary, pu), fu, nofu)
            p.equation(fu, inj, noinj)
            for col, key in (("pu_fu", fu), ("pu_inj", inj), ("pu_nofu", nofu), ("pu_noinj", noinj)):
                columns.setdefault(col, []).append(key)
            if dim == "provider":  # what followed, in the feedback reports: bound like the injections
                for iv in FOLLOWED:
                    k = p.add((dim, u, f"pu_{iv}"), row[f"pu_{iv}"], keep=1)
                    rest = p.add((dim, u, f"pu_no_{iv}"), row["pu_fu"] - row[f"pu_{iv}"], implicit=True)
                    p.equation(fu, k, rest)
                    columns.setdefault(f"pu_{iv}", []).append(k)
                    columns.setdefault(f"pu_no_{iv}", []).append(rest)
        if not rows:
            continue
        totals = {"scans": all_scans, "pu_fu": pu_fu_total, "pu_inj": pu_inj_total,
                  "pu_nofu": ("pu_nofu", "all"), "pu_noinj": ("m", primary, pu, "injection", PROVIDER_WINDOW)}
        for iv in FOLLOWED:
            totals[f"pu_{iv}"] = ("n", primary, pu, iv, PROVIDER_WINDOW)
            totals[f"pu_no_{iv}"] = ("m", primary, pu, iv, PROVIDER_WINDOW)
        totals.update({c: ("scans", primary, c) for c in CATEGORIES})
        for rs in names[1:]:
            totals[(rs, pu)] = ("scans", rs, pu)
            totals[(rs, "not_pu")] = ("not_pu", "all", rs)
        for col, keys in columns.items():
            p.equation(totals[col], *keys)

    # Data coverage (methodology).
    regions = figures["regions"]
    spine = ("lumbar", "cervical", "thoracic")
    spine_total = p.add(("region", "spine"), sum(regions.get(r, 0) for r in spine), keep=20)
    p.equation(spine_total, *[p.add(("region", r), regions.get(r, 0), keep=2) for r in spine])
    p.equation(p.add(("region", "all"), sum(regions.values()), keep=20), spine_total,
               p.add(("region", "other"), regions.get("other", 0), keep=1))
    n_cov, linked, history, follow = figures["coverage"]
    cov = p.add(("coverage", "scans"), n_cov, keep=20)
    for name, value in (("linked", linked), ("history", history), ("follow_up", follow)):
        p.equation(cov, p.add(("coverage", name), value, keep=1),
                   p.add(("coverage", f"no_{name}"), n_cov - value, implicit=True))
    for table_name, rows_in, _, quarantined in figures["files"]:
        if quarantined > rows_in:  # rows quarantined after loading as well: no simple total
            p.add(("rows_in", table_name), rows_in, keep=20)
            p.add(("quarantined", table_name), quarantined, keep=1)
            continue
        p.equation(p.add(("rows_in", table_name), rows_in, keep=20),
                   p.add(("quarantined", table_name), quarantined, keep=1),
                   p.add(("loaded", table_name), rows_in - quarantined, implicit=True))
    return p.solve()
