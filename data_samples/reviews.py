"""A simulated chart-review set with known disagreements, for trying the review loop on generated data.

    python -m data_samples.reviews --output output --truth data_samples/truth --reviews 200 \
        --to my_landing/chart_reviews_2025-12-31.csv

Draws `--reviews` in-scope verdicts of the standard rule set from `OUTPUT/exports/mri_classification.csv`
(seeded). Reviewer RV01 gives the generator's expected category (the truth) except for a share of deliberate
disagreements (`--disagree`, default 15%): a potentially unnecessary verdict called indicated for neurological
symptoms, an indicated one called potentially unnecessary (early imaging), an insufficient-information one called
indicated. Reviewer RV02 reviews a fifth of the same scans a week later and always gives the truth. Writes the
reviews in the data contract's `chart_reviews` layout, and `review_truth.csv` (which reviews are deliberate
disagreements, `--truth-to`), so the agreement the validation page reports can be checked.
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

COLUMNS = ["scan_id", "rule_set", "reviewer_id", "review_date", "reviewed_category", "reviewed_reasons", "note"]
OVERRIDE = {
    "potentially_unnecessary": ("indicated", "neurological_symptoms", "radicular pain on exam, not coded"),
    "indicated": ("potentially_unnecessary", "early_imaging_no_red_flags", "red flag not supported by the chart"),
    "insufficient_information": ("indicated", "persistent_despite_conservative_care", "onset found in the notes"),
}


def simulate(output: Path, truth: Path, n: int = 200, disagree: float = 0.15, seed: int = 7,
             review_date: str = "2025-12-31") -> tuple[list[dict], list[dict]]:
    """(reviews, truth rows) for `n` verdicts; see the module docstring."""
    from assets.classify.rule_sets import reasons_by_category

    valid = reasons_by_category()
    expected = {r["scan_id"]: r for r in csv.DictReader((truth / "scan_truth.csv").open())}
    verdicts = [r for r in csv.DictReader((output / "exports" / "mri_classification.csv").open())
                if r["rule_set"] == "standard" and r["category"] != "out_of_scope" and r["scan_id"] in expected]
    rng = random.Random(seed)
    chosen = rng.sample(sorted(verdicts, key=lambda r: r["scan_id"]), min(n, len(verdicts)))
    injected = set(rng.sample(range(len(chosen)), round(disagree * len(chosen))))
    reviews, truth_rows = [], []
    for k, v in enumerate(chosen):
        t = expected[v["scan_id"]]
        category = t["expected_category"]
        reason = t["expected_reason"] if t["expected_reason"] in valid.get(category, ()) else ""
        note = ""
        if k in injected and v["category"] in OVERRIDE:
            category, reason, note = OVERRIDE[v["category"]]
        reviews.append({"scan_id": v["scan_id"], "rule_set": "standard", "reviewer_id": "RV01",
                        "review_date": review_date, "reviewed_category": category, "reviewed_reasons": reason,
                        "note": note})
        truth_rows.append({"scan_id": v["scan_id"], "reviewer_id": "RV01", "automated_category": v["category"],
                           "truth_category": t["expected_category"], "reviewed_category": category,
                           "deliberate_disagreement": k in injected and v["category"] in OVERRIDE})
    for v in chosen[: len(chosen) // 5]:
        t = expected[v["scan_id"]]
        reviews.append({"scan_id": v["scan_id"], "rule_set": "standard", "reviewer_id": "RV02",
                        "review_date": review_date, "reviewed_category": t["expected_category"],
                        "reviewed_reasons": "", "note": "second review"})
        truth_rows.append({"scan_id": v["scan_id"], "reviewer_id": "RV02", "automated_category": v["category"],
                           "truth_category": t["expected_category"], "reviewed_category": t["expected_category"],
                           "deliberate_disagreement": False})
    return reviews, truth_rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m data_samples.reviews", description=__doc__.split("\n")[0])
    ap.add_argument("--output", type=Path, required=True, help="a run's output folder")
    ap.add_argument("--truth", type=Path, required=True, help="the generator's truth folder")
    ap.add_argument("--to", type=Path, required=True, help="the chart_reviews CSV to write")
    ap.add_argument("--truth-to", type=Path, default=Path("review_truth.csv"),
                    help="where to write which reviews disagree on purpose (not in the landing folder)")
    ap.add_argument("--reviews", type=int, default=200)
    ap.add_argument("--disagree", type=float, default=0.15)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    reviews, truth_rows = simulate(args.output, args.truth, args.reviews, args.disagree, args.seed)
    args.to.parent.mkdir(parents=True, exist_ok=True)
    with args.to.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(reviews)
    with args.truth_to.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(truth_rows[0]))
        writer.writeheader()
        writer.writerows(truth_rows)
    print(f"{len(reviews)} reviews ({sum(r['deliberate_disagreement'] for r in truth_rows)} deliberate "
          f"disagreements) -> {args.to}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
