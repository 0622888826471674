"""The identifier guard: direct identifiers never reach the warehouse.

Inputs are meant to be anonymized already, but the pipeline does not trust that. Before a row is stored:

- free text (`clinical_indication`) keeps its clinical words, with every match of an identifier pattern replaced by
  a marker such as `[phone]`;
- any other column whose value looks like a direct identifier sends the row to the quarantine, with a reason
  naming the column and the kind of identifier (never the value);
- columns outside the contract are dropped before anything is stored (see `readers.check_columns`).

The patterns are RE2 regular expressions evaluated by DuckDB, so the guard is set-based like the rest of
ingestion. They favour catching identifiers over sparing the odd clinical phrase, and cover the forms real extracts
carry: formatted and bare SSNs (`123-45-6789`, `123456789`), phone numbers with or without separators, medical
record numbers (`MRN 7730019`, `MRN00482999`, `MR# 12345`), birth dates after a label or as a compact date
(`DOB 19610414`, `19610414`), e-mail and street addresses, names after an honorific or a label.

Id columns (`ID_COLUMNS`) are also checked as whole values: a nine-digit value is SSN-shaped and a ten-digit
NANP-shaped value is a phone number, unless it is a valid NPI (the ten-digit provider identifier with its Luhn
check digit), which stays. Names and birth dates that an input carries in columns of their own (a `patient_name`
or `dob` column, a FHIR Patient's name) are removed from the free text of the same row before those columns are
dropped. `tests/corpus/identifiers.csv` lists the forms the guard must catch and the legitimate values it must
leave alone.
"""

from __future__ import annotations

