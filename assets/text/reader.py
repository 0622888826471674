"""Reading the free-text reason for exam: findings with their ConText status, conservative care with its
duration, and symptom duration or onset, from the lexicon in guidelines/text/lexicon.yaml.

medspaCy does the reading: PyRuSH splits sentences, the TargetMatcher finds the lexicon's phrases and duration
patterns, ConText marks each finding negated, hypothetical (rule-out), uncertain, family or historical within its
sentence. This module only turns the lexicon into medspaCy rules and a parsed document into rows; it holds no
clinical phrases of its own. Texts reach it already masked by the identifier guard (assets/ingest/identifiers.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

LEXICON_PATH = Path(__file__).resolve().parents[2] / "guidelines" / "text" / "lexicon.yaml"

# ConText categories -> the status a finding row carries; the first that applies wins (a negated family
# mention is negated).
STATUS_OF_CATEGORY = {
    "NEGATED_EXISTENCE": "negated",
    "FAMILY": "family",
    "HYPOTHETICAL": "hypothetical",
    "POSSIBLE_EXISTENCE": "uncertain",
    "HISTORICAL": "historical",
}
STATUSES = ("affirmed", *STATUS_OF_CATEGORY.values())
DURATION, ONSET, SYMPTOM = "DURATION", "ONSET", "SYMPTOM"
CARE_PREFIX = "CARE:"
# Concepts whose mention is a symptom: a duration after one is the symptom's duration.
SYMPTOM_CONCEPTS = {"neurological_symptoms", "motor_deficit", "cauda_equina", "disc_herniation"}


@dataclass(frozen=True)
class Target:
    concept: str
    history_counts: bool
    phrases: tuple[str, ...]
    source: str = ""
    negated_phrases: tuple[str, ...] = ()  # words that are a negated mention by themselves ("afebrile")
    default_status: str = "affirmed"  # the status of a mention no cue qualifies (an operation: historical)


@dataclass(frozen=True)
class Lexicon:
    name: str
    version: str
    targets: dict
    care: dict
    durations: dict
    modifiers: tuple
    path: Path = field(default=LEXICON_PATH)

    def counts(self, concept: str, status: str) -> bool:
        """Whether a mention with `status` makes the concept's feature true (before the rule-set switch)."""
        target = self.targets.get(concept)
        if target is None:
            return False
        return status == "affirmed" or (status == "historical" and target.history_counts)


def load_lexicon(path: Path | None = None) -> Lexicon:
    """Read and check the lexicon; ValueError with the file and the problem when it is malformed."""
    import yaml

    path = Path(path or LEXICON_PATH)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read the lexicon ({exc})") from None
    for key in ("name", "version", "targets", "care", "durations", "modifiers"):
        if key not in data:
            raise ValueError(f"{path}: missing {key!r}")
    targets = {}
    for concept, spec in data["targets"].items():
        phrases = tuple(str(p) for p in spec.get("phrases") or ())
        if not phrases or "history_counts" not in spec:
            raise ValueError(f"{path}: target {concept!r} needs phrases and history_counts")
        targets[concept] = Target(concept, bool(spec["history_counts"]), phrases, str(spec.get("source", "")),
                                  tuple(str(p) for p in spec.get("negated_phrases") or ()),
                                  str(spec.get("default_status", "affirmed")))
    valid = set(STATUS_OF_CATEGORY) | {"TERMINATE", "PSEUDO", "LIST_BREAK"}
    for i, m in enumerate(data["modifiers"], start=1):
        if m.get("category") not in valid or not m.get("literals"):
            raise ValueError(f"{path}: modifier {i} needs a category ({', '.join(sorted(valid))}) and literals")
    return Lexicon(str(data["name"]), str(data["version"]), targets,
                   {k: tuple(str(p) for p in v) for k, v in data["care"].items()}, data["durations"],
                   tuple(data["modifiers"]), path)


# --- the medspaCy pipeline -----------------------------------------------------------------------------------

