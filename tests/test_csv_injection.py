"""Every CSV a person may open in a spreadsheet neutralises formula-like text (OWASP CSV injection): an id or text
starting with =, +, -, @, tab or carriage return gets a leading `'`; numbers stay numbers."""

from __future__ import annotations

import csv
import re
import time
from pathlib import Path

import duckdb
import pytest

from assets.publish.files import FORMULA_START, copy_query_to_csv, csv_text, neutralise
from tests.hostile import FORMULAS, hostile_input


@pytest.fixture(scope="module")
def hostile_out(tmp_path_factory):
    """The hostile input through the whole pipeline (both rule sets)."""
    from pipelines.cli import run_audit

    base = tmp_path_factory.mktemp("hostile-csv")
    out = base / "out"
    run_audit(hostile_input(base / "input"), out, quiet=True)
    return out


def _csv_files(out: Path) -> list[Path]:
    """Every CSV a reader finds under the output: the published parts and the archive."""
    parts = [out / part for part in ("exports", "quality", "reports", "archive")]
    return sorted(p for part in parts for p in part.rglob("*.csv"))


NUMBER = re.compile(r"-?\d+(\.\d+)?")


def test_every_csv_neutralises_formula_like_text(hostile_out):
    files = _csv_files(hostile_out)
    names = {p.name for p in files}
    assert {"mri_classification.csv", "quarantine.csv", "reconciliation.csv", "privacy_findings.csv",
            "chart_review_cases.csv", "providers.csv", "facilities.csv",
            "downstream_interventions.csv"} <= names
    reached: dict[str, set] = {}
    for path in files:
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.reader(fh):
                for cell in row:
                    if cell.startswith(FORMULA_START):
                        # Only a number may start so (a negative count or day difference in a numeric column).
                        assert NUMBER.fullmatch(cell), f"{path.name}: {cell!r}"
                    for formula in FORMULAS:
                        if cell.startswith("'" + formula):
                            reached.setdefault(path.name, set()).add(formula)
    # The hostile values reached the scan-level export and the per-provider and per-facility reports, neutralised.
    for name in ("mri_classification.csv", "chart_review_cases.csv", "providers.csv", "facilities.csv"):
        assert reached.get(name), name
    assert {'=HYPERLINK("http://x","y")', "+1", "-2+3", "@SUM(A1)"} <= set().union(*reached.values())


def test_the_warehouse_keeps_the_values_as_they_came(hostile_out):
    """Neutralising is for spreadsheets only: the warehouse and its joins hold the original ids."""
    with duckdb.connect(str(hostile_out / "warehouse.duckdb"), read_only=True) as con:
        ids = [r[0] for r in con.execute("SELECT scan_id FROM mri_classification").fetchall()]
        linked = con.execute("SELECT count(*) FROM scan_links WHERE referral_id IS NOT NULL").fetchone()[0]
    assert any(i.startswith("=HYPERLINK") for i in ids) and not any(i.startswith("'=") for i in ids)
    assert linked > 0


def test_numbers_stay_numbers_and_text_is_neutralised(tmp_path, con):
    con.execute("""CREATE TABLE t AS SELECT * FROM (VALUES
        (-3, -2.5, '-3', '=1+1', 'plain', DATE '2025-01-01', true),
        (4, 0.5, '+1', '@SUM(A1)', 'a,"b"', NULL, false),
        (5, 1.0, chr(9) || 'x', chr(13) || 'y', '=HYPERLINK("http://x","y")', NULL, NULL)
    ) v(n, f, s1, s2, s3, d, b)""")
    path = tmp_path / "t.csv"
    assert copy_query_to_csv(con, "SELECT * FROM t ORDER BY n", path) == 3
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["n", "f", "s1", "s2", "s3", "d", "b"]
    assert rows[1] == ["-3", "-2.5", "'-3", "'=1+1", "plain", "2025-01-01", "true"]
    assert rows[2] == ["4", "0.5", "'+1", "'@SUM(A1)", 'a,"b"', "", "false"]
    assert rows[3][:5] == ["5", "1.0", "'\tx", "'\ry", """'=HYPERLINK("http://x","y")"""]
    # The Python writer for small tables follows the same rule.
    text = csv_text(["id", "n"], [["=1+1", -3], ["-2+3", 4], ["ok", "<11"]])
    assert text == "id,n\n'=1+1,-3\n'-2+3,4\nok,<11\n"
    assert neutralise(-3) == -3 and neutralise(None) is None


def test_neutralising_keeps_the_order_and_stays_set_based(tmp_path, con):
    con.execute("CREATE TABLE big AS SELECT i, '=' || i AS t FROM range(200000) r(i)")
    path = tmp_path / "big.csv"
    started = time.perf_counter()
    assert copy_query_to_csv(con, "SELECT * FROM big ORDER BY i DESC", path) == 200_000
    assert time.perf_counter() - started < 10
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))[1:]
    assert [int(r[0]) for r in rows[:3]] == [199_999, 199_998, 199_997] and rows[0][1] == "'=199999"
