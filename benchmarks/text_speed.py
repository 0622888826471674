"""The text stage at scale: generated input with the generator's indications, the whole run and the nightly
increment with text reading on.

    python -m benchmarks.text_speed [--scans 1000000] [--work benchmarks/data/text]

Measures, each in a child process on this machine: the share of distinct texts among referrals; the text stage's
own time and texts per second on a first run (every distinct text parsed) and on the nightly increment (only
texts not seen before); the whole `imaging-audit run`; the nightly Dagster job for the last day's partition on
top of the warehouse holding everything before it. Writes benchmarks/text_speed.json (read by
benchmarks/report.py). Nothing else should run on the machine meanwhile.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).parent / "imaging-audit")
PARSED = re.compile(r"([\d,]+) new texts parsed in ([\d.]+) s")
STEP = re.compile(r"^  ok (\S+) \(([\d.]+) s\)", re.M)

NIGHTLY = """
import sys, time
import dagster as dg
from pipelines.definitions import defs
from pipelines.jobs import NIGHTLY_JOB_NAME
started = time.perf_counter()
result = defs.resolve_job_def(NIGHTLY_JOB_NAME).execute_in_process(
    partition_key=sys.argv[3], instance=dg.DagsterInstance.ephemeral(),
    run_config={"resources": {"landing": {"config": {"input_dir": sys.argv[1]}},
                              "warehouse": {"config": {"output_dir": sys.argv[2]}}},
                "loggers": {"progress": {}}})
assert result.success
print(f"NIGHTLY {time.perf_counter() - started:.1f}")
"""


def _run(args: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{args[:3]} failed: {done.stderr[-2000:]}")
    return time.perf_counter() - started, done.stdout


def _text_figures(log: str) -> dict:
    m = PARSED.search(log)
    steps = {name: float(s) for name, s in STEP.findall(log)}
    texts, seconds = (int(m.group(1).replace(",", "")), float(m.group(2))) if m else (0, 0.0)
    return {"texts_parsed": texts, "parse_seconds": seconds, "text_step_seconds": steps.get("indication_findings"),
            "texts_per_second": round(texts / seconds) if seconds else None, "steps": steps}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=1_000_000)
    parser.add_argument("--work", default=str(ROOT / "benchmarks" / "data" / "text"))
    parser.add_argument("--reuse", action="store_true", help="keep the generated input of an earlier run")
    args = parser.parse_args(argv)
    from assets.text.reader import load_lexicon
    from data_samples.generate import generate

    work = Path(args.work)
    full, before = work / "input", work / "before"
    if not (args.reuse and full.is_dir() and before.is_dir()):
        shutil.rmtree(work, ignore_errors=True)
        generate(full, n_scans=args.scans, seed=2026, fmt="parquet", drop_days=1)
    for old in ("out-full", "out-nightly"):
        shutil.rmtree(work / old, ignore_errors=True)
    names = [p.name for p in full.iterdir()]
    day = sorted({m.group(1) for f in names if (m := re.search(r"_(\d{4}-\d{2}-\d{2})\.", f))})[-1]
    if not before.is_dir():  # the input before the last nightly drop
        shutil.copytree(full, before, ignore=lambda _, names: [n for n in names if day in n or n == "truth"])
    import duckdb

    con = duckdb.connect()
    distinct, total = con.execute(
        f"SELECT count(DISTINCT clinical_indication), count(*) FROM read_parquet('{full}/referrals*.parquet')"
    ).fetchone()
    con.close()
    whole_s, whole_log = _run([CLI, "run", "--input", str(full), "--output", str(work / "out-full")])
    base_s, _ = _run([CLI, "run", "--input", str(before), "--output", str(work / "out-nightly")])
    nightly_s, nightly_log = _run([sys.executable, "-c", NIGHTLY, str(full), str(work / "out-nightly"), day])
    result = {
        "scans": args.scans, "referrals": total, "distinct_texts": distinct,
        "distinct_share": round(distinct / total, 4), "nightly_partition": day,
        "whole_run_seconds": round(whole_s, 1), "whole_run_text": _text_figures(whole_log),
        "nightly_seconds": round(nightly_s, 1), "nightly_text": _text_figures(nightly_log),
        "baseline_run_seconds": round(base_s, 1),
        "lexicon": load_lexicon().version,
        "machine": {"cpus": __import__("os").cpu_count(), "platform": platform.platform()},
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    (ROOT / "benchmarks" / "text_speed.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
