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
# Categories that only end other cues' scope (terminated_by): a comma, and words that turn a history into the
# present ("hx renal transplant on tacrolimus": the drug is current), words that give a rule-out's reason
# ("r/o fracture after trauma": the trauma is not ruled out).
BREAK_CATEGORIES = ("LIST_BREAK", "CURRENT_BREAK", "REASON_BREAK", "HEADING_BREAK")
DURATION, ONSET, SYMPTOM, NOT_A_FINDING = "DURATION", "ONSET", "SYMPTOM", "NOT_A_FINDING"
CARE_PREFIX = "CARE:"
# Concepts whose mention is a symptom: a duration after one is the symptom's duration.
SYMPTOM_CONCEPTS = {"neurological_symptoms", "motor_deficit", "cauda_equina", "disc_herniation", "fever"}
# Concepts that are an event which starts an episode: "MVC 6 wks ago", "fall 3 days ago" date the pain.
EVENT_CONCEPTS = {"spinal_trauma"}
ONSET_WORDS = {"onset", "started", "began", "starting", "since", "beginning", "until", "developed"}
# Words after a current cue that leave a history a history ("hx IVDA, last use unclear").
DOUBT_WORDS = {"unclear", "unknown", "uncertain", "?"}
# Words that join care items into one list a duration applies to ("PT and NSAIDs x 8 weeks").
CARE_JOINERS = {"and", "or", "&", "/", ",", "+", "plus", "w/", "with"}


@dataclass(frozen=True)
class Target:
    concept: str
    history_counts: bool
    phrases: tuple[str, ...]
    source: str = ""
    negated_phrases: tuple[str, ...] = ()  # words that are a negated mention by themselves ("afebrile")
    present_phrases: tuple[str, ...] = ()  # phrases affirmed when no cue qualifies them ("hardware")
    patterns: tuple = ()  # spaCy token patterns for word orders a phrase list cannot spell ("reflexes absent")
    default_status: str = "affirmed"  # the status of a mention no cue qualifies (an operation: historical)
    historical_after_days: int | None = None  # a mention dated at least this long ago is historical
    # phrases that grade a mention named just before them ("weakness R hip flexion 4/5"): part of that mention,
    # a mention by themselves otherwise ("4/5 dorsiflexion")
    qualifier_phrases: tuple[str, ...] = ()
    # words right after a historical mention that make it current ("hx breast ca on tamoxifen", "hx IVDU (last
    # use 2 days ago)"), unless it is dated at least historical_after_days back
    current_cues: tuple[str, ...] = ()
    # a mention of the concept in parentheses right after another only details it ("chronic steroids (prednisone
    # 20 mg x 2 yrs)"): one mention
    details_in_parentheses: bool = False


