"""Reading native input files into typed DuckDB tables, with every row accounted for.

A file is read as text (every column VARCHAR), staged in a temporary table, then cast and checked in one SQL
statement. Rows that parse and carry every required field go to the warehouse table; every other row goes to
`quarantine` with the file, the row number, the reasons, the record's own key and the offending column and value
(identifier-masked), so a data steward can fix the source without opening the file. Nothing is parsed row by row
in Python.

Dates must be plausible as well as valid: a date after the day of the run (plus `FUTURE_TOLERANCE_DAYS`, for time
zones and late-evening extracts) or before the floor `IMAGING_AUDIT_DATE_FLOOR` (default 1900-01-01) sends its row
to the quarantine. File names are untrusted text too: what is stored and shown of them is identifier-masked.

Row numbers are the row as a spreadsheet shows it: the header is row 1, the first record row 2. (A record whose
quoted text spans several lines counts as one row.)
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import datetime as dt
import os

from assets.ingest import identifiers
from assets.ingest.contract import DEFAULT_REVIEW_RULE_SET, TABLES, Column, TableSpec
from assets.sql import literal

DATE_FLOOR_ENV = "IMAGING_AUDIT_DATE_FLOOR"
DEFAULT_DATE_FLOOR = "1900-01-01"
FUTURE_TOLERANCE_DAYS = 1


def date_bounds() -> tuple[dt.date, dt.date]:
    """(earliest, latest) plausible date of an input row: the configured floor, and today plus the tolerance."""
    raw = os.environ.get(DATE_FLOOR_ENV, DEFAULT_DATE_FLOOR)
    try:
        floor = dt.date.fromisoformat(raw)
    except ValueError:
        raise InputError(f"{DATE_FLOOR_ENV}={raw!r} is not an ISO date (YYYY-MM-DD)") from None
    return floor, dt.date.today() + dt.timedelta(days=FUTURE_TOLERANCE_DAYS)

# `scans.csv`, `scans_2026-03-14.csv`, `scans.part0001.parquet`, `scans-extra.csv.gz`, `scans 2026-03-14.csv` ...
_FILE_RE = re.compile(
    r"^(?P<table>referrals|scans|clinical_events|chart_reviews)(?P<suffix>[._\- ].*)?\.(?P<ext>csv|csv\.gz|parquet)$",
    re.IGNORECASE,
)
_DATE_RE = re.compile(r"(\d{4}-\d{2}-\d{2})")
# Names that look like a data file but match no table: reported, never silently skipped.
_DATA_EXTENSIONS = (".csv", ".tsv", ".txt", ".parquet", ".gz", ".zip", ".xlsx", ".xls", ".json", ".ndjson")


class InputError(Exception):
    """Input that cannot be processed at all. The message is one line naming the file and the problem."""


@dataclass(frozen=True)
class InputFile:
    path: Path
    table: str
    fmt: str  # csv | parquet
    drop_date: str | None  # ISO date named in the file name (a nightly drop), else None (a baseline file)

    @property
    def name(self) -> str:
        return self.path.name


def discover_native_files(input_dir: Path) -> list[InputFile]:
    """Files of the native layout at the top level of `input_dir`, sorted by table then name."""
    found = []
    for path in sorted(Path(input_dir).iterdir()):
        if not path.is_file():
            continue
        # Spaces around a name (a file saved as "scans.csv ") are not part of what it is.
        m = _FILE_RE.match(path.name.strip())
        if not m:
            continue
        date = _DATE_RE.search(m.group("suffix") or "")
        if date:
            try:
                dt.date.fromisoformat(date.group(1))
            except ValueError:
                raise InputError(
                    f"{path}: the date in the file name ({date.group(1)}) is not a calendar date"
                ) from None
        ext = m.group("ext").lower()
        found.append(
            InputFile(
                path=path,
                table=m.group("table").lower(),
                fmt="parquet" if ext == "parquet" else "csv",
                drop_date=date.group(1) if date else None,
            )
        )
    return found


def ignored_native_files(input_dir: Path) -> list[tuple[str, str]]:
    """(file name, reason) for files that look like data but that no table reads: named in the run's output."""
    ignored = []
    for path in sorted(Path(input_dir).iterdir()):
        name = path.name.strip()
        if not path.is_file() or name.startswith(".") or _FILE_RE.match(name):
            continue
        lower = name.lower()
        if not lower.endswith(_DATA_EXTENSIONS):
            continue
        if lower.startswith(("referrals", "scans", "clinical_events")):
            reason = "a table's name, but not a readable form (CSV, CSV.GZ or Parquet, named <table>[_date].<ext>)"
        else:
            reason = "not a file of the native layout (referrals, scans, clinical_events)"
        ignored.append((name, reason))
    return ignored


