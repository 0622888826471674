"""FHIR R4 Bulk Data export (NDJSON) -> the native layout (CONTRACT.md §2c).

The resource files at the top of the input folder (`Patient.000.ndjson`, `Procedure.001.ndjson.gz`, ...) are read
with DuckDB's NDJSON reader, one read per resource type, asking only for the elements the audit needs (explicit
`columns`), so a large export streams through instead of being loaded into Python. Everything after that is SQL
over those slim tables, kept in a scratch database on disk so a large export need not fit in memory:

- **referrals** <- ServiceRequest: order id, date (`authoredOn`), requested exam (CPT, or a LOINC / SNOMED CT
  spine-MRI code mapped to its CPT), indication (ICD-10-CM reason codes, SNOMED reason codes mapped through a
  small table, and the codes of Conditions named in `reasonReference`), age and sex from the Patient, care setting
  from the Encounter class.
- **scans** <- ImagingStudy, and Procedure whose code is a spine MRI (CPT, or LOINC / SNOMED CT mapped to CPT).
  A Procedure that an ImagingStudy already describes (`procedureReference`, or same patient, date and code) is not
  counted twice.
- **clinical_events** <- Condition (diagnoses), Procedure and Encounter types with CPT/HCPCS codes (procedures),
  MedicationRequest (RxNorm medications, with days of supply when the export states them in days).

Privacy: Patient names, identifiers, addresses, telecoms and birth dates are never read (the reader is not asked
for them); the birth date is used for the age at referral inside DuckDB and goes no further. Patient resource ids
are replaced by a keyed hash (`ps_...`, HMAC-SHA256), because exports often use the medical record number as the
resource id (Synthea does). The key comes from the `pseudonym_key` argument or `IMAGING_AUDIT_PSEUDONYMIZE_KEY`;
without one a fixed public key keeps ids stable between runs, and the summary says so.

Every line of every resource file that is read is accounted for in the returned summary: used, or skipped with a
reason. Resource types the audit does not use (DocumentReference, Immunization, ...) and the export log are listed
as ignored files without being read. Blank lines are not records and are not counted.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

# Resource types read, in the order they are read.
RESOURCE_TYPES = (
    "Patient", "Encounter", "Condition", "ServiceRequest", "ImagingStudy", "Procedure", "MedicationRequest",
)

# `Procedure.000.ndjson`, `Procedure.ndjson.gz`, `Procedure_2.ndjson` ... (FHIR type names start upper case).
_FILE_RE = re.compile(r"^(?P<type>[A-Z][A-Za-z]+)(?:[._-][^/]*)?\.ndjson(?:\.gz)?$")

# Code systems by their FHIR URI (and the HL7 OID form some exporters use instead), as the labels used below.
CODE_SYSTEMS = {
    "http://snomed.info/sct": "SNOMED", "urn:oid:2.16.840.1.113883.6.96": "SNOMED",
    "http://loinc.org": "LOINC", "urn:oid:2.16.840.1.113883.6.1": "LOINC",
    "http://www.ama-assn.org/go/cpt": "CPT", "urn:oid:2.16.840.1.113883.6.12": "CPT",
    "http://www.cms.gov/medicare/coding/hcpcsreleasecodesets": "HCPCS", "urn:oid:2.16.840.1.113883.6.285": "HCPCS",
    "http://hl7.org/fhir/sid/icd-10-cm": "ICD10CM", "urn:oid:2.16.840.1.113883.6.90": "ICD10CM",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RXNORM", "urn:oid:2.16.840.1.113883.6.88": "RXNORM",
}

# Spine MRI codes of other systems -> the CPT code of CONTRACT.md §3. Only codes whose meaning was checked in a
# published list are here; anything else keeps its own code (e.g. `SNOMED:241645008`, "MRI of spine", which names
# no region) and the pipeline treats it as not a spine MRI.
SPINE_MRI_TO_CPT = {
    # LOINC radiology codes, as listed in the LOINC Imaging Document Codes value set (1.3.6.1.4.1.12009.10.2.5).
    # "MR <region> spine" without a contrast qualifier is taken as the without-contrast exam, the usual one; the
    # pipeline then does not flag contrast for it.
    ("LOINC", "30667-0"): "72141",  # MR Cervical spine WO contrast
    ("LOINC", "24935-9"): "72141",  # MR Cervical spine (contrast not stated)
    ("LOINC", "24938-3"): "72142",  # MR Cervical spine W contrast IV
    ("LOINC", "24937-5"): "72156",  # MR Cervical spine WO and W contrast IV
    ("LOINC", "36532-0"): "72146",  # MR Thoracic spine WO contrast
    ("LOINC", "24980-5"): "72146",  # MR Thoracic spine (contrast not stated)
    ("LOINC", "24982-1"): "72147",  # MR Thoracic spine W contrast IV
    ("LOINC", "24981-3"): "72157",  # MR Thoracic spine WO and W contrast IV
    ("LOINC", "30679-5"): "72148",  # MR Lumbar spine WO contrast
    ("LOINC", "24968-0"): "72148",  # MR Lumbar spine (contrast not stated)
    ("LOINC", "30678-7"): "72149",  # MR Lumbar spine W contrast IV
    ("LOINC", "24967-2"): "72158",  # MR Lumbar spine WO and W contrast IV
    # SNOMED CT procedures, names as in the Belgian eHealth diagnostic-imaging value set. SNOMED's "with contrast"
    # does not say whether a plain series came first, so it maps to the with-contrast CPT code.
    ("SNOMED", "571891000119109"): "72141",  # Magnetic resonance imaging of cervical spine without contrast
    ("SNOMED", "60443006"): "72142",  # Magnetic resonance imaging of cervical spine with contrast
    ("SNOMED", "396171000119100"): "72146",  # Magnetic resonance imaging of thoracic spine without contrast
    ("SNOMED", "91333005"): "72147",  # Magnetic resonance imaging of thoracic spine with contrast
    ("SNOMED", "394451000119106"): "72148",  # Magnetic resonance imaging of lumbar spine without contrast
    ("SNOMED", "41333006"): "72149",  # Magnetic resonance imaging of lumbar spine with contrast
}

# SNOMED CT procedures that are conservative care -> a CPT code of the same kind, for history only (the pipeline
# asks "was there physical therapy", so any code of its physical-therapy value set does). Chiropractic and spinal
# injection concepts are not mapped: no SNOMED code for them could be checked.
SNOMED_CARE_TO_CPT = {
    "91251008": "97110",  # Physical therapy procedure -> therapeutic exercise
    "229064008": "97110",  # Movement therapy (Synthea's exercise therapy for chronic back pain) -> therapeutic exercise
}

# SNOMED CT findings -> ICD-10-CM, for the concepts the audit decides on. Short on purpose: radiculopathy is not
# here because published SNOMED codes for it disagree.
SNOMED_TO_ICD10CM = {
    "279039007": "M54.50",  # Low back pain -> Low back pain, unspecified
    "278860009": "M54.50",  # Chronic low back pain (Synthea's LBP condition) -> ICD-10-CM has no "chronic" code
    "161891005": "M54.9",  # Backache -> Dorsalgia, unspecified
    "23056005": "M54.30",  # Sciatica -> Sciatica, unspecified side
    "192970008": "G83.4",  # Cauda equina syndrome
}

# RxNorm products -> ingredient (the contract's RXNORM codes are ingredients, as are the pipeline's value sets).
# Only first-line back-pain drugs seen in Synthea exports, names checked in the OMOP vocabulary; other products
# keep their own code (history that matches no value set).
RXNORM_TO_INGREDIENT = {
    "198405": "5640",  # ibuprofen 100 MG Oral Tablet -> ibuprofen
    "310965": "5640",  # ibuprofen 200 MG Oral Tablet -> ibuprofen
    "206905": "5640",  # ibuprofen 400 MG Oral Tablet [Ibu] -> ibuprofen
    "198014": "7258",  # naproxen 500 MG Oral Tablet -> naproxen
    "849574": "7258",  # naproxen sodium 220 MG Oral Tablet -> naproxen
}

# Encounter.class (v3 ActCode) -> care_setting.
CARE_SETTING = {"AMB": "outpatient", "EMER": "emergency", "IMP": "inpatient", "ACUTE": "inpatient", "NONAC": "inpatient"}

# Elements read per resource type (DuckDB types). Anything not named here is never read, names and addresses
# included.
_CC = "STRUCT(coding STRUCT(system VARCHAR, code VARCHAR, display VARCHAR)[], text VARCHAR)"
_REF = "STRUCT(reference VARCHAR)"
_COLUMNS = {
    "Patient": {"gender": "VARCHAR", "birthDate": "VARCHAR"},
    "Encounter": {
        "status": "VARCHAR", "class": "STRUCT(system VARCHAR, code VARCHAR)", "type": f"{_CC}[]",
        "subject": _REF, "period": "STRUCT(start VARCHAR)",
    },
    "Condition": {
        "verificationStatus": _CC, "code": _CC, "subject": _REF, "onsetDateTime": "VARCHAR",
        "onsetPeriod": "STRUCT(start VARCHAR)", "recordedDate": "VARCHAR",
    },
    "ServiceRequest": {
        "status": "VARCHAR", "code": _CC, "subject": _REF, "encounter": _REF, "authoredOn": "VARCHAR",
        "requester": _REF, "reasonCode": f"{_CC}[]", "reasonReference": f"{_REF}[]",
    },
    "ImagingStudy": {
        "status": "VARCHAR", "subject": _REF, "started": "VARCHAR", "series": "STRUCT(started VARCHAR)[]",
        "procedureCode": f"{_CC}[]", "procedureReference": _REF, "basedOn": f"{_REF}[]", "reasonCode": f"{_CC}[]",
        "reasonReference": f"{_REF}[]", "location": _REF,
    },
    "Procedure": {
        "status": "VARCHAR", "code": _CC, "subject": _REF, "performedDateTime": "VARCHAR",
        "performedPeriod": "STRUCT(start VARCHAR)", "basedOn": f"{_REF}[]", "reasonCode": f"{_CC}[]",
        "reasonReference": f"{_REF}[]", "location": _REF,
    },
    "MedicationRequest": {
        "status": "VARCHAR", "medicationCodeableConcept": _CC, "medicationReference": _REF, "subject": _REF,
        "authoredOn": "VARCHAR",
        "dispenseRequest": "STRUCT(expectedSupplyDuration STRUCT(value DOUBLE, unit VARCHAR, system VARCHAR, code VARCHAR))",
    },
}

# Statuses that mean the thing did not happen or was recorded in error (FHIR R4 value sets).
_DROP_STATUS = {
    "ServiceRequest": ("entered-in-error", "draft"),
    "ImagingStudy": ("entered-in-error", "cancelled"),
    "Procedure": ("entered-in-error", "not-done", "preparation"),
    "MedicationRequest": ("entered-in-error", "cancelled", "draft"),
    "Encounter": ("entered-in-error", "cancelled", "planned"),
}

_DEFAULT_KEY = "imaging-audit fhir default key (not secret)"

REFERRAL_COLUMNS = (
    "referral_id", "patient_id", "referral_date", "requested_procedure_code", "diagnosis_codes", "patient_age",
    "patient_sex", "symptom_onset_date", "referring_provider_id", "referring_specialty", "care_setting",
    "facility_id", "clinical_indication",
)
SCAN_COLUMNS = (
    "scan_id", "patient_id", "scan_date", "procedure_code", "referral_id", "diagnosis_codes", "facility_id",
    "findings_category", "scan_minutes",
)
EVENT_COLUMNS = ("patient_id", "event_date", "event_type", "code_system", "code", "days_supply")


def discover_fhir_files(input_dir: Path) -> tuple[dict[str, list[Path]], dict[str, str]]:
    """({resource type: files}, {ignored file name: why}) for the NDJSON files at the top of `input_dir`."""
    used: dict[str, list[Path]] = {t: [] for t in RESOURCE_TYPES}
    ignored: dict[str, str] = {}
    for path in sorted(Path(input_dir).iterdir()):
        name = path.name
        if not path.is_file() or not (name.endswith(".ndjson") or name.endswith(".ndjson.gz")):
            continue
        m = _FILE_RE.match(name)
        if m is None:
            ignored[name] = "not a resource file (the export log or an unknown name)"
        elif m.group("type") in used:
            used[m.group("type")].append(path)
        else:
            ignored[name] = f"{m.group('type')} resources are not used by the audit"
    return used, ignored


def patient_key(resource_id: str, key: str | None = None) -> str:
    """The pseudonymous patient_id written for a Patient resource id (what the SQL computes, in Python)."""
    import hashlib
    import hmac

    key = key or os.environ.get("IMAGING_AUDIT_PSEUDONYMIZE_KEY") or _DEFAULT_KEY
    return "ps_" + hmac.new(key.encode("utf-8"), resource_id.encode("utf-8"), hashlib.sha256).hexdigest()[:24]


def convert_fhir(input_dir: Path, out_dir: Path, pseudonym_key: str | None = None) -> dict:
    """Write referrals/scans/clinical_events Parquet files for the FHIR export in `input_dir`; return a summary."""
    import tempfile

    import duckdb

    from assets.ingest import identifiers
    from assets.ingest.readers import InputError

    started = time.perf_counter()
    input_dir, out_dir = Path(input_dir), Path(out_dir)
    files, ignored = discover_fhir_files(input_dir)
    if not any(files.values()):
        raise InputError(f"{input_dir}: no FHIR NDJSON resource files (expected Patient.000.ndjson, ...)")
    key = pseudonym_key or os.environ.get(identifiers.PSEUDONYM_KEY_ENV)
    out_dir.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="fhir-convert-") as scratch:
        # A scratch database on disk: the slim resource tables and any sort can spill there, not to memory.
        con = duckdb.connect(str(Path(scratch) / "convert.duckdb"))
        try:
            con.execute("SET enable_progress_bar = false")
            con.execute("SET preserve_insertion_order = false")  # outputs are sorted explicitly
            con.execute(f"SET temp_directory = '{_sql_path(Path(scratch) / 'tmp')}'")
            identifiers.set_pseudonym_key(con, key or _DEFAULT_KEY)
            _create_macros(con, identifiers.pseudonym_expr("v"))
            for rtype in RESOURCE_TYPES:
                _read_resources(con, rtype, files[rtype], InputError)
            _classify(con)
            counts = _write_outputs(con, out_dir)
            file_summary = _file_summary(con, files)
        finally:
            con.close()

    return {
        "format": "fhir",
        "files": file_summary,
        "ignored_files": ignored,
        "outputs": counts,
        "patient_ids": (
            "pseudonymized with the configured key (HMAC-SHA256)" if key else
            "pseudonymized with the built-in default key; set IMAGING_AUDIT_PSEUDONYMIZE_KEY for a secret one"
        ),
        "seconds": round(time.perf_counter() - started, 3),
    }


# ---------------------------------------------------------------------------------------------------------
# SQL building blocks

def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def _sql_case(mapping: dict, key: str) -> str:
    """A CASE lookup (cheaper than a MAP literal inside list lambdas); tuple keys become 'SYSTEM|code'."""
    whens = " ".join(
        f"WHEN {_sql_str('|'.join(k) if isinstance(k, tuple) else k)} THEN {_sql_str(v)}"
        for k, v in sorted(mapping.items())
    )
    return f"CASE {key} {whens} END"


def _create_macros(con, pseudonym_sql: str) -> None:
    systems = " ".join(f"WHEN {_sql_str(uri)} THEN {_sql_str(label)}" for uri, label in CODE_SYSTEMS.items())
    macros = [
        # Code system URI -> label; http/https and a trailing slash do not matter.
        f"""sys_label(s) AS CASE rtrim(replace(lower(trim(s)), 'https://', 'http://'), '/') {systems} END""",
        # References: `Patient/123`, `http://host/fhir/Patient/123/_history/2`, `urn:uuid:abc`. A conditional
        # reference (`Patient?identifier=...`) names no resource id (and may carry an identifier): none.
        """ref_type(r) AS CASE WHEN r IS NULL OR contains(r, '?') THEN NULL
                            WHEN starts_with(r, 'urn:') THEN 'urn'
                            ELSE nullif(regexp_extract(r, '(?:^|/)([A-Z][A-Za-z]+)/[^/]+(?:/_history/[^/]+)?$', 1), '')
                       END""",
        """ref_id(r) AS CASE WHEN r IS NULL OR contains(r, '?') THEN NULL
                          WHEN starts_with(r, 'urn:uuid:') THEN nullif(substr(r, 10), '')
                          WHEN starts_with(r, 'urn:oid:') THEN nullif(substr(r, 9), '')
                          ELSE nullif(regexp_extract(r, '(?:^|/)[A-Z][A-Za-z]+/([^/]+)(?:/_history/[^/]+)?$', 1), '')
                     END""",
        # The id of a reference to `rtype` (or to a urn, whose type the reference does not say).
        "ref_to(r, rtype) AS CASE WHEN ref_type(r) IN (rtype, 'urn') THEN ref_id(r) END",
        f"pid(v) AS {pseudonym_sql}",
        # FHIR date/dateTime -> 'YYYY-MM-DD' (the local date as written); partial dates (2014, 2014-01) -> NULL.
        """fhir_date(x) AS CASE WHEN regexp_matches(x, '^\\d{4}-\\d{2}-\\d{2}')
                               THEN strftime(try_cast(left(x, 10) AS DATE), '%Y-%m-%d') END""",
        # Birth dates may be partial: mid-month / mid-year keeps the age error within half a period.
        """birth_date(x) AS CASE WHEN regexp_full_match(x, '\\d{4}-\\d{2}-\\d{2}') THEN try_cast(x AS DATE)
                               WHEN regexp_full_match(x, '\\d{4}-\\d{2}') THEN try_cast(x || '-15' AS DATE)
                               WHEN regexp_full_match(x, '\\d{4}') THEN try_cast(x || '-07-01' AS DATE) END""",
        # Whole years from b to d.
        """age_years(b, d) AS year(d) - year(b) - CASE WHEN strftime(d, '%m%d') < strftime(b, '%m%d') THEN 1 ELSE 0 END""",
        # Keep the first occurrence of each value, in order (the primary code stays first).
        "dedupe(l) AS list_filter(l, lambda x, i: list_position(l, x) = i)",
        "codings_of(ccs) AS flatten(list_transform(ccs, lambda cc: cc.coding))",
        # A coding as 'SYSTEM:code' when nothing maps it (kept so the reader can see what was there).
        "prefixed(c) AS coalesce(sys_label(c.system), c.system, 'no-system') || ':' || trim(c.code)",
        # The small mapping tables above, as lookups.
        f"map_spine(k) AS {_sql_case(SPINE_MRI_TO_CPT, 'k')}",
        f"map_care(k) AS {_sql_case({('SNOMED', c): v for c, v in SNOMED_CARE_TO_CPT.items()}, 'k')}",
        f"map_icd(k) AS {_sql_case(SNOMED_TO_ICD10CM, 'k')}",
        f"map_rx(k) AS {_sql_case(RXNORM_TO_INGREDIENT, 'k')}",
        f"care_setting(k) AS {_sql_case(CARE_SETTING, 'upper(trim(k))')}",
        # CPT/HCPCS codes of codings, plus spine-MRI codes of other systems mapped to CPT (and, for history,
        # the conservative-care concepts).
        """cpt_codes(codings, with_care) AS list_filter(list_transform(codings, lambda c:
                CASE WHEN sys_label(c.system) IN ('CPT', 'HCPCS')
                          AND regexp_full_match(upper(trim(c.code)), '[0-9]{4}[0-9A-Z]|[A-Z][0-9]{4}')
                     THEN upper(trim(c.code))
                     ELSE coalesce(map_spine(sys_label(c.system) || '|' || trim(c.code)),
                                   CASE WHEN with_care THEN map_care(sys_label(c.system) || '|' || trim(c.code)) END)
                END),
             lambda x: x IS NOT NULL)""",
        "spine_codes(l) AS list_filter(l, lambda x: x IN ('72141', '72142', '72156', '72146', '72147', '72157', "
        "'72148', '72149', '72158'))",
        # ICD-10-CM codes of one CodeableConcept: its ICD-10-CM codings, else its SNOMED codings mapped.
        """icd_codes(codings) AS CASE
                WHEN len(list_filter(codings, lambda c: sys_label(c.system) = 'ICD10CM' AND trim(c.code) <> '')) > 0
                THEN list_transform(list_filter(codings, lambda c: sys_label(c.system) = 'ICD10CM' AND trim(c.code) <> ''),
                                    lambda c: upper(trim(c.code)))
                ELSE list_filter(list_transform(codings, lambda c:
                         CASE WHEN sys_label(c.system) = 'SNOMED' THEN map_icd(trim(c.code)) END),
                     lambda x: x IS NOT NULL) END""",
        "reason_icd(ccs) AS flatten(list_transform(ccs, lambda cc: icd_codes(cc.coding)))",
        """rxnorm_code(codings) AS coalesce(
                list_filter(list_transform(codings, lambda c:
                    CASE WHEN sys_label(c.system) = 'RXNORM' THEN map_rx(trim(c.code)) END), lambda x: x IS NOT NULL)[1],
                list_filter(list_transform(codings, lambda c:
                    CASE WHEN sys_label(c.system) = 'RXNORM' THEN nullif(trim(c.code), '') END), lambda x: x IS NOT NULL)[1])""",
        "cpt_system(code) AS CASE WHEN regexp_full_match(code, '[0-9]{4}[0-9A-Z]') THEN 'CPT' ELSE 'HCPCS' END",
    ]
    for macro in macros:
        con.execute(f"CREATE MACRO {macro}")


def _read_resources(con, rtype: str, paths: list[Path], input_error) -> None:
    """`raw_<type>`: one row per line of the type's files, only the elements the audit uses (NULL if unreadable)."""
    import duckdb

    table = f"raw_{rtype.lower()}"
    columns = {"resourceType": "VARCHAR", "id": "VARCHAR", **_COLUMNS[rtype]}
    declared = ", ".join(f"{_sql_str(k)}: {_sql_str(v)}" for k, v in columns.items())
    if not paths:
        cols = ", ".join(f'CAST(NULL AS {v}) AS "{k}"' for k, v in columns.items())
        con.execute(f"CREATE TABLE {table} AS SELECT CAST(NULL AS VARCHAR) AS _file, {cols} WHERE false")
        return

    def read(selected: list[Path]) -> str:
        listed = ", ".join(_sql_str(str(p)) for p in selected)
        # ignore_errors: a malformed line becomes a row of NULLs (counted as unreadable), not a failed run.
        return (
            f"SELECT parse_filename(filename) AS _file, * EXCLUDE (filename) FROM read_json([{listed}], "
            f"format='newline_delimited', columns={{{declared}}}, ignore_errors=true, filename=true, "
            f"maximum_object_size=268435456)"
        )

    try:
        con.execute(f"CREATE TABLE {table} AS {read(paths)}")
    except duckdb.Error:
        for path in paths:  # name the file that cannot be read at all (not NDJSON, broken gzip, ...)
            try:
                con.execute(f"SELECT count(*) FROM ({read([path])})")
            except duckdb.Error as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise input_error(f"{path}: cannot be read as FHIR NDJSON ({first})") from None
        raise