def _phrase_pattern(phrase: str, nlp) -> list[dict]:
    """Token pattern for a lexicon phrase: lower-case match, or exact case when the phrase has capitals."""
    key = "TEXT" if phrase != phrase.lower() else "LOWER"
    words = [t.text if key == "TEXT" else t.lower_ for t in nlp.make_doc(phrase)]
    return [{key: w} for w in words]


def _duration_patterns(durations: dict) -> list[list[dict]]:
    units = sorted({u for names in durations["units"].values() for u in names})
    joined = "|".join(re.escape(u) for u in sorted(units, key=len, reverse=True))
    glued = {"TEXT": {"REGEX": rf"(?i)^x?\d+(?:\.\d+)?(?:{joined})\.?$"}}  # 6wks, x10d
    number = {"LIKE_NUM": True}
    unit = {"LOWER": {"IN": units}}
    return [
        [number, unit], [number, {"TEXT": "-"}, unit], [{"LOWER": {"IN": ["x", "X"]}}, number, unit],
        [{"TEXT": {"REGEX": r"(?i)^x\d+$"}}, unit], [glued],
        [{"LOWER": {"IN": ["a", "an"]}}, {"LOWER": {"IN": ["day", "week", "month", "year"]}}],
        [{"LOWER": {"IN": ["a", "an"]}}, {"LOWER": "couple"}, {"LOWER": "of"}, unit],
    ]


def _onset_patterns(durations: dict) -> list[list[dict]]:
    months = list(durations["months"])
    return [
        [{"LOWER": "since"}, {"LOWER": {"IN": months}}],
        [{"LOWER": "since"}, {"LOWER": "last"}, {"LOWER": {"IN": ["week", "month", "year", "weekend"]}}],
        [{"LOWER": "since"}, {"LOWER": {"IN": ["yesterday"]}}],
        [{"LOWER": {"IN": ["onset", "began", "started"]}}, {"LOWER": "in"}, {"LOWER": {"IN": months}}],
    ]


@lru_cache(maxsize=2)
def _pipeline(path: str, version: str):
    """The medspaCy pipeline for one lexicon file (built once per process: a few hundred milliseconds)."""
    import logging

    import spacy
    from loguru import logger as loguru_logger

    loguru_logger.disable("PyRuSH")  # PyRuSH logs every sentence decision at DEBUG through loguru
    logging.getLogger("PyRuSH").setLevel(logging.WARNING)
    import medspacy  # noqa: F401 - registers the medspacy_* factories
    from medspacy.context import ConTextRule
    from medspacy.target_matcher import TargetRule

    lex = load_lexicon(Path(path))
    nlp = spacy.blank("en")
    nlp.add_pipe("medspacy_pyrush")
    matcher = nlp.add_pipe("medspacy_target_matcher")
    rules = []
    for concept, target in lex.targets.items():
        rules += [TargetRule(p, concept, pattern=_phrase_pattern(p, nlp)) for p in target.phrases]
        rules += [TargetRule(p, concept, pattern=_phrase_pattern(p, nlp), metadata={"negated": True})
                  for p in target.negated_phrases]
    for kind, phrases in lex.care.items():
        rules += [TargetRule(p, CARE_PREFIX + kind, pattern=_phrase_pattern(p, nlp)) for p in phrases]
    rules += [TargetRule("duration", DURATION, pattern=p) for p in _duration_patterns(lex.durations)]
    rules += [TargetRule("onset", ONSET, pattern=p) for p in _onset_patterns(lex.durations)]
    rules += [TargetRule(p, SYMPTOM, pattern=_phrase_pattern(p, nlp)) for p in lex.durations["symptoms"]]
    matcher.add(rules)
    context = nlp.add_pipe("medspacy_context", config={"rules": None, "prune_on_target_overlap": True})
    modifiers = []
    for m in lex.modifiers:
        for literal in m["literals"]:
            modifiers.append(ConTextRule(str(literal), m["category"], direction=m["direction"],
                                         pattern=_phrase_pattern(str(literal), nlp), max_scope=m.get("max_scope"),
                                         terminated_by=set(m.get("terminated_by") or ()) or None,
                                         allowed_types=set(m.get("allowed_types") or ()) or None))
    context.add(modifiers)
    first_words = set()
    for r in rules:
        if r.pattern and isinstance(r.pattern, list):
            first = r.pattern[0]
            for key in ("LOWER", "TEXT"):
                if isinstance(first.get(key), str):
                    first_words.add(first[key].lower())
    return nlp, lex, frozenset(first_words)