@dataclass(frozen=True)
class Lexicon:
    name: str
    version: str
    targets: dict
    care: dict
    durations: dict
    modifiers: tuple
    path: Path = field(default=LEXICON_PATH)
    measurements: dict = field(default_factory=dict)  # concept -> {words, celsius_at_least}: "T 38.6" is fever
    not_findings: tuple = ()  # phrases that hide a target word inside them ("radiation therapy")

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
        phrases = tuple(str(p) for p in spec.get("phrases") or ()) + tuple(
            f"{before} {after}" for combo in spec.get("phrase_combinations") or ()
            for before in combo["before"] for after in combo["after"])
        if not phrases or "history_counts" not in spec:
            raise ValueError(f"{path}: target {concept!r} needs phrases and history_counts")
        targets[concept] = Target(concept, bool(spec["history_counts"]), phrases, str(spec.get("source", "")),
                                  tuple(str(p) for p in spec.get("negated_phrases") or ()),
                                  tuple(str(p) for p in spec.get("present_phrases") or ()),
                                  tuple(spec.get("patterns") or ()),
                                  str(spec.get("default_status", "affirmed")),
                                  spec.get("historical_after_days"),
                                  tuple(str(p) for p in spec.get("qualifier_phrases") or ()),
                                  tuple(str(p).lower() for p in spec.get("current_cues") or ()),
                                  bool(spec.get("details_in_parentheses", False)))
    valid = set(STATUS_OF_CATEGORY) | set(BREAK_CATEGORIES) | {"TERMINATE", "PSEUDO", NOT_A_FINDING}
    for i, m in enumerate(data["modifiers"], start=1):
        if m.get("category") not in valid or not (m.get("literals") or m.get("patterns")):
            raise ValueError(f"{path}: modifier {i} needs a category ({', '.join(sorted(valid))}) and literals "
                             "or patterns")
    measurements = data.get("measurements") or {}
    for concept, spec in measurements.items():
        if concept not in targets or not spec.get("words") or "celsius_at_least" not in spec:
            raise ValueError(f"{path}: measurement {concept!r} needs a target, words and celsius_at_least")
    return Lexicon(str(data["name"]), str(data["version"]), targets,
                   {k: tuple(str(p) for p in v) for k, v in data["care"].items()}, data["durations"],
                   tuple(data["modifiers"]), path, measurements,
                   tuple(str(p) for p in data.get("not_findings") or ()))


# --- the medspaCy pipeline -----------------------------------------------------------------------------------

def _plural(word: str) -> str:
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + ("es" if word.endswith(("x", "ch", "sh")) else "s")


def _phrase_pattern(phrase: str, nlp, plural: bool = False) -> list[dict]:
    """Token pattern for a lexicon phrase: lower-case match, or exact case when the phrase has capitals. With
    `plural`, a last word of four or more letters also matches its plural ("surgeries", "injuries")."""
    key = "TEXT" if phrase != phrase.lower() else "LOWER"
    words = [t.text if key == "TEXT" else t.lower_ for t in nlp.make_doc(phrase)]
    pattern = [{key: w} for w in words]
    last = words[-1]
    if plural and key == "LOWER" and last.isalpha() and len(last) >= 4 and not last.endswith("s"):
        pattern[-1] = {"LOWER": {"IN": [last, _plural(last)]}}
    return pattern


def _duration_patterns(durations: dict) -> list[list[dict]]:
    units = sorted({u for names in durations["units"].values() for u in names})
    joined = "|".join(re.escape(u) for u in sorted(units, key=len, reverse=True))
    longer = "|".join(re.escape(u) for u in sorted(units, key=len, reverse=True) if len(u) > 1 or u == "d")
    # 6wks, 10d, x10d, x6w; not "65M" or "70F" (age and sex)
    glued = {"TEXT": {"REGEX": rf"(?i)^(?:x\d+(?:\.\d+)?(?:{joined})|\d+(?:\.\d+)?(?:{longer}))\.?$"}}
    number = {"LIKE_NUM": True}
    unit = {"LOWER": {"IN": units}}
    # after a bare number a one-letter unit is an age and sex ("70M", "65 F"), except days ("10 d")
    word_unit = {"LOWER": {"IN": [u for u in units if len(u) > 1 or u == "d"]}}
    return [
        [number, word_unit], [number, {"TEXT": "-"}, word_unit],
        [number, {"TEXT": {"IN": ["-", "to", "or"]}}, number, word_unit], [{"LOWER": {"IN": ["x", "X"]}}, number, unit],
        [{"TEXT": {"REGEX": r"(?i)^x\d+$"}}, unit], [glued],
        [{"LOWER": {"IN": ["a", "an"]}}, {"LOWER": {"IN": ["day", "week", "month", "year", "fortnight"]}}],
        [{"LOWER": {"IN": ["a", "an"]}}, {"LOWER": "couple"}, {"LOWER": "of"}, unit],
        # British and Australian notation: "6/52" six weeks, "3/12" three months, "2/7" two days
        [{"TEXT": {"REGEX": _fraction_regex(durations)}}],
    ]


