"""The output tree, and how a run switches it as one.

    output/
      .lock                      held (fcntl.flock) by the one process writing this output
      .current -> .versions/<run id>
      .versions/<run id>/        one complete set of outputs: warehouse.duckdb, exports/, quality/, dashboards/,
                                 reports/, and manifest.json (which run wrote each part, every file's sha256)
      warehouse.duckdb -> .current/warehouse.duckdb     the contract paths: stable relative links, made once
      exports -> .current/exports
      quality -> .current/quality
      dashboards -> .current/dashboards
      reports -> .current/reports
      archive/<date>/            dated copies of dashboards/ and reports/ (real folders, kept across runs)

`imaging-audit run` builds a new version folder, then publishes it with ONE atomic step: a new `.current` link is
made under a temporary name and renamed over the old one (`os.replace`). Readers follow the contract paths, so
they see the previous run's outputs or the new run's, never a mix. Versions that are not current, and scratch
left by a killed run, are removed when the next writer takes the lock.

The nightly Dagster job (a whole run of `nightly_audit`) builds the same way, but starts from a copy: its
warehouse is incremental, so its first writing step copies the current version to `.versions/<run id>`
(`stage_copy`, made aside and renamed in whole), every step writes there, and its last step
(`published_outputs`) flips `.current` like the CLI. The flip is refused when another run published meanwhile
(the copy's `.based_on` names the version it came from), so no run's loaded rows are silently dropped. A run that
materializes only some assets (from the UI) writes in place into the current version, each part replaced
atomically on its own (`replace_dir`, `os.replace` for files). See docs/operators.md, "Where outputs go".
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import os
import shutil
import sys
import threading
import time
import uuid
from pathlib import Path

PARTS = ("warehouse.duckdb", "exports", "quality", "dashboards", "reports")
WAREHOUSE = "warehouse.duckdb"
VERSIONS = ".versions"
CURRENT = ".current"
LOCK = ".lock"
MANIFEST = "manifest.json"
BASED_ON = ".based_on"  # in a nightly run's version: the name of the version it was copied from
ARCHIVE = "archive"
ARCHIVED_PARTS = ("dashboards", "reports")

# Names of scratch entries: what a run builds beside its target and renames over it, or moves aside.
_ROOT_SCRATCH = (".staging-", ".previous-", ".new-", ".old-", ".current.", ".duckdb_tmp")
_SCRATCH_MARKS = (".new-", ".old-", ".link-")


class OutputBusy(Exception):
    """Another process holds the output's lock."""

    def __init__(self, root: Path, pid: str):
        super().__init__(f"another run is writing {root} (pid {pid})")
        self.root, self.pid = root, pid


class OutputUnwritable(Exception):
    """The output folder cannot be created or written."""

    def __init__(self, root: Path, error: OSError):
        reason = error.strerror or str(error)
        if isinstance(error, (FileExistsError, NotADirectoryError)):
            reason = "not a folder"
        super().__init__(f"cannot write to the output folder {root}: {reason}")
        self.root = root


class OutputsMoved(Exception):
    """Another run published while a nightly run was building from an older copy."""

    def __init__(self, root: Path, base: str, current: str):
        super().__init__(
            f"not published: another run published {root} (version {current}) while this run was building on "
            f"version {base}; the outputs that run published stay, run this one again")


def checkpoint(name: str) -> None:
    """A named moment of publishing. Does nothing; tests replace it to stop the process exactly there."""


# --- the lock ----------------------------------------------------------------------------------------------

_held: dict[str, list] = {}  # real path of an output -> [file descriptor, depth]
_held_guard = threading.Lock()


@contextlib.contextmanager
def locked(root: Path):
    """Hold `root/.lock` (exclusive, never waiting); yields True for the outermost hold of this process.

    Raises OutputBusy when another process holds it, OutputUnwritable when the lock file cannot be made. The
    lock is re-entrant within a process (the nightly steps hold it per connection and per publication), and it
    is released by the kernel when the process dies, however it dies.
    """
    root = Path(root)
    key = os.path.realpath(root)
    with _held_guard:
        if key in _held:
            _held[key][1] += 1
            outer = False
        else:
            outer = True
    if not outer:
        try:
            yield False
        finally:
            with _held_guard:
                _held[key][1] -= 1
        return
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise OutputUnwritable(root, exc) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _holder(fd)
        os.close(fd)
        raise OutputBusy(root, pid) from None
    except OSError as exc:
        os.close(fd)
        raise OutputUnwritable(root, exc) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass  # the pid is for the message of a second run only
    with _held_guard:
        _held[key] = [fd, 1]
    try:
        yield True
    finally:
        with _held_guard:
            del _held[key]
        os.close(fd)  # releases the lock


