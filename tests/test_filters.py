"""The overview's filters in a real browser (Debian's Chromium through chromedriver, network off): changing
region, period, rule set and unit shows the numbers SQL gives on the warehouse; and no count of 0-10 can be
recovered from the embedded views, neither read directly nor by subtracting views that add up (regions, quarters
and years, the values of a unit), checked here independently of the solver."""

from __future__ import annotations

import itertools
import json
import re

import duckdb
import pytest

from pipelines.cli import run_audit
from tests.conftest import REPO_ROOT
from tests.test_review_page import _browser

ALL = "*"


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    out = tmp_path_factory.mktemp("filters") / "out"
    run_audit(REPO_ROOT / "data_samples", out, quiet=True)
    return out


@pytest.fixture(scope="module")
def data(published):
    text = (published / "dashboards" / "index.html").read_text(encoding="utf-8")
    raw = re.search(r'<script type="application/json" id="filter-data">(.*?)</script>', text, re.S).group(1)
    return json.loads(raw)


def view_where(region=ALL, period=ALL, rule_set=None, alias="m"):
    """(conditions, parameters) selecting a view's in-scope spine MRIs: region, and a year, quarter or month."""
    where = [f"{alias}.category <> 'out_of_scope'", f"{alias}.body_region IN ('lumbar', 'cervical', 'thoracic')"]
    params = []
    if rule_set is not None:
        where.append(f"{alias}.rule_set = ?")
        params.append(rule_set)
    if region != ALL:
        where.append(f"{alias}.body_region = ?")
        params.append(region)
    if period != ALL:
        where.append(f"(strftime({alias}.scan_date, '%Y') = ? OR strftime({alias}.scan_date, '%Y') || '-Q' || "
                     f"quarter({alias}.scan_date) = ? OR strftime({alias}.scan_date, '%Y-%m') = ?)")
        params += [period] * 3
    return where, params


def pick(driver, element_id, value):
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", element_id)).select_by_value(value)


