"""The utilization dashboards: self-contained HTML pages that open offline as a folder.

`build_dashboards(con, out_dir)` reads the warehouse (read-only) and writes:
- `index.html`: headline figures with their denominators and filters, what was loaded, links to the other pages;
- `trends.html`: the monthly p-chart and volume, the funnel plots of referring providers and facilities, OP-8;
- `breakdowns.html`: reasons, specialties, facilities, care settings, age bands, referral-to-scan time,
  findings yield, safety and contrast reviews;
- `rule_sets.html`: the rule sets side by side, and the scanner time and cost of each verdict.

Every page embeds its part of one set of views protected as a whole (assets/publish/filters.py: no count of
1-10 can be read or worked out from any combination of filters and pages); `dashboard.js` draws the charts
from them with Plotly's library (`plotly.min.js`), both written once beside the pages. Pages are rendered from
the templates in assets/templates/.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from assets.publish.protection import WITHHELD
from assets.publish.statistics import SMALL_CELL_MAX, is_small, rate, show

PLOTLY_JS = "plotly.min.js"
SCRIPT = "dashboard.js"  # draws the filtered pages from their embedded views
PAGES = [("index.html", "Overview"), ("trends.html", "Trends and variation"),
         ("breakdowns.html", "Breakdowns"), ("rule_sets.html", "Rule sets and resources")]


def _q(con, sql: str, params=None):
    return con.execute(sql, params or []).fetchall()


def _pct(x) -> str:
    return "–" if x is None else f"{x:.1%}"


def _page(title: str, subtitle: str, body: str, current: str, template: str = "dashboard.html.j2",
          data: dict | None = None, **context) -> str:
    """A dashboard page in the one base layout (assets/templates/). `data`: the page's embedded views, drawn
    by the shared script (`dashboard.js`, one file beside the pages like Plotly's library)."""
    from assets.html import render
    from assets.publish.filters import embed

    if data is not None:
        context["data_script"] = embed(data)
    context["data"] = data
    return render(template, title=title, subtitle=subtitle, body=body, pages=PAGES, current=current,
                  page_name=current.removesuffix(".html"), small_max=SMALL_CELL_MAX, **context)


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
               m.reasons, m.safety_review, m.contrast_review,
               r.referring_provider_id, r.referring_specialty, r.care_setting, r.patient_age, r.referral_date,
               s.facility_id, s.scan_minutes, s.findings_category,
               {load_unit_costs().sql("m.procedure_code", "r.care_setting")} AS unit_cost,
               {expected} AS expected_pu
        FROM mri_classification m
        JOIN scan_links l USING (scan_id)
        LEFT JOIN referrals_current r ON r.referral_id = l.referral_id
        LEFT JOIN scans_current s ON s.scan_id = m.scan_id""")


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
    has_hedis = _q(con, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'hedis_lbp'")[0][0]
    hedis_num, hedis_den = _q(con, """SELECT count(*) FILTER (WHERE in_denominator AND imaging_within_window),
                                      count(*) FILTER (WHERE in_denominator) FROM hedis_lbp""")[0] if has_hedis else (0, 0)
    return {
        "period": _q(con, "SELECT min(scan_date), max(scan_date) FROM scan_links")[0],
        "hedis": (hedis_num, hedis_den),
        "rule_sets": _q(con, """SELECT DISTINCT rule_set, rule_set_version FROM mri_classification ORDER BY
                               rule_set <> 'standard', rule_set"""),
        "tables": _q(con, """SELECT table_name, count(DISTINCT source_file), sum(rows_in), sum(rows_loaded),
                                    sum(rows_quarantined) FROM ingest_files GROUP BY ALL ORDER BY 1"""),
        "regions": _q(con, """SELECT body_region, count(*) FROM scan_links GROUP BY body_region
                              ORDER BY list_position(['lumbar', 'cervical', 'thoracic', 'other'], body_region)"""),
    }


def render_index(figures: dict, generated_at: datetime | None = None) -> str:
    """The overview (template overview.html.j2)."""
    from assets.publish.filters import FACETS, first_view, for_page
    from assets.review.pages import reviewed_rates_section

    generated_at = generated_at or datetime.now(timezone.utc)
    start, end = figures["period"]

    def count(n):  # row counts are published like any count: 1-10 reads <11
        return "–" if n is None else show(None) if is_small(n) else f"{n:,}"

    # Rows in = loaded + quarantined per table, and the tables' quarantined rows add up to the total: a small
    # quarantined count takes its table's loaded count with it, and the total when it is the only small one.
    tables, small_quarantined = [], 0
    for t, f, rows_in, loaded, quarantined in figures["tables"]:
        hidden = is_small(quarantined or 0) or is_small(loaded or 0)
        small_quarantined += is_small(quarantined or 0)
        tables.append((t, f"{f:,}", count(rows_in), WITHHELD if hidden and not is_small(loaded or 0) else count(loaded),
                       WITHHELD if hidden and not is_small(quarantined or 0) else count(quarantined)))
    total_quarantined = sum(r[4] or 0 for r in figures["tables"])

    # HEDIS LBP: episodes with imaging within 28 days (num) of all episodes (den). With either part 1-10, the
    # share and the episodes without imaging would give it away beside the published total: both are hidden.
    hedis_num, hedis_den = figures["hedis"]
    hedis_small = is_small(hedis_num) or is_small(hedis_den - hedis_num)
    share = None if hedis_small else rate(hedis_num, hedis_den)
    data = for_page(figures["filters"], set(FACETS)) if figures.get("filters") else None
    subtitle = f"Scans dated {start} to {end} · published {generated_at.strftime('%Y-%m-%d %H:%M UTC')}"
    return _page(
        "Spine MRI utilization audit", subtitle, "", "index.html", template="overview.html.j2", data=data,
        first=first_view(data) if data else None,
        hedis={"share": _pct(None if share is None else 1 - share),
               "without": show(None) if hedis_small else count(hedis_den - hedis_num), "episodes": count(hedis_den)},
        reviewed_rates=reviewed_rates_section(figures["reviewed_rates"], "../reports/validation.html")
        if figures.get("reviewed_rates") else "",
        rule_sets=", ".join(f"{n} {v}" for n, v in figures["rule_sets"]),
        tables=tables, quarantined=WITHHELD if small_quarantined == 1 else count(total_quarantined),
        regions=[(r, count(n)) for r, n in figures["regions"]])


_EMPTY = "<section><p>No spine MRIs were classified in scope: there is nothing to draw.</p></section>"


def render_trends(figures: dict, subtitle: str) -> str:
    """Trends and variation, drawn in the page from the protected views: the monthly p-chart and volume, the
    funnels of providers and facilities, OP-8 by facility (template trends.html.j2)."""
    if not figures.get("filters"):
        return _page("Trends and variation", subtitle, _EMPTY, "trends.html")
    from assets.publish.filters import for_page
    from assets.publish.reference_rates import reference_rate

    ref = reference_rate("op8")
    reference = {"rate": ref.rate, "label": f"{ref.label} {ref.rate:.0%}", "population": ref.population,
                 "citation": ref.citation} if ref else None
    data = dict(for_page(figures["filters"], {"provider", "facility"}), reference=reference)
    return _page("Trends and variation", subtitle, "", "trends.html", template="trends.html.j2", data=data,
                 periods=data["years"], region="*", reference=reference)


def render_breakdowns(figures: dict, subtitle: str) -> str:
    """Breakdowns, drawn in the page from the protected views (template breakdowns.html.j2)."""
    if not figures.get("filters"):
        return _page("Breakdowns", subtitle, _EMPTY, "breakdowns.html")
    from assets.publish.filters import FACETS, for_page

    data = for_page(figures["filters"], set(FACETS) | {"age", "findings", "wait"}, extras=True)
    return _page("Breakdowns", subtitle, "", "breakdowns.html", template="breakdowns.html.j2", data=data,
                 periods=data["years"] + data["quarters"], region="*")


def render_rule_sets(figures: dict, subtitle: str) -> str:
    """Rule sets and resources, drawn in the page from the protected views (template rule_sets.html.j2)."""
    if not figures.get("filters"):
        return _page("Rule sets and resources", subtitle, _EMPTY, "rule_sets.html")
    from assets.publish.costs import load_unit_costs
    from assets.publish.filters import for_page

    costs = load_unit_costs()
    data = dict(for_page(figures["filters"], set(), extras=True), versions=dict(figures["rule_sets"]))
    return _page("Rule sets and resources", subtitle, "", "rule_sets.html", template="rule_sets.html.j2", data=data,
                 periods=data["years"] + data["quarters"], region="*", with_rule_set=False,
                 cost_note=f"{costs.describe()}. Source: {costs.source.rstrip('.')}")


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
    published = generated_at.strftime('%Y-%m-%d %H:%M UTC')
    filtered = f"Scans dated {start} to {end} · rule set, region and period as the filters say · published {published}"
    pages = {
        "index.html": render_index(figures, generated_at),
        "trends.html": render_trends(figures, filtered),
        "breakdowns.html": render_breakdowns(figures, filtered),
        "rule_sets.html": render_rule_sets(figures, filtered),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    pages[PLOTLY_JS] = plotly_library()
    pages[SCRIPT] = (Path(__file__).resolve().parents[1] / "templates" / SCRIPT).read_text(encoding="utf-8")
    sizes = {}
    for name, text in pages.items():
        (out_dir / name).write_text(text, encoding="utf-8")
        sizes[name] = len(text.encode())
    return sizes
