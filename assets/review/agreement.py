"""How far the automation can be trusted: agreement between verdicts and chart reviews, per rule set.

Counted over the latest review of each scan by each reviewer (data contract §4, `exports/review_agreement.csv`),
against the verdict the review was made against (`chart_review_log`). For each automated category: reviewed,
confirmed and the positive predictive value (confirmed / reviewed) with its 95% Wilson score interval; over all
categories: Cohen's kappa between automation and reviewers with its 95% interval (asymptotic standard error,
Fleiss, Cohen and Everitt 1969), the confusion matrix, the inter-reviewer kappa over scans two reviewers
reviewed, and the automated reasons reviewers overturn most. The statistics come from statsmodels.
"""

from __future__ import annotations

import math

from assets.ingest.contract import REVIEW_CATEGORIES

AGREEMENT_COLUMNS = ["rule_set", "category", "reviewed", "confirmed", "ppv", "ppv_ci_low", "ppv_ci_high", "kappa",
                     "kappa_ci_low", "kappa_ci_high"]


def wilson(confirmed: int, reviewed: int) -> tuple[float | None, float | None, float | None]:
    """(proportion, 95% Wilson low, high); None when nothing was reviewed."""
    if not reviewed:
        return None, None, None
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(confirmed, reviewed, alpha=0.05, method="wilson")
    return confirmed / reviewed, float(low), float(high)


def kappa(table: list[list[int]]) -> tuple[float | None, float | None, float | None]:
    """Cohen's kappa of a square table of counts (rows: first rater, columns: second) with its 95% interval;
    None where it is undefined (no pairs, or both raters used one and the same category throughout)."""
    n = sum(map(sum, table))
    if not n:
        return None, None, None
    from statsmodels.stats.inter_rater import cohens_kappa

    import numpy as np

    res = cohens_kappa(np.asarray(table, dtype=float), return_results=True)
    values = (res.kappa, res.kappa_low, res.kappa_upp)
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
        return None, None, None
    return tuple(float(v) for v in values)


def _matrix(pairs: list[tuple[str, str]]) -> list[list[int]]:
    index = {c: i for i, c in enumerate(REVIEW_CATEGORIES)}
    table = [[0] * len(REVIEW_CATEGORIES) for _ in REVIEW_CATEGORIES]
    for a, b in pairs:
        table[index[a]][index[b]] += 1
    return table


def _reviewed_pairs(con, rule_set: str) -> list[tuple[str, str]]:
    return con.execute(
        """SELECT automated_category, reviewed_category FROM chart_review_results
           WHERE matched AND latest_for_reviewer AND rule_set = ?""", [rule_set]
    ).fetchall()


def _reviewer_pairs(con, rule_set: str) -> list[tuple[str, str]]:
    """For each scan two reviewers reviewed: the latest category of its first two reviewers (by reviewer key)."""
    return con.execute(
        """WITH per_reviewer AS (
               SELECT scan_id, reviewer_id, reviewed_category,
                      row_number() OVER (PARTITION BY scan_id ORDER BY reviewer_id) AS k
               FROM chart_review_results WHERE matched AND latest_for_reviewer AND rule_set = ?)
           SELECT a.reviewed_category, b.reviewed_category FROM per_reviewer a
           JOIN per_reviewer b ON a.scan_id = b.scan_id AND a.k = 1 AND b.k = 2""", [rule_set]
    ).fetchall()


def rule_set_agreement(con, rule_set: str) -> dict:
    """Everything the validation page shows for one rule set."""
    pairs = _reviewed_pairs(con, rule_set)
    rows = []
    for category in REVIEW_CATEGORIES:
        reviewed = sum(1 for a, _ in pairs if a == category)
        if not reviewed:
            continue
        confirmed = sum(1 for a, b in pairs if a == category and b == category)
        ppv, low, high = wilson(confirmed, reviewed)
        rows.append({"rule_set": rule_set, "category": category, "reviewed": reviewed, "confirmed": confirmed,
                     "ppv": ppv, "ppv_ci_low": low, "ppv_ci_high": high,
                     "kappa": None, "kappa_ci_low": None, "kappa_ci_high": None})
    table = _matrix(pairs)
    k, k_low, k_high = kappa(table)
    confirmed = sum(1 for a, b in pairs if a == b)
    overall = {"rule_set": rule_set, "category": "all", "reviewed": len(pairs), "confirmed": confirmed,
               "ppv": None, "ppv_ci_low": None, "ppv_ci_high": None,
               "kappa": k, "kappa_ci_low": k_low, "kappa_ci_high": k_high}
    reviewer_pairs = _reviewer_pairs(con, rule_set)
    rk = kappa(_matrix(reviewer_pairs))
    overturned = con.execute(
        """SELECT split_part(automated_reasons, ';', 1) AS reason, automated_category, reviewed_category,
                  count(*) AS n, string_agg(DISTINCT NULLIF(reviewed_reasons, ''), '; ') AS reviewer_reasons
           FROM chart_review_results
           WHERE matched AND latest_for_reviewer AND rule_set = ? AND NOT agrees
           GROUP BY ALL ORDER BY n DESC, reason LIMIT 10""", [rule_set]
    ).fetchall()
    versions = con.execute(
        """SELECT reviewed_version, current_version, count(*) FROM chart_review_results
           WHERE matched AND rule_set = ? GROUP BY ALL ORDER BY 1""", [rule_set]
    ).fetchall()
    unmatched = con.execute(
        "SELECT count(*) FROM chart_review_results WHERE NOT matched AND rule_set = ?", [rule_set]
    ).fetchone()[0]
    return {"rule_set": rule_set, "rows": rows, "all": overall, "matrix": table,
            "reviewer_pairs": len(reviewer_pairs), "reviewer_kappa": rk,
            "overturned": [dict(zip(("reason", "automated", "reviewed", "n", "reviewer_reasons"), r))
                           for r in overturned],
            "versions": [dict(zip(("reviewed_version", "current_version", "n"), v)) for v in versions],
            "unmatched": unmatched}


def agreement(con) -> list[dict]:
    """`rule_set_agreement` for every rule set with verdicts, `standard` first (none before the review stage
    has run)."""
    from assets.classify.rule_sets import load_rule_sets
    from assets.resources import relation_kind

    if relation_kind(con, "chart_review_results") != "TABLE":
        return []

    present = {r[0] for r in con.execute("SELECT DISTINCT rule_set FROM mri_classification").fetchall()}
    return [rule_set_agreement(con, r.name) for r in load_rule_sets() if r.name in present]


def agreement_csv(results: list[dict]) -> str:
    """`exports/review_agreement.csv`: the category rows and the `all` row of every rule set."""
    from assets.publish.files import csv_text

    def cell(v):
        return round(v, 4) if isinstance(v, float) else v

    return csv_text(AGREEMENT_COLUMNS, ([cell(row[c]) for c in AGREEMENT_COLUMNS]
                                         for result in results for row in [*result["rows"], result["all"]]))
