"""Published reference rates (`reference/national_rates.yaml`) drawn beside the audit's own rates."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REFERENCE_FILE = Path(__file__).resolve().parents[2] / "reference" / "national_rates.yaml"


@dataclass(frozen=True)
class ReferenceRate:
    measure: str
    rate: float
    label: str
    population: str
    citation: str


def reference_rate(measure: str, path: Path = REFERENCE_FILE) -> ReferenceRate | None:
    """The entry to draw for `measure` (the first with `show: true`), or None."""
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for entry in data.get("rates") or []:
        if entry.get("measure") == measure and entry.get("show"):
            rate = float(entry["rate"])
            if not 0 <= rate <= 1:
                raise ValueError(f"{path}: the {measure} rate {rate} is not a proportion between 0 and 1")
            return ReferenceRate(measure, rate, str(entry.get("label", measure)),
                                 " ".join(str(entry.get("population", "")).split()),
                                 " ".join(str(entry.get("citation", "")).split()))
    return None