def file_sha256(path: Path) -> str:
    """The content hash of a file: the same delivery under another name, or on another night, has the same one."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sql_str(value: str) -> str:
    return literal(value)


def read_header(con, f: InputFile) -> list[str]:
    """Column names of a file, lower-cased and trimmed; InputError if the file cannot be read at all."""
    try:
        if f.fmt == "parquet":
            rel = con.sql(f"SELECT * FROM read_parquet({_sql_str(str(f.path))}) LIMIT 0")
        else:
            if f.path.stat().st_size == 0:
                raise InputError(f"{f.path}: the file is empty (expected a header row)")
            # Only the header line is decoded here; a bad byte further down quarantines just its row.
            with _open_bytes(f.path) as fh:
                first = fh.readline(1_000_000)
            text = first.decode("utf-8-sig")
            # the header ends at the first line break of any kind (CR, LF or CRLF)
            header = next(csv.reader([text.splitlines()[0] if text.strip() else ""]), None)
            if not header or not "".join(header).strip():
                raise InputError(f"{f.path}: the file is empty (expected a header row)")
            # A header cell left empty (a trailing comma from a spreadsheet) names an unnamed extra column.
            return [c.strip().lower() or f"unnamed_{i}" for i, c in enumerate(header, start=1)]
        columns = [c.strip().lower().lstrip("\ufeff") or f"unnamed_{i}" for i, c in enumerate(rel.columns, start=1)]
    except InputError:
        raise
    except UnicodeDecodeError:
        raise InputError(f"{f.path}: the header row is not UTF-8 text") from None
    except Exception as exc:  # duckdb raises several error classes for unreadable files
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{f.path}: cannot be read ({first_line})") from None
    return columns


def check_columns(f: InputFile, columns: list[str]) -> list[str]:
    """Raise InputError naming the file and the first missing required column; return the extra columns."""
    spec = TABLES[f.table]
    repeated = sorted({c for c in columns if columns.count(c) > 1 and c})
    if repeated:
        raise InputError(f"{f.path}: column {', '.join(repr(c) for c in repeated)} appears more than once in the header")
    missing = [c for c in spec.required if c not in columns]
    if missing:
        hint = ""
        if len(columns) == 1 and any(sep in columns[0] for sep in (";", "\t", "|")):
            hint = " (the header is not comma-separated)"
        raise InputError(
            f"{f.path}: missing required column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(m) for m in missing)} for table {f.table}{hint}"
        )
    return [c for c in columns if c not in spec.names]


# ---------------------------------------------------------------------------------------------------------
# Per-column SQL: the cast expression and the problem it reports when the raw text does not fit.

def _raw(col: str) -> str:
    # Empty strings and whitespace mean "absent".
    return f"NULLIF(TRIM(\"{col}\"), '')"


def _typed_expr(c: Column, bounds: tuple[dt.date, dt.date] | None = None) -> tuple[str, str, str | None]:
    """(warehouse SQL type, cast expression, expression giving a problem text or NULL); with `bounds`, dates
    outside them are problems too."""
    raw = _raw(c.name)
    missing = f"CASE WHEN {raw} IS NULL THEN '{c.name} is missing' END" if c.required else None
    if c.kind == "text":
        return "VARCHAR", raw, missing
    if c.kind == "code":
        # One code, compared like the value sets: upper case, no dots (M54.50 and m5450 are the same code).
        return "VARCHAR", f"upper(replace({raw}, '.', ''))", missing
    if c.kind in ("date", "datetime"):
        # ISO 8601 only: 2026-03-14, optionally followed by a time. Impossible dates (2026-02-30) fail the cast.
        expr = (
            f"CASE WHEN regexp_full_match({raw}, '\\d{{4}}-\\d{{2}}-\\d{{2}}([T ].*)?') "
            f"THEN TRY_CAST(left({raw}, 10) AS DATE) END"
        )
        bad = f"CASE WHEN {raw} IS NOT NULL AND ({expr}) IS NULL THEN '{c.name} is not an ISO 8601 date' END"
        if bounds:
            floor, latest = bounds
            bad = _first(bad, (
                f"CASE WHEN ({expr}) > {literal(latest)} THEN '{c.name} is in the future (after {latest})' "
                f"WHEN ({expr}) < {literal(floor)} THEN '{c.name} is before {floor}, the earliest plausible date' END"
            ))
        return "DATE", expr, _first(missing, bad)
    if c.kind == "integer":
        expr = (
            f"CASE WHEN regexp_full_match({raw}, '[+-]?\\d{{1,9}}(\\.0+)?') "
            f"THEN TRY_CAST(TRY_CAST({raw} AS DOUBLE) AS INTEGER) END"
        )
        bad = f"CASE WHEN {raw} IS NOT NULL AND ({expr}) IS NULL THEN '{c.name} is not a whole number' END"
        return "INTEGER", expr, _first(missing, bad)
    if c.kind == "codes":
        # ICD-10-CM codes: with or without the dot, any case; separated by ';' (also tolerate , | and spaces).
        expr = (
            f"list_filter(list_transform(regexp_split_to_array(coalesce({raw}, ''), '[;,|\\s]+'), "
            f"lambda x: upper(replace(x, '.', ''))), lambda x: x <> '')"
        )
        if c.required:
            missing = f"CASE WHEN len({expr}) = 0 THEN '{c.name} is missing' END"
        return "VARCHAR[]", expr, missing
    if c.kind == "enum":
        return "VARCHAR", _enum_expr(c, raw), missing
    raise ValueError(c.kind)


def _enum_expr(c: Column, raw: str) -> str:
    if c.name == "patient_sex":
        return (
            f"CASE upper(left({raw}, 1)) WHEN 'F' THEN 'F' WHEN 'M' THEN 'M' "
            f"WHEN 'U' THEN 'U' WHEN 'O' THEN 'U' ELSE upper({raw}) END"
        )
    if c.name == "code_system":
        # 'ICD-10-CM', 'icd10cm', 'RxNorm', 'CPT-4' all name the contract's systems.
        norm = f"regexp_replace(upper({raw}), '[^A-Z0-9]', '', 'g')"
        return f"CASE WHEN {norm} = 'CPT4' THEN 'CPT' ELSE {norm} END"
    # Other value sets are lower-case words with underscores: 'Primary Care' -> 'primary_care'.
    return f"regexp_replace(lower({raw}), '[\\s-]+', '_', 'g')"


def _first(*exprs: str | None) -> str | None:
    present = [e for e in exprs if e]
    if not present:
        return None
    return present[0] if len(present) == 1 else f"coalesce({', '.join(present)})"


def _table_problems(spec: TableSpec, typed: dict[str, str]) -> list[str]:
    """Row-level rules beyond single columns that protect correctness downstream."""
    problems = []
    if spec.name == "referrals":
        age = typed["patient_age"]
        problems.append(
            f"CASE WHEN {age} < 0 OR {age} > 120 THEN 'patient_age is outside 0-120' END"
        )
    if spec.name == "clinical_events":
        problems.append(
            f"CASE WHEN {typed['event_type']} NOT IN {tuple(spec.column('event_type').allowed)} "
            "THEN 'event_type is not diagnosis, procedure or medication' END"
        )
        problems.append(
            f"CASE WHEN {typed['code_system']} NOT IN {tuple(spec.column('code_system').allowed)} "
            "THEN 'code_system is not one of ICD10CM, CPT, HCPCS, ICD10PCS, RXNORM' END"
        )
    if spec.name == "chart_reviews":
        problems += _review_problems(spec, typed)
    if spec.name == "scans":
        # A procedure code that is neither CPT (5 characters, 4 digits first) nor HCPCS level II cannot be scoped.
        problems.append(
            f"CASE WHEN {typed['procedure_code']} IS NOT NULL AND NOT regexp_full_match("
            f"{typed['procedure_code']}, '\\d{{4}}[0-9A-Z]|[A-Z]\\d{{4}}') "
            "THEN 'procedure_code is not a CPT or HCPCS code' END"
        )
    return problems


def _review_problems(spec: TableSpec, typed: dict[str, str]) -> list[str]:
    """A review names a category of the contract, a rule set of this audit, and reason codes that belong to the
    category it gives (docs/data-contract.md §2a, "chart_reviews")."""
    from assets.classify.rule_sets import reasons_by_category, rule_set_names

    category, rule_set, reasons = typed["reviewed_category"], typed["rule_set"], typed["reviewed_reasons"]
    allowed = spec.column("reviewed_category").allowed
    names = rule_set_names()
    by_category = reasons_by_category()
    pairs = ", ".join(f"({literal(c)}, {literal(r)})" for c, codes in by_category.items() for r in codes)
    known = ", ".join(literal(r) for codes in by_category.values() for r in codes)
    codes = (f"list_filter(list_transform(string_split(coalesce({reasons}, ''), ';'), lambda x: lower(trim(x))), "
             "lambda x: x <> '')")
    return [
        f"CASE WHEN {category} IS NOT NULL AND {category} NOT IN ({', '.join(map(literal, allowed))}) "
        f"THEN 'reviewed_category is not one of {', '.join(allowed)}' END",
        f"CASE WHEN {rule_set} IS NOT NULL AND {rule_set} NOT IN ({', '.join(map(literal, names))}) "
        f"THEN 'rule_set ' || {rule_set} || ' is not a rule set of this audit ({', '.join(names)})' END",
        f"CASE WHEN len(list_filter({codes}, lambda x: NOT list_contains([{known}], x))) > 0 "
        f"THEN 'reviewed_reasons has unknown reason codes: ' || array_to_string(list_filter({codes}, "
        f"lambda x: NOT list_contains([{known}], x)), ';') END",
        f"CASE WHEN {category} IN ({', '.join(map(literal, allowed))}) AND len(list_filter({codes}, "
        f"lambda x: list_contains([{known}], x) AND NOT list_contains([{pairs}], ({category}, x)))) > 0 "
        f"THEN 'reviewed_reasons do not belong to ' || {category} || ': ' || array_to_string(list_filter({codes}, "
        f"lambda x: list_contains([{known}], x) AND NOT list_contains([{pairs}], ({category}, x))), ';') END",
    ]


def warehouse_columns(spec: TableSpec) -> list[tuple[str, str]]:
    """(name, SQL type) of a warehouse table: contract columns, derived columns, then lineage."""
    cols = []
    for c in spec.columns:
        sql_type, _, _ = _typed_expr(c)
        cols.append((c.name, sql_type))
        if c.name == "scan_date":
            cols.append(("scan_datetime", "TIMESTAMP"))
    cols += [("_source_file", "VARCHAR"), ("_source_row", "BIGINT"), ("_load_partition", "VARCHAR")]
    return cols


def ensure_tables(con) -> None:
    """Create the ingestion tables and the quarantine if this warehouse does not have them yet."""
    for spec in TABLES.values():
        cols = ", ".join(f"{n} {t}" for n, t in warehouse_columns(spec))
        con.execute(f"CREATE TABLE IF NOT EXISTS {spec.name} ({cols})")
    con.execute(
        """CREATE TABLE IF NOT EXISTS quarantine (
            source_file VARCHAR, source_row BIGINT, table_name VARCHAR, reason VARCHAR,
            stage VARCHAR, load_partition VARCHAR, record_key VARCHAR, column_name VARCHAR, value VARCHAR)"""
    )
    con.execute(
        """CREATE TABLE IF NOT EXISTS privacy_findings (
            source_file VARCHAR, table_name VARCHAR, column_name VARCHAR, kind VARCHAR, action VARCHAR,
            rows BIGINT, load_partition VARCHAR)"""
    )
    con.execute(
        """CREATE TABLE IF NOT EXISTS ingest_files (
            source_file VARCHAR, table_name VARCHAR, load_partition VARCHAR, file_format VARCHAR,
            rows_in BIGINT, rows_loaded BIGINT, rows_quarantined BIGINT, dropped_columns VARCHAR[],
            loaded_at TIMESTAMP)"""
    )
    # Warehouses made before the quarantine carried the record's key and the offending column and value, and
    # before files carried their content hash (a repeated delivery is recognised by it).
    for column in ("record_key", "column_name", "value"):
        con.execute(f"ALTER TABLE quarantine ADD COLUMN IF NOT EXISTS {column} VARCHAR")
    for column, sql_type in (("content_sha256", "VARCHAR"), ("rows_repeated", "BIGINT"), ("repeats_file", "VARCHAR")):
        con.execute(f"ALTER TABLE ingest_files ADD COLUMN IF NOT EXISTS {column} {sql_type}")
    con.execute(
        """CREATE TABLE IF NOT EXISTS ignored_files (
            source_file VARCHAR, reason VARCHAR, load_partition VARCHAR)"""
    )


def _is_gzip(path: Path) -> bool:
    return path.name.strip().lower().endswith(".gz")


def _open_bytes(path: Path):
    """The file's bytes, decompressed when it is gzip-compressed (`scans.csv.gz`)."""
    import gzip

    return gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")


