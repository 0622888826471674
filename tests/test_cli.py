"""`imaging-audit run` as the contract states it: outputs, exit codes, messages, idempotence, atomicity."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from assets.ingest.contract import TABLES
from pipelines.cli import RunFailed, run_audit
from tests.conftest import REPO_ROOT, event, referral, scan, write_csv

CLI = str(Path(sys.executable).parent / "imaging-audit")


def _cli(*args, cwd=REPO_ROOT):
    return subprocess.run([CLI, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def _tree_digest(folder: Path, data_only: bool = False) -> dict[str, str]:
    """File digests under `folder`; `data_only` skips pages that carry their build time (Data Docs, dashboards)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not (data_only and p.suffix in (".html", ".css", ".js", ".png", ".json"))
    }


@pytest.fixture
def small_input(tmp_path):
    folder = tmp_path / "input"
    write_csv(folder / "referrals.csv", [
        referral(referral_id="R1", patient_id="P1"),
        referral(referral_id="R2", patient_id="P2", requested_procedure_code="70551", diagnosis_codes="G43.909"),
        referral(referral_id="R3", patient_id="P3", diagnosis_codes=""),  # quarantined: no indication codes
    ])
    write_csv(folder / "scans.csv", [
        scan(scan_id="S1", patient_id="P1", referral_id="R1"),
        scan(scan_id="S2", patient_id="P2", procedure_code="70551", referral_id="R2"),
        scan(scan_id="S3", patient_id="P9", referral_id=""),
        scan(scan_id="S4", patient_id="P1", scan_date="not a date"),
    ])
    write_csv(folder / "clinical_events_2025-03-04.csv", [event()])
    return folder


def test_run_writes_the_contract_outputs(small_input, tmp_path):
    out = tmp_path / "out"
    done = _cli("run", "--input", str(small_input), "--output", str(out))
    assert done.returncode == 0, done.stderr
    for path in ("warehouse.duckdb", "exports/mri_classification.csv", "dashboards/index.html",
                 "quality/quarantine.csv", "quality/reconciliation.csv"):
        assert (out / path).is_file(), path
    # Progress a person can follow: each stage's steps, with the files' row counts.
    for text in ("-> scans", "ok mri_classification", "scans.csv: 4 rows in, 3 loaded, 1 quarantined", "done in"):
        assert text in done.stdout
    con = duckdb.connect(str(out / "warehouse.duckdb"), read_only=True)
    try:
        table_rows = con.execute("SELECT count(*) FROM mri_classification").fetchone()[0]
        decided = con.execute(
            "SELECT scan_id, category FROM mri_classification WHERE rule_set = 'standard' ORDER BY 1"
        ).fetchall()
        rule_sets = con.execute("SELECT count(DISTINCT rule_set) FROM mri_classification").fetchone()[0]
        quarantined = con.execute("SELECT count(*) FROM quarantine").fetchone()[0]
    finally:
        con.close()
    csv_rows = (out / "exports/mri_classification.csv").read_text().strip().splitlines()
    assert len(csv_rows) - 1 == table_rows
    # S1: back pain coded 13 days before the scan, no red flag; S2: brain MRI; S3: nothing to judge by.
    assert decided == [
        ("S1", "potentially_unnecessary"), ("S2", "out_of_scope"), ("S3", "insufficient_information")
    ]
    assert table_rows == 3 * rule_sets
    assert quarantined == 2
    assert "quarantined" in (out / "dashboards/index.html").read_text()
    # One row per scan per rule set: S4 was quarantined, so three scans.
    assert not list(out.glob(".staging-*")) and not list(out.glob(".previous-*"))


def test_running_twice_gives_the_same_results(small_input, tmp_path):
    out = tmp_path / "out"
    assert _cli("run", "--input", str(small_input), "--output", str(out)).returncode == 0
    first = _tree_digest(out / "exports", True) | _tree_digest(out / "quality", True)
    with duckdb.connect(str(out / "warehouse.duckdb"), read_only=True) as con:
        before = con.execute("SELECT * FROM mri_classification ORDER BY ALL").fetchall()
    assert _cli("run", "--input", str(small_input), "--output", str(out)).returncode == 0
    assert _tree_digest(out / "exports", True) | _tree_digest(out / "quality", True) == first
    with duckdb.connect(str(out / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT * FROM mri_classification ORDER BY ALL").fetchall() == before


@pytest.mark.parametrize("table", ["referrals", "scans", "clinical_events"])
def test_bad_input_is_one_line_naming_file_and_column_and_keeps_previous_outputs(small_input, tmp_path, table):
    out = tmp_path / "out"
    assert _cli("run", "--input", str(small_input), "--output", str(out)).returncode == 0
    before = _tree_digest(out)

    column = TABLES[table].required[1]
    bad = next(p for p in small_input.iterdir() if p.name.startswith(table))
    rows = {"referrals": referral(), "scans": scan(), "clinical_events": event()}[table]
    write_csv(bad, [rows], columns=[c for c in TABLES[table].names if c != column])

    done = _cli("run", "--input", str(small_input), "--output", str(out))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and bad.name in lines[0] and repr(column) in lines[0]
    assert "Traceback" not in done.stderr + done.stdout
    assert _tree_digest(out) == before


@pytest.mark.parametrize(
    "args,message",
    [
        (["--input", "/nonexistent/folder"], "does not exist"),
        (["--rule-set", "no-such-set"], "unknown rule set no-such-set"),
        (["--input-format", "claims"], "no medical_claim.csv"),
    ],
)
def test_unusable_requests_exit_2_with_one_line(small_input, tmp_path, args, message):
    if "--input" not in args:
        args = ["--input", str(small_input), *args]
    done = _cli("run", *args, "--output", str(tmp_path / "out"))
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr
    assert "Traceback" not in done.stderr


def test_a_failing_step_leaves_the_previous_outputs_in_place(small_input, tmp_path, monkeypatch):
    out = tmp_path / "out"
    run_audit(small_input, out, quiet=True)
    before = _tree_digest(out)

    import assets.publish.dashboard as dashboard

    def broken(*_args, **_kwargs):
        raise RuntimeError("disk full while rendering")

    monkeypatch.setattr(dashboard, "render_index", broken)
    with pytest.raises(RunFailed, match="disk full"):
        run_audit(small_input, out, quiet=True)
    assert _tree_digest(out) == before
    assert not list(out.glob(".staging-*"))


def test_default_run_on_the_committed_sample(tmp_path):
    """The README's main command: `imaging-audit run` with its defaults, from the project root."""
    if not (REPO_ROOT / "data_samples" / "scans.csv").exists():
        pytest.fail("data_samples/ has no sample: regenerate it (see data_samples/README.md)")
    out = tmp_path / "out"
    done = _cli("run", "--output", str(out))
    assert done.returncode == 0, done.stderr
    with duckdb.connect(str(out / "warehouse.duckdb"), read_only=True) as con:
        loaded = con.execute("SELECT sum(rows_loaded), sum(rows_quarantined), sum(rows_in) FROM ingest_files").fetchone()
        scans = con.execute("SELECT count(*) FROM scans").fetchone()[0]
    assert loaded[0] + loaded[1] == loaded[2] and scans > 1000


def test_relative_input_and_output_paths_work(small_input, tmp_path):
    """The README's `make run` passes relative paths (data_samples, output)."""
    shutil_copy = __import__("shutil").copytree
    shutil_copy(small_input, tmp_path / "in")
    done = _cli("run", "--input", "in", "--output", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "quality" / "data_docs" / "index.html").is_file()
    assert (tmp_path / "out" / "dashboards" / "index.html").is_file()
