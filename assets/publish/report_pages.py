"""The overtreatment reports' pages: the index, what followed the MRIs (downstream), providers and facilities,
with their rendering helpers."""

from __future__ import annotations

import html
from datetime import datetime, timezone

from assets.html import page
from assets.publish.protection import WITHHELD, Protection
from assets.publish.report_definitions import (
    BENCHMARKS, BY_KEY, CATEGORIES, CATEGORY_LABEL, EXTRA_CSS, INTERVENTIONS, PAGES, PROVIDER_WINDOW, READING,
    UNKNOWN, WINDOWS)
from assets.publish.statistics import SMALL_CELL_MAX, SUPPRESSED, funnel_position


def percent(x) -> str:
    return "–" if x is None else f"{x:.1%}"


def fraction(p: Protection, num_key, den_key) -> str:
    """`n / d (p%)` with suppressed parts shown as such and the percentage only when both are published."""
    r = p.rate(num_key, den_key)
    tail = f" ({percent(r)})" if r is not None else ""
    return f"{p.text(num_key)} / {p.text(den_key)}{tail}"


def report_nav(here: str) -> str:
    here_attr = ' class="here"'
    links = " ".join(
        f'<a href="{href}"{here_attr if href == here else ""}>{html.escape(label)}</a>' for href, label in PAGES
    )
    return f'{EXTRA_CSS}<nav class="rnav">{links}</nav>'


