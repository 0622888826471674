"""The output tree switches as one: a run killed at any moment (SIGKILL or SIGTERM, during the run or inside the
final swap) leaves the previous run's outputs or the new run's, whole; the next run leaves no scratch behind; one
run writes an output at a time; an unwritable output is one line; archives keep their days; paths with quotes.

Every check reads the outputs as a reader does, through the contract paths (`warehouse.duckdb`, `exports/`, ...),
and requires all of them to come from one run: the run id in the warehouse's `run_info` is the one the version's
manifest gives every part, every file matches the manifest's sha256, and the data matches one of the two inputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest

from assets.publish import layout
from pipelines.cli import main, run_audit
from tests.conftest import REPO_ROOT, event, referral, run_partition, scan, write_csv

CLI = str(Path(sys.executable).parent / "imaging-audit")
RULE_SET = ["--rule-set", "standard"]
SCRATCH_MARKS = (".new-", ".old-", ".link-")


# --- reading the outputs as a reader does ------------------------------------------------------------------

def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def whole(out: Path) -> dict:
    """Check that every contract path shows one complete run; returns its run id and a digest of its data."""
    current = out / layout.CURRENT
    assert current.is_symlink(), "no .current pointer"
    target = os.readlink(current)
    assert target.startswith(layout.VERSIONS + "/") and (out / target).is_dir(), target
    for name in layout.PARTS:
        link = out / name
        assert link.is_symlink() and os.readlink(link) == f"{layout.CURRENT}/{name}", name
    manifest = json.loads((out / target / layout.MANIFEST).read_text())
    assert set(manifest["parts"]) == set(layout.PARTS), manifest["parts"].keys()
    runs = {part["run"] for part in manifest["parts"].values()}
    assert len(runs) == 1, f"parts from several runs: {runs}"
    for name in layout.PARTS:
        if name == layout.WAREHOUSE:
            continue
        on_disk = {p.relative_to(out / name).as_posix(): _sha256(p)
                   for p in (out / name).rglob("*") if p.is_file() and not p.name.startswith(".")}
        listed = {k: v["sha256"] for k, v in manifest["parts"][name]["files"].items()}
        assert on_disk == listed, f"{name}: files differ from the manifest"
    with duckdb.connect(str(out / "warehouse.duckdb"), read_only=True) as con:
        (run_id,), = con.execute("SELECT run_id FROM run_info").fetchall()
        scans = con.execute("SELECT count(*) FROM scans").fetchone()[0]
        verdicts = con.execute("SELECT count(*) FROM mri_classification").fetchone()[0]
    assert runs == {run_id}, (runs, run_id)
    export = (out / "exports" / "mri_classification.csv").read_text().strip().splitlines()
    assert len(export) - 1 == verdicts
    digest = hashlib.sha256()
    for part in ("exports", "quality", "reports"):
        for p in sorted((out / part).rglob("*.csv")):
            digest.update(p.name.encode() + p.read_bytes())
    return {"run": run_id, "scans": scans, "data": digest.hexdigest()}


def scratch(out: Path) -> list[str]:
    """Everything a killed run may leave behind, anywhere in the tree (links are not followed)."""
    left = []
    for folder, dirs, files in os.walk(out):
        for name in dirs + files:
            if name.startswith((".staging-", ".previous-", ".current.")) or (
                    name.startswith(".") and (any(m in name for m in SCRATCH_MARKS) or name.endswith(".tmp"))):
                left.append(os.path.relpath(os.path.join(folder, name), out))
    versions = sorted(os.listdir(out / layout.VERSIONS)) if (out / layout.VERSIONS).is_dir() else []
    if len(versions) != 1:
        left.append(f"versions: {versions}")
    return left


# --- two inputs whose outputs differ, and a tree holding one of them ---------------------------------------

@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """Inputs A (300 scans) and B (200 scans), their published states, a copy of each run's version folder, and
    an output tree currently publishing B."""
    from data_samples.generate import generate

    base = tmp_path_factory.mktemp("publishing")
    inputs = {"A": base / "input-a", "B": base / "input-b"}
    generate(inputs["A"], n_scans=300, seed=11)
    generate(inputs["B"], n_scans=200, seed=12)
    out = base / "out"
    states, versions = {}, {}
    for label in ("A", "B"):
        run_audit(inputs[label], out, rule_sets=["standard"], quiet=True)
        states[label] = whole(out)
        versions[label] = base / f"version-{label}"
        shutil.copytree(layout.current_version(out), versions[label])
    assert states["A"]["data"] != states["B"]["data"] and states["A"]["scans"] != states["B"]["scans"]
    return {"inputs": inputs, "out": out, "states": states, "versions": versions, "base": base}


def label_of(state: dict, states: dict) -> str:
    for label, known in states.items():
        if (state["scans"], state["data"]) == (known["scans"], known["data"]):
            return label
    raise AssertionError(f"the outputs match neither input: {state}")


def _other(label: str) -> str:
    return "B" if label == "A" else "A"


# --- killing the CLI ---------------------------------------------------------------------------------------

# The CLI with layout.checkpoint replaced: it prints each publishing moment, and either sleeps there (so a timer
# can land inside the final swap) or sends itself a signal at one named moment.
WRAPPER = """
import os, sys, time
from assets.publish import layout
mode, arg = sys.argv[1], sys.argv[2]
def checkpoint(name):
    print("CHECKPOINT " + name, flush=True)
    if mode == "slow":
        time.sleep(float(arg))
    elif mode == "kill-at" and name == arg.rsplit(":", 1)[0]:
        os.kill(os.getpid(), int(arg.rsplit(":", 1)[1]))
        time.sleep(5)
