"""FHIR R4 bulk export -> native layout (assets/ingest/fhir.py, docs/data-contract.md §2c).

Two inputs: the SMART on FHIR 10-patient Synthea export (real files: every line accounted for, the two chronic
low-back-pain Conditions become M54.50, nothing identifying leaves the converter) and hand-written resources for
the spine-MRI cases Synthea never generates, checked field by field and run through the real pipeline.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import duckdb
import pytest

from assets.ingest.contract import TABLES
from assets.ingest.fhir import convert_fhir, patient_key

# Vendored: the resource types the converter reads, one it does not, the export log; 12 of the 13 patients
# (fixtures/smart-on-fhir-sample-bulk-fhir-10-patients/README.md).
SMART = Path(__file__).resolve().parent / "fixtures" / "smart-on-fhir-sample-bulk-fhir-10-patients"

KEY = "test-secret-key-for-fhir-tests"
CPT, ICD, SCT, LOINC, RX = (
    "http://www.ama-assn.org/go/cpt", "http://hl7.org/fhir/sid/icd-10-cm", "http://snomed.info/sct",
    "http://loinc.org", "http://www.nlm.nih.gov/research/umls/rxnorm",
)


def _rows(path: Path) -> list[dict]:
    con = duckdb.connect()
    try:
        rel = con.execute(f"SELECT * FROM read_parquet('{path}') ORDER BY ALL")
        names = [d[0] for d in rel.description]
        return [dict(zip(names, r)) for r in rel.fetchall()]
    finally:
        con.close()


def _columns(path: Path) -> list[tuple[str, str]]:
    con = duckdb.connect()
    try:
        return [(r[0], r[1]) for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{path}')").fetchall()]
    finally:
        con.close()


def _check_accounting(summary: dict) -> None:
    for name, counts in summary["files"].items():
        assert counts["rows_in"] == counts["rows_used"] + sum(counts["rows_skipped"].values()), name


def _check_contract_columns(out: Path) -> None:
    for table in ("referrals", "scans", "clinical_events"):
        cols = _columns(out / f"{table}.parquet")
        assert [c for c, _ in cols] == TABLES[table].names
        for name, sql_type in cols:
            assert sql_type == ("INTEGER" if name in ("patient_age", "days_supply", "scan_minutes") else "VARCHAR")


# ---------------------------------------------------------------------------------------------------------
# The SMART on FHIR sample (real Synthea output)

@pytest.fixture(scope="module")
def smart(tmp_path_factory):
    root = tmp_path_factory.mktemp("smart")
    src = root / "in"
    shutil.copytree(SMART, src)  # the vendored copy stays untouched
    out = root / "native"
    summary = convert_fhir(src, out, pseudonym_key=KEY)
    return src, out, summary


def _line_count(path: Path) -> int:
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def test_smart_every_line_is_accounted_for(smart):
    src, out, summary = smart
    _check_accounting(summary)
    read = {"Patient", "Condition", "Procedure", "MedicationRequest", "Encounter"}
    for name, counts in summary["files"].items():
        assert counts["rows_in"] == _line_count(src / name), name
    assert {c["resource_type"] for c in summary["files"].values()} == read
    # README row counts of the vendored copy (upstream, before one patient was dropped: 13, 555, 2056, 1745, 1215).
    assert {n: c["rows_in"] for n, c in summary["files"].items()} == {
        "Patient.000.ndjson": 12, "Condition.000.ndjson": 336, "Procedure.000.ndjson": 1251,
        "MedicationRequest.000.ndjson": 709, "Encounter.000.ndjson": 507,
    }
    # Files of unused types (and the export log) are listed, not silently dropped.
    assert summary["ignored_files"] == {
        "AllergyIntolerance.000.ndjson": "AllergyIntolerance resources are not used by the audit",
        "log.ndjson": "not a resource file (the export log or an unknown name)",
    }
    # No imaging in Synthea: no referrals, no scans; conditions are SNOMED only, so most are skipped.
    assert summary["outputs"]["referrals"] == 0 and summary["outputs"]["scans"] == 0
    assert summary["files"]["Condition.000.ndjson"]["rows_skipped"] == {"no ICD-10-CM code": 334}
    _check_contract_columns(out)
    json.dumps(summary)  # the pipeline stores it as JSON


def test_smart_chronic_low_back_pain_becomes_m5450(smart):
    src, out, _ = smart
    events = _rows(out / "clinical_events.parquet")
    lbp = [e for e in events if e["event_type"] == "diagnosis"]
    assert sorted((e["event_date"], e["code"], e["code_system"]) for e in lbp) == [
        ("2014-01-31", "M54.50", "ICD10CM"), ("2020-09-03", "M54.50", "ICD10CM"),
    ]
    patients = {
        json.loads(line)["subject"]["reference"].split("/")[1]
        for line in (src / "Condition.000.ndjson").read_text().splitlines()
        if '"278860009"' in line
    }
    assert {e["patient_id"] for e in lbp} == {patient_key(p, KEY) for p in patients}
    # The conservative care the README describes after the first onset: movement therapy and ibuprofen.
    first = next(e["patient_id"] for e in lbp if e["event_date"] == "2014-01-31")
    mine = [e for e in events if e["patient_id"] == first]
    assert sum(e["code"] == "97110" for e in mine) == 10
    assert sum(e["code"] == "5640" and e["code_system"] == "RXNORM" for e in mine) >= 1


def _patient_strings(path: Path) -> set[str]:
    """Names, identifier values, address lines and phone numbers of every Patient in an NDJSON file."""
    found: set[str] = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        p = json.loads(line)
        for name in p.get("name", []):
            found.update([name.get("family", "")] + name.get("given", []))
        found.update(i["value"] for i in p.get("identifier", []) if i.get("value"))
        for address in p.get("address", []):
            found.update(address.get("line", []))
        found.update(t["value"] for t in p.get("telecom", []) if t.get("value"))
        found.add(p.get("birthDate", ""))  # only the age leaves the converter
    return {s for s in found if len(s) >= 4}


def _output_text(out: Path) -> tuple[bytes, str]:
    """Every byte of every output file, and every value of every Parquet file as text (Parquet compresses)."""
    raw = b"".join(p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file())
    con = duckdb.connect()
    try:
        text = "\n".join(
            str(row)
            for p in sorted(out.rglob("*.parquet"))
            for row in con.execute(f"SELECT * FROM read_parquet('{p}')").fetchall()
        )
    finally:
        con.close()
    return raw, text


def test_smart_no_patient_identifier_leaves_the_converter(smart):
    src, out, summary = smart
    secrets = _patient_strings(src / "Patient.000.ndjson")
    assert len(secrets) > 40 and any("-" in s and s[:3] == "555" for s in secrets)  # names, ids, streets, phones
    raw, text = _output_text(out)
    text += json.dumps(summary)
    for secret in secrets:
        assert secret.encode() not in raw, secret
        assert secret not in text, secret
    # Synthea's Patient id is also its medical record number: output ids are keyed hashes of it instead.
    ids = {json.loads(line)["id"] for line in (src / "Patient.000.ndjson").read_text().splitlines() if line}
    assert ids <= secrets
    assert all(e["patient_id"].startswith("ps_") for e in _rows(out / "clinical_events.parquet"))


def test_smart_output_loads_in_the_pipeline(smart, tmp_path):
    from pipelines.cli import run_audit

    _, out, summary = smart
    run_audit(out, tmp_path / "out", quiet=True)
    con = duckdb.connect(str(tmp_path / "out" / "warehouse.duckdb"), read_only=True)
    try:
        events = con.execute("SELECT count(*) FROM clinical_events").fetchone()[0]
        assert events == summary["outputs"]["clinical_events"]
        # No imaging at all, so no lumbar MRI (the brain-volume MRI is not taken for a spine MRI).
        assert con.execute("SELECT count(*) FROM mri_classification").fetchone()[0] == 0
    finally:
        con.close()


# ---------------------------------------------------------------------------------------------------------
# Hand-written resources: the spine-MRI cases

OLD = "7f1c2d3e-0000-4000-8000-000000000001"  # referenced as urn:uuid
YOUNG = "pat-young"  # referenced as Patient/<id>


def _coding(system, code, display=None):
    c = {"system": system, "code": code}
    if display:
        c["display"] = display
    return c


def _resources() -> dict[str, list]:
    """file name -> lines (dicts, or raw strings for broken lines)."""
    patients = [
        {"resourceType": "Patient", "id": OLD, "gender": "male", "birthDate": "1930-06-15",
         "name": [{"family": "Quixotelli", "given": ["Bartholomew"]}],
         "identifier": [{"system": "http://hospital.example/mrn", "value": "MRN-445566"}],
         "address": [{"line": ["12 Elmwood Street"], "city": "Springfield"}],
         "telecom": [{"system": "phone", "value": "555-201-3344"}]},
        {"resourceType": "Patient", "id": YOUNG, "gender": "female", "birthDate": "1980-03-02",
         "name": [{"family": "Zebrowska", "given": ["Henrietta"]}],
         "telecom": [{"system": "phone", "value": "555-777-1212"}]},
    ]
    service_requests = [
        # Lumbar MRI order: CPT 72148, ICD-10-CM M54.16 first, a SNOMED-only reason (sciatica) second.
        {"resourceType": "ServiceRequest", "id": "SR-1", "status": "active", "intent": "order",
         "code": {"coding": [_coding(CPT, "72148", "MRI lumbar spine w/o contrast")]},
         "subject": {"reference": f"urn:uuid:{OLD}"}, "encounter": {"reference": "Encounter/enc-1"},
         "authoredOn": "2025-03-01T10:15:00-05:00", "requester": {"reference": "Practitioner/prac-9"},
         "reasonCode": [{"coding": [_coding(ICD, "M54.16", "Radiculopathy, lumbar region")],
                         "text": "new foot drop"},
                        {"coding": [_coding(SCT, "23056005", "Sciatica")]}],
         "note": [{"text": "no fever"}]},
        # LOINC-coded order for the younger patient, the day before her birthday; reason via reasonReference.
        {"resourceType": "ServiceRequest", "id": "SR-2", "status": "completed", "intent": "order",
         "code": {"coding": [_coding(LOINC, "30679-5", "MR Lumbar spine WO contrast")]},
         "subject": {"reference": f"Patient/{YOUNG}"}, "authoredOn": "2025-03-01",
         "reasonReference": [{"reference": "Condition/cond-young"}]},
        {"resourceType": "ServiceRequest", "id": "SR-draft", "status": "draft", "intent": "order",
         "code": {"coding": [_coding(CPT, "72148")]}, "subject": {"reference": f"Patient/{YOUNG}"}},
    ]
    imaging = [
        {"resourceType": "ImagingStudy", "id": "IS-1", "status": "available",
         "subject": {"reference": f"urn:uuid:{OLD}"}, "started": "2025-03-20T09:00:00Z",
         "basedOn": [{"reference": "urn:uuid:SR-1"}],
         "procedureCode": [{"coding": [_coding(CPT, "72148")]}],
         "procedureReference": {"reference": "Procedure/proc-mri-1"},
         "reasonCode": [{"coding": [_coding(SCT, "279039007", "Low back pain")]}]},
    ]
    encounters = [
        {"resourceType": "Encounter", "id": "enc-1", "status": "finished",
         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
         "type": [{"coding": [_coding(CPT, "99213")]}], "subject": {"reference": f"urn:uuid:{OLD}"},
         "period": {"start": "2025-03-01T10:00:00-05:00"}},
        {"resourceType": "Encounter", "id": "enc-snomed", "status": "finished",
         "class": {"code": "AMB"}, "type": [{"coding": [_coding(SCT, "185345009")]}],
         "subject": {"reference": f"Patient/{YOUNG}"}, "period": {"start": "2025-01-02"}},
    ]
    conditions = [
        {"resourceType": "Condition", "id": "cond-1", "code": {"coding": [_coding(SCT, "279039007")]},
         "subject": {"reference": f"urn:uuid:{OLD}"}, "onsetDateTime": "2025-01-10T08:00:00-05:00"},
        # An ICD-10-CM coding wins over the SNOMED one beside it.
        {"resourceType": "Condition", "id": "cond-young",
         "code": {"coding": [_coding(SCT, "279039007"), _coding(ICD, "M54.17")]},
         "subject": {"reference": f"Patient/{YOUNG}"}, "recordedDate": "2025-02-10"},
        {"resourceType": "Condition", "id": "cond-flu", "code": {"coding": [_coding(SCT, "6142004", "Influenza")]},
         "subject": {"reference": f"Patient/{YOUNG}"}, "onsetDateTime": "2024-12-01"},
        {"resourceType": "Condition", "id": "cond-err", "code": {"coding": [_coding(ICD, "M54.50")]},
         "verificationStatus": {"coding": [{"code": "entered-in-error"}]},
         "subject": {"reference": f"Patient/{YOUNG}"}, "onsetDateTime": "2024-12-01"},
    ]
    procedures = [
        {"resourceType": "Procedure", "id": "proc-pt", "status": "completed",
         "code": {"coding": [_coding(CPT, "97110", "Therapeutic exercise")]},
         "subject": {"reference": f"urn:uuid:{OLD}"}, "performedPeriod": {"start": "2025-02-01T14:00:00-05:00"}},
        # The MRI the ImagingStudy above describes: history, but not a second scan.
        {"resourceType": "Procedure", "id": "proc-mri-1", "status": "completed",
         "code": {"coding": [_coding(CPT, "72148")]}, "subject": {"reference": f"urn:uuid:{OLD}"},
         "performedDateTime": "2025-03-20T09:00:00Z"},
        # SNOMED-only lumbar MRI of the younger patient: a scan with its CPT code, fulfilling SR-2.
        {"resourceType": "Procedure", "id": "proc-mri-2", "status": "completed",
         "code": {"coding": [_coding(SCT, "394451000119106", "MRI of lumbar spine without contrast")]},
         "subject": {"reference": f"Patient/{YOUNG}"}, "performedDateTime": "2025-03-04",
         "basedOn": [{"reference": "ServiceRequest/SR-2"}]},
        {"resourceType": "Procedure", "id": "proc-brain", "status": "completed",
         "code": {"coding": [_coding(SCT, "698354004", "MRI for measurement of brain volume")]},
         "subject": {"reference": f"Patient/{YOUNG}"}, "performedDateTime": "2025-01-05"},
        {"resourceType": "Procedure", "id": "proc-notdone", "status": "not-done",
         "code": {"coding": [_coding(CPT, "97110")]}, "subject": {"reference": f"Patient/{YOUNG}"},
         "performedDateTime": "2025-01-05"},
        "{this line is not json",
        {"resourceType": "Observation", "id": "obs-in-the-wrong-file"},
    ]
    medications = [
        {"resourceType": "MedicationRequest", "id": "med-1", "status": "completed", "intent": "order",
         "medicationCodeableConcept": {"coding": [_coding(RX, "206905", "Ibuprofen 400 MG Oral Tablet [Ibu]")]},
         "subject": {"reference": f"urn:uuid:{OLD}"}, "authoredOn": "2025-01-15T09:00:00-05:00",
         "dispenseRequest": {"expectedSupplyDuration": {
             "value": 14, "unit": "days", "system": "http://unitsofmeasure.org", "code": "d"}}},
    ]
    medications_gz = [
        {"resourceType": "MedicationRequest", "id": "med-2", "status": "active", "intent": "order",
         "medicationCodeableConcept": {"coding": [_coding(RX, "7258", "naproxen")]},
         "subject": {"reference": f"Patient/{YOUNG}"}, "authoredOn": "2025-02-11",
         "dispenseRequest": {"expectedSupplyDuration": {"value": 2, "unit": "wk"}}},
        {"resourceType": "MedicationRequest", "id": "med-ref", "status": "active", "intent": "order",
         "medicationReference": {"reference": "Medication/m1"}, "subject": {"reference": f"Patient/{YOUNG}"},
         "authoredOn": "2025-02-11"},
    ]
    return {
        "Patient.000.ndjson": patients, "ServiceRequest.000.ndjson": service_requests,
        "ImagingStudy.000.ndjson": imaging, "Encounter.000.ndjson": encounters,
        "Condition.000.ndjson": conditions, "Procedure.000.ndjson": procedures,
        "MedicationRequest.000.ndjson": medications, "MedicationRequest.001.ndjson.gz": medications_gz,
        "log.ndjson": [{"eventId": "kickoff"}],
    }


def write_export(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in _resources().items():
        text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
        if name.endswith(".gz"):
            (folder / name).write_bytes(gzip.compress(text.encode()))
        else:
            (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def handmade(tmp_path_factory):
    root = tmp_path_factory.mktemp("handmade")
    src = write_export(root / "in")
    out = root / "native"
    return src, out, convert_fhir(src, out, pseudonym_key=KEY)


def test_handmade_summary(handmade):
    _, out, summary = handmade
    _check_accounting(summary)
    files = summary["files"]
    assert files["Procedure.000.ndjson"] == {
        "resource_type": "Procedure", "rows_in": 7, "rows_used": 3, "rows_skipped": {
            "no CPT/HCPCS code (SNOMED concept not mapped)": 1, "status not-done": 1,
            "unreadable line (malformed JSON or not a JSON object)": 1, "resourceType is not Procedure": 1}}
    assert files["Condition.000.ndjson"]["rows_skipped"] == {
        "no ICD-10-CM code": 1, "verificationStatus entered-in-error": 1}
    assert files["ServiceRequest.000.ndjson"]["rows_skipped"] == {"status draft": 1}
    assert files["MedicationRequest.001.ndjson.gz"] == {
        "resource_type": "MedicationRequest", "rows_in": 2, "rows_used": 1,
        "rows_skipped": {"medicationReference (Medication resources are not read)": 1}}
    assert files["Encounter.000.ndjson"]["rows_skipped"] == {
        "no CPT/HCPCS type code and no ServiceRequest names it": 1}
    assert summary["outputs"] == {"referrals": 2, "scans": 2, "clinical_events": 8}
    assert summary["ignored_files"] == {"log.ndjson": "not a resource file (the export log or an unknown name)"}
    _check_contract_columns(out)


def test_handmade_referrals_field_by_field(handmade):
    _, out, _ = handmade
    refs = {r["referral_id"]: r for r in _rows(out / "referrals.parquet")}
    assert refs["SR-1"] == {
        "referral_id": "SR-1", "patient_id": patient_key(OLD, KEY), "referral_date": "2025-03-01",
        "requested_procedure_code": "72148", "diagnosis_codes": "M54.16;M54.30",
        "patient_age": 90,  # 94 years old: reported as 90 ("90 or older")
        "patient_sex": "M", "symptom_onset_date": None, "referring_provider_id": "prac-9",
        "referring_specialty": None, "care_setting": "outpatient", "facility_id": None,
        # code displays, then the reason text and the note (read by the text stage)
        "clinical_indication": "Radiculopathy, lumbar region; Sciatica; new foot drop; no fever",
    }
    assert refs["SR-2"] == {
        "referral_id": "SR-2", "patient_id": patient_key(YOUNG, KEY), "referral_date": "2025-03-01",
        "requested_procedure_code": "72148",  # LOINC 30679-5 "MR Lumbar spine WO contrast"
        "diagnosis_codes": "M54.17",  # from the Condition named in reasonReference
        "patient_age": 44,  # turns 45 the next day
        "patient_sex": "F", "symptom_onset_date": None, "referring_provider_id": None,
        "referring_specialty": None, "care_setting": None, "facility_id": None, "clinical_indication": None,
    }


def test_handmade_scans_field_by_field(handmade):
    _, out, _ = handmade
    scans = _rows(out / "scans.parquet")
    empty = {"facility_id": None, "findings_category": None, "scan_minutes": None}
    assert scans == [
        {"scan_id": "IS-1", "patient_id": patient_key(OLD, KEY), "scan_date": "2025-03-20",
         "procedure_code": "72148", "referral_id": "SR-1", "diagnosis_codes": "M54.50", **empty},
        {"scan_id": "proc-mri-2", "patient_id": patient_key(YOUNG, KEY), "scan_date": "2025-03-04",
         "procedure_code": "72148", "referral_id": "SR-2", "diagnosis_codes": None, **empty},
    ]  # proc-mri-1 is the exam IS-1 describes (procedureReference): not a second scan


def test_handmade_clinical_events_field_by_field(handmade):
    _, out, _ = handmade
    old, young = patient_key(OLD, KEY), patient_key(YOUNG, KEY)
    got = sorted(tuple(e.values()) for e in _rows(out / "clinical_events.parquet"))
    assert got == sorted([
        (old, "2025-01-10", "diagnosis", "ICD10CM", "M54.50", None),  # SNOMED 279039007 mapped
        (old, "2025-02-01", "procedure", "CPT", "97110", None),  # physical therapy
        (old, "2025-03-01", "procedure", "CPT", "99213", None),  # E&M visit (Encounter.type)
        (old, "2025-03-20", "procedure", "CPT", "72148", None),  # the MRI is history too
        (old, "2025-01-15", "medication", "RXNORM", "5640", 14),  # Ibuprofen 400 MG [Ibu] -> ibuprofen, 14 days
        (young, "2025-02-10", "diagnosis", "ICD10CM", "M54.17", None),  # ICD-10-CM coding wins over SNOMED
        (young, "2025-03-04", "procedure", "CPT", "72148", None),  # SNOMED lumbar MRI -> 72148
        (young, "2025-02-11", "medication", "RXNORM", "7258", None),  # "2 wk": no days_supply
    ])


def test_handmade_lumbar_mri_is_classified_by_the_pipeline(handmade, tmp_path):
    from pipelines.cli import run_audit

    _, out, _ = handmade
    run_audit(out, tmp_path / "out", quiet=True)
    con = duckdb.connect(str(tmp_path / "out" / "warehouse.duckdb"), read_only=True)
    try:
        rows = con.execute(
            """SELECT scan_id, patient_id, procedure_code, body_region, category
               FROM mri_classification WHERE rule_set = 'standard' ORDER BY scan_id"""
        ).fetchall()
        quarantined = con.execute("SELECT count(*) FROM quarantine").fetchone()[0]
        text = con.execute(
            "SELECT referral_id, concept, status FROM referral_text_findings WHERE kind = 'finding' ORDER BY ALL"
        ).fetchall()
    finally:
        con.close()
    # The order's reason text and note are read like a native referral's indication.
    assert ("SR-1", "motor_deficit", "affirmed") in text and ("SR-1", "fever", "negated") in text
    assert [r[:4] for r in rows] == [
        ("IS-1", patient_key(OLD, KEY), "72148", "lumbar"),
        ("proc-mri-2", patient_key(YOUNG, KEY), "72148", "lumbar"),
    ]
    assert all(r[4] != "out_of_scope" for r in rows)
    assert quarantined == 0


def test_handmade_no_patient_identifier_leaves_the_converter(handmade):
    src, out, summary = handmade
    secrets = _patient_strings(src / "Patient.000.ndjson")
    assert {"Quixotelli", "MRN-445566", "12 Elmwood Street", "555-201-3344", "1930-06-15"} <= secrets
    raw, text = _output_text(out)
    for secret in secrets | {OLD, YOUNG, "free text the converter leaves out"}:
        assert secret.encode() not in raw and secret not in text + json.dumps(summary), secret


def test_conversion_is_idempotent(handmade, tmp_path):
    src, out, _ = handmade
    again = tmp_path / "again"
    convert_fhir(src, again, pseudonym_key=KEY)
    for table in ("referrals", "scans", "clinical_events"):
        assert (again / f"{table}.parquet").read_bytes() == (out / f"{table}.parquet").read_bytes(), table
    assert sorted(p.name for p in again.iterdir()) == ["clinical_events.parquet", "referrals.parquet", "scans.parquet"]


def test_references_of_every_form(tmp_path):
    """`Patient/x`, absolute URLs with _history, `urn:uuid:`; a conditional reference names no resource."""
    src = tmp_path / "in"
    src.mkdir()
    base = {"resourceType": "Condition", "code": {"coding": [_coding(ICD, "M54.50")]}, "onsetDateTime": "2024-05-06"}
    refs = {
        "c1": "Patient/p1", "c2": "https://ehr.example/fhir/Patient/p1/_history/3", "c3": "urn:uuid:p1",
        "c4": "Patient?identifier=http://hospital.example/mrn|MRN-1", "c5": "Group/g1",
    }
    (src / "Condition.000.ndjson").write_text(
        "".join(json.dumps({**base, "id": cid, "subject": {"reference": ref}}) + "\n" for cid, ref in refs.items()))
    summary = convert_fhir(src, tmp_path / "out", pseudonym_key=KEY)
    assert summary["files"]["Condition.000.ndjson"]["rows_skipped"] == {"subject is not a Patient reference": 2}
    events = _rows(tmp_path / "out" / "clinical_events.parquet")
    assert events == [{"patient_id": patient_key("p1", KEY), "event_date": "2024-05-06", "event_type": "diagnosis",
                       "code_system": "ICD10CM", "code": "M54.50", "days_supply": None}]  # three copies, one row
    assert "MRN-1" not in str(_output_text(tmp_path / "out"))


def test_a_file_that_is_not_ndjson_is_named(tmp_path):
    from assets.ingest.readers import InputError

    src = write_export(tmp_path / "in")
    (src / "Procedure.001.ndjson.gz").write_bytes(b"this is not gzip")
    with pytest.raises(InputError, match="Procedure.001.ndjson.gz"):
        convert_fhir(src, tmp_path / "out", pseudonym_key=KEY)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("*.parquet"))


def test_the_whole_output_tree_holds_no_patient_identifiers(tmp_path):
    """`imaging-audit run` straight on the SMART export (format detected): no name, identifier, address, phone or
    birth date from Patient.000.ndjson anywhere under the output folder, the DuckDB file included."""
    import json
    import shutil

    from assets.ingest.readers import detect_format
    from pipelines.cli import run_audit

    folder = tmp_path / "export"
    shutil.copytree(SMART, folder)
    assert detect_format(folder) == "fhir"
    out = tmp_path / "out"
    run_audit(folder, out, quiet=True)
    needles = set()
    for line in (folder / "Patient.000.ndjson").read_text().splitlines():
        patient = json.loads(line)
        needles.add(patient["id"])
        needles.add(patient.get("birthDate", ""))
        for name in patient.get("name", []):
            needles.update(name.get("given", []) + [name.get("family", "")])
        for ident in patient.get("identifier", []):
            needles.add(ident.get("value", ""))
        for address in patient.get("address", []):
            needles.update(address.get("line", []))
        for telecom in patient.get("telecom", []):
            needles.add(telecom.get("value", ""))
    needles = {n for n in needles if n and len(n) >= 5}
    assert len(needles) > 30
    for path in (p for p in out.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for needle in needles:
            assert needle.encode() not in data, f"{needle!r} found in {path.relative_to(out)}"
