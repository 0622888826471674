"""FHIR R4 Bulk Data export (NDJSON) -> the native layout (docs/data-contract.md §2c, "FHIR R4 bulk export").

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

Privacy: Patient identifiers, addresses and telecoms are never read (the reader is not asked for them); names are
read into the scratch database only to remove them from the text of the patient's own resources; `birthDate` is
read only to compute the age at referral inside DuckDB and goes no further. Patient resource ids are replaced by a
keyed hash (`ps_...`, HMAC-SHA256), because exports often use the medical record number as the resource id
(Synthea does). The key is the operator's secret (`pseudonym_key` argument or `IMAGING_AUDIT_PSEUDONYMIZE_KEY`), or
else a random key made once for this installation and kept outside the outputs (`identifiers.resolve_pseudonym_key`);
a key published with the code is refused. `clinical_indication` is built from the terminology displays of the
reason codes, then the reason text (`reasonCode.text`) and notes (`note.text`) the orderer wrote, which the text
stage reads; the patient's names are removed from it here, and the identifier guard masks it at ingestion like
every text.
References are followed only to the resource types they may name, so a `urn:uuid:` requester (which could be the
Patient) is not taken for a provider.

Every line of every resource file that is read is accounted for in the returned summary: used, or skipped with a
reason. Resource types the audit does not use (DocumentReference, Immunization, ...) and the export log are listed
as ignored files without being read. Blank lines are not records and are not counted.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from assets.ingest.contract import SPINE_MRI_REGIONS
from assets.sql import literal, path_literal

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

# Spine MRI codes of other systems -> the CPT code of docs/data-contract.md §3 ("Scope"). Only codes whose
# meaning was checked in a published list are here; anything else keeps its own code (e.g. `SNOMED:241645008`,
# "MRI of spine", which names no region) and the pipeline treats it as not a spine MRI.
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
CARE_SETTING = {
    "AMB": "outpatient", "EMER": "emergency", "IMP": "inpatient", "ACUTE": "inpatient", "NONAC": "inpatient",
}

# Elements read per resource type (DuckDB types). Anything not named here is never read, names and addresses
# included.
_CC = "STRUCT(coding STRUCT(system VARCHAR, code VARCHAR, display VARCHAR)[], text VARCHAR)"
_REF = "STRUCT(reference VARCHAR)"
_COLUMNS = {
    "Patient": {"gender": "VARCHAR", "birthDate": "VARCHAR",
                "name": "STRUCT(\"text\" VARCHAR, family VARCHAR, given VARCHAR[], prefix VARCHAR[])[]"},
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
        "note": "STRUCT(text VARCHAR)[]",
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
        "dispenseRequest": (
            "STRUCT(expectedSupplyDuration STRUCT(value DOUBLE, unit VARCHAR, system VARCHAR, code VARCHAR))"
        ),
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

    from assets.ingest.identifiers import resolve_pseudonym_key

    key, _ = resolve_pseudonym_key(key)
    return "ps_" + hmac.new(key.encode("utf-8"), resource_id.encode("utf-8"), hashlib.sha256).hexdigest()[:24]


def convert_fhir(input_dir: Path, out_dir: Path, pseudonym_key: str | None = None) -> dict:
    """Write referrals/scans/clinical_events Parquet files for the FHIR export in `input_dir`; return a summary."""
    import tempfile

    import duckdb
    from assets.resources import without_progress_bar

    from assets.ingest import identifiers
    from assets.ingest.readers import InputError

    started = time.perf_counter()
    input_dir, out_dir = Path(input_dir), Path(out_dir)
    files, ignored = discover_fhir_files(input_dir)
    if not any(files.values()):
        raise InputError(f"{input_dir}: no FHIR NDJSON resource files (expected Patient.000.ndjson, ...)")
    try:
        key, key_source = identifiers.resolve_pseudonym_key(pseudonym_key)
    except identifiers.KeyError_ as exc:
        raise InputError(str(exc)) from None
    out_dir.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="fhir-convert-") as scratch:
        # A scratch database on disk: the slim resource tables and any sort can spill there, not to memory.
        con = duckdb.connect(str(Path(scratch) / "convert.duckdb"))
        try:
            without_progress_bar(con)
            con.execute("SET preserve_insertion_order = false")  # outputs are sorted explicitly
            con.execute(f"SET temp_directory = {path_literal(Path(scratch) / 'tmp')}")
            identifiers.set_pseudonym_key(con, key)
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
        "patient_ids": f"pseudonymized (HMAC-SHA256) with {key_source}",
        "seconds": round(time.perf_counter() - started, 3),
    }


# ---------------------------------------------------------------------------------------------------------
# SQL building blocks

def _sql_str(value: str) -> str:
    return literal(value)


def _create_macros(con, pseudonym_sql: str) -> None:
    systems = " ".join(f"WHEN {_sql_str(uri)} THEN {_sql_str(label)}" for uri, label in CODE_SYSTEMS.items())
    settings = " ".join(f"WHEN {_sql_str(k)} THEN {_sql_str(v)}" for k, v in CARE_SETTING.items())
    macros = [
        # Code system URI -> label; http/https and a trailing slash do not matter.
        f"sys_label(s) AS CASE rtrim(replace(lower(trim(s)), 'https://', 'http://'), '/') {systems} END",
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
        "age_years(b, d) AS year(d) - year(b) - CASE WHEN strftime(d, '%m%d') < strftime(b, '%m%d') THEN 1 ELSE 0 END",
        f"care_setting(k) AS CASE upper(trim(k)) {settings} END",
        "cpt_system(code) AS CASE WHEN regexp_full_match(code, '[0-9]{4}[0-9A-Z]') THEN 'CPT' ELSE 'HCPCS' END",
        # A list's distinct items in their first order (a reason text that repeats a display is kept once).
        "list_distinct_ordered(l) AS list_filter(l, lambda x, i: list_position(l, x) = i)",
    ]
    for macro in macros:
        con.execute(f"CREATE MACRO {macro}")
    # The mapping tables above, as a table to join (kind: spine, care, icd, rx).
    rows = (
        [("spine", label, code, cpt) for (label, code), cpt in SPINE_MRI_TO_CPT.items()]
        + [("care", "SNOMED", code, cpt) for code, cpt in SNOMED_CARE_TO_CPT.items()]
        + [("icd", "SNOMED", code, icd) for code, icd in SNOMED_TO_ICD10CM.items()]
        + [("rx", "RXNORM", code, ing) for code, ing in RXNORM_TO_INGREDIENT.items()]
    )
    con.execute("CREATE TABLE code_map (kind VARCHAR, label VARCHAR, code VARCHAR, target VARCHAR)")
    con.executemany("INSERT INTO code_map VALUES (?, ?, ?, ?)", rows)


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
            f"format='newline_delimited', columns={{{declared}}}, ignore_errors=true, filename=true)"
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
    """The skip reasons every resource shares, as CASE branches (first match wins)."""
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


# Coded elements, unnested once: (source tag, table, SQL giving a CodeableConcept list for each row).
_CODED = (
    ("cond", "raw_condition", "[code]"),
    ("sr_code", "raw_servicerequest", "[code]"),
    ("sr_reason", "raw_servicerequest", "reasonCode"),
    ("enc_type", "raw_encounter", "type"),
    ("is_code", "raw_imagingstudy", "procedureCode"),
    ("is_reason", "raw_imagingstudy", "reasonCode"),
    ("pr_code", "raw_procedure", "[code]"),
    ("pr_reason", "raw_procedure", "reasonCode"),
    ("med", "raw_medicationrequest", "[medicationCodeableConcept]"),
)
# References, unnested once: (source tag, table, SQL giving a Reference list for each row).
_REFS = (
    ("sr_rr", "raw_servicerequest", "reasonReference"),
    ("is_rr", "raw_imagingstudy", "reasonReference"),
    ("is_based", "raw_imagingstudy", "basedOn"),
    ("pr_rr", "raw_procedure", "reasonReference"),
    ("pr_based", "raw_procedure", "basedOn"),
)
_SPINE_CPT = "(" + ", ".join(f"'{code}'" for code in SPINE_MRI_REGIONS) + ")"


def _code_tables(con) -> None:
    """`coded`: per (src, rid) the codes the outputs need, computed set-based from one long table of codings.

    Lists keep the order of the resource (CodeableConcept, then coding), so a primary code stays first, and
    hold each code once. The reasons of a resource are its reasonCode concepts, then the Conditions its
    reasonReference names.
    """
    con.execute(
        "CREATE TABLE codings AS "
        + " UNION ALL ".join(
            f"""SELECT '{src}' AS src, rid, cci, generate_subscripts(coding, 1) AS pos, unnest(coding) AS c
                FROM (SELECT rowid AS rid, generate_subscripts({ccs}, 1) AS cci, unnest({ccs}).coding AS coding
                      FROM {table})"""
            for src, table, ccs in _CODED
        )
    )
    con.execute(
        "CREATE TABLE refs AS "
        + " UNION ALL ".join(
            f"""SELECT '{src}' AS src, rowid AS rid, generate_subscripts({lst}, 1) AS pos,
                       unnest({lst}).reference AS ref FROM {table}"""
            for src, table, lst in _REFS
        )
    )
    # Labels are computed once per distinct system URI, not once per coding.
    con.execute(
        """CREATE TABLE systems AS
           SELECT system, sys_label(system) AS label FROM (SELECT DISTINCT c.system AS system FROM codings)"""
    )
    con.execute(
        f"""CREATE TABLE codings_m AS
            SELECT k.src, k.rid, k.cci, k.cci * 100000 + k.pos AS ord, k.code,
                   coalesce(s.label, k.system, 'no-system') || ':' || k.code AS prefixed,
                   CASE WHEN s.label IN ('CPT', 'HCPCS')
                             AND regexp_full_match(upper(k.code), '[0-9]{{4}}[0-9A-Z]|[A-Z][0-9]{{4}}')
                        THEN upper(k.code)
                        ELSE coalesce(sp.target, CASE WHEN k.src IN ('pr_code') THEN ca.target END) END AS cpt,
                   CASE WHEN s.label = 'ICD10CM' AND k.code <> '' THEN upper(k.code) END AS icd_direct,
                   ic.target AS icd_mapped,
                   CASE WHEN s.label = 'RXNORM' AND k.code <> '' THEN k.code END AS rx_code,
                   rx.target AS rx_ingredient
            FROM (SELECT src, rid, cci, pos, c.system AS system, trim(c.code) AS code FROM codings
                  WHERE c.code IS NOT NULL) k
            LEFT JOIN systems s ON s.system IS NOT DISTINCT FROM k.system
            LEFT JOIN code_map sp ON sp.kind = 'spine' AND sp.label = s.label AND sp.code = k.code
            LEFT JOIN code_map ca ON ca.kind = 'care' AND ca.label = s.label AND ca.code = k.code
            LEFT JOIN code_map ic ON ic.kind = 'icd' AND ic.label = s.label AND ic.code = k.code
            LEFT JOIN code_map rx ON rx.kind = 'rx' AND rx.label = s.label AND rx.code = k.code"""
    )
    # A concept's ICD-10-CM codes: its ICD-10-CM codings, else its SNOMED codings mapped.
    con.execute(
        """CREATE TABLE icd_values AS
           SELECT src, rid, ord,
                  CASE WHEN bool_or(icd_direct IS NOT NULL) OVER (PARTITION BY src, rid, cci)
                       THEN icd_direct ELSE icd_mapped END AS icd
           FROM codings_m"""
    )
    # Conditions' codes, for reasonReference elsewhere (the Condition's own rules decide which codes count).
    con.execute(
        """CREATE TABLE cond_codes AS
           SELECT r.id, list(v.icd ORDER BY v.ord) AS codes
           FROM raw_condition r JOIN icd_values v ON v.src = 'cond' AND v.rid = r.rowid AND v.icd IS NOT NULL
           WHERE r.id IS NOT NULL
             AND NOT coalesce(list_has_any(list_transform(r.verificationStatus.coding, lambda c: c.code),
                                           ['entered-in-error', 'refuted']), false)
           GROUP BY r.id"""
    )
    con.execute(
        """CREATE TABLE coded AS
           WITH reason_refs AS (  -- codes of referenced Conditions, after the resource's own reasonCode codes
               SELECT replace(r.src, '_rr', '_reason') AS src, r.rid,
                      1000000000 + r.pos * 1000 + generate_subscripts(c.codes, 1) AS ord, unnest(c.codes) AS value
               FROM refs r JOIN cond_codes c ON c.id = ref_to(r.ref, 'Condition')
               WHERE r.src LIKE '%_rr'),
           vals AS (
               SELECT src, rid, 'cpt' AS what, cpt AS value, min(ord) AS ord FROM codings_m
               WHERE cpt IS NOT NULL GROUP BY ALL
               UNION ALL
               SELECT src, rid, 'icd', value, min(ord) FROM (
                   SELECT src, rid, ord, icd AS value FROM icd_values WHERE icd IS NOT NULL
                   UNION ALL SELECT src, rid, ord, value FROM reason_refs)
               GROUP BY ALL),
           lists AS (
               SELECT src, rid, list(value ORDER BY ord) FILTER (WHERE what = 'cpt') AS cpts,
                      list(value ORDER BY ord) FILTER (WHERE what = 'icd') AS icds
               FROM vals GROUP BY src, rid),
           firsts AS (
               SELECT src, rid, arg_min(prefixed, ord) AS first_code,
                      arg_min(cpt, ord) FILTER (WHERE cpt IN """ + _SPINE_CPT + """) AS spine_cpt,
                      coalesce(arg_min(rx_ingredient, ord) FILTER (WHERE rx_ingredient IS NOT NULL),
                               arg_min(rx_code, ord) FILTER (WHERE rx_code IS NOT NULL)) AS rx
               FROM codings_m GROUP BY src, rid)
           SELECT src, rid, f.first_code, f.spine_cpt, f.rx, coalesce(l.cpts, []) AS cpts,
                  coalesce(l.icds, []) AS icds
           FROM lists l FULL JOIN firsts f USING (src, rid)"""
    )
    con.execute(
        """CREATE TABLE based_on AS  -- the first basedOn reference to a ServiceRequest
           SELECT src, rid, arg_min(ref_to(ref, 'ServiceRequest'), pos) AS referral_id FROM refs
           WHERE src LIKE '%_based' AND ref_to(ref, 'ServiceRequest') IS NOT NULL GROUP BY ALL"""
    )


def _join_coded(alias: str, src: str, rid: str) -> str:
    return f"LEFT JOIN coded {alias} ON {alias}.src = '{src}' AND {alias}.rid = {rid}"


def _classify(con) -> None:
    """One table per resource type with `_skip` (NULL when the line is used) and the values the outputs need."""
    _code_tables(con)
    no_patient = "WHEN patient IS NULL THEN 'subject is not a Patient reference' "

    # Patients: a lookup for age and sex. A repeated id keeps its first file's copy.
    con.execute(
        f"""CREATE TABLE patient_c AS
            SELECT _file, id, lower(gender) AS gender, birth_date(birthDate) AS birth,
                   -- the words of the patient's names, to remove from the text of their resources
                   list_distinct(list_filter(flatten(list_transform(coalesce(name, []), lambda n: list_concat(
                       coalesce(n.given, []), [n.family],
                       string_split_regex(coalesce(n."text", ''), '[\\s,]+')))),
                       lambda w: w IS NOT NULL AND length(w) >= 2)) AS name_words,
                   CASE {_base_skip('Patient')}
                        WHEN row_number() OVER (PARTITION BY id ORDER BY _file, birthDate, gender) > 1
                        THEN 'duplicate Patient id' END AS _skip
            FROM raw_patient"""
    )
    con.execute("CREATE TABLE patients AS SELECT id, gender, birth, name_words FROM patient_c WHERE _skip IS NULL")

    # Conditions -> diagnosis events.
    con.execute(
        f"""CREATE TABLE condition_c AS
            SELECT *, CASE {_base_skip('Condition', status=False)}
                WHEN bad_status IS NOT NULL THEN 'verificationStatus ' || bad_status
                {no_patient}
                WHEN len(codes) = 0 THEN 'no ICD-10-CM code'
                WHEN event_date IS NULL THEN 'no onset or recorded date' END AS _skip
            FROM (
                SELECT r._file, r.resourceType, r.id, ref_to(r.subject.reference, 'Patient') AS patient,
                       fhir_date(coalesce(r.onsetDateTime, r.onsetPeriod.start, r.recordedDate)) AS event_date,
                       coalesce(k.icds, []) AS codes,
                       list_filter(list_transform(r.verificationStatus.coding, lambda c: c.code),
                                   lambda x: x IN ('entered-in-error', 'refuted'))[1] AS bad_status
                FROM raw_condition r {_join_coded('k', 'cond', 'r.rowid')})"""
    )

    # Service requests -> referrals.
    con.execute(
        f"""CREATE TABLE servicerequest_c AS
            SELECT *, CASE {_base_skip('ServiceRequest')}{no_patient} END AS _skip
            FROM (
                SELECT s._file, s.resourceType, s.id, s.status, ref_to(s.subject.reference, 'Patient') AS patient,
                       fhir_date(s.authoredOn) AS referral_date,
                       coalesce(k.spine_cpt, k.cpts[1], k.first_code) AS requested_code,
                       coalesce(rc.icds, []) AS codes,
                       ref_to(s.encounter.reference, 'Encounter') AS encounter,
                       CASE WHEN ref_type(s.requester.reference) IN ('Practitioner', 'PractitionerRole')
                            THEN ref_id(s.requester.reference) END AS requester,
                       -- the reason codes' displays, then the reason text and notes the orderer wrote (read
                       -- by the text stage after the identifier guard has masked them)
                       nullif(array_to_string(list_distinct_ordered(list_filter(list_concat(
                           list_transform(flatten(list_transform(s.reasonCode, lambda cc: cc.coding)),
                                          lambda c: c.display),
                           list_transform(s.reasonCode, lambda cc: trim(cc.text)),
                           list_transform(s.note, lambda n: trim(n.text))),
                           lambda x: x IS NOT NULL AND x <> '')), '; '), '') AS indication
                FROM raw_servicerequest s {_join_coded('k', 'sr_code', 's.rowid')}
                {_join_coded('rc', 'sr_reason', 's.rowid')})"""
    )

    # Encounters: care setting for referrals, and CPT/HCPCS visit codes (E&M) as history.
    con.execute(
        f"""CREATE TABLE encounter_c AS
            SELECT _file, id, patient, event_date, cpts, setting,
                   CASE WHEN _base IS NOT NULL THEN _base
                        WHEN id IN (SELECT encounter FROM servicerequest_c WHERE _skip IS NULL) THEN NULL
                        WHEN len(cpts) > 0 AND event_date IS NOT NULL THEN NULL
                        WHEN len(cpts) > 0 THEN 'no period start date'
                        ELSE 'no CPT/HCPCS type code and no ServiceRequest names it' END AS _skip,
                   _base IS NULL AND len(cpts) > 0 AND event_date IS NOT NULL AS makes_event
            FROM (
                SELECT *, CASE {_base_skip('Encounter')}{no_patient} END AS _base
                FROM (
                    SELECT e._file, e.resourceType, e.id, e.status, ref_to(e.subject.reference, 'Patient') AS patient,
                           fhir_date(e.period.start) AS event_date, coalesce(k.cpts, []) AS cpts,
                           care_setting(e.class.code) AS setting
                    FROM raw_encounter e {_join_coded('k', 'enc_type', 'e.rowid')}))"""
    )

    # Imaging studies -> scans.
    con.execute(
        f"""CREATE TABLE imagingstudy_c AS
            SELECT *, CASE {_base_skip('ImagingStudy')}{no_patient}
                           WHEN procedure_code IS NULL THEN 'no procedureCode' END AS _skip
            FROM (
                SELECT s._file, s.resourceType, s.id, s.status, ref_to(s.subject.reference, 'Patient') AS patient,
                       fhir_date(coalesce(s.started, list_min(list_transform(s.series, lambda x: x.started))))
                           AS scan_date,
                       coalesce(k.spine_cpt, k.cpts[1], k.first_code) AS procedure_code,
                       b.referral_id, coalesce(rc.icds, []) AS codes,
                       CASE WHEN ref_type(s.location.reference) = 'Location'
                            THEN ref_id(s.location.reference) END AS facility,
                       ref_to(s.procedureReference.reference, 'Procedure') AS procedure_ref
                FROM raw_imagingstudy s {_join_coded('k', 'is_code', 's.rowid')}
                {_join_coded('rc', 'is_reason', 's.rowid')}
                LEFT JOIN based_on b ON b.src = 'is_based' AND b.rid = s.rowid)"""
    )

    # Procedures -> spine MRI scans, and CPT/HCPCS history (SNOMED conservative-care concepts mapped).
    # The same exam described by an ImagingStudy (procedureReference, or same patient, date and code) is one
    # scan, not two.
    con.execute(
        """CREATE TABLE studied AS
           SELECT DISTINCT procedure_ref AS id FROM imagingstudy_c WHERE _skip IS NULL AND procedure_ref IS NOT NULL"""
    )
    con.execute(
        """CREATE TABLE studied_keys AS
           SELECT DISTINCT patient, scan_date, procedure_code FROM imagingstudy_c WHERE _skip IS NULL"""
    )
    con.execute(
        f"""CREATE TABLE procedure_c AS
            SELECT *, CASE WHEN _base IS NOT NULL THEN _base
                           WHEN len(cpts) = 0 THEN 'no CPT/HCPCS code (SNOMED concept not mapped)'
                           WHEN makes_scan OR makes_event THEN NULL
                           ELSE 'no performed date' END AS _skip
            FROM (
            SELECT p.*,
                   p._base IS NULL AND p.spine_code IS NOT NULL AND st.id IS NULL AND sk.patient IS NULL AS makes_scan,
                   p._base IS NULL AND len(p.cpts) > 0 AND p.event_date IS NOT NULL AS makes_event
            FROM (
                SELECT *, CASE {_base_skip('Procedure')}{no_patient} END AS _base
                FROM (
                    SELECT r._file, r.resourceType, r.id, r.status, ref_to(r.subject.reference, 'Patient') AS patient,
                           fhir_date(coalesce(r.performedDateTime, r.performedPeriod.start)) AS event_date,
                           coalesce(k.cpts, []) AS cpts, k.spine_cpt AS spine_code, b.referral_id,
                           coalesce(rc.icds, []) AS codes,
                           CASE WHEN ref_type(r.location.reference) = 'Location'
                                THEN ref_id(r.location.reference) END AS facility
                    FROM raw_procedure r {_join_coded('k', 'pr_code', 'r.rowid')}
                    {_join_coded('rc', 'pr_reason', 'r.rowid')}
                    LEFT JOIN based_on b ON b.src = 'pr_based' AND b.rid = r.rowid)) p
            LEFT JOIN studied st ON st.id = p.id
            LEFT JOIN studied_keys sk ON sk.patient = p.patient AND sk.scan_date = p.event_date
                                      AND sk.procedure_code = p.spine_code)"""
    )

    # Medication requests -> medication history.
    con.execute(
        f"""CREATE TABLE medicationrequest_c AS
            SELECT _file, id, patient, event_date, code, days_supply,
                   CASE {_base_skip('MedicationRequest')}{no_patient}
                        WHEN has_concept IS NOT TRUE AND has_reference THEN
                             'medicationReference (Medication resources are not read)'
                        WHEN code IS NULL THEN 'no RxNorm code'
                        WHEN event_date IS NULL THEN 'no authoredOn date' END AS _skip
            FROM (
                SELECT m._file, m.resourceType, m.id, m.status, ref_to(m.subject.reference, 'Patient') AS patient,
                       fhir_date(m.authoredOn) AS event_date, k.rx AS code,
                       m.medicationCodeableConcept IS NOT NULL AS has_concept,
                       m.medicationReference.reference IS NOT NULL AS has_reference,
                       CASE WHEN lower(m.dispenseRequest.expectedSupplyDuration.code) = 'd'
                              OR lower(trim(m.dispenseRequest.expectedSupplyDuration.unit)) IN ('d', 'day', 'days')
                            THEN CAST(round(m.dispenseRequest.expectedSupplyDuration.value) AS INTEGER) END
                           AS days_supply
                FROM raw_medicationrequest m {_join_coded('k', 'med', 'm.rowid')})"""
    )


def _write_outputs(con, out_dir: Path) -> dict:
    """Write the three native Parquet files; return their row counts.

    All three are written under temporary names first and renamed only when all are complete, so a failed
    conversion never leaves a new referrals file beside an old scans file.
    """
    referrals = """
        SELECT s.id AS referral_id, pid(s.patient) AS patient_id, s.referral_date,
               s.requested_code AS requested_procedure_code,
               nullif(array_to_string(s.codes, ';'), '') AS diagnosis_codes,
               CAST(least(age_years(p.birth, CAST(s.referral_date AS DATE)), 90) AS INTEGER) AS patient_age,
               CASE p.gender WHEN 'female' THEN 'F' WHEN 'male' THEN 'M' ELSE 'U' END AS patient_sex,
               CAST(NULL AS VARCHAR) AS symptom_onset_date, s.requester AS referring_provider_id,
               CAST(NULL AS VARCHAR) AS referring_specialty, e.setting AS care_setting,
               CAST(NULL AS VARCHAR) AS facility_id,
               CASE WHEN len(p.name_words) > 0 AND s.indication IS NOT NULL
                    THEN regexp_replace(s.indication, '(?i)\\b(?:' || array_to_string(
                             list_transform(p.name_words, lambda w: regexp_escape(w)), '|') || ')\\b', '[name]', 'g')
                    ELSE s.indication END AS clinical_indication
        FROM servicerequest_c s
        LEFT JOIN patients p ON p.id = s.patient
        LEFT JOIN (SELECT id, min(setting) AS setting FROM encounter_c WHERE _skip IS NULL GROUP BY id) e
               ON e.id = s.encounter
        WHERE s._skip IS NULL"""
    scans = """
        SELECT id AS scan_id, pid(patient) AS patient_id, scan_date, procedure_code, referral_id,
               nullif(array_to_string(codes, ';'), '') AS diagnosis_codes, facility AS facility_id,
               CAST(NULL AS VARCHAR) AS findings_category, CAST(NULL AS INTEGER) AS scan_minutes
        FROM imagingstudy_c WHERE _skip IS NULL
        UNION ALL
        SELECT id, pid(patient), event_date, spine_code, referral_id, nullif(array_to_string(codes, ';'), ''),
               facility, NULL, NULL
        FROM procedure_c WHERE makes_scan"""
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
        )"""
    # Sorted outputs, written in that order: the same export gives byte-identical files (idempotent runs).
    con.execute("SET preserve_insertion_order = true")
    counts = {}
    for name, query, columns in (
        ("referrals", referrals, REFERRAL_COLUMNS),
        ("scans", scans, SCAN_COLUMNS),
        ("clinical_events", events, EVENT_COLUMNS),
    ):
        con.execute(f"CREATE OR REPLACE TABLE out_{name} AS {query}")
        got = tuple(c[0] for c in con.execute(f"DESCRIBE out_{name}").fetchall())
        if got != columns:  # the contract's columns, in order
            raise RuntimeError(f"{name}: built columns {got} differ from the contract's {columns}")
        partial = out_dir / f".{name}.parquet.partial"
        con.execute(f"COPY (SELECT * FROM out_{name} ORDER BY ALL) TO {path_literal(partial)} (FORMAT parquet)")
        counts[name] = con.execute(f"SELECT count(*) FROM out_{name}").fetchone()[0]
    for name in counts:
        os.replace(out_dir / f".{name}.parquet.partial", out_dir / f"{name}.parquet")
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
