"""Great Expectations suites (expectations/*.json) run on the rows each partition loaded.

The suites are GX 1.x JSON, one per table; every expectation carries `meta.check` (the Dagster check name),
`meta.dimension` (conformance, completeness, uniqueness, plausibility, referential integrity) and GX's own
`severity` (`critical` checks block downstream assets, `warning` checks only report).

Each table's validation frame is built in DuckDB SQL: the loaded columns plus derived columns that make row-level
rules expressible as plain column expectations (days in the future, whether a named referral exists, how many
codes are not ICD-10-CM, ...). GX then validates the frame and reports, per expectation, the violated count,
percent and denominator; Data Docs are written under `quality/data_docs/`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from assets.sql import literal

EXPECTATIONS_DIR = Path(__file__).resolve().parents[2] / "expectations"
TABLES = ("referrals", "scans", "clinical_events")


@dataclass(frozen=True)
class CheckDef:
    table: str
    name: str  # unique Dagster check name: <table>__<meta.check>
    blocking: bool
    dimension: str
    description: str


def check_definitions(directory: Path | None = None) -> list[CheckDef]:
    """The checks the suites define (read with the standard library only: cheap at code-load time)."""
    directory = directory or EXPECTATIONS_DIR
    defs = []
    for table in TABLES:
        suite = json.loads((directory / f"{table}.json").read_text(encoding="utf-8"))
        for exp in suite["expectations"]:
            meta = exp.get("meta", {})
            defs.append(CheckDef(
                table=table,
                name=f"{table}__{meta['check']}",
                blocking=exp.get("severity", "critical") == "critical",
                dimension=meta.get("dimension", ""),
                description=meta.get("description", exp["type"]),
            ))
    return defs


def warm_up_in_background() -> None:
    """Start importing Great Expectations on a background thread (it takes several seconds: scipy, altair,
    sqlalchemy), so the import overlaps ingestion instead of delaying the quality gate that follows it."""
    import sys
    import threading

    if "great_expectations" in sys.modules or any(t.name == "gx-warm-up" for t in threading.enumerate()):
        return

    def _import():
        try:
            import great_expectations  # noqa: F401
        except Exception:  # the quality gate imports it again and reports any real problem
            pass

    threading.Thread(target=_import, name="gx-warm-up", daemon=True).start()


def ensure_icd10cm_codes(con) -> int:
    """Warehouse table `icd10cm_codes`: every ICD-10-CM code (dotless), from the simple-icd-10-cm package."""
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'icd10cm_codes'"
    ).fetchall()[0][0]
    if exists:
        return con.execute("SELECT count(*) FROM icd10cm_codes").fetchone()[0]
    import pyarrow as pa
    import simple_icd_10_cm as cm

    codes = pa.table({"code": [c for c in cm.get_all_codes(with_dots=False) if "-" not in c]})
    con.register("_icd_codes", codes)
    con.execute("CREATE TABLE icd10cm_codes AS SELECT DISTINCT code FROM _icd_codes ORDER BY code")
    con.unregister("_icd_codes")
    return con.execute("SELECT count(*) FROM icd10cm_codes").fetchone()[0]


def _invalid_codes_cte(table: str, where: str) -> str:
    return f"""bad_codes AS (
            SELECT _source_file, _source_row, count(*) AS n
            FROM (SELECT _source_file, _source_row, unnest(diagnosis_codes) AS code FROM {table} WHERE {where}) x
            WHERE NOT EXISTS (SELECT 1 FROM icd10cm_codes v WHERE v.code = x.code)
            GROUP BY ALL)"""


def frame_sql(table: str, first: str, last: str, run_date: str) -> str:
    """The validation frame of one table for the partitions first..last.

    Referrals and scans are validated as currently in force (a record delivered again in a later partition
    replaces the earlier one), so uniqueness is checked on what downstream assets actually use.
    """
    where = f"_load_partition BETWEEN {literal(first)} AND {literal(last)}"
    if table == "referrals":
        return f"""WITH {_invalid_codes_cte('referrals', where)}
            SELECT r.referral_id, r.patient_id, r.referral_date, r.requested_procedure_code, r.patient_age,
                   r.patient_sex, r.referring_specialty, r.care_setting,
                   CAST(r.referral_date - CAST({literal(run_date)} AS DATE) AS INTEGER) AS days_in_future,
                   CAST(r.symptom_onset_date - r.referral_date AS INTEGER) AS onset_after_referral_days,
                   coalesce(b.n, 0) AS invalid_icd_codes
            FROM referrals_current r LEFT JOIN bad_codes b ON b._source_file = r._source_file AND b._source_row = r._source_row
            WHERE r.{where}"""
    if table == "scans":
        return f"""WITH {_invalid_codes_cte('scans', where)}
            SELECT s.scan_id, s.patient_id, s.scan_date, s.procedure_code, s.findings_category, s.scan_minutes,
                   CAST(s.scan_date - CAST({literal(run_date)} AS DATE) AS INTEGER) AS days_in_future,
                   CASE WHEN s.referral_id IS NOT NULL THEN r.referral_id IS NOT NULL END AS named_referral_found,
                   CAST(s.scan_date - r.referral_date AS INTEGER) AS days_after_referral,
                   count(*) OVER (PARTITION BY s.patient_id, s.scan_date, s.procedure_code) AS same_study_rows,
                   coalesce(b.n, 0) AS invalid_icd_codes
            FROM scans_current s
            LEFT JOIN referrals_current r ON r.referral_id = s.referral_id
            LEFT JOIN bad_codes b ON b._source_file = s._source_file AND b._source_row = s._source_row
            WHERE s.{where}"""
    if table == "clinical_events":
        return f"""WITH known AS (SELECT DISTINCT patient_id FROM referrals UNION SELECT DISTINCT patient_id FROM scans)
            SELECT e.patient_id, e.event_date, e.event_type, e.code_system, e.code, e.days_supply,
                   CAST(e.event_date - CAST({literal(run_date)} AS DATE) AS INTEGER) AS days_in_future,
                   k.patient_id IS NOT NULL AS patient_known,
                   CASE WHEN e.code_system = 'ICD10CM' THEN v.code IS NOT NULL END AS icd_code_valid
            FROM clinical_events e
            LEFT JOIN known k ON k.patient_id = e.patient_id
            LEFT JOIN icd10cm_codes v ON e.code_system = 'ICD10CM' AND v.code = e.code
            WHERE e.{where}"""
    raise ValueError(table)


def _normalise_for_gx(df):
    """DuckDB hands pandas datetime64[us] and int32 columns, which GX 1.x validates row by row in Python."""
    import pandas as pd

    fix = {}
    for column, dtype in df.dtypes.items():
        if dtype.kind == "M" and not isinstance(dtype, pd.DatetimeTZDtype) and dtype != "datetime64[ns]":
            fix[column] = df[column].astype("datetime64[ns]")
        elif dtype.kind in "iu" and dtype != "int64":
            # Integers with gaps become floats (NaN is GX's "missing"); whole columns stay int64.
            fix[column] = df[column].astype("float64" if df[column].isna().any() else "int64")
    return df.assign(**fix) if fix else df


@dataclass
class CheckOutcome:
    table: str
    name: str
    blocking: bool
    passed: bool
    violated: int
    percent: float
    denominator: int
    dimension: str
    description: str
    error: str | None = None


def run_suites(con, first: str, last: str, run_date: str, docs_dir: Path,
               directory: Path | None = None) -> list[CheckOutcome]:
    """Validate every table's partitions first..last with its GX suite; write Data Docs into `docs_dir`."""
    import logging

    import great_expectations as gx
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    from assets.ingest.linking import build_current_views

    directory = directory or EXPECTATIONS_DIR
    ensure_icd10cm_codes(con)
    build_current_views(con)
    docs_dir = Path(docs_dir).resolve()  # GX wants an absolute path for its Data Docs site
    context = gx.get_context(mode="ephemeral")  # nothing written into the repository
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    docs_dir.mkdir(parents=True, exist_ok=True)
    context.update_data_docs_site("local_site", {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    })
    by_name = {d.name: d for d in check_definitions(directory)}
    outcomes = []
    for table in TABLES:
        raw = json.loads((directory / f"{table}.json").read_text(encoding="utf-8"))
        suite = ExpectationSuite(**raw)
        if len(suite.expectations) != len(raw["expectations"]):
            raise ValueError(f"{directory / (table + '.json')}: an expectation type is not known to GX")
        batch_definition = (
            context.data_sources.add_pandas(f"warehouse_{table}").add_dataframe_asset(table)
            .add_batch_definition_whole_dataframe("partitions")
        )
        validation = context.validation_definitions.add(
            gx.ValidationDefinition(name=table, data=batch_definition, suite=context.suites.add(suite))
        )
        label = f"{table} {first}" + ("" if first == last else f" to {last}")
        tallies: dict[str, dict] = {}
        for part, frame in enumerate(_frames(con, table, frame_sql(table, first, last, run_date)), start=1):
            result = validation.run(
                batch_parameters={"dataframe": frame},
                result_format={"result_format": "SUMMARY", "partial_unexpected_count": 0},
                run_id=RunIdentifier(run_name=label if part == 1 else f"{label} (rows part {part})"),
            )
            for r in result.results:
                _tally(tallies.setdefault(r.expectation_config.meta["check"], {}), r, len(frame))
        for check_key, t in tallies.items():
            check = by_name[f"{table}__{check_key}"]
            outcomes.append(CheckOutcome(
                table=table, name=check.name, blocking=check.blocking, passed=t["passed"],
                violated=t["violated"],
                percent=round(100.0 * t["violated"] / t["denominator"], 4) if t["denominator"] else 0.0,
                denominator=t["elements"],
                dimension=check.dimension, description=check.description,
                error="; ".join(t["errors"]) or None,
            ))
    context.build_data_docs()
    return outcomes


