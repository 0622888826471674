"""Resources shared by every stage: the landing directory and the DuckDB warehouse."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from assets.settings import load_settings

WAREHOUSE_FILE = "warehouse.duckdb"


def relation_kind(con, name: str) -> str | None:
    """'TABLE' or 'VIEW' when the warehouse (not this connection's temporary objects) holds `name`, else None."""
    rows = con.execute(
        """SELECT 'TABLE' FROM duckdb_tables() WHERE table_name = ? AND NOT temporary
           UNION ALL SELECT 'VIEW' FROM duckdb_views() WHERE view_name = ? AND NOT temporary""",
        [name, name],
    ).fetchall()
    return rows[0][0] if rows else None


def drop_relation(con, name: str) -> None:
    """Drop the warehouse table or view `name`, whichever it is (older warehouses may hold the other kind)."""
    kind = relation_kind(con, name)
    if kind:
        con.execute(f"DROP {kind} {name}")


def without_progress_bar(con):
    """Turn off DuckDB's progress bar (it would interleave with the run's own progress lines); returns `con`.

    Inside Jupyter without ipywidgets DuckDB refuses the change; the bar is harmless there, so that is ignored.
    """
    import duckdb

    try:
        con.execute("SET enable_progress_bar = false")
    except duckdb.Error:
        pass
    return con


class LandingResource(dg.ConfigurableResource):
    """Where input files arrive, and which layout they follow."""

    input_dir: str
    input_format: str = "auto"

    @property
    def path(self) -> Path:
        return Path(self.input_dir)


def default_memory_limit(share: float = 0.6) -> str:
    """`share` of this machine's physical memory, as a DuckDB setting ('' when the platform cannot tell)."""
    import os

    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return ""
    return f"{int(total * share) // 2**20}MB"


class WarehouseResource(dg.ConfigurableResource):
    """The output tree; its `warehouse.duckdb` is the one store every stage reads and writes.

    DuckDB allows one writing process at a time, so every asset that writes shares the `duckdb_writer` pool
    and opens the database only for the duration of its step.
    """

    output_dir: str
    # DuckDB memory cap; spills to disk beyond it. Empty: 60% of physical memory, not DuckDB's default 80%, since
    # the same process also holds the quality gate's pandas frames.
    memory_limit: str = ""
    threads: int = 0

    @property
    def root(self) -> Path:
        return Path(self.output_dir)

    @property
    def database_path(self) -> Path:
        return self.root / WAREHOUSE_FILE

    @contextmanager
    def connect(self, read_only: bool = False):
        import duckdb  # deferred: keeps `dagster dev` code loading fast

        from assets.sql import literal, path_literal

        if not read_only:
            self.root.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(self.database_path), read_only=read_only)
        try:
            without_progress_bar(con)
            limit = self.memory_limit or default_memory_limit()
            if limit:
                con.execute(f"SET memory_limit = {literal(limit)}")
            if self.threads:
                con.execute(f"SET threads = {int(self.threads)}")
            spill = self.root / ".duckdb_tmp"
            con.execute(f"SET temp_directory = {path_literal(spill)}")
            yield con
        finally:
            con.close()


def default_resources() -> dict:
    settings = load_settings()
    return {
        "landing": LandingResource(input_dir=settings.input_dir, input_format=settings.input_format),
        "warehouse": WarehouseResource(output_dir=settings.output_dir),
    }


def default_warehouse_path() -> Path:
    """Where analysts find the warehouse: IMAGING_AUDIT_OUTPUT, else `output/` at the project root."""
    import os

    root = Path(__file__).resolve().parents[1]
    output = Path(os.environ.get("IMAGING_AUDIT_OUTPUT", root / "output"))
    if not output.is_absolute():
        output = root / output
    return output / WAREHOUSE_FILE


def open_warehouse_read_only(path: Path | None = None):
    """A read-only DuckDB connection to the warehouse (the nightly run can still write meanwhile)."""
    import duckdb

    path = Path(path) if path else default_warehouse_path()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no warehouse yet; run `make run` (or imaging-audit run) first")
    return without_progress_bar(duckdb.connect(str(path), read_only=True))
