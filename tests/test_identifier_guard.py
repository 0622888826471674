"""The identifier guard on the forms real extracts carry (tests/corpus/identifiers/forms.csv): every planted
identifier is caught, every legitimate value is kept, and no planted value is anywhere in the output tree - the
warehouse's raw bytes included - after a whole run. Pseudonymization needs a secret nobody else has."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import duckdb
import pytest

from assets.ingest import identifiers
from assets.ingest.contract import TABLES
from tests.conftest import write_csv

CORPUS = Path(__file__).parent / "corpus" / "identifiers" / "forms.csv"
FORMS = list(csv.DictReader(open(CORPUS, encoding="utf-8")))


def _caught(con, row) -> bool:
    if row["where"] == "text":
        masked = con.execute(f"SELECT {identifiers.mask_expr('$v')}", {"v": row["value"]}).fetchone()[0]
        return masked != row["value"]
    problem = con.execute(f"SELECT {identifiers.problem_expr('referring_provider_id', '$v')}",
                          {"v": row["value"]}).fetchone()[0]
    return problem is not None


def test_corpus_recall_and_precision():
    con = duckdb.connect()
    missed = [r["value"] for r in FORMS if r["expect"] == "caught" and not _caught(con, r)]
    wrongly = [r["value"] for r in FORMS if r["expect"] == "kept" and _caught(con, r)]
    positives = sum(r["expect"] == "caught" for r in FORMS)
    negatives = len(FORMS) - positives
    assert positives >= 25 and negatives >= 12
    assert not missed, f"identifiers not caught: {missed}"
    assert not wrongly, f"legitimate values masked or quarantined: {wrongly}"


@pytest.mark.parametrize("kind", sorted({r["kind"] for r in FORMS if r["expect"] == "caught"}))
def test_every_kind_is_reported_by_its_name(kind):
    con = duckdb.connect()
    for row in (r for r in FORMS if r["kind"] == kind and r["where"] == "text"):
        kinds = con.execute(f"SELECT {identifiers.found_kinds_expr('$v')}", {"v": row["value"]}).fetchone()[0]
        assert kind in kinds, (row["value"], kinds)


@pytest.mark.parametrize("value,valid", [("1234567893", True), ("1003000126", True), ("1234567890", False),
                                         ("2345678901", False), ("123456789", False)])
def test_npi_check_digit(value, valid):
    con = duckdb.connect()
    assert con.execute(f"SELECT {identifiers.npi_valid_expr('$v')}", {"v": value}).fetchone()[0] is valid


def _planted_input(folder: Path) -> list[str]:
    """A small native input carrying every caught form of the corpus; returns the needles to search for."""
    text_forms = [r["value"] for r in FORMS if r["where"] == "text" and r["expect"] == "caught"]
    id_forms = [r["value"] for r in FORMS if r["where"] == "id" and r["expect"] == "caught"]
    referrals = []
    for i, text in enumerate(text_forms):
        referrals.append({
            "referral_id": f"R{i}", "patient_id": f"P{i}", "referral_date": "2025-03-01",
            "requested_procedure_code": "72148", "diagnosis_codes": "M54.50", "patient_age": "50",
            "referring_provider_id": "1234567893", "clinical_indication": f"back pain; {text}; Hannelore Quist",
            "patient_name": "Hannelore Quist", "dob": "1958-11-23",
        })
    for j, ident in enumerate(id_forms):
        referrals.append({
            "referral_id": f"RX{j}", "patient_id": f"PX{j}", "referral_date": "2025-03-01",
            "requested_procedure_code": "72148", "diagnosis_codes": "M54.50", "patient_age": "50",
            "referring_provider_id": ident, "clinical_indication": "back pain born 1958-11-23",
            "patient_name": "Hannelore Quist", "dob": "1958-11-23",
        })
    write_csv(folder / "referrals.csv", referrals, columns=TABLES["referrals"].names + ["patient_name", "dob"])
    scans = [{"scan_id": f"S{i}", "patient_id": r["patient_id"], "scan_date": "2025-03-10",
              "procedure_code": "72148", "referral_id": r["referral_id"]} for i, r in enumerate(referrals)]
    write_csv(folder / "scans_jdoe@example.org_MRN00482999_2025-03-10.csv", scans)
    write_csv(folder / "clinical_events.csv", [
        {"patient_id": "P0", "event_date": "2025-01-01", "event_type": "diagnosis", "code_system": "ICD10CM",
         "code": "M54.50"}])
    needles = []
    for value in text_forms + id_forms + ["Hannelore", "Quist", "1958-11-23", "19581123", "jdoe@example.org",
                                          "MRN00482999"]:
        # the identifying part of each form (its digits, address or name), not the label around it
        for piece in value.replace(";", " ").split():
            if len(piece) >= 6 and any(ch.isdigit() for ch in piece) or "@" in piece:
                needles.append(piece.strip(".,:()"))
        needles.append(value) if len(value) >= 6 else None
    needles += ["42 Elm Street", "John Smith", "Jane Roe"]
    return sorted({n for n in needles if len(n) >= 5 and n not in {"72148", "M54.50"}})


def test_no_planted_identifier_reaches_any_output(tmp_path):
    from pipelines.cli import run_audit

    folder = tmp_path / "in"
    needles = _planted_input(folder)
    out = tmp_path / "out"
    run_audit(folder, out, rule_sets=["standard"], quiet=True)
    assert len(needles) > 30
    found = []
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name == "warehouse.duckdb" for p in files)
    for path in files:
        data = path.read_bytes()
        found += [f"{n!r} in {path.relative_to(out)}" for n in needles if n.encode() in data]
    assert not found, found[:20]
    con = duckdb.connect(str(out / "warehouse.duckdb"), read_only=True)
    try:
        # the legitimate values stay: the NPI as provider id, the clinical words of the text
        npi, text = con.execute(
            "SELECT referring_provider_id, clinical_indication FROM referrals WHERE referral_id = 'R0'").fetchone()
        kinds = {k for (k,) in con.execute("SELECT DISTINCT kind FROM privacy_findings").fetchall()}
        traced = con.execute(
            "SELECT record_key, column_name, value FROM quarantine WHERE column_name = 'referring_provider_id'"
        ).fetchall()
        files_named = {f for (f,) in con.execute("SELECT source_file FROM ingest_files").fetchall()}
    finally:
        con.close()
    assert npi == "1234567893" and text.startswith("back pain; ")
    assert "[name]" in text
    assert {"ssn", "phone", "mrn", "birth_date", "email", "address", "name"} <= kinds
    # a quarantined row names its own key and the offending column, with the value masked
    assert traced and all(key.startswith("RX") and value.startswith("[") for key, _, value in traced)
    assert any("[email]" in f and "[mrn]" in f for f in files_named)


def _fhir_export(folder: Path) -> None:
    folder.mkdir(parents=True)
    patient = {"resourceType": "Patient", "id": "7730019", "gender": "female", "birthDate": "1961-04-14",
               "name": [{"family": "Quist", "given": ["Hannelore"]}]}
    request = {"resourceType": "ServiceRequest", "id": "SR-1", "status": "active", "intent": "order",
               "subject": {"reference": "Patient/7730019"}, "authoredOn": "2025-03-01",
               "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "72148"}]},
               "reasonCode": [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M54.50",
                                           "display": "Low back pain, Hannelore Quist reports falls"}]}]}
    (folder / "Patient.000.ndjson").write_text(json.dumps(patient) + "\n")
    (folder / "ServiceRequest.000.ndjson").write_text(json.dumps(request) + "\n")


def test_a_fhir_patients_own_name_is_removed_from_the_reason_text(tmp_path):
    from assets.ingest.fhir import convert_fhir

    _fhir_export(tmp_path / "fhir")
    convert_fhir(tmp_path / "fhir", tmp_path / "native", pseudonym_key="a-secret-the-hospital-keeps")
    con = duckdb.connect()
    (text, patient), = con.execute(
        f"SELECT clinical_indication, patient_id FROM read_parquet('{tmp_path / 'native' / 'referrals.parquet'}')"
    ).fetchall()
    assert "Hannelore" not in text and "Quist" not in text and "[name]" in text and "falls" in text
    assert patient.startswith("ps_") and "7730019" not in patient


def test_without_a_secret_each_installation_pseudonymizes_with_its_own_random_key(tmp_path, monkeypatch):
    from assets.ingest.fhir import patient_key

    monkeypatch.delenv(identifiers.PSEUDONYM_KEY_ENV, raising=False)
    monkeypatch.setenv(identifiers.KEY_FILE_ENV, str(tmp_path / "a" / "pseudonym.key"))
    first = patient_key("7730019")
    assert (tmp_path / "a" / "pseudonym.key").stat().st_mode & 0o077 == 0  # readable by its owner only
    assert patient_key("7730019") == first  # stable between runs of one installation
    monkeypatch.setenv(identifiers.KEY_FILE_ENV, str(tmp_path / "b" / "pseudonym.key"))
    assert patient_key("7730019") != first  # another installation cannot recompute it


@pytest.mark.parametrize("key,message", [("imaging-audit fhir default key (not secret)", "published with the code"),
                                         ("short", "shorter than 16")])
def test_a_public_or_short_key_is_refused_in_one_line(tmp_path, monkeypatch, key, message):
    from pipelines.cli import main

    _fhir_export(tmp_path / "fhir")
    monkeypatch.setenv(identifiers.PSEUDONYM_KEY_ENV, key)
    import io
    from contextlib import redirect_stderr

    err = io.StringIO()
    with redirect_stderr(err):
        code = main(["run", "--input", str(tmp_path / "fhir"), "--output", str(tmp_path / "out")])
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and message in lines[0] and "Traceback" not in err.getvalue()


def test_the_key_file_may_not_lie_in_the_outputs(tmp_path, monkeypatch):
    monkeypatch.delenv(identifiers.PSEUDONYM_KEY_ENV, raising=False)
    monkeypatch.setenv(identifiers.KEY_FILE_ENV, str(tmp_path / "out" / "pseudonym.key"))
    with pytest.raises(identifiers.KeyError_, match="must not lie inside the outputs"):
        identifiers.resolve_pseudonym_key(output_dir=tmp_path / "out")
