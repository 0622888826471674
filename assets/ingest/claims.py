"""Claims extracts in the Tuva Project input layer -> the native layout (docs/data-contract.md §2b, "Claims extract").

`medical_claim` (required), `eligibility` and `pharmacy_claim` (optional) are read with DuckDB and written as
native Parquet files that the ordinary loader then takes in:

- **scans**: spine-imaging lines (CPT 720xx-722xx) become one scan per patient, service date and body region, so
  the professional and the facility line of the same MRI make one scan. The scan id is derived from those keys.
- **referrals**: claims carry no order, so each scan gets a synthetic referral on its service date whose
  indication is the imaging claims' diagnoses; age comes from the eligibility birth date (which is then dropped,
  with names, addresses and phones), sex from gender, care setting from place of service or bill type.
- **clinical_events**: every claim diagnosis (dotless ICD-10-CM), every HCPCS/CPT line and every ICD-10-PCS
  procedure becomes history.
- **pharmacy claims** carry NDC codes; without an NDC-to-RxNorm crosswalk they cannot be matched to the
  ingredient value sets, so they are counted and reported as skipped.

Every input line is accounted for in the returned summary (used or skipped with a reason).
"""

from __future__ import annotations

from pathlib import Path

from assets.ingest.contract import SPINE_MRI_REGIONS
from assets.sql import path_literal

REQUIRED_COLUMNS = ("claim_id", "patient_id", "claim_start_date", "hcpcs_code", "diagnosis_code_1")
SPINE_IMAGING = r"^72[0-2]\d\d$"


def _find(input_dir: Path, name: str) -> Path | None:
    for ext in (".csv", ".parquet"):
        path = input_dir / f"{name}{ext}"
        if path.exists():
            return path
    return None


def _reader(path: Path) -> str:
    p = path_literal(path)
    if path.suffix == ".parquet":
        return f"(SELECT * FROM read_parquet({p}))"
    return f"(SELECT * FROM read_csv({p}, header=true, all_varchar=true, delim=',', quote='\"', escape='\"'))"


def check_claims(input_dir: Path) -> None:
    """Raise InputError (one line, naming the file) when the claims extract cannot be converted."""
    import duckdb

    from assets.ingest.readers import InputError

    medical = _find(input_dir, "medical_claim")
    if medical is None:
        raise InputError(f"{input_dir}: no medical_claim.csv (the Tuva input layer's required table)")
    con = duckdb.connect()
    try:
        columns = [c.lower() for c in con.execute(f"SELECT * FROM {_reader(medical)} LIMIT 0").df().columns]
    except duckdb.Error as exc:
        raise InputError(f"{medical}: cannot be read ({str(exc).splitlines()[0]})") from None
    finally:
        con.close()
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise InputError(f"{medical}: missing required column {', '.join(repr(m) for m in missing)}")


