"""Rolling back a warehouse transaction after a failure without losing the failure."""

from __future__ import annotations


def rollback_after_failure(con) -> None:
    """ROLLBACK the open transaction, from an `except` block that re-raises. An interrupt (SIGTERM, Ctrl-C) can
    land inside COMMIT after the transaction has ended; DuckDB's "no transaction is active" would then replace
    the interrupt as the error, and the run would read as a failed step instead of an interrupted one."""
    import duckdb

    try:
        con.execute("ROLLBACK")
    except duckdb.TransactionException:
        pass  # nothing left to roll back: the error being handled is the one to report
