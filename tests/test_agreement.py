"""End to end on generated data: the classifier recovers the generator's intended verdicts.

The generator writes, apart from the inputs, the scenario behind every scan and the category and primary reason
it intends under the `standard` rule set. Agreement must be at least 99% on 100,000 scans, also among the scans
whose decisive fact the generator wrote only in the referral's text.
"""

from __future__ import annotations

import duckdb
import pytest

from data_samples.generate import generate
from pipelines.cli import run_audit


@pytest.mark.slow
def test_standard_recovers_the_generated_scenarios_on_100k_scans(tmp_path):
    inputs, out = tmp_path / "in", tmp_path / "out"
    generate(inputs, n_scans=100_000, seed=2026, fmt="parquet", fault_rate=0.0)
    run_audit(inputs, out, quiet=True)
    con = duckdb.connect(str(out / "warehouse.duckdb"), read_only=True)
    try:
        con.execute(f"CREATE TEMP VIEW truth AS SELECT * FROM read_parquet('{inputs / 'truth' / 'scan_truth.parquet'}')")
        total, category_ok, reason_ok = con.execute(
            """SELECT count(*), count(*) FILTER (WHERE m.category = t.expected_category),
                      count(*) FILTER (WHERE m.category = t.expected_category
                                       AND split_part(m.reasons, ';', 1) = t.expected_reason)
               FROM truth t LEFT JOIN mri_classification m ON m.scan_id = t.scan_id AND m.rule_set = 'standard'"""
        ).fetchone()
        # scans whose decisive fact is written only in the referral's text: the text stage must find it
        text_total, text_ok = con.execute(
            """SELECT count(*), count(*) FILTER (WHERE m.category = t.expected_category
                                                 AND split_part(m.reasons, ';', 1) = t.expected_reason)
               FROM truth t JOIN mri_classification m ON m.scan_id = t.scan_id AND m.rule_set = 'standard'
               WHERE t.decisive_in_text"""
        ).fetchone()
        per_rule_set = dict(con.execute(
            "SELECT rule_set, count(*) FROM mri_classification GROUP BY ALL").fetchall())
        unnecessary = con.execute(
            """SELECT avg((category = 'potentially_unnecessary')::INT) FROM mri_classification
               WHERE rule_set = 'standard' AND category <> 'out_of_scope'"""
        ).fetchone()[0]
    finally:
        con.close()
    assert total == 100_000
    assert category_ok / total >= 0.99
    assert reason_ok / total >= 0.99
    assert text_total >= 500 and text_ok / text_total >= 0.99, (text_ok, text_total)
    # one row per scan per rule set, and the published-audit share of potentially unnecessary spine MRIs
    assert set(per_rule_set.values()) == {100_000}
    assert 0.28 <= unnecessary <= 0.40


@pytest.mark.slow
def test_injected_faults_are_quarantined_and_the_rest_still_agree(tmp_path):
    inputs, out = tmp_path / "in", tmp_path / "out"
    generate(inputs, n_scans=20_000, seed=99, fmt="csv", fault_rate=0.01)
    run_audit(inputs, out, quiet=True)
    con = duckdb.connect(str(out / "warehouse.duckdb"), read_only=True)
    try:
        rows_in, loaded, quarantined = con.execute(
            "SELECT sum(rows_in), sum(rows_loaded), sum(rows_quarantined) FROM ingest_files").fetchone()
        con.execute(f"CREATE TEMP VIEW truth AS SELECT * FROM read_csv('{inputs / 'truth' / 'scan_truth.csv'}', all_varchar=true)")
        clean_total, clean_ok = con.execute(
            """SELECT count(*), count(*) FILTER (WHERE m.category = t.expected_category)
               FROM truth t JOIN mri_classification m ON m.scan_id = t.scan_id AND m.rule_set = 'standard'
               WHERE coalesce(t.fault, '') = ''"""
        ).fetchone()
    finally:
        con.close()
    assert rows_in == loaded + quarantined and quarantined > 0
    assert clean_ok / clean_total >= 0.99
