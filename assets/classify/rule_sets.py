"""Rule sets are versioned YAML files in `guidelines/rule_sets/`; this module finds and reads them.

A rule set has a `name`, a semantic `version`, `parameters` (named windows and thresholds), and ordered `rules`
(id, when, category, reason, description, citation). `extends: other` takes the other rule set's parameters as
defaults; the rules are always the file's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

GUIDELINES_DIR = Path(__file__).resolve().parents[2] / "guidelines"
CATEGORIES = ("indicated", "potentially_unnecessary", "insufficient_information", "out_of_scope")
RULE_KEYS = {"id", "when", "category", "reason", "description", "citation"}


@dataclass(frozen=True)
class RuleSet:
    name: str
    version: str
    title: str
    rules: tuple[dict, ...]
    path: Path
    parameters: dict = field(default_factory=dict)
    description: str = ""


def _read(path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ValueError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    for key in ("name", "version", "rules"):
        if key not in data:
            raise ValueError(f"{path}: missing {key!r}")
    for i, rule in enumerate(data["rules"], start=1):
        missing = RULE_KEYS - set(rule)
        if missing:
            raise ValueError(f"{path}: rule {i} ({rule.get('id', '?')}) lacks {', '.join(sorted(missing))}")
        if rule["category"] not in CATEGORIES:
            raise ValueError(f"{path}: rule {rule['id']}: category must be one of {', '.join(CATEGORIES)}")
    return data


def load_rule_sets(names: list[str] | None = None, directory: Path | None = None) -> list[RuleSet]:
    """All rule sets (or the named ones, in the order given); ValueError naming an unknown rule set."""
    directory = directory or GUIDELINES_DIR / "rule_sets"
    raw = {}
    for path in sorted(directory.glob("*.yaml")):
        data = _read(path)
        raw[data["name"]] = (data, path)

    def parameters(name: str, seen: tuple[str, ...] = ()) -> dict:
        data, path = raw[name]
        base = data.get("extends")
        if base is None:
            return dict(data.get("parameters") or {})
        if base not in raw or base in seen:
            raise ValueError(f"{path}: extends unknown or circular rule set {base!r}")
        return {**parameters(base, seen + (name,)), **(data.get("parameters") or {})}

    available = {
        name: RuleSet(
            name=name,
            version=str(data["version"]),
            title=data.get("title", name),
            rules=tuple(data["rules"]),
            path=path,
            parameters=parameters(name),
            description=" ".join(str(data.get("description", "")).split()),
        )
        for name, (data, path) in raw.items()
    }
    if not names:
        # `standard` first: it is the default every report leads with.
        return sorted(available.values(), key=lambda r: (r.name != "standard", r.name))
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ValueError(f"unknown rule set {', '.join(unknown)} (available: {', '.join(sorted(available))})")
    return [available[n] for n in names]


def load_coded_features(path: Path | None = None) -> dict:
    import yaml

    path = path or GUIDELINES_DIR / "features.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8"))["coded_features"]


# Reason codes of the data contract (§4, "Reason codes") by category: a chart reviewer may give any of these,
# as well as any reason a shipped rule gives for that category.
CONTRACT_REASONS = {
    "indicated": ("red_flag_cauda_equina", "red_flag_cancer", "red_flag_infection", "red_flag_immunosuppression",
                  "red_flag_fracture_risk", "red_flag_weight_loss", "progressive_neurological_deficit",
                  "neurological_symptoms", "persistent_despite_conservative_care", "prior_lumbar_surgery"),
    "potentially_unnecessary": ("early_imaging_no_red_flags", "no_conservative_care", "repeat_imaging_no_change"),
    "insufficient_information": ("unknown_onset", "no_indication"),
    "out_of_scope": ("not_spine_mri",),
}


def rule_set_names() -> list[str]:
    return [r.name for r in load_rule_sets()]


def reasons_by_category() -> dict[str, tuple[str, ...]]:
    """Every reason code a verdict or a review may carry, by category: the contract's and the rule sets'."""
    out = {c: list(codes) for c, codes in CONTRACT_REASONS.items()}
    for rule_set in load_rule_sets():
        for rule in rule_set.rules:
            codes = out.setdefault(rule["category"], [])
            if rule["reason"] not in codes:
                codes.append(rule["reason"])
    return {c: tuple(codes) for c, codes in out.items()}
