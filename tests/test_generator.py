"""Tests of the seeded synthetic data generator (data_samples/generate.py).

The invariants are re-derived from the generated *input files* with duckdb (code lists written out here,
not imported from the generator), and compared with the truth file.
"""

from __future__ import annotations

import filecmp
import re
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from data_samples import generate as gen

REPO = Path(__file__).resolve().parents[1]

REFERRAL_COLUMNS = ["referral_id", "patient_id", "referral_date", "requested_procedure_code", "diagnosis_codes",
                    "patient_age", "patient_sex", "symptom_onset_date", "referring_provider_id",
                    "referring_specialty", "care_setting", "facility_id", "clinical_indication"]
SCAN_COLUMNS = ["scan_id", "patient_id", "scan_date", "procedure_code", "referral_id", "diagnosis_codes",
                "facility_id", "findings_category", "scan_minutes"]
EVENT_COLUMNS = ["patient_id", "event_date", "event_type", "code_system", "code", "days_supply"]
TRUTH_COLUMNS = ["scan_id", "patient_id", "scenario", "body_region", "expected_category", "expected_reason",
                 "episode_start", "days_since_onset", "has_op8_conservative_care", "expected_contrast_review",
                 "expected_safety_review", "decisive_in_text", "fault"]
SPECIALTIES = {"primary_care", "emergency", "orthopedics", "neurosurgery", "neurology", "pain_medicine",
               "physiatry", "rheumatology", "oncology", "chiropractic", "other"}
FINDINGS = {"normal", "degenerative", "disc_herniation", "stenosis", "fracture", "tumor", "infection", "other"}
SPINE_MRI = {"lumbar": ["72148", "72149", "72158"], "thoracic": ["72146", "72147", "72157"],
             "cervical": ["72141", "72142", "72156"]}
ALL_MRI = [c for v in SPINE_MRI.values() for c in v]
CONTRAST = [v[i] for v in SPINE_MRI.values() for i in (1, 2)]
PT_CHIRO = ["97110", "97112", "97140", "97161", "97162", "97163", "97164", "97530", "98940", "98941", "98942"]
EM = ["99202", "99203", "99204", "99205", "99211", "99212", "99213", "99214", "99215"]  # OP-8: office E&M
ED = ["99281", "99282", "99283", "99284", "99285"]
NSAID_MR = ["5640", "7258", "3355", "41493", "21949", "10689", "72625"]
NEURO = ["M5416", "M5417", "M5441", "M5442", "M5116", "M5117", "M5431", "R202", "M5412", "M50121", "M50122",
         "M5414"]
ONSET_PAIN = ["M5450", "M5459", "M545", "M542", "M546"]
PU_SCENARIOS = {"early_uncomplicated", "early_old_trauma", "early_short_steroids", "no_conservative_care",
                "repeat_imaging"}
RED_FLAG_SCENARIOS = {"red_flag_cauda_equina", "red_flag_cancer", "red_flag_infection",
                      "red_flag_immunosuppression", "red_flag_fracture_risk", "red_flag_weight_loss",
                      "prior_lumbar_surgery"}


def _q(items) -> str:
    return ", ".join(f"'{x}'" for x in items)


def _files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def big(tmp_path_factory) -> Path:
    """20,000 scans, csv, two chunks, no faults."""
    d = tmp_path_factory.mktemp("big")
    gen.generate(d, 20_000, seed=7, chunk_size=12_000)
    return d


@pytest.fixture(scope="session")
def con(big) -> duckdb.DuckDBPyConnection:
    return _load(big)