def _base_skip(rtype: str, status: bool = True) -> str:
    """The skip reasons every resource shares, as a CASE branch list (first match wins)."""
    drop = _DROP_STATUS.get(rtype, ())
    status_branch = (
        f"WHEN status IN ({', '.join(_sql_str(s) for s in drop)}) THEN 'status ' || status " if status and drop else ""
    )
    return (
        "WHEN resourceType IS NULL AND id IS NULL THEN 'unreadable line (malformed JSON or not a JSON object)' "
        f"WHEN resourceType IS DISTINCT FROM '{rtype}' THEN 'resourceType is not {rtype}' "
        "WHEN id IS NULL OR trim(id) = '' THEN 'no id' "
        f"{status_branch}"
    )


_NO_PATIENT = "WHEN ref_to(subject.reference, 'Patient') IS NULL THEN 'subject is not a Patient reference' "


def _reason_references(con, name: str, source: str) -> None:
    """`<name>`: (rid, codes) with the ICD-10-CM codes of the Conditions a resource names in reasonReference."""
    con.execute(
        f"""CREATE TABLE {name} AS
            SELECT r.rid, flatten(list(c.codes ORDER BY r.pos)) AS codes
            FROM (SELECT rowid AS rid, unnest(reasonReference).reference AS ref,
                         generate_subscripts(reasonReference, 1) AS pos FROM {source}) r
            JOIN cond_codes c ON c.id = ref_to(r.ref, 'Condition')
            GROUP BY r.rid"""
    )


