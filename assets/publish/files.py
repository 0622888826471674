"""Publishing files so that a reader never sees a half-written one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


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


def copy_query_to_csv(con, query: str, path: Path) -> int:
    """Export a query with DuckDB's CSV writer to a temporary file, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    # COPY answers with the number of rows it wrote: the query runs once.
    (rows,), = con.execute(f"COPY ({query}) TO '{tmp.as_posix()}' (HEADER, DELIMITER ',')").fetchall()
    os.replace(tmp, path)
    return rows


def publish_directory(target: Path, build, archive_root: Path | None = None, stamp: str | None = None):
    """Build a folder aside, then swap it in for `target`, so readers never see a half-written set of pages.

    `build(folder)` writes the new pages into a fresh folder beside `target`. With `archive_root`, a copy is kept
    as `archive_root/<stamp>/<target name>` (one per day: a re-run the same day replaces it).
    """
    import shutil
    import uuid

    target.parent.mkdir(parents=True, exist_ok=True)
    fresh = target.with_name(f".{target.name}.new-{uuid.uuid4().hex[:8]}")
    fresh.mkdir()
    try:
        result = build(fresh)
        for path in fresh.rglob("*"):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        if archive_root is not None and stamp:
            archived = archive_root / stamp / target.name
            shutil.rmtree(archived, ignore_errors=True)
            shutil.copytree(fresh, archived)
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        if target.exists():
            target.rename(old)
        fresh.rename(target)
        shutil.rmtree(old, ignore_errors=True)
        return result
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
