"""The published pages, as a person opens them: every chart renders in headless Chromium with the network off,
without console errors; small cells never show; publishing is atomic with a dated archive."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from pipelines.cli import run_audit
from tests.conftest import REPO_ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    out = tmp_path_factory.mktemp("published") / "out"
    run_audit(REPO_ROOT / "data_samples", out, quiet=True)
    return out


def render(page, tmp_path) -> tuple[str, list[str]]:
    """The DOM after scripts ran, and the console messages, from headless Chromium with no network."""
    if CHROMIUM is None:
        pytest.fail("Chromium is needed for the page tests: `make test` installs Debian's chromium package")
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", "--host-resolver-rules=MAP * ~NOTFOUND",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=180,
    )
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return done.stdout, console


PAGES = ["dashboards/index.html", "dashboards/trends.html", "dashboards/breakdowns.html",
         "dashboards/rule_sets.html", "quality/index.html", "reports/index.html", "reports/downstream.html",
         "reports/providers.html", "reports/facilities.html", "reports/methodology.html", "reports/review.html",
         "reports/validation.html"]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_offline_without_console_errors(published, tmp_path, page):
    path = published / page
    source = path.read_text()
    # Nothing is fetched from the web (links to cited sources are fine: a reader follows them on purpose).
    outside = re.sub(r"<script>.*?</script>", "", source, flags=re.S)
    assert not re.search(r'src="https?://|<link[^>]+href="https?://|@import|url\(https?:', outside)
    dom, console = render(path, tmp_path)
    assert console == [], console
    # Charts: Plotly's own output (rule sets) and the slots the filtered pages' script draws into.
    graphs = source.count('class="plotly-graph-div"') + len(re.findall(r'<div id="[^"]+" class="figure"', source))
    assert graphs >= {"dashboards/trends.html": 7, "dashboards/breakdowns.html": 7,
                      "dashboards/rule_sets.html": 1}.get(page, 0)
    # Each chart draws at least one SVG once the scripts have run.
    assert dom.count('class="main-svg"') >= graphs
    assert "<h1>" in dom


def test_headline_figures_state_their_denominators(published):
    index = (published / "dashboards" / "index.html").read_text()
    assert re.search(r"potentially unnecessary under the standard rule set \([\d,]+ of [\d,]+\)", index)
    assert "CMS OP-8" in index and "HEDIS LBP" in index and "eligible" in index


def test_pages_link_to_each_other(published):
    index = (published / "dashboards" / "index.html").read_text()
    for target in ("trends.html", "breakdowns.html", "rule_sets.html", "../reports/index.html",
                   "../quality/index.html"):
        assert f'href="{target}"' in index


def test_a_dated_archive_keeps_the_published_pages(published):
    for folder in ("dashboards", "reports"):
        archived = list((published / "archive").glob(f"*/{folder}/index.html"))
        assert len(archived) == 1, folder


def test_small_units_never_appear_in_the_charts(tmp_path):
    """A facility with 5 spine MRIs is left out; one with 60 is shown."""
    import datetime as dt

    from tests.conftest import write_csv

    folder = tmp_path / "in"
    referrals, scans = [], []
    for i in range(65):
        facility = "F_SMALL" if i < 5 else "F_LARGE"
        referrals.append({"referral_id": f"R{i}", "patient_id": f"P{i}", "referral_date": "2025-03-01",
                          "requested_procedure_code": "72148", "diagnosis_codes": "M54.50", "patient_age": "40",
                          "symptom_onset_date": (dt.date(2025, 3, 1) - dt.timedelta(days=10 + i % 70)).isoformat()})
        scans.append({"scan_id": f"S{i}", "patient_id": f"P{i}", "scan_date": "2025-03-05",
                      "procedure_code": "72148", "referral_id": f"R{i}", "facility_id": facility})
    write_csv(folder / "referrals.csv", referrals)
    write_csv(folder / "scans.csv", scans)
    out = tmp_path / "out"
    run_audit(folder, out, quiet=True)
    for page in ("trends.html", "breakdowns.html"):
        text = (out / "dashboards" / page).read_text()
        assert "F_LARGE" in text and "F_SMALL" not in text, page


def test_a_failed_build_leaves_the_published_folder_untouched(tmp_path):
    from assets.publish.files import publish_directory

    target = tmp_path / "dashboards"
    publish_directory(target, lambda folder: (folder / "index.html").write_text("v1"), tmp_path / "archive", "2025-01-01")

    def broken(folder):
        (folder / "index.html").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        publish_directory(target, broken, tmp_path / "archive", "2025-01-02")
    assert (target / "index.html").read_text() == "v1"
    assert not list(tmp_path.glob(".dashboards.*"))
    assert (tmp_path / "archive" / "2025-01-01" / "dashboards" / "index.html").read_text() == "v1"
    assert not (tmp_path / "archive" / "2025-01-02").exists()


def test_the_dashboards_folder_is_light_and_loads_plotly_once(published):
    """One plotly.js beside the pages (the vendored cartesian bundle matching the installed plotly), none inside
    them; the whole folder for the sample stays under 6 MB."""
    from plotly.offline import get_plotlyjs_version

    folder = (published / "dashboards").resolve()
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size < 6_000_000, size
    library = (folder / "plotly.min.js").read_text(encoding="utf-8")
    assert f"plotly.js (cartesian - minified) v{get_plotlyjs_version()}" in library[:200]
    for page in folder.glob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert "Copyright 2012" not in text, page.name  # the library is not copied into a page
        draws = 'class="plotly-graph-div"' in text or 'class="figure"' in text  # filtered pages draw in script
        assert ('<script src="plotly.min.js"></script>' in text) == draws, page.name
        # The filtered pages share one script beside them, like the library.
        assert ('<script src="dashboard.js"></script>' in text) == ('id="filter-data"' in text), page.name
    assert (folder / "dashboard.js").is_file()


def test_every_page_has_a_print_stylesheet(published):
    for page in ("dashboards/index.html", "dashboards/trends.html", "reports/index.html", "reports/providers.html",
                 "reports/feedback/index.html"):
        text = (published / page).read_text(encoding="utf-8")
        assert "@media print" in text and "break-inside:avoid" in text.replace(": ", ":"), page


@pytest.mark.parametrize("with_imaging,episodes,hidden", [(3, 400, True), (396, 400, True), (40, 400, False)])
def test_the_hedis_tile_hides_its_share_when_either_part_is_small(with_imaging, episodes, hidden):
    """With 1-10 episodes on either side, the share and the count without imaging would reveal it beside the
    published total: both are hidden, the total stays."""
    from assets.publish.dashboard import render_index

    figures = {"period": ("2025-01-01", "2025-12-31"), "hedis": (with_imaging, episodes), "rule_sets": [],
               "tables": [], "regions": [], "filters": None, "reviewed_rates": []}
    text = render_index(figures)
    tile = re.search(r'<div class="n">([^<]*)</div><div class="l">HEDIS LBP: episodes without\s+imaging in 28 days '
                     r'\(([^ ]+) of ([^;]+);', text)
    assert tile, text[-1500:]
    share, without, total = tile.groups()
    assert total == f"{episodes:,}"
    if hidden:
        assert (share, without) == ("–", "&lt;11")
    else:
        assert (share, without) == (f"{1 - with_imaging / episodes:.1%}", f"{episodes - with_imaging:,}")


def test_rows_loaded_per_table_hide_small_quarantine_counts_and_what_reveals_them():
    """A table's 1-10 quarantined rows read <11, its loaded rows (rows in less them) are withheld, and the
    total is withheld when it is the only small one (the total less the others would give it)."""
    from assets.publish.dashboard import render_index

    def page(tables):
        figures = {"period": ("2025-01-01", "2025-12-31"), "hedis": (40, 400), "rule_sets": [], "tables": tables,
                   "regions": [("lumbar", 5), ("cervical", 300)], "filters": None, "reviewed_rates": []}
        text = render_index(figures)
        rows = re.findall(r'<tr><td class="">(\w+)</td>((?:<td class="num">[^<]*</td>)+)</tr>', text)
        cells = {name: re.findall(r'<td class="num">([^<]*)</td>', tds) for name, tds in rows}
        total = re.search(r'<p class="note">([^ ]+) input rows were quarantined', text).group(1)
        return cells, total

    cells, total = page([("clinical_events", 1, 23698, 23650, 48), ("referrals", 1, 2001, 1999, 2)])
    assert cells["clinical_events"] == ["1", "23,698", "23,650", "48"]
    assert cells["referrals"] == ["1", "2,001", "withheld", "&lt;11"]
    assert total == "withheld"
    assert cells["lumbar"] == ["&lt;11"] and cells["cervical"] == ["300"]
    cells, total = page([("clinical_events", 1, 23698, 23650, 48), ("referrals", 1, 2001, 1999, 2),
                         ("scans", 1, 2001, 1998, 3)])
    assert total == "53"  # two small parts of 5: neither can be worked out