def _classify(con) -> None:
    """One table per resource type with `_skip` (NULL when the line is used) and the values the outputs need."""
    # Patients: a lookup for age and sex. A repeated id keeps its first file's copy.
    con.execute(
        f"""CREATE TABLE patient_c AS
            SELECT _file, id, lower(gender) AS gender, birth_date(birthDate) AS birth,
                   CASE {_base_skip('Patient')}
                        WHEN row_number() OVER (PARTITION BY id ORDER BY _file, birthDate, gender) > 1
                        THEN 'duplicate Patient id' END AS _skip
            FROM raw_patient"""
    )
    con.execute("CREATE TABLE patients AS SELECT id, gender, birth FROM patient_c WHERE _skip IS NULL")

    # Conditions: diagnosis events, and the codes that reasonReference elsewhere points at.
    con.execute(
        f"""CREATE TABLE condition_c AS
            SELECT *, CASE {_base_skip('Condition', status=False)}
                WHEN bad_status IS NOT NULL THEN 'verificationStatus ' || bad_status
                WHEN patient IS NULL THEN 'subject is not a Patient reference'
                WHEN codes IS NULL OR len(codes) = 0 THEN 'no ICD-10-CM code'
                WHEN event_date IS NULL THEN 'no onset or recorded date' END AS _skip
            FROM (
                SELECT _file, resourceType, id, ref_to(subject.reference, 'Patient') AS patient,
                       fhir_date(coalesce(onsetDateTime, onsetPeriod.start, recordedDate)) AS event_date,
                       dedupe(icd_codes(code.coding)) AS codes,
                       list_filter(verificationStatus.coding,
                                   lambda c: c.code IN ('entered-in-error', 'refuted'))[1].code AS bad_status
                FROM raw_condition)"""
    )
    con.execute(
        """CREATE TABLE cond_codes AS
           SELECT id, any_value(codes) AS codes FROM condition_c
           WHERE bad_status IS NULL AND id IS NOT NULL AND len(codes) > 0 GROUP BY id"""
    )

    # Service requests -> referrals.
    _reason_references(con, "sr_rr", "raw_servicerequest")
    con.execute(
        f"""CREATE TABLE servicerequest_c AS
            WITH s AS (
                SELECT s.rowid AS rid, s.*, cpt_codes(s.code.coding, false) AS cpts
                FROM raw_servicerequest s)
            SELECT s._file, s.id, ref_to(s.subject.reference, 'Patient') AS patient,
                   fhir_date(s.authoredOn) AS referral_date,
                   coalesce(spine_codes(s.cpts)[1], s.cpts[1], prefixed(s.code.coding[1])) AS requested_code,
                   dedupe(coalesce(reason_icd(s.reasonCode), []) || coalesce(rr.codes, [])) AS codes,
                   ref_to(s.encounter.reference, 'Encounter') AS encounter,
                   CASE WHEN ref_type(s.requester.reference) IN ('Practitioner', 'PractitionerRole', 'urn')
                        THEN ref_id(s.requester.reference) END AS requester,
                   nullif(array_to_string(list_filter(
                       list_transform(s.reasonCode, lambda cc: coalesce(cc.text, cc.coding[1].display)),
                       lambda x: x IS NOT NULL), '; '), '') AS indication,
                   CASE {_base_skip('ServiceRequest')}{_NO_PATIENT} END AS _skip
            FROM s LEFT JOIN sr_rr rr ON rr.rid = s.rid"""
    )

    # Encounters: care setting for referrals, and CPT/HCPCS visit codes (E&M) as history.
    con.execute(
        f"""CREATE TABLE encounter_c AS
            WITH e AS (
                SELECT *, dedupe(cpt_codes(codings_of(type), false)) AS cpts,
                       fhir_date(period.start) AS event_date,
                       ref_to(subject.reference, 'Patient') AS patient,
                       CASE {_base_skip('Encounter')}{_NO_PATIENT} END AS _base
                FROM raw_encounter),
            referenced AS (SELECT DISTINCT encounter FROM servicerequest_c WHERE _skip IS NULL)
            SELECT e._file, e.id, e.patient, e.event_date, e.cpts, care_setting(e.class.code) AS setting,
                   CASE WHEN e._base IS NOT NULL THEN e._base
                        WHEN e.id IN (SELECT encounter FROM referenced) THEN NULL
                        WHEN len(e.cpts) > 0 AND e.event_date IS NOT NULL THEN NULL
                        WHEN len(e.cpts) > 0 THEN 'no period start date'
                        ELSE 'no CPT/HCPCS type code and no ServiceRequest names it' END AS _skip,
                   e._base IS NULL AND len(e.cpts) > 0 AND e.event_date IS NOT NULL AS makes_event
            FROM e"""
    )

    # Imaging studies -> scans.
    _reason_references(con, "is_rr", "raw_imagingstudy")
    con.execute(
        f"""CREATE TABLE imagingstudy_c AS
            WITH s AS (
                SELECT s.rowid AS rid, s.*, codings_of(s.procedureCode) AS codings,
                       cpt_codes(codings_of(s.procedureCode), false) AS cpts
                FROM raw_imagingstudy s)
            SELECT s._file, s.id, ref_to(s.subject.reference, 'Patient') AS patient,
                   fhir_date(coalesce(s.started, list_min(list_transform(s.series, lambda x: x.started)))) AS scan_date,
                   coalesce(spine_codes(s.cpts)[1], s.cpts[1], prefixed(s.codings[1])) AS procedure_code,
                   list_filter(list_transform(s.basedOn, lambda b: ref_to(b.reference, 'ServiceRequest')),
                               lambda x: x IS NOT NULL)[1] AS referral_id,
                   dedupe(coalesce(reason_icd(s.reasonCode), []) || coalesce(rr.codes, [])) AS codes,
                   CASE WHEN ref_type(s.location.reference) IN ('Location', 'urn') THEN ref_id(s.location.reference) END
                       AS facility,
                   ref_to(s.procedureReference.reference, 'Procedure') AS procedure_ref,
                   CASE {_base_skip('ImagingStudy')}{_NO_PATIENT}
                        WHEN len(s.codings) = 0 OR s.codings IS NULL THEN 'no procedureCode' END AS _skip
            FROM s LEFT JOIN is_rr rr ON rr.rid = s.rid"""
    )

    # Procedures -> spine MRI scans, and CPT/HCPCS history (SNOMED conservative-care concepts mapped).
    _reason_references(con, "pr_rr", "raw_procedure")
    con.execute(
        f"""CREATE TABLE procedure_c AS
            WITH p AS (
                SELECT p.rowid AS rid, p.*, dedupe(cpt_codes(p.code.coding, true)) AS cpts,
                       ref_to(p.subject.reference, 'Patient') AS patient,
                       fhir_date(coalesce(p.performedDateTime, p.performedPeriod.start)) AS event_date,
                       CASE {_base_skip('Procedure')}{_NO_PATIENT} END AS _base
                FROM raw_procedure p),
            studied AS (  -- the same exam described by an ImagingStudy is one scan, not two
                SELECT procedure_ref AS id, NULL AS patient, NULL AS scan_date, NULL AS code
                FROM imagingstudy_c WHERE _skip IS NULL AND procedure_ref IS NOT NULL
                UNION ALL
                SELECT NULL, patient, scan_date, procedure_code FROM imagingstudy_c WHERE _skip IS NULL)
            SELECT p._file, p.id, p.patient, p.event_date, p.cpts,
                   spine_codes(p.cpts)[1] AS spine_code,
                   list_filter(list_transform(p.basedOn, lambda b: ref_to(b.reference, 'ServiceRequest')),
                               lambda x: x IS NOT NULL)[1] AS referral_id,
                   dedupe(coalesce(reason_icd(p.reasonCode), []) || coalesce(rr.codes, [])) AS codes,
                   CASE WHEN ref_type(p.location.reference) IN ('Location', 'urn') THEN ref_id(p.location.reference) END
                       AS facility,
                   p._base IS NULL AND spine_codes(p.cpts)[1] IS NOT NULL
                       AND NOT EXISTS (SELECT 1 FROM studied s WHERE s.id = p.id
                                       OR (s.patient = p.patient AND s.scan_date = p.event_date
                                           AND s.code = spine_codes(p.cpts)[1])) AS makes_scan,
                   p._base IS NULL AND len(p.cpts) > 0 AND p.event_date IS NOT NULL AS makes_event,
                   CASE WHEN p._base IS NOT NULL THEN p._base
                        WHEN len(p.cpts) = 0 THEN 'no CPT/HCPCS code (SNOMED concept not mapped)'
                        WHEN p.event_date IS NULL AND spine_codes(p.cpts)[1] IS NULL THEN 'no performed date' END
                       AS _skip
            FROM p LEFT JOIN pr_rr rr ON rr.rid = p.rid"""
    )

    # Medication requests -> medication history.
    con.execute(
        f"""CREATE TABLE medicationrequest_c AS
            SELECT _file, id, patient, event_date, code, days_supply,
                   CASE {_base_skip('MedicationRequest')}
                        WHEN patient IS NULL THEN 'subject is not a Patient reference'
                        WHEN medicationCodeableConcept IS NULL AND medicationReference.reference IS NOT NULL
                        THEN 'medicationReference (Medication resources are not read)'
                        WHEN code IS NULL THEN 'no RxNorm code'
                        WHEN event_date IS NULL THEN 'no authoredOn date' END AS _skip
            FROM (
                SELECT *, ref_to(subject.reference, 'Patient') AS patient, fhir_date(authoredOn) AS event_date,
                       rxnorm_code(medicationCodeableConcept.coding) AS code,
                       CASE WHEN lower(dispenseRequest.expectedSupplyDuration.code) = 'd'
                              OR lower(trim(dispenseRequest.expectedSupplyDuration.unit)) IN ('d', 'day', 'days')
                            THEN CAST(round(dispenseRequest.expectedSupplyDuration.value) AS INTEGER) END
                           AS days_supply
                FROM raw_medicationrequest)"""
    )


