"""The native input layout of the data contract (docs/data-contract.md §2a, "Native layout"), as data.

Each table lists its columns with the warehouse type, whether the contract requires it, and how the raw text
is normalised. Ingestion builds its SQL from these specs, so the contract lives in exactly one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # text | code | codes | date | datetime | integer | enum
    required: bool = False
    allowed: tuple[str, ...] = ()  # for enum columns: the contract's value set
    description: str = ""


@dataclass(frozen=True)
class TableSpec:
    name: str
    key: str | None  # the table's unique id column, if it has one
    columns: tuple[Column, ...]
    description: str = ""
    date_column: str = ""  # the column that dates a row (for reporting)

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


SPECIALTIES = (
    "primary_care", "emergency", "orthopedics", "neurosurgery", "neurology", "pain_medicine",
    "physiatry", "rheumatology", "oncology", "chiropractic", "other",
)
CARE_SETTINGS = ("outpatient", "emergency", "inpatient")
FINDINGS = ("normal", "degenerative", "disc_herniation", "stenosis", "fracture", "tumor", "infection", "other")
SEXES = ("F", "M", "U")
EVENT_TYPES = ("diagnosis", "procedure", "medication")
CODE_SYSTEMS = ("ICD10CM", "CPT", "HCPCS", "ICD10PCS", "RXNORM")

REFERRALS = TableSpec(
    name="referrals",
    key="referral_id",
    date_column="referral_date",
    description="One row per imaging order or referral.",
    columns=(
        Column("referral_id", "text", True, description="unique order id"),
        Column("patient_id", "text", True, description="pseudonymous patient key"),
        Column("referral_date", "date", True, description="when the order was placed"),
        Column("requested_procedure_code", "text", True, description="CPT/HCPCS of the requested exam"),
        Column("diagnosis_codes", "codes", True, description="ICD-10-CM indication codes, primary first"),
        Column("patient_age", "integer", True, description="age in years at referral, 0-90 (90 = 90 or older)"),
        Column("patient_sex", "enum", allowed=SEXES),
        Column("symptom_onset_date", "date", description="start of the current pain episode"),
        Column("referring_provider_id", "text"),
        Column("referring_specialty", "enum", allowed=SPECIALTIES),
        Column("care_setting", "enum", allowed=CARE_SETTINGS),
        Column("facility_id", "text"),
        Column("clinical_indication", "text", description="free-text reason for exam"),
    ),
)

SCANS = TableSpec(
    name="scans",
    key="scan_id",
    date_column="scan_date",
    description="One row per performed imaging study.",
    columns=(
        Column("scan_id", "text", True, description="unique accession (pseudonymous)"),
        Column("patient_id", "text", True),
        Column("scan_date", "datetime", True, description="date or timestamp of the study"),
        Column("procedure_code", "text", True, description="CPT/HCPCS performed"),
        Column("referral_id", "text", description="the order this scan fulfils"),
        Column("diagnosis_codes", "codes", description="ICD-10-CM codes on the scan or its claim"),
        Column("facility_id", "text"),
        Column("findings_category", "enum", allowed=FINDINGS),
        Column("scan_minutes", "integer", description="scanner table time"),
    ),
)

CLINICAL_EVENTS = TableSpec(
    name="clinical_events",
    key=None,
    date_column="event_date",
    description="Patient history and follow-up, as claims or EHR events.",
    columns=(
        Column("patient_id", "text", True),
        Column("event_date", "date", True),
        Column("event_type", "enum", True, allowed=EVENT_TYPES),
        Column("code_system", "enum", True, allowed=CODE_SYSTEMS),
        Column("code", "code", True, description="the code, stored upper-case without dots"),
        Column("days_supply", "integer", description="for medications"),
    ),
)

REVIEW_CATEGORIES = ("indicated", "potentially_unnecessary", "insufficient_information", "out_of_scope")
DEFAULT_REVIEW_RULE_SET = "standard"

CHART_REVIEWS = TableSpec(
    name="chart_reviews",
    key=None,  # several reviews of one scan are kept: none replaces another
    date_column="review_date",
    description="A clinician's review of a verdict: the category and reasons the reviewer gives the scan.",
    columns=(
        Column("scan_id", "text", True, description="the reviewed scan, as the audit publishes it"),
        Column("rule_set", "text", description="whose verdict was reviewed; standard when empty"),
        Column("reviewer_id", "text", True, description="pseudonymous reviewer key"),
        Column("review_date", "date", True),
        Column("reviewed_category", "enum", True, allowed=REVIEW_CATEGORIES,
               description="the category the reviewer gives the scan"),
        Column("reviewed_reasons", "text", description="reason codes separated by ';'"),
        Column("note", "text", description="free text, identifier-guarded"),
    ),
)

TABLES: dict[str, TableSpec] = {t.name: t for t in (REFERRALS, SCANS, CLINICAL_EVENTS, CHART_REVIEWS)}
# Tables whose rows belong to a patient (a change to them means reclassifying that patient).
PATIENT_TABLES = ("referrals", "scans", "clinical_events")
# Tables a native input must contain; clinical_events and chart_reviews are optional.
REQUIRED_TABLES = ("referrals", "scans")

# Spine MRI scope (docs/data-contract.md §3, "Scope"). Everything else is out of scope.
SPINE_MRI_REGIONS: dict[str, str] = {
    "72141": "cervical", "72142": "cervical", "72156": "cervical",
    "72146": "thoracic", "72147": "thoracic", "72157": "thoracic",
    "72148": "lumbar", "72149": "lumbar", "72158": "lumbar",
}
