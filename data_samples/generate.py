"""Seeded synthetic data generator for imaging-audit (native layout, docs/data-contract.md §2a).

It writes the three input tables a hospital would hand over (``referrals``, ``scans``,
``clinical_events``) plus, in a separate truth directory, what the classification of every scan
*should* be under the ``standard`` rule set. Every spine MRI is produced by one scenario (see
``SCENARIOS`` and ``data_samples/README.md``) whose data pattern makes the intended category and
primary reason unambiguous: every window is kept at least one day clear of its boundary.

The committed sample in ``data_samples/`` was made with::

    python -m data_samples.generate --scans 2000 --seed 20260314 --out data_samples --fault-rate 0.002

Design:

* Deterministic: chunk ``k`` draws from ``numpy.random.default_rng([seed, k])`` (faults from
  ``default_rng([seed, k, 1])``), so the same arguments give byte-identical files, and a run with
  faults holds the same clean data as one without.
* Vectorized and bounded: each chunk of ``chunk_size`` scans is built with numpy / pyarrow array
  operations (no Python loop over rows), written and freed before the next one. Patients belong to
  exactly one chunk (one scan per patient), so a chunk is self-contained.
* One chunk writes ``referrals.csv``, ``scans.csv``, ``clinical_events.csv``; several chunks write
  ``referrals.part0001.csv`` ... (never a date in a chunk file name). With ``drop_days > 0`` the rows
  dated in the last ``drop_days`` days of the range go to nightly-drop files ``<table>_<YYYY-MM-DD>.<ext>``
  (one per table per day, created even when empty).
* Truth (``scan_truth``, ``faults.csv``, ``providers.csv``) goes to ``truth_dir`` (default
  ``out_dir/truth``), never to the top level of ``out_dir``, which is what the pipeline reads.
* Before writing, files this generator owns (``referrals*``, ``scans*``, ``clinical_events*`` with a
  csv/parquet extension at the top of ``out_dir``; the truth files in ``truth_dir``) are removed, so a
  re-run with a different chunking never leaves stale parts behind.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

__all__ = ["generate", "main", "SCENARIOS", "SAMPLE_COMMAND"]

SAMPLE_COMMAND = (
    "python -m data_samples.generate --scans 2000 --seed 20260314 --out data_samples --fault-rate 0.002"
)

# --------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------

PU, IND, INS, OOS_CAT = "potentially_unnecessary", "indicated", "insufficient_information", "out_of_scope"


@dataclass(frozen=True)
class Scenario:
    name: str
    weight: float  # relative share among spine MRIs (normalised below)
    category: str  # intended category under the `standard` rule set
    reason: str  # intended primary (most decisive) reason code
    lumbar_only: bool = False
    contrast_p: float = 0.075  # probability that the exam is a contrast variant
    contrast_expected: bool = False  # contrast is appropriate for this indication (no contrast review)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("early_uncomplicated", 20.0, PU, "early_imaging_no_red_flags"),
    Scenario("early_old_trauma", 1.0, PU, "early_imaging_no_red_flags", lumbar_only=True),
    Scenario("early_short_steroids", 1.0, PU, "early_imaging_no_red_flags"),
    Scenario("no_conservative_care", 7.0, PU, "no_conservative_care"),
    Scenario("repeat_imaging", 3.0, PU, "repeat_imaging_no_change"),
    Scenario("persistent_conservative", 23.0, IND, "persistent_despite_conservative_care"),
    Scenario("neurological", 19.0, IND, "neurological_symptoms"),
    Scenario("progressive_deficit", 2.0, IND, "progressive_neurological_deficit"),
    Scenario("red_flag_cauda_equina", 1.5, IND, "red_flag_cauda_equina", True, 0.20, True),
    Scenario("red_flag_cancer", 4.0, IND, "red_flag_cancer", False, 0.35, True),
    Scenario("red_flag_infection", 1.5, IND, "red_flag_infection", False, 0.50, True),
    Scenario("red_flag_immunosuppression", 1.0, IND, "red_flag_immunosuppression", False, 0.30, True),
    Scenario("red_flag_fracture_risk", 3.0, IND, "red_flag_fracture_risk"),
    Scenario("red_flag_weight_loss", 1.0, IND, "red_flag_weight_loss"),
    Scenario("prior_lumbar_surgery", 2.0, IND, "prior_lumbar_surgery", True, 0.45, True),
    Scenario("unknown_onset", 3.0, INS, "unknown_onset"),
    Scenario("no_indication", 1.0, INS, "no_indication"),
    Scenario("out_of_scope", 0.0, OOS_CAT, "not_spine_mri", contrast_p=0.0),
)
OUT_OF_SCOPE_SHARE = 0.06  # of all scans
UNSCANNED_REFERRAL_SHARE = 0.01  # extra referrals (per scan) that never got a scan
DOCUMENTED_ONSET_P = 0.75
LINKED_REFERRAL_P = 0.85
# Share of cauda equina, weight-loss and progressive-deficit referrals whose decisive fact is written only in the
# text (coded as back pain alone): the text stage must find it (truth column decisive_in_text).
TEXT_ONLY_P = 0.25
DOTLESS_P = 0.20

_SC = {s.name: i for i, s in enumerate(SCENARIOS)}
EARLY, OLD_TRAUMA, SHORT_STEROID = _SC["early_uncomplicated"], _SC["early_old_trauma"], _SC["early_short_steroids"]
NO_CONS, REPEAT, PERSIST = _SC["no_conservative_care"], _SC["repeat_imaging"], _SC["persistent_conservative"]
NEURO, PROGRESSIVE, CAUDA = _SC["neurological"], _SC["progressive_deficit"], _SC["red_flag_cauda_equina"]
CANCER, INFECTION, IMMUNO = _SC["red_flag_cancer"], _SC["red_flag_infection"], _SC["red_flag_immunosuppression"]
FRACTURE, WEIGHT, SURGERY = _SC["red_flag_fracture_risk"], _SC["red_flag_weight_loss"], _SC["prior_lumbar_surgery"]
UNKNOWN, NO_IND, OOS = _SC["unknown_onset"], _SC["no_indication"], _SC["out_of_scope"]
N_SC = len(SCENARIOS)

_PU_SET = np.array([s.category == PU for s in SCENARIOS])
_EARLY_SET = np.isin(np.arange(N_SC), [EARLY, OLD_TRAUMA, SHORT_STEROID])
_RED_FLAGS = np.isin(np.arange(N_SC), [CAUDA, CANCER, INFECTION, IMMUNO, FRACTURE, WEIGHT, SURGERY])
# scenarios whose episode start is known (documented on the referral or derivable from history)
_HAS_EPISODE = ~np.isin(np.arange(N_SC), [UNKNOWN, NO_IND, OOS])
# scenarios whose category depends on the ABSENCE of conservative care in the OP-8 windows
_NO_CARE_WINDOW = np.isin(np.arange(N_SC), [NO_CONS, UNKNOWN])

LUMBAR, THORACIC, CERVICAL, OTHER = 0, 1, 2, 3
REGION_NAMES = ("lumbar", "thoracic", "cervical", "other")

SPECIALTIES = ("primary_care", "emergency", "orthopedics", "neurosurgery", "neurology", "pain_medicine",
               "physiatry", "rheumatology", "oncology", "chiropractic", "other")
SETTINGS = ("outpatient", "emergency", "inpatient")
FINDINGS = ("normal", "degenerative", "disc_herniation", "stenosis", "fracture", "tumor", "infection", "other")

# --------------------------------------------------------------------------------------------
# Code vocabulary (every code written anywhere is an index into it; ICD-10-CM codes with a dot have a
# dotless twin so the 80/20 dotted/dotless mix is a vectorized index swap)
# --------------------------------------------------------------------------------------------

ICD, CPT, HCPCS, RX, PCS = "ICD10CM", "CPT", "HCPCS", "RXNORM", "ICD10PCS"
_EVENT_TYPE = {ICD: "diagnosis", CPT: "procedure", HCPCS: "procedure", RX: "medication", PCS: "procedure"}


class _Vocab:
    def __init__(self) -> None:
        self.code: list[str] = []
        self.system: list[str] = []
        self.alt: list[int] = []
        self._ix: dict[tuple[str, str], int] = {}

    def add(self, system: str, code: str) -> int:
        key = (system, code)
        if key in self._ix:
            return self._ix[key]
        i = len(self.code)
        self.code.append(code), self.system.append(system), self.alt.append(i)
        self._ix[key] = i
        if system == ICD and "." in code:
            j = len(self.code)
            self.code.append(code.replace(".", "")), self.system.append(system), self.alt.append(j)
            self.alt[i] = j
        return i


_V = _Vocab()


def _c(system: str, *codes: str) -> np.ndarray:
    return np.array([_V.add(system, c) for c in codes], dtype=np.int32)


def _g(system: str, codes: str, p: list[float] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    ids = _c(system, *codes.split())
    return ids, (None if p is None else np.asarray(p, float) / np.sum(p))


# region pain codes (referral); onset pain codes (history, episode start) exclude the vague M54.9
PAIN_REF = {LUMBAR: _g(ICD, "M54.50 M54.59 M54.5 M54.9", [.55, .28, .07, .10]),
            THORACIC: _g(ICD, "M54.6"), CERVICAL: _g(ICD, "M54.2")}
PAIN_ONSET = {LUMBAR: _g(ICD, "M54.50 M54.59 M54.5", [.60, .32, .08]),
              THORACIC: _g(ICD, "M54.6"), CERVICAL: _g(ICD, "M54.2")}
NEURO_DX = {LUMBAR: _g(ICD, "M54.16 M54.17 M54.41 M54.42 M51.16 M51.17 M54.31 R20.2",
                       [.20, .08, .14, .14, .16, .06, .12, .10]),
            CERVICAL: _g(ICD, "M54.12 M50.121 M50.122 R20.2", [.45, .30, .15, .10]),
            THORACIC: _g(ICD, "M54.14 R20.2", [.85, .15])}
# focal or severe motor deficits (generalised weakness M62.81 is not one)
MOTOR_DX = {LUMBAR: _g(ICD, "M21.371 M21.372 G83.11 G83.12", [.35, .35, .15, .15]),
            CERVICAL: _g(ICD, "G83.21 G83.22 G95.29", [.4, .4, .2]), THORACIC: _g(ICD, "G95.29 G83.11", [.6, .4])}
CAUDA_DX = _g(ICD, "G83.4 R33.9 R32 R15.9", [.35, .35, .15, .15])
CANCER_REF = {"F": _g(ICD, "C50.911 C79.51", [.7, .3]), "M": _g(ICD, "C61 C79.51", [.7, .3]),
              "U": _g(ICD, "C79.51")}
CANCER_HX = {"F": _g(ICD, "Z85.3 C50.911 C34.90", [.6, .3, .1]), "M": _g(ICD, "Z85.46 C61 C34.90", [.6, .3, .1]),
             "U": _g(ICD, "C34.90")}
BREAST_PROSTATE = _c(ICD, "C50.911", "Z85.3", "C61", "Z85.46")
INFECT_REF = {LUMBAR: _g(ICD, "M46.26 M46.46 G06.1 R50.9", [.25, .25, .2, .3]),
              THORACIC: _g(ICD, "G06.1 R50.9", [.4, .6]), CERVICAL: _g(ICD, "G06.1 R50.9", [.4, .6])}
IVDU = _c(ICD, "F11.20")[0]
IMMUNO_DX = _c(ICD, "B20", "D84.9", "Z94.0")
PREDNISONE = _c(RX, "8640")[0]
TRAUMA_RECENT = _g(ICD, "S32.010A S32.020A S32.030A S32.040A S32.050A S33.5XXA S33.0XXA",
                   [.1, .12, .12, .12, .1, .3, .14])
TRAUMA_OLD_DOC = _g(ICD, "S33.5XXA S32.010A S32.030A S32.040A", [.55, .15, .15, .15])
TRAUMA_OLD_UNDOC = _g(ICD, "S32.010A S32.030A S32.040A")  # never a sprain: stays clear of any LBP value set
COLLAPSED = _c(ICD, "M48.56XA")[0]
OSTEOPOROSIS = _c(ICD, "M81.0")[0]
DENOSUMAB = _c(HCPCS, "J0897")[0]
WEIGHT_LOSS = _c(ICD, "R63.4")[0]
SURG_CPT = _g(CPT, "63030 63047 22612 22630", [.35, .3, .2, .15])
SURG_DX = _g(ICD, "Z98.1 M96.1", [.5, .5])  # no site: they never decide alone
SURG_PCS = _g(PCS, "0SG00AJ 0SG10AJ 0SB20ZZ", [.4, .3, .3])  # lumbar fusion, lumbar discectomy (ICD-10-PCS)
POSTLAMINECTOMY = _c(ICD, "M96.1")[0]
PACEMAKER = _g(ICD, "Z95.0 Z95.810", [.6, .4])

PT_EVAL = _g(CPT, "97161 97162 97163", [.5, .4, .1])
PT_VISIT = _g(CPT, "97110 97140 97530", [.6, .25, .15])
PT_MANUAL = _c(CPT, "97140")[0]
CHIRO = _g(CPT, "98940 98941 98942", [.5, .35, .15])
EM_NEW = _g(CPT, "99202 99203 99204 99205", [.2, .45, .3, .05])
EM_EST = _g(CPT, "99211 99212 99213 99214 99215", [.03, .17, .45, .3, .05])
EM_ED = _g(CPT, "99281 99282 99283 99284 99285", [.03, .1, .3, .37, .2])
AWV = _c(HCPCS, "G0439")[0]
FLU_ADMIN = _c(HCPCS, "G0008")[0]
NSAID_MR = _g(RX, "5640 7258 3355 41493 21949", [.3, .25, .1, .2, .15])
BG_DX = _g(ICD, "I10 E11.9 E78.5 J06.9 K21.9 J45.909 E03.9 J30.9 E66.9 L30.9",
           [.2, .13, .14, .12, .08, .06, .07, .08, .07, .05])
BG_MED = _g(RX, "6809 29046 83367 10582 17767 7646", [.22, .2, .25, .1, .13, .1])

MRI = {LUMBAR: _c(CPT, "72148", "72149", "72158"), THORACIC: _c(CPT, "72146", "72147", "72157"),
       CERVICAL: _c(CPT, "72141", "72142", "72156")}
OOS_PROC = _g(CPT, "70551 73721 72131 72100 74181", [.30, .25, .15, .20, .10])
OOS_DX = [_g(ICD, "R51.9 G43.909", [.6, .4]), _g(ICD, "M25.561 M25.562 M17.11", [.4, .35, .25]),
          _g(ICD, "M54.50 M54.59", [.7, .3]), _g(ICD, "M54.50 M54.59", [.7, .3]), _g(ICD, "R10.9 K76.0", [.7, .3])]
OOS_REGION = np.array([OTHER, OTHER, LUMBAR, LUMBAR, OTHER])

FU_INJECTION = {LUMBAR: _g(CPT, "62323 64483 64493", [.35, .4, .25]), THORACIC: _g(CPT, "62321"),
                CERVICAL: _g(CPT, "62321 64490", [.6, .4])}
FU_SURGERY = {LUMBAR: _g(CPT, "63030 22612", [.65, .35]), CERVICAL: _g(CPT, "22551")}
FU_EMG = _g(CPT, "95886 95910", [.5, .5])
FU_OPIOID = _g(RX, "7804 5489 10689", [.35, .35, .3])
FU_CT_LUMBAR = _c(CPT, "72131")[0]

_EM_CODES = np.concatenate([EM_NEW[0], EM_EST[0], EM_ED[0]])
# OP-8 E&M: office visits (emergency visits are unconfirmed for OP-8; a G0439 wellness visit is not one)
_OP8_EM_CODES = np.concatenate([EM_NEW[0], EM_EST[0]])
_CARE_PT_CHIRO = np.concatenate([PT_EVAL[0], PT_VISIT[0], CHIRO[0]])

V_ALT = np.array(_V.alt, dtype=np.int32)
_V_CODE = pa.array(_V.code, pa.string())
_V_SYS = pa.array(_V.system, pa.string())
_V_TYPE = pa.array([_EVENT_TYPE[s] for s in _V.system], pa.string())
_IS_EM = np.isin(np.arange(len(_V.code)), _OP8_EM_CODES)
_IS_VISIT = np.isin(np.arange(len(_V.code)), np.append(_EM_CODES, AWV))
_IS_CARE = np.isin(np.arange(len(_V.code)), _CARE_PT_CHIRO)

# --------------------------------------------------------------------------------------------
# Distributions
# --------------------------------------------------------------------------------------------

_MONTH_W = np.array([1.22, 1.16, 1.14, 1.0, 1.0, 0.96, 0.95, 0.78, 1.0, 1.04, 0.98, 0.77])
_WEEKDAY_OUT = np.array([1.0, 1.0, 1.0, 1.0, 0.95, 0.16, 0.05])  # Monday .. Sunday
_WEEKDAY_FLAT = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.9, 0.9])
_FACILITY_W = np.array([.17, .14, .12, .10, .09, .08, .07, .06, .05, .05, .04, .03])

# care setting (outpatient, emergency, inpatient) per scenario
_SETTING_P = np.array([
    [.86, .12, .02], [.90, .08, .02], [.90, .08, .02], [.95, .04, .01], [.97, .02, .01],
    [.96, .02, .02], [.84, .11, .05], [.55, .28, .17], [.15, .55, .30], [.60, .14, .26],
    [.30, .35, .35], [.60, .20, .20], [.45, .40, .15], [.80, .10, .10], [.90, .07, .03],
    [.86, .10, .04], [1.0, 0.0, 0.0], [.80, .13, .07]])

# findings_category per scenario
_FINDINGS_P = {
    "default": [.38, .45, .09, .05, 0, 0, 0, .03],
    NEURO: [.10, .25, .45, .18, 0, 0, 0, .02],
    PROGRESSIVE: [.05, .15, .40, .32, 0, 0, 0, .08],
    CAUDA: [0, .05, .60, .20, 0, .05, 0, .10],
    CANCER: [.20, .25, 0, 0, .10, .45, 0, 0],
    INFECTION: [.20, .20, 0, 0, 0, 0, .50, .10],
    IMMUNO: [.30, .35, 0, 0, .10, 0, .10, .15],
    FRACTURE: [.15, .30, 0, 0, .55, 0, 0, 0],
    WEIGHT: [.40, .35, 0, 0, 0, .10, 0, .15],
    SURGERY: [0, .30, .20, .15, 0, 0, 0, .35],
    OOS: [.50, .20, 0, 0, 0, 0, 0, .30],
}

# referring specialty per (setting, scenario group); columns follow SPECIALTIES
_SPEC_OUT = {
    "pu": [.56, 0, .12, .02, .03, .06, .05, .01, 0, .10, .05],
    "generic": [.42, 0, .15, .05, .05, .10, .08, .02, 0, .05, .08],
    "neuro": [.30, 0, .20, .15, .20, .06, .05, 0, 0, .02, .02],
    "cancer": [.25, 0, .05, .05, .05, 0, 0, 0, .55, 0, .05],
    "infect": [.45, 0, .10, .10, .05, 0, 0, .10, .05, 0, .15],
    "fracture": [.45, 0, .30, .05, 0, 0, .05, .10, 0, 0, .05],
    "surgery": [.20, 0, .30, .35, .05, .10, 0, 0, 0, 0, 0],
    "oos": [.55, 0, .20, 0, .10, 0, 0, 0, .05, 0, .10],
}
_SPEC_ED = [.05, .85, .03, .04, .02, 0, 0, 0, 0, 0, .01]
_SPEC_IN = [.15, .05, .20, .25, .15, 0, 0, 0, .10, 0, .10]
_SPEC_GROUP = {EARLY: "pu", OLD_TRAUMA: "pu", SHORT_STEROID: "pu", NO_CONS: "pu", REPEAT: "pu",
               PERSIST: "generic", UNKNOWN: "generic", WEIGHT: "generic", NO_IND: "generic",
               NEURO: "neuro", PROGRESSIVE: "neuro", CAUDA: "neuro", CANCER: "cancer",
               INFECTION: "infect", IMMUNO: "infect", FRACTURE: "fracture", SURGERY: "surgery", OOS: "oos"}
_PROVIDER_SPEC_SHARE = [.38, .10, .12, .05, .07, .06, .05, .03, .05, .04, .05]
_OUTLIER_SPECS = [0, 1, 2, 5, 9]  # primary care, emergency, orthopedics, pain medicine, chiropractic
_OUTLIER_FACTOR = 5.0  # weight multiplier of outlier providers for early/no-conservative-care scans

# --------------------------------------------------------------------------------------------
# Free-text clinical indications. {P} = region phrase, {D} = documented duration ("3 wks").
# Templates containing {D} are only used when the onset is documented.
# --------------------------------------------------------------------------------------------

_REGION_PHRASE = {LUMBAR: ["LBP", "low back pain", "lumbar pain"], THORACIC: ["mid back pain", "thoracic back pain"],
                  CERVICAL: ["neck pain", "cervical pain"], OTHER: ["pain"]}
_T = {
    "early": ["{P} {D}, no red flags", "acute {P} {D}", "{P} x {D}, patient requests MRI",
              "acute {P}, no red flags", "{P}, patient requests MRI",
              "{P} {D}, denies fever, weight loss or saddle anesthesia", "acute {P}, no h/o cancer, no trauma",
              "{P} x {D}. Red flags: none.", "pt c/o {P} x {D}, neg for bowel/bladder changes",
              "acute {P}, r/o HNP"],
    "no_cons": ["{P} {D}", "{P} x {D}, requesting MRI", "ongoing {P} {D}", "{P}, requesting MRI", "ongoing {P}",
                "{P} {D}, no PT yet", "ongoing {P} {D}, afebrile", "{P}, no fever or chills"],
    "repeat": ["follow-up MRI, {P} unchanged", "repeat MRI requested, symptoms unchanged",
               "{P}, compare with prior MRI"],
    "persist_pt": ["{P} {D}, failed PT", "persistent {P} {D} despite PT and NSAIDs", "persistent {P} despite PT",
                   "{P}, failed PT and home exercise"],
    "persist_chiro": ["{P} {D}, no improvement with chiropractic care",
                      "persistent {P} despite chiropractic care"],
    "persist_em": ["{P} {D}, no improvement with conservative care",
                   "persistent {P} despite NSAIDs and home exercise", "{P}, failed conservative care"],
    "neuro_0": ["sciatica L5 distribution, {D}", "radiating leg pain and numbness {D}",
                        "{P} with radiculopathy, r/o disc herniation", "S1 radicular pain", "sciatica, {P}",
                        "sciatia L5 distribution, {D}", "radiculapathy, {P}"],
    "neuro_2": ["arm pain and tingling C6 distribution, {D}", "cervical radiculopathy, r/o disc herniation",
                          "neck pain radiating to arm"],
    "neuro_1": ["thoracic radicular pain {D}", "band-like radicular pain, r/o thoracic disc"],
    "progressive_0": ["progressive foot drop", "worsening leg weakness {D}", "new foot drop, {P}"],
    "progressive_2": ["progressive arm weakness", "worsening hand weakness {D}"],
    "progressive_1": ["progressive leg weakness, mid back pain"],
    "cauda": ["saddle anesthesia, urinary retention", "new urinary retention with {P}",
              "bowel incontinence and {P}, r/o cauda equina"],
    "cancer": ["hx cancer, new {P}", "known malignancy, r/o spinal mets", "{P} {D}, history of cancer"],
    "cancer_bp": ["hx breast ca, new back pain", "breast cancer, {P} r/o mets"],
    "cancer_pr": ["hx prostate ca, {P}", "prostate cancer, r/o spinal mets"],
    "infection_ref": ["fever and {P}", "{P} with fever, r/o discitis", "r/o spinal infection"],
    "infection_hx": ["IVDU, new {P}", "{P}, history of IV drug use"],
    "immuno_0": ["HIV, new {P}"], "immuno_1": ["immunocompromised, {P}"], "immuno_2": ["renal transplant, new {P}"],
    "immuno_3": ["on chronic prednisone, {P}"],
    "fracture_0": ["fall {D} ago, r/o compression fx", "fall, r/o compression fracture", "MVC, {P}"],
    "fracture_1": ["r/o vertebral compression fracture"], "fracture_2": ["osteoporosis, acute {P}"],
    "weight": ["unexplained weight loss, {P}", "{P} with weight loss"],
    "surgery": ["s/p lumbar laminectomy, recurrent pain", "post lumbar fusion, new {P}",
                "prior L4-5 surgery, worsening pain"],
    "unknown": ["{P}", "{P}, please evaluate", "eval {P}"],
    "oos_0": ["headache, r/o mass", "chronic headaches"], "oos_1": ["knee pain, r/o meniscal tear", "knee pain"],
    "oos_2": ["low back pain, CT requested"], "oos_3": ["low back pain", "lumbar pain, x-ray"],
    "oos_4": ["abdominal pain, eval"],
}

# --------------------------------------------------------------------------------------------
# Output schemas
# --------------------------------------------------------------------------------------------

REFERRAL_COLUMNS = ("referral_id", "patient_id", "referral_date", "requested_procedure_code", "diagnosis_codes",
                    "patient_age", "patient_sex", "symptom_onset_date", "referring_provider_id",
                    "referring_specialty", "care_setting", "facility_id", "clinical_indication")
SCAN_COLUMNS = ("scan_id", "patient_id", "scan_date", "procedure_code", "referral_id", "diagnosis_codes",
                "facility_id", "findings_category", "scan_minutes")
EVENT_COLUMNS = ("patient_id", "event_date", "event_type", "code_system", "code", "days_supply")
TRUTH_COLUMNS = ("scan_id", "patient_id", "scenario", "body_region", "expected_category", "expected_reason",
                 "episode_start", "days_since_onset", "has_op8_conservative_care", "expected_contrast_review",
                 "expected_safety_review", "decisive_in_text", "fault")
TABLES = ("referrals", "scans", "clinical_events")
_DATE_COL = {"referrals": "referral_date", "scans": "scan_date", "clinical_events": "event_date"}
_OWNED = re.compile(r"^(referrals|scans|clinical_events)(\.part\d+|_\d{4}-\d{2}-\d{2})?\.(csv|parquet)$")


def _schema(table: str, faults: bool) -> pa.Schema:
    d = pa.string() if faults else pa.date32()
    age = pa.string() if faults else pa.int32()
    s = pa.string()
    if table == "referrals":
        types = [s, s, d, s, s, age, s, pa.date32(), s, s, s, s, s]
        cols = REFERRAL_COLUMNS
    elif table == "scans":
        types, cols = [s, s, d, s, s, s, s, s, pa.int32()], SCAN_COLUMNS
    elif table == "clinical_events":
        types, cols = [s, d, s, s, s, pa.int32()], EVENT_COLUMNS
    else:
        types = [s, s, s, s, s, s, pa.date32(), pa.int32(), pa.bool_(), pa.bool_(), pa.bool_(), pa.bool_(), s]
        cols = TRUTH_COLUMNS
    return pa.schema([pa.field(c, t) for c, t in zip(cols, types)])


FAULTS_SCHEMA = pa.schema([(c, pa.string()) for c in ("table", "id", "patient_id", "fault", "file")]
                          + [("row", pa.int64())])
PROVIDER_SCHEMA = pa.schema([("provider_id", pa.string()), ("specialty", pa.string()),
                             ("home_facility", pa.string()), ("outlier", pa.bool_())])

# --------------------------------------------------------------------------------------------
# Small vectorized helpers
# --------------------------------------------------------------------------------------------

_EPOCH = np.datetime64("1970-01-01", "D")


def _to_day(value) -> int:
    return int((np.datetime64(str(value), "D") - _EPOCH).astype(np.int64))


def _dates(days: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    arr = np.asarray(days, dtype=np.int64).astype("datetime64[D]")
    return pa.array(arr, type=pa.date32(), mask=None if valid is None else ~valid)


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    s = pc.utf8_lpad(pa.array(np.asarray(numbers, np.int64)).cast(pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, s, "")


def _codes(idx: np.ndarray) -> pa.Array:
    """Vocabulary indices (-1 = missing) -> code strings (null when missing)."""
    idx = np.asarray(idx, np.int64)
    return _V_CODE.take(pa.array(np.where(idx < 0, 0, idx), mask=idx < 0))


def _join_skip(arrays: list, sep: str) -> pa.Array:
    """Join string arrays element-wise, skipping nulls; null when every part is null.

    (pyarrow's null_handling="skip" drops rows whose inputs are all null, so nulls become "" and the
    separators are tidied afterwards.)"""
    out = pc.binary_join_element_wise(*[pc.fill_null(a, "") for a in arrays], sep)
    out = pc.utf8_trim(pc.replace_substring_regex(out, re.escape(sep) + "{2,}", sep), sep)
    return pc.if_else(pc.equal(out, ""), pa.scalar(None, pa.string()), out)


def _join_codes(slots: list[np.ndarray]) -> pa.Array:
    return _join_skip([_codes(s) for s in slots], ";")


def _str_col(values: np.ndarray, labels) -> pa.Array:
    """Small-integer codes (-1 = missing) -> dictionary-decoded strings."""
    values = np.asarray(values, np.int64)
    return pa.array(list(labels), pa.string()).take(pa.array(np.where(values < 0, 0, values), mask=values < 0))


def _group_pos(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For per-group counts: (group index per element, position within group)."""
    rep = np.repeat(np.arange(len(counts)), counts)
    pos = np.arange(len(rep)) - np.repeat(np.cumsum(counts) - counts, counts)
    return rep, pos