def _compression(path: Path) -> str:
    """DuckDB's `compression=` for the file (named explicitly: a trailing space hides the extension)."""
    return "'gzip'" if _is_gzip(path) else "'none'"


_NONBLANK_LINE = re.compile(rb"[^\r\n]+")  # a line with anything on it is a record to the CSV parser


def count_nonblank_lines(path: Path) -> int:
    """The file's non-blank lines (ended by CR, LF or CRLF), counted from the bytes, apart from any parser."""
    count, pending = 0, b""
    with _open_bytes(path) as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            data = pending + block
            cut = max(data.rfind(b"\n"), data.rfind(b"\r"))
            if cut < 0:
                pending = data
                continue
            count += len(_NONBLANK_LINE.findall(data, 0, cut + 1))
            pending = data[cut + 1:]
    return count + (1 if _NONBLANK_LINE.search(pending) else 0)


def _extra_lines_sql(text_sql: str, raw: bool = False) -> str:
    """SQL: how many more non-empty lines than one a record occupies in its file.

    `raw`: the text is the record as the file has it (quotes and commas included), so every non-empty line but
    one counts. Otherwise the text is the record's field values joined by a separator, without
    their quotes: a piece after a line break counts unless it is empty, and the last piece always counts (the
    field's closing quote stands on that line); an empty piece in between is a blank line inside quoted text."""
    pieces = f"regexp_split_to_array({text_sql}, '\\r\\n|\\r|\\n')"
    if raw:  # (the parser may hand back blank lines before the record: only non-empty lines count)
        return f"greatest(len(list_filter({pieces}, lambda s: length(s) > 0)) - 1, 0)"
    return (
        f"(len({pieces}) - 1 - len(list_filter({pieces}[2:len({pieces}) - 1], lambda s: length(s) = 0)))"
    )


