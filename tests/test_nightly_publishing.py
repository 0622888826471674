"""The nightly job publishes a run as one, like the CLI: its steps build a copy of the current version, and
its last step (`published_outputs`) flips `.current`. A nightly run killed at any moment (at each named moment
of building and publishing, and by random timers) leaves the previous run's outputs or the new run's, whole;
the next run leaves no scratch; a run that would drop rows another run published meanwhile is refused."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from assets.partitions import BASELINE_PARTITION
from assets.publish import layout
from tests.conftest import REPO_ROOT, run_partition
from tests.test_publishing import scratch, whole

NEW_DAY = "2025-12-31"

# The nightly job for one partition in a child process, with layout.checkpoint replaced: it prints each moment
# and sends itself a signal at one named moment, or sleeps at each (so a timer lands inside the swap).
NIGHTLY_CHILD = """
import os, sys, time
from assets.publish import layout
landing, out, partition, mode, arg = sys.argv[1:6]
def checkpoint(name):
    print("CHECKPOINT " + name, flush=True)
    if mode == "slow":
        time.sleep(float(arg))
    elif mode == "kill-at" and name == arg.rsplit(":", 1)[0]:
        os.kill(os.getpid(), int(arg.rsplit(":", 1)[1]))
        time.sleep(5)
layout.checkpoint = checkpoint
from tests.conftest import run_partition
run_partition(landing, out, partition)
print("DONE", flush=True)
"""


def _nightly_child(landing: Path, out: Path, mode: str, arg: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", NIGHTLY_CHILD, str(landing), str(out), NEW_DAY, mode, arg],
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def nightly(tmp_path_factory):
    """A landing folder with a baseline and two nightly drops; an output tree holding the baseline and the first
    drop (the previous state), and the state a completed run of the second drop gives (built on a copy)."""
    from data_samples.generate import generate

    base = tmp_path_factory.mktemp("nightly")
    landing, out = base / "landing", base / "out"
    generate(landing, n_scans=300, seed=21, drop_days=2)
    # The new day's drop: 30 scans moved out of the baseline file (their referrals stay in the baseline).
    lines = (landing / "scans.csv").read_text().splitlines(keepends=True)
    (landing / "scans.csv").write_text("".join(lines[:-30]))
    (landing / f"scans_{NEW_DAY}.csv").write_text(lines[0] + "".join(lines[-30:]))
    run_partition(landing, out, BASELINE_PARTITION)
    first = run_partition(landing, out, "2025-12-30")
    previous = whole(out)
    assert previous["run"] == first.run_id
    assert layout.current_version(out).name == first.run_id  # the run's own version became current
    ahead = base / "ahead"
    shutil.copytree(out, ahead, symlinks=True)
    run_partition(landing, ahead, NEW_DAY)
    new = whole(ahead)
    assert new["scans"] > previous["scans"]
    return {"landing": landing, "out": out, "previous": previous, "new": new}


def _seen(out: Path, nightly: dict, before: dict) -> str:
    """'unchanged' when the tree shows exactly the state before the kill (same run), 'new' when it shows another
    completed run of the new day (whole, with the data a completed run gives); anything else fails."""
    state = whole(out)
    if state == before:
        return "unchanged"
    assert state["run"] != before["run"]
    assert (state["scans"], state["data"]) == (nightly["new"]["scans"], nightly["new"]["data"]), state
    return "new"


# The moments of a nightly run, in order: the copy, each part swapped into the copy, then the final switch.
MOMENTS = ("copied", "built quality", "built dashboards", "built reports", "publishing", "pointer made",
           "pointer flipped", "archived", "swept")
FLIPPED_AT = MOMENTS.index("pointer flipped")


def test_nightly_runs_killed_at_each_moment_and_at_random_leave_one_whole_run(nightly):
    out = nightly["out"]
    kills = []
    for index, moment in enumerate(MOMENTS):
        sig = signal.SIGKILL if index % 2 == 0 else signal.SIGTERM
        before = whole(out)
        child = _nightly_child(nightly["landing"], out, "kill-at", f"{moment}:{int(sig)}")
        stdout, stderr = child.communicate(timeout=300)
        # Dagster turns SIGTERM into an interruption of the step (exit 1); SIGKILL ends the process there.
        assert child.returncode in ((-sig, 1) if sig == signal.SIGTERM else (-sig,)), (
            moment, child.returncode, stderr[-3000:])
        assert f"CHECKPOINT {moment}" in stdout
        got = _seen(out, nightly, before)
        assert got == ("new" if index >= FLIPPED_AT else "unchanged"), (moment, got)
        kills.append((moment, sig.name, got))
    rng = random.Random(20261202)
    for _ in range(4):
        before = whole(out)
        child = _nightly_child(nightly["landing"], out, "slow", "0.2")
        time.sleep(rng.uniform(2.0, 40.0))  # anywhere in the run (about 30 s)
        child.send_signal(rng.choice([signal.SIGKILL, signal.SIGTERM]))
        child.communicate(timeout=300)
        kills.append(("timer", child.returncode, _seen(out, nightly, before)))
    assert len(kills) == len(MOMENTS) + 4
    print(kills)


def test_after_kills_the_next_nightly_run_leaves_no_scratch(nightly):
    out = nightly["out"]
    (out / layout.VERSIONS / "killed-run").mkdir(parents=True, exist_ok=True)
    (out / layout.VERSIONS / ".some-run.new-0badc0de").mkdir(exist_ok=True)
    result = run_partition(nightly["landing"], out, NEW_DAY)
    state = whole(out)
    assert state["run"] == result.run_id and (state["scans"], state["data"]) == (
        nightly["new"]["scans"], nightly["new"]["data"])
    assert scratch(out) == []
    assert os.listdir(out / layout.VERSIONS) == [result.run_id]
    assert (out / layout.ARCHIVE).is_dir() and any((out / layout.ARCHIVE).iterdir())


# --- the pieces: the copy, adoption by a re-execution, runs in progress, a run that lost the race ------------

def _tree_with_version(tmp_path: Path, name: str = "v1") -> Path:
    out = tmp_path / "out"
    version = layout.new_version(out, name)
    (version / "exports").mkdir()
    (version / "exports" / "a.csv").write_text("x\n")
    (version / layout.WAREHOUSE).write_bytes(b"db")
    layout.publish_version(out, version)
    return out


def test_the_copy_holds_every_part_and_names_its_base(tmp_path):
    out = _tree_with_version(tmp_path)
    copy = layout.stage_copy(out, "run-2")
    assert (copy / "exports" / "a.csv").read_text() == "x\n" and (copy / layout.WAREHOUSE).read_bytes() == b"db"
    assert (copy / layout.BASED_ON).read_text() == "v1"
    assert layout.stage_copy(out, "run-2") == copy  # later steps of the same run write into the same copy
    (copy / "exports" / "a.csv").write_text("y\n")
    assert (out / "exports" / "a.csv").read_text() == "x\n"  # readers see nothing until the flip
    layout.publish_version(out, copy)
    assert (out / "exports" / "a.csv").read_text() == "y\n" and not (copy / layout.BASED_ON).exists()


def test_a_re_execution_adopts_its_parents_unpublished_version(tmp_path):
    out = _tree_with_version(tmp_path)
    parent = layout.stage_copy(out, "parent-run")
    (parent / "exports" / "b.csv").write_text("loaded by the parent\n")
    child = layout.stage_copy(out, "child-run", adopt="parent-run")
    assert (child / "exports" / "b.csv").exists() and not parent.exists()
    # The current version is never adopted (it is not the parent's unpublished work).
    other = layout.stage_copy(out, "third-run", adopt="v1")
    assert layout.current_version(out).name == "v1" and other.name == "third-run"


def test_the_sweep_keeps_versions_of_runs_in_progress(tmp_path):
    out = _tree_with_version(tmp_path)
    layout.stage_copy(out, "running")
    layout.stage_copy(out, "dead")
    layout.recover(out, keep=frozenset({"running"}))
    assert sorted(os.listdir(out / layout.VERSIONS)) == ["running", "v1"]


def test_a_run_that_lost_the_race_is_refused_and_the_winner_stays(tmp_path):
    """Two nightly runs copied v1; the first publishes; the second would drop the first's rows: refused."""
    out = _tree_with_version(tmp_path)
    first, second = layout.stage_copy(out, "first"), layout.stage_copy(out, "second")
    layout.publish_version(out, first, keep=frozenset({"second"}))  # "second" is a run in progress
    with pytest.raises(layout.OutputsMoved, match="another run published"):
        layout.publish_version(out, second)
    assert layout.current_version(out).name == "first"