def pipeline(lexicon_path: Path | None = None):
    """(nlp, lexicon, words that can start a match) for the lexicon at `lexicon_path`."""
    path = Path(lexicon_path or LEXICON_PATH)
    return _pipeline(str(path), load_lexicon(path).version)


_WORD = re.compile(r"[a-z0-9]+|[^\sa-z0-9]", re.IGNORECASE)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def may_match(text: str, first_words: frozenset) -> bool:
    """Cheap pre-filter: False when no word of the text can start any lexicon match (nothing to parse)."""
    return any(w.lower() in first_words for w in _WORD.findall(text)) or bool(re.search(r"\d", text))


def _duration_days(span_text: str, durations: dict) -> int | None:
    """'6 wks' -> 42, 'x10 days' -> 10, 'three months' -> 90, 'a week' -> 7; None when no number is given."""
    text = span_text.lower()
    unit_days = None
    words = re.findall(r"[a-z]+", text.replace("x", " ", 1) if text.startswith("x") else text)
    for unit, names in durations["units"].items():
        if any(w in names for w in words) or re.search(rf"\d(?:{'|'.join(map(re.escape, names))})\.?$", text):
            unit_days = durations["days_per_unit"][unit]
            # the longest unit name decides ("mo" is month, "m" after a number too)
    if unit_days is None:
        return None
    number = _NUMBER.search(text)
    if number:
        value = float(number.group())
    else:
        value = next((durations["words"].get(w) for w in words if w in durations["words"]), None)
        if value is None:
            return None
    return int(round(value * unit_days))


