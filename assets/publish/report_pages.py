"""The overtreatment reports' pages: the index, what followed the MRIs (downstream), providers and facilities,
with their rendering helpers."""

from __future__ import annotations

from datetime import datetime, timezone

from assets.publish.protection import WITHHELD, Protection
from assets.publish.report_definitions import (
    BENCHMARKS, BY_KEY, CATEGORIES, CATEGORY_LABEL, INTERVENTIONS, PAGES, PROVIDER_WINDOW, READING,
    UNKNOWN, WINDOWS)
from assets.publish.statistics import SMALL_CELL_MAX, SUPPRESSED, funnel_position


def percent(x) -> str:
    return "–" if x is None else f"{x:.1%}"


def fraction(p: Protection, num_key, den_key) -> str:
    """`n / d (p%)` with suppressed parts shown as such and the percentage only when both are published."""
    r = p.rate(num_key, den_key)
    tail = f" ({percent(r)})" if r is not None else ""
    return f"{p.text(num_key)} / {p.text(den_key)}{tail}"


def report_page(template: str, title: str, subtitle: str, current: str, **context) -> str:
    """A report page from its template (assets/templates/reports/) on the one base layout, with the reports'
    navigation; cells arrive as plain text and are escaped by the template."""
    from assets.html import render

    return render(template, title=title, subtitle=subtitle, report_pages=PAGES, current=current,
                  small_max=SMALL_CELL_MAX, suppressed=SUPPRESSED, withheld=WITHHELD, **context)


def stamp_text(generated_at: datetime) -> str:
    if generated_at.tzinfo is not None:
        generated_at = generated_at.astimezone(timezone.utc)
    return generated_at.strftime("%Y-%m-%d %H:%M UTC")


def period_text(figures: dict) -> str:
    total = figures["total"]
    if not total or not total["scans"]:
        return "No spine MRIs in the warehouse"
    return f"Spine MRIs dated {total['first_scan']} to {total['last_scan']}"


def rule_set_label(figures: dict, name: str) -> str:
    version = dict(figures["rule_sets"]).get(name)
    return f"{name} {version}" if version else name


# --- pages -------------------------------------------------------------------------------------------------

READING_WHAT = {
    "injection": "an epidural or facet injection",
    "surgery": "spine surgery",
    "electrodiagnostic": "an EMG or nerve conduction study",
    "repeat_imaging": "repeat advanced spine imaging",
    "opioid_start": "a new opioid prescription",
}


def _reading(p: Protection, figures: dict, rs: str) -> list[dict]:
    """Plain-language comparisons of potentially unnecessary with indicated MRIs, from published counts."""
    pu, ind = "potentially_unnecessary", "indicated"
    out = []
    for key, w in READING:
        what = READING_WHAT[key]
        n_pu, d_pu = ("n", rs, pu, key, w), ("den", rs, pu, w)
        n_ind, d_ind = ("n", rs, ind, key, w), ("den", rs, ind, w)
        r_pu, r_ind = p.rate(n_pu, d_pu), p.rate(n_ind, d_ind)
        item = {"what": what, "what_start": what[0].upper() + what[1:], "window": w,
                "published": r_pu is not None and r_ind is not None}
        if item["published"]:
            item.update(pu_rate=percent(r_pu), n_pu=p.text(n_pu), d_pu=p.text(d_pu), ind_rate=percent(r_ind),
                        n_ind=p.text(n_ind), d_ind=p.text(d_ind), ratio=f"{r_pu / r_ind:.1f}" if r_ind else None)
        out.append(item)
    return out


