"""The overtreatment reports' definitions: the interventions that can follow a spine MRI and their windows,
the published benchmarks they are read against, the sources cited, and the pages."""

from __future__ import annotations

from dataclasses import dataclass


WINDOWS = (90, 180, 365)  # days after the scan: day 1..N counts, the scan day itself does not
OPIOID_LOOKBACK_DAYS = 365  # an opioid is a *start* only without an opioid in this many days before the scan
PROVIDER_WINDOW = 180  # the injection window shown per provider and facility (Webster 2014: 6 months)
PRIMARY_RULE_SET = "standard"
CATEGORIES = ("potentially_unnecessary", "indicated", "insufficient_information")
CATEGORY_LABEL = {
    "potentially_unnecessary": "Potentially unnecessary",
    "indicated": "Indicated",
    "insufficient_information": "Insufficient information",
}
UNKNOWN = "(unknown)"


@dataclass(frozen=True)
class Intervention:
    key: str  # column stem
    concept: str  # value-set concept (value_set_codes.concept)
    label: str
    definition: str


INTERVENTIONS = (
    Intervention(
        "injection", "spine_injection", "Epidural or facet injection",
        "an epidural steroid injection, facet-joint injection or facet-nerve radiofrequency procedure "
        "(value set spine_injection)",
    ),
    Intervention(
        "surgery", "lumbar_surgery", "Spine surgery",
        "a lumbar decompression or fusion procedure (value set lumbar_surgery, procedure codes only: the "
        "diagnoses Z98.1 arthrodesis status and M96.1 postlaminectomy syndrome record earlier surgery and are "
        "not counted)",
    ),
    Intervention(
        "electrodiagnostic", "electrodiagnostic", "EMG or nerve conduction study",
        "needle electromyography or a nerve conduction study (value set electrodiagnostic)",
    ),
    Intervention(
        "repeat_imaging", "advanced_spine_imaging", "Repeat advanced spine imaging",
        "a spine MRI or CT (value set advanced_spine_imaging), recorded as a history event or as a later scan "
        "of the same patient",
    ),
    Intervention(
        "opioid_start", "opioid", "New opioid prescription",
        f"an opioid medication event (value set opioid) for a patient with no opioid event in the "
        f"{OPIOID_LOOKBACK_DAYS} days before the scan or on the scan day",
    ),
)
BY_KEY = {iv.key: iv for iv in INTERVENTIONS}
FOLLOWED = tuple(iv.key for iv in INTERVENTIONS if iv.key != "injection")  # per provider besides injections

# The window each published benchmark uses, and the intervention compared with it in the reading.
READING = (("injection", 180), ("surgery", 365), ("electrodiagnostic", 180), ("repeat_imaging", 180),
           ("opioid_start", 365))

JACOBS_URL = ("https://ohsu.pure.elsevier.com/en/publications/"
              "observational-study-of-the-downstream-consequences-of-inappropria")
BENCHMARKS = (
    ("Jacobs JC et al., J Gen Intern Med 2020;35:3605-3612",
     JACOBS_URL,
     "VA primary care, 405,965 new non-specific low back pain episodes; lumbar MRI within 6 weeks of the first "
     "visit, without red flags, against no early MRI", "1 year",
     "Lumbar surgery 1.48% vs 0.12%; prescription opioids 35.1% vs 28.6%"),
    ("Webster BS et al., Spine 2014", "https://pmc.ncbi.nlm.nih.gov/articles/PMC4105318",
     "Workers' compensation, 3,022 patients; guideline-non-adherent early MRI against the reference group",
     "6 months",
     "Adjusted relative risk 6.5 to 54.9 for EMG, nerve conduction testing, advanced imaging, injections "
     "and surgery"),
)

SOURCES = (
    ("ACR Appropriateness Criteria, Low Back Pain (2021 revision)",
     "Hutchins TA et al., J Am Coll Radiol 2021;18(11S):S361-S379, doi:10.1016/j.jacr.2021.08.002",
     "https://acsearch.acr.org/list/GetAppendix?PanelName=Neurologic&TopicId=141"),
    ("Choosing Wisely: low back pain imaging",
     "AAFP, NASS, ACEP, ASA, ACA and AMSSM recommendations: no imaging in the first six weeks without red flags",
     "https://aafp.org/content/brand/aafp/family-physician/patient-care/clinical-recommendations/"
     "all-clinical-recommendations/cw-back-pain.html"),
    ("NICE NG59: Low back pain and sciatica in over 16s",
     "Published 30 Nov 2016, updated 11 Dec 2020; recommendations 1.1.4-1.1.6 on imaging",
     "https://www.nice.org.uk/guidance/ng59/chapter/Recommendations"),
    ("CMS Hospital OQR measure OP-8, MRI Lumbar Spine for Low Back Pain (CBE/NQF #0514)",
     "Lumbar MRI without antecedent conservative therapy (physical therapy or chiropractic in the 60 days "
     "before, or an office E&M visit 28-60 days before); its denominator exclusions are unverified and not applied",
     "https://p4qm.org/measures/0514"),
    ("NCQA HEDIS Use of Imaging Studies for Low Back Pain (LBP); eCQM CMS166 (NQF #0052)",
     "HEDIS MY2025 Volume 2 specification; CMS166v7",
     "https://ecqi.healthit.gov/sites/default/files/ecqm/measures/CMS166v7.html"),
    ("Webster BS et al., Spine 2014",
     "Cascade of services after guideline-non-adherent early MRI (workers' compensation, N = 3,022)",
     "https://pmc.ncbi.nlm.nih.gov/articles/PMC4105318"),
    ("Jacobs JC et al., J Gen Intern Med 2020;35:3605-3612",
     "Downstream consequences of inappropriate early lumbar MRI (VA, N = 405,965 episodes)",
     JACOBS_URL),
)

PAGES = (
    ("index.html", "Overview"),
    ("downstream.html", "Downstream interventions"),
    ("providers.html", "Referring providers"),
    ("facilities.html", "Facilities"),
    ("methodology.html", "Methodology"),
    ("feedback/index.html", "Referrer feedback (PDF)"),
    ("chart_review_cases.csv", "Chart-review cases (CSV)"),
)