def test_the_losing_nightly_step_fails_with_one_line(tmp_path, monkeypatch):
    """Through Dagster: a nightly run whose base moved fails at `published_outputs` with the reason."""
    import dagster as dg

    from pipelines.definitions import defs
    from pipelines.jobs import NIGHTLY_JOB_NAME
    from tests.conftest import referral, scan, write_csv

    landing, out = tmp_path / "landing", tmp_path / "out"
    write_csv(landing / "referrals.csv", [referral()])
    write_csv(landing / "scans.csv", [scan()])
    run_partition(landing, out, BASELINE_PARTITION)
    raced = []

    def another_run_publishes_first(name):  # just before this run switches, another run switches
        if name == "publishing" and not raced:
            raced.append(True)
            running = frozenset(os.listdir(out / layout.VERSIONS))  # that run keeps runs in progress
            layout.publish_version(out, layout.stage_copy(out, "winner"), keep=running)

    monkeypatch.setattr(layout, "checkpoint", another_run_publishes_first)
    job = defs.resolve_job_def(NIGHTLY_JOB_NAME)
    result = job.execute_in_process(
        partition_key=BASELINE_PARTITION, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
        run_config={"resources": {"landing": {"config": {"input_dir": str(landing)}},
                                  "warehouse": {"config": {"output_dir": str(out)}}}},
    )
    assert raced and not result.success
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert [e.step_key for e in failures] == ["published_outputs"]
    assert "another run published" in failures[0].step_failure_data.error.message
    assert layout.current_version(out).name == "winner"


@pytest.mark.parametrize(("steps", "assets", "releases"), [
    (None, None, True),                                     # the whole job
    (None, [], True),                                       # the whole job, as Dagster records it
    (None, ["published_outputs", "scans"], True),           # a selection that ends in the switch
    (None, ["scans", "mri_classification"], False),         # some assets from the UI: written in place
    (["scans", "published_outputs"], None, True),           # a re-execution that reaches the switch
    (["scans"], None, False),
])
def test_which_runs_publish_as_one(steps, assets, releases):
    from types import SimpleNamespace

    import dagster as dg

    from assets.resources import runs_release_step

    run = SimpleNamespace(step_keys_to_execute=steps,
                          asset_selection=None if assets is None else frozenset(dg.AssetKey(a) for a in assets))
    assert runs_release_step(run) is releases
