"""Rule sets are versioned YAML files in `guidelines/rule_sets/`; this module finds and reads them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

GUIDELINES_DIR = Path(__file__).resolve().parents[2] / "guidelines"


@dataclass(frozen=True)
class RuleSet:
    name: str
    version: str
    title: str
    rules: tuple[dict, ...]
    path: Path


def load_rule_sets(names: list[str] | None = None, directory: Path | None = None) -> list[RuleSet]:
    """All rule sets (or the named ones, in the order given); ValueError naming an unknown rule set."""
    import yaml

    directory = directory or GUIDELINES_DIR / "rule_sets"
    available = {}
    for path in sorted(directory.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        available[data["name"]] = RuleSet(
            name=data["name"],
            version=str(data["version"]),
            title=data.get("title", data["name"]),
            rules=tuple(data.get("rules", [])),
            path=path,
        )
    if not names:
        # `standard` first: it is the default every report leads with.
        return sorted(available.values(), key=lambda r: (r.name != "standard", r.name))
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ValueError(
            f"unknown rule set {', '.join(unknown)} (available: {', '.join(sorted(available))})"
        )
    return [available[n] for n in names]
