"""Published statistics against hand-worked examples: p-chart and funnel limits, small-cell suppression."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from assets.publish.statistics import (
    Z_95,
    Z_998,
    funnel_limits,
    funnel_position,
    p_chart,
    rate,
    show,
    suppress_frame,
    suppress_row,
)


def test_p_chart_equal_denominators():
    # p-bar = 60/300 = 0.2; sigma = sqrt(0.2 * 0.8 / 100) = 0.04; limits 0.2 -/+ 0.12
    chart = p_chart([10, 20, 30], [100, 100, 100])
    assert chart["centre"] == pytest.approx(0.2)
    for point in chart["points"]:
        assert (point["lower"], point["upper"]) == pytest.approx((0.08, 0.32))
        assert not point["beyond_limits"]


def test_p_chart_limits_widen_for_small_months():
    # p-bar = 55/250 = 0.22; n=50: 3*sqrt(.22*.78/50) = 0.175750; n=200: 3*sqrt(.22*.78/200) = 0.087875
    chart = p_chart([5, 50], [50, 200])
    small, large = chart["points"]
    assert (small["lower"], small["upper"]) == pytest.approx((0.044250, 0.395750), abs=1e-6)
    assert (large["lower"], large["upper"]) == pytest.approx((0.132125, 0.307875), abs=1e-6)


def test_p_chart_flags_a_point_beyond_the_limits():
    chart = p_chart([20, 20, 20, 20, 60], [100] * 5)  # p-bar 0.28; upper limit 0.28 + 3*0.0449 = 0.4147
    assert [p["beyond_limits"] for p in chart["points"]] == [False, False, False, False, True]


def test_p_chart_flags_a_run_of_eight_on_one_side():
    counts = [30] * 8 + [10] * 4  # p-bar = 280/1200 = 0.2333: eight months above, four below
    chart = p_chart(counts, [100] * 12)
    assert [p["run"] for p in chart["points"]] == [True] * 8 + [False] * 4
    assert not any(p["run"] for p in p_chart([30] * 7 + [10] * 5, [100] * 12)["points"])


def test_p_chart_clips_limits_to_0_and_1():
    chart = p_chart([1, 1], [10, 10])  # p-bar 0.1; 3*sqrt(.09/10) = 0.2846
    assert chart["points"][0]["lower"] == 0.0


@pytest.mark.parametrize(
    "z,expected",
    [(Z_95, (0.210183, 0.389817)), (Z_998, (0.158388, 0.441612))],
)
def test_funnel_limits_hand_worked(z, expected):
    # centre 0.3, n = 100: sqrt(0.3 * 0.7 / 100) = 0.0458258
    assert funnel_limits(0.3, 100, z) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "p,expected",
    [(0.30, "within"), (0.40, "above_95"), (0.45, "above_998"), (0.20, "below_95"), (0.15, "below_998")],
)
def test_funnel_position(p, expected):
    assert funnel_position(p, 0.3, 100) == expected


@pytest.mark.parametrize(
    "row,expected",
    [
        ([12, 20, 30], [12, 20, 30]),  # nothing small
        ([5, 20, 30], [None, None, 30]),  # one small cell: the next smallest goes too
        ([0, 5, 30], [0, None, None]),  # zeros are published; the complement is the other non-zero cell
        ([3, 4, 50], [None, None, 50]),  # two small cells protect each other
        ([10, 11], [None, None]),  # 10 is small; 11 is not, but it would reveal the 10 from the total
        ([1], [None]),
    ],
)
def test_suppress_row(row, expected):
    assert suppress_row(row) == expected


def test_suppress_frame_rows_and_columns():
    df = pd.DataFrame({"label": ["a", "b"], "x": [4, 40], "y": [30, 50]})
    out = suppress_frame(df, ["x", "y"])
    assert math.isnan(out.loc[0, "x"]) and math.isnan(out.loc[0, "y"]) and out.loc[1, "x"] == 40
    out = suppress_frame(df, ["x"], by_row=False)
    assert math.isnan(out.loc[0, "x"]) and out.loc[1, "x"] == 40


def test_published_values():
    assert show(float("nan")) == "<11" and show(None) == "<11" and show(1234) == "1,234"
    assert rate(5, 100) is None and rate(20, 100) == 0.2 and rate(20, 0) is None
