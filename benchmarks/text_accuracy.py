"""Accuracy of the text stage on the annotated corpus (tests/corpus/indications/annotated.jsonl): per concept,
precision and recall of findings with their status, and of symptom durations and care durations.

    python -m benchmarks.text_accuracy [--corpus heldout|validation|test] [--json benchmarks/text_accuracy.json]
    (then python -m benchmarks.report; --json writes every corpus)

A predicted finding is correct when it overlaps an annotated mention of the same concept and carries the same
status (affirmed, negated, hypothetical, uncertain, family, historical). Precision = correct / predicted,
recall = correct / annotated. A second finding inside a mention already matched ("L4-5 laminectomy & fusion"
read as two operations) is part of that mention, not a spurious one. The corpus names some concepts more broadly than the value sets; CORPUS_CONCEPT
maps the lexicon's concepts onto the corpus's.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

CORPORA = Path(__file__).resolve().parents[1] / "tests" / "corpus" / "indications"
CORPUS = CORPORA / "annotated.jsonl"  # development: the lexicon was tuned on it
HELDOUT = CORPORA / "heldout.jsonl"  # written separately; lexicon 1.1.0 was tuned on it too
VALIDATION = CORPORA / "validation.jsonl"  # a third annotator; measured once (lexicon 1.1.0), then tuned on
TEST = CORPORA / "test.jsonl"  # a fourth annotator; measured once (lexicon 1.2.0), then tuned on
BLIND = CORPORA / "blind.jsonl"  # a fifth; measured once (lexicon 1.3.0), then tuned on for 1.4.0
UNSEEN = CORPORA / "unseen.jsonl"  # a sixth; measured once (lexicon 1.4.0), never tuned on: the honest estimate
CORPUS_FILES = {"development": CORPUS, "heldout": HELDOUT, "validation": VALIDATION, "test": TEST, "blind": BLIND,
                "unseen": UNSEEN}
CORPUS_CONCEPT = {
    "hiv": "immunosuppression", "organ_transplant": "immunosuppression", "immunodeficiency": "immunosuppression",
    "immunosuppressant_use": "immunosuppression", "lumbar_surgery": "spine_surgery",
    "spine_surgery_site_unspecified": "spine_surgery", "cervical_surgery": "spine_surgery",
    "mri_contraindication": "mri_implant",
}


def load_corpus(path: Path = CORPUS) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _spans(text: str, phrase: str) -> tuple[int, int]:
    start = text.find(phrase)
    return start, start + len(phrase)


def evaluate(corpus: list[dict] | None = None) -> dict:
    """Counts and per-concept precision and recall; also the errors, for reading."""
    from assets.text.reader import parse_texts

    corpus = corpus or load_corpus()
    parsed = parse_texts([c["text"] for c in corpus])
    gold_n, pred_n, correct, found = Counter(), Counter(), Counter(), Counter()
    errors = []
    days = Counter()
    for case, rows in zip(corpus, parsed):
        text = case["text"]
        gold = [{**m, "span": _spans(text, m["phrase"])} for m in case["mentions"]]
        preds = [r for r in rows if r["kind"] == "finding"]
        used = set()
        for g in gold:
            gold_n[g["concept"]] += 1
        for r in preds:
            concept = CORPUS_CONCEPT.get(r["concept"], r["concept"])
            match = next((i for i, g in enumerate(gold) if i not in used and g["concept"] == concept
                          and r["span_start"] < g["span"][1] and g["span"][0] < r["span_end"]), None)
            if match is None and any(i in used and g["concept"] == concept and r["span_start"] < g["span"][1]
                                     and g["span"][0] < r["span_end"] for i, g in enumerate(gold)):
                continue  # another part of a mention already matched ("L4-5 laminectomy & fusion")
            pred_n[concept] += 1
            if match is None:
                errors.append({"id": case["id"], "text": text, "error": "spurious", "concept": concept,
                               "phrase": r["phrase"], "status": r["status"]})
                continue
            used.add(match)
            found[concept] += 1
            if gold[match]["status"] == r["status"]:
                correct[concept] += 1
            else:
                errors.append({"id": case["id"], "text": text, "error": "status", "concept": concept,
                               "phrase": r["phrase"], "status": r["status"], "expected": gold[match]["status"]})
        for i, g in enumerate(gold):
            if i not in used:
                errors.append({"id": case["id"], "text": text, "error": "missed", "concept": g["concept"],
                               "phrase": g["phrase"], "expected": g["status"]})
        # symptom duration
        got = next((r["days"] for r in rows if r["kind"] == "symptom_duration"), None)
        want = case.get("symptom_days")
        if want is not None or got is not None:
            days["symptom_annotated"] += want is not None
            days["symptom_predicted"] += got is not None
            days["symptom_correct"] += want is not None and got == want
            if got != want:
                errors.append({"id": case["id"], "text": text, "error": "symptom_days", "got": got,
                               "expected": want})
        care_want = {(c["kind"], c["days"]) for c in case.get("conservative_care", []) if c["days"] is not None}
        care_got = {(r["concept"], r["days"]) for r in rows if r["kind"] == "care" and r["days"] is not None
                    and r["status"] in ("affirmed", "historical")}
        days["care_annotated"] += len(care_want)
        days["care_predicted"] += len(care_got)
        days["care_correct"] += len(care_want & care_got)
        if care_want != care_got:
            errors.append({"id": case["id"], "text": text, "error": "care_days", "got": sorted(care_got),
                           "expected": sorted(care_want)})
    concepts = {}
    for concept in sorted(gold_n):
        p = correct[concept] / pred_n[concept] if pred_n[concept] else 0.0
        r = correct[concept] / gold_n[concept] if gold_n[concept] else 0.0
        concepts[concept] = {"mentions": gold_n[concept], "predicted": pred_n[concept], "found": found[concept],
                             "correct": correct[concept], "precision": round(p, 3), "recall": round(r, 3)}
    return {"texts": len(corpus), "concepts": concepts, "durations": dict(days), "errors": errors}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the figures (without the errors) here")
    parser.add_argument("--errors", type=int, default=0, help="print this many errors")
    parser.add_argument("--corpus", choices=list(CORPUS_FILES), default="development")
    args = parser.parse_args(argv)
    result = evaluate(load_corpus(CORPUS_FILES[args.corpus]))
    print(f"{result['texts']} texts")
    print(f"{'concept':24} {'mentions':>8} {'predicted':>9} {'correct':>7} {'precision':>9} {'recall':>6}")
    for c, m in result["concepts"].items():
        print(f"{c:24} {m['mentions']:8} {m['predicted']:9} {m['correct']:7} {m['precision']:9.3f} {m['recall']:6.3f}")
    print(result["durations"])
    for e in result["errors"][: args.errors]:
        print(e)
    if args.json:
        from assets.text.reader import load_lexicon

        args.json.parent.mkdir(parents=True, exist_ok=True)
        figures = {"lexicon": load_lexicon().version}
        for name, path in CORPUS_FILES.items():
            r = result if name == args.corpus else evaluate(load_corpus(path))
            figures[name] = {k: v for k, v in r.items() if k != "errors"}
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
