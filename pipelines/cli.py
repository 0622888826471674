"""`imaging-audit`: run the audit on a folder of input files, or generate synthetic input.

    imaging-audit run [--input DIR] [--output DIR] [--input-format auto|native|claims|fhir] [--rule-set NAME ...]
    imaging-audit generate --scans N [--seed S] [--out DIR] [--format csv|parquet]

`run` executes the same Dagster job the nightly schedule runs, in this process, over every daily partition the
input holds. It builds a complete new version of the outputs in `<output>/.versions/<run id>/` and publishes it
only when the whole run has succeeded, in one atomic step (the `.current` link is replaced; see
assets/publish/layout.py), so a failed or killed run leaves the last good outputs untouched. One run writes an
output at a time (`<output>/.lock`).

Exit codes: 0 the run completed (rows may have been quarantined); 2 the input cannot be processed, or the output
folder cannot be written or its disk is full (one line on stderr names the file and the problem); 1 the run failed for another
reason, was interrupted, or another run is writing the same output.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
import uuid
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class RunFailed(Exception):
    pass


class DiskFull(RunFailed):
    """A step could not write: the file system holding the output (or DuckDB's spill folder in it) is full."""


NO_SPACE = ("No space left on device", "[Errno 28]", "disk is full", "Disk full")


class Interrupted(KeyboardInterrupt):
    """SIGTERM or Ctrl-C: the run stops; what was published stays as it was."""


PUBLISHED = "published"  # an interruption after the new outputs were switched in


def _fail(message: str, code: int) -> int:
    print(f"imaging-audit: {message}", file=sys.stderr)
    return code


def _partition_range(files) -> tuple[str, str]:
    from assets.partitions import daily_partitions, partition_for

    keys = sorted({partition_for(f.drop_date) for f in files})
    last_valid = daily_partitions.get_last_partition_key()
    for f in files:
        if partition_for(f.drop_date) > last_valid:
            from assets.ingest.readers import InputError

            raise InputError(f"{f.path}: the date in the file name ({f.drop_date}) is in the future")
    return keys[0], keys[-1]


def run_audit(
    input_dir: Path,
    output_dir: Path,
    input_format: str = "auto",
    rule_sets: list[str] | None = None,
    quiet: bool = False,
) -> dict:
    """Run the nightly job over everything in `input_dir`, publishing into `output_dir` atomically.

    Raises InputError for input that cannot be processed, RunFailed when a step fails, OutputBusy when another
    run holds the output's lock, OutputUnwritable when the output folder cannot be written.
    """
    from assets.classify.rule_sets import load_rule_sets
    from assets.ingest.readers import InputError, detect_format, preflight
    from assets.settings import load_settings

    try:
        settings = load_settings()
    except ValueError as exc:
        raise InputError(str(exc)) from None
    fmt = detect_format(input_dir, input_format)
    files = preflight(input_dir, fmt)
    from assets.classify.engine import validate_rule_set
    from assets.classify.rule_sets import load_coded_features

    try:
        selected = load_rule_sets(rule_sets or None)
        coded_features = load_coded_features()
        for rule_set in selected:
            validate_rule_set(rule_set, coded_features)
    except ValueError as exc:
        raise InputError(str(exc) if "unknown rule set" not in str(exc) else f"--rule-set: {exc}") from None
    if fmt == "native":
        first, last = _partition_range(files)
    else:
        from assets.partitions import BASELINE_PARTITION

        first = last = BASELINE_PARTITION  # a converted extract is one baseline load

    say = (lambda *_: None) if quiet else print
    from assets.publish import layout
    from assets.resources import runs_in_progress

    with layout.locked(output_dir):
        try:
            # Links repaired, what a killed run left removed (not what a nightly run is still building).
            layout.recover(output_dir, keep=frozenset(runs_in_progress(_instance(), output_dir)))
            run_id = str(uuid.uuid4())
            version = layout.new_version(output_dir, run_id)
        except OSError as exc:
            raise layout.OutputUnwritable(output_dir, exc) from None
        say(
            f"imaging-audit: {len(files) or 'a'} {fmt} {'file(s)' if files else 'extract'} from {input_dir} "
            f"(partitions {first}{'' if first == last else ' .. ' + last}); "
            f"rule sets: {', '.join(r.name + ' ' + r.version for r in selected)}"
        )
        started = time.perf_counter()
        try:
            _execute(version, run_id, input_dir, fmt, selected, first, last, quiet)
            for scratch in (".duckdb_tmp", ".converted"):
                shutil.rmtree(version / scratch, ignore_errors=True)
            layout.checkpoint("built")
            try:
                layout.publish_version(output_dir, version, stamp=_today(settings.timezone),
                                       keep_days=settings.archive_days)
            except OSError as exc:
                raise layout.OutputUnwritable(output_dir, exc) from None
        except BaseException as exc:
            if layout.current_version(output_dir) != version.resolve():
                shutil.rmtree(version, ignore_errors=True)  # never published: nothing of it stays
                raise
            if isinstance(exc, KeyboardInterrupt):
                raise Interrupted(PUBLISHED) from None
            raise
    seconds = time.perf_counter() - started
    say(f"imaging-audit: done in {seconds:.1f} s; outputs in {output_dir}")
    return {"seconds": seconds, "partitions": (first, last), "files": len(files), "run_id": run_id}


def _today(timezone: str) -> str:
    import datetime as dt
    from zoneinfo import ZoneInfo

    return dt.datetime.now(ZoneInfo(timezone)).date().isoformat()


def _execute(version: Path, run_id: str, input_dir: Path, fmt: str, selected, first: str, last: str,
             quiet: bool) -> None:
    """The nightly job over partitions first..last, writing into the version folder `version`."""
    import dagster as dg

    from pipelines.definitions import defs
    from pipelines.jobs import NIGHTLY_JOB_NAME

    job = defs.resolve_job_def(NIGHTLY_JOB_NAME)
    run_config = {
        "resources": {
            "landing": {"config": {"input_dir": str(input_dir), "input_format": fmt}},
            "warehouse": {"config": {"output_dir": str(version), "staged": True}},
        },
        "ops": {"mri_classification": {"config": {"rule_sets": [r.name for r in selected]}}},
        "loggers": {"progress": {}} if not quiet else {"console": {"config": {"log_level": "CRITICAL"}}},
    }
    tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
    instance = _instance() or dg.DagsterInstance.ephemeral()
    result = job.execute_in_process(run_config=run_config, tags=tags, instance=instance, raise_on_error=False,
                                    run_id=run_id)
    if not result.success:
        if _signals_received:
            # The signal can land between steps, where Dagster records a run failure with no failed step.
            raise Interrupted()
        raise RunFailed(_first_failure(result))


def _instance():
    """The operator's Dagster instance (DAGSTER_HOME), so CLI runs show in the UI's history and the CLI knows
    which nightly runs are in progress; None without one."""
    if not os.environ.get("DAGSTER_HOME"):
        return None
    import dagster as dg

    return dg.DagsterInstance.get()


def _first_failure(result) -> str:
    from assets.ingest.readers import InputError
    from pipelines.progress import _root_message

    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE" and event.step_failure_data:
            error = event.step_failure_data.error
            root = error
            while root.cause is not None:
                root = root.cause
            if root.cls_name == InputError.__name__:
                raise InputError(_root_message(error))
            if root.cls_name in ("DagsterExecutionInterruptedError", "KeyboardInterrupt", Interrupted.__name__):
                raise Interrupted()
            if any(mark in (root.message or "") for mark in NO_SPACE):
                raise DiskFull(f"no space left on the disk holding the output (step {event.step_key}); "
                               "the previous outputs are untouched: free space and run again")
            return f"step {event.step_key} failed: {_root_message(error)}"
    return "the run failed"


_signals_received: list[int] = []  # SIGTERMs this process has received, so a failed run reads as interrupted


def _terminate(signum, frame):
    _signals_received.append(signum)
    raise Interrupted()


def _cmd_run(args) -> int:
    from assets.ingest.readers import InputError
    from assets.publish.layout import OutputBusy, OutputUnwritable

    output = Path(args.output).resolve()
    # SIGTERM (a service manager stopping the run) ends it like Ctrl-C: cleanly, with one line.
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        run_audit(Path(args.input).resolve(), output, args.input_format, args.rule_set)
    except InputError as exc:
        return _fail(str(exc), EXIT_BAD_INPUT)
    except (OutputUnwritable, DiskFull) as exc:
        return _fail(str(exc), EXIT_BAD_INPUT)
    except OutputBusy as exc:
        return _fail(str(exc), EXIT_FAILED)
    except RunFailed as exc:
        return _fail(str(exc), EXIT_FAILED)
    except KeyboardInterrupt as exc:
        if str(exc) == PUBLISHED:
            return _fail("interrupted after the new outputs were published; the next run finishes archiving and "
                         "clearing up", EXIT_FAILED)
        return _fail("interrupted; previous outputs left in place", EXIT_FAILED)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return EXIT_OK


def _cmd_generate(args) -> int:
    from data_samples.generate import generate

    summary = generate(
        Path(args.out), n_scans=args.scans, seed=args.seed, fmt=args.format,
        fault_rate=args.fault_rate, drop_days=args.drop_days,
    )
    print(f"imaging-audit: generated {summary}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imaging-audit", description="Audit spine MRI utilization for back pain.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the audit on a folder of input files")
    run.add_argument("--input", default="data_samples", help="input folder (default: data_samples/)")
    run.add_argument("--output", default="output", help="output folder (default: output/)")
    run.add_argument(
        "--input-format", default="auto", choices=["auto", "native", "claims", "fhir"],
        help="input layout; auto detects it from the files present",
    )
    run.add_argument(
        "--rule-set", action="extend", nargs="+", default=None, metavar="NAME",
        help="rule set(s) to evaluate (default: every rule set in guidelines/rule_sets/)",
    )
    run.set_defaults(func=_cmd_run)

    gen = sub.add_parser("generate", help="write seeded synthetic input of any size")
    gen.add_argument("--scans", type=int, required=True, help="number of scans")
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument("--out", default="generated", help="output folder for the input files")
    gen.add_argument("--format", default="csv", choices=["csv", "parquet"])
    gen.add_argument("--fault-rate", type=float, default=0.0, help="share of rows given an injected fault")
    gen.add_argument("--drop-days", type=int, default=0, help="write the last N days as dated nightly drops")
    gen.set_defaults(func=_cmd_generate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