# Rows per validation batch: large tables are validated in parts, so memory stays bounded (pandas frames of ten
# million rows, and Great Expectations' copies of them, would otherwise sit beside DuckDB's own memory).
ROWS_PER_BATCH = 4_000_000
# Referrals and scans have uniqueness checks: they are split by a hash of the id, so every copy of an id lands
# in the same part and "unique within each part" means unique overall.
_SPLIT_BY = {"referrals": "referral_id", "scans": "scan_id"}


def _frames(con, table: str, sql: str):
    """The validation frame as pandas DataFrames, in parts of at most about ROWS_PER_BATCH rows."""
    if table in _SPLIT_BY:
        con.execute(f"CREATE OR REPLACE TEMP TABLE _frame AS {sql}")
        rows = con.execute("SELECT count(*) FROM _frame").fetchall()[0][0]
        parts = max(1, -(-rows // ROWS_PER_BATCH))
        for part in range(parts):
            where = "" if parts == 1 else f" WHERE coalesce(hash({_SPLIT_BY[table]}), 0) % {parts} = {part}"
            yield _to_pandas(con.execute(f"SELECT * FROM _frame{where}").to_arrow_table())
        con.execute("DROP TABLE _frame")
        return
    # DuckDB's reader yields batches of about 120k rows whatever size is asked for; each GX validation costs
    # a fixed half second, so the batches are gathered into parts of ROWS_PER_BATCH first.
    import pyarrow as pa

    reader = con.execute(sql).to_arrow_reader(ROWS_PER_BATCH)
    pending, pending_rows, yielded = [], 0, False
    for batch in reader:
        pending.append(batch)
        pending_rows += batch.num_rows
        if pending_rows >= ROWS_PER_BATCH:
            yield _to_pandas(pa.Table.from_batches(pending))
            pending, pending_rows, yielded = [], 0, True
    if pending or not yielded:
        yield _to_pandas(pa.Table.from_batches(pending, schema=reader.schema))


def _to_pandas(table):
    """Arrow to pandas with text columns dictionary-encoded: GX fingerprints every batch by hashing it, and
    pandas hashes a categorical column by its few distinct values instead of by every row's string."""
    import pyarrow as pa

    for i, field in enumerate(table.schema):
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            table = table.set_column(i, field.name, table.column(i).dictionary_encode())
    return _normalise_for_gx(table.to_pandas())


def _tally(t: dict, r, rows: int) -> None:
    """Add one batch's result of one expectation to its running totals (counts add up across batches)."""
    info = r.result or {}
    unexpected = int(info.get("unexpected_count") or 0)
    elements = int(info.get("element_count") or rows)
    # GX's percent is over non-missing values, except for the not-null check, whose violations are the missing.
    missing = int(info.get("missing_count") or 0)
    null_check = r.expectation_config.type == "expect_column_values_to_not_be_null"
    errors = [v.get("exception_message") for v in (r.exception_info or {}).values()
              if isinstance(v, dict) and v.get("raised_exception")]
    if (r.exception_info or {}).get("raised_exception"):
        errors.append(r.exception_info.get("exception_message"))
    t["passed"] = t.get("passed", True) and bool(r.success)
    t["violated"] = t.get("violated", 0) + unexpected
    t["elements"] = t.get("elements", 0) + elements
    t["denominator"] = t.get("denominator", 0) + (elements if null_check else elements - missing)
    t["errors"] = t.get("errors", []) + [e for e in errors if e]
