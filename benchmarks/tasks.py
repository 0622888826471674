"""One measured task per child process, so each gets its own peak memory (`python -m benchmarks.tasks ...`).

    nightly   run the nightly Dagster job for one partition (what the schedule launches), step lines on stdout
    classify  classify every scan of a warehouse copy from scratch under the given rule sets
    floor     DuckDB reading the input files and aggregating them once (the lower bound for any classifier)
    pandas    the pandas baseline of the `standard` rule set, optionally checked against the warehouse

Each task prints one JSON line (prefixed `RESULT `) with what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path


def _emit(result: dict) -> None:
    print("RESULT " + json.dumps(result), flush=True)


def nightly(args) -> None:
    import dagster as dg

    from pipelines.definitions import defs
    from pipelines.jobs import NIGHTLY_JOB_NAME

    started = time.perf_counter()
    result = defs.resolve_job_def(NIGHTLY_JOB_NAME).execute_in_process(
        partition_key=args.partition,
        instance=dg.DagsterInstance.ephemeral(),
        run_config={
            "resources": {
                "landing": {"config": {"input_dir": str(args.input)}},
                "warehouse": {"config": {"output_dir": str(args.output)}},
            },
            "loggers": {"progress": {}},
        },
        raise_on_error=False,
    )
    modes = {}
    for event in result.get_asset_materialization_events():
        m = event.materialization
        if m.asset_key.path[-1] in ("mri_classification", "hedis_lbp"):
            modes[m.asset_key.path[-1]] = {k: v.value for k, v in m.metadata.items()
                                           if k in ("mode", "scans_classified")}
    _emit({"success": result.success, "run_seconds": time.perf_counter() - started, "modes": modes})


def classify(args) -> None:
    import duckdb

    from assets.classify.assets import classify_scans
    from assets.classify.rule_sets import load_rule_sets

    scratch = Path(args.scratch)
    rule_sets = load_rule_sets(args.rule_set or None)
    seconds = []
    for _ in range(args.repeats):
        # A fresh copy each time, flushed to disk first: the copy's write-back must not compete with the run.
        shutil.copy(args.warehouse, scratch)
        os.sync()
        time.sleep(2)
        con = duckdb.connect(str(scratch))
        con.execute("SET enable_progress_bar = false")
        started = time.perf_counter()
        result = classify_scans(con, rule_sets, full_refresh=True)
        con.execute("CHECKPOINT")  # the verdicts are on disk, not only in the write-ahead log
        seconds.append(time.perf_counter() - started)
        con.close()
        scratch.unlink()
    scans = result["scans_classified"]
    _emit({"rule_sets": [r.name for r in rule_sets], "scans": scans, "seconds": seconds})


def floor(args) -> None:
    """Read the three inputs and aggregate once per scan: each scan's history up to its date and its referral.
    Any classifier has to do at least this much work."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    src = Path(args.input)
    ext = args.format

    def files(table: str) -> str:
        return f"'{src}/{table}*.{ext}'"

    reader = "read_parquet" if ext == "parquet" else "read_csv"
    sql = f"""
        WITH s AS (SELECT scan_id, patient_id, CAST(scan_date AS DATE) AS scan_date, referral_id
                   FROM {reader}({files('scans')})),
             r AS (SELECT referral_id, CAST(referral_date AS DATE) AS referral_date
                   FROM {reader}({files('referrals')})),
             e AS (SELECT patient_id, CAST(event_date AS DATE) AS event_date, code
                   FROM {reader}({files('clinical_events')}))
        SELECT count(*), sum(events), count(referral_date) FROM (
            SELECT s.scan_id, count(e.code) AS events, any_value(r.referral_date) AS referral_date
            FROM s
            LEFT JOIN r ON r.referral_id = s.referral_id
            LEFT JOIN e ON e.patient_id = s.patient_id AND e.event_date <= s.scan_date
            GROUP BY s.scan_id
        )"""
    seconds = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        scans, events, linked = con.execute(sql).fetchall()[0]
        seconds.append(time.perf_counter() - started)
    _emit({"scans": scans, "events_joined": int(events), "referrals_joined": linked, "seconds": seconds})


def pandas_baseline(args) -> None:
    from benchmarks.pandas_baseline import classify_standard

    seconds = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        verdicts = classify_standard(Path(args.input))
        seconds.append(time.perf_counter() - started)
    result = {"scans": len(verdicts), "seconds": seconds}
    if args.warehouse:
        import duckdb

        con = duckdb.connect(str(args.warehouse), read_only=True)
        ours = con.execute(
            "SELECT scan_id, category, reasons FROM mri_classification WHERE rule_set = 'standard'"
        ).df()
        con.close()
        both = ours.merge(verdicts, on="scan_id", how="outer", suffixes=("_ours", "_pandas"), indicator=True)
        matched = both["_merge"] == "both"
        result.update({
            "compared": int(len(both)),
            "category_agree": int((matched & (both.category_ours == both.category_pandas)).sum()),
            "reasons_agree": int((matched & (both.reasons_ours == both.reasons_pandas)).sum()),
        })
    _emit(result)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tasks")
    sub = parser.add_subparsers(dest="task", required=True)
    p = sub.add_parser("nightly")
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--partition", required=True)
    p.set_defaults(func=nightly)
    p = sub.add_parser("classify")
    p.add_argument("--warehouse", required=True)
    p.add_argument("--scratch", required=True)
    p.add_argument("--rule-set", action="append")
    p.add_argument("--repeats", type=int, default=3)
    p.set_defaults(func=classify)
    p = sub.add_parser("floor")
    p.add_argument("--input", required=True)
    p.add_argument("--format", default="parquet")
    p.add_argument("--repeats", type=int, default=3)
    p.set_defaults(func=floor)
    p = sub.add_parser("pandas")
    p.add_argument("--input", required=True)
    p.add_argument("--warehouse")
    p.add_argument("--repeats", type=int, default=1)
    p.set_defaults(func=pandas_baseline)
    args = parser.parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