def _load(big: Path) -> duckdb.DuckDBPyConnection:
    """Load a generated directory into duckdb and derive per-scan facts from the input files alone."""
    c = duckdb.connect()
    c.execute(f"""
        create table ref as select * exclude (referral_date, symptom_onset_date),
            cast(referral_date as date) as referral_date, cast(symptom_onset_date as date) as onset
        from read_csv('{big}/referrals*.csv', all_varchar=true);
        create table sc as select * exclude (scan_date), cast(scan_date as date) as scan_date
        from read_csv('{big}/scans*.csv', all_varchar=true);
        create table ev as select patient_id, cast(event_date as date) as d, event_type, code_system,
            replace(code, '.', '') as code, cast(days_supply as integer) as ds
        from read_csv('{big}/clinical_events*.csv', all_varchar=true);
        create table tr as select * exclude (episode_start, days_since_onset),
            cast(episode_start as date) as episode_start, cast(days_since_onset as integer) as dso
        from read_csv('{big}/truth/scan_truth.csv', all_varchar=true);
        -- link each scan to its referral: by referral_id, else the patient's referral in the 90 days before
        create table link as
        select s.scan_id, s.patient_id, s.scan_date as sd, s.procedure_code, s.diagnosis_codes as sdx,
               r.referral_id, r.referral_date, r.onset, r.diagnosis_codes as rdx, t.scenario, t.body_region,
               t.expected_category, t.episode_start, t.dso, t.has_op8_conservative_care as op8_truth,
               t.expected_contrast_review, t.expected_safety_review, t.decisive_in_text = 'true' AS in_text,
               r.clinical_indication AS indication
        from sc s join tr t using (scan_id)
        left join (select r.*, s2.scan_id as for_scan from sc s2 join ref r on s2.referral_id = r.referral_id
                   union all
                   select r.*, s2.scan_id from sc s2 join ref r on s2.referral_id is null
                   and r.patient_id = s2.patient_id
                   and r.referral_date between s2.scan_date - 90 and s2.scan_date) r on r.for_scan = s.scan_id;
        -- every code known at scan time: referral and scan codes, and history up to the scan date
        create table codes as
        select scan_id, sd, sd as d, replace(unnest(string_split(coalesce(rdx, '') || ';' || coalesce(sdx, ''),
               ';')), '.', '') as code from link
        union all
        select l.scan_id, l.sd, e.d, e.code from link l join ev e using (patient_id) where e.d <= l.sd;
        create table flags as
        select scan_id,
          bool_or(code in ('G834', 'R339', 'R32', 'R159')) as cauda,
          bool_or(code like 'C%' or code like 'Z85%') as cancer,
          bool_or(code in ('M4626', 'M4646', 'G061', 'R509')
                  or (code >= 'F11' and code < 'F16' and d >= sd - 365)) as infection,
          bool_or(code in ('B20', 'D849', 'Z940')) as immuno_dx,
          bool_or(((code like 'S32%' or code like 'S33%') and d >= sd - 90) or code in ('M4856XA', 'M810'))
              as fracture,
          bool_or(code = 'R634') as weight,
          bool_or(code in ('63030', '63047', '22612', '22630', '0SG00AJ', '0SG10AJ', '0SB20ZZ')) as surgery,
          bool_or(code in ('M21371', 'M21372', 'G8311', 'G8312', 'G8321', 'G8322', 'G9529')) as motor,
          bool_or(code in ({_q(NEURO)})) as neuro
        from codes group by scan_id;
        -- prednisone: longest run of chained fills (next fill on or before the end of the previous supply)
        create table steroid as
        with f as (
          select l.scan_id, e.d, e.ds, lag(e.d + e.ds) over (partition by l.scan_id order by e.d) as prev_end
          from link l join ev e using (patient_id)
          where e.code = '8640' and e.d < l.sd and e.d >= l.sd - 365),
        g as (select *, sum(case when prev_end is null or d > prev_end then 1 else 0 end)
                 over (partition by scan_id order by d) as run from f)
        select scan_id, max(span) as max_run, sum(total) as total_days from (
          select scan_id, run, max(d + ds) - min(d) as span, sum(ds) as total from g group by scan_id, run)
        group by scan_id;
        create table op8 as
        select l.scan_id,
          bool_or((e.code in ({_q(PT_CHIRO)}) and e.d between l.sd - 60 and l.sd - 1)
                  or (e.code in ({_q(EM)}) and e.d between l.sd - 60 and l.sd - 28)) as op8,
          bool_or((e.code in ({_q(PT_CHIRO + EM + ED)}) and e.d = l.sd - 60)
                  or (e.code in ({_q(EM + ED)}) and e.d = l.sd - 28)) as on_bound,
          bool_or(e.code in ({_q(NSAID_MR)}) and e.event_type = 'medication' and e.d < l.sd) as drug_trial,
          bool_or(e.code in ({_q(ALL_MRI)}) and e.d < l.sd and e.d >= l.sd - 365) as mri_365,
          bool_or(e.code in ('Z950', 'Z95810') and e.d <= l.sd) as pacemaker
        from link l left join ev e using (patient_id) group by l.scan_id;
        create table x as
        select * from link left join flags using (scan_id) left join steroid using (scan_id)
        left join op8 using (scan_id);
    """)
    return c


def _count(con, sql: str) -> int:
    return con.execute(f"select count(*) from ({sql})").fetchone()[0]


