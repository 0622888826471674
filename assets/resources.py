"""Resources shared by every stage: the landing directory and the DuckDB warehouse."""

from __future__ import annotations

import contextlib
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

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

    Two ways to write (assets/publish/layout.py has the layout):

    - `staged=True` (`imaging-audit run`): `output_dir` is a version folder the caller is building; the caller
      holds the output's lock and publishes the whole folder in one step when the run has succeeded.
    - `staged=False` (the nightly job): `output_dir` is the published output tree. A run of the whole job
      builds `.versions/<run id>`, a copy of the current version made by its first writing step (the warehouse
      is incremental), and its last step, `published_outputs`, switches the tree to it in one step (`release`).
      A run of only some assets (from the UI) writes in place into the current version, each published part
      replaced in one atomic step of its own. Every writing step holds the output's lock.
    """

    output_dir: str
    # DuckDB memory cap; spills to disk beyond it. Empty: 60% of physical memory, not DuckDB's default 80%, since
    # the same process also holds the quality gate's pandas frames.
    memory_limit: str = ""
    threads: int = 0
    staged: bool = False
    _run_id: str | None = PrivateAttr(default=None)
    _parent_run_id: str | None = PrivateAttr(default=None)
    _releases: bool = PrivateAttr(default=False)
    _instance: object = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        run = context.run
        self._run_id = run.run_id if run else None
        self._parent_run_id = run.parent_run_id if run else None
        self._releases = bool(run) and not self.staged and runs_release_step(run)
        self._instance = context.instance

    @property
    def run_id(self) -> str | None:
        return self._run_id

    @property
    def output_root(self) -> Path:
        return Path(self.output_dir)

    @property
    def root(self) -> Path:
        """The folder holding the parts: the version being built, or (nightly) the current version, created on
        first use (an older layout's outputs are moved into it)."""
        from assets.publish import layout

        if self.staged:
            return self.output_root
        if self._releases and (self.output_root / layout.VERSIONS / self._run_id).is_dir():
            return self.output_root / layout.VERSIONS / self._run_id
        current = layout.current_version(self.output_root)
        if current is not None:
            return current
        with self.writing() as root:
            return root

    @property
    def published_version(self) -> Path | None:
        """The version readers see now (the previous run's outputs while this run builds), or None."""
        from assets.publish import layout

        tree = self.output_root
        if self.staged and tree.parent.name == layout.VERSIONS:  # a version folder being built in the tree
            tree = tree.parent.parent
        return layout.current_version(tree)

    @property
    def archive_root(self) -> Path | None:
        """Where publishing steps keep their dated copies: None when the run publishes as a whole (the CLI, or
        the nightly job's `published_outputs`), which archives after switching."""
        from assets.publish import layout

        return None if self.staged or self._releases else self.output_root / layout.ARCHIVE

    @property
    def database_path(self) -> Path:
        return self.root / WAREHOUSE_FILE

    @contextmanager
    def writing(self):
        """Hold the output's lock while writing (nightly; staged runs are covered by the caller's lock); yields
        the folder holding the parts. The first hold of a step repairs the links and removes what a killed run
        left behind."""
        from assets.publish import layout

        if self.staged:
            yield self.output_root
            return
        out = self.output_root
        with layout.locked(out) as outermost:
            if outermost:
                if layout.current_version(out) is None:
                    import uuid

                    layout.start_layout(out, str(uuid.uuid4()) if self._releases else self._run_id or str(uuid.uuid4()))
                if self._releases:  # before the sweep: a re-execution takes over its parent's unpublished version
                    layout.stage_copy(out, self._run_id, adopt=self._parent_run_id)
                layout.recover(out, keep=frozenset({self._run_id} | runs_in_progress(self._instance, out)))
            yield out / layout.VERSIONS / self._run_id if self._releases else layout.current_version(out)

    def release(self, stamp: str, keep_days: int) -> bool:
        """The nightly job's last step: switch the output tree to this run's version in one step, archive its
        dashboards and reports, remove what is no longer current. False when this run does not publish as a
        whole (the CLI publishes after the job; a partial run wrote in place)."""
        from assets.publish import layout

        if self.staged or not self._releases:
            return False
        out = self.output_root
        with layout.locked(out):
            version = out / layout.VERSIONS / self._run_id
            if not version.is_dir():  # every nightly run writes (ingestion); its copy went with another run's sweep
                current = layout.current_version(out)
                raise layout.OutputsMoved(out, "(removed)", current.name if current else "none")
            layout.publish_version(out, version, stamp=stamp, keep_days=keep_days,
                                   keep=frozenset(runs_in_progress(self._instance, out) - {self._run_id}))
        return True

    @contextmanager
    def publishing(self, part: str):
        """Write the part `part` (a folder or file name under the root): yields its path; afterwards the
        version's manifest records this run and the part's files."""
        from assets.publish import layout

        with self.writing() as root:
            yield root / part
            layout.record_part(root, part, self._run_id)

    @contextmanager
    def connect(self, read_only: bool = False):
        import duckdb  # deferred: keeps `dagster dev` code loading fast

        from assets.publish import layout
        from assets.sql import literal, path_literal

        with contextlib.ExitStack() as stack:
            if read_only:
                root = self.root
            else:
                root = stack.enter_context(self.writing())
                root.mkdir(parents=True, exist_ok=True)
            # The real file, never a link: DuckDB keeps its write-ahead log beside the path it opened.
            con = duckdb.connect(str(layout.resolve(root / WAREHOUSE_FILE)), read_only=read_only)
            try:
                without_progress_bar(con)
                limit = self.memory_limit or default_memory_limit()
                if limit:
                    con.execute(f"SET memory_limit = {literal(limit)}")
                if self.threads:
                    con.execute(f"SET threads = {int(self.threads)}")
                con.execute(f"SET temp_directory = {path_literal(root / '.duckdb_tmp')}")
                yield con
                if not read_only:
                    record_run(con, self._run_id)
            finally:
                con.close()
            if not read_only:
                layout.record_part(root, WAREHOUSE_FILE, self._run_id)


RUN_INFO = "run_info"
RELEASE_STEP = "published_outputs"  # the nightly job's last asset (assets/publish/assets.py)


def runs_release_step(run) -> bool:
    """Whether a Dagster run executes the step that publishes its outputs as a whole."""
    if run.step_keys_to_execute is not None and RELEASE_STEP not in run.step_keys_to_execute:
        return False
    # A run of the whole job carries no (or an empty) asset selection.
    return not run.asset_selection or dg.AssetKey(RELEASE_STEP) in run.asset_selection


def runs_in_progress(instance, output_root: Path) -> set[str]:
    """The version folders under `output_root` that belong to Dagster runs still in progress on `instance`
    (kept by the sweep: another run is building them). Without an instance nothing is known to be running."""
    from assets.publish import layout

    versions = Path(output_root) / layout.VERSIONS
    if instance is None or not versions.is_dir():
        return set()
    active = {dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
              dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING}
    alive = set()
    for entry in versions.iterdir():
        if entry.name.startswith("."):
            continue
        try:
            run = instance.get_run_by_id(entry.name)
        except Exception:  # noqa: BLE001 - an unreadable run history must not stop the sweep's caller
            continue
        if run is not None and run.status in active:
            alive.add(entry.name)
    return alive


def record_run(con, run_id: str | None) -> None:
    """`run_info`: the run that last wrote the warehouse (the same id as the version's manifest)."""
    import datetime as dt

    if run_id is None:
        return
    con.execute(
        f"CREATE OR REPLACE TABLE {RUN_INFO} AS SELECT CAST(? AS VARCHAR) AS run_id, CAST(? AS TIMESTAMP) AS written_at",
        [run_id, dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)],
    )


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
    """A read-only DuckDB connection to the warehouse (the nightly run can still write meanwhile).

    `path` (default: the published `warehouse.duckdb`) is followed to the version it points to now, so the
    connection keeps reading that version whole even when a newer run is published meanwhile.
    """
    import duckdb

    from assets.publish.layout import resolve

    path = Path(path) if path else default_warehouse_path()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no warehouse yet; run `make run` (or imaging-audit run) first")
    return without_progress_bar(duckdb.connect(str(resolve(path)), read_only=True))
