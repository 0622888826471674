"""Unit costs of spine MRIs by CPT code and care setting (`reference/unit_costs.yaml`, or the file named by
IMAGING_AUDIT_UNIT_COSTS), turned into one SQL expression so costs are summed in the same pass as the counts."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from assets.sql import literal

DEFAULT_FILE = Path(__file__).resolve().parents[2] / "reference" / "unit_costs.yaml"
ANY = "*"


class UnitCostError(ValueError):
    pass


@dataclass(frozen=True)
class UnitCosts:
    currency: str
    source: str
    version: str
    rows: tuple[tuple[str, str, float], ...]  # (cpt or *, care setting or *, cost)
    path: str

    def sql(self, cpt: str, setting: str) -> str:
        """The unit cost of each row, from its CPT and care-setting columns, most specific match first."""
        def specificity(row):
            return (row[0] == ANY, row[1] == ANY)

        whens, default = [], "NULL"
        for code, place, cost in sorted(self.rows, key=specificity):
            conditions = ([f"{cpt} = {literal(code)}"] if code != ANY else []) + (
                [f"{setting} = {literal(place)}"] if place != ANY else [])
            if not conditions:
                default = repr(float(cost))
                continue
            whens.append(f"WHEN {' AND '.join(conditions)} THEN {float(cost)!r}")
        # DECIMAL: sums of costs are exact and the same on every run (a DOUBLE sum depends on thread order).
        return (f"CAST((CASE {' '.join(whens)} ELSE {default} END) AS DECIMAL(14, 2))" if whens
                else f"CAST({default} AS DECIMAL(14, 2))")

    def describe(self) -> str:
        specific = len([r for r in self.rows if (r[0], r[1]) != (ANY, ANY)])
        default = [r[2] for r in self.rows if (r[0], r[1]) == (ANY, ANY)]
        parts = [f"{len(self.rows)} unit cost(s) from {Path(self.path).name} (version {self.version})"]
        if default:
            parts.append(f"{default[0]:,.2f} {self.currency} per MRI unless a CPT code or care setting has its own")
        if specific:
            parts.append(f"{specific} by CPT code or care setting")
        return "; ".join(parts)


def load_unit_costs(path: str | os.PathLike | None = None) -> UnitCosts:
    import yaml

    path = Path(path or os.environ.get("IMAGING_AUDIT_UNIT_COSTS") or DEFAULT_FILE)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UnitCostError(f"{path}: cannot read the unit costs ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise UnitCostError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("costs"), list) or not data["costs"]:
        raise UnitCostError(f"{path}: expected a mapping with a non-empty `costs` list")
    rows, seen = [], set()
    for i, row in enumerate(data["costs"], start=1):
        if not isinstance(row, dict) or set(row) - {"cpt", "setting", "cost"} or "cost" not in row:
            raise UnitCostError(f"{path}: cost row {i} must have cpt, setting and cost (and nothing else)")
        code, place = str(row.get("cpt", ANY)).strip(), str(row.get("setting", ANY)).strip().lower()
        try:
            cost = float(row["cost"])
        except (TypeError, ValueError):
            raise UnitCostError(f"{path}: cost row {i}: cost {row['cost']!r} is not a number") from None
        if cost < 0:
            raise UnitCostError(f"{path}: cost row {i}: cost {cost} is negative")
        if (code, place) in seen:
            raise UnitCostError(f"{path}: cost row {i}: cpt {code} and setting {place} are given twice")
        seen.add((code, place))
        rows.append((code, place, cost))
    return UnitCosts(currency=str(data.get("currency", "USD")), source=" ".join(str(data.get("source", "")).split()),
                     version=str(data.get("version", "")), rows=tuple(rows), path=str(path))
