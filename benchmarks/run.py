"""Benchmarks: the whole nightly run, each stage, and the comparisons, at 100k, 1M and 10M scans.

    make bench                          # 100k and 1M, three repeats (about 40 minutes on 2 cores)
    make bench SIZES=100k,1M,10M        # adds 10M (one repeat at 10M; about 30 minutes more)
    python -m benchmarks.run --sizes 100k --repeats 1      # a quick look

For each size it generates seeded input (Parquet; about 10 history events per scan; one year of data with the
last day as a nightly drop) under `benchmarks/data/` (git-ignored), then measures, each in a child process:

* the whole run, `imaging-audit run` (every stage, every output): wall time, each step's time from the run's
  own step log, peak memory of the process and within each stage (sampled from /proc every 50 ms);
* classification alone on that run's warehouse, from scratch: the `standard` rule set and all rule sets;
* the floor: DuckDB reading the same input files and aggregating them once per scan;
* the pandas baseline of the `standard` rule set (benchmarks/pandas_baseline.py), and at the smallest size
  whether it reaches the same verdicts as the pipeline, scan by scan;
* at 1M, the incremental nightly run: the Dagster job for the new day's partition on top of the warehouse
  that holds everything before it (what the schedule launches each night), in a fresh process.

Results go to `benchmarks/results/<size>.json`; `python -m benchmarks.report` turns them into RESULTS.md and
the plots. Timings are medians of the repeats; nothing else should run on the machine meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
SIZES = {"100k": 100_000, "300k": 300_000, "1M": 1_000_000, "3M": 3_000_000, "10M": 10_000_000}
SEED = 2026
# One year of data: the last day (about 1/365 of the volume) is the nightly drop of the incremental benchmark.
START, END = "2025-01-01", "2025-12-31"
STAGE_OF_STEP = {
    "referrals": "ingest", "scans": "ingest", "clinical_events": "ingest", "scan_links": "ingest",
    "data_quality_suites": "quality", "quarantine_report": "quality", "quarantine_report_rows_reconcile": "quality",
    "mri_classification": "classify", "hedis_lbp": "classify",
    "classification_export": "publish", "utilization_dashboard": "publish", "overtreatment_reports": "publish",
}
STEP_START = re.compile(r"^  -> (\S+)")
STEP_END = re.compile(r"^  ok (\S+) \(([\d.]+) s\)")


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def measure(cmd: list[str], log: Path) -> dict:
    """Run `cmd`; return wall time, peak RSS (whole and per step), step times, and its RESULT line if any."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    samples: list[tuple[float, float]] = []
    done = threading.Event()

    def sample():
        while not done.is_set():
            samples.append((time.perf_counter(), _rss_mb(proc.pid)))
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    steps: dict[str, dict] = {}
    result = None
    with open(log, "w") as out:
        for line in proc.stdout:
            out.write(line)
            now = time.perf_counter()
            if m := STEP_START.match(line):
                steps[m.group(1)] = {"start": now}
            elif m := STEP_END.match(line):
                step = steps.setdefault(m.group(1), {"start": now})
                step.update(end=now, seconds=float(m.group(2)))
            elif line.startswith("RESULT "):
                result = json.loads(line[len("RESULT "):])
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"benchmark step failed ({' '.join(cmd)}); see {log}")
    for step in steps.values():
        inside = [rss for t, rss in samples if step["start"] <= t <= step.get("end", wall + started)]
        step["peak_rss_mb"] = max(inside, default=0.0)
    stages: dict[str, dict] = {}
    for name, step in steps.items():
        stage = stages.setdefault(STAGE_OF_STEP.get(name, "other"), {"seconds": 0.0, "peak_rss_mb": 0.0})
        stage["seconds"] += step.get("seconds", 0.0)
        stage["peak_rss_mb"] = max(stage["peak_rss_mb"], step["peak_rss_mb"])
    return {
        "wall_seconds": wall,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "steps": {k: {"seconds": v.get("seconds"), "peak_rss_mb": v["peak_rss_mb"]} for k, v in steps.items()},
        "stages": stages,
        "result": result,
    }