def _fraction_regex(durations: dict) -> str:
    return r"^\d{1,2}/(?:" + "|".join(map(re.escape, durations.get("fractions", {}))) + r")$"


def _onset_patterns(durations: dict) -> list[list[dict]]:
    months = list(durations["months"])
    return [
        [{"LOWER": "since"}, {"LOWER": {"IN": months}}],
        [{"LOWER": "since"}, {"LOWER": "last"}, {"LOWER": {"IN": ["week", "month", "year", "weekend"]}}],
        [{"LOWER": "since"}, {"LOWER": {"IN": ["yesterday"]}}],
        [{"LOWER": {"IN": ["onset", "began", "started"]}}, {"LOWER": "in"}, {"LOWER": {"IN": months}}],
    ]


_READING = re.compile(r"(?i)^(\d{2,3}(?:\.\d)?)(?:°?[cf])?$")


def _measurement_patterns(words: list[str], nlp) -> list[list[dict]]:
    """'T 38.6', 'Tmax 101.2F', 'temp: 39': a label word, an optional ':' or 'of', then a reading."""
    reading = {"TEXT": {"REGEX": _READING.pattern}}
    patterns = []
    for w in words:
        label = [{"LOWER": t.lower_} for t in nlp.make_doc(str(w))]
        patterns.append(label + [{"TEXT": {"IN": [":", "of", "="]}, "OP": "?"}, reading])
    return patterns


def _reading_counts(span, spec: dict) -> bool:
    """Whether the temperature read in the span reaches the threshold (a reading of 45 or more is Fahrenheit)."""
    m = _READING.match(span[-1].text)
    if not m:
        return False
    value = float(m.group(1))
    celsius = (value - 32) * 5 / 9 if value >= 45 or span[-1].text.lower().endswith("f") else value
    return celsius >= float(spec["celsius_at_least"]) - 1e-9


def _at_clause_end(target, modifier, between) -> bool:
    """A backward cue such as ': no' or '- none' answers the item before it only when nothing follows it in the
    clause ("Fever: no;"); in "Red flags: no CES" the 'no' heads what follows. A colon after the cue makes it a
    heading ("Hx: breast cancer"), so it looks forward."""
    doc = modifier.doc
    if modifier.end >= len(doc) or modifier[-1].text.endswith("."):  # "NO." is one token
        return True
    nxt = doc[modifier.end]
    return (nxt.is_punct and nxt.text != ":") or nxt.is_space  # a run of spaces separates template cells


def _answer_or_head(target, modifier, between) -> bool:
    """'no' at a clause end answers the item before it ("Fever - no;"); elsewhere it heads what follows."""
    doc = modifier.doc
    at_end = _at_clause_end(target, modifier, between)
    starts_clause = modifier.start == 0 or modifier[0].is_sent_start or doc[modifier.start - 1].is_punct \
        or doc[modifier.start - 1].is_space
    if not at_end and modifier.end < len(doc) and doc[modifier.end].text == ":" and not starts_clause:
        at_end = True  # "Cancer hx: Y": a label of the item before it, not a heading
    return at_end != (target.start >= modifier.end)


