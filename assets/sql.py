"""The one way a value reaches SQL text: a quoted literal.

Prefer bound parameters (`con.execute(sql, [value])`). Where DuckDB cannot take a parameter - a file path in
`COPY ... TO`, `read_csv(...)`, `ATTACH`, a list of file names, a value inside generated SQL - the value goes
through `literal()`, never into an f-string as it is: a path or an input value with a quote in it must not end
the string early (an output folder named `O'Brien audit` is a folder, not a syntax error).
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import PurePath

__all__ = ["literal", "literal_list", "path_literal"]


def literal(value) -> str:
    """`value` as a DuckDB literal: NULL, TRUE/FALSE, a number, DATE '...', or a single-quoted string."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ValueError(f"no SQL literal for {value!r}")
        return repr(value)
    if isinstance(value, dt.datetime):
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, PurePath):
        return path_literal(value)
    text = str(value)
    if "\x00" in text:
        raise ValueError("a NUL character cannot be part of an SQL literal")
    return "'" + text.replace("'", "''") + "'"


def path_literal(path) -> str:
    """A file or folder path as a string literal (forward slashes, so it reads the same on every platform)."""
    return literal(PurePath(path).as_posix())


def literal_list(values) -> str:
    """`[v1, v2, ...]` of literals, for DuckDB list arguments such as `read_csv([...])`."""
    return "[" + ", ".join(literal(v) for v in values) + "]"