def _holder(fd: int) -> str:
    """The pid the lock holder wrote (it writes it right after taking the lock: wait a moment for it)."""
    for _ in range(20):
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if text:
            return text
        time.sleep(0.05)
    return "unknown"


# --- reading the tree --------------------------------------------------------------------------------------

def current_version(root: Path) -> Path | None:
    """The real folder `.current` points to, or None (no run has published into this layout yet)."""
    link = Path(root) / CURRENT
    if not link.is_symlink():
        return None
    target = Path(os.path.realpath(link))
    return target if target.is_dir() else None


def resolve(path: Path) -> Path:
    """`path` with every link followed: a reader keeps the version it opened, whatever is published next."""
    return Path(os.path.realpath(path))


# --- atomic replacement ------------------------------------------------------------------------------------

def _load_renameat2():
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_RENAMEAT2 = _load_renameat2()
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def exchange(a: Path, b: Path) -> bool:
    """Swap the two directory entries `a` and `b` in one atomic step (Linux renameat2 RENAME_EXCHANGE).

    False when the platform or file system cannot; the caller then falls back to two renames.
    """
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(_AT_FDCWD, os.fsencode(str(a)), _AT_FDCWD, os.fsencode(str(b)), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _exists(path: Path) -> bool:
    return path.is_symlink() or path.exists()


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)


def _scratch_name(target: Path, kind: str) -> Path:
    return target.with_name(f".{target.name}.{kind}-{uuid.uuid4().hex[:8]}")


def replace_dir(target: Path, fresh: Path) -> None:
    """Put the folder `fresh` where `target` is, atomically, and remove the old one.

    With renameat2 the two entries are exchanged in one step; without it, the old folder is renamed aside first
    (a kill between the two renames leaves `target` missing and the old folder as `.<name>.old-*`, which the
    next writer puts back: `sweep`).
    """
    if not _exists(target):
        os.rename(fresh, target)
        return
    if exchange(fresh, target):
        checkpoint(f"exchanged {target.name}")
        _remove(fresh)  # now the old folder
        return
    old = _scratch_name(target, "old")
    os.rename(target, old)
    checkpoint(f"moved aside {target.name}")
    os.rename(fresh, target)
    _remove(old)