def _python() -> str:
    return sys.executable


def _cli() -> str:
    return str(Path(sys.executable).with_name("imaging-audit"))


def _median(values):
    return statistics.median(values) if values else None


def generate_input(label: str, n: int, work: Path) -> tuple[Path, dict]:
    from data_samples.generate import generate

    folder = work / label / "input"
    stamp = folder / ".generated.json"
    if stamp.exists():
        return folder, json.loads(stamp.read_text())
    started = time.perf_counter()
    summary = generate(folder, n_scans=n, seed=SEED, fmt="parquet", start_date=START, end_date=END, drop_days=1)
    info = {
        "seconds": time.perf_counter() - started,
        "rows": summary.get("rows"),
        "bytes": sum(p.stat().st_size for p in folder.glob("*.parquet")),
        "drop_day": END,
    }
    stamp.write_text(json.dumps(info, default=str))
    return folder, info


def bench_size(label: str, n: int, work: Path, repeats: int, pandas_max: int, incremental_at: str) -> dict:
    print(f"== {label}: {n:,} scans", flush=True)
    data, generated = generate_input(label, n, work)
    base = work / label
    logs = base / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    out = {"label": label, "scans": n, "generated": generated, "repeats": repeats}

    runs = []
    for i in range(repeats):
        target = base / "output"
        shutil.rmtree(target, ignore_errors=True)
        run = measure([_cli(), "run", "--input", str(data), "--output", str(target)], logs / f"run{i + 1}.log")
        print(f"   whole run {i + 1}/{repeats}: {run['wall_seconds']:.1f} s, peak {run['peak_rss_mb']:,.0f} MB",
              flush=True)
        runs.append(run)
    out["whole_runs"] = runs
    warehouse = base / "output" / "warehouse.duckdb"
    out["warehouse_bytes"] = warehouse.stat().st_size
    import duckdb

    con = duckdb.connect(str(warehouse), read_only=True)
    out["rows"] = {t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]
                   for t in ("referrals", "scans", "clinical_events", "mri_classification")}
    con.close()

    out.update(measure_classification(base, repeats))
    out["floor"] = measure(
        [_python(), "-m", "benchmarks.tasks", "floor", "--input", str(data), "--repeats", str(repeats)],
        logs / "floor.log",
    )
    print(f"   floor: median {_median(out['floor']['result']['seconds']):.2f} s", flush=True)
    if n <= pandas_max:
        cmd = [_python(), "-m", "benchmarks.tasks", "pandas", "--input", str(data), "--warehouse", str(warehouse)]
        out["pandas"] = measure(cmd, logs / "pandas.log")
        r = out["pandas"]["result"]
        print(f"   pandas: {_median(r['seconds']):.1f} s; agree {r['category_agree']:,}/{r['compared']:,} "
              f"categories, {r['reasons_agree']:,} reasons", flush=True)
    if label == incremental_at:
        out["incremental"] = bench_incremental(data, base, logs, repeats)
    return out


def measure_classification(base: Path, repeats: int) -> dict:
    """Classification alone, from scratch, on copies of the whole run's warehouse."""
    warehouse = base / "output" / "warehouse.duckdb"
    out = {}
    for key, rule_sets in (("classify_standard", ["standard"]), ("classify_all", [])):
        cmd = [_python(), "-m", "benchmarks.tasks", "classify", "--warehouse", str(warehouse),
               "--scratch", str(base / "scratch.duckdb"), "--repeats", str(repeats)]
        for r in rule_sets:
            cmd += ["--rule-set", r]
        out[key] = measure(cmd, base / "logs" / f"{key}.log")
        print(f"   {key}: median {_median(out[key]['result']['seconds']):.2f} s", flush=True)
    return out


