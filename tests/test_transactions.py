"""A failure inside a transaction stays the failure: an interrupt that lands after COMMIT has ended the
transaction is not replaced by DuckDB's "no transaction is active"."""

from __future__ import annotations

import duckdb
import pytest

from assets.transactions import rollback_after_failure


class Interrupt(KeyboardInterrupt):
    pass


def _write(con, interrupt_after_commit: bool):
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("INSERT INTO t VALUES (1)")
        if not interrupt_after_commit:
            raise Interrupt("before commit")
        con.execute("COMMIT")
        raise Interrupt("after commit")  # as if SIGTERM landed as COMMIT returned
    except BaseException:
        rollback_after_failure(con)
        raise


@pytest.mark.parametrize("after_commit,rows", [(False, 0), (True, 1)])
def test_the_interrupt_is_the_error_whether_or_not_the_transaction_is_still_open(after_commit, rows):
    con = duckdb.connect()
    con.execute("CREATE TABLE t (x INTEGER)")
    with pytest.raises(Interrupt, match="after commit" if after_commit else "before commit"):
        _write(con, after_commit)
    assert con.execute("SELECT count(*) FROM t").fetchone()[0] == rows  # rolled back, or committed already


def test_other_errors_of_the_rollback_are_not_hidden():
    con = duckdb.connect()
    con.close()
    with pytest.raises(duckdb.Error):
        rollback_after_failure(con)