def new_folder_beside(target: Path) -> Path:
    """A fresh, empty folder next to `target`, named as scratch (`.<name>.new-*`)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fresh = _scratch_name(target, "new")
    fresh.mkdir()
    return fresh


# --- versions, the pointer and the links -------------------------------------------------------------------

def new_version(root: Path, run_id: str) -> Path:
    """An empty version folder for a run to build into."""
    version = Path(root) / VERSIONS / run_id
    version.mkdir(parents=True)
    return version


def stage_copy(root: Path, run_id: str, adopt: str | None = None) -> Path:
    """The version a nightly run builds into, `.versions/<run_id>`, made on the run's first write: a copy of
    the current version (warehouse, parts, manifest), built aside and renamed in whole, so a kill while copying
    leaves only scratch. A re-execution adopts the unpublished version of the run it re-executes (`adopt`), which
    holds the steps that run finished. Call with the lock held."""
    root = Path(root)
    versions = root / VERSIONS
    version = versions / run_id
    if version.is_dir():
        return version
    current = current_version(root)
    if adopt and (versions / adopt).is_dir() and (versions / adopt).resolve() != current:
        os.rename(versions / adopt, version)
        return version
    fresh = versions / f".{run_id}.new-{uuid.uuid4().hex[:8]}"
    if current is None:
        fresh.mkdir(parents=True)
    else:
        shutil.copytree(current, fresh, symlinks=True, copy_function=shutil.copy2,
                        ignore=lambda _, names: [n for n in names if n == ".duckdb_tmp" or _is_scratch(n)])
    (fresh / BASED_ON).write_text(current.name if current is not None else "", encoding="utf-8")
    checkpoint("copied")
    os.rename(fresh, version)
    return version


def _flip(root: Path, version: Path) -> None:
    """Point `.current` at `version`: a new link under a temporary name, renamed over the old one."""
    root = Path(root)
    tmp = root / f"{CURRENT}.new-{uuid.uuid4().hex[:8]}"
    os.symlink(f"{VERSIONS}/{version.name}", tmp)
    checkpoint("pointer made")
    os.replace(tmp, root / CURRENT)
    checkpoint("pointer flipped")


def ensure_links(root: Path) -> None:
    """Make every contract path a relative link into `.current` (once; repaired when missing).

    A real file or folder there is an older layout's output: it is moved into the current version when that
    version lacks the part (the nightly job's in-place warehouse), and otherwise replaced by the link.
    """
    root = Path(root)
    version = current_version(root)
    if version is None:
        return
    for name in PARTS:
        link = root / name
        want = f"{CURRENT}/{name}"
        if link.is_symlink() and os.readlink(link) == want:
            continue
        real = _exists(link) and not link.is_symlink()
        if real and not _exists(version / name):
            os.rename(link, version / name)
            if name == WAREHOUSE and (root / f"{name}.wal").exists():
                os.rename(root / f"{name}.wal", version / f"{name}.wal")
            checkpoint(f"adopted {name}")
            real = False
        tmp = root / f".{name}.link-{uuid.uuid4().hex[:8]}"
        os.symlink(want, tmp)
        if not real or not link.is_dir():
            os.replace(tmp, link)  # a link or file is replaced in one rename
        elif exchange(tmp, link):
            _remove(tmp)  # now the older layout's folder
        else:
            old = _scratch_name(link, "old")
            os.rename(link, old)
            os.rename(tmp, link)
            _remove(old)
        if name == WAREHOUSE and (root / f"{name}.wal").is_file() and real:
            (root / f"{name}.wal").unlink()  # the replaced file's log, not the current warehouse's
        checkpoint(f"linked {name}")


def start_layout(root: Path, run_id: str) -> Path:
    """Create the layout in `root` for writing in place (the nightly job): an empty version becomes current
    first, then an older layout's real outputs are moved into it one by one (each followed by its link), so a
    kill at any moment loses nothing: the next writer finishes the move."""
    version = new_version(root, run_id)
    _flip(root, version)
    ensure_links(root)
    return version


def publish_version(root: Path, version: Path, *, stamp: str | None = None, keep_days: int = 0,
                    today: str | None = None, keep: frozenset[str] = frozenset()) -> None:
    """Make the complete `version` the published outputs (one atomic rename), then archive and sweep.

    Call with the lock held. Before the flip nothing a reader sees has changed; after it, everything has. A
    version copied by a nightly run (`stage_copy`) is published only if the version it was copied from is still
    current (OutputsMoved otherwise).
    """
    root = Path(root)
    checkpoint("publishing")
    if not version.is_dir():
        raise FileNotFoundError(errno.ENOENT, "the version to publish is missing", str(version))
    if (version / BASED_ON).is_file():
        base = (version / BASED_ON).read_text(encoding="utf-8")
        current = current_version(root)
        if current is not None and current.name != base:
            raise OutputsMoved(root, base, current.name)
        (version / BASED_ON).unlink()
    _flip(root, version)
    ensure_links(root)
    if stamp:
        archive(root / ARCHIVE, stamp,
                {name: version / name for name in ARCHIVED_PARTS if (version / name).is_dir()},
                keep_days, today or stamp)
        checkpoint("archived")
    sweep(root, keep)
    checkpoint("swept")


def recover(root: Path, keep: frozenset[str] = frozenset()) -> None:
    """What a writer does first, with the lock held: repair the links, remove what killed runs left (except the
    versions named in `keep`: runs still building)."""
    ensure_links(root)
    sweep(root, keep)


def _is_scratch(name: str) -> bool:
    return name.startswith(".") and any(mark in name for mark in _SCRATCH_MARKS)


def _sweep_folder(folder: Path) -> None:
    """Remove scratch entries in `folder`; a folder moved aside whose target is missing is put back."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return
    for entry in entries:
        name = entry.name
        if name.endswith(".tmp") and name.startswith("."):
            _remove(entry)
        elif _is_scratch(name):
            stem, _, _ = name[1:].rpartition(".old-")
            if ".old-" in name and stem and not _exists(folder / stem) and not name.startswith(".current"):
                os.rename(entry, folder / stem)  # a replacement that was cut between its two renames
            else:
                _remove(entry)


def sweep(root: Path, keep: frozenset[str] = frozenset()) -> None:
    """Remove versions that are not current (or named in `keep`) and scratch left by killed runs. Call with the
    lock held."""
    root = Path(root)
    current = current_version(root)
    for entry in list(root.iterdir()) if root.is_dir() else []:
        if entry.name.startswith(_ROOT_SCRATCH) or _is_scratch(entry.name):
            _remove(entry)
    versions = root / VERSIONS
    if versions.is_dir() and current is not None:  # without a pointer nothing is known to be garbage
        for entry in versions.iterdir():
            if entry.resolve() != current and entry.name not in keep:
                _remove(entry)
    if current is not None:
        _sweep_folder(current)
        for name in PARTS:
            if (current / name).is_dir():
                _sweep_folder(current / name)
    archive_root = root / ARCHIVE
    if archive_root.is_dir():
        _sweep_folder(archive_root)
        for day in archive_root.iterdir():
            if day.is_dir() and not day.name.startswith("."):
                _sweep_folder(day)


# --- the archive -------------------------------------------------------------------------------------------

def _copy_tree(source: Path, target: Path) -> None:
    shutil.copytree(source, target, copy_function=shutil.copy2)


def archive(archive_root: Path, stamp: str, folders: dict[str, Path], keep_days: int, today: str) -> None:
    """Keep a dated copy of `folders` as `<archive_root>/<stamp>/<name>`: built aside, then swapped in whole
    (only this day's folder is replaced), then days more than `keep_days` old are removed (0: keep every day)."""
    archive_root = Path(archive_root)
    archive_root.mkdir(parents=True, exist_ok=True)
    day = archive_root / stamp
    fresh = new_folder_beside(day)
    try:
        if day.is_dir():  # parts not given (the nightly job archives one part at a time) are kept
            for entry in day.iterdir():
                if entry.name in folders or entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    _copy_tree(entry, fresh / entry.name)
                else:
                    shutil.copy2(entry, fresh / entry.name)
        for name, source in folders.items():
            _copy_tree(source, fresh / name)
        chmod_tree(fresh)
        checkpoint("archive built")
        replace_dir(day, fresh)
    except BaseException:
        _remove(fresh)
        raise
    prune_archive(archive_root, today, keep_days)


def prune_archive(archive_root: Path, today: str, keep_days: int) -> list[str]:
    """Remove `<archive_root>/<date>` folders dated more than `keep_days` days before `today` (none when
    `keep_days` is 0); returns their dates. Folders not named by a date are left alone."""
    import datetime as dt

    if keep_days <= 0:
        return []
    archive_root = Path(archive_root)
    if not archive_root.is_dir():
        return []
    oldest = dt.date.fromisoformat(today) - dt.timedelta(days=keep_days)
    removed = []
    for entry in sorted(archive_root.iterdir()):
        try:
            day = dt.date.fromisoformat(entry.name)
        except ValueError:
            continue  # not a dated folder: not ours to remove
        if day < oldest:
            _remove(entry)
            removed.append(entry.name)
    return removed


def chmod_tree(folder: Path) -> None:
    """Published pages are for every reader (mkstemp and mkdtemp create them private)."""
    os.chmod(folder, 0o755)
    for path in folder.rglob("*"):
        if not path.is_symlink():
            os.chmod(path, 0o755 if path.is_dir() else 0o644)


# --- the manifest ------------------------------------------------------------------------------------------

def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def describe_part(version: Path, part: str) -> dict:
    """Every file of a part with its size and sha256 (the warehouse: its size only; it is checked by its
    `run_info` table)."""
    path = Path(version) / part
    if part == WAREHOUSE:
        return {WAREHOUSE: {"bytes": path.stat().st_size}} if path.is_file() else {}
    files = {}
    for p in sorted(path.rglob("*")) if path.is_dir() else []:
        if p.is_file() and not p.name.startswith("."):
            files[p.relative_to(path).as_posix()] = {"bytes": p.stat().st_size, "sha256": _sha256(p)}
    return files


def read_manifest(version: Path) -> dict:
    try:
        return json.loads((Path(version) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"parts": {}}


def record_part(version: Path, part: str, run_id: str | None) -> None:
    """Note in the version's manifest which run wrote `part`, with its files (written atomically)."""
    from assets.publish.files import write_text_atomic

    manifest = read_manifest(version)
    manifest.setdefault("parts", {})[part] = {
        "run": run_id, "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": describe_part(version, part),
    }
    write_text_atomic(Path(version) / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