layout.checkpoint = checkpoint
from pipelines.cli import main
sys.exit(main(sys.argv[3:]))
"""


class Child:
    """A process whose stdout is read as it comes, so a test can act when a line appears."""

    def __init__(self, args):
        self.proc = subprocess.Popen(args, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.lines: list[str] = []
        self.seen = threading.Event()
        self.stderr = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._err = threading.Thread(target=self._read_err, daemon=True)
        self._err.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("CHECKPOINT publishing"):
                self.seen.set()

    def _read_err(self):
        self.stderr = self.proc.stderr.read()

    def kill(self, sig) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=120)
        self._reader.join(timeout=10)
        self._err.join(timeout=10)
        return code


def _after_kill(child: Child, code: int, sig, out: Path, tree: dict, previous: str, new: str) -> str:
    """The outputs after a killed run: the previous run's or the new one's, whole. SIGTERM is one line."""
    assert "Traceback" not in child.stderr, child.stderr[-2000:]
    if sig == signal.SIGTERM and code == 1:
        lines = child.stderr.strip().splitlines()
        assert len(lines) == 1 and "interrupted" in lines[0], child.stderr
    assert code in (0, 1, -signal.SIGKILL, -signal.SIGTERM), (code, child.stderr[-2000:])
    got = label_of(whole(out), tree["states"])
    assert got in (previous, new), (got, previous, new)
    if code == 0:
        assert got == new
    return got


def test_runs_killed_at_random_moments_leave_one_whole_run(tree):
    """Six CLI runs killed by a timer anywhere in the run (SIGKILL and SIGTERM in turn), alternating the two
    inputs, then one killed by a timer inside the final swap (slowed at every publishing moment)."""
    out, states = tree["out"], tree["states"]
    rng = random.Random(20260314)
    outcomes = []
    current = label_of(whole(out), states)
    for i in range(6):
        new = _other(current)
        sig = signal.SIGKILL if i % 2 == 0 else signal.SIGTERM
        child = Child([CLI, "run", "--input", str(tree["inputs"][new]), "--output", str(out), *RULE_SET])
        delay = rng.uniform(0.5, 16.0)
        time.sleep(delay)
        code = child.kill(sig)
        current = _after_kill(child, code, sig, out, tree, _other(new), new)
        outcomes.append((sig.name, round(delay, 1), code, current == new))
    # Inside the final swap: wait for publishing to begin, then a timer within the slowed window.
    new = _other(current)
    child = Child([sys.executable, "-c", WRAPPER, "slow", "0.25", "run", "--input", str(tree["inputs"][new]),
                   "--output", str(out), *RULE_SET])
    assert child.seen.wait(timeout=180), child.lines[-20:]
    time.sleep(rng.uniform(0.0, 1.5))
    code = child.kill(signal.SIGTERM)
    current = _after_kill(child, code, signal.SIGTERM, out, tree, _other(new), new)
    outcomes.append(("SIGTERM in swap", code, current == new))
    print(outcomes)


PUBLISH_CHILD = """
import os, shutil, signal, sys, time
from pathlib import Path
from assets.publish import layout
root, source, run_id, mode, arg = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
def checkpoint(name):
    print("CHECKPOINT " + name, flush=True)
    if mode == "slow":
        time.sleep(float(arg))
    elif mode == "kill-at" and name == arg.rsplit(":", 1)[0]:
        os.kill(os.getpid(), int(arg.rsplit(":", 1)[1]))
        time.sleep(5)