def _header_line_end(path: Path) -> bytes:
    """How the first line of a file ends: b"\\r\\n", b"\\n", b"\\r" or b"" (no line break in the first MB)."""
    with _open_bytes(path) as fh:
        head = fh.read(1 << 20)
    m = re.search(rb"\r\n|\r|\n", head)
    return m.group(0) if m else b""


def _has_lone_carriage_return(path: Path) -> bool:
    """Whether a file ends some line with a bare carriage return (old Mac line ends, or a stray CR amid
    newline-ended lines): DuckDB's strict parser stops on those, so such files are read leniently."""
    previous = b""
    with _open_bytes(path) as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            chunk = previous + block
            # a CR that is not followed by LF (a CR at the very end of a block is judged with the next block)
            if re.search(rb"\r(?!\n)", chunk[:-1]):
                return True
            previous = chunk[-1:]
    return previous == b"\r"


def _stage_csv(con, f: InputFile, columns: list[str], select_cols: str) -> None:
    """Read a CSV file as text into `_staged`; records that do not parse go to `_rejects` with their line.

    DuckDB's strict parser rejects malformed records one by one, but a few byte sequences (a lone carriage
    return amid newline-ended lines) stop it altogether; such files are found first and read with the lenient
    parser instead (a failed statement would abort the caller's transaction, so there is no second attempt).
    """
    import duckdb

    declared = ", ".join(f"{_sql_str(c)}: 'VARCHAR'" for c in columns)
    compression = _compression(f.path)
    new_line = ""
    strict = "true"
    if _has_lone_carriage_return(f.path):
        if _header_line_end(f.path) == b"\r":  # a file ended with CRs throughout (old Mac): strict, told so
            new_line = ", new_line='\\r'"
        else:  # a stray CR amid newline-ended lines
            strict = "false"
    for table in ("_staged", "_rejects", "_reject_scans"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    try:
        con.execute(
            f"""CREATE TEMP TABLE _staged AS SELECT {select_cols} FROM read_csv({_sql_str(str(f.path))},
                header=true, all_varchar=true, delim=',', quote='"', escape='"', auto_detect=false,
                columns={{{declared}}}, strict_mode={strict}, ignore_errors=true, store_rejects=true,
                rejects_table='_rejects', rejects_scan='_reject_scans', max_line_size=10000000,
                compression={compression}{new_line})"""
        )
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{f.path}: cannot be parsed as CSV ({first})") from None


@dataclass
class FileResult:
    source_file: str
    table: str
    rows_in: int
    rows_loaded: int
    rows_quarantined: int
    dropped_columns: list[str] = field(default_factory=list)


def load_file(con, f: InputFile, partition: str, pseudonymize: bool = False,
              content_sha256: str | None = None) -> FileResult:
    """Load one file into its warehouse table and the quarantine, in the caller's transaction.

    With `pseudonymize`, id columns are stored as keyed hashes (the caller has set the key on `con`).
    """
    spec = TABLES[f.table]
    columns = read_header(con, f)
    dropped = check_columns(f, columns)
    # Files sit at the top of the input folder, so the name identifies them; a name is untrusted text (an
    # extract named after a patient's MRN or e-mail), so only its masked form is stored and shown.
    source = identifiers.mask_file_name(con, f.path.name)
    present = [c for c in spec.names if c in columns]
    # Columns outside the contract that carry a person's name or birth date: read only to remove their values
    # from the free text of the same row, then dropped with the other extra columns.
    person = [c for c in dropped if re.search(identifiers.PERSON_COLUMN_PATTERN, c)]

    con.execute("DROP TABLE IF EXISTS _staged")
    con.execute("DROP TABLE IF EXISTS _rejects")
    con.execute("DROP TABLE IF EXISTS _reject_scans")
    # Staged as text so that nothing is lost to type inference; a table keeps the file's row order (rowid).
    select_cols = ", ".join(
        [f"CAST(\"{c}\" AS VARCHAR) AS \"{c}\"" for c in present]
        + [f"CAST(\"{c}\" AS VARCHAR) AS \"_person_{i}\"" for i, c in enumerate(person)]
    )
    swallowed = 0
    if f.fmt == "parquet":
        con.execute(
            f"CREATE TEMP TABLE _staged AS SELECT {select_cols}, 0 AS _breaks FROM read_parquet({_sql_str(str(f.path))})"
        )
        rejected_lines: list[int] = []
        (records_in_file,), = con.execute(f"SELECT count(*) FROM read_parquet({_sql_str(str(f.path))})").fetchall()
    else:
        # Line breaks inside a record's quoted fields (any column, contract or not): the file's own line count,
        # less these, is its record count, counted apart from the parser so that lost rows show.
        every = ", ".join(f'"{c}"' for c in columns)
        joined = f"concat_ws(chr(31), {every})"
        breaks = f"CASE WHEN regexp_matches({joined}, '[\\r\\n]') THEN {_extra_lines_sql(joined)} ELSE 0 END"
        _stage_csv(con, f, columns, f"{select_cols}, {breaks} AS _breaks")
        lines_in_file = count_nonblank_lines(f.path) - 1  # less the header
        (breaks_in_records,), = con.execute("SELECT coalesce(sum(_breaks), 0) FROM _staged").fetchall()
        records_in_file = lines_in_file - breaks_in_records
        # A record can fail more than one way; one quarantine row per record, reasons joined.
        rejected_lines = [
            r[0] for r in con.execute("SELECT DISTINCT line FROM _rejects ORDER BY line").fetchall()
        ]
        if rejected_lines:
            con.execute(
                """INSERT INTO quarantine (source_file, source_row, table_name, reason, stage, load_partition)
                   SELECT ?, line, ?, 'unparseable CSV record: ' ||
                       string_agg(DISTINCT lower(replace(error_type, '_', ' ')), '; '), 'read', ?
                   FROM _rejects GROUP BY line""",
                [source, spec.name, partition],
            )
            # A record that could not be parsed and spans several lines (a quote opened and never closed)
            # swallowed the lines after its first: each of them is quarantined, not lost.
            (swallowed,), = con.execute(
                f"""WITH spans AS (
                       SELECT line, max({_extra_lines_sql("rtrim(csv_line, chr(13) || chr(10))", raw=True)}) AS extra
                       FROM _rejects GROUP BY line HAVING extra > 0),
                   lines AS (SELECT line, line + unnest(range(1, extra + 1)) AS swallowed_line FROM spans)
                   SELECT count(*) FROM lines""",
            ).fetchall()
            con.execute(
                f"""INSERT INTO quarantine (source_file, source_row, table_name, reason, stage, load_partition)
                   WITH spans AS (
                       SELECT line, max({_extra_lines_sql("rtrim(csv_line, chr(13) || chr(10))", raw=True)}) AS extra
                       FROM _rejects GROUP BY line HAVING extra > 0)
                   SELECT ?, line + unnest(range(1, extra + 1)), ?,
                          'inside the quoted field opened on row ' || line || ' and never closed (an unterminated quote)',
                          'read', ?
                   FROM spans""",
                [source, spec.name, partition],
            )

    typed = {}
    problems = []
    bounds = date_bounds()
    for c in spec.columns:
        sql_type, expr, problem = _typed_expr(c, bounds) if c.name in present else (None, "NULL", None)
        typed[c.name] = expr if c.name in present else "NULL"
        if problem:
            problems.append(problem)
        if c.name in present and c.kind in ("text", "code", "codes", "enum") and c.name not in identifiers.FREE_TEXT_COLUMNS:
            problems.append(identifiers.problem_expr(c.name, _raw(c.name)))
    problems += _table_problems(spec, typed)
    if f.fmt == "csv" and len(columns) > 1:
        # A quoted text whose later lines look like records of this file (as many commas): a quote left open
        # swallowed them. The record is quarantined with the lines it holds rather than loaded.
        record_like = f"(?:\\r\\n|\\r|\\n)(?:[^\\r\\n,]*,){{{len(columns) - 1}}}"
        for c in spec.columns:
            if c.name in present and c.kind == "text":
                problems.append(
                    f"CASE WHEN regexp_matches(s.\"{c.name}\", '{record_like}') THEN '{c.name} spans lines that "
                    "look like records of this file (a quote left open?)' END"
                )
    stored = dict(typed)
    masked_kinds = "[]"
    for name in identifiers.FREE_TEXT_COLUMNS & set(present):
        masked = identifiers.mask_expr(typed[name])
        kinds = [identifiers.found_kinds_expr(_raw(name))]
        for i, column in enumerate(person):
            kind = "birth_date" if re.search(identifiers.BIRTH_COLUMN_PATTERN, column) else "name"
            before = masked
            masked = identifiers.mask_known_values_expr(before, _raw(f"_person_{i}"), kind)
            kinds.append(f"[CASE WHEN ({masked}) IS DISTINCT FROM ({before}) THEN '{kind}' END]")
        stored[name] = masked
        masked_kinds = (f"list_distinct(list_filter(list_concat({', '.join(kinds)}), lambda x: x IS NOT NULL))"
                        if len(kinds) > 1 else kinds[0])
    if spec.name == "chart_reviews":
        # A review names the scan as the audit publishes it (already pseudonymous when ids are hashed), so its
        # scan_id is never hashed again; an empty rule set means the default one.
        stored["rule_set"] = f"coalesce({typed['rule_set']}, {literal(DEFAULT_REVIEW_RULE_SET)})"
        stored["reviewed_reasons"] = (
            f"nullif(array_to_string(list_filter(list_transform(string_split(coalesce({typed['reviewed_reasons']}, "
            f"''), ';'), lambda x: lower(trim(x))), lambda x: x <> ''), ';'), '')")
    elif pseudonymize:
        for name in identifiers.PSEUDONYM_COLUMNS & set(present):
            stored[name] = identifiers.pseudonym_expr(typed[name])
    if spec.name == "referrals" and "patient_age" in present:
        # Ages over 89 are reported as 90 ("90 or older"), as HIPAA Safe Harbor requires.
        stored["patient_age"] = f"CASE WHEN ({typed['patient_age']}) > 89 THEN 90 ELSE ({typed['patient_age']}) END"

    # Spreadsheet row of the k-th parsed record: k + 1, plus the rejected lines that come before it.
    # (Rejected line L_i, sorted, precedes accepted record k exactly when L_i - i <= k.)
    con.execute("DROP TABLE IF EXISTS _reject_lines")
    con.execute("CREATE TEMP TABLE _reject_lines (adj BIGINT)")
    if rejected_lines:
        con.executemany(
            "INSERT INTO _reject_lines VALUES (?)",
            [[line - i] for i, line in enumerate(rejected_lines, start=1)],
        )
    # Rows of a table created inside a transaction carry large provisional rowids; rank them instead.
    record = "s._record"
    row_expr = f"({record} + 1)" if not rejected_lines else (
        f"({record} + 1 + (SELECT count(*) FROM _reject_lines r WHERE r.adj <= {record}))"
    )

    first_of_key = ""
    if spec.key and spec.key in present:
        # The same id twice in one delivery: the first row stands, later copies are quarantined. (A record
        # delivered again in a later partition is a correction and replaces the earlier one downstream.)
        key = _raw(spec.key)
        first_of_key = f", row_number() OVER (PARTITION BY {key} ORDER BY rowid) AS _copy"
        problems.append(
            f"CASE WHEN {key} IS NOT NULL AND s._copy > 1 THEN "
            f"'duplicate {spec.key}: an earlier row of this file has the same id' END"
        )
        problems.append(
            f"CASE WHEN {key} IS NOT NULL AND EXISTS (SELECT 1 FROM {spec.name} t "
            f"WHERE t.{spec.key} = NULLIF(TRIM(s.\"{spec.key}\"), '') "
            f"AND t._load_partition = {_sql_str(partition)}) THEN "
            f"'duplicate {spec.key}: already loaded from another file of this partition' END"
        )
    problem_list = f"list_filter([{', '.join(problems) or 'NULL'}], lambda x: x IS NOT NULL)"
    target_cols = [n for n, _ in warehouse_columns(spec)]
    value_exprs = []
    for name in target_cols:
        if name == "scan_datetime":
            value_exprs.append(
                "CASE WHEN length(scan_date_raw) > 10 THEN "
                "TRY_CAST(replace(rtrim(scan_date_raw, 'Z'), 'T', ' ') AS TIMESTAMP) END"
            )
        elif name == "_source_file":
            value_exprs.append(_sql_str(source))
        elif name == "_source_row":
            value_exprs.append("_row")
        elif name == "_load_partition":
            value_exprs.append(_sql_str(partition))
        else:
            value_exprs.append(f'"{name}"')
    con.execute("DROP TABLE IF EXISTS _typed")
    scan_raw = f", {_raw('scan_date')} AS scan_date_raw" if spec.name == "scans" else ""
    # The quarantine's trace: the record's own key (pseudonymized like the tables, identifier-masked), and the
    # column the first problem names with its raw value, identifier-masked.
    key_column = spec.key if spec.key in present else ("patient_id" if "patient_id" in present else None)
    key_expr = identifiers.mask_expr(stored[key_column]) if key_column else "NULL"
    first_column = "nullif(regexp_extract(_problems[1], '^(?:duplicate )?([a-z_]+)', 1), '')"
    value_cases = " ".join(f"WHEN {literal(c)} THEN {identifiers.mask_expr(_raw(c))}" for c in present)
    value_expr = f"CASE {first_column} {value_cases} END" if present else "NULL"
    con.execute(
        f"""CREATE TEMP TABLE _typed AS
            SELECT {', '.join(f'{stored[c]} AS "{c}"' for c in spec.names)}{scan_raw},
                   {row_expr} AS _row, _problems, {masked_kinds} AS _masked,
                   CASE WHEN len(_problems) > 0 THEN {key_expr} END AS _key,
                   CASE WHEN len(_problems) > 0 THEN {first_column} END AS _column,
                   CASE WHEN len(_problems) > 0 THEN {value_expr} END AS _value
            FROM (SELECT s.*, {problem_list} AS _problems
                  FROM (SELECT *, row_number() OVER (ORDER BY rowid) AS _record{first_of_key} FROM _staged) s) s"""
    )
    con.execute(
        f"""INSERT INTO {spec.name} ({', '.join(target_cols)})
            SELECT {', '.join(value_exprs)} FROM _typed WHERE len(_problems) = 0 ORDER BY _row"""
    )
    con.execute(
        f"""INSERT INTO quarantine
            SELECT ?, _row, ?, array_to_string(_problems, '; '), 'ingest', ?, _key, _column, _value
            FROM _typed WHERE len(_problems) > 0 ORDER BY _row""",
        [source, spec.name, partition],
    )
    loaded, quarantined = con.execute(
        "SELECT count(*) FILTER (WHERE len(_problems) = 0), count(*) FILTER (WHERE len(_problems) > 0) FROM _typed"
    ).fetchone()
    # What the identifier guard did in this file: counts only, never the values.
    free_text = ", ".join(sorted(identifiers.FREE_TEXT_COLUMNS & set(present))) or None
    con.execute(
        """INSERT INTO privacy_findings
           SELECT ?, ?, ?, kind, 'masked', count(*), ? FROM (
               SELECT unnest(_masked) AS kind FROM _typed WHERE len(_problems) = 0) GROUP BY kind
           UNION ALL
           SELECT ?, ?, x['c'], unnest(string_split(x['k'], ', ')), 'quarantined', 1, ? FROM (
               SELECT regexp_extract(p, '^([a-z_]+) looks like a direct identifier [(](.*)[)]$', ['c', 'k']) AS x
               FROM (SELECT unnest(_problems) AS p FROM _typed)
               WHERE p LIKE '% looks like a direct identifier (%')""",
        [source, spec.name, free_text, partition, source, spec.name, partition],
    )
    quarantined += len(rejected_lines) + swallowed
    result = FileResult(
        source_file=source,
        table=spec.name,
        rows_in=records_in_file,
        rows_loaded=loaded,
        rows_quarantined=quarantined,
        dropped_columns=dropped,
    )
    con.execute(
        """INSERT INTO ingest_files (source_file, table_name, load_partition, file_format, rows_in, rows_loaded,
               rows_quarantined, dropped_columns, loaded_at, content_sha256, rows_repeated)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, now(), ?, 0)""",
        [source, spec.name, partition, f.fmt, result.rows_in, loaded, quarantined, dropped, content_sha256],
    )
    for t in ("_staged", "_typed", "_rejects", "_reject_scans", "_reject_lines"):
        con.execute(f"DROP TABLE IF EXISTS {t}")
    return result


def record_repeated_file(con, f: InputFile, partition: str, content_sha256: str, earlier: str) -> int:
    """Account for a file whose content an earlier file already delivered: its records are counted, not loaded
    again (identical re-deliveries must not double the history); returns the record count."""
    source = identifiers.mask_file_name(con, f.path.name)
    if f.fmt == "parquet":
        (rows,), = con.execute(f"SELECT count(*) FROM read_parquet({_sql_str(str(f.path))})").fetchall()
    else:
        compression = _compression(f.path)
        (rows,), = con.execute(
            f"""SELECT count(*) FROM read_csv({_sql_str(str(f.path))}, header=true, all_varchar=true, delim=',',
                quote='"', escape='"', strict_mode=false, ignore_errors=true, compression={compression})"""
        ).fetchall()
    con.execute(
        """INSERT INTO ingest_files (source_file, table_name, load_partition, file_format, rows_in, rows_loaded,
               rows_quarantined, dropped_columns, loaded_at, content_sha256, rows_repeated, repeats_file)
           VALUES (?, ?, ?, ?, ?, 0, 0, [], now(), ?, ?, ?)""",
        [source, f.table, partition, f.fmt, rows, content_sha256, rows, earlier],
    )
    return rows


# ---------------------------------------------------------------------------------------------------------
# Layout detection (docs/data-contract.md §1, "Running": --input-format auto|native|claims|fhir)

FORMATS = ("auto", "native", "claims", "fhir")


def detect_format(input_dir: Path, requested: str = "auto") -> str:
    """The layout of `input_dir`; InputError with a one-line reason when it has none we can read."""
    input_dir = Path(input_dir)
    if requested not in FORMATS:
        raise InputError(f"{input_dir}: unknown input format {requested!r} (use one of {', '.join(FORMATS)})")
    if not input_dir.is_dir():
        raise InputError(f"{input_dir}: input directory does not exist")
    names = {p.name.lower() for p in input_dir.iterdir() if p.is_file()}
    found = []
    if discover_native_files(input_dir):
        found.append("native")
    if "medical_claim.csv" in names or "medical_claim.parquet" in names:
        found.append("claims")
    if any(n.endswith(".ndjson") or n.endswith(".ndjson.gz") for n in names):
        found.append("fhir")
    fmt = requested if requested != "auto" else (found[0] if len(found) == 1 else None)
    if requested == "auto" and not found:
        raise InputError(
            f"{input_dir}: no input files of a known layout (expected referrals/scans CSV or Parquet, "
            "medical_claim.csv, or FHIR NDJSON)"
        )
    if requested == "auto" and len(found) > 1:
        raise InputError(f"{input_dir}: holds files of several layouts ({', '.join(found)}); pass --input-format")
    if fmt == "fhir" and not _fhir_available():
        raise InputError(f"{input_dir}: the fhir layout is not supported by this version (native and claims only)")
    return fmt


def _fhir_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("assets.ingest.fhir") is not None


def native_source_dir(input_dir: Path, fmt: str, work_root: Path) -> Path:
    """The folder of native files to load: the input itself, or its conversion (claims, FHIR) under
    `work_root/.converted/<fmt>`, converted once per set of input files (name, size and time stamp)."""
    import json
    import shutil

    if fmt == "native":
        return Path(input_dir)
    signature = json.dumps(sorted(
        (p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in Path(input_dir).iterdir() if p.is_file()))
    target = Path(work_root) / ".converted" / fmt
    marker = target / ".signature"
    if marker.exists() and marker.read_text() == signature:
        return target
    fresh = target.with_name(f"{fmt}.new")
    shutil.rmtree(fresh, ignore_errors=True)
    if fmt == "claims":
        from assets.ingest.claims import convert_claims

        summary = convert_claims(Path(input_dir), fresh)
    else:
        from assets.ingest.fhir import convert_fhir

        summary = convert_fhir(Path(input_dir), fresh)
    (fresh / ".summary.json").write_text(json.dumps(summary, indent=1, default=str))
    (fresh / ".signature").write_text(signature)
    shutil.rmtree(target, ignore_errors=True)
    fresh.rename(target)
    return target


def preflight(input_dir: Path, fmt: str) -> list[InputFile]:
    """Check an input of any layout before a run starts; returns the native files it holds (none for others)."""
    if fmt == "native":
        return preflight_native(input_dir)
    if fmt == "claims":
        from assets.ingest.claims import check_claims

        check_claims(Path(input_dir))
    return []


def preflight_native(input_dir: Path) -> list[InputFile]:
    """Check a native input before any run starts: required tables present, every header readable and complete."""
    import duckdb

    files = discover_native_files(input_dir)
    tables = {f.table for f in files}
    for table in ("referrals", "scans"):
        if table not in tables:
            raise InputError(f"{input_dir}: no {table} file (expected {table}.csv, {table}_<date>.csv or .parquet)")
    con = duckdb.connect()
    try:
        for f in files:
            check_columns(f, read_header(con, f))
    finally:
        con.close()
    return files