# --------------------------------------------------------------------------------------------
# Determinism and file layout
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_same_seed_identical_bytes_different_seed_differs(tmp_path, fmt):
    kw = dict(fmt=fmt, chunk_size=120, fault_rate=0.01, drop_days=3)
    a = gen.generate(tmp_path / "a", 300, seed=11, **kw)
    b = gen.generate(tmp_path / "b", 300, seed=11, **kw)
    c = gen.generate(tmp_path / "c", 300, seed=12, **kw)
    assert a["chunks"] == 3
    fa, fb, fc = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert fa.keys() == fb.keys() and len(fa) >= 3 * 3 + 3 * 3
    assert fa == fb
    assert fa.keys() == fc.keys()
    assert fa[f"scans.part0001.{fmt}"] != fc[f"scans.part0001.{fmt}"]
    assert fa[f"truth/scan_truth.{fmt}"] != fc[f"truth/scan_truth.{fmt}"]


def test_file_names_chunks_and_truth_location(tmp_path):
    s = gen.generate(tmp_path / "one", 50, seed=1)
    top = sorted(p.name for p in (tmp_path / "one").iterdir() if p.is_file())
    assert top == ["clinical_events.csv", "referrals.csv", "scans.csv"]
    assert sorted(p.name for p in (tmp_path / "one" / "truth").iterdir()) == [
        "faults.csv", "providers.csv", "scan_truth.csv"]
    assert s["rows"]["scans"] == 50
    s = gen.generate(tmp_path / "many", 50, seed=1, chunk_size=20, fmt="parquet", truth_dir=tmp_path / "t")
    top = sorted(p.name for p in (tmp_path / "many").iterdir())
    assert top == [f"{t}.part000{i}.parquet" for t in ("clinical_events", "referrals", "scans") for i in (1, 2, 3)]
    assert not any(re.search(r"\d{4}-\d{2}-\d{2}", n) for n in top)  # no date in a chunk file name
    assert (tmp_path / "t" / "scan_truth.parquet").exists()
    # re-running with one chunk removes the stale part files
    gen.generate(tmp_path / "many", 50, seed=1, fmt="parquet", truth_dir=tmp_path / "t")
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == [
        "clinical_events.parquet", "referrals.parquet", "scans.parquet"]


def test_chunking_keeps_patients_in_one_chunk(tmp_path):
    gen.generate(tmp_path, 400, seed=3, chunk_size=150)
    per_part = {}
    for i in (1, 2, 3):
        for t in ("referrals", "scans", "clinical_events"):
            df = pd.read_csv(tmp_path / f"{t}.part000{i}.csv", dtype=str)
            per_part.setdefault(i, set()).update(df["patient_id"].dropna())
    assert not (per_part[1] & per_part[2]) and not (per_part[2] & per_part[3]) and not (per_part[1] & per_part[3])
    scans = pd.concat(pd.read_csv(tmp_path / f"scans.part000{i}.csv", dtype=str) for i in (1, 2, 3))
    assert scans["scan_id"].is_unique and len(scans) == 400
    assert scans["patient_id"].is_unique  # one scan per patient


def test_committed_sample_matches_the_documented_command(tmp_path):
    gen.generate(tmp_path, 2000, seed=20260314, fault_rate=0.002)
    sample = REPO / "data_samples"
    for name in ("referrals.csv", "scans.csv", "clinical_events.csv", "truth/scan_truth.csv", "truth/faults.csv"):
        assert filecmp.cmp(tmp_path / name, sample / name, shallow=False), f"{name} is stale: regenerate it"
    assert gen.SAMPLE_COMMAND in (sample / "README.md").read_text()
    assert gen.SAMPLE_COMMAND in gen.__doc__
    total = sum((sample / n).stat().st_size for n in ("referrals.csv", "scans.csv", "clinical_events.csv"))
    assert total < 3_000_000


def test_cli_prints_one_line(tmp_path, capsys):
    rc = gen.main(["--scans", "40", "--seed", "5", "--out", str(tmp_path), "--format", "parquet",
                   "--drop-days", "2", "--fault-rate", "0.01"])
    out = capsys.readouterr().out.strip()
    assert rc == 0 and "\n" not in out and "40" in out
    assert (tmp_path / "scans_2025-12-31.parquet").exists()
    assert gen.main(["--scans", "0", "--out", str(tmp_path)]) == 2


# --------------------------------------------------------------------------------------------
# Contract layout and value formats
# --------------------------------------------------------------------------------------------


