"""A plain pandas implementation of the `standard` rule set: a benchmark baseline and nothing else.

It is what an analyst would write to classify spine MRIs without the pipeline: read the native input files
(`referrals*`, `scans*`, `clinical_events*`, CSV or Parquet, possibly several files per table) with pandas,
link scans to referrals, tag codes with value-set concepts, merge and group by scan to build the features,
and decide each scan with the ordered rules of `guidelines/rule_sets/standard.yaml` in a row-wise
`DataFrame.apply`. Parameters, code lists and feature definitions are read with the project's config
helpers; all of the classification logic is here, in pandas.

It exists only so that the pipeline (`assets/classify/engine.py`, DuckDB SQL) can be timed against it, and
it is checked to give the same `category` and `reasons` as the pipeline's `mri_classification` table for
rule set `standard`. It is not used by the pipeline, and it does not do what ingestion does for bad input:
it assumes fault-free input (as the generator writes with `--fault-rate 0`, the default), so there is no
quarantine, no identifier guard, no pseudonymisation and no validation. The only clean-up is what clean
input needs: codes compared without dots in upper case, dates parsed from ISO 8601, and a record delivered
again in a later file replacing the earlier one. No evidence text or other output columns are produced.

    python -m benchmarks.pandas_baseline --input DIR [--warehouse OUTPUT/warehouse.duckdb]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import pandas as pd

from assets.classify.rule_sets import load_coded_features, load_rule_sets
from assets.classify.value_sets import read_value_sets
from assets.ingest.contract import SPINE_MRI_REGIONS

RULE_SET = "standard"
LINK_WINDOW_DAYS = 90  # an unnamed referral links when dated 0-90 days before the scan
_FILE_RE = re.compile(r"^(referrals|scans|clinical_events)([._-].*)?\.(csv|csv\.gz|parquet)$", re.IGNORECASE)
_DROP_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


# ---------------------------------------------------------------------------------------------------------
# Reading the input

def read_table(input_dir: Path, table: str) -> pd.DataFrame:
    """All files of one table, oldest delivery first (baseline files, then nightly drops by date)."""
    files = []
    for path in Path(input_dir).iterdir():
        m = _FILE_RE.match(path.name)
        if path.is_file() and m and m.group(1).lower() == table:
            drop = _DROP_DATE_RE.search(m.group(2) or "")
            files.append((drop.group(0) if drop else "", path.name, path))
    frames = []
    for _, _, path in sorted(files):
        if path.name.lower().endswith(".parquet"):
            frames.append(pd.read_parquet(path))
        else:
            frames.append(pd.read_csv(path, dtype=str, keep_default_na=False))
    if not frames:
        return pd.DataFrame()
    df = pd.concat(frames, ignore_index=True)
    df.columns = [c.strip().lower() for c in df.columns]
    return df


def clean_text(s: pd.Series) -> pd.Series:
    """Trimmed text; empty means missing."""
    s = s.astype("string").str.strip()
    return s.mask(s == "")


def parse_date(s: pd.Series) -> pd.Series:
    """ISO 8601 dates (a time of day, if any, is dropped) as datetime64."""
    if pd.api.types.is_string_dtype(s):  # CSV text
        return pd.to_datetime(clean_text(s).str.slice(0, 10), format="%Y-%m-%d")
    return pd.to_datetime(s).dt.normalize()  # Parquet dates or timestamps


def normalize_code(s: pd.Series) -> pd.Series:
    """Codes as the value sets hold them: upper case, no dots (M54.50 -> M5450)."""
    return clean_text(s).str.replace(".", "", regex=False).str.upper()


def code_system_name(value: str) -> str:
    name = re.sub(r"[^A-Z0-9]", "", value.upper())
    return "CPT" if name == "CPT4" else name


def explode_codes(df: pd.DataFrame, id_col: str, codes_col: str) -> pd.DataFrame:
    """One row per (id, code) from a `;`-separated list of ICD-10-CM codes."""
    long = df[[id_col, codes_col]].dropna(subset=[codes_col])
    long = long.assign(code=long[codes_col].str.split(r"[;,|\s]+", regex=True)).explode("code")
    long["code"] = normalize_code(long["code"])
    return long.dropna(subset=["code"])[[id_col, "code"]]


def load_inputs(input_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    referrals = read_table(input_dir, "referrals")
    scans = read_table(input_dir, "scans")
    events = read_table(input_dir, "clinical_events")

    for col in ("referral_id", "patient_id", "requested_procedure_code", "referring_specialty", "care_setting"):
        if col in referrals:
            referrals[col] = clean_text(referrals[col])
    referrals["referral_date"] = parse_date(referrals["referral_date"])
    if "symptom_onset_date" in referrals:
        referrals["symptom_onset_date"] = parse_date(referrals["symptom_onset_date"])
    else:
        referrals["symptom_onset_date"] = pd.NaT
    # A referral delivered again in a later file replaces the earlier one.
    referrals = referrals.drop_duplicates("referral_id", keep="last").reset_index(drop=True)

    for col in ("scan_id", "patient_id", "procedure_code", "referral_id"):
        scans[col] = clean_text(scans[col]) if col in scans else pd.Series(pd.NA, index=scans.index, dtype="string")
    if "diagnosis_codes" not in scans:
        scans["diagnosis_codes"] = pd.Series(pd.NA, index=scans.index, dtype="string")
    scans["scan_date"] = parse_date(scans["scan_date"])
    scans = scans.drop_duplicates("scan_id", keep="last").reset_index(drop=True)

    if events.empty:
        events = pd.DataFrame({
            "patient_id": pd.Series(dtype="string"), "event_date": pd.Series(dtype="datetime64[ns]"),
            "code_system": pd.Series(dtype="string"), "code": pd.Series(dtype="string"),
            "days_supply": pd.Series(dtype="float64")})
    else:
        events["patient_id"] = clean_text(events["patient_id"])
        events["event_date"] = parse_date(events["event_date"])
        # 'ICD-10-CM', 'icd10cm', 'CPT-4' name the contract's code systems (few distinct values: map them).
        systems = clean_text(events["code_system"])
        events["code_system"] = systems.map({v: code_system_name(v) for v in systems.dropna().unique()})
        events["code"] = normalize_code(events["code"])
        if "days_supply" in events:
            events["days_supply"] = pd.to_numeric(events["days_supply"], errors="coerce")
        else:
            events["days_supply"] = float("nan")
    return referrals, scans, events


# ---------------------------------------------------------------------------------------------------------
# Value sets

def concept_lookup(codes: pd.DataFrame, value_sets: pd.DataFrame) -> pd.DataFrame:
    """(code_system, code, concept, region) for the distinct codes given: exact, prefix and regex matches."""
    codes = codes.drop_duplicates().dropna()
    exact = codes.merge(value_sets[value_sets["match"] == "exact"], on=["code_system", "code"])
    prefix_sets = value_sets[value_sets["match"] == "prefix"].rename(columns={"code": "prefix"})
    prefix = []
    for n in sorted(prefix_sets["prefix"].str.len().unique()):
        heads = codes.assign(prefix=codes["code"].str.slice(0, n))
        heads = heads[heads["code"].str.len() >= n]
        prefix.append(heads.merge(prefix_sets[prefix_sets["prefix"].str.len() == n], on=["code_system", "prefix"]))
    regex = []
    for vs in value_sets[value_sets["match"] == "regex"].itertuples():
        candidates = codes[codes["code_system"] == vs.code_system]
        regex.append(candidates[candidates["code"].str.fullmatch(vs.code)].assign(concept=vs.concept,
                                                                                   region=vs.region))
    found = pd.concat([exact] + prefix + regex, ignore_index=True)
    return found[["code_system", "code", "concept", "region"]].drop_duplicates().reset_index(drop=True)


# ---------------------------------------------------------------------------------------------------------
# Linking scans to referrals

def body_region(codes: pd.Series) -> pd.Series:
    return codes.map(SPINE_MRI_REGIONS).fillna("other")


def link_referrals(scans: pd.DataFrame, referrals: pd.DataFrame) -> pd.DataFrame:
    """The referral each scan fulfils: the one it names, if it exists, else the patient's latest referral for
    the same body region (the procedure itself when not a spine MRI) dated 0-90 days before the scan."""
    scans = scans.copy()
    scans["body_region"] = body_region(scans["procedure_code"])
    scans["region_key"] = scans["body_region"].where(scans["body_region"] != "other", scans["procedure_code"])
    refs = referrals[["referral_id", "patient_id", "referral_date", "requested_procedure_code"]].copy()
    ref_region = body_region(refs["requested_procedure_code"])
    refs["region_key"] = ref_region.where(ref_region != "other", refs["requested_procedure_code"])

    named = scans["referral_id"].isin(refs["referral_id"])
    candidates = scans.loc[~named, ["scan_id", "patient_id", "scan_date", "region_key"]].merge(
        refs.drop(columns="requested_procedure_code").rename(columns={"referral_id": "inferred_id"}),
        on=["patient_id", "region_key"],
    )
    in_window = (candidates["referral_date"] <= candidates["scan_date"]) & (
        candidates["referral_date"] >= candidates["scan_date"] - pd.Timedelta(days=LINK_WINDOW_DAYS))
    inferred = (candidates[in_window]
                .sort_values(["scan_id", "referral_date", "inferred_id"], ascending=[True, False, False])
                .drop_duplicates("scan_id")[["scan_id", "inferred_id"]])
    scans = scans.merge(inferred, on="scan_id", how="left")
    scans["linked_referral_id"] = scans["referral_id"].where(named.to_numpy(), scans["inferred_id"])
    return scans.drop(columns=["inferred_id", "region_key"])


# ---------------------------------------------------------------------------------------------------------
# Features per scan

def build_features(referrals: pd.DataFrame, scans: pd.DataFrame, events: pd.DataFrame,
                   p: dict, coded_features: dict, value_sets: pd.DataFrame) -> pd.DataFrame:
    scans = link_referrals(scans, referrals)
    ctx = scans[["scan_id", "patient_id", "scan_date", "procedure_code", "body_region",
                 "linked_referral_id", "diagnosis_codes"]].merge(
        referrals[["referral_id", "referral_date", "diagnosis_codes", "symptom_onset_date"]].rename(
            columns={"referral_id": "linked_referral_id", "diagnosis_codes": "referral_codes"}),
        on="linked_referral_id", how="left")
    ctx["documented_onset"] = ctx["symptom_onset_date"].where(ctx["symptom_onset_date"] <= ctx["scan_date"])

    # Every coded fact about the scan's patient up to the scan: the referral's and the scan's codes, the
    # patient's history events and earlier scans.
    keys = ctx[["scan_id", "patient_id", "scan_date", "body_region"]]
    referral_facts = explode_codes(ctx, "scan_id", "referral_codes").merge(
        ctx[["scan_id", "referral_date"]].rename(columns={"referral_date": "fact_date"}), on="scan_id")
    referral_facts = referral_facts.merge(keys, on="scan_id").assign(source="referral", code_system="ICD10CM")
    scan_facts = explode_codes(ctx, "scan_id", "diagnosis_codes").merge(keys, on="scan_id")
    scan_facts = scan_facts.assign(source="scan", code_system="ICD10CM", fact_date=scan_facts["scan_date"])

    history = events[["patient_id", "event_date", "code_system", "code", "days_supply"]].merge(keys, on="patient_id")
    history = history[history["event_date"] <= history["scan_date"]]
    history = history.rename(columns={"event_date": "fact_date"}).assign(source="history")

    prior = keys.merge(
        scans[["scan_id", "patient_id", "scan_date", "procedure_code"]].rename(
            columns={"scan_id": "prior_id", "scan_date": "fact_date", "procedure_code": "code"}),
        on="patient_id")
    prior = prior[(prior["fact_date"] < prior["scan_date"]) & (prior["scan_id"] != prior["prior_id"])]
    prior = prior.assign(source="prior_scan", code_system="CPT")

    lookup = concept_lookup(
        pd.concat([events[["code_system", "code"]], referral_facts[["code_system", "code"]],
                   scan_facts[["code_system", "code"]], prior[["code_system", "code"]]], ignore_index=True),
        value_sets)

    cols = ["scan_id", "scan_date", "body_region", "source", "fact_date", "code_system", "code"]
    facts = pd.concat([referral_facts[cols], scan_facts[cols], history[cols + ["days_supply"]], prior[cols]],
                      ignore_index=True)
    facts["days_before"] = (facts["scan_date"] - facts["fact_date"]).dt.days
    cfacts = facts.merge(lookup, on=["code_system", "code"])
    # a code tied to a spine region counts only for a scan of that region
    cfacts = cfacts[cfacts["region"].isna() | (cfacts["region"] == cfacts["body_region"])]
    from_history = cfacts["source"] == "history"

    # Coded features: a code on the referral or the scan always counts; history within the feature's window.
    feature_concepts = pd.DataFrame(
        [(name, item["concept"], p[item["lookback"]] if item.get("lookback") else None)
         for name, spec in coded_features.items() for item in spec["concepts"]],
        columns=["feature", "concept", "lookback"])
    hits = cfacts.merge(feature_concepts, on="concept")
    hits = hits[hits["source"].isin(["referral", "scan"]) | hits["lookback"].isna()
                | (hits["days_before"] <= hits["lookback"])]

    # Systemic corticosteroids: fills chained without a gap into runs, clipped to the look-back window.
    fills = cfacts[from_history & (cfacts["concept"] == "systemic_corticosteroid")].copy()
    fills["start"] = fills["fact_date"]
    fills["end"] = fills["start"] + pd.to_timedelta(fills["days_supply"].fillna(1).clip(lower=1) - 1, unit="D")
    fills = fills.sort_values(["scan_id", "start", "end"])
    prev_end = fills.groupby("scan_id")["end"].cummax().groupby(fills["scan_id"]).shift()
    fills["run"] = (prev_end.isna() | (fills["start"] > prev_end + pd.Timedelta(days=1))).cumsum()
    runs = fills.groupby("run").agg(scan_id=("scan_id", "first"), scan_date=("scan_date", "first"),
                                    run_start=("start", "min"), run_end=("end", "max"))
    window_start = runs["scan_date"] - pd.Timedelta(days=p["steroid_lookback_days"])
    runs["days_in_window"] = (runs["run_end"].clip(upper=runs["scan_date"])
                              - runs["run_start"].clip(lower=window_start)).dt.days + 1
    long_steroids = runs.loc[runs["days_in_window"] >= p["steroid_min_consecutive_days"], ["scan_id"]]

    steroid_features = feature_concepts.loc[feature_concepts["concept"] == "chronic_steroid_supply", ["feature"]]
    flags = pd.concat([hits[["scan_id", "feature"]], long_steroids.merge(steroid_features, how="cross")],
                      ignore_index=True)
    features = (pd.crosstab(flags["scan_id"], flags["feature"]) > 0).reindex(columns=list(coded_features),
                                                                             fill_value=False)
    out = ctx[["scan_id", "scan_date", "body_region", "documented_onset"]].merge(
        features, left_on="scan_id", right_index=True, how="left")
    out[list(coded_features)] = out[list(coded_features)].fillna(False).astype(bool)

    # Episode: documented onset, else the latest back-pain diagnosis after a clean period, provided back pain
    # was coded within the link look-back before the scan.
    pain = cfacts[from_history & (cfacts["concept"] == "spine_pain")]
    pain = pain[["scan_id", "scan_date", "fact_date"]].drop_duplicates().sort_values(["scan_id", "fact_date"])
    gap = pain.groupby("scan_id")["fact_date"].diff().dt.days
    clean_start = gap.isna() | (gap > p["lbp_clean_period_days"])
    episodes = pain.groupby("scan_id").agg(scan_date=("scan_date", "first"), last_pain_dx=("fact_date", "max"))
    episodes["start_dx"] = pain[clean_start].groupby("scan_id")["fact_date"].max()
    recent = (episodes["scan_date"] - episodes["last_pain_dx"]).dt.days <= p["episode_link_lookback_days"]
    episodes["derived_start"] = episodes["start_dx"].where(recent)
    out = out.merge(episodes[["derived_start"]], left_on="scan_id", right_index=True, how="left")
    out["episode_start"] = out["documented_onset"].fillna(out["derived_start"])
    out["days_since_onset"] = (out["scan_date"] - out["episode_start"]).dt.days

    # Conservative care (CMS OP-8 windows) and first-line medication trials, from history.
    h = cfacts[from_history]
    d = h["days_before"]
    chiro = ["chiropractic"] + (["osteopathic_manipulation"]
                                if p["conservative_care_counts_osteopathic_manipulation"] else [])
    em = ["evaluation_management"] + (["emergency_visit"] if p["conservative_care_counts_emergency_visits"] else [])
    care = pd.DataFrame({
        "scan_id": h["scan_id"],
        "op8": ((h["concept"] == "physical_therapy") & d.between(1, p["op8_pt_lookback_days"]))
        | (h["concept"].isin(chiro) & d.between(1, p["op8_chiro_lookback_days"]))
        | (h["concept"].isin(em) & d.between(p["op8_em_min_days"], p["op8_em_max_days"])),
        "medication_days": h["days_supply"].where(
            (h["concept"] == "first_line_medication") & d.between(1, p["medication_trial_lookback_days"]), 0),
    }).groupby("scan_id").agg(op8=("op8", "any"), medication_days=("medication_days", "sum"))
    out = out.merge(care, left_on="scan_id", right_index=True, how="left")
    out["conservative_care"] = out["op8"].fillna(False).astype(bool) | (
        out["medication_days"].fillna(0) >= p["conservative_min_days"])

    # Repeat imaging: an MRI of the same spine region 1 to 365 days before (history or an earlier scan).
    mri = facts[facts["source"].isin(["history", "prior_scan"]) & (facts["code_system"] == "CPT")
                & facts["code"].isin(list(SPINE_MRI_REGIONS))]
    mri = mri[(body_region(mri["code"]) == mri["body_region"])
              & mri["days_before"].between(1, p["repeat_mri_lookback_days"])]
    out["repeat_mri"] = out["scan_id"].isin(mri["scan_id"])

    # The indication: a back-pain code on the referral or the scan.
    indication = cfacts[cfacts["source"].isin(["referral", "scan"]) & (cfacts["concept"] == "spine_pain")]
    out["pain_indication"] = out["scan_id"].isin(indication["scan_id"])

    # Derived features the rules use.
    dso = out["days_since_onset"]
    out["not_spine_mri"] = out["body_region"] == "other"
    out["prior_lumbar_surgery"] = (out["body_region"] == "lumbar") & out["lumbar_surgery"]
    out["surgery_site_unknown"] = ((out["body_region"] == "lumbar") & out["spine_surgery_site_unknown"]
                                   & ~out["lumbar_surgery"])
    out["early"] = dso.notna() & (dso < p["early_mri_days"])
    out["established"] = dso.notna() & (dso >= p["early_mri_days"])
    out["onset_unknown"] = dso.isna() & out["pain_indication"]
    out["no_indication"] = ~out["pain_indication"] & out["episode_start"].isna()
    return out


# ---------------------------------------------------------------------------------------------------------
# The decision

def holds(condition, row) -> bool:
    """A rule condition: a feature name, or {all: [...]}, {any: [...]}, {not: ...}."""
    if isinstance(condition, str):
        return bool(row[condition])
    (op, arg), = condition.items()
    if op == "not":
        return not holds(arg, row)
    if op == "all":
        return all(holds(a, row) for a in arg)
    return any(holds(a, row) for a in arg)


def rule_features(condition) -> list[str]:
    """The feature names a rule condition reads."""
    if isinstance(condition, str):
        return [condition]
    (_, arg), = condition.items()
    return [name for a in (arg if isinstance(arg, list) else [arg]) for name in rule_features(a)]


def decide(row, rules) -> tuple[str, str]:
    """The first rule that holds decides the category; every rule of that category that holds gives a reason."""
    held = [r for r in rules if holds(r["when"], row)]
    if not held:
        return "insufficient_information", "no_rule_applies"
    category = held[0]["category"]
    return category, ";".join(r["reason"] for r in held if r["category"] == category)


def classify_standard(input_dir: Path) -> pd.DataFrame:
    """scan_id, category, reasons for every scan of the native input in `input_dir`, under `standard`."""
    rule_set = load_rule_sets([RULE_SET])[0]
    value_sets = pd.DataFrame(read_value_sets())[["concept", "code_system", "code", "match", "region"]]
    referrals, scans, events = load_inputs(Path(input_dir))
    features = build_features(referrals, scans, events, rule_set.parameters, load_coded_features(), value_sets)
    used = list(dict.fromkeys(name for rule in rule_set.rules for name in rule_features(rule["when"])))
    decided = features[used].apply(decide, axis=1, rules=rule_set.rules)
    result = pd.DataFrame(decided.tolist(), columns=["category", "reasons"], index=features.index)
    result.insert(0, "scan_id", features["scan_id"])
    return result.sort_values("scan_id").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------------------
# CLI: time it, and compare with the pipeline's verdicts

def compare(result: pd.DataFrame, warehouse: Path) -> tuple[int, int, int, pd.DataFrame]:
    """(scans, agreeing on category, agreeing on reasons, disagreements) against the warehouse."""
    import duckdb

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        pipeline = con.execute(
            "SELECT scan_id, category, reasons FROM mri_classification WHERE rule_set = ?", [RULE_SET]).df()
    finally:
        con.close()
    both = pipeline.merge(result, on="scan_id", how="outer", suffixes=("_pipeline", "_pandas"), indicator=True)
    same_category = both["category_pipeline"] == both["category_pandas"]
    same_reasons = both["reasons_pipeline"] == both["reasons_pandas"]
    differ = both[~(same_category & same_reasons)]
    return len(both), int(same_category.sum()), int(same_reasons.sum()), differ


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pandas_baseline", description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, type=Path, help="folder of native input files")
    parser.add_argument("--warehouse", type=Path, help="a pipeline warehouse.duckdb to compare verdicts with")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    result = classify_standard(args.input)
    seconds = time.perf_counter() - started
    print(f"pandas baseline: {len(result):,} scans in {seconds:.2f} s ({len(result) / seconds:,.0f} scans/s)")
    if args.warehouse is None:
        return 0
    total, category_ok, reasons_ok, differ = compare(result, args.warehouse)
    print(f"agreement with {args.warehouse} (rule set {RULE_SET}, {total:,} scans): "
          f"category {category_ok:,} ({category_ok / max(total, 1):.2%}), "
          f"reasons {reasons_ok:,} ({reasons_ok / max(total, 1):.2%})")
    if len(differ):
        print(f"{len(differ):,} disagreements, for example:")
        print(differ.head(10).drop(columns="_merge").to_string(index=False))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