# kind -> pattern. Order matters for masking: the more specific patterns run first.
PATTERNS: dict[str, str] = {
    "email": r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}",
    # formatted, or after a label
    "ssn": (
        r"(?i)\b(?:ssn|social\s+security(?:\s+(?:number|no\.?|#))?)\s*[:#]?\s*\d{3}[- ]?\d{2}[- ]?\d{4}\b"
        r"|\b\d{3}[- ]\d{2}[- ]\d{4}\b"
    ),
    "phone": r"(?:\+?1[\-. ]?)?(?:\(\d{3}\)\s?|\b\d{3}[\-. ])\d{3}[\-. ]\d{4}\b",
    "mrn": (
        r"(?i)\b(?:mrn|mr\s*#|med(?:ical)?\.?\s+rec(?:ord)?s?\.?(?:\s+(?:number|no\.?|#))?)\s*[:#]?\s*"
        r"[A-Z0-9\-]{3,}"
    ),
    "birth_date": (
        r"(?i)\b(?:dob|d\.o\.b\.?|date\s+of\s+birth|birth\s*date|born(?:\s+on)?)\s*[:\-]?\s*"
        r"(?:\d{1,4}[\-/.]\d{1,2}[\-/.]\d{1,4}|\d{8}|[A-Za-z]{3,9}\.?\s+\d{1,2},?\s+\d{4}"
        r"|\d{1,2}\s+[A-Za-z]{3,9}\.?\s+\d{4})"
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

# Bare forms, without a label or separators, looked for in free text only: inside a structured value they are
# as likely part of a legitimate key (a claims line id holding a service date `...-20180312-...`).
BARE_PATTERNS: dict[str, str] = {
    "ssn": r"\b\d{9}\b",  # no clinical code is nine digits
    # ten digits in North American numbering (the area code starts 2-9), with or without +1
    "phone": r"(?:\+?\b1)?\b[2-9]\d{9}\b",
    # a compact date on its own (19610414): in free text it is most often a birth date
    "birth_date": r"\b(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\b",
}
TEXT_PATTERNS: dict[str, str] = {
    kind: f"{pattern}|{BARE_PATTERNS[kind]}" if kind in BARE_PATTERNS else pattern
    for kind, pattern in PATTERNS.items()
}

# Columns that hold free text: identifiers in them are masked, the rest of the text is kept.
FREE_TEXT_COLUMNS = {"clinical_indication", "note"}  # note: a chart reviewer's

# Structured id columns, checked as whole values too (an SSN or a phone number used as an id).
ID_COLUMNS = {"patient_id", "referral_id", "scan_id", "referring_provider_id", "facility_id", "reviewer_id"}

# Header names of columns that carry a person's name or birth date (dropped, and their values masked in the
# free text of the same row first).
PERSON_COLUMN_PATTERN = (
    r"(?i)^(?:patient_?|pt_?|member_?|subscriber_?)?(?:(?:first|last|middle|given|family|sur|full|maiden)_?)?"
    r"(?:name|nm)s?$|^(?:fname|lname|surname|forename)$|^(?:patient_?|pt_?|member_?)?(?:dob|birth_?date|"
    r"date_?of_?birth|birth_?dt|bdate)$"
)
BIRTH_COLUMN_PATTERN = r"(?i)(?:dob|birth|bdate)"


def _sql(pattern: str) -> str:
    return "'" + pattern.replace("'", "''") + "'"


# All patterns as one alternation: RE2 scans a value once for all of them, so the common case - a value with
# no identifier - costs one match instead of one per kind (at 11 million history rows that is most of the
# ingestion time). Inline flags such as (?i) stay inside their group.
ANY_PATTERN = "|".join(f"(?:{pattern})" for pattern in PATTERNS.values())
ANY_TEXT_PATTERN = "|".join(f"(?:{pattern})" for pattern in TEXT_PATTERNS.values())


def any_identifier_expr(value_sql: str, text: bool = False) -> str:
    """SQL: true when the value contains a span matching any identifier pattern (`text`: free-text patterns)."""
    return f"regexp_matches({value_sql}, {_sql(ANY_TEXT_PATTERN if text else ANY_PATTERN)})"


def mask_expr(value_sql: str) -> str:
    """SQL replacing every identifier-looking span of a text with `[kind]` (free-text patterns)."""
    expr = value_sql
    for kind, pattern in TEXT_PATTERNS.items():
        expr = f"regexp_replace({expr}, {_sql(pattern)}, '[{kind}]', 'g')"
    return f"CASE WHEN {any_identifier_expr(value_sql, text=True)} THEN {expr} ELSE {value_sql} END"


def found_kinds_expr(value_sql: str, text: bool = True) -> str:
    """SQL listing the identifier kinds a value contains (an empty list when none); `text=False` for a
    structured value, where bare digit runs are not taken for identifiers."""
    patterns = TEXT_PATTERNS if text else PATTERNS
    items = ", ".join(
        f"CASE WHEN regexp_matches({value_sql}, {_sql(pattern)}) THEN '{kind}' END"
        for kind, pattern in patterns.items()
    )
    return (
        f"CASE WHEN {any_identifier_expr(value_sql, text)} THEN list_filter([{items}], lambda x: x IS NOT NULL) "
        f"ELSE []::VARCHAR[] END"
    )


def npi_valid_expr(value_sql: str) -> str:
    """SQL: true when the value is a National Provider Identifier (ten digits, first 1 or 2, and the Luhn check
    digit over the prefix 80840 that the NPI standard defines)."""
    digits = f"('80840' || {value_sql})"
    # Luhn: from the right, every second digit is doubled (minus 9 when over 9); the sum ends in 0.
    luhn = (
        f"list_sum(list_transform(range(15), lambda i: CASE WHEN i % 2 = 1 THEN "
        f"(2 * CAST(substr({digits}, 15 - i, 1) AS INTEGER)) - CASE WHEN CAST(substr({digits}, 15 - i, 1) AS INTEGER) > 4 "
        f"THEN 9 ELSE 0 END ELSE CAST(substr({digits}, 15 - i, 1) AS INTEGER) END)) % 10 = 0"
    )
    # CASE, not AND: SQL does not promise to skip the check digit's casts for values that are not ten digits
    return f"(CASE WHEN regexp_full_match({value_sql}, '[12][0-9]{{9}}') THEN {luhn} ELSE false END)"


def _id_kinds_expr(value_sql: str) -> str:
    """SQL listing the identifier kinds a whole id value has the shape of."""
    v = f"trim({value_sql})"
    return (
        f"list_filter([CASE WHEN regexp_full_match({v}, '[0-9]{{3}}-?[0-9]{{2}}-?[0-9]{{4}}') THEN 'ssn' END, "
        f"CASE WHEN regexp_full_match({v}, '(?:\\+?1[-. ]?)?\\(?[2-9][0-9]{{2}}\\)?[-. ]?[0-9]{{3}}[-. ]?[0-9]{{4}}') "
        f"AND NOT {npi_valid_expr(v)} THEN 'phone' END], lambda x: x IS NOT NULL)"
    )


def problem_expr(column: str, value_sql: str) -> str:
    """SQL giving a quarantine reason when a structured value looks like a direct identifier."""
    if column in ID_COLUMNS:
        kinds = (
            f"list_distinct(list_concat({found_kinds_expr(value_sql, text=False)}, {_id_kinds_expr(value_sql)}))"
        )
        return (
            f"CASE WHEN {value_sql} IS NOT NULL AND len({kinds}) > 0 THEN "
            f"'{column} looks like a direct identifier (' || array_to_string(list_sort({kinds}), ', ') || ')' END"
        )
    return (
        f"CASE WHEN {value_sql} IS NOT NULL AND {any_identifier_expr(value_sql)} THEN "
        f"'{column} looks like a direct identifier (' || "
        f"array_to_string({found_kinds_expr(value_sql, text=False)}, ', ') || ')' END"
    )


def mask_known_values_expr(text_sql: str, value_sql: str, kind: str) -> str:
    """SQL removing from a text every whole-word occurrence of a value the same row carries in another column
    (a name: each of its words of two letters or more; a birth date: the value and its digits)."""
    if kind == "birth_date":
        tokens = (f"list_filter([trim({value_sql}), regexp_replace(trim({value_sql}), '[^0-9]', '', 'g')], "
                  f"lambda t: length(t) >= 6)")
    else:
        tokens = f"list_filter(string_split_regex(trim({value_sql}), '[\\s,;]+'), lambda t: length(t) >= 2)"
    alternation = f"array_to_string(list_transform({tokens}, lambda t: regexp_escape(t)), '|')"
    return (
        f"CASE WHEN {value_sql} IS NULL OR {text_sql} IS NULL OR len({tokens}) = 0 THEN {text_sql} "
        f"ELSE regexp_replace({text_sql}, '(?i)(?:^|\\b)(?:' || {alternation} || ')(?:\\b|$)', '[{kind}]', 'g') END"
    )


def mask_file_name(con, name: str) -> str:
    """A file name with identifier-looking parts masked. Underscores join words in file names
    (`scans_MRN00482999_2025-03-10.csv`), so each underscore-separated part is checked on its own as well."""
    masked = mask_text(con, name)
    return "_".join(mask_text(con, part) for part in masked.split("_"))


def mask_text(con, text: str | None) -> str | None:
    """A text with every identifier-looking span masked, for values shown outside the tables (file names)."""
    if text is None:
        return None
    return con.execute(f"SELECT {mask_expr('CAST($text AS VARCHAR)')}", {"text": text}).fetchone()[0]


# --- optional pseudonymization ------------------------------------------------------------------------------

# Id columns replaced by a keyed hash when IMAGING_AUDIT_PSEUDONYMIZE_KEY is set. The same value gets the same
# pseudonym in every table and every run with the same key, so links between tables survive.
PSEUDONYM_COLUMNS = {"patient_id", "referral_id", "scan_id", "referring_provider_id"}
PSEUDONYM_KEY_ENV = "IMAGING_AUDIT_PSEUDONYMIZE_KEY"
KEY_FILE_ENV = "IMAGING_AUDIT_KEY_FILE"
MIN_KEY_LENGTH = 16
# Keys that anyone with the code knows (an earlier version's built-in key among them): never used.
PUBLIC_KEYS = {"imaging-audit fhir default key (not secret)"}


class KeyError_(ValueError):
    """A pseudonymization key that must not be used; the message is one line for the operator."""


def installation_key_path(output_dir=None):
    """Where this installation's random key lives: IMAGING_AUDIT_KEY_FILE, else the user's configuration
    folder (never under the outputs, which are published)."""
    import os
    from pathlib import Path

    configured = os.environ.get(KEY_FILE_ENV)
    if configured:
        return Path(configured).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "imaging-audit" / "pseudonym.key"


def resolve_pseudonym_key(explicit: str | None = None, output_dir=None) -> tuple[str, str]:
    """(key, how it was chosen) for pseudonymizing ids that must be hidden (FHIR resource ids, which are often
    medical record numbers).

    The operator's secret (`explicit`, else IMAGING_AUDIT_PSEUDONYMIZE_KEY) is used when set; a public or short
    key is refused. Without one, a random key made for this installation and kept in `installation_key_path()`
    (mode 0600, outside the outputs) is used, so pseudonyms stay stable between runs but nobody without that file
    can recompute one from an MRN."""
    import os
    import secrets
    from pathlib import Path

    key = explicit or os.environ.get(PSEUDONYM_KEY_ENV)
    if key:
        if key in PUBLIC_KEYS:
            raise KeyError_(f"{PSEUDONYM_KEY_ENV} is a key published with the code: choose a secret one")
        if len(key) < MIN_KEY_LENGTH:
            raise KeyError_(f"{PSEUDONYM_KEY_ENV} is shorter than {MIN_KEY_LENGTH} characters: choose a longer secret")
        return key, f"the key in {PSEUDONYM_KEY_ENV}"
    path = installation_key_path()
    if output_dir is not None:
        out = Path(output_dir).resolve()
        if path.resolve() == out or out in path.resolve().parents:
            raise KeyError_(f"{path}: the pseudonymization key file must not lie inside the outputs ({out})")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
    key = path.read_text().strip()
    if len(key) < MIN_KEY_LENGTH:
        raise KeyError_(f"{path}: the pseudonymization key in this file is shorter than {MIN_KEY_LENGTH} characters")
    return key, f"this installation's random key ({path})"


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