def test_contract_columns_and_formats(big):
    ref = pd.read_csv(big / "referrals.part0001.csv", dtype=str, keep_default_na=False)
    scans = pd.read_csv(big / "scans.part0001.csv", dtype=str, keep_default_na=False)
    ev = pd.read_csv(big / "clinical_events.part0001.csv", dtype=str, keep_default_na=False)
    truth = pd.read_csv(big / "truth" / "scan_truth.csv", dtype=str, keep_default_na=False)
    assert list(ref.columns) == REFERRAL_COLUMNS
    assert list(scans.columns) == SCAN_COLUMNS
    assert list(ev.columns) == EVENT_COLUMNS
    assert list(truth.columns) == TRUTH_COLUMNS
    truth_only = set(TRUTH_COLUMNS) - {"scan_id", "patient_id"}
    for df in (ref, scans, ev):
        assert not truth_only & set(df.columns)
    iso = re.compile(r"^\d{4}-\d{2}-\d{2}$")
    for df, cols in ((ref, ["referral_date", "symptom_onset_date"]), (scans, ["scan_date"]), (ev, ["event_date"])):
        for c in cols:
            v = df[c][df[c] != ""]
            assert v.str.match(iso).all()
            pd.to_datetime(v, format="%Y-%m-%d")  # raises on an impossible date
    assert pd.to_datetime(scans["scan_date"]).between("2024-01-01", "2025-12-31").all()
    age = ref["patient_age"].astype(int)
    assert age.between(0, 90).all() and age.min() >= 18 and (age == 90).any()
    assert set(ref["patient_sex"]) <= {"F", "M", "U"}
    assert set(ref["referring_specialty"]) - {""} <= SPECIALTIES
    assert set(ref["care_setting"]) <= {"outpatient", "emergency", "inpatient"}
    assert set(scans["findings_category"]) - {""} <= FINDINGS
    assert set(ev["event_type"]) == {"diagnosis", "procedure", "medication"}
    assert set(ev["code_system"]) == {"ICD10CM", "CPT", "HCPCS", "RXNORM", "ICD10PCS"}
    assert ref["referral_id"].str.match(r"^R\d{8}$").all() and scans["scan_id"].str.match(r"^S\d{8}$").all()
    for df in (ref, scans, ev):
        assert df["patient_id"].str.match(r"^P\d{8}$").all()
    assert ref["referring_provider_id"][ref["referring_provider_id"] != ""].str.match(r"^DR\d{4}$").all()
    assert set(scans["facility_id"]) <= {f"F{i:02d}" for i in range(1, 13)}
    assert scans["scan_minutes"].astype(int).between(20, 60).all()
    # ICD-10-CM: ;-separated, dotted and dotless forms mixed ~80/20
    dx = ref["diagnosis_codes"].str.split(";").explode()
    assert dx.str.match(r"^[A-Z]\d[0-9A-Z](\.?[0-9A-Z]{1,4})?$").all()
    with_dot = ev.loc[ev["code_system"] == "ICD10CM", "code"]
    dotted_like = with_dot[with_dot.str.len() > 3]
    share = dotted_like.str.contains(".", regex=False).mean()
    assert 0.72 < share < 0.88
    # medications carry days_supply, nothing else does
    med = ev["event_type"] == "medication"
    assert (ev.loc[med, "days_supply"] != "").all() and (ev.loc[~med, "days_supply"] == "").all()


def test_no_direct_identifiers(big):
    ref = pd.read_csv(big / "referrals.part0001.csv", dtype=str, keep_default_na=False)
    text = ref["clinical_indication"]
    assert (text != "").mean() > 0.85
    # no phone numbers, e-mail, SSN- or MRN-like numbers, capitalised name pairs
    assert not text.str.contains(r"\d{3}[-. ]\d{3,4}|@|\d{5,}|MRN|\b[A-Z][a-z]+ [A-Z][a-z]+\b", regex=True).any()
    for f in big.glob("*.csv"):
        header = f.read_text().split("\n", 1)[0].lower()
        assert not re.search(r"name|address|phone|email|ssn|mrn|birth", header)


# --------------------------------------------------------------------------------------------
# Mix
# --------------------------------------------------------------------------------------------


def test_scenario_shares_and_mix(con):
    tr = con.execute("select * from link").df()
    n = len(tr)
    assert n == 20_000
    spine = tr[tr["scenario"] != "out_of_scope"]
    assert abs(1 - len(spine) / n - 0.06) < 0.01
    w = {s.name: s.weight for s in gen.SCENARIOS if s.name != "out_of_scope"}
    total = sum(w.values())
    share = spine["scenario"].value_counts(normalize=True)
    for name, weight in w.items():
        expected = weight / total
        assert abs(share.get(name, 0) - expected) < 0.25 * expected + 0.004, name
    pu = (spine["expected_category"] == "potentially_unnecessary").mean()
    assert 0.28 <= pu <= 0.40
    region = spine["body_region"].value_counts(normalize=True)
    assert abs(region["lumbar"] - 0.75) < 0.03 and abs(region["cervical"] - 0.15) < 0.02
    assert abs(region["thoracic"] - 0.10) < 0.02
    for r, codes in SPINE_MRI.items():
        sub = spine[spine["body_region"] == r]
        assert set(sub["procedure_code"]) <= set(codes)
        assert 0.06 < sub["procedure_code"].isin(codes[1:]).mean() < 0.16, r
    oos = tr[tr["scenario"] == "out_of_scope"]
    assert set(oos["procedure_code"]) == {"70551", "73721", "72131", "72100", "74181"}
    assert set(tr.loc[tr["body_region"] == "other", "scenario"]) == {"out_of_scope"}
    assert (tr.loc[tr["scenario"] == "prior_lumbar_surgery", "body_region"] == "lumbar").all()