def _day_weights(start: int, end: int, weekday_w: np.ndarray) -> np.ndarray:
    days = np.arange(start, end + 1)
    month = days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) % 12
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    w = _MONTH_W[month] * weekday_w[weekday]
    return w / w.sum()


# --------------------------------------------------------------------------------------------
# Providers (global, derived from the seed only)
# --------------------------------------------------------------------------------------------


@dataclass
class _Providers:
    ids: pa.Array
    specialty: np.ndarray
    facility: np.ndarray
    weight: np.ndarray
    outlier: np.ndarray


def _make_providers(seed: int, n_scans: int) -> _Providers:
    rng = np.random.default_rng([seed, 2_000_000_011])
    n = max(20, int(round(n_scans / 400)))
    share = np.asarray(_PROVIDER_SPEC_SHARE)
    counts = np.maximum(1, np.round(share * n).astype(int))
    spec = rng.permutation(np.repeat(np.arange(len(SPECIALTIES)), counts))
    n = len(spec)
    facility = rng.choice(len(_FACILITY_W), n, p=_FACILITY_W)
    weight = rng.lognormal(0.0, 0.7, n)
    eligible = np.flatnonzero(np.isin(spec, _OUTLIER_SPECS))
    n_out = max(1, int(round(0.05 * n)))
    outlier = np.zeros(n, bool)
    outlier[rng.choice(eligible, min(n_out, len(eligible)), replace=False)] = True
    width = max(4, len(str(n)))
    return _Providers(_ids("DR", np.arange(1, n + 1), width), spec, facility, weight, outlier)


