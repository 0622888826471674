"""Input folders whose names SQL would trip over: a quote and spaces in the path reach DuckDB as literals made by
one helper (assets/sql.py), for every input layout."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from assets.sql import literal, path_literal
from pipelines.cli import main

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("value,expected", [
    ("O'Brien", "'O''Brien'"), (None, "NULL"), (True, "TRUE"), (3, "3"), ("a'; DROP TABLE x; --", "'a''; DROP TABLE x; --'"),
])
def test_literal_quotes_values(value, expected):
    assert literal(value) == expected


def test_a_path_literal_round_trips_through_duckdb(tmp_path):
    odd = tmp_path / "O'Brien audit" / "it's here.csv"
    assert duckdb.connect().execute(f"SELECT {path_literal(odd)}").fetchone()[0] == odd.as_posix()


@pytest.mark.parametrize("layout", ["native", "claims", "fhir"])
def test_an_input_folder_with_a_quote_in_its_name_runs(tmp_path, layout, capsys):
    source = {
        "native": Path(__file__).parents[1] / "data_samples",
        "claims": FIXTURES / "tuva-demo-synthetic-claims" / "2023-05-09_commit-88f8ce5",
        "fhir": FIXTURES / "smart-on-fhir-sample-bulk-fhir-10-patients",
    }[layout]
    folder = tmp_path / "O'Brien's extract"
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("truth", "*.py", "__pycache__", "README.md",
                                                                 "LICENSE"))
    code = main(["run", "--input", str(folder), "--output", str(tmp_path / "out"), "--rule-set", "standard"])
    err = capsys.readouterr().err
    assert code == 0, err
    con = duckdb.connect(str(tmp_path / "out" / "warehouse.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM mri_classification").fetchone()[0] > 0 or layout == "fhir"
    finally:
        con.close()
