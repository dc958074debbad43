"""CSV the API hands out (RFC 4180, a header row), safe to open in a spreadsheet.

A cell that starts with =, +, -, @ (or a tab or carriage return) is a formula to
Excel and LibreOffice; such a cell gets a leading apostrophe (OWASP's "CSV injection"),
so an audit entry's resource or a name written by an attacker is shown, not run.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        return str(value)  # a number is a number: -3 stays -3
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def csv_lines(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """`rows` (values in the order of `columns`) as CSV lines, \\r\\n-terminated."""
    out = io.StringIO()
    writer = csv.writer(out)
    for row in rows:
        writer.writerow([safe_cell(v) for v in row])
    return out.getvalue()


def csv_header(columns: Sequence[str]) -> str:
    return csv_lines(columns, [columns])
