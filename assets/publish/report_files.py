"""The overtreatment reports' CSV files: counts stay numeric, a flag column names the suppressed cells."""

from __future__ import annotations

from assets.publish.files import csv_text
from assets.publish.protection import Protection
from assets.publish.report_definitions import CATEGORIES, INTERVENTIONS, PROVIDER_WINDOW, WINDOWS
from assets.publish.report_pages import total_item, unit_rows
from assets.publish.report_queries import slug


def _pct_csv(x):
    return "" if x is None else round(100 * x, 1)


class _Count:
    """A protected count in a CSV row: its number when published, else an empty cell and a flag."""

    __slots__ = ("key",)

    def __init__(self, key):
        self.key = key


SUPPRESSED_COLUMN = "suppressed"  # `column:small;column:withheld`, the cells left empty in this row


def _csv_row(p: Protection, header: list[str], cells: list) -> list:
    """Counts stay numbers in numeric columns (spreadsheets and pandas read them as such); a suppressed or
    withheld count is an empty cell, and the row's `suppressed` column names it and says which."""
    values, flags = [], []
    for column, cell in zip(header, cells):
        if isinstance(cell, _Count):
            status = p.status(cell.key)
            if status == "published":
                values.append(p.values[cell.key])
                continue
            flags.append(f"{column}:{'small' if status == 'small' else 'withheld'}")
            cell = ""
        values.append(cell)
    return values + [";".join(flags)]


def downstream_csv(p: Protection, figures: dict) -> tuple[str, int]:
    header = ["rule_set", "rule_set_version", "category", "intervention", "intervention_concept", "window_days",
              "spine_mris", "scans_with_full_follow_up", "scans_with_event", "percent"]
    rows = []
    versions = dict(figures["rule_sets"])
    for rs in figures["names"]:
        for c in (*CATEGORIES, "all"):
            scans_key = ("scans", "all") if c == "all" else ("scans", rs, c)
            for iv in INTERVENTIONS:
                for w in WINDOWS:
                    n = ("n", "all", iv.key, w) if c == "all" else ("n", rs, c, iv.key, w)
                    d = ("den", "all", w) if c == "all" else ("den", rs, c, w)
                    rows.append(_csv_row(p, header, [
                        rs, versions.get(rs, ""), "all_spine_mri" if c == "all" else c, iv.key, iv.concept, w,
                        _Count(scans_key), _Count(d), _Count(n), _pct_csv(p.rate(n, d))]))
    return csv_text(header + [SUPPRESSED_COLUMN], rows), len(rows)


def units_csv(p: Protection, figures: dict, dim: str) -> tuple[str, int]:
    names = figures["names"]
    primary = names[0]
    slug0 = slug(primary)
    id_col = "referring_provider_id" if dim == "provider" else "facility_id"
    header = ["row_type", id_col] + (["referring_specialty"] if dim == "provider" else []) + [
        "spine_mris", f"{slug0}_indicated", f"{slug0}_potentially_unnecessary",
        f"{slug0}_insufficient_information", f"{slug0}_potentially_unnecessary_pct",
    ]
    for rs in names[1:]:
        header += [f"{slug(rs)}_potentially_unnecessary", f"{slug(rs)}_potentially_unnecessary_pct"]
    header += [f"pu_mris_with_{PROVIDER_WINDOW}d_follow_up", f"pu_mris_injection_within_{PROVIDER_WINDOW}d",
               f"injection_within_{PROVIDER_WINDOW}d_pct", "funnel_position",
               f"{slug0}_expected_pct", f"{slug0}_case_mix_adjusted_pct", "cost_of_pu_mris", "scanner_hours_of_pu_mris"]
    out = []
    for kind, it in [("total", total_item(p, figures))] + [(dim, it) for it in unit_rows(p, figures, dim)]:
        row = [kind, "(all)" if kind == "total" else it["unit"]]
        if dim == "provider":
            row.append(it["specialty"] or "")
        row += [_Count(it["scans"]), _Count(it["cats"]["indicated"]), _Count(it["cats"]["potentially_unnecessary"]),
                _Count(it["cats"]["insufficient_information"]), _pct_csv(it["rate"])]
        for rs in names[1:]:
            key, r = it["other"][rs]
            row += [_Count(key), _pct_csv(r)]
        row += [_Count(it["fu"]), _Count(it["inj"]), _pct_csv(it["inj_rate"]), it["funnel"] or ""]
        row += [_pct_csv(it["expected_rate"]), _pct_csv(it["adjusted_rate"]),
                "" if it["pu_cost"] is None else round(it["pu_cost"], 2),
                "" if it["pu_hours"] is None else round(it["pu_hours"], 1)]
        out.append(_csv_row(p, header, row))
    return csv_text(header + [SUPPRESSED_COLUMN], out), len(out)
