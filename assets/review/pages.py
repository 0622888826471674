"""The chart-review outputs: `reports/review_worklist.csv`, `reports/review.html`, `reports/validation.html` and
`exports/review_agreement.csv` (docs/data-contract.md §4), and the reviewed rates the reports state.

The pages are self-contained and work offline. The review page embeds the worklist's cases as JSON (escaped by
Jinja2's `tojson`, shown with `textContent`, never as HTML) and writes the reviews as a `chart_reviews` CSV in
the browser; nothing leaves the machine.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

from assets.ingest.contract import REVIEW_CATEGORIES

WORKLIST_METHOD = (
    "Unreviewed verdicts only. A stratified random sample: up to {per_stratum} scans per rule set, automated "
    "category and month of scan (out-of-scope scans are not spine MRIs and are not sampled), drawn in the order "
    "of the MD5 hash of the seed ({seed}) and the scan id, so the same seed and data give the same sample. Then "
    "every referring provider and facility the standard rule set's funnel plot puts outside its 99.8% limits "
    "(dashboards, trends page): up to {per_outlier} of its scans in the direction of its deviation (potentially "
    "unnecessary scans above the upper limit, the others below the lower one). Settings: "
    "IMAGING_AUDIT_REVIEW_PER_STRATUM, IMAGING_AUDIT_REVIEW_PER_OUTLIER, IMAGING_AUDIT_REVIEW_SEED."
)
VALIDATION_METHOD = (
    "Counted over the latest review of each scan by each reviewer, against the verdict the reviewer saw: the "
    "automated category when the review was first matched to its verdict (a later rule-set version does not "
    "rewrite it). Positive predictive value = confirmed / reviewed, with the 95% Wilson score interval. Cohen's "
    "kappa between the automated and reviewed categories, with its 95% interval from the asymptotic standard "
    "error; inter-reviewer kappa over scans two reviewers reviewed (the first two reviewer keys of each scan). "
    "Statistics from statsmodels (proportion_confint, cohens_kappa). The sample the reviewers drew from is "
    "stratified (see the review page), so PPV per category is representative of the category, and kappa weighs "
    "categories by how often they were reviewed, not by how often they occur. The final category of a verdict "
    "is its latest review's category (latest review date; on the same date, the later delivery), else the "
    "automated one. Counts are of reviewed verdicts, which carry no patient attribute; they are not suppressed."
)


def _rules(con) -> dict[tuple[str, str], str]:
    """(rule set, reason) -> 'description (citation)' of the rule that gives the reason."""
    from assets.classify.rule_sets import load_rule_sets

    out = {}
    for rule_set in load_rule_sets():
        for rule in rule_set.rules:
            out.setdefault((rule_set.name, rule["reason"]),
                           f"{' '.join(str(rule['description']).split())} ({' '.join(str(rule['citation']).split())})")
    return out


def review_cases(con, cases: list[dict]) -> list[dict]:
    """The worklist's cases with what the review page shows: evidence items, the referral's findings, the rule
    behind the first reason. Dates become ISO text (the page's JSON)."""
    from assets.resources import relation_kind

    rules = _rules(con)
    findings: dict[str, list[dict]] = {}
    referrals = sorted({c["referral_id"] for c in cases if c.get("referral_id")})
    if referrals and relation_kind(con, "referral_text_findings") == "TABLE":
        # The ids go in as one list parameter (an insert per id costs about a millisecond each).
        for referral_id, quote, status in con.execute(
            """SELECT f.referral_id, f.quote, f.status FROM referral_text_findings f
               JOIN (SELECT unnest(?::VARCHAR[]) AS referral_id) USING (referral_id) WHERE f.kind = 'finding'
               ORDER BY f.referral_id, f.span_start""",
            [referrals],
        ).fetchall():
            findings.setdefault(referral_id, []).append({"quote": quote, "status": status})
    out = []
    for c in cases:
        first = (c.get("reasons") or "").split(";")[0]
        out.append({
            "scan_id": c["scan_id"], "rule_set": c["rule_set"], "rule_set_version": c["rule_set_version"],
            "category": c["category"], "reasons": c.get("reasons") or "",
            "rule": rules.get((c["rule_set"], first), "no rule applies: the default category"),
            "scan_date": str(c["scan_date"]) if c.get("scan_date") else "", "body_region": c.get("body_region") or "",
            "referring_specialty": c.get("referring_specialty"), "facility_id": c.get("facility_id"),
            "selected_because": c["selected_because"],
            "evidence_items": [e for e in (c.get("evidence") or "").split(" | ") if e],
            "clinical_indication": c.get("clinical_indication") or "",
            "findings": findings.get(c.get("referral_id"), []),
        })
    return out


def render_review_page(cases: list[dict], generated_at: datetime) -> str:
    from assets.classify.rule_sets import reasons_by_category
    from assets.html import render
    from assets.settings import load_settings

    settings = load_settings()
    # Reviews recorded in the browser are kept per worklist, so a new worklist starts empty.
    worklist_id = hashlib.sha256(("|".join(f"{c['scan_id']}:{c['rule_set']}" for c in cases)
                                  + generated_at.isoformat()).encode()).hexdigest()[:16]
    return render(
        "review.html.j2", title="Chart review",
        subtitle=f"{len(cases):,} case(s) from the worklist of {generated_at:%Y-%m-%d %H:%M} UTC; one case at a "
                 "time: the evidence, the referral text and the rule that decided.",
        cases=cases, categories=REVIEW_CATEGORIES, reasons=reasons_by_category(), worklist_id=worklist_id,
        method=WORKLIST_METHOD.format(per_stratum=settings.review_per_stratum, seed=settings.review_seed,
                                      per_outlier=settings.review_per_outlier),
    )


def render_validation_page(con, results: list[dict], generated_at: datetime) -> str:
    from assets.html import render

    versions = dict(con.execute("SELECT DISTINCT rule_set, rule_set_version FROM mri_classification").fetchall())
    for r in results:
        r["version"] = versions.get(r["rule_set"], "")
    from assets.resources import relation_kind

    unmatched = (con.execute("SELECT count(*) FROM chart_review_results WHERE NOT matched").fetchone()[0]
                 if relation_kind(con, "chart_review_results") == "TABLE" else 0)
    reviewed = sum(r["all"]["reviewed"] for r in results)
    return render(
        "validation.html.j2", title="How far the automation can be trusted",
        subtitle=f"Chart reviews against the automated verdicts, per rule set; generated {generated_at:%Y-%m-%d %H:%M} "
                 "UTC.",
        results=results, categories=REVIEW_CATEGORIES, reviewed_any=reviewed > 0, unmatched_total=unmatched,
        method=VALIDATION_METHOD,
    )


def reviewed_rates(con) -> list[dict]:
    """Per rule set: the automated and the final (review-corrected) share of potentially unnecessary spine MRIs
    with their denominators, and the same among reviewed verdicts. Small counts (1-10) are suppressed."""
    from assets.publish.statistics import is_small

    rows = con.execute(
        """SELECT rule_set, count(*) AS scans,
                  count(*) FILTER (WHERE category = 'potentially_unnecessary') AS automated,
                  count(*) FILTER (WHERE final_category = 'potentially_unnecessary') AS final,
                  count(*) FILTER (WHERE review_status <> 'unreviewed') AS reviewed,
                  count(*) FILTER (WHERE review_status <> 'unreviewed' AND category = 'potentially_unnecessary')
                      AS reviewed_automated,
                  count(*) FILTER (WHERE review_status <> 'unreviewed'
                                   AND final_category = 'potentially_unnecessary') AS reviewed_final,
                  count(*) FILTER (WHERE review_status = 'overridden') AS overridden
           FROM mri_classification WHERE category <> 'out_of_scope'
           GROUP BY rule_set ORDER BY rule_set <> 'standard', rule_set"""
    ).fetchall()
    out = []
    for rule_set, scans, automated, final, reviewed, r_auto, r_final, overridden in rows:
        shown = {k: (None if is_small(v) else v) for k, v in
                 dict(scans=scans, automated=automated, final=final, reviewed=reviewed, reviewed_automated=r_auto,
                      reviewed_final=r_final, overridden=overridden).items()}
        out.append({"rule_set": rule_set, **shown})
    return out


def write_review_reports(con, out_dir: Path, generated_at: datetime) -> dict[str, int]:
    """The worklist CSV and the two pages, into the reports folder being built; returns rows per file."""
    from assets.publish.files import write_text_atomic
    from assets.review.agreement import agreement
    from assets.review.worklist import build_worklist, worklist_csv

    cases = build_worklist(con)
    write_text_atomic(out_dir / "review_worklist.csv", worklist_csv(cases))
    write_text_atomic(out_dir / "review.html", render_review_page(review_cases(con, cases), generated_at))
    results = agreement(con)
    write_text_atomic(out_dir / "validation.html", render_validation_page(con, results, generated_at))
    return {"review_worklist.csv": len(cases), "review.html": len(cases),
            "validation.html": sum(r["all"]["reviewed"] for r in results)}


def reviewed_rates_section(rates: list[dict], link: str) -> str:
    """The automated and the review-corrected share of potentially unnecessary spine MRIs, with denominators,
    for the reports' and dashboards' front pages (escaped HTML; `link` is the validation page's path)."""
    import html

    from assets.publish.statistics import SUPPRESSED

    def n(v):
        return html.escape(SUPPRESSED) if v is None else f"{v:,}"

    def share(x, d):
        return "–" if x is None or not d else f"{100 * x / d:.1f}%"

    rows = []
    for r in rates:
        rows.append(
            f"<tr><td>{html.escape(r['rule_set'])}</td><td class='num'>{n(r['scans'])}</td>"
            f"<td class='num'>{share(r['automated'], r['scans'])} ({n(r['automated'])})</td>"
            f"<td class='num'>{share(r['final'], r['scans'])} ({n(r['final'])})</td>"
            f"<td class='num'>{n(r['reviewed'])}</td>"
            f"<td class='num'>{share(r['reviewed_automated'], r['reviewed'])} ({n(r['reviewed_automated'])})</td>"
            f"<td class='num'>{share(r['reviewed_final'], r['reviewed'])} ({n(r['reviewed_final'])})</td>"
            f"<td class='num'>{n(r['overridden'])}</td></tr>")
    return (
        "<section><h2>Automated and chart-reviewed rates</h2><table><thead><tr><th>rule set</th>"
        "<th class='num'>spine MRIs in scope</th><th class='num'>automated: potentially unnecessary</th>"
        "<th class='num'>after review (final category)</th><th class='num'>reviewed verdicts</th>"
        "<th class='num'>reviewed: automated potentially unnecessary</th>"
        "<th class='num'>reviewed: reviewer potentially unnecessary</th><th class='num'>overridden</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
        "<p class='note'>The automated rate counts the rule set's verdicts; the final rate replaces each reviewed "
        "verdict by its latest chart review's category (denominator: all in-scope spine MRIs). The reviewed columns "
        "count only reviewed verdicts (denominator: reviewed verdicts); the worklist samples each category and "
        "month equally, so the reviewed share is not the overall share. Counts of 1-10 are shown as &lt;11. "
        f"Agreement: <a href='{html.escape(link)}'>how far the automation can be trusted</a>.</p></section>")