def test_referrals_links_settings_and_seasonality(con, big):
    sc = con.execute("select * from sc").df()
    linked = sc["referral_id"].notna().mean()
    assert 0.82 < linked < 0.88
    ref = con.execute("select * from ref").df()
    setting = ref["care_setting"].value_counts(normalize=True)
    assert abs(setting["outpatient"] - 0.85) < 0.03 and abs(setting["emergency"] - 0.10) < 0.03
    assert abs(setting["inpatient"] - 0.05) < 0.02
    sex = ref["patient_sex"].value_counts(normalize=True)
    assert abs(sex["F"] - 0.52) < 0.02 and 0.001 < sex["U"] < 0.012
    age = ref["patient_age"].astype(int)
    assert 0.6 < age.between(35, 70).mean() < 0.85
    # ~1% of referrals never got a scan
    unscanned = ~ref["patient_id"].isin(sc["patient_id"])
    assert 0.006 < unscanned.mean() < 0.014
    # scan - referral gap 0-30 days, median about a week (outpatient)
    gap = con.execute("""select date_diff('day', link.referral_date, sd) as g, r.care_setting from link
                         join ref r using (referral_id) where referral_id is not null""").df()
    assert gap["g"].between(0, 30).all()
    assert 4 <= gap.loc[gap["care_setting"] == "outpatient", "g"].median() <= 10
    # documented onset on ~75% of referrals of the episode scenarios
    doc = con.execute("""select avg((onset is not null)::int) from link where scenario not in
                         ('unknown_onset', 'no_indication', 'out_of_scope')""").fetchone()[0]
    assert 0.72 < doc < 0.78
    # seasonality and weekdays
    d = pd.to_datetime(sc["scan_date"])
    by_month = d.dt.month.value_counts(normalize=True)
    assert by_month[[1, 2, 3]].mean() > 1.1 * by_month[[8, 12]].mean()
    assert (d.dt.day_of_week < 5).mean() > 0.85


def test_outlier_providers_order_more_low_value_mri(con, big):
    prov = pd.read_csv(big / "truth" / "providers.csv")
    assert len(prov) >= 45 and 0.03 < prov["outlier"].mean() < 0.08
    df = con.execute("""select r.referring_provider_id as provider_id,
                          scenario in ('early_uncomplicated', 'no_conservative_care') as target
                        from link join ref r using (referral_id) where r.referring_provider_id is not null""").df()
    df = df.merge(prov, on="provider_id")
    rate = df.groupby("outlier")["target"].mean()
    assert 1.8 < rate[True] / rate[False] < 3.2


def test_events_per_scan_and_overtreatment_cascade(con):
    per_scan = con.execute("select count(*) from ev").fetchone()[0] / 20_000
    assert 8 <= per_scan <= 14
    df = con.execute(f"""
        select l.scenario in ({_q(PU_SCENARIOS)}) as pu,
          bool_or(e.code in ('62321', '62323', '64483', '64490', '64493', '63030', '22612', '22551', '95886',
                             '95910', '7804', '5489', '10689') and e.d > l.sd and e.d <= l.sd + 365) as downstream
        from link l left join ev e using (patient_id) where l.scenario not in ('out_of_scope', 'no_indication')
        group by l.scan_id, l.scenario""").df()
    rate = df.groupby("pu")["downstream"].mean()
    assert rate[True] > 1.3 * rate[False]


# --------------------------------------------------------------------------------------------
# Per-scenario invariants, re-derived from the input files
# --------------------------------------------------------------------------------------------