def raw_table(headers: list[str], rows: list[list[str]], numeric: set[int] = frozenset(),
               row_classes: list[str] | None = None) -> str:
    """A table whose cells are already HTML (escaped by the caller)."""
    head = "".join(f'<th class="{"num" if i in numeric else ""}">{html.escape(h)}</th>' for i, h in enumerate(headers))
    body = []
    for j, r in enumerate(rows):
        cls = f' class="{row_classes[j]}"' if row_classes and row_classes[j] else ""
        body.append(f"<tr{cls}>" + "".join(
            c if c.startswith("<td") else f'<td class="{"num" if i in numeric else ""}">{c}</td>'
            for i, c in enumerate(r)
        ) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


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


SUPPRESSION_NOTE = (
    f"Counts of 1 to {SMALL_CELL_MAX} are shown as <b>{html.escape(SUPPRESSED)}</b>. A count marked "
    f"<b>{WITHHELD}</b> is not small, but is withheld because it, together with a published total, complement "
    "or neighbouring window, would let a reader work out a suppressed count. Percentages are shown only when "
    "both of their counts are published."
)


# --- pages -------------------------------------------------------------------------------------------------

READING_WHAT = {
    "injection": "an epidural or facet injection",
    "surgery": "spine surgery",
    "electrodiagnostic": "an EMG or nerve conduction study",
    "repeat_imaging": "repeat advanced spine imaging",
    "opioid_start": "a new opioid prescription",
}


def _reading(p: Protection, figures: dict, rs: str) -> list[str]:
    """Plain-language sentences comparing potentially unnecessary with indicated MRIs, from published counts."""
    pu, ind = "potentially_unnecessary", "indicated"
    out = []
    for key, w in READING:
        what = READING_WHAT[key]
        n_pu, d_pu = ("n", rs, pu, key, w), ("den", rs, pu, w)
        n_ind, d_ind = ("n", rs, ind, key, w), ("den", rs, ind, w)
        r_pu, r_ind = p.rate(n_pu, d_pu), p.rate(n_ind, d_ind)
        if r_pu is None or r_ind is None:
            out.append(
                f"{html.escape(what[0].upper() + what[1:])} within {w} days: this comparison cannot be published "
                f"(too few scans with {w} days of follow-up, or counts under 11)."
            )
            continue
        ratio = f"; {r_pu / r_ind:.1f} times the rate" if r_ind else ""
        out.append(
            f"After potentially unnecessary MRIs, <b>{percent(r_pu)}</b> ({p.text(n_pu)} of {p.text(d_pu)}) had "
            f"{html.escape(what)} within {w} days, against <b>{percent(r_ind)}</b> ({p.text(n_ind)} of "
            f"{p.text(d_ind)}) after indicated MRIs{ratio}."
        )
    return out


def render_downstream(p: Protection, figures: dict, generated_at: datetime) -> str:
    names = figures["names"]
    primary = names[0]
    total = figures["total"]
    data_end = total["data_end"] if total else None
    sections = [report_nav("downstream.html")]
    reading = _reading(p, figures, primary)
    sections.append(
        f"""<section><h2>What this shows ({html.escape(rule_set_label(figures, primary))} rule set)</h2>
<ul class="reading">{''.join(f'<li>{s}</li>' for s in reading)}</ul>
<p class="note">A scan counts once per intervention when at least one such event falls on day 1 to N after the scan
date (events on the scan day itself do not count). Each window counts only the scans whose whole window lies
within the data (follow-up data through {html.escape(str(data_end))}), so the denominators shrink as the window
grows. These are associations in routine data, not effects of the MRI: patients with indicated MRIs differ
(red flags, neurological signs), and an intervention may have been planned before the scan.</p></section>"""
    )
    for rs in names:
        headers = ["Intervention", "Within", *[CATEGORY_LABEL[c] for c in CATEGORIES], "All spine MRIs"]
        rows, classes = [], []
        rows.append(["Spine MRIs (all dates)", "", *[p.text(("scans", rs, c)) for c in CATEGORIES],
                     p.text(("scans", "all"))])
        classes.append("total")
        for j, w in enumerate(WINDOWS):
            label = ('<td class="grp" rowspan="3">Spine MRIs with the whole window of follow-up in the data</td>'
                     if j == 0 else None)
            cells = [f"{w} days", *[p.text(("den", rs, c, w)) for c in CATEGORIES], p.text(("den", "all", w))]
            rows.append(([label] if label else []) + cells)
            classes.append("")
        for iv in INTERVENTIONS:
            for j, w in enumerate(WINDOWS):
                label = (f'<td class="grp" rowspan="{len(WINDOWS)}">{html.escape(iv.label)}</td>' if j == 0
                         else None)
                cells = [f"{w} days", *[fraction(p, ("n", rs, c, iv.key, w), ("den", rs, c, w)) for c in CATEGORIES],
                         fraction(p, ("n", "all", iv.key, w), ("den", "all", w))]
                rows.append(([label] if label else []) + cells)
                classes.append("sep" if j == 0 else "")
        body = _downstream_table(headers, rows, classes)
        sections.append(
            f"""<section><h2>Rule set {html.escape(rule_set_label(figures, rs))}: spine MRIs followed by each
intervention</h2>{body}
<p class="note">Each cell: scans followed by the intervention / scans with the whole window of follow-up
(percentage). Categories as decided by the <code>{html.escape(rs)}</code> rule set; out-of-scope scans are
excluded. {SUPPRESSION_NOTE}</p></section>"""
        )
    bench_rows = []
    pu, ind = "potentially_unnecessary", "indicated"
    for study, url, design, window, finding in BENCHMARKS:
        bench_rows.append([f'<a href="{html.escape(url)}">{html.escape(study)}</a>', html.escape(design),
                           html.escape(window), html.escape(finding)])
    ours = []
    for key, w in (("surgery", 365), ("opioid_start", 365), ("injection", 180)):
        ours.append(
            f"<li>{html.escape(BY_KEY[key].label)} within {w} days: potentially unnecessary "
            f"{fraction(p, ('n', primary, pu, key, w), ('den', primary, pu, w))}, indicated "
            f"{fraction(p, ('n', primary, ind, key, w), ('den', primary, ind, w))}</li>"
        )
    sections.append(
        f"""<section class="bench"><h2>Published benchmarks <span class="tag">not our data</span></h2>
{raw_table(["Study", "Population and comparison", "Window", "Published finding"], bench_rows)}
<p class="note">These figures come from the literature (clinical reference §8.2), for orientation only. The
studies compare early or guideline-non-adherent MRI with no early MRI in other populations and with other
definitions, so they are not directly comparable with this audit's categories. The closest figures in this
audit ({html.escape(rule_set_label(figures, primary))}):</p><ul class="note">{''.join(ours)}</ul></section>"""
    )
    sections.append(
        """<section><h2>Definitions</h2><ul class="note">"""
        + "".join(f"<li><b>{html.escape(iv.label)}</b>: {html.escape(iv.definition)}.</li>" for iv in INTERVENTIONS)
        + """</ul><p class="note">Codes, windows and coverage: <a href="methodology.html">methodology</a>.
The same figures as a spreadsheet: <a href="downstream_interventions.csv">downstream_interventions.csv</a>.</p>
</section>"""
    )
    subtitle = f"{period_text(figures)} · follow-up data through {data_end} · published {stamp_text(generated_at)}"
    return page("Downstream interventions after spine MRI", subtitle, "\n".join(sections))


def _downstream_table(headers, rows, classes) -> str:
    head = "".join(f'<th class="{"num" if i >= 2 else ""}">{html.escape(h)}</th>' for i, h in enumerate(headers))
    body = []
    for r, cls in zip(rows, classes):
        cells = []
        grouped = r[0] is not None and str(r[0]).startswith("<td")
        offset = 0 if (grouped or len(r) == len(headers)) else 1  # rows inside a rowspan lack the first cell
        for i, c in enumerate(r):
            if str(c).startswith("<td"):
                cells.append(c)
                continue
            col = i + offset
            cells.append(f'<td class="{"num" if col >= 2 else "win" if col == 1 else ""}">{c}</td>')
        attr = f' class="{cls}"' if cls else ""
        body.append(f"<tr{attr}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


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
    funnel_col = len(headers) - 4
    numeric = set(range(first_num, len(headers))) - {funnel_col}

    def cells(it, label):
        row = [html.escape(label)]
        if dim == "provider":
            row.append(html.escape((it["specialty"] or "–").replace("_", " ")))
        row += [p.text(it["scans"]), *[p.text(it["cats"][c]) for c in
                                       ("indicated", "potentially_unnecessary", "insufficient_information")]]
        row.append(f"<b>{percent(it['rate'])}</b>")
        row += [percent(it["expected_rate"]), percent(it["adjusted_rate"])]
        row += [percent(r) for _, r in it["other"].values()]
        f = it["funnel"]
        cls = "hi" if f and f.startswith("above") else "lo" if f and f.startswith("below") else ""
        row.append(f'<td class="win {cls}">{html.escape(FUNNEL_LABEL.get(f, "–"))}</td>')
        row.append(fraction(p, it["inj"], it["fu"]))
        row.append("–" if it["pu_cost"] is None else f"{it['pu_cost']:,.0f}")
        row.append("–" if it["pu_hours"] is None else f"{it['pu_hours']:,.0f}")
        return row

    rows = [cells(total, f"All {plural}")] + [cells(it, it["unit"]) for it in items]
    classes = ["total"] + [""] * len(items)
    n_units = len(items)
    overall = total["rate"]
    others = ", ".join(f"{percent(r)} under {html.escape(rs)}" for rs, (_, r) in total["other"].items())
    intro = (
        f"Overall, <b>{percent(overall)}</b> of spine MRIs ({p.text(total['cats']['potentially_unnecessary'])} of "
        f"{p.text(total['scans'])}) were potentially unnecessary under the {html.escape(rule_set_label(figures, primary))} "
        f"rule set{'; ' + others if others else ''}. {n_units:,} {plural} are listed, highest potentially "
        "unnecessary rate first; those whose rate cannot be published (small numbers) follow, largest first."
    )
    if dim == "provider":
        who = ("The referring provider is the one on the referral linked to the scan (named by the scan, or the "
               "patient's latest referral for the same region in the 90 days before it); "
               f"<b>{UNKNOWN}</b> collects scans with no linked referral or no provider on it. The specialty "
               "shown is the one most often recorded on that provider's referrals.")
    else:
        who = f"The facility is the one recorded on the scan; <b>{UNKNOWN}</b> collects scans without one."
    stem = "providers" if dim == "provider" else "facilities"
    body = f"""{report_nav(stem + '.html')}
<section><h2>Potentially unnecessary spine MRIs by {noun}</h2><p>{intro}</p>
{raw_table(headers, rows, numeric=numeric, row_classes=classes)}
<p class="note">Spine MRIs: cervical, thoracic and lumbar MRIs (out-of-scope scans excluded). Counts per category
under {html.escape(rule_set_label(figures, primary))}. Rate: potentially unnecessary MRIs / spine MRIs under each
rule set. Funnel limits: whether the {html.escape(primary)} rate lies above (▲) or below (▼) the 95% or 99.8%
control limits around the overall rate for a {noun} with that many spine MRIs (Spiegelhalter 2005); outside the
99.8% limits is unlikely to be chance alone. Expected from case mix: the share the {noun}'s own mix of patients
would have at the overall rates of their stratum (age band, sex, care setting, body region, referring
specialty); case-mix adjusted: observed / expected x the overall rate (indirect standardisation), so a {noun}
whose patients are mostly in high-rate strata is not penalised for it. Cost: {html.escape(costs.describe())}
({html.escape(costs.source)}); scanner hours from the scans' table time. Injection within
{PROVIDER_WINDOW} days: potentially unnecessary MRIs followed by an epidural or facet injection within
{PROVIDER_WINDOW} days / potentially unnecessary MRIs with {PROVIDER_WINDOW} days of follow-up in the data
(percentage). {who} {SUPPRESSION_NOTE}</p>
<p class="note">The same table as a spreadsheet: <a href="{stem}.csv">{stem}.csv</a>.
The individual scans: <a href="chart_review_cases.csv">chart_review_cases.csv</a>.</p></section>"""
    subtitle = (f"{period_text(figures)} · rule sets {', '.join(rule_set_label(figures, rs) for rs in names)} · "
                f"published {stamp_text(generated_at)}")
    title = "Spine MRI by referring provider" if dim == "provider" else "Spine MRI by facility"
    return page(title, subtitle, body)


def render_index(p: Protection, figures: dict, generated_at: datetime) -> str:
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
    tiles_html = "".join(
        f'<div class="tile"><div class="n">{html.escape(str(n))}</div><div class="l">{html.escape(label)}</div></div>'
        for n, label in tiles
    )
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
    links_html = "".join(
        f'<li><a href="{href}"><b>{html.escape(label)}</b></a>: {html.escape(text)}</li>' for href, label, text in links
    )
    total = figures["total"]
    data_end = total["data_end"] if total else "–"
    from assets.review.pages import reviewed_rates_section

    rates = reviewed_rates_section(figures["reviewed_rates"], "validation.html") if figures.get("reviewed_rates") else ""
    body = f"""{report_nav("index.html")}<div class="tiles">{tiles_html}</div>{rates}
<section><h2>Reports</h2><ul class="reading">{links_html}</ul>
<p class="note">Rule sets: {', '.join(html.escape(rule_set_label(figures, rs)) for rs in names)}. Follow-up data through
{html.escape(str(data_end))}. {SUPPRESSION_NOTE} Utilization dashboard:
<a href="../dashboards/index.html">dashboards</a>.</p></section>"""
    subtitle = f"{period_text(figures)} · published {stamp_text(generated_at)}"
    return page("Spine MRI overtreatment reports", subtitle, body)
