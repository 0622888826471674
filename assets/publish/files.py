"""Publishing files so that a reader never sees a half-written one, and CSV files a spreadsheet can open safely.

Every CSV under the output goes through one of the two writers here, which share one rule (OWASP, "CSV
Injection"): a text cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return would be read by a
spreadsheet as a formula, so it is written with a single quote in front (`'=HYPERLINK(...)`), and quoted as CSV
requires. Only text is touched: a number (a negative count, -3) stays a number.

- `copy_query_to_csv`: a query, exported by DuckDB's CSV writer; the text columns are neutralised in SQL, so the
  export stays one set-based pass at any size.
- `write_csv_rows`: rows already in Python (the reports' small aggregated tables).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
from pathlib import Path

from assets.sql import path_literal

# What a spreadsheet takes for the start of a formula (OWASP CSV injection guidance).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# The same, as an RE2 pattern for DuckDB's regexp_matches.
FORMULA_PATTERN = r"^[=+\-@\t\r]"


def write_text_atomic(path: Path, text: str) -> None:
    """Write beside the target, then rename over it (atomic on one file system)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; published pages are for every reader
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- CSV ---------------------------------------------------------------------------------------------------

def neutralise(value):
    """A cell value as it is safe to write: text starting like a formula gets a leading `'`; the rest as is."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _is_text(sql_type: str) -> bool:
    return sql_type == "VARCHAR" or sql_type.startswith(("ENUM", "JSON"))


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def neutralised_query(con, query: str, params=None) -> str:
    """`query` with every text column wrapped so that a formula-like value starts with `'` (set-based)."""
    rel = con.sql(query, params=params) if params else con.sql(query)
    exprs = []
    for name, sql_type in zip(rel.columns, rel.types):
        col = _ident(name)
        if _is_text(str(sql_type)):
            text = f"CAST({col} AS VARCHAR)"
            exprs.append(f"CASE WHEN regexp_matches({text}, '{FORMULA_PATTERN}') THEN '''' || {text} "
                         f"ELSE {text} END AS {col}")
        else:
            exprs.append(col)
    return f"SELECT {', '.join(exprs)} FROM ({query}) AS published"


def copy_query_to_csv(con, query: str, path: Path, params=None) -> int:
    """Export a query with DuckDB's CSV writer (text neutralised) to a temporary file, then rename it into place.

    The rows keep the query's order. Returns the number of rows written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        # COPY answers with the number of rows it wrote: the query runs once.
        (rows,), = con.execute(
            f"COPY ({neutralised_query(con, query, params)}) TO {path_literal(tmp)} (HEADER, DELIMITER ',')",
            params or None,
        ).fetchall()
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return rows


def csv_text(header: list[str], rows) -> str:
    """CSV text of `header` and `rows`, every text cell neutralised (numbers, None and booleans as they are)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([neutralise(h) for h in header])
    writer.writerows([neutralise(v) for v in row] for row in rows)
    return buf.getvalue()


def write_csv_rows(path: Path, header: list[str], rows) -> int:
    """Write rows as a CSV file atomically (text neutralised); returns the number of rows."""
    rows = list(rows)
    write_text_atomic(path, csv_text(header, rows))
    return len(rows)


# --- folders -----------------------------------------------------------------------------------------------

def publish_directory(target: Path, build, archive_root: Path | None = None, stamp: str | None = None,
                      keep_days: int = 0):
    """Build a folder aside, then swap it in for `target` in one step, so readers never see a half-written set.

    `build(folder)` writes the new pages into a fresh folder beside `target`; a failure leaves `target` as it
    was. With `archive_root`, a copy is then kept as `archive_root/<stamp>/<target name>` (one per day: a re-run
    the same day replaces that day's copy only), and days more than `keep_days` old are removed (0: none).
    """
    from assets.publish import layout

    fresh = layout.new_folder_beside(target)
    try:
        result = build(fresh)
        layout.chmod_tree(fresh)
        layout.checkpoint(f"built {target.name}")
        layout.replace_dir(target, fresh)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    if archive_root is not None and stamp:
        layout.archive(archive_root, stamp, {target.name: target}, keep_days, today=stamp)
    return result