_ON_MODIFIES = {"only_at_clause_end": _at_clause_end, "answer_or_head": _answer_or_head}


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
        rules += [TargetRule(p, concept, pattern=_phrase_pattern(p, nlp, plural=True)) for p in target.phrases]
        rules += [TargetRule(f"{concept} pattern {k}", concept, pattern=list(pattern))
                  for k, pattern in enumerate(target.patterns)]
        rules += [TargetRule(p, concept, pattern=_phrase_pattern(p, nlp), metadata={"negated": True})
                  for p in target.negated_phrases]
        rules += [TargetRule(p, concept, pattern=_phrase_pattern(p, nlp), metadata={"default_status": "affirmed"})
                  for p in target.present_phrases]
        rules += [TargetRule(p, concept, pattern=_phrase_pattern(p, nlp), metadata={"qualifier": True})
                  for p in target.qualifier_phrases]
    for kind, phrases in lex.care.items():
        rules += [TargetRule(p, CARE_PREFIX + kind, pattern=_phrase_pattern(p, nlp)) for p in phrases]
    rules += [TargetRule("duration", DURATION, pattern=p) for p in _duration_patterns(lex.durations)]
    rules += [TargetRule("onset", ONSET, pattern=p) for p in _onset_patterns(lex.durations)]
    rules += [TargetRule(p, NOT_A_FINDING, pattern=_phrase_pattern(p, nlp)) for p in lex.not_findings]
    for concept, spec in lex.measurements.items():
        rules += [TargetRule("reading", concept, pattern=p, metadata={"measurement": True})
                  for p in _measurement_patterns(spec["words"], nlp)]
    matcher.add(rules)
    context = nlp.add_pipe("medspacy_context", config={"rules": None, "prune_on_target_overlap": True})
    modifiers = []
    for m in lex.modifiers:
        cues = [(str(lit), _phrase_pattern(str(lit), nlp)) for lit in m.get("literals") or ()]
        cues += [(f"pattern {k}", list(pattern)) for k, pattern in enumerate(m.get("patterns") or ())]
        for literal, pattern in cues:
            modifiers.append(ConTextRule(literal, m["category"], direction=m["direction"],
                                         pattern=pattern, max_scope=m.get("max_scope"),
                                         terminated_by=set(m.get("terminated_by") or ()) or None,
                                         allowed_types=set(m.get("allowed_types") or ()) or None,
                                         excluded_types=set(m.get("excluded_types") or ()) or None,
                                         on_modifies=next((f for k, f in _ON_MODIFIES.items() if m.get(k)),
                                                          None),
                                         metadata={"spares_present": True} if m.get("spares_present") else None))
    context.add(modifiers)
    first_tokens = _FirstTokens.of([r.pattern for r in rules if isinstance(r.pattern, list) and r.pattern])
    # Symptom words ("LBP", "neck pain") only anchor durations; matched apart from the targets so that an
    # overlap never hides a finding ("Neck pain radiating to R arm").
    from spacy.matcher import Matcher

    symptoms = Matcher(nlp.vocab)
    symptoms.add(SYMPTOM, [_phrase_pattern(p, nlp) for p in lex.durations["symptoms"]])
    return nlp, lex, first_tokens, symptoms


def pipeline(lexicon_path: Path | None = None):
    """(nlp, lexicon, the tokens that can start a match, symptom matcher) for the lexicon at `lexicon_path`."""
    path = Path(lexicon_path or LEXICON_PATH)
    return _pipeline(str(path), load_lexicon(path).version)


_NUMBER = re.compile(r"\d+(?:\.\d+)?")


@dataclass(frozen=True)
class _FirstTokens:
    """What the first token of some target, care or duration pattern can be: words, regular expressions, a
    number, or anything (a pattern that starts with a wildcard)."""
    words: frozenset
    regexes: tuple
    number: bool
    anything: bool

    @classmethod
    def of(cls, patterns: list[list[dict]]) -> "_FirstTokens":
        words, regexes, number, anything = set(), [], False, False
        for pattern in patterns:
            first = pattern[0]
            value = first.get("LOWER", first.get("TEXT"))
            if isinstance(value, str):
                words.add(value.lower())
            elif isinstance(value, dict) and "IN" in value:
                words |= {str(v).lower() for v in value["IN"]}
            elif isinstance(value, dict) and "REGEX" in value:
                regexes.append(re.compile(value["REGEX"], re.IGNORECASE))
            elif first.get("LIKE_NUM"):
                number = True
            else:
                anything = True
        return cls(frozenset(words), tuple(regexes), number, anything)

    def may_start(self, token) -> bool:
        return (self.anything or token.lower_ in self.words or (self.number and token.like_num)
                or any(r.search(token.text) for r in self.regexes))


