"""Feedback reports for referring providers (`reports/feedback/`): one printable PDF per provider with enough
volume, and an index page.

Each report gives the provider's potentially unnecessary rate against peers of the same specialty (with the
funnel position and the case-mix-adjusted rate), the quarterly trend, the main reasons behind the potentially
unnecessary orders, what followed for those patients within 180 days, and the list of those scans by their
pseudonymous ids for chart review; with the rule set, period and method stated.

Small cells: every count comes from the reports' protection (`reports.Protection`), so a report never shows a
count the provider table withholds; peers are the other providers of the specialty whose own counts are
published (their sums reveal nothing new); quarterly figures are rates shown only where both counts are 11 or
more; the main-reason counts add up to the provider's potentially unnecessary count, so they are suppressed
with a complement.

PDFs are rendered by WeasyPrint from the Jinja2 template `templates/feedback.html.j2`; layout is the slow part
(about a second a report), so a set of reports stands for IMAGING_AUDIT_FEEDBACK_REFRESH_DAYS (7) before a run
renders it again, like the periodic letters such programmes send; and when it is rendered, a report whose
content did not change is copied from the published run (content hashes in `feedback/manifest.json`). A report
lists the provider's most recent potentially unnecessary MRIs (IMAGING_AUDIT_FEEDBACK_CASES, 50); the
chart-review case list (`chart_review_cases.csv`) has them all.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from assets.sql import literal
from assets.publish.statistics import (SMALL_CELL_MAX, Z_95, Z_998, funnel_limits, funnel_position, is_small,
                                      suppress_row)

TEMPLATES = Path(__file__).parent / "templates"
MANIFEST = "manifest.json"
STAMP = "\x00published\x00"  # placeholder for the publication time, so unchanged content hashes the same


def _environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda x: "–" if x is None else f"{x:.1%}"
    env.filters["label"] = lambda s: (s or "–").replace("_", " ")
    return env


@dataclass
class ProviderReport:
    provider: str
    specialty: str | None
    scans: int
    pu: int
    rate: float
    expected_rate: float | None
    adjusted_rate: float | None
    pu_cost: float | None
    peers: dict | None  # providers, scans, pu, rate
    overall_rate: float | None
    position: str | None  # against the peers' rate
    quarters: list = field(default_factory=list)  # (quarter, rate or None)
    reasons: list = field(default_factory=list)  # (reason, count text)
    followed: list = field(default_factory=list)  # (label, "k of n (x%)")
    cases: list = field(default_factory=list)  # the most recent ones
    cases_total: int = 0
    funnel_svg: str = ""


def gather_reports(con, p, figures: dict, unit_items: list[dict], min_scans: int,
                   max_cases: int = 0) -> list[ProviderReport]:
    """One report per provider with at least `min_scans` spine MRIs whose count and rate are published."""
    from assets.publish.report_definitions import BY_KEY, FOLLOWED, UNKNOWN
    from assets.publish.report_queries import cases_sql

    names = figures["names"]
    pu_cat = "potentially_unnecessary"
    overall = p.rate(("scans", names[0], pu_cat), ("scans", "all"))
    published = [it for it in unit_items
                 if it["unit"] != UNKNOWN and it["rate"] is not None and p.get(it["scans"]) is not None]
    eligible = [it for it in published if p.get(it["scans"]) >= min_scans]
    if not eligible:
        return []
    wanted = {it["unit"] for it in eligible}
    quarters = _by_provider(con.execute(f"""
        SELECT referring_provider_id, strftime(scan_date, '%Y') || ' Q' || quarter(scan_date) AS q, count(*),
               count(*) FILTER (WHERE cat_0 = {literal(pu_cat)})
        FROM per_scan WHERE referring_provider_id IS NOT NULL GROUP BY ALL ORDER BY 1, 2""").fetchall(), wanted)
    reasons = _by_provider(con.execute(f"""
        SELECT s.referring_provider_id, split_part(m.reasons, ';', 1) AS reason, count(*)
        FROM per_scan s JOIN mri_classification m ON m.scan_id = s.scan_id AND m.rule_set = {literal(names[0])}
        WHERE s.cat_0 = {literal(pu_cat)} AND s.referring_provider_id IS NOT NULL GROUP BY ALL ORDER BY 1, 3 DESC, 2
        """).fetchall(), wanted)
    cur = con.execute(f"SELECT * FROM ({cases_sql(names, with_ctes=False)}) WHERE referring_provider_id IS NOT NULL")
    columns = [d[0] for d in cur.description]
    cases: dict[str, list] = {}
    for row in cur.fetchall():
        case = dict(zip(columns, row))
        if case["referring_provider_id"] in wanted:
            cases.setdefault(case["referring_provider_id"], []).append(case)

    by_specialty: dict[str, list] = {}
    for it in published:
        by_specialty.setdefault(it["specialty"], []).append(it)
    reports = []
    for it in eligible:
        u = it["unit"]
        n, pu = p.get(it["scans"]), p.get(it["cats"][pu_cat])
        peer_items = [o for o in by_specialty.get(it["specialty"], []) if o["unit"] != u
                      and p.get(o["cats"][pu_cat]) is not None]
        peers = None
        if peer_items:
            pn = sum(p.get(o["scans"]) for o in peer_items)
            ppu = sum(p.get(o["cats"][pu_cat]) for o in peer_items)
            peers = {"providers": len(peer_items), "scans": pn, "pu": ppu, "rate": ppu / pn if pn else None,
                     "points": [(p.get(o["scans"]), o["rate"]) for o in peer_items]}
        centre = peers["rate"] if peers and peers["rate"] is not None else overall
        position = (funnel_position(it["rate"], centre, n) if centre is not None and 0 < centre < 1 else None)
        fu_key = ("provider", u, "pu_fu")
        followed = [(BY_KEY["injection"].label, _of(p, ("provider", u, "pu_inj"), fu_key))]
        followed += [(BY_KEY[iv].label, _of(p, ("provider", u, f"pu_{iv}"), fu_key)) for iv in FOLLOWED]
        main = reasons.get(u, [])
        shown = suppress_row([c for _, c in main])
        reports.append(ProviderReport(
            provider=u, specialty=it["specialty"], scans=n, pu=pu, rate=it["rate"],
            expected_rate=it["expected_rate"], adjusted_rate=it["adjusted_rate"], pu_cost=it["pu_cost"],
            peers=peers, overall_rate=overall, position=position,
            quarters=[(q, qpu / qn if not (is_small(qn) or is_small(qpu) or is_small(qn - qpu)) else None)
                      for q, qn, qpu in quarters.get(u, [])],
            reasons=[(r, "<11" if v is None else f"{v:,}") for (r, _), v in zip(main, shown)],
            followed=followed, cases=_most_recent(cases.get(u, []), max_cases),
            cases_total=len(cases.get(u, [])),
            funnel_svg=_funnel_svg(n, it["rate"], centre, peers["points"] if peers else []),
        ))
    return reports


def _most_recent(cases: list, limit: int) -> list:
    """The newest `limit` cases (all when 0), listed oldest first."""
    if limit and len(cases) > limit:
        cases = sorted(cases, key=lambda c: (c["scan_date"], c["scan_id"]))[-limit:]
    return cases


def _by_provider(rows, wanted: set) -> dict[str, list]:
    out: dict[str, list] = {}
    for provider, *rest in rows:
        if provider in wanted:
            out.setdefault(provider, []).append(tuple(rest))
    return out


def _of(p, num_key, den_key) -> str:
    """`k of n (x%)` as the protection allows: a withheld or small count is shown as such, with no rate."""
    k, n = p.get(num_key), p.get(den_key)
    if n is None:
        return "not shown (small numbers)"
    if k is None:
        return f"{p.text(num_key)} of {n:,}"
    return f"{k:,} of {n:,} ({k / n:.0%})" if n else "0 of 0"


def _funnel_svg(n: int, rate: float, centre: float | None, peers: list, width: int = 460, height: int = 230) -> str:
    """A small funnel plot as inline SVG (WeasyPrint draws it; no chart library or browser needed): the peers'
    points, this provider's point, and the 95% and 99.8% limits around the peers' rate."""
    if centre is None:
        return ""
    left, right, top, bottom = 46, 12, 10, 34
    top_n = max([n] + [x for x, _ in peers]) * 1.1
    top_rate = min(1.0, max([rate, centre] + [r for _, r in peers if r is not None]) * 1.3 + 0.05)

    def xy(x, y):
        return (left + (width - left - right) * x / top_n, top + (height - top - bottom) * (1 - y / top_rate))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, sans-serif" font-size="9">']
    step = 0.1 if top_rate <= 0.6 else 0.2
    for i in range(int(top_rate / step + 1e-9) + 1):
        y = i * step
        _, py = xy(0, y)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{py:.1f}" y2="{py:.1f}" stroke="#e4e7eb"/>'
                     f'<text x="{left - 4}" y="{py + 3:.1f}" text-anchor="end" fill="#52606d">{y:.0%}</text>')
    ns = [max(5.0, top_n * i / 60) for i in range(1, 61)]
    for z, dash in ((Z_998, "5,3"), (Z_95, "2,2")):
        for side in (0, 1):
            pts = " ".join("%.1f,%.1f" % xy(x, min(top_rate, max(0.0, funnel_limits(centre, x, z)[side]))) for x in ns)
            parts.append(f'<polyline points="{pts}" fill="none" stroke="#7b8794" stroke-dasharray="{dash}"/>')
    x0, yc = xy(0, centre)
    x1, _ = xy(top_n, centre)
    parts.append(f'<line x1="{x0:.1f}" x2="{x1:.1f}" y1="{yc:.1f}" y2="{yc:.1f}" stroke="#1f2933"/>')
    for x, r in peers:
        if r is not None:
            px, py = xy(x, r)
            parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3.5" fill="#56B4E9" stroke="#fff"/>')
    px, py = xy(n, rate)
    parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="6" fill="#D55E00" stroke="#1f2933"/>')
    parts.append(f'<text x="{(left + width - right) / 2:.0f}" y="{height - 6}" text-anchor="middle" '
                 'fill="#52606d">spine MRIs ordered</text>')
    step = _nice_step(top_n / 4)
    for i in range(int(top_n // step) + 1):
        px, _ = xy(i * step, 0)
        parts.append(f'<text x="{px:.1f}" y="{height - bottom + 12}" text-anchor="middle" '
                     f'fill="#52606d">{i * step:,.0f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _nice_step(raw: float) -> float:
    """1, 2 or 5 times a power of ten, at least `raw`: round axis ticks."""
    import math

    power = 10 ** math.floor(math.log10(max(raw, 1)))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _file_name(provider: str) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in provider)
    return f"feedback_{safe}.pdf"


def write_feedback(con, p, figures: dict, unit_items: list[dict], out_dir: Path, generated_at: datetime,
                   previous: Path | None = None) -> dict:
    """Render the reports into `out_dir` (`reports/feedback/`) and the index page; returns a summary."""
    from assets.publish.report_definitions import PROVIDER_WINDOW
    from assets.publish.report_pages import period_text, rule_set_label

    from assets.settings import load_settings

    settings = load_settings()
    min_scans = settings.feedback_min_scans
    out_dir.mkdir(parents=True, exist_ok=True)
    old = _previous_manifest(previous)
    today = generated_at.date()
    if _still_standing(old, today, settings.feedback_refresh_days) and previous is not None:
        return _carry_over(previous, out_dir, old)
    reports = gather_reports(con, p, figures, unit_items, min_scans, settings.feedback_cases)
    env = _environment()
    template = env.get_template("feedback.html.j2")
    names = figures["names"]
    from assets.publish.costs import load_unit_costs

    costs = load_unit_costs()
    context = {
        "rule_set": rule_set_label(figures, names[0]), "period": period_text(figures), "window": PROVIDER_WINDOW,
        "small_max": SMALL_CELL_MAX, "min_scans": min_scans, "currency": costs.currency,
        "cost_basis": f"unit costs from {Path(costs.path).name}, version {costs.version}",
    }
    previous_reports = old.get("reports", {})
    manifest, jobs, reused = {}, [], 0
    stamp = generated_at.strftime("%Y-%m-%d %H:%M UTC")
    for report in reports:
        html = template.render(r=report, published=STAMP, **context)
        digest = hashlib.sha256(html.encode()).hexdigest()
        name = _file_name(report.provider)
        if previous_reports.get(name) == digest and previous is not None and (previous / name).is_file():
            shutil.copy2(previous / name, out_dir / name)
            reused += 1
        else:
            jobs.append((html.replace(STAMP, stamp), str(out_dir / name)))
        manifest[name] = digest
    _render_all(jobs)
    without = len([it for it in unit_items if it["rate"] is not None]) - len(reports)
    index = env.get_template("feedback_index.html.j2").render(
        reports=[(r, _file_name(r.provider)) for r in reports], without=max(without, 0), published=stamp,
        **context)
    (out_dir / "index.html").write_text(index, encoding="utf-8")
    (out_dir / MANIFEST).write_text(json.dumps({"rendered_on": today.isoformat(), "reports": manifest},
                                               indent=1, sort_keys=True), encoding="utf-8")
    files = [f"{out_dir.name}/{name}" for name in (*manifest, "index.html", MANIFEST)]
    return {"feedback_reports": len(reports), "feedback_rendered": len(jobs), "feedback_reused": reused,
            "files": files}


def _previous_manifest(previous: Path | None) -> dict:
    try:
        data = json.loads((previous / MANIFEST).read_text(encoding="utf-8")) if previous else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and isinstance(data.get("reports"), dict) else {}


def _still_standing(manifest: dict, today, refresh_days: int) -> bool:
    """Whether the published set of reports is younger than the refresh interval."""
    import datetime as dt

    try:
        rendered = dt.date.fromisoformat(manifest["rendered_on"])
    except (KeyError, TypeError, ValueError):
        return False
    return refresh_days > 0 and 0 <= (today - rendered).days < refresh_days


def _carry_over(previous: Path, out_dir: Path, manifest: dict) -> dict:
    """The published set of reports, copied whole into this run's outputs (it still stands)."""
    names = [n for n in manifest["reports"] if (previous / n).is_file()]
    for name in (*names, "index.html", MANIFEST):
        if (previous / name).is_file():
            shutil.copy2(previous / name, out_dir / name)
    files = [f"{out_dir.name}/{n}" for n in (*names, "index.html", MANIFEST) if (out_dir / n).is_file()]
    return {"feedback_reports": len(names), "feedback_rendered": 0, "feedback_reused": len(names),
            "feedback_rendered_on": manifest["rendered_on"], "files": files}


class FeedbackEngineMissing(RuntimeError):
    pass


def _render_all(jobs: list[tuple[str, str]]) -> None:
    """Lay out and write the PDFs; WeasyPrint's layout is single-threaded Python, so many reports are spread over
    worker processes (spawned: the parent holds a DuckDB connection, which a forked child must not inherit)."""
    import os

    workers = min(len(jobs) // 8, os.cpu_count() or 1, 4)
    if workers < 2:
        for html, target in jobs:
            _pdf(html, Path(target))
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for _ in pool.map(_pdf_job, jobs, chunksize=4):
            pass


def _pdf_job(job: tuple[str, str]) -> None:
    _pdf(job[0], Path(job[1]))


def _pdf(html: str, target: Path) -> None:
    try:
        import weasyprint
    except OSError as exc:  # WeasyPrint loads Pango through cffi at import
        raise FeedbackEngineMissing(
            "the feedback reports need Pango for WeasyPrint (Debian: apt-get install libpango-1.0-0 "
            f"libpangoft2-1.0-0): {exc}") from None
    tmp = target.with_name(f".{target.name}.tmp")
    weasyprint.HTML(string=html, base_url=str(TEMPLATES)).write_pdf(tmp)
    tmp.replace(target)
