"""A hostile input: generated data whose ids and text look like spreadsheet formulas or carry stray quotes."""

from __future__ import annotations

import csv
import re
from pathlib import Path

# The values a hostile or damaged extract carries: formulas (OWASP's examples), and quote-damaged ids. (Tab and
# carriage-return starts are covered by the CSV writer's own tests in test_csv_injection.py.)
FORMULAS = ['=HYPERLINK("http://x","y")', "+1", "-2+3", "@SUM(A1)", "=1+1"]
DAMAGED = ['"', "'"]


def _mangle(value: str, i: int) -> str:
    mark = (FORMULAS + DAMAGED)[i % (len(FORMULAS) + len(DAMAGED))]
    return mark + value if mark not in DAMAGED else value[:1] + mark + value[1:]  # "R1, R'1


def hostile_input(folder: Path, n_scans: int = 60, seed: int = 7) -> Path:
    """A generated input whose ids (referral, scan, provider, facility) and indication text are mangled."""
    from data_samples.generate import generate

    clean = folder.with_name(folder.name + "-clean")
    generate(clean, n_scans=n_scans, seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("referrals.csv", "scans.csv", "clinical_events.csv"):
        with open(clean / name, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        for i, row in enumerate(rows):
            for col in ("scan_id", "referring_provider_id", "facility_id", "clinical_indication"):
                if row.get(col):
                    row[col] = _mangle(row[col], i)
            if row.get("referral_id"):  # the same mangling in both tables, so links hold
                row["referral_id"] = _mangle(row["referral_id"], int(re.sub(r"\D", "", row["referral_id"]) or 0))
        with open(folder / name, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return folder
