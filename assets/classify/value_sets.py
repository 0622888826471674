"""Value sets: the code lists behind every clinical concept, as CSV files in `guidelines/value_sets/`.

Each row is `concept, code_system, code, match, region, description, source`. `match` is `exact`, `prefix`
(every code under that prefix, as `S32.0-` in the guideline tables) or `regex` (a full-match pattern, for code
families defined by position, like ICD-10-PCS transplants). Codes are compared without dots, in upper case.

`region` ties a code to a part of the spine: a cervical sprain (S13.4) or a cervical radiculopathy (M54.12) says
nothing about a lumbar MRI. A code with a region counts only for scans of that region; a code without one (no
site in the code, or a systemic condition such as osteoporosis) counts for every scan. A code that spans two
regions (thoracolumbar M54.15) has one row per region.
"""

from __future__ import annotations

import csv
from pathlib import Path

from assets.classify.rule_sets import GUIDELINES_DIR

MATCHES = ("exact", "prefix", "regex")
REGIONS = ("cervical", "thoracic", "lumbar")


def read_value_sets(directory: Path | None = None) -> list[dict]:
    directory = directory or GUIDELINES_DIR / "value_sets"
    rows = []
    for path in sorted(directory.glob("*.csv")):
        with open(path, newline="", encoding="utf-8") as fh:
            for line, row in enumerate(csv.DictReader(fh), start=2):
                if row["match"] not in MATCHES:
                    raise ValueError(f"{path}:{line}: match must be one of {', '.join(MATCHES)}")
                region = (row.get("region") or "").strip()
                if region and region not in REGIONS:
                    raise ValueError(f"{path}:{line}: region must be empty or one of {', '.join(REGIONS)}")
                code = row["code"].strip()
                rows.append({
                    "concept": row["concept"].strip(),
                    "code_system": row["code_system"].strip().upper(),
                    "code": code if row["match"] == "regex" else code.replace(".", "").upper(),
                    "match": row["match"],
                    "region": region or None,
                    "description": row["description"].strip(),
                    "source": row["source"].strip(),
                    "file": path.name,
                })
    return rows


def load_value_sets(con, directory: Path | None = None) -> int:
    """(Re)create the warehouse table `value_set_codes` from the CSV files; returns its row count."""
    rows = read_value_sets(directory)
    con.execute(
        """CREATE OR REPLACE TABLE value_set_codes (
            concept VARCHAR, code_system VARCHAR, code VARCHAR, match VARCHAR, region VARCHAR,
            description VARCHAR, source VARCHAR, file VARCHAR)"""
    )
    con.executemany(
        "INSERT INTO value_set_codes VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [[r["concept"], r["code_system"], r["code"], r["match"], r["region"], r["description"], r["source"],
          r["file"]] for r in rows],
    )
    return len(rows)


def concept_match_sql(codes_table: str, with_region: bool = False) -> str:
    """SQL matching the distinct (code_system, code) pairs of `codes_table` to their concepts (and, with
    `with_region`, the spine region each match is limited to: NULL for any region).

    Exact and prefix matches join on equality against every prefix of the code (ICD-10 codes have at most
    seven characters), so the join stays a hash join; regex matches are few and joined directly.
    """
    region = ", v.region" if with_region else ""
    return f"""
        WITH codes AS (SELECT DISTINCT code_system, code FROM {codes_table}),
        prefixes AS (
            SELECT code_system, code, left(code, n) AS head, n = length(code) AS whole
            FROM codes, range(1, 9) AS r(n)
            WHERE n <= length(code)
        )
        SELECT DISTINCT p.code_system, p.code, v.concept{region}
        FROM prefixes p
        JOIN value_set_codes v
          ON v.code_system = p.code_system AND v.code = p.head
         AND (v.match = 'prefix' OR (v.match = 'exact' AND p.whole))
        UNION
        SELECT DISTINCT c.code_system, c.code, v.concept{region}
        FROM codes c JOIN value_set_codes v
          ON v.code_system = c.code_system AND v.match = 'regex' AND regexp_full_match(c.code, v.code)
    """