def render_downstream(p: Protection, figures: dict, generated_at: datetime) -> str:
    """What followed the MRIs (template reports/downstream.html.j2)."""
    names = figures["names"]
    primary = names[0]
    total = figures["total"]
    data_end = total["data_end"] if total else None
    tables = []
    for rs in names:
        tables.append({
            "name": rs, "label": rule_set_label(figures, rs),
            "all_dates": [*[p.text(("scans", rs, c)) for c in CATEGORIES], p.text(("scans", "all"))],
            "followed_up": [(w, [*[p.text(("den", rs, c, w)) for c in CATEGORIES], p.text(("den", "all", w))])
                            for w in WINDOWS],
            "interventions": [(iv.label, [(w, [*[fraction(p, ("n", rs, c, iv.key, w), ("den", rs, c, w))
                                                 for c in CATEGORIES],
                                               fraction(p, ("n", "all", iv.key, w), ("den", "all", w))])
                                          for w in WINDOWS]) for iv in INTERVENTIONS],
        })
    pu, ind = "potentially_unnecessary", "indicated"
    closest = [(BY_KEY[key].label, w, fraction(p, ("n", primary, pu, key, w), ("den", primary, pu, w)),
                fraction(p, ("n", primary, ind, key, w), ("den", primary, ind, w)))
               for key, w in (("surgery", 365), ("opioid_start", 365), ("injection", 180))]
    subtitle = f"{period_text(figures)} · follow-up data through {data_end} · published {stamp_text(generated_at)}"
    return report_page(
        "reports/downstream.html.j2", "Downstream interventions after spine MRI", subtitle, "downstream.html",
        primary_label=rule_set_label(figures, primary), reading=_reading(p, figures, primary), data_end=data_end,
        headers=["Intervention", "Within", *[CATEGORY_LABEL[c] for c in CATEGORIES], "All spine MRIs"],
        tables=tables, benchmarks=BENCHMARKS, closest=closest, interventions=INTERVENTIONS)


FUNNEL_LABEL = {
    "within": "within", "above_95": "▲ above 95%", "above_998": "▲ above 99.8%",
    "below_95": "▼ below 95%", "below_998": "▼ below 99.8%",
}


def unit_rows(p: Protection, figures: dict, dim: str) -> list[dict]:
    """The rows of the provider or facility table (published values only), sorted for the page."""
    names = figures["names"]
    primary = names[0]
    pu = "potentially_unnecessary"
    centre = p.rate(("scans", primary, pu), ("scans", "all"))
    out = []
    for row in figures["providers" if dim == "provider" else "facilities"]:
        u = row[f"{dim}_key"]
        specialties = row.get("specialties") or {}
        specialty = (min(specialties.items(), key=lambda kv: (-kv[1], kv[0]))[0] if specialties else None)
        r = p.rate((dim, u, primary, pu), (dim, u, "scans"))
        item = {
            "unit": u, "specialty": specialty, "scans": (dim, u, "scans"),
            **_case_mix_and_cost(p, row, (dim, u, primary, pu), (dim, u, "scans"), centre),
            "cats": {c: (dim, u, primary, c) for c in CATEGORIES},
            "rate": r,
            "other": {rs: ((dim, u, rs, pu), p.rate((dim, u, rs, pu), (dim, u, "scans"))) for rs in names[1:]},
            "fu": (dim, u, "pu_fu"), "inj": (dim, u, "pu_inj"),
            "inj_rate": p.rate((dim, u, "pu_inj"), (dim, u, "pu_fu")),
            "funnel": (funnel_position(r, centre, p.get((dim, u, "scans")))
                       if r is not None and centre is not None and 0 < centre < 1 else None),
        }
        out.append(item)
    out.sort(key=lambda it: (it["rate"] is None, -(it["rate"] or 0), -(p.get(it["scans"]) or 0), it["unit"]))
    return out