def read(doc, lex: Lexicon) -> list[dict]:
    """The rows of one parsed text: findings, care, symptom duration and onset (see `parse_texts`)."""
    rows: list[dict] = []
    ents = list(doc.ents)
    durations = lex.durations
    symptom_days = None
    for sent in doc.sents:
        in_sent = [e for e in ents if e.start >= sent.start and e.end <= sent.end]
        for e in in_sent:
            if e.label_ in (DURATION, ONSET, SYMPTOM):
                continue
            cue = next((m for c in STATUS_OF_CATEGORY for m in e._.modifiers if m.category == c), None)
            target = lex.targets.get(e.label_)
            status = (STATUS_OF_CATEGORY[cue.category] if cue is not None
                      else target.default_status if target is not None else "affirmed")
            if (e._.target_rule.metadata or {}).get("negated"):
                status, cue = "negated", None  # "afebrile": a negated mention in one word
            kind = "care" if e.label_.startswith(CARE_PREFIX) else "finding"
            concept = e.label_.removeprefix(CARE_PREFIX)
            quote = e.text
            if cue is not None:  # the words a clinician reads: "no fever", "h/o breast ca"
                cue_span = doc[cue.modifier_span[0]:cue.modifier_span[1]]
                start, end = min(cue_span.start_char, e.start_char), max(cue_span.end_char, e.end_char)
                quote = doc.text[start:end] if end - start <= 60 else f"{cue_span.text} ... {e.text}"
            rows.append({"kind": kind, "concept": concept, "phrase": e.text, "quote": quote,
                         "span_start": e.start_char, "span_end": e.end_char, "status": status, "days": None,
                         "days_ago": None, "onset_month": None, "_ent": e})
        for e in in_sent:
            if e.label_ == ONSET:
                month = e[-1].lower_ if e[1].lower_ not in ("last", "yesterday") else None
                back = {"week": 7, "weekend": 7, "month": 30, "year": 365}.get(e[-1].lower_, 1 if e[-1].lower_ == "yesterday" else None)
                rows.append({"kind": "onset", "concept": "symptom_onset", "phrase": e.text, "quote": e.text,
                             "span_start": e.start_char,
                             "span_end": e.end_char, "status": "affirmed", "days": back, "days_ago": None,
                             "onset_month": _month_number(month, durations) if month else None, "_ent": e})
                continue
            if e.label_ != DURATION:
                continue
            days = _duration_days(e.text, durations)
            following = doc[e.end].lower_ if e.end < len(doc) else ""
            if days is None or following in ("old", "/", "-", "o", "yo", "y/o"):
                continue  # "70 year old", "45 y/o": an age, not a duration
            ago = e.end < len(doc) and doc[e.end].lower_ == "ago"
            before = [r for r in rows if "_ent" in r and r["_ent"].end <= e.start and r["_ent"].sent == sent
                      and r["kind"] in ("finding", "care")]
            symptoms_before = [x for x in in_sent if x.label_ == SYMPTOM and x.end <= e.start]
            after = [r for r in rows if "_ent" in r and r["_ent"].start >= e.end and r["_ent"].sent == sent
                     and r["kind"] in ("finding", "care")]
            nearest = max(before, key=lambda r: r["_ent"].end) if before else None
            if symptoms_before and (nearest is None or symptoms_before[-1].end > nearest["_ent"].end):
                nearest = None  # "LBP x 10 wks": the duration is the symptom's
            elif nearest is None and after and after[0]["kind"] == "care":
                nearest = after[0]  # "6 weeks of PT"
            if nearest is not None and nearest["kind"] == "care" and not ago:
                if nearest["days"] is None:
                    nearest["days"] = days
            elif nearest is not None and nearest["kind"] == "finding" and ago:
                nearest["days_ago"] = days  # "fall 3 weeks ago"
            elif nearest is not None and nearest["kind"] == "finding" and nearest["concept"] not in SYMPTOM_CONCEPTS:
                pass  # "on prednisone for 2 years": the finding's own duration, not the back pain's
            elif symptom_days is None:
                symptom_days = days
                rows.append({"kind": "symptom_duration", "concept": "symptom_duration", "phrase": e.text,
                             "quote": e.text, "span_start": e.start_char, "span_end": e.end_char, "status": "affirmed", "days": days,
                             "days_ago": None, "onset_month": None})
    for r in rows:
        r.pop("_ent", None)
    return rows


def _month_number(word: str, durations: dict) -> int | None:
    months = list(durations["months"])
    if word not in months:
        return None
    i = months.index(word)
    return i + 1 if i < 12 else [1, 2, 3, 4, 6, 7, 8, 9, 9, 10, 11, 12][i - 12]


def parse_texts(texts: list[str], lexicon_path: Path | None = None, batch_size: int = 256) -> list[list[dict]]:
    """Rows for each text, in order. Each row: kind (finding, care, symptom_duration, onset), concept (a lexicon
    concept, a care kind, symptom_duration or symptom_onset), phrase (the words matched, as written), span_start
    and span_end (character offsets), status (affirmed, negated, hypothetical, uncertain, family, historical),
    days (care or symptom duration, or how far back an onset lies), days_ago (a finding dated by "... ago"),
    onset_month (1-12 for "since March"). Texts with no word that can start a match are not parsed."""
    nlp, lex, first_words = pipeline(lexicon_path)
    out: list[list[dict]] = [[] for _ in texts]
    todo = [i for i, t in enumerate(texts) if t and may_match(t, first_words)]
    for i, doc in zip(todo, nlp.pipe((texts[i] for i in todo), batch_size=batch_size)):
        out[i] = read(doc, lex)
    return out