def _write_outputs(con, out_dir: Path) -> dict:
    """Write the three native Parquet files (each via a temporary name, then renamed); return their row counts."""
    referrals = """
        SELECT s.id AS referral_id, pid(s.patient) AS patient_id, s.referral_date,
               s.requested_code AS requested_procedure_code,
               nullif(array_to_string(s.codes, ';'), '') AS diagnosis_codes,
               CAST(least(age_years(p.birth, CAST(s.referral_date AS DATE)), 90) AS INTEGER) AS patient_age,
               CASE p.gender WHEN 'female' THEN 'F' WHEN 'male' THEN 'M' ELSE 'U' END AS patient_sex,
               CAST(NULL AS VARCHAR) AS symptom_onset_date, s.requester AS referring_provider_id,
               CAST(NULL AS VARCHAR) AS referring_specialty, e.setting AS care_setting,
               CAST(NULL AS VARCHAR) AS facility_id, s.indication AS clinical_indication
        FROM servicerequest_c s
        LEFT JOIN patients p ON p.id = s.patient
        LEFT JOIN (SELECT id, min(setting) AS setting FROM encounter_c WHERE id IS NOT NULL GROUP BY id) e
               ON e.id = s.encounter
        WHERE s._skip IS NULL
        ORDER BY referral_id, patient_id"""
    scans = """
        SELECT id AS scan_id, pid(patient) AS patient_id, scan_date, procedure_code, referral_id,
               nullif(array_to_string(codes, ';'), '') AS diagnosis_codes, facility AS facility_id,
               CAST(NULL AS VARCHAR) AS findings_category, CAST(NULL AS INTEGER) AS scan_minutes
        FROM imagingstudy_c WHERE _skip IS NULL
        UNION ALL
        SELECT id, pid(patient), event_date, spine_code, referral_id, nullif(array_to_string(codes, ';'), ''),
               facility, NULL, NULL
        FROM procedure_c WHERE makes_scan
        ORDER BY scan_id, patient_id"""
    events = """
        SELECT DISTINCT pid(patient) AS patient_id, event_date, event_type, code_system, code,
               CAST(days_supply AS INTEGER) AS days_supply
        FROM (
            SELECT patient, event_date, 'diagnosis' AS event_type, 'ICD10CM' AS code_system, unnest(codes) AS code,
                   NULL AS days_supply
            FROM condition_c WHERE _skip IS NULL
            UNION ALL
            SELECT patient, event_date, 'procedure', cpt_system(code), code, NULL
            FROM (SELECT patient, event_date, unnest(cpts) AS code FROM procedure_c WHERE makes_event)
            UNION ALL
            SELECT patient, event_date, 'procedure', cpt_system(code), code, NULL
            FROM (SELECT patient, event_date, unnest(cpts) AS code FROM encounter_c WHERE makes_event)
            UNION ALL
            SELECT patient, event_date, 'medication', 'RXNORM', code, days_supply
            FROM medicationrequest_c WHERE _skip IS NULL
        )
        ORDER BY ALL"""
    counts = {}
    for name, query, columns in (
        ("referrals", referrals, REFERRAL_COLUMNS),
        ("scans", scans, SCAN_COLUMNS),
        ("clinical_events", events, EVENT_COLUMNS),
    ):
        con.execute(f"CREATE OR REPLACE TABLE out_{name} AS {query}")
        got = tuple(c[0] for c in con.execute(f"DESCRIBE out_{name}").fetchall())
        assert got == columns, (name, got)  # the contract's columns, in order
        target = out_dir / f"{name}.parquet"
        partial = out_dir / f".{name}.parquet.partial"
        con.execute(f"COPY out_{name} TO '{_sql_path(partial)}' (FORMAT parquet)")
        os.replace(partial, target)
        counts[name] = con.execute(f"SELECT count(*) FROM out_{name}").fetchone()[0]
    return counts


def _file_summary(con, files: dict[str, list[Path]]) -> dict:
    """Per input file: rows_in = rows_used + sum(rows_skipped.values())."""
    summary = {}
    for rtype in RESOURCE_TYPES:
        for path in files[rtype]:
            summary[path.name] = {"resource_type": rtype, "rows_in": 0, "rows_used": 0, "rows_skipped": {}}
        rows = con.execute(
            f"SELECT _file, _skip, count(*) FROM {rtype.lower()}_c GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        for name, skip, n in rows:
            entry = summary[name]
            entry["rows_in"] += n
            if skip is None:
                entry["rows_used"] += n
            else:
                entry["rows_skipped"][skip] = n
    return summary