def test_episode_start_days_since_onset_and_clean_period(con):
    # documented onset on the referral equals the truth; days since onset = scan - start
    assert _count(con, "select * from x where onset is not null and onset <> episode_start") == 0
    assert _count(con, "select * from x where episode_start is not null "
                       "and date_diff('day', episode_start, sd) <> dso") == 0
    # undocumented onset: a back-pain dx on the start date, no spine dx in the 180 days before it
    undoc = f"""select x.scan_id, x.episode_start, x.patient_id from x
                where onset is null and scenario not in ('unknown_onset', 'no_indication', 'out_of_scope')"""
    n_undoc = _count(con, undoc)
    assert n_undoc > 3000
    assert _count(con, f"""select distinct u.scan_id from ({undoc}) u join ev e on e.patient_id = u.patient_id
                           and e.d = u.episode_start and e.code in ({_q(ONSET_PAIN)})""") == n_undoc
    spine_dx = "(e.code like 'M54%' or e.code like 'M51%' or e.code like 'M50%' or e.code = 'R202')"
    for cond in ("onset is null", "onset is not null"):
        assert _count(con, f"""select x.scan_id from x join ev e using (patient_id) where {cond}
            and x.episode_start is not null and e.d >= x.episode_start - 180 and e.d < x.episode_start
            and {spine_dx}""") == 0
    # the episode never restarts: gaps between back-pain dx from the start to the scan stay < 180 days
    gaps = con.execute(f"""
        with d as (select x.scan_id, e.d, x.sd from ({undoc}) u join x using (scan_id) join ev e
                   on e.patient_id = x.patient_id where {spine_dx} and e.d between x.episode_start and x.sd)
        select max(g) from (select scan_id, d - lag(d) over (partition by scan_id order by d) as g from d
                            union all select scan_id, min(sd) - max(d) from d group by scan_id)""").fetchone()[0]
    assert gaps < 180
    # episode windows per scenario
    ranges = {"early_uncomplicated": (3, 41), "early_old_trauma": (3, 41), "early_short_steroids": (3, 41),
              "no_conservative_care": (60, 400), "persistent_conservative": (42, 400),
              "repeat_imaging": (67, 400), "neurological": (2, 300)}
    for scen, (lo, hi) in ranges.items():
        got = con.execute(f"select min(dso), max(dso), count(*) from x where scenario = '{scen}'").fetchone()
        assert got[2] > 0 and lo <= got[0] and got[1] <= hi, (scen, got)
    # undocumented episodes stay inside a 365-day episode link
    assert con.execute("select max(dso) from x where onset is null").fetchone()[0] <= 360


def test_unknown_onset_and_no_indication(con):
    assert _count(con, """select * from x join ev e using (patient_id) where scenario = 'unknown_onset'
                          and (e.code like 'M54%' or e.code like 'M51%' or e.code like 'M50%')""") == 0
    assert _count(con, "select * from x where scenario = 'unknown_onset' and (onset is not null "
                       "or referral_id is null or op8 or drug_trial)") == 0
    ni = con.execute("select * from x where scenario = 'no_indication'").df()
    assert len(ni) > 100
    assert ni["referral_id"].isna().all() and ni["sdx"].isna().all()
    assert _count(con, "select * from x join ev using (patient_id) where scenario = 'no_indication'") == 0
    assert _count(con, """select * from x join ref using (patient_id) where scenario = 'no_indication'""") == 0


def test_conservative_care_windows(con):
    # OP-8 truth flag equals the claims logic, and no care event sits exactly on a window bound
    assert _count(con, "select * from x where scenario <> 'out_of_scope' "
                       "and coalesce(op8, false)::varchar <> op8_truth") == 0
    assert _count(con, "select * from x where on_bound") == 0
    assert _count(con, "select * from x where scenario = 'no_conservative_care' and (op8 or drug_trial)") == 0
    assert _count(con, "select * from x where scenario in ('persistent_conservative', 'repeat_imaging') "
                       "and not op8") == 0
    # T5-style decoys exist: an E&M 1-26 days before a no-conservative-care scan
    assert _count(con, f"""select distinct x.scan_id from x join ev e using (patient_id)
                           where scenario = 'no_conservative_care' and e.code in ({_q(EM)})
                           and e.d between sd - 26 and sd - 1""") > 100