def may_match(text: str, first: _FirstTokens, tokenizer) -> bool:
    """Cheap pre-filter (the tokenizer only): False when no token of the text can start any lexicon match, so
    the text holds nothing to find and is not parsed."""
    return any(first.may_start(t) for t in tokenizer(text))


def _duration_days(span_text: str, durations: dict) -> int | None:
    """'6 wks' -> 42, 'x10 days' -> 10, 'three months' -> 90, 'a week' -> 7; None when no number is given."""
    text = span_text.lower()
    fraction = re.fullmatch(r"(\d{1,2})/(\d{1,2})", text.strip())
    if fraction and fraction.group(2) in durations.get("fractions", {}):
        unit = durations["fractions"][fraction.group(2)]
        return int(fraction.group(1)) * durations["days_per_unit"][unit]
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


def read(doc, lex: Lexicon, symptoms=None) -> list[dict]:
    """The rows of one parsed text: findings, care, symptom duration and onset (see `parse_texts`)."""
    from spacy.util import filter_spans

    rows: list[dict] = []
    ents = list(doc.ents)
    symptom_spans = filter_spans([doc[a:b] for _, a, b in symptoms(doc)]) if symptoms is not None else []
    durations = lex.durations
    symptom_days = None
    for sent in doc.sents:
        # a phrase the sentence splitter cut ("?compression #" at the end of a text) belongs where it starts
        in_sent = [e for e in ents if sent.start <= e.start < sent.end]
        for e in in_sent:
            if e.label_ in (DURATION, ONSET, NOT_A_FINDING):
                continue
            if e.end < len(doc) and doc[e.end].lower_ in ("n't", "n’t"):
                continue  # "can't walk" is split "ca" + "n't": not a cancer
            meta = e._.target_rule.metadata or {}
            if meta.get("measurement") and not _reading_counts(e, lex.measurements[e.label_]):
                continue  # "T 37.2": a normal reading is no finding
            if _part_of_other_mention(e, ents, doc, lex):
                continue  # "weakness EHL 4/5", "IMPLANTS: cochlear implant", "chronic steroids (prednisone ...)"
            cues = [m for m in e._.modifiers if not _outside_repeated_list(m, e, ents, doc)]
            if meta.get("default_status") == "affirmed":  # "assess hardware": the hardware is there
                cues = [m for m in cues if not (m.rule.metadata or {}).get("spares_present")]
            if e.label_.startswith(CARE_PREFIX):  # "no trauma, PT x 3 wks": the PT was done; "no PT yet" was not
                cues = [m for m in cues if m.category != "NEGATED_EXISTENCE" or m.modifier_span[0] > e.start
                        or not any(t.text == "," for t in doc[m.modifier_span[1]:e.start])]
            if any(m.category == NOT_A_FINDING for m in cues):
                continue  # "wt loss 5 kg (dieting)", "anxious re: cancer"
            cue = next((m for c in STATUS_OF_CATEGORY for m in cues if m.category == c), None)
            target = lex.targets.get(e.label_)
            status = (STATUS_OF_CATEGORY[cue.category] if cue is not None
                      else meta.get("default_status") or (target.default_status if target is not None
                                                          else "affirmed"))
            if meta.get("negated"):
                status, cue = "negated", None  # "afebrile": a negated mention in one word
            if status == "historical" and target is not None and _made_current(e, doc, target, durations):
                status = "affirmed"  # "hx breast ca on tamoxifen": the history goes on
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
            if not ago:
                care = _care_list(rows, doc, e, sent)
                if care:  # "failed 6 wks of PT and NSAIDs", "PT/chiro x 2 months"
                    for r in care:
                        r["days"] = r["days"] if r["days"] is not None else days
                    continue
            before = [r for r in rows if "_ent" in r and r["_ent"].end <= e.start and r["_ent"].sent == sent
                      and r["kind"] == "finding"]
            symptoms_before = [x for x in symptom_spans if x.start >= sent.start and x.end <= e.start]
            symptom_after = next((x for x in symptom_spans if e.end <= x.start <= e.end + 3 and x.end <= sent.end
                                  and all(t.is_alpha for t in doc[e.end:x.start])), None)
            nearest = max(before, key=lambda r: r["_ent"].end) if before else None
            if symptoms_before and (nearest is None or symptoms_before[-1].end > nearest["_ent"].end):
                nearest = None  # "LBP x 10 wks": the duration is the symptom's
            episode = False  # does this duration date the current pain?
            if ago:
                if nearest is not None:
                    nearest["days_ago"] = days  # "fall 3 weeks ago"
                event = (nearest is not None and nearest["concept"] in EVENT_CONCEPTS
                         and nearest["status"] == "affirmed")
                cue_before = {t.lower_ for t in doc[max(sent.start, e.start - 5):e.start]}
                dated_from = symptoms_before and any(t.lower_ in ("after", "since")
                                                     for t in doc[symptoms_before[0].end:e.start])
                episode = (event and days < 365) or bool(cue_before & ONSET_WORDS) or bool(dated_from)
            elif symptom_after is not None or nearest is None or nearest["concept"] in SYMPTOM_CONCEPTS | EVENT_CONCEPTS:
                episode = True  # "LBP x 3 wks", "sciatica x 2 mo", "injury at work, 2 wks"
            # else "on prednisone for 2 years": the finding's own duration, not the back pain's
            if episode and symptom_days is None:
                symptom_days = days
                rows.append({"kind": "symptom_duration", "concept": "symptom_duration", "phrase": e.text,
                             "quote": e.text, "span_start": e.start_char, "span_end": e.end_char, "status": "affirmed", "days": days,
                             "days_ago": None, "onset_month": None})
    for r in rows:
        target = lex.targets.get(r["concept"]) if r["kind"] == "finding" else None
        if (target is not None and target.historical_after_days and r["status"] == "affirmed"
                and (r["days_ago"] or 0) >= target.historical_after_days):
            r["status"] = "historical"  # "fell 2 yrs ago": not this episode's injury
    for r in rows:
        r.pop("_ent", None)
    return rows


