"""The identifier guard: direct identifiers never reach the warehouse.

Inputs are meant to be anonymized already, but the pipeline does not trust that. Before a row is stored:

- free text (`clinical_indication`) keeps its clinical words, with every match of an identifier pattern replaced by
  a marker such as `[phone]`;
- any other column whose value looks like a direct identifier sends the row to the quarantine, with a reason
  naming the column and the kind of identifier (never the value);
- columns outside the contract are dropped before anything is stored (see `readers.check_columns`).

The patterns are RE2 regular expressions evaluated by DuckDB, so the guard is set-based like the rest of
ingestion. They favour catching identifiers over sparing the odd clinical phrase.
"""

from __future__ import annotations

# kind -> pattern. Order matters for masking: the more specific patterns run first.
PATTERNS: dict[str, str] = {
    "email": r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}",
    "ssn": r"\b\d{3}[- ]\d{2}[- ]\d{4}\b",
    "phone": r"(?:\+?1[\-. ]?)?(?:\(\d{3}\)\s?|\b\d{3}[\-. ])\d{3}[\-. ]\d{4}\b",
    "mrn": r"(?i)\b(?:mrn|medical\s+record(?:\s+(?:number|no\.?|#))?)\s*[:#]?\s*[A-Z0-9\-]{3,}",
    "birth_date": (
        r"(?i)\b(?:dob|d\.o\.b\.?|date\s+of\s+birth|born(?:\s+on)?)\s*[:\-]?\s*"
        r"(?:\d{1,4}[\-/.]\d{1,2}[\-/.]\d{1,4}|[A-Za-z]{3,9}\.?\s+\d{1,2},?\s+\d{4}|\d{1,2}\s+[A-Za-z]{3,9}\.?\s+\d{4})"
    ),
    "address": (
        r"(?i)\b\d{1,6}\s+(?:[A-Za-z0-9]+\s+){1,4}"
        # No "dr", "ct" or "pl": in clinical text they mean doctor, CT and plan far more often than an address.
        r"(?:street|st|avenue|ave|road|rd|boulevard|blvd|lane|drive|court|way|place|terrace|circle|"
        r"highway|hwy|parkway|pkwy)\b\.?"
    ),
    "name": (
        r"\b(?:Mr|Mrs|Ms|Miss|Mx)\.?\s+[A-Z][A-Za-z'\-]+(?:\s+[A-Z][A-Za-z'\-]+)?"
        r"|(?i:\b(?:patient|pt)\s+name\b|\bname)\s*[:=]\s*[A-Za-z'\-]+(?:\s+[A-Za-z'\-]+)?"
    ),
}

# Columns that hold free text: identifiers in them are masked, the rest of the text is kept.
FREE_TEXT_COLUMNS = {"clinical_indication"}


def _sql(pattern: str) -> str:
    return "'" + pattern.replace("'", "''") + "'"


# All patterns as one alternation: RE2 scans a value once for all of them, so the common case - a value with
# no identifier - costs one match instead of one per kind (at 11 million history rows that is most of the
# ingestion time). Inline flags such as (?i) stay inside their group.
ANY_PATTERN = "|".join(f"(?:{pattern})" for pattern in PATTERNS.values())


def any_identifier_expr(value_sql: str) -> str:
    """SQL: true when the value contains a span matching any identifier pattern."""
    return f"regexp_matches({value_sql}, {_sql(ANY_PATTERN)})"


def mask_expr(value_sql: str) -> str:
    """SQL replacing every identifier-looking span of a text with `[kind]`."""
    expr = value_sql
    for kind, pattern in PATTERNS.items():
        expr = f"regexp_replace({expr}, {_sql(pattern)}, '[{kind}]', 'g')"
    return f"CASE WHEN {any_identifier_expr(value_sql)} THEN {expr} ELSE {value_sql} END"


def found_kinds_expr(value_sql: str) -> str:
    """SQL listing the identifier kinds a text contains (an empty list when none)."""
    items = ", ".join(
        f"CASE WHEN regexp_matches({value_sql}, {_sql(pattern)}) THEN '{kind}' END"
        for kind, pattern in PATTERNS.items()
    )
    return (
        f"CASE WHEN {any_identifier_expr(value_sql)} THEN list_filter([{items}], lambda x: x IS NOT NULL) "
        f"ELSE []::VARCHAR[] END"
    )


def problem_expr(column: str, value_sql: str) -> str:
    """SQL giving a quarantine reason when a structured value looks like a direct identifier."""
    return (
        f"CASE WHEN {value_sql} IS NOT NULL AND {any_identifier_expr(value_sql)} THEN "
        f"'{column} looks like a direct identifier (' || array_to_string({found_kinds_expr(value_sql)}, ', ') "
        f"|| ')' END"
    )


# --- optional pseudonymization ------------------------------------------------------------------------------

# Id columns replaced by a keyed hash when IMAGING_AUDIT_PSEUDONYMIZE_KEY is set. The same value gets the same
# pseudonym in every table and every run with the same key, so links between tables survive.
PSEUDONYM_COLUMNS = {"patient_id", "referral_id", "scan_id", "referring_provider_id"}
PSEUDONYM_KEY_ENV = "IMAGING_AUDIT_PSEUDONYMIZE_KEY"


def set_pseudonym_key(con, key: str) -> None:
    """Hand DuckDB the HMAC-SHA256 pads of `key` as session variables (gone when the connection closes)."""
    import hashlib

    raw = key.encode("utf-8")
    if len(raw) > 64:
        raw = hashlib.sha256(raw).digest()
    padded = raw.ljust(64, b"\0")
    con.execute("SET VARIABLE imaging_audit_ipad = ?", [bytes(b ^ 0x36 for b in padded)])
    con.execute("SET VARIABLE imaging_audit_opad = ?", [bytes(b ^ 0x5C for b in padded)])


def clear_pseudonym_key(con) -> None:
    for name in ("imaging_audit_ipad", "imaging_audit_opad"):
        con.execute(f"RESET VARIABLE {name}")


def pseudonym_expr(value_sql: str) -> str:
    """SQL for HMAC-SHA256(key, value), shortened to 24 hex digits and marked `ps_`."""
    inner = f"sha256(getvariable('imaging_audit_ipad') || encode({value_sql}))"
    return (
        f"CASE WHEN {value_sql} IS NULL THEN NULL ELSE "
        f"'ps_' || left(sha256(getvariable('imaging_audit_opad') || unhex({inner})), 24) END"
    )
