"""A sensor over the landing directory: a new or changed file starts a run for the partition it belongs to."""


import hashlib
import json

import dagster as dg

from assets.partitions import partition_for
from assets.resources import LandingResource
from pipelines.jobs import nightly_audit


def landing_changes(landing_dir, previous: dict[str, str]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Files new or changed since `previous` (name -> 'mtime_ns:size'), grouped by partition; and the new state."""
    from assets.ingest.readers import discover_native_files

    state, changed = {}, {}
    for f in discover_native_files(landing_dir):
        st = f.path.stat()
        stamp = f"{st.st_mtime_ns}:{st.st_size}"
        state[f.name] = stamp
        if previous.get(f.name) != stamp:
            changed.setdefault(partition_for(f.drop_date), []).append(f.name)
    return changed, state


@dg.sensor(
    job=nightly_audit,
    minimum_interval_seconds=120,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches IMAGING_AUDIT_INPUT; new or changed files start a run of their day's partition.",
)
def landing_sensor(context: dg.SensorEvaluationContext, landing: LandingResource) -> dg.SensorResult:
    if not landing.path.is_dir():
        return dg.SensorResult(skip_reason=f"landing directory {landing.path} does not exist")
    previous = json.loads(context.cursor) if context.cursor else {}
    changed, state = landing_changes(landing.path, previous)
    requests = []
    for partition, names in sorted(changed.items()):
        digest = hashlib.sha1("|".join(f"{n}={state[n]}" for n in sorted(names)).encode()).hexdigest()[:12]
        requests.append(dg.RunRequest(partition_key=partition, run_key=f"landing-{partition}-{digest}"))
    if not requests:
        return dg.SensorResult(skip_reason="no new or changed files", cursor=json.dumps(state, sort_keys=True))
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(state, sort_keys=True))