def _care_list(rows: list[dict], doc, duration, sent) -> list[dict]:
    """The care items a duration belongs to: the list right after it ("6 wks of PT and NSAIDs", "failed 2 months
    PT/chiro") or right before it ("PT x 3 wks", "PT and NSAIDs x 8 weeks"); empty when none is adjacent."""
    care = sorted((r for r in rows if r.get("_ent") is not None and r["kind"] == "care" and r["_ent"].sent == sent),
                  key=lambda r: r["_ent"].start)

    def chain(first: int, step: int) -> list[dict]:
        out = [care[first]]
        k = first + step
        while 0 <= k < len(care):
            a, b = (out[-1], care[k]) if step > 0 else (care[k], out[-1])
            gap = doc[a["_ent"].end:b["_ent"].start]
            if len(gap) > 2 or any(t.lower_ not in CARE_JOINERS for t in gap):
                break
            out.append(care[k])
            k += step
        return out

    after = next((k for k, r in enumerate(care) if r["_ent"].start >= duration.end), None)
    if after is not None:
        gap = doc[duration.end:care[after]["_ent"].start]
        if len(gap) <= 1 and all(t.lower_ in ("of", "with", "w/") for t in gap):
            return chain(after, 1)
    before = next((k for k in range(len(care) - 1, -1, -1) if care[k]["_ent"].end <= duration.start), None)
    if before is not None:
        gap = doc[care[before]["_ent"].end:duration.start]
        if len(gap) <= 2 and all(t.lower_ in ("for", "x", "of", "trial", "failed", "ongoing", "over") for t in gap):
            return chain(before, -1)
    return []


