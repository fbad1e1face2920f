"""Compare one engine's output Parquet with a reference output, row by row on the spine's `row_id`."""

from __future__ import annotations

import duckdb

VALUES = [f"f{i}" for i in range(5)]


def compare(reference: str, candidate: str, spine: str) -> dict:
    """Counts of how `candidate` departs from `reference` (both joined on row_id).

    spine_rows: rows in the spine; rows: rows in the candidate output;
    missing: spine rows absent from the output (split by whether the reference had a value);
    duplicated: extra output rows for a row_id already present;
    value_vs_null / null_vs_value: candidate has values where the reference has nulls / vice versa;
    differing: both have values but some f0..f4 differ; equal: rows that agree exactly.
    """
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    ref_null = " AND ".join(f"r.{v} IS NULL" for v in VALUES)
    cand_null = " AND ".join(f"c.{v} IS NULL" for v in VALUES)
    same = " AND ".join(f"r.{v} IS NOT DISTINCT FROM c.{v}" for v in VALUES)
    con.execute(f"CREATE TEMP VIEW r AS SELECT row_id, {', '.join(VALUES)} FROM read_parquet('{reference}')")
    con.execute(f"CREATE TEMP VIEW c AS SELECT row_id, {', '.join(VALUES)} FROM read_parquet('{candidate}')")
    spine_rows, = con.execute(f"SELECT count(*) FROM read_parquet('{spine}')").fetchone()
    rows, distinct = con.execute("SELECT count(*), count(DISTINCT row_id) FROM c").fetchone()
    out = con.execute(f"""
        WITH c1 AS (SELECT * FROM c QUALIFY row_number() OVER (PARTITION BY row_id) = 1)
        SELECT
          count(*) FILTER (WHERE c.row_id IS NULL) AS missing,
          count(*) FILTER (WHERE c.row_id IS NULL AND NOT ({ref_null})) AS missing_with_value,
          count(*) FILTER (WHERE c.row_id IS NULL AND ({ref_null})) AS missing_null,
          count(*) FILTER (WHERE c.row_id IS NOT NULL AND ({ref_null}) AND NOT ({cand_null}))
            AS value_vs_null,
          count(*) FILTER (WHERE c.row_id IS NOT NULL AND NOT ({ref_null}) AND ({cand_null}))
            AS null_vs_value,
          count(*) FILTER (WHERE c.row_id IS NOT NULL AND NOT ({ref_null}) AND NOT ({cand_null})
                           AND NOT ({same})) AS differing,
          count(*) FILTER (WHERE c.row_id IS NOT NULL AND ({same})) AS equal,
          count(*) FILTER (WHERE NOT ({ref_null})) AS reference_with_value
        FROM r LEFT JOIN c1 c USING (row_id)
    """).fetchone()
    names = ["missing", "missing_with_value", "missing_null", "value_vs_null", "null_vs_value",
             "differing", "equal", "reference_with_value"]
    result = {"spine_rows": spine_rows, "rows": rows, "duplicated": rows - distinct,
              **dict(zip(names, out))}
    result["agrees"] = (result["equal"] == spine_rows and rows == spine_rows)
    con.close()
    return result


def summary(name: str, c: dict) -> str:
    if c["agrees"]:
        return f"{name}: identical to the reference on all {c['spine_rows']:,} spine rows"
    parts = []
    if c["rows"] != c["spine_rows"]:
        parts.append(f"{c['rows']:,} output rows for {c['spine_rows']:,} spine rows")
    if c["missing"]:
        parts.append(f"{c['missing']:,} spine rows dropped ({c['missing_with_value']:,} of "
                     f"them had a value in the reference, {c['missing_null']:,} were null there)")
    if c["duplicated"]:
        parts.append(f"{c['duplicated']:,} duplicated rows")
    if c["value_vs_null"]:
        parts.append(f"{c['value_vs_null']:,} rows with values where the reference has nulls")
    if c["null_vs_value"]:
        parts.append(f"{c['null_vs_value']:,} rows null where the reference has values")
    if c["differing"]:
        parts.append(f"{c['differing']:,} rows with different values")
    return f"{name}: " + "; ".join(parts)