def test_red_flags_only_where_intended(con):
    own = {"red_flag_cauda_equina": "cauda", "red_flag_cancer": "cancer", "red_flag_infection": "infection",
           "red_flag_fracture_risk": "fracture", "red_flag_weight_loss": "weight", "prior_lumbar_surgery": "surgery"}
    cols = ["cauda", "cancer", "infection", "immuno_dx", "fracture", "weight", "surgery"]
    df = con.execute("select * from x").df()
    df[cols] = df[cols].fillna(False).astype(bool)
    df["steroid90"] = df["max_run"].fillna(0) >= 90
    flags = cols + ["steroid90"]
    df["in_text"] = df["in_text"].fillna(False).astype(bool)
    # where the generator wrote the decisive fact only in the text, no code carries it, and the text is there
    text_only = df[df["in_text"]]
    assert set(text_only["scenario"]) == {"red_flag_cauda_equina", "red_flag_weight_loss", "progressive_deficit"}
    assert not text_only[["cauda", "weight", "motor"]].any().any()
    assert text_only["indication"].notna().all()
    for scen, g in df[~df["in_text"]].groupby("scenario"):
        present = g[flags]
        if scen in own:
            assert present[own[scen]].all(), scen
            others = [f for f in flags if f != own[scen]]
            assert not present[others].any().any(), scen
        elif scen == "red_flag_immunosuppression":
            assert (present["immuno_dx"] | present["steroid90"]).all()
            assert not present[["cauda", "cancer", "infection", "fracture", "weight", "surgery"]].any().any()
        elif scen != "out_of_scope":
            assert not present.any().any(), (scen, present.sum().to_dict())
    # short steroid courses stay < 90 days in total, chains >= 90 consecutive days
    st = df[df["scenario"] == "early_short_steroids"]
    assert (st["total_days"].fillna(0) < 90).all() and (st["total_days"].fillna(0) > 0).all()
    # neurological codes: only in the neurological / deficit scenarios (and secondary on some red flags)
    neuro_ok = {"neurological", "progressive_deficit"} | RED_FLAG_SCENARIOS
    assert not df.loc[~df["scenario"].isin(neuro_ok) & (df["neuro"].fillna(False) | df["motor"].fillna(False))].size
    assert df.loc[df["scenario"] == "neurological", "neuro"].all()
    assert df.loc[(df["scenario"] == "progressive_deficit") & ~df["in_text"], "motor"].all()
    # old trauma is outside the 90-day window but present
    assert _count(con, """select distinct x.scan_id from x join ev e using (patient_id)
                          where scenario = 'early_old_trauma' and (e.code like 'S32%' or e.code like 'S33%')
                          and e.d between sd - 250 and sd - 92""") == (df["scenario"] == "early_old_trauma").sum()


def test_repeat_imaging_prior_mri(con):
    assert _count(con, "select * from x where scenario <> 'repeat_imaging' and mri_365") == 0
    assert _count(con, f"""select distinct x.scan_id from x join ev e using (patient_id)
        where scenario = 'repeat_imaging' and e.code_system = 'CPT' and e.d between sd - 330 and sd - 60
        and ((body_region = 'lumbar' and e.code in ({_q(SPINE_MRI['lumbar'])}))
          or (body_region = 'thoracic' and e.code in ({_q(SPINE_MRI['thoracic'])}))
          or (body_region = 'cervical' and e.code in ({_q(SPINE_MRI['cervical'])})))""") == _count(
        con, "select * from x where scenario = 'repeat_imaging'")


def test_contrast_and_safety_review_truth(con):
    df = con.execute("select * from x where scenario <> 'out_of_scope'").df()
    contrast = df["procedure_code"].isin(CONTRAST)
    appropriate = df["scenario"].isin({"red_flag_cancer", "red_flag_infection", "red_flag_immunosuppression",
                                       "prior_lumbar_surgery", "red_flag_cauda_equina"})
    assert ((df["expected_contrast_review"] == "true") == (contrast & ~appropriate)).all()
    assert ((df["expected_safety_review"] == "true") == df["pacemaker"].fillna(False)).all()
    assert 0.002 < (df["expected_safety_review"] == "true").mean() < 0.009


# --------------------------------------------------------------------------------------------
# Nightly drops and faults
# --------------------------------------------------------------------------------------------