def _case_mix_and_cost(p: Protection, row: dict, pu_key, scans_key, centre) -> dict:
    """The expected rate from the unit's case mix, its adjusted rate, and the cost and scanner hours of its
    potentially unnecessary MRIs: published only with the counts they are derived from (each would reveal
    them)."""
    from assets.publish.casemix import adjusted_rate

    observed, scans = p.get(pu_key), p.get(scans_key)
    if observed is None or scans is None or not scans:
        return {"expected_rate": None, "adjusted_rate": None, "pu_cost": None, "pu_hours": None}
    expected = float(row.get("pu_expected") or 0.0)
    return {
        "expected_rate": expected / scans,
        "adjusted_rate": adjusted_rate(observed, expected, centre),
        "pu_cost": row.get("pu_cost") or 0.0,
        "pu_hours": row.get("pu_hours"),
    }


def total_item(p: Protection, figures: dict) -> dict:
    names = figures["names"]
    primary = names[0]
    pu = "potentially_unnecessary"
    centre = p.rate(("scans", primary, pu), ("scans", "all"))
    return {
        "unit": "All", "specialty": None, "scans": ("scans", "all"),
        **_case_mix_and_cost(p, figures["total"] or {}, ("scans", primary, pu), ("scans", "all"), centre),
        "cats": {c: ("scans", primary, c) for c in CATEGORIES},
        "rate": p.rate(("scans", primary, pu), ("scans", "all")),
        "other": {rs: (("scans", rs, pu), p.rate(("scans", rs, pu), ("scans", "all"))) for rs in names[1:]},
        "fu": ("den", primary, pu, PROVIDER_WINDOW), "inj": ("n", primary, pu, "injection", PROVIDER_WINDOW),
        "inj_rate": p.rate(("n", primary, pu, "injection", PROVIDER_WINDOW), ("den", primary, pu, PROVIDER_WINDOW)),
        "funnel": None,
    }


def render_units(p: Protection, figures: dict, dim: str, generated_at: datetime) -> str:
    """Per referring provider or facility (template reports/units.html.j2)."""
    from assets.publish.costs import load_unit_costs

    costs = load_unit_costs()
    names = figures["names"]
    primary = names[0]
    noun, plural = ("referring provider", "referring providers") if dim == "provider" else ("facility", "facilities")
    items = unit_rows(p, figures, dim)
    total = total_item(p, figures)
    headers = [noun.capitalize()] + (["Specialty"] if dim == "provider" else []) + [
        "Spine MRIs", "Indicated", "Potentially unnecessary", "Insufficient information",
        f"Rate, {primary}", "Expected from case mix", "Case-mix adjusted", *[f"Rate, {rs}" for rs in names[1:]],
        "Funnel limits", f"Injection within {PROVIDER_WINDOW} days",
        f"Cost of potentially unnecessary ({costs.currency})", "Their scanner hours",
    ]
    first_num = 2 if dim == "provider" else 1
    numeric = set(range(first_num, len(headers))) - {len(headers) - 4}

    def row(it, label):
        f = it["funnel"]
        return {
            "label": label, "specialty": (it["specialty"] or "–").replace("_", " "),
            "counts": [p.text(it["scans"]), *[p.text(it["cats"][c]) for c in
                                              ("indicated", "potentially_unnecessary", "insufficient_information")]],
            "rate": percent(it["rate"]),
            "rates": [percent(it["expected_rate"]), percent(it["adjusted_rate"]),
                      *[percent(r) for _, r in it["other"].values()]],
            "funnel": FUNNEL_LABEL.get(f, "–"),
            "funnel_class": "hi" if f and f.startswith("above") else "lo" if f and f.startswith("below") else "",
            "tail": [fraction(p, it["inj"], it["fu"]),
                     "–" if it["pu_cost"] is None else f"{it['pu_cost']:,.0f}",
                     "–" if it["pu_hours"] is None else f"{it['pu_hours']:,.0f}"],
        }

    stem = "providers" if dim == "provider" else "facilities"
    subtitle = (f"{period_text(figures)} · rule sets {', '.join(rule_set_label(figures, rs) for rs in names)} · "
                f"published {stamp_text(generated_at)}")
    title = "Spine MRI by referring provider" if dim == "provider" else "Spine MRI by facility"
    return report_page(
        "reports/units.html.j2", title, subtitle, f"{stem}.html", noun=noun, plural=plural, stem=stem,
        primary=primary, primary_label=rule_set_label(figures, primary), headers=headers, numeric=numeric,
        with_specialty=dim == "provider", rows=[row(total, f"All {plural}")] + [row(it, it["unit"]) for it in items],
        n_units=len(items), unknown=UNKNOWN, window=PROVIDER_WINDOW, cost_basis=costs.describe(),
        cost_source=costs.source,
        overall={"rate": percent(total["rate"]), "pu": p.text(total["cats"]["potentially_unnecessary"]),
                 "scans": p.text(total["scans"]),
                 "others": [(rs, percent(r)) for rs, (_, r) in total["other"].items()]})


