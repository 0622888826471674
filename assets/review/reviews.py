"""Chart reviews applied to the verdicts: what each review was made against, and the review status and final
category of every verdict.

Reviews arrive in the `chart_reviews` table (docs/data-contract.md §2a) and are never changed or dropped there:
several reviews of one scan, by one reviewer or several, all stay. This module keeps, per review, the verdict
it was made against (`chart_review_log`: the automated category, reasons and rule-set version when the review
was first matched to its verdict), so a later rule-set change cannot silently rewrite what a reviewer
confirmed or overturned. From the log it derives:

- `chart_review_results`: every review with its verdict then and now, whether it agrees, whether it was made
  against an older rule-set version, and whether it is the latest for its scan (and for its reviewer);
- `mri_classification.review_status` and `final_category`: `confirmed` or `overridden` by the latest review of
  the scan and rule set (latest review date; on the same date, the later delivery), else `unreviewed`;
- quarantine rows (stage `review`) for reviews that match no verdict yet: a scan not (yet) delivered or a rule
  set that has no verdict for it. They stay in `chart_reviews` and apply on the run after the scan arrives.
"""

from __future__ import annotations

from assets.transactions import rollback_after_failure


SQL_LATEST = """row_number() OVER (PARTITION BY {partition}
                                   ORDER BY r.review_date DESC, r.load_partition DESC, r.source_file DESC,
                                            r.source_row DESC)"""


def ensure_review_tables(con) -> None:
    con.execute(
        """CREATE TABLE IF NOT EXISTS chart_review_log (
            source_file VARCHAR, source_row BIGINT, load_partition VARCHAR, scan_id VARCHAR, rule_set VARCHAR,
            automated_category VARCHAR, automated_reasons VARCHAR, rule_set_version VARCHAR,
            first_applied_at TIMESTAMP)"""
    )


def apply_reviews(con) -> dict:
    """Log newly matched reviews, rebuild `chart_review_results`, set the review columns of
    `mri_classification` and list unmatched reviews in the quarantine; returns counts. One transaction."""
    from assets.ingest.readers import ensure_tables

    ensure_tables(con)
    ensure_review_tables(con)
    con.execute("BEGIN TRANSACTION")
    try:
        # A review is one delivered row: its file, row and partition. Re-loading a partition re-delivers the
        # same rows, so their log entries (and the verdict they were made against) stand.
        con.execute(
            """INSERT INTO chart_review_log
            SELECT r._source_file, r._source_row, r._load_partition, r.scan_id, r.rule_set, m.category, m.reasons,
                   m.rule_set_version, now()
            FROM chart_reviews r
            JOIN mri_classification m ON m.scan_id = r.scan_id AND m.rule_set = r.rule_set
            WHERE NOT EXISTS (SELECT 1 FROM chart_review_log l
                              WHERE l.source_file = r._source_file AND l.source_row = r._source_row
                                AND l.load_partition = r._load_partition)"""
        )
        con.execute(
            f"""CREATE OR REPLACE TABLE chart_review_results AS
            WITH r AS (
                SELECT r.scan_id, r.rule_set, r.reviewer_id, r.review_date, r.reviewed_category,
                       r.reviewed_reasons, r.note, r._source_file AS source_file, r._source_row AS source_row,
                       r._load_partition AS load_partition
                FROM chart_reviews r)
            SELECT r.*, l.automated_category, l.automated_reasons, l.rule_set_version AS reviewed_version,
                   m.category AS current_category, m.rule_set_version AS current_version,
                   l.scan_id IS NOT NULL AS matched,
                   l.rule_set_version IS DISTINCT FROM m.rule_set_version AND l.scan_id IS NOT NULL
                       AND m.scan_id IS NOT NULL AS older_version,
                   r.reviewed_category = l.automated_category AS agrees,
                   {SQL_LATEST.format(partition="r.scan_id, r.rule_set")} = 1 AS latest_for_scan,
                   {SQL_LATEST.format(partition="r.scan_id, r.rule_set, r.reviewer_id")} = 1 AS latest_for_reviewer
            FROM r
            LEFT JOIN chart_review_log l ON l.source_file = r.source_file AND l.source_row = r.source_row
                                        AND l.load_partition = r.load_partition
            LEFT JOIN mri_classification m ON m.scan_id = r.scan_id AND m.rule_set = r.rule_set"""
        )
        con.execute(
            "UPDATE mri_classification SET review_status = 'unreviewed', final_category = category "
            "WHERE review_status IS DISTINCT FROM 'unreviewed' OR final_category IS DISTINCT FROM category"
        )
        con.execute(
            """UPDATE mri_classification m
            SET review_status = CASE WHEN l.reviewed_category = m.category THEN 'confirmed' ELSE 'overridden' END,
                final_category = l.reviewed_category
            FROM chart_review_results l
            WHERE l.latest_for_scan AND l.scan_id = m.scan_id AND l.rule_set = m.rule_set"""
        )
        con.execute("DELETE FROM quarantine WHERE table_name = 'chart_reviews' AND stage = 'review'")
        con.execute(
            """INSERT INTO quarantine (source_file, source_row, table_name, reason, stage, load_partition,
                                       record_key, column_name, value)
            SELECT r.source_file, r.source_row, 'chart_reviews',
                   CASE WHEN s.scan_id IS NULL
                        THEN 'scan_id is not a known scan: the review is kept and applies when the scan arrives'
                        ELSE 'no verdict of rule set ' || r.rule_set || ' for this scan: the review is kept and '
                             || 'applies when there is one' END,
                   'review', r.load_partition, r.scan_id, 'scan_id', r.scan_id
            FROM chart_review_results r
            LEFT JOIN (SELECT DISTINCT scan_id FROM scans_current) s USING (scan_id)
            WHERE NOT r.matched"""
        )
        con.execute("COMMIT")
    except BaseException:
        rollback_after_failure(con)
        raise
    counts = con.execute(
        """SELECT count(*), count(*) FILTER (WHERE matched), count(*) FILTER (WHERE NOT matched),
                  count(*) FILTER (WHERE older_version), count(DISTINCT (scan_id, rule_set)) FILTER (WHERE matched)
           FROM chart_review_results"""
    ).fetchone()
    status = dict(con.execute("SELECT review_status, count(*) FROM mri_classification GROUP BY ALL").fetchall())
    return {"reviews": counts[0], "matched": counts[1], "unmatched": counts[2], "older_version": counts[3],
            "reviewed_verdicts": counts[4], "confirmed": status.get("confirmed", 0),
            "overridden": status.get("overridden", 0)}
