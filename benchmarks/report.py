"""Turn `benchmarks/results/*.json` into `benchmarks/RESULTS.md` and the plots in `benchmarks/plots/`.

    python -m benchmarks.report

Every figure in RESULTS.md comes from the result files (medians of the repeats); the discussion that needs a
person's judgement is kept in `benchmarks/analysis.md` and appended as written.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
PLOTS_DIR = HERE / "plots"
STAGES = ("ingest", "quality", "classify", "publish")
TARGETS = {
    "whole_run_1m_s": 120.0,
    "classify_scans_per_s_1m": 100_000.0,
    "floor_ratio": 3.0,
    "pandas_speedup": 50.0,
    "incremental_s": 20.0,
    "memory_10m_gb": 24.0,
}


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def load() -> list[dict]:
    results = [json.loads(p.read_text()) for p in RESULTS_DIR.glob("*.json")]
    return sorted(results, key=lambda r: r["scans"])


def summarize(r: dict) -> dict:
    runs = r["whole_runs"]
    s = {
        "label": r["label"], "scans": r["scans"], "repeats": r["repeats"],
        "events": r["rows"]["clinical_events"],
        "input_mb": r["generated"]["bytes"] / 1e6,
        "warehouse_mb": r["warehouse_bytes"] / 1e6,
        "whole_s": _median([x["wall_seconds"] for x in runs]),
        "whole_peak_mb": max(x["peak_rss_mb"] for x in runs),
        "stage_s": {st: _median([x["stages"].get(st, {}).get("seconds") for x in runs]) for st in STAGES},
        "stage_peak_mb": {st: max(x["stages"].get(st, {}).get("peak_rss_mb", 0) for x in runs) for st in STAGES},
        "classify_standard_s": _median(r["classify_standard"]["result"]["seconds"]),
        "classify_all_s": _median(r["classify_all"]["result"]["seconds"]),
        "classify_all_rule_sets": len(r["classify_all"]["result"]["rule_sets"]),
        "classify_peak_mb": r["classify_all"]["peak_rss_mb"],
        "floor_s": _median(r["floor"]["result"]["seconds"]),
        "floor_peak_mb": r["floor"]["peak_rss_mb"],
    }
    if "pandas" in r:
        p = r["pandas"]["result"]
        s.update(pandas_s=_median(p["seconds"]), pandas_peak_mb=r["pandas"]["peak_rss_mb"],
                 pandas_compared=p.get("compared"), pandas_category_agree=p.get("category_agree"),
                 pandas_reasons_agree=p.get("reasons_agree"))
    if "incremental" in r:
        inc = r["incremental"]
        days = inc["days"]
        s.update(
            inc_baseline_s=inc["baseline"]["wall_seconds"],
            inc_day_s=_median([d["wall_seconds"] for d in days]),
            inc_day_run_s=_median([d["result"]["run_seconds"] for d in days]),
            inc_day_peak_mb=max(d["peak_rss_mb"] for d in days),
            inc_day_rows=inc["day_rows"],
            inc_day_stage_s={st: _median([d["stages"].get(st, {}).get("seconds") for d in days]) for st in STAGES},
            inc_modes=days[-1]["result"]["modes"],
        )
    return s


def fit_line(xs, ys):
    """Least squares y = a + b * x (a fixed cost plus a cost per scan). Returns (a, b)."""
    pts = [(x, y) for x, y in zip(xs, ys) if x and y is not None]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    b = sum((p[0] - mx) * (p[1] - my) for p in pts) / sum((p[0] - mx) ** 2 for p in pts)
    return my - b * mx, b


def local_exponent(x1, y1, x2, y2):
    """How time scales between two sizes: 1.0 is linear."""
    return math.log(y2 / y1) / math.log(x2 / x1)


def _finish(plt, fig, ax, name: str, title: str, xlabel: str, ylabel: str) -> str:
    """Log-scaled sizes, labels, grid and legend; saved as PLOTS_DIR/name."""
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(PLOTS_DIR / name)
    plt.close(fig)
    return name


def plots(rows: list[dict]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    PLOTS_DIR.mkdir(exist_ok=True)
    names = []
    xs = [r["scans"] for r in rows]
    # Okabe-Ito, like the dashboards.
    colours = ["#000000", "#E69F00", "#56B4E9", "#009E73", "#D55E00", "#0072B2", "#CC79A7"]

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    series = [("whole run", [r["whole_s"] for r in rows])]
    series += [(f"stage: {st}", [r["stage_s"][st] for r in rows]) for st in STAGES]
    series += [("classification alone, standard", [r["classify_standard_s"] for r in rows]),
               ("DuckDB floor (read + aggregate once)", [r["floor_s"] for r in rows])]
    pandas = [(r["scans"], r["pandas_s"]) for r in rows if r.get("pandas_s")]
    for (label, ys), colour in zip(series, colours):
        ax.plot(xs, ys, marker="o", label=label, color=colour)
    if pandas:
        ax.plot([p[0] for p in pandas], [p[1] for p in pandas], marker="s", linestyle="--",
                color="#7F7F7F", label="pandas baseline, standard")
    ax.set_yscale("log")
    names.append(_finish(plt, fig, ax, "time_vs_size.png", "Time against size (2 cores)",
                         "spine MRI scans (about 11 history events each)", "seconds (median)"))

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    ax.plot(xs, [r["whole_peak_mb"] / 1024 for r in rows], marker="o", color="#000000", label="whole run (peak)")
    for st, colour in zip(STAGES, colours[1:]):
        ax.plot(xs, [r["stage_peak_mb"][st] / 1024 for r in rows], marker="o", color=colour, label=f"within {st}")
    ax.axhline(24, color="#D55E00", linestyle=":", label="machine memory (24 GB)")
    names.append(_finish(plt, fig, ax, "memory_vs_size.png", "Memory against size", "spine MRI scans",
                         "peak resident memory, GB"))

    inc = [r for r in rows if r.get("inc_day_s")]
    if inc:
        r = inc[0]
        fig, ax = plt.subplots(figsize=(8, 3.6), dpi=120)
        labels = ["full run (all data)", "nightly day (incremental)"]
        full = [r["stage_s"][st] or 0 for st in STAGES]
        day = [r["inc_day_stage_s"][st] or 0 for st in STAGES]
        left = [0.0, 0.0]
        for i, (st, colour) in enumerate(zip(STAGES, colours[1:])):
            ax.barh(labels, [full[i], day[i]], left=left, color=colour, label=st)
            left = [left[0] + full[i], left[1] + day[i]]
        other = [r["whole_s"] - left[0], r["inc_day_s"] - left[1]]
        ax.barh(labels, other, left=left, color="#BBBBBB", label="start-up and bookkeeping")
        ax.set_xlabel("seconds")
        ax.set_title(f"{r['label']} scans: a nightly day against a full run")
        ax.legend(fontsize=8, ncol=5, loc="lower center", bbox_to_anchor=(0.5, -0.55))
        fig.tight_layout()
        fig.savefig(PLOTS_DIR / "incremental.png", bbox_inches="tight")
        plt.close(fig)
        names.append("incremental.png")
    return names


def _f(x, digits=1):
    return "-" if x is None else f"{x:,.{digits}f}"


def render(rows: list[dict], machine: dict, measured: list[str], plot_names: list[str]) -> str:
    by = {r["label"]: r for r in rows}
    L = ["# Benchmarks", ""]
    L += [
        "Generated by `python -m benchmarks.report` from `benchmarks/results/*.json` (written by "
        "`python -m benchmarks.run`; see its docstring and `make bench`). Every time is the median of the repeats "
        "shown; memory is the peak resident set size of the measuring child process.", "",
        "## Machine", "",
        f"- {machine.get('cpus')} CPU cores ({machine.get('cpu_model', 'unknown model')}), "
        f"{machine.get('memory_gb')} GB memory, {machine.get('platform')}",
        f"- Python {machine.get('python')}, DuckDB {machine.get('duckdb')}, pandas {machine.get('pandas')}",
        f"- measured {', '.join(sorted(set(measured)))}", "",
        "## Method", "",
        "- Input: `data_samples/generate.py`, seed 2026, Parquet, one year of data (2025), the last day written as "
        "a nightly drop; about 1 referral and 11 history events per scan, one scan per patient.",
        "- Whole run: `imaging-audit run --input <size>/input --output <size>/output` in a fresh process: ingest "
        "(typing, quarantine, identifier guard), the Great Expectations gate, links, both rule sets, the HEDIS "
        "measure, the CSV export, four dashboard pages and the reports. Stage times are the sums of the run's own "
        "step times; the whole-run time is the process wall time, start-up included.",
        "- Classification alone: `classify_scans` from scratch on a copy of that warehouse (features, verdicts, "
        "evidence, `scan_features`), `standard` only and all rule sets.",
        "- Floor: one DuckDB query reading the three Parquet inputs and aggregating once per scan (each scan's "
        "history up to its date, and its referral) - work any classifier must at least do.",
        "- pandas: `benchmarks/pandas_baseline.py`, the `standard` rule set written as an analyst would (merge, "
        "groupby, a row-wise apply for the ordered rules), reading the same files; checked scan by scan against "
        "the pipeline's verdicts.",
        "- Incremental: the nightly Dagster job for the drop day's partition, in a fresh process, on top of a "
        "warehouse holding everything before it (what the schedule launches each night).", "",
    ]
    # Targets
    one_m = by.get("1M")
    ten_m = by.get("10M")
    L += ["## Targets", "",
          "Measured by `benchmarks.run` on the dates above, before the identifier guard, the text stage and chart "
          "review were added; the whole run and nightly increment of today's pipeline, on today's machine, are in "
          "*Text stage at scale* below.", "",
          "| target | measured | met |", "|---|---|---|"]

    def row(name, value, ok):
        L.append(f"| {name} | {value} | {'yes' if ok else 'no'} |")

    if one_m:
        row("whole nightly run on 1M scans < 2 min", f"{_f(one_m['whole_s'])} s",
            one_m["whole_s"] < TARGETS["whole_run_1m_s"])
        rate = one_m["scans"] / one_m["classify_standard_s"]
        row("classification >= 100k scans/s at 1M (`standard`)", f"{_f(rate / 1000)}k scans/s "
            f"({_f(one_m['classify_standard_s'], 2)} s)", rate >= TARGETS["classify_scans_per_s_1m"])
        rate_all = one_m["scans"] / one_m["classify_all_s"]
        row(f"the same with all rule sets ({one_m['classify_all_rule_sets']})", f"{_f(rate_all / 1000)}k scans/s "
            f"({_f(one_m['classify_all_s'], 2)} s)", rate_all >= TARGETS["classify_scans_per_s_1m"])
        ratio = one_m["classify_standard_s"] / one_m["floor_s"]
        row("classification within 3x of the DuckDB floor (1M)", f"{_f(ratio, 2)}x", ratio <= TARGETS["floor_ratio"])
        if one_m.get("pandas_s"):
            speed = one_m["pandas_s"] / one_m["classify_standard_s"]
            row(">= 50x faster than pandas (1M, `standard`)", f"{_f(speed)}x", speed >= TARGETS["pandas_speedup"])
        if one_m.get("inc_day_s"):
            row("incremental day on a 1M history < 20 s", f"{_f(one_m['inc_day_s'])} s (process); "
                f"{_f(one_m['inc_day_run_s'])} s (the run)", one_m["inc_day_s"] < TARGETS["incremental_s"])
    if ten_m:
        row("10M scans complete within 24 GB", f"{_f(ten_m['whole_s'] / 60)} min, peak "
            f"{_f(ten_m['whole_peak_mb'] / 1024)} GB", ten_m["whole_peak_mb"] / 1024 < TARGETS["memory_10m_gb"])
    L.append("")

    L += ["## Whole run and stages", "",
          "| scans | history events | input | warehouse | whole run | scans/s | peak memory | ingest | quality | "
          "classify | publish | repeats |", "|" + "---|" * 12]
    for r in rows:
        st = r["stage_s"]
        L.append(
            f"| {r['label']} | {r['events']:,} | {_f(r['input_mb'], 0)} MB | {_f(r['warehouse_mb'], 0)} MB | "
            f"{_f(r['whole_s'])} s | {_f(r['scans'] / r['whole_s'], 0)} | {_f(r['whole_peak_mb'] / 1024, 2)} GB | "
            f"{_f(st['ingest'])} s | {_f(st['quality'])} s | {_f(st['classify'])} s | {_f(st['publish'])} s | "
            f"{r['repeats']} |"
        )
    L += ["", "Peak memory within each stage (GB): " + "; ".join(
        f"{r['label']}: " + ", ".join(f"{st} {_f(r['stage_peak_mb'][st] / 1024, 2)}" for st in STAGES)
        for r in rows), ""]

    L += ["## Classification against the floor and pandas", "",
          "| scans | `standard` | scans/s | all rule sets | floor | standard / floor | pandas | pandas / standard "
          "| pandas peak memory | verdicts agreeing |", "|" + "---|" * 10]
    for r in rows:
        agree = "-"
        if r.get("pandas_compared"):
            agree = (f"{r['pandas_category_agree']:,} / {r['pandas_compared']:,} categories, "
                     f"{r['pandas_reasons_agree']:,} reasons")
        L.append(
            f"| {r['label']} | {_f(r['classify_standard_s'], 2)} s | {_f(r['scans'] / r['classify_standard_s'], 0)} | "
            f"{_f(r['classify_all_s'], 2)} s | {_f(r['floor_s'], 2)} s | "
            f"{_f(r['classify_standard_s'] / r['floor_s'], 2)}x | "
            f"{_f(r.get('pandas_s')) + ' s' if r.get('pandas_s') else '-'} | "
            f"{_f(r['pandas_s'] / r['classify_standard_s']) + 'x' if r.get('pandas_s') else '-'} | "
            f"{_f(r['pandas_peak_mb'] / 1024, 2) + ' GB' if r.get('pandas_peak_mb') else '-'} | {agree} |"
        )
    L.append("")

    inc = [r for r in rows if r.get("inc_day_s")]
    if inc:
        r = inc[0]
        modes = r["inc_modes"].get("mri_classification", {})
        L += ["## Incremental nightly run", "",
              f"On {r['label']} scans: the baseline (everything before the drop day) loaded by the "
              f"nightly job in {_f(r['inc_baseline_s'])} s; then the drop day's partition "
              f"({', '.join(f'{v:,} {k}' for k, v in r['inc_day_rows'].items())}):", "",
              f"- {_f(r['inc_day_s'])} s for the whole process (Python and Dagster start-up included), "
              f"{_f(r['inc_day_run_s'])} s for the run itself; peak memory {_f(r['inc_day_peak_mb'] / 1024, 2)} GB;",
              f"- {_f(100 * r['inc_day_s'] / r['whole_s'], 0)}% of the full run ({_f(r['whole_s'])} s);",
              f"- classification: {modes.get('mode', '-')}; {modes.get('scans_classified', 0):,} scans reclassified;",
              "- stages: " + ", ".join(f"{st} {_f(r['inc_day_stage_s'][st])} s" for st in STAGES) + ".", ""]

    L += ["## Growth", ""]
    if len(rows) >= 2:
        xs = [r["scans"] for r in rows]
        quantities = {
            "whole run": [r["whole_s"] for r in rows],
            "ingest": [r["stage_s"]["ingest"] for r in rows],
            "quality": [r["stage_s"]["quality"] for r in rows],
            "classification, standard": [r["classify_standard_s"] for r in rows],
            "publish": [r["stage_s"]["publish"] for r in rows],
        }
        big = rows[-2:]
        L += [f"Linear fits `seconds = fixed + per_scan * scans` over {', '.join(r['label'] for r in rows)}, the "
              f"scaling exponent between {big[0]['label']} and {big[1]['label']} (1.0 = linear), and what the "
              "fits predict on this machine:", "",
              "| quantity | fixed | per million scans | exponent | at 30M | at 100M |", "|---|---|---|---|---|---|"]
        for name, ys in quantities.items():
            fit = fit_line(xs, ys)
            if not fit or None in ys[-2:]:
                continue
            a, b = fit
            exponent = local_exponent(big[0]["scans"], ys[-2], big[1]["scans"], ys[-1])
            L.append(f"| {name} | {_f(a)} s | {_f(b * 1e6)} s | {exponent:.2f} | {_f((a + b * 3e7) / 60)} min | "
                     f"{_f((a + b * 1e8) / 60)} min |")
        L += ["", "Peak memory does not follow a fit: DuckDB uses memory up to its limit (60% of physical memory "
              "unless configured) and spills to disk beyond it, and the quality gate validates at most "
              "4 million rows at a time, so the peak is set by the limit, not by the data: "
              + ", ".join(f"{r['label']} {_f(r['whole_peak_mb'] / 1024, 1)} GB" for r in rows) + ".", ""]
    for name in plot_names:
        L += [f"![{name}](plots/{name})", ""]
    L += text_accuracy_section()
    analysis = HERE / "analysis.md"
    if analysis.exists():
        L += [analysis.read_text().strip(), ""]
    return "\n".join(L)


NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}

# The annotated corpora in the order they were written (tests/corpus/indications/README.md), with how each was
# used. The last one is the honest estimate: measured once, never tuned on.
TEXT_CORPORA = [
    ("development", "dev", "tuned on from the start"),
    ("heldout", "held-out", "tuned on for lexicon 1.1.0"),
    ("validation", "validation", "measured once with lexicon 1.1.0 (micro precision 0.945, recall 0.907), then "
                                 "tuned on"),
    ("test", "test", "measured once with lexicon 1.2.0 (0.952, 0.886), then tuned on"),
    ("blind", "blind", "measured once with lexicon 1.3.0 (0.929, 0.911), then tuned on for 1.4.0"),
    ("unseen", "unseen", "written for lexicon 1.4.0 and measured once with it, never tuned on"),
]


def text_accuracy_section() -> list[str]:
    """The text stage on the annotated corpora, from benchmarks/text_accuracy.json (python -m
    benchmarks.text_accuracy --json benchmarks/text_accuracy.json)."""
    path = HERE / "text_accuracy.json"
    if not path.exists():
        return []
    t = json.loads(path.read_text())
    corpora = [(name, label, use, t[name]) for name, label, use in TEXT_CORPORA if name in t]
    honest = corpora[-1][1]
    L = ["## Text stage: findings on the annotated corpora", "",
         f"Method: `python -m benchmarks.text_accuracy` with lexicon {t['lexicon']} on {NUMBERS.get(len(corpora), len(corpora))} corpora of "
         "synthetic orders (`tests/corpus/indications/`), each annotated by a different author who read neither "
         "the lexicon nor the other corpora: "
         + "; ".join(f"{label} ({r['texts']} texts): {use}" for _, label, use, r in corpora)
         + f". **The {honest} corpus's figures are the honest estimate** of accuracy on text the lexicon has not "
         "seen; the others measure how well the lexicon fits text it was tuned on. A finding is correct when it "
         "overlaps an annotated mention of the same concept with the same status (affirmed, negated, "
         "hypothetical, uncertain, family, historical); a second finding inside a mention already matched is "
         "part of it. Precision = correct / predicted, recall = correct / annotated. Target: precision >= 0.95 "
         "and recall >= 0.90 for every concept with at least 20 mentions.", "",
         "| concept | " + " | ".join(f"{lab} mentions | {lab} P | {lab} R" for _, lab, _, _ in corpora)
         + f" | {honest} meets target |",
         "|---|" + "---|" * (3 * len(corpora) + 1)]
    names = sorted(set().union(*(r["concepts"] for _, _, _, r in corpora)))
    last = corpora[-1][3]["concepts"]
    for c in names:
        cells = []
        for _, _, _, r in corpora:
            m = r["concepts"].get(c, {})
            cells.append(f"{m.get('mentions', 0)} | {m.get('precision', 0):.3f} | {m.get('recall', 0):.3f}")
        v = last.get(c, {})
        ok = ("n/a" if v.get("mentions", 0) < 20 else
              "yes" if v.get("precision", 0) >= 0.95 and v.get("recall", 0) >= 0.90 else "no")
        L.append(f"| {c} | " + " | ".join(cells) + f" | {ok} |")
    row = []
    for _, _, _, r in corpora:
        pred = sum(m["predicted"] for m in r["concepts"].values())
        gold = sum(m["mentions"] for m in r["concepts"].values())
        ok_n = sum(m["correct"] for m in r["concepts"].values())
        row.append(f"{gold} | {ok_n / pred if pred else 0:.3f} | {ok_n / gold if gold else 0:.3f}")
    L.append("| **all (micro)** | " + " | ".join(row) + " | |")
    for _, label, _, r in corpora:
        x = r["durations"]
        L += ["", f"{label} ({r['texts']} texts): symptom duration read exactly for {x.get('symptom_correct', 0)} "
              f"of {x.get('symptom_annotated', 0)} annotated ({x.get('symptom_predicted', 0)} predicted); "
              f"conservative care with its duration read exactly for {x.get('care_correct', 0)} of "
              f"{x.get('care_annotated', 0)} ({x.get('care_predicted', 0)} predicted)."]
    return L + [""] + text_speed_section() + [""] + page_speed_section()


def page_speed_section() -> list[str]:
    """The published pages on the sample (benchmarks/page_speed.py)."""
    path = HERE / "page_speed.json"
    if not path.exists():
        return []
    r = json.loads(path.read_text())
    first, second = r["first_open_seconds"], r["second_open_seconds"]
    L = ["## Pages on the sample", "",
         f"Measured {r['measured_at']} with `python -m benchmarks.page_speed` (Python {r['python']}): the audit on "
         "`data_samples/`, then each dashboard page opened in headless Chromium through Selenium until every "
         "chart has drawn, first with Plotly's library not yet cached and then again; and the reports stage "
         "alone, rendered again from the warehouse, feedback PDFs included.", "",
         "| measure | result | target |", "|---|---|---|",
         f"| dashboards folder | {r['dashboards_bytes'] / 1e6:.2f} MB | under 6 MB |"]
    for page in first:
        L.append(f"| `{page}.html`: first opening, second | {first[page]} s, {second[page]} s | under 2 s |")
    L += [f"| reports stage with {r['feedback_rendered']} feedback PDFs rendered | "
          f"{r['reports_with_feedback_seconds']} s | |", ""]
    return L


def text_speed_section() -> list[str]:
    """The text stage at scale, from benchmarks/text_speed.json (python -m benchmarks.text_speed)."""
    path = HERE / "text_speed.json"
    if not path.exists():
        return []
    t = json.loads(path.read_text())
    w, n = t["whole_run_text"], t["nightly_text"]
    L = ["### Text stage at scale", "",
         f"Method: `python -m benchmarks.text_speed` ({t['measured_at']}, {t['machine']['cpus']} cores"
         + (f", lexicon {t['lexicon']}" if t.get("lexicon") else "") + "): "
         f"{t['scans']:,} generated scans, one process per measurement, nothing else running.", "",
         "| measure | value | target |", "|---|---|---|",
         f"| referrals / distinct indication texts | {t['referrals']:,} / {t['distinct_texts']:,} "
         f"({t['distinct_share'] * 100:.2f}% distinct) | |",
         f"| first run: texts parsed, parse time, texts per second | {w['texts_parsed']:,}, {w['parse_seconds']} s, "
         f"{w['texts_per_second']} | |",
         f"| first run: text stage (parse, cache, findings table) | {w['text_step_seconds']} s | |",
         f"| whole `imaging-audit run` with text reading on | {t['whole_run_seconds']} s | under 120 s |",
         f"| nightly increment ({t['nightly_partition']}): texts parsed, text stage | {n['texts_parsed']:,}, "
         f"{n['text_step_seconds']} s | |",
         f"| nightly increment: the whole Dagster job | {t['nightly_seconds']} s | under 20 s |", ""]
    steps = w.get("steps") or {}
    if steps:
        L += ["Whole-run step times (s): " + ", ".join(f"{k} {v}" for k, v in steps.items()), ""]
    nsteps = n.get("steps") or {}
    if nsteps:
        L += ["Nightly step times (s): " + ", ".join(f"{k} {v}" for k, v in nsteps.items()), ""]
    notes = HERE / "text_speed_notes.md"  # what was measured beside the benchmark, by hand
    if notes.exists():
        L += [notes.read_text().strip(), ""]
    return L


def main() -> int:
    results = load()
    if not results:
        raise SystemExit("no results in benchmarks/results/: run `python -m benchmarks.run` first")
    rows = [summarize(r) for r in results]
    names = plots(rows)
    machine = results[-1].get("machine", {})
    text = render(rows, machine, [r.get("measured_at", "") for r in results], names)
    (HERE / "RESULTS.md").write_text(text + "\n")
    print(f"wrote {HERE / 'RESULTS.md'} and {len(names)} plot(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
