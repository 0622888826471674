"""The text stage's tables: each distinct masked indication parsed once per lexicon version, and the findings of
every current referral.

    text_parse_cache (text_hash, lexicon_version, kind, concept, phrase, quote, span_start, span_end, status,
                      days, days_ago, onset_month)       one row per finding of a distinct text
    text_parsed (text_hash, lexicon_version, parsed_at)  every distinct text parsed, with or without findings
    referral_text_findings                              the findings of each current referral (analysts, chart
                                                        review, classification); `counts` says whether the
                                                        finding can make its feature true

Texts are keyed by the sha256 of the masked text, so a nightly run parses only texts it has not seen under this
lexicon version, and no text is stored twice. Only masked text reaches this stage (the identifier guard runs at
ingestion), so no phrase or quote holds an identifier.
"""

from __future__ import annotations

CACHE_COLUMNS = (
    ("text_hash", "VARCHAR"), ("lexicon_version", "VARCHAR"), ("kind", "VARCHAR"), ("concept", "VARCHAR"),
    ("phrase", "VARCHAR"), ("quote", "VARCHAR"), ("span_start", "INTEGER"), ("span_end", "INTEGER"),
    ("status", "VARCHAR"), ("days", "INTEGER"), ("days_ago", "INTEGER"), ("onset_month", "INTEGER"),
)
FINDINGS_TABLE = "referral_text_findings"


def ensure_text_tables(con) -> None:
    columns = ", ".join(f"{n} {t}" for n, t in CACHE_COLUMNS)
    con.execute(f"CREATE TABLE IF NOT EXISTS text_parse_cache ({columns})")
    con.execute("CREATE TABLE IF NOT EXISTS text_parsed (text_hash VARCHAR, lexicon_version VARCHAR, parsed_at TIMESTAMP)")


def build_text_findings(con, lexicon_path=None) -> dict:
    """Parse the masked indications not yet parsed under the current lexicon, then rebuild
    `referral_text_findings` from the cache (one join). Returns counts for the asset's metadata."""
    import datetime as dt
    import time

    import pyarrow as pa

    from assets.text.reader import load_lexicon, parse_texts

    lex = load_lexicon(lexicon_path)
    ensure_text_tables(con)
    started = time.perf_counter()
    new = con.execute(
        """SELECT text, sha256(text) AS h FROM (
               SELECT DISTINCT clinical_indication AS text FROM referrals_current
               WHERE clinical_indication IS NOT NULL AND trim(clinical_indication) <> '')
           WHERE sha256(text) NOT IN (SELECT text_hash FROM text_parsed WHERE lexicon_version = ?)""",
        [lex.version],
    ).fetchall()
    texts = [t for t, _ in new]
    parsed = parse_texts(texts, lexicon_path) if texts else []
    rows = {name: [] for name, _ in CACHE_COLUMNS}
    for (_, h), found in zip(new, parsed):
        for r in found:
            rows["text_hash"].append(h)
            rows["lexicon_version"].append(lex.version)
            for name, _ in CACHE_COLUMNS[2:]:
                rows[name].append(r.get(name))
    types = {"VARCHAR": pa.string(), "INTEGER": pa.int32()}
    cache_rows = pa.table({n: pa.array(rows[n], types[t]) for n, t in CACHE_COLUMNS})  # noqa: F841 - read by SQL
    parsed_hashes = pa.table({"text_hash": pa.array([h for _, h in new], pa.string())})  # noqa: F841
    seconds = time.perf_counter() - started
    con.execute("INSERT INTO text_parse_cache SELECT * FROM cache_rows")
    con.execute("INSERT INTO text_parsed SELECT text_hash, ?, ? FROM parsed_hashes",
                [lex.version, dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)])
    # Whether a finding can count (the rule set's text_findings_count switch is applied by the classifier):
    # affirmed, or historical for concepts whose history counts (guidelines/text/lexicon.yaml).
    history = [[c, t.history_counts] for c, t in lex.targets.items()]
    con.execute("CREATE OR REPLACE TEMP TABLE _lexicon_concepts (concept VARCHAR, history_counts BOOLEAN)")
    con.executemany("INSERT INTO _lexicon_concepts VALUES (?, ?)", history)
    con.execute(
        f"""CREATE OR REPLACE TABLE {FINDINGS_TABLE} AS
        SELECT r.referral_id, r.patient_id, r.referral_date, c.kind, c.concept, c.phrase, c.quote, c.span_start,
               c.span_end, c.status,
               CASE WHEN c.kind = 'finding' THEN c.status = 'affirmed' OR (c.status = 'historical' AND l.history_counts)
                    WHEN c.kind = 'care' THEN c.status IN ('affirmed', 'historical')
                    ELSE true END AS counts,
               c.days, c.days_ago, c.onset_month, c.lexicon_version
        FROM referrals_current r
        JOIN text_parse_cache c ON c.text_hash = sha256(r.clinical_indication) AND c.lexicon_version = ?
        LEFT JOIN _lexicon_concepts l ON l.concept = c.concept
        ORDER BY r.referral_id, c.span_start""",
        [lex.version],
    )
    total = con.execute(f"SELECT count(*), count(DISTINCT referral_id) FROM {FINDINGS_TABLE}").fetchone()
    return {"texts_parsed": len(texts), "parse_seconds": round(seconds, 2),
            "texts_per_second": round(len(texts) / seconds) if texts and seconds else 0,
            "findings": total[0], "referrals_with_findings": total[1], "lexicon_version": lex.version}
