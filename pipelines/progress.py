"""A Dagster logger for people at a terminal: one line per step, its row counts, warnings and failures.

The CLI selects it in the run config (`loggers: {progress: {}}`); `dagster dev` keeps Dagster's own console log.
"""

import logging
import re
import sys
import time

import dagster as dg

_STAGE_OF_GROUP = {"ingest": "ingest", "quality": "quality", "classify": "classify", "publish": "publish"}


class _ProgressHandler(logging.Handler):
    def __init__(self, stream):
        super().__init__()
        self.stream = stream
        self.started: dict[str, float] = {}

    def _write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", {}) or {}
        event = meta.get("dagster_event")
        step = meta.get("step_key") or ""
        name = step.split("[")[0]
        if event is None:
            # Messages logged by the assets themselves.
            if record.levelno >= logging.WARNING:
                self._write(f"    ! {meta.get('orig_message', record.getMessage())}")
            elif record.levelno >= logging.INFO and step:
                self._write(f"    {meta.get('orig_message', record.getMessage())}")
            return
        kind = event.event_type_value
        if kind == "STEP_START":
            self.started[step] = time.perf_counter()
            self._write(f"  -> {name}")
        elif kind == "STEP_SUCCESS":
            seconds = time.perf_counter() - self.started.get(step, time.perf_counter())
            self._write(f"  ok {name} ({seconds:.1f} s)")
        elif kind == "STEP_FAILURE":
            error = event.step_failure_data.error if event.step_failure_data else None
            message = _root_message(error) if error else "failed"
            self._write(f"  FAILED {name}: {message}")
        elif kind == "ASSET_CHECK_EVALUATION":
            # Only checks that are not met; the step logs a one-line summary of all of them.
            evaluation = event.event_specific_data
            if not evaluation.passed:
                severity = getattr(evaluation.severity, "value", str(evaluation.severity))
                label = "BLOCKING check failed" if severity == "ERROR" else "warning"
                meta = evaluation.metadata or {}
                violated = getattr(meta.get("violated"), "value", None)
                percent = getattr(meta.get("percent"), "value", None)
                detail = f": {violated:,} rows ({percent:.2f}%)" if violated and percent is not None else ""
                self._write(f"    {label} {evaluation.check_name}{detail}")


# "assets.ingest.readers.InputError: ...", "_duckdb.IOException: IO Error: ...": the class is for programmers.
_CLASS_PREFIX = re.compile(r"^(?:[A-Za-z_][\w]*\.)*_?[A-Z]\w*(?:Error|Exception|Failure)\w*: ")


def _root_message(error) -> str:
    """The innermost user error's first line: what went wrong, without Dagster's wrapping or the exception's
    class name."""
    while error.cause is not None:
        error = error.cause
    if not error.message or not error.message.strip():
        return error.cls_name
    line = error.message.strip().splitlines()[0]
    while _CLASS_PREFIX.match(line):
        line = _CLASS_PREFIX.sub("", line, count=1)
    return line or error.cls_name


@dg.logger(description="Concise progress lines for the imaging-audit CLI.")
def progress_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    # DEBUG: Dagster logs step events at that level; the handler picks what a person needs.
    logger = logging.Logger("imaging_audit_progress", level=logging.DEBUG)
    logger.addHandler(_ProgressHandler(sys.stdout))
    return logger