def bench_incremental(data: Path, base: Path, logs: Path, repeats: int) -> dict:
    """Everything before the drop day loaded as the baseline, then the day's partition, as the schedule runs it."""
    from assets.partitions import BASELINE_PARTITION

    target = base / "incremental"
    shutil.rmtree(target, ignore_errors=True)
    nightly = [_python(), "-m", "benchmarks.tasks", "nightly", "--input", str(data), "--output", str(target)]
    baseline = measure(nightly + ["--partition", BASELINE_PARTITION], logs / "incremental_baseline.log")
    print(f"   incremental: baseline load {baseline['wall_seconds']:.1f} s", flush=True)
    days = []
    for i in range(repeats):
        # Each repeat re-delivers the same day: the same files, the same patients recomputed.
        day = measure(nightly + ["--partition", END], logs / f"incremental_day{i + 1}.log")
        print(f"   incremental day {i + 1}/{repeats}: {day['wall_seconds']:.1f} s "
              f"({day['result']['modes']})", flush=True)
        days.append(day)
    day_rows = {}
    import duckdb

    con = duckdb.connect(str(target / "warehouse.duckdb"), read_only=True)
    for t in ("referrals", "scans", "clinical_events"):
        day_rows[t] = con.execute(f"SELECT count(*) FROM {t} WHERE _load_partition = ?", [END]).fetchall()[0][0]
    con.close()
    return {"baseline": baseline, "days": days, "day_rows": day_rows}


def machine() -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        cpu = Path("/proc/cpuinfo").read_text()
        info["cpu_model"] = re.search(r"model name\s*:\s*(.+)", cpu).group(1)
        mem = Path("/proc/meminfo").read_text()
        info["memory_gb"] = round(int(re.search(r"MemTotal:\s*(\d+)", mem).group(1)) / 1024 / 1024, 1)
    except (OSError, AttributeError):
        pass
    import duckdb
    import pandas

    info.update(duckdb=duckdb.__version__, pandas=pandas.__version__)
    return info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100k,1M", help=f"comma-separated, of {', '.join(SIZES)}")
    parser.add_argument("--repeats", type=int, default=3, help="repeats per measurement (1 at 10M)")
    parser.add_argument("--work", default=str(ROOT / "benchmarks" / "data"), help="generated input and outputs")
    parser.add_argument("--pandas-max", type=int, default=1_000_000, help="largest size the pandas baseline runs")
    parser.add_argument("--incremental-at", default="1M", help="size whose incremental nightly run is measured")
    parser.add_argument("--only-classify", action="store_true",
                        help="re-measure classification alone on the warehouses of an earlier run")
    parser.add_argument("--only-incremental", action="store_true",
                        help="re-measure the incremental nightly run (size --incremental-at) of an earlier run")
    args = parser.parse_args(argv)
    work = Path(args.work)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    if args.only_classify or args.only_incremental:
        labels = [args.incremental_at] if args.only_incremental else args.sizes.split(",")
        for label in labels:
            path = RESULTS_DIR / f"{label}.json"
            result = json.loads(path.read_text())
            repeats = 1 if SIZES[label] >= 10_000_000 else args.repeats
            if args.only_classify:
                result.update(measure_classification(work / label, repeats))
            else:
                data, _ = generate_input(label, SIZES[label], work)
                result["incremental"] = bench_incremental(data, work / label, work / label / "logs", repeats)
            result["remeasured_at"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
            path.write_text(json.dumps(result, indent=1, default=str))
        return 0
    for label in args.sizes.split(","):
        n = SIZES[label]
        repeats = 1 if n >= 10_000_000 else args.repeats
        result = bench_size(label, n, work, repeats, args.pandas_max, args.incremental_at)
        result["machine"] = machine()
        result["measured_at"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        (RESULTS_DIR / f"{label}.json").write_text(json.dumps(result, indent=1, default=str))
        print(f"   -> {RESULTS_DIR / (label + '.json')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
