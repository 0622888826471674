"""Check tests/corpus/indications/annotated.jsonl (or another corpus file) and print its counts.

Run: python3 tests/corpus/indications/check_corpus.py [FILE]   (exit code 1 on any error)

FILE defaults to annotated.jsonl; a relative name without a directory part is looked up next to
this script first ("check_corpus.py heldout.jsonl").
"""
import json
import re
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "annotated.jsonl"

CONCEPTS = [
    "cauda_equina", "cancer", "spinal_infection", "iv_drug_use", "fever", "immunosuppression",
    "long_term_steroids", "spinal_trauma", "osteoporosis", "weight_loss", "motor_deficit",
    "neurological_symptoms", "disc_herniation", "spine_surgery", "mri_implant", "contrast_allergy",
]
STATUSES = ["affirmed", "negated", "hypothetical", "uncertain", "family", "historical"]
KINDS = ["physical_therapy", "medication", "chiropractic", "home_exercise", "unspecified"]
KEYS = {"id", "text", "mentions", "symptom_days", "conservative_care"}
OPTIONAL = {"onset_phrase", "no_care"}
# identifier-like strings that must never appear in a synthetic text
IDENTIFIER_LIKE = [
    (r"\b(19|20)\d\d\b", "a year"),
    (r"\b\d{1,2}/\d{1,2}/\d{2,4}\b", "a date"),
    (r"\b\d{3}[-. ]\d{3}[-. ]\d{4}\b", "a phone number"),
    (r"\b(MRN|DOB|SSN)\b", "an identifier label"),
    (r"\b\d{6,}\b", "a long number"),
]


def corpus_path(argv: list) -> Path:
    if len(argv) < 2:
        return CORPUS
    path = Path(argv[1])
    if not path.is_absolute() and len(path.parts) == 1 and (HERE / path).exists():
        return HERE / path
    return path


def main(argv: list = None) -> int:
    corpus = corpus_path(sys.argv if argv is None else argv)
    errors, warnings = [], []
    rows, ids, texts = [], Counter(), Counter()
    for n, line in enumerate(corpus.read_text(encoding="utf-8").splitlines(), 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"line {n}: does not parse: {exc}")
            continue
        rows.append(row)
        rid = row.get("id", f"line {n}")
        missing, extra = KEYS - row.keys(), row.keys() - KEYS - OPTIONAL
        if missing or extra:
            errors.append(f"{rid}: missing keys {sorted(missing)} / unknown keys {sorted(extra)}")
            continue
        ids[rid] += 1
        text = row["text"]
        texts[text] += 1
        if not isinstance(text, str) or not text.strip():
            errors.append(f"{rid}: empty text")
            continue
        for pattern, what in IDENTIFIER_LIKE:
            if re.search(pattern, text):
                errors.append(f"{rid}: text contains {what}: {text!r}")
        seen = set()
        for m in row["mentions"]:
            if set(m) != {"concept", "phrase", "status"}:
                errors.append(f"{rid}: mention keys {sorted(m)}")
                continue
            if m["concept"] not in CONCEPTS:
                errors.append(f"{rid}: unknown concept {m['concept']!r}")
            if m["status"] not in STATUSES:
                errors.append(f"{rid}: unknown status {m['status']!r}")
            ph = m["phrase"]
            if not ph or ph not in text:
                errors.append(f"{rid}: phrase {ph!r} is not a substring of the text")
            elif text.count(ph) > 1:
                warnings.append(f"{rid}: phrase {ph!r} occurs {text.count(ph)} times")
            if ph != ph.strip():
                errors.append(f"{rid}: phrase {ph!r} has surrounding spaces")
            if (m["concept"], ph) in seen:
                errors.append(f"{rid}: concept {m['concept']} given twice with phrase {ph!r}")
            seen.add((m["concept"], ph))
        days = row["symptom_days"]
        if days is not None and (not isinstance(days, int) or isinstance(days, bool) or days < 0):
            errors.append(f"{rid}: symptom_days {days!r} is not null or a non-negative integer")
        if "onset_phrase" in row:
            if days is not None:
                errors.append(f"{rid}: onset_phrase given with a symptom_days")
            if row["onset_phrase"] not in text:
                errors.append(f"{rid}: onset_phrase {row['onset_phrase']!r} is not a substring")
        if "no_care" in row and row["no_care"] is not True:
            errors.append(f"{rid}: no_care must be true when present")
        for c in row["conservative_care"]:
            if set(c) != {"kind", "days", "phrase"}:
                errors.append(f"{rid}: conservative_care keys {sorted(c)}")
                continue
            if c["kind"] not in KINDS:
                errors.append(f"{rid}: unknown kind {c['kind']!r}")
            if c["days"] is not None and (not isinstance(c["days"], int) or isinstance(c["days"], bool)):
                errors.append(f"{rid}: care days {c['days']!r}")
            if c["phrase"] not in text:
                errors.append(f"{rid}: care phrase {c['phrase']!r} is not a substring")
            elif text.count(c["phrase"]) > 1:
                warnings.append(f"{rid}: care phrase {c['phrase']!r} occurs {text.count(c['phrase'])} times")
    errors += [f"id {i!r} used {k} times" for i, k in ids.items() if k > 1]
    warnings += [f"text used {k} times: {t!r}" for t, k in texts.items() if k > 1]

    cell = Counter((m["concept"], m["status"]) for r in rows for m in r["mentions"])
    width = max(map(len, CONCEPTS))
    header = "| concept".ljust(width + 2) + " | " + " | ".join(STATUSES) + " | total |"
    print(header)
    print("|" + "-" * (width + 2) + "|" + "|".join("-" * (len(s) + 2) for s in STATUSES) + "|-------|")
    for c in CONCEPTS:
        vals = [cell[(c, s)] for s in STATUSES]
        print(f"| {c.ljust(width)} | " + " | ".join(str(v).rjust(len(s)) for v, s in zip(vals, STATUSES))
              + f" | {str(sum(vals)).rjust(5)} |")
    totals = [sum(cell[(c, s)] for c in CONCEPTS) for s in STATUSES]
    print(f"| {'total'.ljust(width)} | " + " | ".join(str(v).rjust(len(s)) for v, s in zip(totals, STATUSES))
          + f" | {str(sum(totals)).rjust(5)} |")
    kinds = Counter(c["kind"] for r in rows for c in r["conservative_care"])
    print()
    print(f"texts: {len(rows)}")
    print(f"texts with no mention: {sum(1 for r in rows if not r['mentions'])}")
    print(f"texts with symptom_days: {sum(1 for r in rows if r['symptom_days'] is not None)}")
    print(f"texts with onset_phrase: {sum(1 for r in rows if 'onset_phrase' in r)}")
    print(f"texts with a conservative_care entry: {sum(1 for r in rows if r['conservative_care'])}")
    print(f"conservative_care entries with days: {sum(1 for r in rows for c in r['conservative_care'] if c['days'] is not None)}")
    print(f"texts with no_care: {sum(1 for r in rows if r.get('no_care'))}")
    print("conservative_care entries per kind: " + ", ".join(f"{k} {kinds[k]}" for k in KINDS))
    for w in warnings:
        print("warning:", w)
    for e in errors:
        print("error:", e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