def _part_of_other_mention(ent, ents, doc, lex) -> bool:
    """Whether a finding only restates a finding of the same concept next to it, so that the two are one mention:
    a grade after the mention it grades ("weakness R hip flexion 4/5"), a heading whose item follows it at once
    ("IMPLANTS: cochlear implant", "Steroids: prednisone daily long-term"), details in parentheses where the
    concept says so ("chronic steroids (prednisone 20 mg x 2 yrs)")."""
    same = [x for x in ents if x.label_ == ent.label_ and x is not ent and x.sent == ent.sent]
    meta = ent._.target_rule.metadata or {}
    if meta.get("qualifier") and any(x.end <= ent.start and ent.start - x.end <= 4
                                     and not any(t.is_punct for t in doc[x.end:ent.start]) for x in same):
        return True
    if ent.end < len(doc) and doc[ent.end].text == ":" and any(x.start == ent.end + 1 for x in same):
        return True
    target = lex.targets.get(ent.label_)
    return bool(target is not None and target.details_in_parentheses and any(
        x.end < ent.start and doc[x.end].text == "(" and ent.start - x.end <= 3
        and not any(t.text == ")" for t in doc[x.end:ent.start]) for x in same))


def _made_current(ent, doc, target, durations) -> bool:
    """A current cue right after a historical mention (one punctuation mark may come between): "hx breast ca on
    tamoxifen", "hx prostate ca with known bone mets", "hx IVDU (last use 2 days ago)". Not when the words after
    it date the use far back ("last used 10 yrs ago")."""
    if not target.current_cues:
        return False
    end = ent.sent.end
    i = ent.end
    if i < end and doc[i].is_punct and doc[i].text not in (".", ";"):
        i += 1
    words = [t.lower_ for t in doc[i:min(end, i + 4)]]
    cue = next((c.split() for c in target.current_cues if words[:len(c.split())] == c.split()), None)
    if cue is None or (len(words) > len(cue) and words[len(cue)] in DOUBT_WORDS):
        return False  # "last use unclear"
    for j in range(i, min(end, i + 8) - 1):
        if doc[j + 1].lower_ == "ago":  # "last used 2 days ago" is current; "months ago", "10 yrs ago" are not
            days = _duration_days(doc[max(i, j - 1):j + 1].text, durations)
            return days is not None and days < (target.historical_after_days or 365)
    return True


def _outside_repeated_list(modifier, ent, ents, doc) -> bool:
    """In "no saddle anesthesia, no incontinence, pain down L leg" each item brings its own 'no', so the last
    'no' does not reach across the comma to the item after it; in "no fever, chills or weight loss" a single
    cue heads the whole list and does."""
    if modifier.category != "NEGATED_EXISTENCE" or modifier.direction == "BACKWARD":
        return False
    start, end = modifier.modifier_span
    if ent.start < end or not any(t.text == "," for t in doc[end:ent.start]):
        return False
    commas = [t.i for t in doc[ent.sent.start:start] if t.text == ","]
    if not commas:
        return False
    # the list item just before this cue ("no saddle anesthesia"): did it bring its own negation?
    item_start, item_end = (commas[-2] + 1 if len(commas) > 1 else ent.sent.start), commas[-1]
    return any(m.category == "NEGATED_EXISTENCE" and item_start <= m.modifier_span[0] < item_end
               for x in ents if item_start <= x.start and x.end <= item_end for m in x._.modifiers)




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
    onset_month (1-12 for "since March"). Texts with no token that can start a match are not parsed."""
    nlp, lex, first_tokens, symptoms = pipeline(lexicon_path)
    out: list[list[dict]] = [[] for _ in texts]
    todo = [i for i, t in enumerate(texts) if t and may_match(t, first_tokens, nlp.tokenizer)]
    for i, doc in zip(todo, nlp.pipe((texts[i] for i in todo), batch_size=batch_size)):
        out[i] = read(doc, lex, symptoms)
    return out