layout.checkpoint = checkpoint
with layout.locked(root):
    layout.recover(root)
    version = root / layout.VERSIONS / run_id
    shutil.copytree(source, version)
    checkpoint("copied")
    layout.publish_version(root, version, stamp=time.strftime("%Y-%m-%d"), keep_days=90)
print("DONE", flush=True)
"""
# Every moment of the final swap when all links are in place (steady state), in order.
SWAP_MOMENTS = ("copied", "publishing", "pointer made", "pointer flipped", "archive built", "archived", "swept")
FLIPPED_AT = SWAP_MOMENTS.index("pointer flipped")


def _publish_child(tree, new: str, mode: str, arg: str) -> subprocess.Popen:
    import uuid

    return subprocess.Popen(
        [sys.executable, "-c", PUBLISH_CHILD, str(tree["out"]), str(tree["versions"][new]), str(uuid.uuid4()),
         mode, arg], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kills_inside_the_final_swap_leave_one_whole_run(tree):
    """The publishing step alone, in a child process: killed at each of its moments with SIGKILL and SIGTERM,
    then by random timers while every moment is slowed; the pointer flip decides which run is seen."""
    out, states = tree["out"], tree["states"]
    current = label_of(whole(out), states)
    kills = 0
    for moment_index, moment in enumerate(SWAP_MOMENTS):
        for sig in (signal.SIGKILL, signal.SIGTERM):
            new = _other(current)
            child = _publish_child(tree, new, "kill-at", f"{moment}:{int(sig)}")
            _, err = child.communicate(timeout=60)
            assert child.returncode == -sig, (moment, child.returncode, err)
            got = label_of(whole(out), states)
            assert got == (new if moment_index >= FLIPPED_AT else current), (moment, got)
            current, kills = got, kills + 1
    rng = random.Random(7)
    for _ in range(10):
        new = _other(current)
        child = _publish_child(tree, new, "slow", "0.05")
        time.sleep(rng.uniform(0.05, 0.6))
        child.send_signal(rng.choice([signal.SIGKILL, signal.SIGTERM]))
        child.communicate(timeout=60)
        got = label_of(whole(out), states)
        assert got in (current, new)
        current, kills = got, kills + 1
    assert kills == 2 * len(SWAP_MOMENTS) + 10


def test_the_next_good_run_leaves_no_scratch(tree):
    """After all the kills above: one good run, and nothing but the current version remains."""
    out = tree["out"]
    # What older layouts and killed runs of any kind leave, planted on top.
    (out / ".staging-0badc0de").mkdir()
    (out / ".previous-0badc0de").mkdir()
    (out / ".versions" / "never-published").mkdir(parents=True)
    (out / ".dashboards.new-0badc0de").mkdir()
    (layout.current_version(out) / "exports" / ".mri_classification.csv.tmp").write_text("half")
    current = label_of(whole(out), tree["states"])
    new = _other(current)
    run_audit(tree["inputs"][new], out, rule_sets=["standard"], quiet=True)
    assert label_of(whole(out), tree["states"]) == new
    assert scratch(out) == []


def test_a_second_run_on_the_same_output_fails_at_once(tree):
    out = tree["out"]
    first = Child([CLI, "run", "--input", str(tree["inputs"]["A"]), "--output", str(out), *RULE_SET])
    try:
        deadline = time.time() + 120
        while (out / layout.LOCK).read_text().strip() != str(first.proc.pid):
            assert time.time() < deadline and first.proc.poll() is None, first.stderr
            time.sleep(0.1)
        started = time.time()
        second = subprocess.run([CLI, "run", "--input", str(tree["inputs"]["B"]), "--output", str(out), *RULE_SET],
                                capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
        assert second.returncode == 1
        assert second.stderr.strip().splitlines() == [
            f"imaging-audit: another run is writing {out} (pid {first.proc.pid})"]
        assert time.time() - started < 30  # start-up only: it did not wait for the lock
    finally:
        first.kill(signal.SIGKILL)
    label_of(whole(out), tree["states"])


# --- small inputs ------------------------------------------------------------------------------------------

@pytest.fixture
def small(tmp_path):
    folder = tmp_path / "in"
    write_csv(folder / "referrals.csv", [referral()])
    write_csv(folder / "scans.csv", [scan()])
    write_csv(folder / "clinical_events.csv", [event()])
    return folder


def _chattr(flag: str, path: Path) -> bool:
    """Set or clear the immutable flag on `path` and everything under it (links have no flags)."""
    paths = [str(p) for p in [path, *path.rglob("*")] if not p.is_symlink()]
    return shutil.which("chattr") is not None and subprocess.run(
        ["chattr", flag, *paths], capture_output=True).returncode == 0


@pytest.mark.parametrize("kind", ["read-only folder", "read-only tree", "a file"])
def test_an_unwritable_output_is_one_line_and_exit_2(small, tmp_path, capsys, kind):
    out = tmp_path / "out"
    if kind == "a file":
        out.write_text("not a folder")
    else:
        if kind == "read-only tree":
            assert main(["run", "--input", str(small), "--output", str(out), *RULE_SET]) == 0
        else:
            out.mkdir()
        capsys.readouterr()
        if os.geteuid() == 0:  # root writes through file modes: make the tree immutable instead
            if not _chattr("+i", out):
                pytest.skip("running as root without chattr +i: cannot make a folder unwritable")
        else:
            for p in [out, *out.rglob("*")]:
                if not p.is_symlink():
                    p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        code = main(["run", "--input", str(small), "--output", str(out), *RULE_SET])
        err = capsys.readouterr().err
    finally:
        if kind != "a file":
            if os.geteuid() == 0:
                _chattr("-i", out)
            else:
                for p in [out, *out.rglob("*")]:
                    if not p.is_symlink():
                        p.chmod(0o755 if p.is_dir() else 0o644)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"imaging-audit: cannot write to the output folder {out}"), err
    if kind == "read-only tree":
        whole(out)


def _one_disk_full_line(err: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("imaging-audit: no space left on the disk holding the output"), err
    assert "Traceback" not in err and "Errno" not in err


def test_a_full_disk_while_writing_is_one_line_and_the_previous_outputs_stay(small, tmp_path, capsys, monkeypatch):
    """The file system fills while a step writes (simulated: the export's writer gets ENOSPC)."""
    import errno

    import assets.publish.files as files

    out = tmp_path / "out"
    assert main(["run", "--input", str(small), "--output", str(out), *RULE_SET]) == 0
    before = whole(out)
    capsys.readouterr()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files, "copy_query_to_csv", full)
    assert main(["run", "--input", str(small), "--output", str(out), *RULE_SET]) == 2
    _one_disk_full_line(capsys.readouterr().err)
    assert whole(out) == before and scratch(out) == []  # the unfinished version is gone, space given back


