"""The statistics behind the published figures: small-cell suppression, p-chart and funnel-plot limits.

Everything here works on small, already-aggregated frames (one row per month, provider or category).
"""

from __future__ import annotations

import math

# Cells counting 1 to 10 people or events are never published (CMS cell-size suppression policy).
SMALL_CELL_MAX = 10
SUPPRESSED = "<11"


def is_small(n) -> bool:
    return n is not None and not (isinstance(n, float) and math.isnan(n)) and 1 <= n <= SMALL_CELL_MAX


def suppress_row(counts: list[int | None]) -> list[int | None]:
    """Suppress the small cells of one row of counts that add up to a published total.

    Cells of 1-10 become None. When exactly one cell is suppressed, the total would reveal it, so the smallest
    other non-zero cell is suppressed too (complementary suppression).
    """
    out = [None if is_small(c) else c for c in counts]
    hidden = [i for i, c in enumerate(counts) if is_small(c)]
    if len(hidden) == 1:
        others = [(c, i) for i, c in enumerate(counts) if i not in hidden and c]
        if others:
            out[min(others)[1]] = None
    return out


def suppress_frame(df, count_columns: list[str], by_row: bool = True):
    """A copy of `df` with small counts replaced by NaN (rows treated as sets of cells adding up to a total)."""
    import numpy as np

    out = df.copy()
    for column in count_columns:
        out[column] = out[column].astype("float64")
    if by_row and len(count_columns) > 1:
        for idx, row in df[count_columns].iterrows():  # small frames only: one row per category
            values = suppress_row([None if v is None else int(v) for v in row.tolist()])
            out.loc[idx, count_columns] = [np.nan if v is None else v for v in values]
    else:
        for column in count_columns:
            out.loc[out[column].between(1, SMALL_CELL_MAX), column] = np.nan
    return out


def show(n) -> str:
    """A count as published: suppressed cells read `<11`."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return SUPPRESSED
    return f"{int(n):,}"


def rate(numerator, denominator) -> float | None:
    """A proportion that is published only when neither count is a small cell."""
    if not denominator or is_small(numerator) or is_small(denominator):
        return None
    return numerator / denominator


# --- statistical process control: p-chart ------------------------------------------------------------------

def p_chart(numerators: list[int], denominators: list[int], sigma: float = 3.0) -> dict:
    """Centre line and per-point control limits of a p-chart (Montgomery, Introduction to SQC, ch. 7).

    p-bar = sum(x) / sum(n); limits p-bar +/- sigma * sqrt(p-bar (1 - p-bar) / n_i), clipped to [0, 1].
    Special causes flagged per point: `beyond_limits` (outside the limits) and `run` (the point is part of
    8 or more consecutive points on one side of the centre line, Western Electric rule 4).
    """
    total_x, total_n = sum(numerators), sum(denominators)
    centre = total_x / total_n if total_n else 0.0
    points = []
    for x, n in zip(numerators, denominators):
        p = x / n if n else None
        half = sigma * math.sqrt(centre * (1 - centre) / n) if n else None
        lower = max(0.0, centre - half) if half is not None else None
        upper = min(1.0, centre + half) if half is not None else None
        points.append({"p": p, "n": n, "lower": lower, "upper": upper,
                       "beyond_limits": p is not None and (p < lower or p > upper), "run": False})
    side = [None if pt["p"] is None or pt["p"] == centre else pt["p"] > centre for pt in points]
    start = 0
    for i in range(1, len(side) + 1):
        if i == len(side) or side[i] != side[start] or side[i] is None:
            if side[start] is not None and i - start >= 8:
                for j in range(start, i):
                    points[j]["run"] = True
            start = i
    return {"centre": centre, "points": points}


# --- funnel plot ---------------------------------------------------------------------------------------------

Z_95 = 1.959964  # two-sided 95%
Z_998 = 3.090232  # two-sided 99.8%


def funnel_limits(centre: float, n: float, z: float) -> tuple[float, float]:
    """Normal-approximation control limits of a proportion for a unit of size n (Spiegelhalter 2005)."""
    half = z * math.sqrt(centre * (1 - centre) / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def funnel_position(p: float, centre: float, n: float) -> str:
    """Where a unit sits: `within`, `above_95`, `above_998`, `below_95`, `below_998`."""
    lo95, hi95 = funnel_limits(centre, n, Z_95)
    lo998, hi998 = funnel_limits(centre, n, Z_998)
    if p > hi998:
        return "above_998"
    if p > hi95:
        return "above_95"
    if p < lo998:
        return "below_998"
    if p < lo95:
        return "below_95"
    return "within"