def render_index(p: Protection, figures: dict, generated_at: datetime) -> str:
    """The reports' front page (template reports/index.html.j2)."""
    from assets.review.pages import reviewed_rates_section

    names = figures["names"]
    primary = names[0]
    pu, ind = "potentially_unnecessary", "indicated"
    w = PROVIDER_WINDOW
    tiles = [
        (p.text(("scans", "all")), "spine MRIs audited (cervical, thoracic, lumbar)"),
        (percent(p.rate(("scans", primary, pu), ("scans", "all"))),
         f"potentially unnecessary under {rule_set_label(figures, primary)} "
         f"({p.text(('scans', primary, pu))} of {p.text(('scans', 'all'))})"),
    ]
    for rs in names[1:]:
        tiles.append((percent(p.rate(("scans", rs, pu), ("scans", "all"))),
                      f"potentially unnecessary under {rule_set_label(figures, rs)}"))
    tiles.append((
        f"{percent(p.rate(('n', primary, pu, 'injection', w), ('den', primary, pu, w)))} vs "
        f"{percent(p.rate(('n', primary, ind, 'injection', w), ('den', primary, ind, w)))}",
        f"injection within {w} days after potentially unnecessary vs indicated MRIs",
    ))
    links = [
        ("downstream.html", "Downstream interventions",
         "Injections, surgery, EMG/nerve conduction studies, repeat imaging and new opioid prescriptions within "
         "90, 180 and 365 days, after potentially unnecessary against indicated MRIs, with published benchmarks."),
        ("providers.html", "Referring providers",
         "Spine MRIs and potentially unnecessary rates per referring provider, against the overall rate."),
        ("facilities.html", "Facilities", "The same per facility."),
        ("chart_review_cases.csv", "Chart-review case list (CSV)",
         f"Every scan classified potentially unnecessary under {primary}, one row per scan (pseudonymous scan "
         "id, reasons, evidence, the other rule sets' verdicts and downstream flags), for clinical review inside "
         "the organisation."),
        ("review.html", "Chart review",
         "The next review sample (review_worklist.csv), one case at a time: reviewers confirm or correct verdicts "
         "offline and save a chart_reviews file for the landing folder."),
        ("validation.html", "How far the automation can be trusted",
         "Agreement between verdicts and chart reviews: PPV per category, Cohen's kappa, the confusion matrix and "
         "the rules reviewers overturn most."),
        ("methodology.html", "Methodology",
         "Rule sets and their rules, windows, code lists, small-cell suppression, data coverage and sources."),
    ]
    total = figures["total"]
    rates = reviewed_rates_section(figures["reviewed_rates"], "validation.html") if figures.get("reviewed_rates") else ""
    return report_page(
        "reports/index.html.j2", "Spine MRI overtreatment reports",
        f"{period_text(figures)} · published {stamp_text(generated_at)}", "index.html", tiles=tiles, links=links,
        reviewed_rates=rates, rule_sets=", ".join(rule_set_label(figures, rs) for rs in names),
        data_end=str(total["data_end"]) if total else "–")