def test_a_really_full_disk_is_one_line(small, tmp_path):
    """A 3 MB tmpfs (needs root to mount; the simulated test above covers every machine)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (not root)")
    try:
        done = subprocess.run([CLI, "run", "--input", str(small), "--output", str(mount / "out"), *RULE_SET],
                              capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
        assert done.returncode == 2, done.stderr
        _one_disk_full_line(done.stderr)
        assert os.listdir(mount / "out" / layout.VERSIONS) == []  # nothing half-written stays
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def test_an_output_folder_with_a_quote_and_a_space(small, tmp_path):
    """Paths reach SQL as bound parameters or quoted literals (COPY ... TO, SET temp_directory, ATTACH)."""
    out = tmp_path / "O'Brien audit"
    done = subprocess.run([CLI, "run", "--input", str(small), "--output", str(out)], capture_output=True,
                          text=True, cwd=REPO_ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    whole(out)
    from assets.classify.sensitivity import what_if

    assert len(what_if(out / "warehouse.duckdb", "standard", early_mri_days=28)) == 1


# --- the archive -------------------------------------------------------------------------------------------

def test_a_rerun_keeps_earlier_days_and_old_days_are_pruned(small, tmp_path, monkeypatch):
    import pipelines.cli as cli

    out = tmp_path / "out"
    monkeypatch.setattr(cli, "_today", lambda tz: "2026-03-01")
    run_audit(small, out, rule_sets=["standard"], quiet=True)
    archive = out / "archive"
    first = (archive / "2026-03-01" / "reports" / "index.html").read_text()
    for day in ("2026-02-20", "2025-06-01"):  # a recent day and one beyond the retention
        shutil.copytree(archive / "2026-03-01", archive / day)
    (archive / "notes").mkdir()  # not a dated folder: never removed
    monkeypatch.setattr(cli, "_today", lambda tz: "2026-03-02")
    monkeypatch.setenv("IMAGING_AUDIT_ARCHIVE_DAYS", "30")
    run_audit(small, out, rule_sets=["standard"], quiet=True)
    assert sorted(p.name for p in archive.iterdir()) == ["2026-02-20", "2026-03-01", "2026-03-02", "notes"]
    assert (archive / "2026-03-01" / "reports" / "index.html").read_text() == first
    for day in ("2026-03-01", "2026-03-02"):
        assert {p.name for p in (archive / day).iterdir()} == {"dashboards", "reports"}
    # The same day again: only that day's copy is replaced.
    run_audit(small, out, rule_sets=["standard"], quiet=True)
    assert sorted(p.name for p in archive.iterdir()) == ["2026-02-20", "2026-03-01", "2026-03-02", "notes"]
    assert scratch(out) == []


def test_retention_zero_keeps_every_day(tmp_path):
    archive = tmp_path / "archive"
    for day in ("2020-01-01", "2025-12-31", "2026-03-01"):
        (archive / day / "reports").mkdir(parents=True)
    assert layout.prune_archive(archive, "2026-03-02", 0) == []
    assert layout.prune_archive(archive, "2026-03-02", 90) == ["2020-01-01"]
    assert sorted(p.name for p in archive.iterdir()) == ["2025-12-31", "2026-03-01"]


def test_the_archive_setting_is_checked(small, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IMAGING_AUDIT_ARCHIVE_DAYS", "ninety")
    assert main(["run", "--input", str(small), "--output", str(tmp_path / "out")]) == 2
    assert "IMAGING_AUDIT_ARCHIVE_DAYS" in capsys.readouterr().err


# --- older layouts and the nightly job ---------------------------------------------------------------------

def _as_older_layout(out: Path) -> None:
    """Turn a tree into the layout of earlier versions: real folders at the contract paths, scratch beside."""
    version = layout.current_version(out)
    for name in layout.PARTS:
        (out / name).unlink()
        shutil.move(str(version / name), str(out / name))
    (out / layout.CURRENT).unlink()
    shutil.rmtree(out / layout.VERSIONS)
    (out / ".staging-1234abcd" / "dashboards").mkdir(parents=True)
    (out / ".previous-1234abcd").mkdir()


def test_a_run_on_an_older_layout_moves_to_the_new_one(small, tmp_path):
    out = tmp_path / "out"
    run_audit(small, out, rule_sets=["standard"], quiet=True)
    _as_older_layout(out)
    assert (out / "exports").is_dir() and not (out / "exports").is_symlink()
    run_audit(small, out, rule_sets=["standard"], quiet=True)
    whole(out)
    assert scratch(out) == []


def test_the_nightly_job_makes_the_same_layout_and_carries_an_older_warehouse(tmp_path):
    """The nightly path (run_partition, as the schedule runs it) makes the same layout, publishes its run as one
    version, records its run per part, and takes an older layout's warehouse with it."""
    landing, out = tmp_path / "landing", tmp_path / "out"
    write_csv(landing / "referrals.csv", [referral()])
    write_csv(landing / "scans.csv", [scan()])
    write_csv(landing / "scans_2025-03-14.csv", [scan(scan_id="S2")])
    first = run_partition(landing, out, "2025-01-01")
    state = whole(out)
    assert state["run"] == first.run_id and state["scans"] == 1
    version = layout.current_version(out)
    _as_older_layout(out)
    second = run_partition(landing, out, "2025-03-14")
    state = whole(out)
    assert state["run"] == second.run_id and state["scans"] == 2  # the older warehouse was carried over
    assert layout.current_version(out) != version and scratch(out) == []
