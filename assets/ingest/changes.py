"""What changed since a downstream step last ran: the patients whose records a load added or removed.

Every ingestion run records the partitions it (re)loaded in `ingest_changes` and, when it replaces rows a
partition loaded before, the patients of the removed rows in `patient_changes`. A downstream step (a
*consumer*: classification, the HEDIS measure) keeps the last change it processed in `consumer_marks`, with a
signature of its own configuration (rule sets, value sets). On its next run it either

* rebuilds everything: first run, configuration changed, its tables are missing, or the changes touch so many
  patients that a rebuild is cheaper; or
* recomputes only the changed patients: every classification input (history, links, episodes, prior scans) is
  per patient, so the other patients' rows cannot change.

This is what keeps a nightly run with one day of new files small on top of millions of scans.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

from assets.ingest.contract import TABLES
from assets.sql import literal
from assets.transactions import rollback_after_failure

# Above this share of all patients (and this many) a full rebuild is cheaper than deleting and re-inserting
# their rows; a small warehouse is cheap either way.
FULL_REBUILD_SHARE = 0.25
FULL_REBUILD_MIN_PATIENTS = 10_000
CHANGED_PATIENTS = "_changed_patients"


def ensure_change_tables(con) -> None:
    con.execute(
        """CREATE TABLE IF NOT EXISTS ingest_changes (
            change_id BIGINT, table_name VARCHAR, first_partition VARCHAR, last_partition VARCHAR,
            changed_at TIMESTAMP)"""
    )
    con.execute("CREATE TABLE IF NOT EXISTS patient_changes (change_id BIGINT, patient_id VARCHAR)")
    con.execute(
        """CREATE TABLE IF NOT EXISTS consumer_marks (
            consumer VARCHAR, change_id BIGINT, signature VARCHAR, updated_at TIMESTAMP)"""
    )


def begin_change(con, table: str, first: str, last: str) -> int:
    """Within the ingestion transaction, before the partitions' old rows are deleted: remember whose rows go."""
    ensure_change_tables(con)
    change_id = con.execute("SELECT coalesce(max(change_id), 0) + 1 FROM ingest_changes").fetchall()[0][0]
    con.execute(
        f"""INSERT INTO patient_changes
        SELECT DISTINCT ?, patient_id FROM {table}
        WHERE _load_partition BETWEEN ? AND ? AND patient_id IS NOT NULL""",
        [change_id, first, last],
    )
    con.execute(
        "INSERT INTO ingest_changes VALUES (?, ?, ?, ?, current_timestamp)", [change_id, table, first, last]
    )
    return change_id


def record_patients(con, source: str, patient_ids: list[str]) -> int:
    """A change made downstream of ingestion (e.g. relinked scans): these patients need recomputing too."""
    ensure_change_tables(con)
    change_id = con.execute("SELECT coalesce(max(change_id), 0) + 1 FROM ingest_changes").fetchall()[0][0]
    con.execute("INSERT INTO ingest_changes VALUES (?, ?, NULL, NULL, current_timestamp)", [change_id, source])
    con.executemany("INSERT INTO patient_changes VALUES (?, ?)", [[change_id, p] for p in patient_ids])
    return change_id


@dataclass
class Pending:
    full: bool           # rebuild everything
    why: str             # for the run log
    last_change: int     # mark to store once the consumer's writes are committed
    patients: int = 0    # changed patients (incremental mode): rows in the temp table _changed_patients


def pending_changes(con, consumer: str, signature: str, tables_present: bool, force_full: bool = False) -> Pending:
    """Decide full or incremental for `consumer`; in incremental mode fill `_changed_patients(patient_id)`."""
    ensure_change_tables(con)
    last_change = con.execute("SELECT coalesce(max(change_id), 0) FROM ingest_changes").fetchall()[0][0]
    mark = con.execute(
        "SELECT change_id, signature FROM consumer_marks WHERE consumer = ?", [consumer]
    ).fetchall()
    if force_full:
        return Pending(True, "full refresh requested", last_change)
    if not mark:
        return Pending(True, "first run", last_change)
    if mark[0][1] != signature:
        return Pending(True, "rule sets, features or value sets changed since the last run", last_change)
    if not tables_present:
        return Pending(True, "output tables missing", last_change)
    since = mark[0][0]
    changes = con.execute(
        "SELECT table_name, first_partition, last_partition FROM ingest_changes WHERE change_id > ?", [since]
    ).fetchall()
    selects = ["SELECT patient_id FROM patient_changes WHERE change_id > " + str(int(since))]
    for table in TABLES:
        ranges = [(f, l) for t, f, l in changes if t == table]
        if ranges:
            # Literal bounds (not a join) so DuckDB can skip row groups by their min/max partition.
            where = " OR ".join(f"_load_partition BETWEEN {literal(f)} AND {literal(l)}" for f, l in ranges)
            selects.append(f"SELECT patient_id FROM {table} WHERE {where}")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {CHANGED_PATIENTS} AS
        SELECT DISTINCT patient_id FROM ({' UNION ALL '.join(selects)}) WHERE patient_id IS NOT NULL"""
    )
    changed = con.execute(f"SELECT count(*) FROM {CHANGED_PATIENTS}").fetchall()[0][0]
    total = con.execute("SELECT count(DISTINCT patient_id) FROM scans").fetchall()[0][0]
    if changed > max(FULL_REBUILD_SHARE * total, FULL_REBUILD_MIN_PATIENTS):
        return Pending(True, f"{changed:,} of {total:,} patients changed", last_change)
    return Pending(False, f"{changed:,} patient(s) changed since the last run", last_change, changed)


def mark_consumed(con, consumer: str, signature: str, change_id: int) -> None:
    """Store the consumer's mark (inside its write transaction) and drop change rows every consumer has seen."""
    con.execute("DELETE FROM consumer_marks WHERE consumer = ?", [consumer])
    con.execute(
        "INSERT INTO consumer_marks VALUES (?, ?, ?, current_timestamp)", [consumer, change_id, signature]
    )
    con.execute(
        "DELETE FROM patient_changes WHERE change_id <= (SELECT min(change_id) FROM consumer_marks)"
    )


def signature(*parts) -> str:
    """A short hash of a consumer's configuration: when it changes, the consumer rebuilds everything."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


@contextmanager
def consuming(con, consumer: str, config_signature: str, tables_present: bool, force_full: bool = False):
    """Decide full or incremental (yields the Pending), run the consumer's writes in one transaction, and store
    its mark with them; on failure nothing is written and the changes stay pending. A consumer that records a
    change of its own sets `pending.last_change` to it."""
    pending = pending_changes(con, consumer, config_signature, tables_present, force_full)
    con.execute("BEGIN TRANSACTION")
    try:
        yield pending
        mark_consumed(con, consumer, config_signature, pending.last_change)
        con.execute("COMMIT")
    except BaseException:
        rollback_after_failure(con)
        raise
