"""Case mix for indirect standardisation: a unit's expected count of potentially unnecessary MRIs is the sum,
over its scans, of the share among all spine MRIs of the same age band, sex, care setting, body region and
referring specialty; observed / expected, times the overall share, is its case-mix-adjusted rate. A spine
surgeon is then compared with what spine surgeons' patients of that mix get, not with an emergency physician."""

from __future__ import annotations

# The age bands the guidelines' thresholds fall in (under 18, 65 and 70-75 for fracture risk).
AGE_BAND_SQL = ("CASE WHEN {age} IS NULL THEN 'unknown' WHEN {age} < 18 THEN '0-17' WHEN {age} < 40 THEN '18-39' "
                "WHEN {age} < 65 THEN '40-64' WHEN {age} < 75 THEN '65-74' ELSE '75+' END")

CASE_MIX = ("age band", "sex", "care setting", "body region", "referring specialty")


def expected_share_sql(is_pu: str, age: str, sex: str, setting: str, region: str, specialty: str,
                       within: tuple[str, ...] = ()) -> str:
    """A window expression: the potentially unnecessary share among the rows of the same case mix (unknown
    values form their own stratum), separately for each value of the `within` expressions (e.g. the rule set)."""
    keys = ", ".join([*within, AGE_BAND_SQL.format(age=age), sex, setting, region, specialty])
    # DECIMAL, so that summing it over a unit's scans is exact: a DOUBLE sum depends on the order parallel
    # threads add in, and a rate on a rounding boundary would then print differently from run to run.
    return f"CAST(avg(CASE WHEN {is_pu} THEN 1.0 ELSE 0.0 END) OVER (PARTITION BY {keys}) AS DECIMAL(18, 12))"


def adjusted_rate(observed: float | None, expected: float | None, overall: float | None) -> float | None:
    """Indirectly standardised rate: (observed / expected) x the overall rate, capped at 1."""
    if observed is None or not expected or overall is None:
        return None
    return min(1.0, observed / expected * overall)