def severe_logs(driver):
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def truth(published, region="*", period="*", facet="*", value="*", rule_set="standard"):
    """Spine MRIs in scope, potentially unnecessary ones and (lumbar) OP-8, straight from the warehouse."""
    column = {"setting": "r.care_setting", "specialty": "r.referring_specialty", "facility": "s.facility_id"}
    where, params = view_where(region, period, rule_set)
    if facet != ALL:
        where.append(f"coalesce(CAST({column[facet]} AS VARCHAR), 'unknown') = ?")
        params.append(value)
    with duckdb.connect(str(published / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(f"""
            SELECT count(*), count(*) FILTER (WHERE m.category = 'potentially_unnecessary'),
                   count(*) FILTER (WHERE m.op8_numerator), count(m.op8_numerator)
            FROM mri_classification m JOIN scan_links l USING (scan_id)
            LEFT JOIN referrals_current r ON r.referral_id = l.referral_id
            LEFT JOIN scans_current s ON s.scan_id = m.scan_id
            WHERE {' AND '.join(where)}""", params).fetchone()


def shown(value: str) -> int | str:
    value = value.replace(",", "").strip()
    return int(value) if value.isdigit() else value


def read_tiles(driver):
    from selenium.webdriver.common.by import By

    text = {i: driver.find_element(By.ID, i).text for i in ("t-n", "t-pu", "t-pu-label", "t-op8-label")}
    m = re.search(r"\(([\w,<]+) of ([\w,<]+)\)", text["t-pu-label"])
    return {"n": shown(text["t-n"]), "pu": shown(m.group(1)) if m else None, "share": text["t-pu"],
            "op8": re.search(r"\(([\d,<]+) of ([\d,<]+) eligible", text["t-op8-label"])}


def check(tiles, expected):
    n, pu = expected[0], expected[1]
    for got, want in ((tiles["n"], n), (tiles["pu"], pu)):
        if isinstance(got, int):
            assert got == want and not 0 <= got <= 10, (tiles, expected)
        else:
            assert got in ("<11", "withheld"), (tiles, expected)
            assert got == "withheld" or want <= 10, (tiles, expected)
    if isinstance(tiles["n"], int) and isinstance(tiles["pu"], int):
        assert tiles["share"] == f"{100 * pu / n:.1f}%"


def test_changing_the_filters_shows_the_warehouse_numbers(published, tmp_path):
    driver = _browser(tmp_path / "downloads", tmp_path / "profile")
    try:
        driver.get((published / "dashboards" / "index.html").resolve().as_uri())
        # The first view: lumbar MRIs over the whole period, standard rule set, with OP-8.
        tiles = read_tiles(driver)
        expected = truth(published, region="lumbar")
        check(tiles, expected)
        assert tiles["op8"] and (shown(tiles["op8"].group(1)), shown(tiles["op8"].group(2))) == expected[2:]
        for region, period, facet, value, rule_set in [
            ("*", "*", "*", "*", "standard"),
            ("cervical", "2025", "*", "*", "standard"),
            ("lumbar", "2024-Q3", "*", "*", "acr-2021"),
            ("lumbar", "*", "specialty", "primary_care", "standard"),
            ("*", "2025", "setting", "emergency", "standard"),
            ("thoracic", "*", "facility", "F01", "standard"),
        ]:
            pick(driver, "f-rule-set", rule_set)
            pick(driver, "f-region", region)
            pick(driver, "f-period", period)
            pick(driver, "f-facet", facet)
            if facet != ALL:
                pick(driver, "f-value", value)
            check(read_tiles(driver), truth(published, region, period, facet, value, rule_set))
        # A month: the tiles are the month's, the chart draws the months of its quarter at the warehouse's shares.
        pick(driver, "f-rule-set", "standard")
        pick(driver, "f-facet", "*")
        pick(driver, "f-region", "lumbar")
        pick(driver, "f-period", "2025-06")
        check(read_tiles(driver), truth(published, "lumbar", "2025-06"))
        (_, months, shares), *_ = plotted(driver, "filtered-trend")
        assert months and set(months) <= {"2025-04", "2025-05", "2025-06"}, months
        for month, share in zip(months, shares):
            n, pu, *_ = truth(published, "lumbar", month)
            assert abs(share - pu / n) < 1e-9, (month, share)
        # A custom range of quarters is the sum of its quarters (all published here: lumbar, all units).
        pick(driver, "f-rule-set", "standard")
        pick(driver, "f-region", "lumbar")
        pick(driver, "f-facet", "*")
        pick(driver, "f-period", "custom")
        pick(driver, "f-from", "2024-Q2")
        pick(driver, "f-to", "2024-Q4")
        tiles = read_tiles(driver)
        quarters = [truth(published, "lumbar", q) for q in ("2024-Q2", "2024-Q3", "2024-Q4")]
        assert (tiles["n"], tiles["pu"]) == (sum(q[0] for q in quarters), sum(q[1] for q in quarters))
        assert severe_logs(driver) == []
    finally:
        driver.quit()


def _number(x):
    return x if isinstance(x, int) else None


def test_no_view_shows_a_count_of_0_to_10(data):
    for key, row in data["views"].items():
        for x in row:
            assert not (isinstance(x, int) and 0 <= x <= 10), (key, row)


def subtraction_leaks(data) -> tuple[list, int]:
    """Every sum a reader can form (regions, years from quarters, the whole span from years, the values of a
    unit) where the total and all parts but one are published: the ones whose remaining part is a count of 0-10.
    Returns (leaks, sums examined)."""
    views, k = data["views"], len(data["rule_sets"])
    quarters = data["quarters"]
    years = sorted({q[:4] for q in quarters})
    facets = [(ALL, ALL)] + [(f, v) for f, values in data["facets"].items() for v in values]
    leaks, examined = [], 0

    def relation(total, parts):
        nonlocal examined
        t = views.get("|".join(total))
        if t is None:
            return
        examined += 1
        rows = [views.get("|".join(p)) for p in parts]
        for c in range(1 + k):  # n and the potentially unnecessary counts
            values = [_number(r[c]) if r else 0 for r in rows]
            if _number(t[c]) is None or values.count(None) != 1:
                continue  # the total is hidden, or two parts or more are: nothing to subtract down to one
            left = t[c] - sum(v for v in values if v is not None)
            if 0 <= left <= 10:
                leaks.append((total, c, left))

    for (f, v), period in itertools.product(facets, [ALL, *years, *quarters]):
        relation((ALL, period, f, v), [(r, period, f, v) for r in ("lumbar", "cervical", "thoracic")])
    for region, (f, v) in itertools.product([ALL, "lumbar", "cervical", "thoracic"], facets):
        relation((region, ALL, f, v), [(region, y, f, v) for y in years])
        for y in years:
            relation((region, y, f, v), [(region, q, f, v) for q in quarters if q.startswith(y)])
        if (f, v) == (ALL, ALL):
            for period in [ALL, *years, *quarters]:
                for name, values in data["facets"].items():
                    relation((region, period, ALL, ALL), [(region, period, name, x) for x in values])
    return leaks, examined


def test_no_small_count_can_be_worked_out_by_subtracting_views(data):
    leaks, examined = subtraction_leaks(data)
    assert leaks == [] and examined > 500, (leaks[:5], examined)


def test_the_subtraction_check_finds_a_leak_where_there_is_one():
    """Suppressing only the small cell, without a complement, is caught: 40 = 25 + 12 + <11 gives 3."""
    data = {"rule_sets": ["standard"], "quarters": ["2025-Q1"], "facets": {},
            "views": {"*|*|*|*": [40, 20], "lumbar|*|*|*": [25, 12], "cervical|*|*|*": [12, "<11"],
                      "thoracic|*|*|*": ["<11", "<11"]}}
    leaks, _ = subtraction_leaks(data)
    assert (("*", "*", "*", "*"), 0, 3) in leaks


def test_published_views_match_the_warehouse(published, data):
    rs = data["rule_sets"]
    for key in ["lumbar|*|*|*", "*|2024|*|*", "cervical|2025-Q1|*|*", "*|*|specialty|orthopedics",
                "lumbar|2025|setting|outpatient"]:
        region, period, facet, value = key.split("|")
        row = data["views"][key]
        expected = truth(published, region, period, facet, value)
        assert row[0] in (expected[0], "<11", "withheld") and row[1] in (expected[1], "<11", "withheld"), key
        acr = truth(published, region, period, facet, value, rule_set=rs[1])
        assert row[2] in (acr[1], "<11", "withheld"), key


# --- the trends and breakdowns pages ----------------------------------------------------------------------

# The units of each dimension as SQL on the warehouse, written here independently of the pipeline's.
UNIT_SQL = {
    "setting": "coalesce(r.care_setting, 'unknown')",
    "specialty": "coalesce(r.referring_specialty, 'unknown')",
    "facility": "coalesce(s.facility_id, 'unknown')",
    "provider": "coalesce(r.referring_provider_id, 'unknown')",
    "age": """CASE WHEN r.patient_age IS NULL THEN 'unknown' WHEN r.patient_age < 18 THEN '0-17'
                   WHEN r.patient_age < 40 THEN '18-39' WHEN r.patient_age < 65 THEN '40-64'
                   WHEN r.patient_age < 75 THEN '65-74' ELSE '75+' END""",
    "findings": "coalesce(s.findings_category, 'not reported')",
    "wait": """CASE WHEN r.referral_date IS NULL OR m.scan_date < r.referral_date THEN 'no referral date'
                    WHEN m.scan_date - r.referral_date >= 60 THEN '60+'
                    ELSE CAST((m.scan_date - r.referral_date) // 10 * 10 AS VARCHAR) || '-'
                         || CAST((m.scan_date - r.referral_date) // 10 * 10 + 9 AS VARCHAR) END""",
}


def truth_by(published, dim, region="*", period="*", rule_set="standard"):
    """{unit: (spine MRIs, potentially unnecessary, insufficient information)} for one dimension."""
    where, params = view_where(region, period, rule_set)
    unit = "'*'" if dim == ALL else UNIT_SQL[dim]
    with duckdb.connect(str(published / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute(f"""
            SELECT {unit}, count(*), count(*) FILTER (WHERE m.category = 'potentially_unnecessary'),
                   count(*) FILTER (WHERE m.category = 'insufficient_information')
            FROM mri_classification m JOIN scan_links l USING (scan_id)
            LEFT JOIN referrals_current r ON r.referral_id = l.referral_id
            LEFT JOIN scans_current s ON s.scan_id = m.scan_id
            WHERE {' AND '.join(where)} GROUP BY 1""", params).fetchall()
    return {u: tuple(c) for u, *c in rows}


def plotted(driver, element_id):
    """The traces a chart was drawn with: [(name, x, y)]."""
    return driver.execute_script(
        "return document.getElementById(arguments[0]).data.map(function (t) {"
        " return [t.name, t.x || [], t.y || []]; });", element_id)


def open_page(published, tmp_path, page):
    driver = _browser(tmp_path / "downloads", tmp_path / "profile")
    driver.get((published / "dashboards" / page).resolve().as_uri())
    return driver


def agrees(shown_value, true_value):
    """A drawn count equals the warehouse's and is never 1-10 (bars are drawn only for published cells; a
    bin with no scans at all is an empty slot)."""
    return shown_value is None or (shown_value == true_value and not 1 <= shown_value <= 10)


def test_breakdowns_follow_the_filters_and_match_the_warehouse(published, tmp_path):
    driver = open_page(published, tmp_path, "breakdowns.html")
    try:
        checked = 0
        for rule_set, region, period in [("standard", "*", "*"), ("acr-2021", "lumbar", "2025"),
                                         ("standard", "lumbar", "2024-Q4")]:
            pick(driver, "f-rule-set", rule_set)
            pick(driver, "f-region", region)
            pick(driver, "f-period", period)
            for dim, element_id, horizontal in [("specialty", "b-specialty", True), ("facility", "b-facility", True),
                                                ("setting", "b-setting", True), ("age", "b-age", True),
                                                ("findings", "b-findings", True), ("wait", "b-wait", False)]:
                expected = truth_by(published, dim, region, period, rule_set)
                traces = {name: (x, y) for name, x, y in plotted(driver, element_id)}
                for name, column in (("Potentially unnecessary", 1), ("Insufficient information", 2)):
                    x, y = traces[name]
                    values, labels = (x, y) if horizontal else (y, x)
                    if not horizontal:  # the histogram's bins sit at 0, 1, 2, ...
                        labels = [WAIT_LABELS[int(i)] for i in labels]
                    for label, value in zip(labels, values):
                        assert agrees(value, expected.get(label, (0, 0, 0))[column]), (dim, label, name, value)
                        checked += bool(value)
            # The reasons table: every published count is the warehouse's.
            reasons = reason_truth(published, region, period, rule_set)
            for row in driver.find_elements("css selector", "#b-reasons tbody tr"):
                code, value = [c.text for c in row.find_elements("css selector", "td")]
                value = shown(value)
                if isinstance(value, int):
                    assert value == reasons[code] and value > 10, (code, value)
                    checked += 1
                else:
                    assert value in ("<11", "withheld") and (value == "withheld" or reasons.get(code, 0) <= 10)
        assert checked > 100, checked
        assert severe_logs(driver) == []
    finally:
        driver.quit()


WAIT_LABELS = ["0-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60+"]


def reason_truth(published, region, period, rule_set):
    where, params = view_where(region, period, rule_set, alias="m")
    with duckdb.connect(str(published / "warehouse.duckdb"), read_only=True) as con:
        return dict(con.execute(f"""SELECT code, count(*) FROM (SELECT unnest(string_split(m.reasons, ';')) AS code
                                    FROM mri_classification m WHERE {' AND '.join(where)}) GROUP BY 1""",
                                params).fetchall())


def test_trends_follow_the_filters_and_match_the_warehouse(published, tmp_path):
    from assets.publish.statistics import Z_998, funnel_limits, p_chart

    driver = open_page(published, tmp_path, "trends.html")
    try:
        checked = 0
        for rule_set, region, period in [("standard", "*", "*"), ("acr-2021", "lumbar", "2025")]:
            pick(driver, "f-rule-set", rule_set)
            pick(driver, "f-region", region)
            pick(driver, "f-period", period)
            # The p-chart's monthly shares are the warehouse's, for every month drawn.
            traces = {name: (x, y) for name, x, y in plotted(driver, "t-pchart")}
            months, shares = traces["monthly share"]
            assert months and all(period == ALL or m.startswith(period) for m in months)
            counts = []
            for month, share in zip(months, shares):
                n, pu, _ = truth_by(published, ALL, region, month, rule_set)["*"]
                assert abs(share - pu / n) < 1e-9 and pu > 10 and n > 10, (month, share)
                counts.append((pu, n))
                checked += 1
            # The page's limits and special causes are those of the reference p-chart (statistics.p_chart).
            chart = p_chart([c[0] for c in counts], [c[1] for c in counts])
            upper = traces["upper control limit (3σ)"][1]
            assert all(abs(a - b["upper"]) < 1e-9 for a, b in zip(upper, chart["points"]))
            special = [m for m, pt in zip(months, chart["points"]) if pt["beyond_limits"] or pt["run"]]
            drawn = next((x for name, (x, _) in traces.items() if name.startswith("special cause")), [])
            assert list(drawn) == special
            # Funnel limits: those of statistics.funnel_limits around the view's rate.
            limit = plotted(driver, "t-providers")[0]  # the upper 99.8% line
            n_all, pu_all, _ = truth_by(published, ALL, region, period, rule_set)["*"]
            for n, y in list(zip(limit[1], limit[2]))[::40]:
                assert abs(y - funnel_limits(pu_all / n_all, n, Z_998)[1]) < 1e-9
            # Each provider and facility point: its rate and volume from the warehouse, both counts over 10.
            for dim, element_id in (("provider", "t-providers"), ("facility", "t-facilities")):
                expected = truth_by(published, dim, region, period, rule_set)
                points = driver.execute_script(
                    "var t = document.getElementById(arguments[0]).data.filter(function (t) {"
                    " return t.mode === 'markers'; })[0]; return [t.text, t.x, t.y];", element_id)
                for unit, n, share in zip(*points):
                    true_n, true_pu, _ = expected[unit]
                    assert n == true_n and abs(share - true_pu / true_n) < 1e-9 and true_pu > 10, (unit, n, share)
                    checked += 1
        assert checked > 40, checked
        assert severe_logs(driver) == []
    finally:
        driver.quit()


def page_data_of(published, page):
    text = (published / "dashboards" / page).read_text(encoding="utf-8")
    return json.loads(re.search(r'<script type="application/json" id="filter-data">(.*?)</script>', text, re.S).group(1))


def all_leaks(data) -> tuple[list, int]:
    """The subtraction check over everything one page embeds: regions, months into quarters into years into the
    whole span, the values of every dimension, the verdicts into the spine MRIs, and the reason codes of a
    verdict into its count. Returns (leaks, sums examined)."""
    views, at = data["views"], {c: i for i, c in enumerate(data["columns"])}
    rule_sets = data["rule_sets"]
    counted = ["n"] + [f"{s}:{rs}" for s in ("pu", "ii") for rs in rule_sets] + ["op8n", "op8d"]
    leaks, examined = [], 0

    def value(key, column):
        row = views.get("|".join(key))
        if row is None:
            return 0
        x = row[at[column]]
        return x if isinstance(x, int) else None

    def relation(total, parts, column):
        nonlocal examined
        if "|".join(total) not in views:
            return
        t = value(total, column)
        values = [value(p, column) for p in parts]
        examined += 1
        if t is None or values.count(None) != 1:
            return
        left = t - sum(v for v in values if v is not None)
        if 0 <= left <= 10:
            leaks.append((total, column, left))

    dims = {**data["facets"], **data["dims"]}
    units = [(ALL, ALL)] + [(d, v) for d, values in dims.items() for v in values]
    periods = [ALL, *data["years"], *data["quarters"], *data["months"]]
    for column in counted:
        for unit, period in itertools.product(units, periods):
            relation((ALL, period) + unit, [(r, period) + unit for r in ("lumbar", "cervical", "thoracic")], column)
        for region, unit in itertools.product([ALL, "lumbar", "cervical", "thoracic"], units):
            relation((region, ALL) + unit, [(region, y) + unit for y in data["years"]], column)
            for y in data["years"]:
                relation((region, y) + unit, [(region, q) + unit for q in data["quarters"] if q.startswith(y)], column)
            for q in data["quarters"]:
                months = [m for m in data["months"] if q == f"{m[:4]}-Q{(int(m[5:]) - 1) // 3 + 1}"]
                relation((region, q) + unit, [(region, m) + unit for m in months], column)
            if unit == (ALL, ALL):
                for period in periods:
                    for name, values in dims.items():
                        relation((region, period, ALL, ALL), [(region, period, name, x) for x in values], column)
    return leaks, examined


@pytest.mark.parametrize("page", ["index.html", "trends.html", "breakdowns.html", "rule_sets.html"])
def test_no_small_count_can_be_worked_out_on_any_page(published, page):
    data = page_data_of(published, page)
    for key, row in data["views"].items():
        for x in row:
            assert not (isinstance(x, int) and 0 <= x <= 10), (key, row)
    leaks, examined = all_leaks(data)
    assert leaks == [] and examined > 1000, (leaks[:5], examined)


def test_reason_codes_that_add_up_to_a_verdict_leave_no_small_count(published):
    """Every scan potentially unnecessary under a rule set carries exactly one reason, so those codes add up to
    the verdict's count: with the count published, no one code can be the only hidden one while 0-10."""
    data = page_data_of(published, "breakdowns.html")
    views, at, ex = data["views"], {c: i for i, c in enumerate(data["columns"])}, data["extra_columns"]
    codes = {"standard": ["early_imaging_no_red_flags", "no_conservative_care", "repeat_imaging_no_change"]}
    exact = 0
    for key, extras in data["extras"].items():
        row = views[f"{key}|*|*"]
        for rs, names in codes.items():
            total = row[at[f"pu:{rs}"]]
            values = [extras[ex.index(f"reason:{rs}:{c}")] if f"reason:{rs}:{c}" in ex else 0 for c in names]
            if not isinstance(total, int):
                continue
            hidden = sum(not isinstance(v, int) for v in values)
            if hidden == 0:  # the relation is real: published codes add up to the verdict exactly
                assert sum(values) == total, (key, values, total)
                exact += 1
            elif hidden == 1:
                left = total - sum(v for v in values if isinstance(v, int))
                assert not 0 <= left <= 10, (key, rs, values, total)
    assert exact >= 5, exact


def cross_truth(published, region, period):
    where, params = view_where(region, period, "standard", alias="a")
    where.append("b.category <> 'out_of_scope'")
    with duckdb.connect(str(published / "warehouse.duckdb"), read_only=True) as con:
        return {(a, b): n for a, b, n in con.execute(f"""
            SELECT a.category, b.category, count(*) FROM mri_classification a
            JOIN mri_classification b ON b.scan_id = a.scan_id AND b.rule_set = 'acr-2021'
            WHERE {' AND '.join(where)} GROUP BY ALL""", params).fetchall()}


def test_the_rule_set_page_follows_the_filters_and_matches_the_warehouse(published, tmp_path):
    verdicts = ["indicated", "potentially_unnecessary", "insufficient_information"]
    driver = open_page(published, tmp_path, "rule_sets.html")
    try:
        checked = 0
        for region, period in [("*", "*"), ("lumbar", "2025"), ("cervical", "2024-Q2")]:
            pick(driver, "f-region", region)
            pick(driver, "f-period", period)
            for row in driver.find_elements("css selector", "#r-verdicts tbody tr"):
                rule_set, _, *cells = [c.text for c in row.find_elements("css selector", "td")]
                n, pu, ii = truth_by(published, ALL, region, period, rule_set)["*"]
                for got, want in zip(map(shown, cells), (n - pu - ii, pu, ii, n)):
                    assert got == want and want > 10 if isinstance(got, int) else got in ("<11", "withheld")
                    checked += isinstance(got, int)
            z = driver.execute_script("return document.getElementById('r-shift').data[0].z;")
            expected = cross_truth(published, region, period)
            for i, a in enumerate(verdicts):
                for j, b in enumerate(verdicts):
                    if z[i][j] is not None:
                        assert z[i][j] == expected.get((a, b), 0) and not 1 <= z[i][j] <= 10, (a, b)
                        checked += 1
        assert checked > 15, checked
    finally:
        driver.quit()