def test_drop_days_dated_files_same_rows(tmp_path):
    plain = gen.generate(tmp_path / "plain", 1200, seed=21, chunk_size=500)
    dropped = gen.generate(tmp_path / "drop", 1200, seed=21, chunk_size=500, drop_days=5)
    assert plain["rows"] == dropped["rows"]
    days = ["2025-12-27", "2025-12-28", "2025-12-29", "2025-12-30", "2025-12-31"]
    for t in ("referrals", "scans", "clinical_events"):
        dated = [tmp_path / "drop" / f"{t}_{d}.csv" for d in days]
        assert all(p.exists() for p in dated)
        col = {"referrals": "referral_date", "scans": "scan_date", "clinical_events": "event_date"}[t]
        total = 0
        for d, p in zip(days, dated):
            df = pd.read_csv(p, dtype=str)
            assert (df[col] == d).all()
            total += len(df)
        undated = pd.concat(pd.read_csv(p, dtype=str) for p in sorted((tmp_path / "drop").glob(f"{t}.part*.csv")))
        assert (undated[col] < days[0]).all()
        assert total + len(undated) == plain["rows"][t]
    scans_dated = sum(len(pd.read_csv(tmp_path / "drop" / f"scans_{d}.csv")) for d in days)
    assert scans_dated > 0
    # same rows as the undated run, only routed differently
    a = pd.concat(pd.read_csv(p, dtype=str) for p in sorted((tmp_path / "plain").glob("scans*.csv")))
    b = pd.concat(pd.read_csv(p, dtype=str) for p in sorted((tmp_path / "drop").glob("scans*.csv")))
    assert sorted(a["scan_id"]) == sorted(b["scan_id"])


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_fault_injection_is_recorded_and_real(tmp_path, fmt):
    out = tmp_path / "f"
    gen.generate(out, 3000, seed=5, fmt=fmt, fault_rate=0.01, chunk_size=1500, drop_days=2)
    faults = pd.read_csv(out / "truth" / "faults.csv", dtype=str, keep_default_na=False)
    assert set(faults["table"]) == {"referrals", "scans", "clinical_events"}
    assert {"bad_date", "missing_patient_id", "age_out_of_range", "age_non_numeric", "duplicate_scan_id",
            "scan_before_referral"} <= set(faults["fault"])
    read = (lambda p: pd.read_csv(p, dtype=str, keep_default_na=False)) if fmt == "csv" else (
        lambda p: pq.read_table(p).to_pandas().astype(object).fillna(""))
    cache = {}
    refs = pd.concat(read(p) for p in sorted(out.glob(f"referrals*.{fmt}")))
    ref_date = dict(zip(refs["referral_id"], refs["referral_date"]))
    all_scans = pd.concat(read(p) for p in sorted(out.glob(f"scans*.{fmt}")))
    iso = re.compile(r"^\d{4}-\d{2}-\d{2}$")
    n_faulted_rows = {}
    for f in faults.itertuples():
        df = cache.setdefault(f.file, read(out / f.file))
        row = df.iloc[int(f.row) - 1]
        n_faulted_rows[f.table] = n_faulted_rows.get(f.table, 0) + 1
        date_col = {"referrals": "referral_date", "scans": "scan_date", "clinical_events": "event_date"}[f.table]
        if f.table != "clinical_events":
            assert row["referral_id" if f.table == "referrals" else "scan_id"] == f.id
        if f.fault == "bad_date":
            v = str(row[date_col])
            assert not iso.match(v) or pd.isna(pd.to_datetime(v, errors="coerce", format="%Y-%m-%d"))
        elif f.fault == "missing_patient_id":
            assert row["patient_id"] == "" and f.patient_id.startswith("P")
        elif f.fault == "age_out_of_range":
            assert not 0 <= int(row["patient_age"]) <= 90
        elif f.fault == "age_non_numeric":
            assert not str(row["patient_age"]).lstrip("-").isdigit()
        elif f.fault == "duplicate_scan_id":
            assert (all_scans["scan_id"] == f.id).sum() == 2
        elif f.fault == "scan_before_referral":
            assert row["scan_date"] < ref_date[row["referral_id"]]
        else:
            raise AssertionError(f.fault)
    # roughly fault_rate of each table, and no fault outside the faults file
    assert 0.004 < n_faulted_rows["clinical_events"] / sum(len(read(p)) for p in out.glob(f"clinical_events*.{fmt}")) < 0.02
    listed = set(zip(faults["file"], faults["row"].astype(int)))
    for p in sorted(out.glob(f"*.{fmt}")):
        df = read(p)
        bad = df["patient_id"] == ""
        if "patient_age" in df:
            ages = pd.to_numeric(df["patient_age"], errors="coerce")
            bad |= ages.isna() | ~ages.between(0, 90)
        date_col = [c for c in ("referral_date", "scan_date", "event_date") if c in df][0]
        bad |= ~df[date_col].astype(str).str.match(iso) | pd.to_datetime(
            df[date_col].astype(str), errors="coerce", format="%Y-%m-%d").isna()
        for r in np.flatnonzero(bad.to_numpy()):
            assert (p.name, int(r) + 1) in listed, (p.name, r)
    # truth rows of affected scans say so
    truth = read(out / "truth" / f"scan_truth.{fmt}")
    faulted_scans = set(faults.loc[faults["table"] == "scans", "id"])
    marked = truth[truth["scan_id"].isin(faulted_scans)]
    assert len(marked) == len(faulted_scans) and marked["fault"].str.contains("scans:").all()
    assert (truth["fault"] != "").sum() >= len(faulted_scans)
