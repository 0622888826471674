"""Bad input never crashes: a corpus of malformed inputs with the expected outcome of each, and fuzzing.

Each folder under tests/corpus/malformed/ is one input with an `expect.yaml`: the exit code of
`imaging-audit run`, the one-line message for unusable input, or the rows loaded and quarantined per table.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import duckdb
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assets.ingest.contract import TABLES
from assets.ingest.readers import InputError, discover_native_files, ensure_tables, load_file
from pipelines.cli import main

CORPUS = Path(__file__).parent / "corpus" / "malformed"
CASES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())


def _run(capsys, input_dir: Path, output_dir: Path) -> tuple[int, str, str]:
    code = main(["run", "--input", str(input_dir), "--output", str(output_dir)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _check_outcome(expect: dict, code: int, err: str, output_dir: Path) -> None:
    assert code == expect["exit"], err
    assert "Traceback" not in err
    if expect["exit"] == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and expect["message"] in lines[0], err
        import re

        assert not re.match(r"imaging-audit: [\w.]*(Error|Exception)\b", lines[0]), lines[0]  # no class names
        assert not (output_dir / "warehouse.duckdb").exists()  # nothing half-written
        return
    con = duckdb.connect(str(output_dir / "warehouse.duckdb"), read_only=True)
    try:
        per_table = {t: (loaded, quarantined) for t, loaded, quarantined in con.execute(
            "SELECT table_name, sum(rows_loaded), sum(rows_quarantined) FROM ingest_files GROUP BY ALL").fetchall()}
        unreconciled = con.execute(
            "SELECT count(*) FROM ingest_files WHERE rows_in <> rows_loaded + rows_quarantined").fetchone()[0]
        reasons = {r for (r,) in con.execute("SELECT DISTINCT reason FROM quarantine").fetchall()}
        ignored = {f for (f,) in con.execute("SELECT source_file FROM ignored_files").fetchall()}
    finally:
        con.close()
    assert unreconciled == 0
    for table, n in expect.get("loaded", {}).items():
        assert per_table[table][0] == n, table
    for table, n in expect.get("quarantined", {}).items():
        assert per_table[table][1] == n, table
    for reason in expect.get("reasons", []):
        assert reason in reasons, (reason, reasons)
    for prefix in expect.get("reason_prefixes", []):
        assert any(r.startswith(prefix) for r in reasons), (prefix, reasons)
    assert set(expect.get("ignored", [])) <= ignored, ignored
    if expect.get("ignored"):  # and the reconciliation a person opens names them
        assert all(name in (output_dir / "quality" / "reconciliation.csv").read_text() for name in expect["ignored"])


@pytest.mark.parametrize("case", CASES)
def test_malformed_input_corpus(capsys, tmp_path, case):
    expect = yaml.safe_load((CORPUS / case / "expect.yaml").read_text())
    input_dir = tmp_path / "in"
    shutil.copytree(CORPUS / case, input_dir, ignore=shutil.ignore_patterns("expect.yaml"))
    output_dir = tmp_path / "out"
    code, _out, err = _run(capsys, input_dir, output_dir)
    _check_outcome(expect, code, err, output_dir)


def test_a_huge_field_quarantines_its_row_only(capsys, tmp_path):
    input_dir = tmp_path / "in"
    shutil.copytree(CORPUS / "header_only", input_dir, ignore=shutil.ignore_patterns("expect.yaml", "scans.csv"))
    with open(input_dir / "scans.csv", "w") as fh:
        fh.write("scan_id,patient_id,scan_date,procedure_code,facility_id\n")
        fh.write("S1,P1,2025-03-05,72148,F01\n")
        fh.write("S2,P1,2025-03-05,72148," + "x" * 30_000_000 + "\n")  # 30 MB in one field
        fh.write("S3,P1,2025-03-05,72148,F01\n")
    code, _out, err = _run(capsys, input_dir, tmp_path / "out")
    _check_outcome({"exit": 0, "loaded": {"scans": 2}, "quarantined": {"scans": 1}}, code, err, tmp_path / "out")


# --- fuzzing the reader -------------------------------------------------------------------------------------

FIELD = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "72148", "2025-03-05", "P1", "S1", '"', '""', "a,b", "x\ny", "M54.50;G83.4", "\r", "é", "\x00"]),
)


def _load_bytes(content: bytes) -> tuple[int, int, int]:
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "scans.csv").write_bytes(content)
        con = duckdb.connect()
        try:
            ensure_tables(con)
            (f,) = discover_native_files(Path(folder))
            result = load_file(con, f, "2025-01-01")
            quarantined = con.execute("SELECT count(*), count(*) FILTER (WHERE reason = '') FROM quarantine").fetchone()
            assert quarantined[1] == 0  # every quarantined row has a reason
            assert quarantined[0] == result.rows_quarantined
            return result.rows_in, result.rows_loaded, result.rows_quarantined
        finally:
            con.close()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.lists(FIELD, min_size=0, max_size=7), max_size=8))
def test_fuzzed_rows_are_loaded_or_quarantined_never_crash(rows):
    header = ",".join(TABLES["scans"].names)
    body = "\n".join(",".join(fields) for fields in rows)
    content = (header + "\n" + body).encode("utf-8", errors="surrogatepass")
    try:
        rows_in, loaded, quarantined = _load_bytes(content)
    except InputError as exc:  # the only acceptable failure, and it is one line
        assert "\n" not in str(exc)
        return
    assert rows_in == loaded + quarantined


@settings(max_examples=80, deadline=None)
@given(content=st.binary(max_size=400))
def test_fuzzed_bytes_after_a_valid_header_never_crash(content):
    header = (",".join(TABLES["scans"].names) + "\n").encode()
    try:
        rows_in, loaded, quarantined = _load_bytes(header + content)
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    assert rows_in == loaded + quarantined


@settings(max_examples=80, deadline=None)
@given(header=st.lists(st.sampled_from(TABLES["scans"].names + ["", "x", "Scan_ID", "ssn"]), max_size=10))
def test_fuzzed_headers_either_load_or_say_what_is_wrong(header):
    content = (",".join(header) + "\nS1,P1,2025-03-05,72148\n").encode()
    try:
        _load_bytes(content)
    except InputError as exc:
        assert "scans.csv" in str(exc) and "\n" not in str(exc)


# File names, line endings and quoting: a well-formed CSV of N records, however it is named, ended and quoted,
# loads N records (loaded or quarantined) and the count taken from its lines agrees.
NAME_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\"),
                    max_size=12)
QUOTED = st.text(alphabet=st.sampled_from(list("ab ,\"'=+-@;\t\n\ré\u2028")), max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(separator=st.sampled_from(["_", "-", ".", " "]), suffix=NAME_TEXT, trailing=st.sampled_from(["", " "]),
       ending=st.sampled_from(["\n", "\r\n", "\r"]),
       records=st.lists(st.tuples(QUOTED, QUOTED, QUOTED, QUOTED), min_size=1, max_size=6))
def test_fuzzed_names_line_endings_and_quoting_lose_no_record(separator, suffix, trailing, ending, records):
    import csv as csv_module
    import io

    name = f"scans{separator}{suffix}.csv{trailing}"
    if len(name.encode("utf-8")) > 200 or name.strip() != name.rstrip() or "\x00" in name:
        return
    buffer = io.StringIO()
    # Python's writer quotes a field for the line terminator's characters only: a field holding any line break
    # is quoted by asking for every field quoted (what a well-formed file would do).
    breaks = any(ch in field for record in records for field in record for ch in "\r\n")
    writer = csv_module.writer(buffer, lineterminator=ending,
                               quoting=csv_module.QUOTE_ALL if breaks else csv_module.QUOTE_MINIMAL)
    writer.writerow(TABLES["scans"].names)
    for i, (first, facility, finding, last) in enumerate(records):  # fuzzed first, middle and last fields
        writer.writerow([f"{first}S{i}", "P1", "2025-03-05", "72148", "", "M54.50", facility, finding, last])
    with tempfile.TemporaryDirectory() as folder:
        try:
            (Path(folder) / name).write_bytes(buffer.getvalue().encode("utf-8"))
        except OSError:  # a name this file system does not take
            return
        con = duckdb.connect()
        try:
            ensure_tables(con)
            try:
                files = discover_native_files(Path(folder))
            except InputError as exc:  # an impossible date in the name: one line
                assert "\n" not in str(exc)
                return
            assert len(files) == 1
            result = load_file(con, files[0], "2025-01-01")
            source = con.execute("SELECT DISTINCT source_file FROM ingest_files").fetchone()[0]
        finally:
            con.close()
    assert result.rows_in == len(records) == result.rows_loaded + result.rows_quarantined, (name, records)
    assert source and "\n" not in source