def convert_claims(input_dir: Path, out_dir: Path) -> dict:
    """Write referrals/scans/clinical_events Parquet files for the claims in `input_dir`; return the summary."""
    import duckdb

    from assets.resources import without_progress_bar

    check_claims(input_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    medical = _find(input_dir, "medical_claim")
    eligibility = _find(input_dir, "eligibility")
    pharmacy = _find(input_dir, "pharmacy_claim")
    con = duckdb.connect()
    try:
        without_progress_bar(con)
        con.execute(f"CREATE TEMP TABLE mc AS SELECT *, row_number() OVER () AS _line FROM {_reader(medical)}")
        columns = {c.lower() for c in con.execute("SELECT * FROM mc LIMIT 0").df().columns}
        dx_columns = [f"diagnosis_code_{i}" for i in range(1, 26) if f"diagnosis_code_{i}" in columns]
        pcs_columns = [(f"procedure_code_{i}", f"procedure_date_{i}") for i in range(1, 26)
                       if f"procedure_code_{i}" in columns]
        line_date = ("coalesce(TRY_CAST(claim_line_start_date AS DATE), TRY_CAST(claim_start_date AS DATE))"
                     if "claim_line_start_date" in columns else "TRY_CAST(claim_start_date AS DATE)")
        con.execute(
            f"""CREATE TEMP TABLE lines AS
            SELECT _line, trim(patient_id) AS patient_id, {line_date} AS service_date,
                   upper(trim(hcpcs_code)) AS hcpcs_code,
                   {'trim(place_of_service_code)' if 'place_of_service_code' in columns else 'NULL'} AS pos,
                   {'trim(bill_type_code)' if 'bill_type_code' in columns else 'NULL'} AS tob,
                   {'trim(facility_npi)' if 'facility_npi' in columns else 'NULL'} AS facility,
                   list_filter([{', '.join(f'upper(replace(trim({c}), {chr(39)}.{chr(39)}, {chr(39)}{chr(39)}))' for c in dx_columns)}],
                               lambda x: x IS NOT NULL AND x <> '') AS dx
            FROM mc"""
        )
        # Eligibility: age and sex only. The birth date is used here and goes no further.
        if eligibility is not None:
            con.execute(
                f"""CREATE TEMP TABLE people AS
                SELECT trim(patient_id) AS patient_id, min(TRY_CAST(birth_date AS DATE)) AS birth_date,
                       CASE lower(any_value(gender)) WHEN 'female' THEN 'F' WHEN 'male' THEN 'M' ELSE 'U' END AS sex
                FROM {_reader(eligibility)} GROUP BY 1"""
            )
        else:
            con.execute("CREATE TEMP TABLE people (patient_id VARCHAR, birth_date DATE, sex VARCHAR)")
        region = "CASE l.hcpcs_code " + " ".join(
            f"WHEN '{code}' THEN '{r}'" for code, r in SPINE_MRI_REGIONS.items()) + " ELSE l.hcpcs_code END"
        con.execute(
            f"""CREATE TEMP TABLE imaging AS
            SELECT l.patient_id, l.service_date, {region} AS region_key,
                   max(l.hcpcs_code) AS procedure_code,
                   list_distinct(flatten(list(l.dx ORDER BY l._line))) AS dx,
                   max(l.pos) AS pos, max(l.tob) AS tob, max(l.facility) AS facility, count(*) AS claim_lines
            FROM lines l
            WHERE regexp_full_match(l.hcpcs_code, '{SPINE_IMAGING}') AND l.patient_id IS NOT NULL
              AND l.service_date IS NOT NULL
            GROUP BY 1, 2, 3"""
        )
        setting = ("CASE WHEN i.pos IN ('23') OR i.tob LIKE '045%' THEN 'emergency' "
                   "WHEN i.pos IN ('21', '51', '61') OR i.tob LIKE '011%' OR i.tob LIKE '012%' THEN 'inpatient' "
                   "ELSE 'outpatient' END")
        key = "i.patient_id || '-' || strftime(i.service_date, '%Y%m%d') || '-' || i.region_key"
        con.execute(
            f"""COPY (
                SELECT 'CLM-R-' || {key} AS referral_id, i.patient_id, strftime(i.service_date, '%Y-%m-%d') AS referral_date,
                       i.procedure_code AS requested_procedure_code, array_to_string(i.dx, ';') AS diagnosis_codes,
                       least(date_diff('year', p.birth_date, i.service_date)
                             - CASE WHEN strftime(p.birth_date, '%m-%d') > strftime(i.service_date, '%m-%d') THEN 1 ELSE 0 END,
                             90) AS patient_age,
                       p.sex AS patient_sex, NULL AS symptom_onset_date, NULL AS referring_provider_id,
                       NULL AS referring_specialty, {setting} AS care_setting, i.facility AS facility_id,
                       NULL AS clinical_indication
                FROM imaging i LEFT JOIN people p USING (patient_id) ORDER BY 1
            ) TO {path_literal(out_dir / 'referrals.parquet')} (FORMAT parquet)"""
        )
        con.execute(
            f"""COPY (
                SELECT 'CLM-S-' || {key} AS scan_id, i.patient_id, strftime(i.service_date, '%Y-%m-%d') AS scan_date,
                       i.procedure_code, 'CLM-R-' || {key} AS referral_id, array_to_string(i.dx, ';') AS diagnosis_codes,
                       i.facility AS facility_id, NULL AS findings_category, NULL AS scan_minutes
                FROM imaging i ORDER BY 1
            ) TO {path_literal(out_dir / 'scans.parquet')} (FORMAT parquet)"""
        )
        pcs = " UNION ALL ".join(
            f"""SELECT trim(patient_id), coalesce(TRY_CAST({d} AS DATE), TRY_CAST(claim_start_date AS DATE)),
                       'procedure', 'ICD10PCS', upper(trim({c})), NULL FROM mc WHERE nullif(trim({c}), '') IS NOT NULL"""
            for c, d in pcs_columns if d in columns
        )
        con.execute(
            f"""COPY (
                SELECT DISTINCT patient_id, strftime(event_date, '%Y-%m-%d') AS event_date, event_type, code_system,
                       code, days_supply
                FROM (
                    SELECT patient_id, service_date AS event_date, 'diagnosis' AS event_type, 'ICD10CM' AS code_system,
                           unnest(dx) AS code, CAST(NULL AS INTEGER) AS days_supply
                    FROM lines WHERE patient_id IS NOT NULL AND service_date IS NOT NULL
                    UNION ALL
                    SELECT patient_id, service_date, 'procedure',
                           CASE WHEN regexp_full_match(hcpcs_code, '\\d{{4}}[0-9A-Z]') THEN 'CPT' ELSE 'HCPCS' END,
                           hcpcs_code, NULL
                    FROM lines WHERE hcpcs_code IS NOT NULL AND hcpcs_code <> '' AND patient_id IS NOT NULL
                      AND service_date IS NOT NULL
                    {('UNION ALL ' + pcs) if pcs else ''}
                )
                WHERE event_date IS NOT NULL
                ORDER BY ALL
            ) TO {path_literal(out_dir / 'clinical_events.parquet')} (FORMAT parquet)"""
        )
        used, no_patient, no_date = con.execute(
            """SELECT count(*) FILTER (WHERE patient_id IS NOT NULL AND service_date IS NOT NULL),
                      count(*) FILTER (WHERE patient_id IS NULL),
                      count(*) FILTER (WHERE patient_id IS NOT NULL AND service_date IS NULL) FROM lines"""
        ).fetchall()[0]
        summary = {
            "files": {
                medical.name: {"rows_in": used + no_patient + no_date, "rows_used": used,
                               "rows_skipped": {"no patient_id": no_patient, "no service date": no_date}},
            },
            "scans": con.execute("SELECT count(*) FROM imaging").fetchall()[0][0],
            "imaging_claim_lines": con.execute("SELECT coalesce(sum(claim_lines), 0) FROM imaging").fetchall()[0][0],
        }
        if eligibility is not None:
            n = con.execute(f"SELECT count(*) FROM {_reader(eligibility)}").fetchall()[0][0]
            summary["files"][eligibility.name] = {"rows_in": n, "rows_used": n, "rows_skipped": {}}
        if pharmacy is not None:
            n = con.execute(f"SELECT count(*) FROM {_reader(pharmacy)}").fetchall()[0][0]
            summary["files"][pharmacy.name] = {
                "rows_in": n, "rows_used": 0,
                "rows_skipped": {"NDC codes need an NDC-to-RxNorm crosswalk (not shipped)": n}}
        return summary
    finally:
        con.close()
