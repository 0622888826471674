"""The pandas benchmark baseline (benchmarks/pandas_baseline.py) gives the pipeline's verdicts, scan by scan.

The baseline exists only to time the pipeline against; this keeps it honest: on generated fault-free input
(several part files per table and nightly drops, CSV) it must agree with `mri_classification` for rule set
`standard` on every scan, category and reasons. The baseline reads codes only, so the input is generated with every
decisive fact coded (no fact only in the referral text).
"""

from __future__ import annotations

import duckdb
import pytest

from benchmarks.pandas_baseline import classify_standard, main
from data_samples.generate import generate
from pipelines.cli import run_audit


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """Generated input whose decisive facts are all coded (the baseline reads codes, not the referral text)."""
    import data_samples.generate as generator

    root = tmp_path_factory.mktemp("pandas_baseline")
    inputs, out = root / "in", root / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(generator, "TEXT_ONLY_P", 0.0)
        generate(inputs, n_scans=3_000, seed=31, fmt="csv", chunk_size=1_000, drop_days=5, fault_rate=0.0)
    run_audit(inputs, out, rule_sets=["standard"], quiet=True)
    return inputs, out / "warehouse.duckdb"


@pytest.mark.slow
def test_pandas_baseline_agrees_with_the_pipeline_scan_by_scan(audited):
    inputs, warehouse = audited
    assert len([p for p in inputs.iterdir() if p.name.startswith("scans")]) > 1  # several files per table
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        pipeline = con.execute(
            "SELECT scan_id, category, reasons FROM mri_classification WHERE rule_set = 'standard'").df()
    finally:
        con.close()
    baseline = classify_standard(inputs)

    assert list(baseline.columns) == ["scan_id", "category", "reasons"]
    assert len(pipeline) == 3_000 and len(baseline) == 3_000
    assert baseline["scan_id"].is_unique
    both = pipeline.merge(baseline, on="scan_id", how="outer", suffixes=("_pipeline", "_pandas"))
    differ = both[(both["category_pipeline"] != both["category_pandas"])
                  | (both["reasons_pipeline"] != both["reasons_pandas"])]
    assert differ.empty, f"{len(differ)} scans disagree:\n{differ.head(10).to_string(index=False)}"
    # the input exercises more than one category and multi-reason verdicts
    assert baseline["category"].nunique() == 4
    assert baseline["reasons"].str.contains(";").any()


@pytest.mark.slow
def test_pandas_baseline_cli_reports_agreement(audited, capsys):
    inputs, warehouse = audited
    assert main(["--input", str(inputs), "--warehouse", str(warehouse)]) == 0
    printed = capsys.readouterr().out
    assert "scans/s" in printed
    assert "category 3,000 (100.00%), reasons 3,000 (100.00%)" in printed