# --------------------------------------------------------------------------------------------
# One chunk
# --------------------------------------------------------------------------------------------


@dataclass
class _Ctx:
    seed: int
    start: int
    end: int
    fault_rate: float
    providers: _Providers
    pid_width: int
    sid_width: int
    rid_width: int
    w_out: np.ndarray
    w_flat: np.ndarray


class _Chunk:
    """Builds one self-contained chunk: cases (one patient each), referrals, scans, events, truth."""

    def __init__(self, ctx: _Ctx, ci: int, n: int, patient_base: int, scan_base: int) -> None:
        self.ctx, self.ci, self.n = ctx, ci, n
        self.rng = np.random.default_rng([ctx.seed, ci])
        self.frng = np.random.default_rng([ctx.seed, ci, 1])
        self.u = int(round(n * UNSCANNED_REFERRAL_SHARE))
        self.m = n + self.u
        self.patient_base, self.scan_base = patient_base, scan_base
        self.P: list[np.ndarray] = []
        self.D: list[np.ndarray] = []
        self.C: list[np.ndarray] = []
        self.Q: list[np.ndarray] = []

    # -- random helpers ------------------------------------------------------------------------
    def ri(self, lo, hi, size=None) -> np.ndarray:
        """Uniform integers in [lo, hi] (inclusive, broadcasting)."""
        if size is None:
            size = np.broadcast(np.asarray(lo), np.asarray(hi)).shape
        return self.rng.integers(lo, np.asarray(hi) + 1, size=size)

    def pick(self, group, k: int) -> np.ndarray:
        codes, p = group
        return self.rng.choice(codes, k, p=p).astype(np.int32)

    def pick_region(self, table: dict, sel: np.ndarray) -> np.ndarray:
        out = np.full(len(sel), -1, np.int32)
        reg = self.region[sel]
        for r, group in table.items():
            mask = reg == r
            if mask.any():
                out[mask] = self.pick(group, int(mask.sum()))
        return out

    def chance(self, sel: np.ndarray, p) -> np.ndarray:
        return sel[self.rng.random(len(sel)) < p]

    # -- event emission ------------------------------------------------------------------------
    def emit(self, cases, day, code, ds=None) -> None:
        cases = np.asarray(cases)
        k = len(cases)
        if k == 0:
            return
        self.P.append(cases.astype(np.int32))
        self.D.append(np.broadcast_to(np.asarray(day), (k,)).astype(np.int32))
        self.C.append(np.broadcast_to(np.asarray(code), (k,)).astype(np.int32))
        self.Q.append(np.full(k, -1, np.int32) if ds is None else np.broadcast_to(np.asarray(ds), (k,)).astype(np.int32))

    def em_visit(self, cases, day, dx=None, new_p: float = 0.12) -> None:
        k = len(cases)
        if k == 0:
            return
        code = np.where(self.rng.random(k) < new_p, self.pick(EM_NEW, k), self.pick(EM_EST, k))
        self.emit(cases, day, code)
        if dx is not None:
            self.emit(cases, day, dx)

    def course(self, sel, last_off, first_off, spacing_choices, kmin, kmax, eval_group, visit_group,
               extra_p=0.0) -> None:
        """A therapy course: visits every `spacing` days going back from last_off, never before first_off."""
        if len(sel) == 0:
            return
        sp = self.rng.choice(spacing_choices, len(sel))
        k = np.minimum(self.ri(kmin, kmax, len(sel)), (last_off - first_off) // sp + 1)
        rep, j = _group_pos(k)
        off = last_off[rep] - j * sp[rep]
        cases = sel[rep]
        day = self.S[cases] + off
        first = j == (k[rep] - 1)
        code = self.pick(visit_group, len(rep))
        if eval_group is not None:
            code = np.where(first, self.pick(eval_group, len(rep)), code)
            dx_cases = first  # the evaluation carries the episode diagnosis
            self.emit(cases[dx_cases], day[dx_cases], self.pick_region(PAIN_ONSET, cases[dx_cases]))
        self.emit(cases, day, code)
        if extra_p:
            extra = (~first) & (self.rng.random(len(rep)) < extra_p)
            self.emit(cases[extra], day[extra], PT_MANUAL)

    # -- build ---------------------------------------------------------------------------------
    def build(self):
        self._cases()
        self._referral_codes()
        self._events()
        return self._tables()

    def _cases(self) -> None:
        rng, n, m, ctx = self.rng, self.n, self.m, self.ctx
        w = np.array([s.weight for s in SCENARIOS])
        p = w / w.sum() * (1 - OUT_OF_SCOPE_SHARE)
        p[OOS] = OUT_OF_SCOPE_SHARE
        sc = np.empty(m, np.int16)
        sc[:n] = rng.choice(N_SC, n, p=p)
        sc[n:] = rng.choice([EARLY, PERSIST, NEURO], self.u, p=[.4, .35, .25])
        self.sc = sc
        self.is_scan = np.arange(m) < n
        spine = sc != OOS

        # body region: lumbar-only scenarios pinned; the others drawn so the total is ~75/10/15
        lumbar_only = np.array([s.lumbar_only for s in SCENARIOS])
        lo_share = (w * lumbar_only).sum() / w.sum()
        p_reg = np.array([0.75 - lo_share, 0.10, 0.15]) / (1 - lo_share)
        region = rng.choice(3, m, p=p_reg).astype(np.int8)
        region[lumbar_only[sc]] = LUMBAR
        oos_kind = rng.choice(len(OOS_PROC[0]), m, p=OOS_PROC[1])
        region[~spine] = OOS_REGION[oos_kind[~spine]]
        self.region, self.oos_kind = region, oos_kind

        # procedure: contrast variants (2nd / 3rd code of the region)
        cp = np.array([s.contrast_p for s in SCENARIOS])[sc]
        contrast = spine & (rng.random(m) < cp)
        variant = np.where(contrast, np.where(rng.random(m) < 0.3, 1, 2), 0)
        proc = OOS_PROC[0][oos_kind].copy()
        for r in (LUMBAR, THORACIC, CERVICAL):
            mask = spine & (region == r)
            proc[mask] = MRI[r][variant[mask]]
        self.contrast, self.proc = contrast, proc
        # the order: ~20% of contrast exams were requested without contrast (radiologist protocolled it)
        base = np.array([MRI[LUMBAR][0], MRI[THORACIC][0], MRI[CERVICAL][0], -1])[region]
        self.req_proc = np.where(contrast & (rng.random(m) < 0.2), base, proc)

        # care setting and scan date (seasonality; outpatient scans mostly on weekdays)
        setting = np.empty(m, np.int8)
        u = rng.random(m)
        cum = np.cumsum(_SETTING_P, axis=1)[sc]
        setting[:] = (u[:, None] >= cum[:, :2]).sum(axis=1)
        self.setting = setting
        ndays = ctx.end - ctx.start + 1
        S = np.empty(m, np.int32)
        out = setting == 0
        S[out] = ctx.start + rng.choice(ndays, int(out.sum()), p=ctx.w_out)
        S[~out] = ctx.start + rng.choice(ndays, int((~out).sum()), p=ctx.w_flat)
        self.S = S

        # days from episode start to scan, per scenario
        d = np.full(m, -1, np.int32)
        doc = (rng.random(m) < DOCUMENTED_ONSET_P) & _HAS_EPISODE[sc]
        doc |= (sc == OOS) & (rng.random(m) < 0.5)
        var = np.zeros(m, np.int8)
        self.doc = doc

        def setd(mask, lo, hi):
            k = int(mask.sum())
            if k:
                d[mask] = self.ri(lo, hi, k)

        long_ = rng.random(m) < 0.3
        setd(_EARLY_SET[sc], 3, 41)
        for s in (NO_CONS, PERSIST):
            lo = 60 if s == NO_CONS else 42
            setd((sc == s) & ~long_, lo, 180)
            setd((sc == s) & long_ & doc, 181, 400)
            setd((sc == s) & long_ & ~doc, 181, 360)  # undocumented: stay inside a 365-day episode link
        rep = sc == REPEAT
        self.prior_gap = np.zeros(m, np.int32)
        self.prior_gap[rep] = self.ri(60, 330, int(rep.sum()))
        d[rep] = np.minimum(self.prior_gap[rep] + self.ri(7, 120, int(rep.sum())), 360)
        nshort = rng.random(m) < 0.6
        setd((sc == NEURO) & nshort, 2, 60)
        setd((sc == NEURO) & ~nshort, 61, 300)
        setd(sc == PROGRESSIVE, 2, 200)
        setd(sc == CAUDA, 1, 45)
        setd(sc == CANCER, 3, 150)
        setd(sc == INFECTION, 2, 60)
        setd(sc == IMMUNO, 3, 150)
        setd(sc == WEIGHT, 14, 180)
        setd(sc == SURGERY, 7, 300)
        setd(sc == OOS, 3, 200)

        # scenario variants
        fr = sc == FRACTURE
        var[fr] = np.where(region[fr] == LUMBAR, rng.choice(3, int(fr.sum()), p=[.5, .2, .3]), 2)
        setd(fr & (var == 0), 0, 88)  # trauma 0-88 days before the scan = episode start
        setd(fr & (var != 0), 3, 150)
        for s, k, pv in ((CANCER, 2, [.5, .5]), (IMMUNO, 4, [.3, .15, .25, .3]), (SURGERY, 2, [.6, .4]),
                         (PERSIST, 3, [.6, .15, .25]), (REPEAT, 3, [.6, .15, .25])):
            mask = sc == s
            var[mask] = rng.choice(k, int(mask.sum()), p=pv)
        inf = sc == INFECTION
        var[inf] = (rng.random(int(inf.sum())) < np.where(region[inf] == LUMBAR, .25, .3)).astype(np.int8)
        self.var = var
        self.d = d
        self.E = np.where(d >= 0, S - d, -1).astype(np.int32)

        # order -> scan gap (median ~7 d outpatient, same day in the ED, 0-3 d inpatient)
        gap = np.clip(np.round(rng.gamma(1.6, 5.5, m)), 0, 30).astype(np.int32)
        gap = np.where(setting == 1, (rng.random(m) < 0.1).astype(np.int32), gap)
        gap = np.where(setting == 2, self.ri(0, 3, m), gap)
        gap = np.where(d >= 0, np.minimum(gap, np.maximum(d, 0)), gap)
        self.gap = gap
        self.R = (S - gap).astype(np.int32)
        self.has_ref = sc != NO_IND
        self.linked = self.has_ref & self.is_scan & (rng.random(m) < LINKED_REFERRAL_P)

        # demographics
        sex = rng.choice(3, m, p=[.5175, .4775, .005])  # F, M, U
        young = rng.random(m) < 0.82
        age = np.where(young, rng.normal(50, 12, m), rng.normal(73, 9, m))
        age = np.where(sc == CANCER, rng.normal(63, 10, m), age)
        age = np.where(fr & (var == 2), rng.uniform(58, 92, m), age)
        age = np.clip(np.round(age), 18, 90).astype(np.int32)
        pu = _PU_SET[sc]
        age = np.where(pu & (age > 64), self.ri(24, 64, m), age)  # keep potentially-unnecessary cases <65
        self.sex, self.age = sex, age

        # providers, specialties and facilities
        prov = ctx.providers
        spec_p = np.empty((m, len(SPECIALTIES)))
        for s, group in _SPEC_GROUP.items():
            spec_p[sc == s] = _SPEC_OUT[group]
        spec_p[setting == 1] = _SPEC_ED
        spec_p[setting == 2] = _SPEC_IN
        spec_p /= spec_p.sum(axis=1, keepdims=True)
        spec = (rng.random(m)[:, None] >= np.cumsum(spec_p, axis=1)[:, :-1]).sum(axis=1)
        provider = np.zeros(m, np.int32)
        is_target = np.isin(sc, [EARLY, NO_CONS])
        for si in range(len(SPECIALTIES)):
            members = np.flatnonzero(prov.specialty == si)
            for tgt in (False, True):
                mask = (spec == si) & (is_target == tgt)
                k = int(mask.sum())
                if not k:
                    continue
                wt = prov.weight[members] * np.where(tgt & prov.outlier[members], _OUTLIER_FACTOR, 1.0)
                provider[mask] = rng.choice(members, k, p=wt / wt.sum())
        self.spec, self.provider = spec, provider
        self.ref_facility = prov.facility[provider]
        self.scan_facility = np.where(self.has_ref & (rng.random(m) < 0.8), self.ref_facility,
                                      rng.choice(len(_FACILITY_W), m, p=_FACILITY_W))
        self.no_provider = rng.random(m) < 0.02

    def _referral_codes(self) -> None:
        rng, m, sc = self.rng, self.m, self.sc
        c = [np.full(m, -1, np.int32) for _ in range(3)]
        pain = self.pick_region_all(PAIN_REF)
        neuro = self.pick_region_all(NEURO_DX)
        c[0][:] = pain
        bg = rng.random(m) < 0.12
        c[1] = np.where(bg, self.pick(BG_DX, m), -1)

        def put(mask, first, second):
            c[0][mask] = first[mask]
            c[1][mask] = second[mask]

        none = np.full(m, -1, np.int32)
        coin = rng.random(m)
        put(sc == NEURO, neuro, np.where(coin < 0.6, pain, none))
        motor = self.pick_region_all(MOTOR_DX)
        put(sc == PROGRESSIVE, motor, np.where(coin < 0.5, neuro, pain))
        cauda = self.pick(CAUDA_DX, m)
        put(sc == CAUDA, cauda, np.where(coin < 0.7, pain, none))
        # cancer on the referral (variant 0) or in history (variant 1)
        sex_key = np.array(["F", "M", "U"])[self.sex]
        can_ref = np.full(m, -1, np.int32)
        can_hx = np.full(m, -1, np.int32)
        for key in ("F", "M", "U"):
            mask = sex_key == key
            can_ref[mask] = self.pick(CANCER_REF[key], int(mask.sum()))
            can_hx[mask] = self.pick(CANCER_HX[key], int(mask.sum()))
        self.can_hx = can_hx
        cref = (sc == CANCER) & (self.var == 0)
        put(cref & (coin < 0.5), can_ref, pain)
        put(cref & (coin >= 0.5), pain, can_ref)
        # breast/prostate flags for text
        self.cancer_code = np.where(cref, can_ref, np.where(sc == CANCER, can_hx, -1))
        iref = (sc == INFECTION) & (self.var == 0)
        inf = self.pick_region_all(INFECT_REF)
        put(iref & (coin < 0.4), inf, pain)
        put(iref & (coin >= 0.4), pain, inf)
        fr = sc == FRACTURE
        trauma = self.pick(TRAUMA_RECENT, m)
        self.trauma = trauma
        put(fr & (self.var == 0) & (coin < 0.6), trauma, pain)
        put(fr & (self.var == 1), np.full(m, COLLAPSED, np.int32), pain)
        put(fr & (self.var == 2) & (coin < 0.4), pain, np.full(m, OSTEOPOROSIS, np.int32))
        wl = sc == WEIGHT
        put(wl & (coin < 0.3), np.full(m, WEIGHT_LOSS, np.int32), pain)
        put(wl & (coin >= 0.3), pain, np.full(m, WEIGHT_LOSS, np.int32))
        surg = sc == SURGERY
        put(surg & (coin < 0.3), np.full(m, POSTLAMINECTOMY, np.int32), pain)
        # a secondary radiculopathy code on some red-flag referrals (the red flag stays the decisive reason)
        sec = np.isin(sc, [CANCER, INFECTION, FRACTURE, SURGERY]) & (rng.random(m) < 0.15)
        c[2][sec] = neuro[sec]
        # out of scope: own codes
        oos = sc == OOS
        for k, group in enumerate(OOS_DX):
            mask = oos & (self.oos_kind == k)
            c[0][mask] = self.pick(group, int(mask.sum()))
            c[1][mask] = -1
        # the decisive fact only in words: the codes say back pain, the text names the sign (always written)
        text_only = self.linked & np.isin(sc, [CAUDA, WEIGHT, PROGRESSIVE]) & (rng.random(m) < TEXT_ONLY_P)
        c[0][text_only] = pain[text_only]
        c[1][text_only] = -1
        c[2][text_only] = -1
        self.text_only = text_only
        self.ref_codes = c
        self.neuro = neuro

    def pick_region_all(self, table: dict) -> np.ndarray:
        return self.pick_region(table, np.arange(self.m))

    # -- clinical history ------------------------------------------------------------------------
    def _events(self) -> None:
        rng, sc, S, E, d, m = self.rng, self.sc, self.S, self.E, self.d, self.m
        allc = np.arange(m)
        has_hist = sc != NO_IND
        episode = _HAS_EPISODE[sc]

        # 1. background E&M visits with unrelated diagnoses (before and after the scan)
        cases = allc[has_hist]
        k_pre = rng.poisson(1.0, len(cases))
        k_post = np.where(self.is_scan[cases], rng.poisson(0.4, len(cases)), 0)
        rep, _ = _group_pos(k_pre)
        vc = cases[rep]
        off = -self.ri(1, 730, len(rep))
        excl = _NO_CARE_WINDOW[sc[vc]] & (off >= -61) & (off <= -27)
        off = np.where(excl, off - 45, off)
        rep2, _ = _group_pos(k_post)
        vc = np.concatenate([vc, cases[rep2]])
        off = np.concatenate([off, self.ri(1, 365, len(rep2))])
        day = S[vc] + off
        awv = rng.random(len(vc)) < 0.07
        self.emit(vc[awv], day[awv], AWV)
        self.em_visit(vc[~awv], day[~awv])
        self.emit(vc, day, self.pick(BG_DX, len(vc)))
        two = rng.random(len(vc)) < 0.2
        self.emit(vc[two], day[two], self.pick(BG_DX, int(two.sum())))
        flu = self.chance(cases, 0.15)
        self.emit(flu, S[flu] - self.ri(1, 400, len(flu)), FLU_ADMIN)

        # 2. background chronic medications (90-day fills)
        med = self.chance(cases, 0.35)
        k = self.ri(2, 6, len(med))
        rep, j = _group_pos(k)
        drug = self.pick(BG_MED, len(med))
        start = S[med] - self.ri(30, 700, len(med))
        self.emit(med[rep], start[rep] + j * 90 + self.ri(-3, 3, len(rep)), drug[rep], 90)

        # 3. pacemaker / defibrillator (MRI safety review)
        pm = self.chance(allc[(sc != OOS) & has_hist & self.is_scan], 0.005)
        self.pacemaker = np.zeros(m, bool)
        self.pacemaker[pm] = True
        self.emit(pm, S[pm] - self.ri(30, 2500, len(pm)), self.pick(PACEMAKER, len(pm)))

        # 4. episode start: undocumented onset -> back-pain dx (and visit) on the start date
        undoc = allc[episode & ~self.doc]
        self.emit(undoc, E[undoc], self.pick_region(PAIN_ONSET, undoc))
        em_ok = ~(_NO_CARE_WINDOW[sc[undoc]] & (d[undoc] >= 27) & (d[undoc] <= 61))
        self.em_visit(undoc[em_ok], E[undoc[em_ok]], new_p=0.3)
        # documented onset: half have a first visit with a back-pain dx between onset and the order
        first = self.chance(allc[episode & self.doc], 0.5)
        fday = E[first] + self.ri(0, self.R[first] - E[first])
        fok = ~(_NO_CARE_WINDOW[sc[first]] & (S[first] - fday >= 27) & (S[first] - fday <= 61))
        self.emit(first, fday, self.pick_region(PAIN_ONSET, first))
        self.em_visit(first[fok], fday[fok], new_p=0.3)
        # long episodes: a back-pain visit every 80-120 days, so the episode never "restarts" (a gap of
        # > 180 days between back-pain diagnoses would open a new HEDIS episode); kept out of the OP-8
        # E&M window for the scenarios that must show no conservative care
        br = allc[episode & (d > 130)]
        step = self.ri(80, 120, len(br))
        rep, j = _group_pos((d[br] - 20) // step)
        bc = br[rep]
        bday = E[bc] + (j + 1) * step[rep]
        zone = _NO_CARE_WINDOW[sc[bc]] & (bday - S[bc] >= -61) & (bday - S[bc] <= -27)
        bday = np.where(zone, S[bc] - 62, bday)
        self.em_visit(bc, bday, self.pick_region(PAIN_ONSET, bc))
        # an older, closed back-pain episode >= 200 days before this one (clean-period decoy)
        old = self.chance(allc[episode], 0.05)
        oday = E[old] - self.ri(200, 700, len(old))
        self.emit(old, oday, self.pick_region(PAIN_ONSET, old))
        self.em_visit(old, oday)

        # 5. the ordering visit: outpatient E&M with the referral's primary code on the referral date
        ref_visit = allc[self.has_ref & (self.setting == 0) & (sc != UNKNOWN)
                         & ~((sc == NO_CONS) & (self.gap > 26))]
        self.em_visit(ref_visit, self.R[ref_visit], self.ref_codes[0][ref_visit])
        # ED visit on the scan day for emergency-setting scans
        ed = allc[self.has_ref & (self.setting == 1) & self.is_scan]
        self.emit(ed, S[ed], self.pick(EM_ED, len(ed)))
        ed_dx = ed[sc[ed] != UNKNOWN]
        self.emit(ed_dx, S[ed_dx], self.ref_codes[0][ed_dx])

        # 6. conservative care and episode visits, per scenario
        self._care_events()
        # 7. red flags and other scenario-defining history
        self._flag_events()
        # 8. follow-up after the scan (the overtreatment cascade)
        self._followup_events()

    def _care_events(self) -> None:
        sc, S, d = self.sc, self.S, self.d
        allc = np.arange(self.m)
        # persistent / repeat: conservative care inside the OP-8 windows, >= 1 day clear of each bound
        care = allc[np.isin(sc, [PERSIST, REPEAT])]
        v = self.var[care]
        pt = care[v == 0]
        self.course(pt, -self.ri(2, 20, len(pt)), -d[pt], [3, 4], 3, 8, PT_EVAL, PT_VISIT, 0.25)
        ch = care[v == 1]
        self.course(ch, -self.ri(2, 20, len(ch)), -d[ch], [7, 10], 3, 8, None, CHIRO)
        em_only = np.concatenate([care[v == 2], self.chance(care[v != 2], 0.3)])
        lo = -np.minimum(59, d[em_only])
        eday = S[em_only] + self.ri(lo, -29)
        self.em_visit(em_only, eday, self.pick_region(PAIN_ONSET, em_only))
        nsaid = self.chance(care, 0.5)
        self._nsaid(nsaid)

        # early: some started PT or NSAIDs in the first weeks (irrelevant to the early rule)
        early = allc[_EARLY_SET[sc]]
        ept = self.chance(early, 0.10)
        self.course(ept, -self.ri(1, d[ept] - 2), -d[ept], [3, 4], 1, 4, PT_EVAL, PT_VISIT)
        self._nsaid(self.chance(early, 0.3))

        # no conservative care: decoys only outside the OP-8 windows, never NSAIDs / relaxants
        nc = allc[sc == NO_CONS]
        late_em = self.chance(nc, 0.4)  # E&M 1-26 days before the scan (too late for OP-8, cf. T5)
        self.em_visit(late_em, S[late_em] - self.ri(1, 26, len(late_em)), self.pick_region(PAIN_ONSET, late_em))
        old_pt = self.chance(nc[d[nc] >= 80], 0.12)  # a PT course that ended > 60 days before
        self.course(old_pt, -self.ri(62, d[old_pt] - 10), -d[old_pt], [3, 4], 3, 8, PT_EVAL, PT_VISIT)
        old_em = self.chance(nc[d[nc] >= 63], 0.3)
        self.em_visit(old_em, S[old_em] - self.ri(62, d[old_em]), self.pick_region(PAIN_ONSET, old_em))

        # neurological / progressive / red flags: anything goes (the flag decides)
        nr = allc[np.isin(sc, [NEURO, PROGRESSIVE])]
        npt = self.chance(nr[d[nr] >= 3], 0.3)
        self.course(npt, -self.ri(1, d[npt] - 1), -d[npt], [3, 4], 2, 8, PT_EVAL, PT_VISIT, 0.2)
        self._nsaid(self.chance(nr, 0.4))
        nv = self.chance(nr, 0.4)
        self.em_visit(nv, S[nv] - self.ri(1, d[nv]), self.neuro[nv])
        rf = allc[_RED_FLAGS[sc]]
        self._nsaid(self.chance(rf, 0.2))
        rv = self.chance(rf[d[rf] >= 1], 0.3)
        self.em_visit(rv, S[rv] - self.ri(1, d[rv]), self.pick_region(PAIN_ONSET, rv))

    def _nsaid(self, cases: np.ndarray) -> None:
        day = self.S[cases] - self.ri(1, np.maximum(self.d[cases], 1))
        self.emit(cases, day, self.pick(NSAID_MR, len(cases)), self.ri(10, 30, len(cases)))

    def _flag_events(self) -> None:
        rng, sc, S, E, d, var = self.rng, self.sc, self.S, self.E, self.d, self.var
        allc = np.arange(self.m)
        sel = lambda mask: allc[mask]  # noqa: E731

        # early_old_trauma: lumbar trauma 92-250 days before the scan (outside the 90-day window)
        ot = sel(sc == OLD_TRAUMA)
        tcode = np.where(self.doc[ot], self.pick(TRAUMA_OLD_DOC, len(ot)), self.pick(TRAUMA_OLD_UNDOC, len(ot)))
        tday = S[ot] - self.ri(92, 250, len(ot))
        self.emit(ot, tday, tcode)
        self.emit(ot, tday, self.pick(EM_ED, len(ot)))

        # early_short_steroids: prednisone < 90 days in total (a burst, or two 30-day fills)
        st = sel(sc == SHORT_STEROID)
        burst = rng.random(len(st)) < 0.6
        b = st[burst]
        self.emit(b, S[b] - self.ri(10, 300, len(b)), PREDNISONE, self.ri(5, 21, len(b)))
        f2 = st[~burst]
        s0 = S[f2] - self.ri(65, 300, len(f2))
        self.emit(f2, s0, PREDNISONE, 30)
        self.emit(f2, s0 + 30, PREDNISONE, 30)

        # repeat imaging: prior MRI of the same region 60-330 days before, inside the episode
        rp = sel(sc == REPEAT)
        prior = np.array([MRI[r][0] for r in (0, 1, 2)])[self.region[rp]]
        pday = S[rp] - self.prior_gap[rp]
        self.emit(rp, pday, prior)
        self.emit(rp, pday, self.pick_region(PAIN_ONSET, rp))

        # an old MRI of the same region 400-1500 days before (outside the 365-day repeat window)
        om = self.chance(sel(_HAS_EPISODE[sc] & (sc != REPEAT) & (self.region != OTHER)), 0.03)
        self.emit(om, S[om] - self.ri(400, 1500, len(om)), np.array([MRI[r][0] for r in (0, 1, 2)])[self.region[om]])

        # cancer history (variant 1), any time before the episode
        ch = sel((sc == CANCER) & (var == 1))
        self.emit(ch, E[ch] - self.ri(200, 2500, len(ch)), self.can_hx[ch])
        again = self.chance(ch, 0.5)
        self.emit(again, S[again] - self.ri(1, 180, len(again)), self.can_hx[again])

        # infection: IV drug use within 365 days (variant 1)
        ivdu = sel((sc == INFECTION) & (var == 1))
        self.emit(ivdu, S[ivdu] - self.ri(10, 350, len(ivdu)), IVDU)

        # immunosuppression: HIV / immunodeficiency / kidney transplant, or a >= 90-day prednisone chain
        im = sel((sc == IMMUNO) & (var < 3))
        code = IMMUNO_DX[var[im]]
        self.emit(im, E[im] - self.ri(200, 2500, len(im)), code)
        again = rng.random(len(im)) < 0.5
        self.emit(im[again], S[im[again]] - self.ri(1, 300, int(again.sum())), code[again])
        pc_ = sel((sc == IMMUNO) & (var == 3))
        nf = self.ri(4, 6, len(pc_))
        interval = self.ri(28, 30, len(pc_))
        start = S[pc_] - self.ri(nf * 30 + 5, 355)
        rep, j = _group_pos(nf)
        self.emit(pc_[rep], start[rep] + j * interval[rep], PREDNISONE, 30)

        # fracture risk: recent trauma at the episode start, collapsed vertebra, or osteoporosis
        fr0 = sel((sc == FRACTURE) & (var == 0))
        self.emit(fr0, E[fr0], self.trauma[fr0])
        ed = self.chance(fr0, 0.6)
        self.emit(ed, E[ed], self.pick(EM_ED, len(ed)))
        fr1 = sel((sc == FRACTURE) & (var == 1))
        self.emit(fr1, S[fr1] - self.ri(0, np.minimum(d[fr1], 80)), COLLAPSED)
        fr2 = sel((sc == FRACTURE) & (var == 2))
        self.emit(fr2, E[fr2] - self.ri(200, 2500, len(fr2)), OSTEOPOROSIS)
        dn = self.chance(fr2, 0.3)
        self.emit(dn, S[dn] - self.ri(30, 900, len(dn)), DENOSUMAB)

        # prior lumbar surgery: CPT 400-2000 days before (with its pre-op MRI), or an ICD-10-PCS lumbar fusion or
        # discectomy with, in half of them, the unsited status code Z98.1 / M96.1 (which alone would not count)
        s0 = sel((sc == SURGERY) & (var == 0))
        sday = S[s0] - self.ri(401, 1999, len(s0))
        self.emit(s0, sday, self.pick(SURG_CPT, len(s0)))
        pre_mask = rng.random(len(s0)) < 0.5
        self.emit(s0[pre_mask], sday[pre_mask] - self.ri(10, 60, int(pre_mask.sum())), MRI[LUMBAR][0])
        s1 = sel((sc == SURGERY) & (var == 1))
        s1day = E[s1] - self.ri(200, 1800, len(s1))
        self.emit(s1, s1day, self.pick(SURG_PCS, len(s1)))
        status = rng.random(len(s1)) < 0.5
        self.emit(s1[status], s1day[status] + self.ri(30, 150, int(status.sum())), self.pick(SURG_DX, int(status.sum())))

    def _followup_events(self) -> None:
        rng, sc, S = self.rng, self.sc, self.S
        allc = np.arange(self.m)
        scans = allc[self.is_scan & (sc != NO_IND)]
        pu = _PU_SET[sc[scans]]
        spine = sc[scans] != OOS

        def fu(rate_pu, rate_other):
            p = np.where(pu, rate_pu, rate_other) * spine
            chosen = scans[rng.random(len(scans)) < p]
            return chosen, S[chosen] + self.ri(1, 365, len(chosen))

        c, day = fu(0.16, 0.08)
        inj = self.pick_region(FU_INJECTION, c)
        self.emit(c, day, inj)
        surg_rate = np.where(np.isin(sc[scans], [CAUDA, PROGRESSIVE]), 0.25, 0.01)
        p = np.where(pu, 0.025, surg_rate) * spine * (self.region[scans] != THORACIC)
        c = scans[rng.random(len(scans)) < p]
        self.emit(c, S[c] + self.ri(1, 365, len(c)), self.pick_region(FU_SURGERY, c))
        c, day = fu(0.10, 0.05)
        self.emit(c, day, self.pick(FU_EMG, len(c)))
        c, day = fu(0.10, 0.05)
        img = np.array([MRI[r][0] for r in (0, 1, 2)])[self.region[c]]
        img = np.where((self.region[c] == LUMBAR) & (rng.random(len(c)) < 0.2), FU_CT_LUMBAR, img)
        self.emit(c, day, img)
        p = np.where(pu, 0.33, 0.22) * np.where(spine, 1.0, 0.2)
        c = scans[rng.random(len(scans)) < p]
        self.emit(c, S[c] + self.ri(1, 365, len(c)), self.pick(FU_OPIOID, len(c)), self.ri(5, 30, len(c)))

    # -- tables ----------------------------------------------------------------------------------
    def _text(self, cases: np.ndarray) -> pa.Array:
        rng, sc, region = self.rng, self.sc[cases], self.region[cases]
        k = len(cases)
        doc = self.doc[cases]
        dr = np.maximum(self.R[cases] - self.E[cases], 1)
        dur = np.where(dr < 2, "1 day",
                       np.where(dr < 14, np.char.add(dr.astype(str), " days"),
                                np.where(dr < 84, np.char.add((dr // 7).astype(str), " wks"),
                                         np.char.add((dr // 30).astype(str), " mo"))))
        phrase = np.empty(k, object)
        for r, words in _REGION_PHRASE.items():
            mask = region == r
            phrase[mask] = np.array(words, object)[rng.integers(0, len(words), int(mask.sum()))]
        phrase_pa, dur_pa = pa.array(phrase, pa.string()), pa.array(dur.astype(object), pa.string())
        key = np.full(k, "unknown", object)
        key[_EARLY_SET[sc]] = "early"
        key[sc == NO_CONS] = "no_cons"
        key[sc == REPEAT] = "repeat"
        pv = self.var[cases]
        key[sc == PERSIST] = np.array(["persist_pt", "persist_chiro", "persist_em"], object)[pv[sc == PERSIST]]
        for s, name in ((NEURO, "neuro"), (PROGRESSIVE, "progressive")):
            for r in (LUMBAR, THORACIC, CERVICAL):
                key[(sc == s) & (region == r)] = f"{name}_{r}"
        key[sc == CAUDA] = "cauda"
        cc = self.cancer_code[cases]
        key[sc == CANCER] = "cancer"
        key[(sc == CANCER) & np.isin(cc, BREAST_PROSTATE[:2]) & (rng.random(k) < 0.6)] = "cancer_bp"
        key[(sc == CANCER) & np.isin(cc, BREAST_PROSTATE[2:]) & (rng.random(k) < 0.6)] = "cancer_pr"
        key[sc == INFECTION] = np.where(pv[sc == INFECTION] == 1, "infection_hx", "infection_ref")
        key[sc == IMMUNO] = np.array(["immuno_0", "immuno_1", "immuno_2", "immuno_3"], object)[pv[sc == IMMUNO]]
        key[sc == FRACTURE] = np.array(["fracture_0", "fracture_1", "fracture_2"], object)[pv[sc == FRACTURE]]
        key[sc == WEIGHT] = "weight"
        key[sc == SURGERY] = "surgery"
        oos = sc == OOS
        key[oos] = np.array([f"oos_{i}" for i in range(5)], object)[self.oos_kind[cases][oos]]
        idx_parts, str_parts = [np.zeros(0, np.int64)], [pa.array([], pa.string())]
        for name, templates in _T.items():
            in_key = key == name
            for documented in (True, False):
                usable = [t for t in templates if documented or "{D}" not in t]
                idx = np.flatnonzero(in_key & (doc == documented))
                if not len(idx):
                    continue
                choice = rng.integers(0, len(usable), len(idx))
                for ti, t in enumerate(usable):
                    sub = idx[choice == ti]
                    if not len(sub):
                        continue
                    take = pa.array(sub)
                    pieces = [pc.fill_null(pa.nulls(len(sub), pa.string()), "")]
                    for piece in re.split(r"(\{P\}|\{D\})", t):
                        if piece == "{P}":
                            pieces.append(phrase_pa.take(take))
                        elif piece == "{D}":
                            pieces.append(dur_pa.take(take))
                        elif piece:
                            pieces.append(piece)
                    idx_parts.append(sub)
                    str_parts.append(pc.binary_join_element_wise(*pieces, ""))
        all_idx = np.concatenate(idx_parts)
        assert len(all_idx) == k
        out = pa.concat_arrays(str_parts).take(pa.array(np.argsort(all_idx, kind="stable")))
        blank = (rng.random(k) < 0.08) & ~self.text_only[cases]
        return pc.if_else(pa.array(blank), pa.scalar(None, pa.string()), out)

    def _tables(self):
        ctx, rng, m = self.ctx, self.rng, self.m
        pnum = self.patient_base + 1 + rng.permutation(m)
        pid = _ids("P", pnum, ctx.pid_width)

        # --- events -----------------------------------------------------------------------
        P = np.concatenate(self.P)
        D = np.concatenate(self.D)
        C = np.concatenate(self.C)
        Q = np.concatenate(self.Q)
        self.P = self.D = self.C = self.Q = []  # free
        # no event lands exactly on an OP-8 window bound (inclusive/exclusive stays moot)
        off = D - self.S[P]
        D = np.where((_IS_VISIT[C] | _IS_CARE[C]) & (off == -60), D - 1, D)
        D = np.where(_IS_VISIT[C] & (off == -28), D - 1, D)
        off = D - self.S[P]
        # truth: OP-8 conservative care (PT/chiro in [S-60, S-1], E&M in [S-60, S-28])
        hit = ((_IS_CARE[C] & (off >= -60) & (off <= -1)) | (_IS_EM[C] & (off >= -60) & (off <= -28)))
        op8 = np.bincount(P[hit], minlength=m) > 0
        # dotted / dotless ICD-10-CM mix, drop anything after the extract end, sort
        C = np.where(rng.random(len(C)) < DOTLESS_P, V_ALT[C], C)
        keep = D <= ctx.end
        P, D, C, Q = P[keep], D[keep], C[keep], Q[keep]
        order = np.lexsort((C, D, pnum[P]))
        P, D, C, Q = P[order], D[order], C[order], Q[order]
        ev = {
            "patient_id": pid.take(pa.array(P)),
            "event_date": D,
            "event_type": _V_TYPE.take(pa.array(C)),
            "code_system": _V_SYS.take(pa.array(C)),
            "code": _V_CODE.take(pa.array(C)),
            "days_supply": pa.array(Q, pa.int32(), mask=Q < 0),
        }
        ev_case = P
        del C, Q, order, keep

        # --- referrals --------------------------------------------------------------------
        rc = np.flatnonzero(self.has_ref)
        rc = rc[np.lexsort((pnum[rc], self.R[rc]))]
        ref_num = self.patient_base + 1 + np.arange(len(rc))
        ref_id = _ids("R", ref_num, ctx.rid_width)
        ref_of_case = np.full(m, -1, np.int64)
        ref_of_case[rc] = np.arange(len(rc))
        slots = []
        for s in self.ref_codes:
            v = s[rc]
            slots.append(np.where((v >= 0) & (rng.random(len(rc)) < DOTLESS_P), V_ALT[np.maximum(v, 0)], v))
        prov_missing = self.no_provider[rc]
        onset_valid = self.doc[rc] & (self.E[rc] >= 0)
        ref = {
            "referral_id": ref_id,
            "patient_id": pid.take(pa.array(rc)),
            "referral_date": self.R[rc],
            "requested_procedure_code": _codes(self.req_proc[rc]),
            "diagnosis_codes": _join_codes(slots),
            "patient_age": self.age[rc],
            "patient_sex": _str_col(self.sex[rc], ("F", "M", "U")),
            "symptom_onset_date": _dates(self.E[rc], onset_valid),
            "referring_provider_id": ctx.providers.ids.take(
                pa.array(self.provider[rc], mask=prov_missing)),
            "referring_specialty": _str_col(np.where(prov_missing, -1, self.spec[rc]), SPECIALTIES),
            "care_setting": _str_col(self.setting[rc], SETTINGS),
            "facility_id": _str_col(self.ref_facility[rc], [f"F{i + 1:02d}" for i in range(12)]),
            "clinical_indication": self._text(rc),
        }

        # --- scans --------------------------------------------------------------------------
        sc_cases = np.flatnonzero(self.is_scan)
        sc_cases = sc_cases[np.lexsort((pnum[sc_cases], self.S[sc_cases]))]
        ns = len(sc_cases)
        scan_id = _ids("S", self.scan_base + 1 + np.arange(ns), ctx.sid_width)
        u = rng.random(ns)
        keep_n = np.where(u < 0.70, 3, np.where(u < 0.95, 1, 0))
        keep_n[self.sc[sc_cases] == NO_IND] = 0
        sslots = []
        for i, s in enumerate(self.ref_codes):
            v = np.where(keep_n > i, s[sc_cases], -1)
            v = np.where((v >= 0) & (rng.random(ns) < DOTLESS_P), V_ALT[np.maximum(v, 0)], v)
            sslots.append(v)
        linked = self.linked[sc_cases]
        rid = ref_id.take(pa.array(np.maximum(ref_of_case[sc_cases], 0), mask=~linked))
        fcat = np.empty(ns, np.int64)
        scs = self.sc[sc_cases]
        uu = rng.random(ns)
        for key, probs in _FINDINGS_P.items():
            mask = np.ones(ns, bool) if key == "default" else (scs == key)
            cum = np.cumsum(np.asarray(probs) / np.sum(probs))
            fcat[mask] = np.minimum((uu[mask, None] >= cum[None, :-1]).sum(axis=1), len(FINDINGS) - 1)
        fcat[rng.random(ns) < 0.03] = -1
        minutes = self.ri(22, 45, ns) + np.where(self.contrast[sc_cases], 12, 0)
        xray = scs == OOS
        minutes = np.where(xray & (self.oos_kind[sc_cases] == 3), self.ri(20, 25, ns), minutes)
        scans = {
            "scan_id": scan_id,
            "patient_id": pid.take(pa.array(sc_cases)),
            "scan_date": self.S[sc_cases].astype(np.int32),
            "procedure_code": _codes(self.proc[sc_cases]),
            "referral_id": rid,
            "diagnosis_codes": _join_codes(sslots),
            "facility_id": _str_col(self.scan_facility[sc_cases], [f"F{i + 1:02d}" for i in range(12)]),
            "findings_category": _str_col(fcat, FINDINGS),
            "scan_minutes": pa.array(np.minimum(minutes, 60), pa.int32()),
        }

        # --- truth ----------------------------------------------------------------------------
        spine = scs != OOS
        ep = _HAS_EPISODE[scs]
        contrast_ok = np.array([s.contrast_expected for s in SCENARIOS])
        truth = {
            "scan_id": scan_id,
            "patient_id": scans["patient_id"],
            "scenario": _str_col(scs, [s.name for s in SCENARIOS]),
            "body_region": _str_col(self.region[sc_cases], REGION_NAMES),
            "expected_category": _str_col(scs, [s.category for s in SCENARIOS]),
            "expected_reason": _str_col(scs, [s.reason for s in SCENARIOS]),
            "episode_start": _dates(self.E[sc_cases], ep),
            "days_since_onset": pa.array(self.d[sc_cases], pa.int32(), mask=~ep),
            "has_op8_conservative_care": pa.array(op8[sc_cases], pa.bool_(), mask=~spine),
            "expected_contrast_review": pa.array(self.contrast[sc_cases] & ~contrast_ok[scs]),
            "expected_safety_review": pa.array(self.pacemaker[sc_cases]),
            "decisive_in_text": pa.array(self.text_only[sc_cases]),
        }
        return (ref, rc, self.R[rc]), (scans, sc_cases, ref_of_case), (ev, ev_case), truth


# --------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------

_FAULT_KINDS = {
    "referrals": ("bad_date", "missing_patient_id", "age_out_of_range", "age_non_numeric"),
    "scans": ("bad_date", "missing_patient_id", "duplicate_scan_id", "scan_before_referral"),
    "clinical_events": ("bad_date", "missing_patient_id"),
}


def _bad_dates(frng, days: np.ndarray) -> pa.Array:
    dates = _dates(days)
    impossible = pc.binary_join_element_wise(pc.strftime(dates, "%Y"), "-02-30", "")
    local = pc.strftime(dates, "%d/%m/%Y")
    return pc.if_else(pa.array(frng.random(len(days)) < 0.5), impossible, local)


def _apply_faults(frng, table: str, cols: dict, case_of_row: np.ndarray, rate: float, extra=None):
    """Inject faults into a chunk table. Returns (cols, day_for_routing, fault rows info).

    Date columns become strings (and ages strings) so a fault fits the column type."""
    date_col = _DATE_COL[table]
    days = np.asarray(cols[date_col]).astype(np.int64)
    n = len(days)
    k = int(frng.binomial(n, rate)) if rate > 0 and n else 0
    rows = np.sort(frng.choice(n, k, replace=False)) if k else np.zeros(0, np.int64)
    kinds_all = _FAULT_KINDS[table]
    # kinds cycle from a random offset, so even a handful of faults shows several kinds
    cyc = (int(frng.integers(0, len(kinds_all))) + np.arange(k)) % len(kinds_all)
    kinds = np.asarray(kinds_all, object)[frng.permutation(cyc)] if k else np.zeros(0, object)
    out = dict(cols)
    route_day = days.copy()
    if table == "scans" and k:
        linked = np.asarray(pc.is_valid(cols["referral_id"]))[rows]
        kinds = np.where((kinds == "scan_before_referral") & ~linked, "bad_date", kinds)
        sbr = rows[kinds == "scan_before_referral"]
        ref_day = extra[sbr]
        days = days.copy()
        days[sbr] = ref_day - frng.integers(1, 21, len(sbr))
        route_day = days.copy()
    if rate > 0:
        dstr = _dates(days).cast(pa.string())
        bad = rows[kinds == "bad_date"]
        if len(bad):
            mask = np.zeros(n, bool)
            mask[bad] = True
            dstr = pc.replace_with_mask(dstr, pa.array(mask), _bad_dates(frng, days[bad]))
        out[date_col] = dstr
    else:
        out[date_col] = _dates(days)
    miss = rows[kinds == "missing_patient_id"]
    orig_pid = cols["patient_id"]
    if len(miss):
        mask = np.zeros(n, bool)
        mask[miss] = True
        out["patient_id"] = pc.if_else(pa.array(mask), pa.scalar(None, pa.string()), cols["patient_id"])
    if table == "referrals":
        age = np.asarray(cols["patient_age"])
        if rate > 0:
            astr = pa.array(age).cast(pa.string())
            oor = kinds == "age_out_of_range"
            nn = kinds == "age_non_numeric"
            bad_age = np.where(oor, np.array(["-3", "130", "150", "-1"], object)[frng.integers(0, 4, k)],
                               np.array(["forty", "unk", "4O"], object)[frng.integers(0, 3, k)])
            sel = oor | nn
            if sel.any():
                mask = np.zeros(n, bool)
                mask[rows[sel]] = True
                astr = pc.replace_with_mask(astr, pa.array(mask), pa.array(list(bad_age[sel]), pa.string()))
            out["patient_age"] = astr
        else:
            out["patient_age"] = pa.array(age, pa.int32())
    # duplicates: repeat the row right after the original; the copy is the faulted row
    take = np.arange(n)
    fault_rows, fault_kinds, src_rows = rows, kinds, rows
    if table == "scans" and k:
        dup = rows[kinds == "duplicate_scan_id"]
        if len(dup):
            take = np.sort(np.concatenate([np.arange(n), dup]), kind="stable")
            new_pos = np.arange(n) + np.searchsorted(dup, np.arange(n), side="left")
            copy_pos = new_pos[dup] + 1
            fault_rows = np.where(kinds == "duplicate_scan_id", 0, new_pos[rows])
            fault_rows[kinds == "duplicate_scan_id"] = copy_pos
            o = np.argsort(fault_rows, kind="stable")
            fault_rows, fault_kinds, src_rows = fault_rows[o], kinds[o], rows[o]
            tk = pa.array(take)
            out = {c: (v.take(tk) if isinstance(v, (pa.Array, pa.ChunkedArray)) else np.asarray(v)[take])
                   for c, v in out.items()}
            orig_pid = orig_pid.take(tk)
            route_day = route_day[take]
            case_of_row = case_of_row[take]
    return out, route_day, (fault_rows, fault_kinds, src_rows, orig_pid), case_of_row


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------


def _csv_bytes(table: pa.Table) -> pa.Buffer:
    """Render rows as CSV with minimal quoting (only values holding , " or a line break)."""
    cols = []
    for col in table.columns:
        col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        s = col if pa.types.is_string(col.type) else pc.cast(col, pa.string())
        needs = pc.or_(pc.or_(pc.match_substring(s, ","), pc.match_substring(s, '"')),
                       pc.match_substring(s, "\n"))
        if pc.any(needs).as_py():
            quoted = pc.binary_join_element_wise('"', pc.replace_substring(s, '"', '""'), '"', "")
            s = pc.if_else(needs, quoted, s)
        cols.append(pc.fill_null(s, "").cast(pa.large_string()))
    empty = pa.scalar("", pa.large_string())
    line = pc.binary_join_element_wise(*cols, pa.scalar(",", pa.large_string()))
    line = pc.binary_join_element_wise(line, empty, pa.scalar("\n", pa.large_string()))  # line + "\n"
    if isinstance(line, pa.ChunkedArray):
        line = line.combine_chunks()
    if len(line) == 0:
        return pa.py_buffer(b"")
    offsets = np.frombuffer(line.buffers()[1], dtype=np.int64)[line.offset: line.offset + len(line) + 1]
    return line.buffers()[2][offsets[0]: offsets[-1]]


class _Sink:
    """One output file; rows may be appended over several chunks."""

    def __init__(self, path: Path, fmt: str, schema: pa.Schema) -> None:
        self.path, self.fmt, self.schema, self.rows = path, fmt, schema, 0
        if fmt == "csv":
            self._fh = open(path, "wb")
            self._fh.write((",".join(schema.names) + "\n").encode())
        else:
            self._pw = pq.ParquetWriter(path, schema, compression="zstd")

    def write(self, table: pa.Table) -> int:
        start = self.rows
        if table.num_rows:
            table = table.cast(self.schema)
            if self.fmt == "csv":
                self._fh.write(_csv_bytes(table))
            else:
                self._pw.write_table(table)
        self.rows += table.num_rows
        return start

    def close(self) -> None:
        if self.fmt == "csv":
            self._fh.close()
        else:
            self._pw.close()


def _to_table(cols: dict, schema: pa.Schema) -> pa.Table:
    arrays = []
    for f in schema:
        v = cols[f.name]
        if isinstance(v, np.ndarray):
            v = _dates(v) if pa.types.is_date32(f.type) else pa.array(v, f.type)
        if isinstance(v, pa.ChunkedArray):
            v = v.combine_chunks()
        arrays.append(v.cast(f.type) if v.type != f.type else v)
    return pa.Table.from_arrays(arrays, schema=schema)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def generate(out_dir, n_scans: int, seed: int = 42, fmt: str = "csv",
             truth_dir=None,
             start_date="2024-01-01", end_date="2025-12-31",
             chunk_size: int = 250_000,
             fault_rate: float = 0.0,
             drop_days: int = 0,
             ) -> dict:
    """Generate ``n_scans`` scans with referrals and clinical history into ``out_dir``.

    Returns a summary: rows written per table, files written, truth files, faults, seconds.
    """
    t0 = time.perf_counter()
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', not {fmt!r}")
    n_scans, chunk_size, drop_days = int(n_scans), int(chunk_size), int(drop_days)
    if n_scans < 1 or chunk_size < 1 or drop_days < 0:
        raise ValueError("n_scans and chunk_size must be >= 1 and drop_days >= 0")
    if not 0.0 <= float(fault_rate) < 1.0:
        raise ValueError("fault_rate must be in [0, 1)")
    start, end = _to_day(start_date), _to_day(end_date)
    if end < start:
        raise ValueError("end_date is before start_date")
    if drop_days > end - start + 1:
        raise ValueError("drop_days is longer than the date range")
    out_dir = Path(out_dir)
    truth_dir = out_dir / "truth" if truth_dir is None else Path(truth_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    for p in out_dir.iterdir():
        if p.is_file() and _OWNED.match(p.name):
            p.unlink()
    for name in ("scan_truth.csv", "scan_truth.parquet", "faults.csv", "providers.csv"):
        (truth_dir / name).unlink(missing_ok=True)

    sizes = [chunk_size] * (n_scans // chunk_size) + ([n_scans % chunk_size] if n_scans % chunk_size else [])
    n_chunks = len(sizes)
    unscanned = [int(round(s * UNSCANNED_REFERRAL_SHARE)) for s in sizes]
    total_patients = sum(sizes) + sum(unscanned)
    faults_on = float(fault_rate) > 0
    ctx = _Ctx(seed=int(seed), start=start, end=end, fault_rate=float(fault_rate),
               providers=_make_providers(int(seed), n_scans),
               pid_width=max(8, len(str(total_patients))), sid_width=max(8, len(str(n_scans))),
               rid_width=max(8, len(str(total_patients))),
               w_out=_day_weights(start, end, _WEEKDAY_OUT), w_flat=_day_weights(start, end, _WEEKDAY_FLAT))
    ext = fmt
    schemas = {t: _schema(t, faults_on) for t in TABLES}
    first_drop = end - drop_days + 1
    drop_sinks: dict[tuple[str, int], _Sink] = {}
    files: list[str] = []
    for t in TABLES:
        for day in range(first_drop, end + 1):
            name = f"{t}_{np.datetime64(day, 'D')}.{ext}"
            drop_sinks[(t, day)] = _Sink(out_dir / name, fmt, schemas[t])
    truth_sink = _Sink(truth_dir / f"scan_truth.{ext}", fmt, _schema("truth", False))
    fault_sink = _Sink(truth_dir / "faults.csv", "csv", FAULTS_SCHEMA)
    rows = {t: 0 for t in TABLES}
    n_faults = 0
    part_width = max(4, len(str(n_chunks)))

    patient_base = scan_base = 0
    for ci, n in enumerate(sizes):
        chunk = _Chunk(ctx, ci, n, patient_base, scan_base)
        (ref, rc, ref_days), (scans, sc_cases, ref_of_case), (ev, ev_case), truth = chunk.build()
        patient_base += n + unscanned[ci]
        scan_base += n
        frng = chunk.frng
        scan_ref_day = ref_days[np.maximum(ref_of_case[sc_cases], 0)]
        prepared = {
            "referrals": _apply_faults(frng, "referrals", ref, rc, ctx.fault_rate),
            "scans": _apply_faults(frng, "scans", scans, sc_cases, ctx.fault_rate, scan_ref_day),
            "clinical_events": _apply_faults(frng, "clinical_events", ev, ev_case, ctx.fault_rate),
        }
        del ref, scans, ev
        case_faults: list[tuple[np.ndarray, str]] = []
        suffix = "" if n_chunks == 1 else f".part{ci + 1:0{part_width}d}"
        for t in TABLES:
            cols, route_day, (frows, fkinds, _src, orig_pid), case_of_row = prepared[t]
            tbl = _to_table(cols, schemas[t])
            prepared[t] = None
            dest = np.where(route_day >= first_drop, route_day - first_drop + 1, 0) if drop_days else \
                np.zeros(len(route_day), np.int64)
            main_name = f"{t}{suffix}.{ext}"
            main = _Sink(out_dir / main_name, fmt, schemas[t])
            files.append(main_name)
            fault_file = np.empty(len(frows), object)
            fault_row = np.zeros(len(frows), np.int64)
            for v in np.unique(np.concatenate([[0], dest])):
                idx = np.flatnonzero(dest == v)
                sink = main if v == 0 else drop_sinks[(t, first_drop + int(v) - 1)]
                base = sink.write(tbl.take(pa.array(idx)) if len(idx) != len(dest) else tbl)
                fm = dest[frows] == v
                fault_file[fm] = sink.path.name
                fault_row[fm] = base + np.searchsorted(idx, frows[fm]) + 1
            main.close()
            rows[t] += tbl.num_rows
            if len(frows):
                n_faults += len(frows)
                if t == "clinical_events":
                    parts = [orig_pid.take(pa.array(frows)), _dates(np.asarray(route_day)[frows]).cast(pa.string()),
                             tbl.column("code").combine_chunks().take(pa.array(frows))]
                    fid = pc.binary_join_element_wise(*parts, "|")
                else:
                    fid = tbl.column("referral_id" if t == "referrals" else "scan_id").combine_chunks().take(
                        pa.array(frows))
                fault_sink.write(pa.table({
                    "table": pa.array([t] * len(frows), pa.string()), "id": fid,
                    "patient_id": orig_pid.take(pa.array(frows)),
                    "fault": pa.array(list(fkinds), pa.string()),
                    "file": pa.array(list(fault_file), pa.string()), "row": pa.array(fault_row, pa.int64())},
                    schema=FAULTS_SCHEMA))
                for kind in np.unique(fkinds):
                    case_faults.append((case_of_row[frows[fkinds == kind]], f"{t}:{kind}"))
            del tbl
        # truth: mark scans whose own rows, referral or history rows were faulted
        labels = []
        for cases, label in sorted(case_faults, key=lambda x: x[1]):
            has = np.zeros(chunk.m, bool)
            has[cases] = True
            labels.append(pa.array(np.where(has[sc_cases], label, None), pa.string()))
        if labels:
            truth["fault"] = _join_skip(labels, ";")
        else:
            truth["fault"] = pa.nulls(len(sc_cases), pa.string())
        truth_sink.write(_to_table(truth, truth_sink.schema))
        del chunk, truth, prepared

    for (t, day), sink in drop_sinks.items():
        sink.close()
        files.append(sink.path.name)
    truth_sink.close()
    fault_sink.close()
    prov = ctx.providers
    psink = _Sink(truth_dir / "providers.csv", "csv", PROVIDER_SCHEMA)
    psink.write(pa.table({"provider_id": prov.ids, "specialty": _str_col(prov.specialty, SPECIALTIES),
                          "home_facility": _str_col(prov.facility, [f"F{i + 1:02d}" for i in range(12)]),
                          "outlier": pa.array(prov.outlier)}, schema=PROVIDER_SCHEMA))
    psink.close()
    return {
        "out_dir": str(out_dir), "truth_dir": str(truth_dir), "format": fmt, "seed": int(seed),
        "n_scans": n_scans, "chunks": n_chunks, "rows": rows, "files": sorted(files),
        "truth_files": sorted([truth_sink.path.name, "faults.csv", "providers.csv"]),
        "faults": n_faults, "seconds": round(time.perf_counter() - t0, 3),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m data_samples.generate", description=__doc__.split("\n")[0])
    ap.add_argument("--scans", type=int, required=True, help="number of scans to generate")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", required=True, help="output directory (the pipeline's input directory)")
    ap.add_argument("--truth", default=None, help="truth directory (default: OUT/truth)")
    ap.add_argument("--format", choices=("csv", "parquet"), default="csv")
    ap.add_argument("--start-date", default="2024-01-01")
    ap.add_argument("--end-date", default="2025-12-31")
    ap.add_argument("--chunk-size", type=int, default=250_000)
    ap.add_argument("--fault-rate", type=float, default=0.0)
    ap.add_argument("--drop-days", type=int, default=0)
    a = ap.parse_args(argv)
    try:
        s = generate(a.out, a.scans, seed=a.seed, fmt=a.format, truth_dir=a.truth, start_date=a.start_date,
                     end_date=a.end_date, chunk_size=a.chunk_size, fault_rate=a.fault_rate, drop_days=a.drop_days)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    r = s["rows"]
    print(f"wrote {r['scans']} scans, {r['referrals']} referrals, {r['clinical_events']} clinical_events "
          f"({s['format']}, {len(s['files'])} files, {s['chunks']} chunk(s), {s['faults']} faulted rows) "
          f"to {s['out_dir']}, truth in {s['truth_dir']}, in {s['seconds']:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
