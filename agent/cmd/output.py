"""How the ``custos`` client prints an answer: JSON, a table or bare values.

``--format`` picks one; without it the client prints a table to a
terminal and JSON to anything else (a pipe, a file, a script), as the
openstack client does, so scripts never parse a table.
"""

from __future__ import annotations

import json
from typing import Any

FORMATS = ("json", "table", "value")


def default_format(is_terminal: bool) -> str:
    """Return ``table`` for a terminal, ``json`` otherwise."""
    return "table" if is_terminal else "json"


def render(result: Any, fmt: str) -> str:
    """Return ``result`` (an RPC answer: JSON-safe) as text in format ``fmt``.

    :raises ValueError: ``fmt`` is not one of :data:`FORMATS`.
    """
    if fmt == "json":
        return json.dumps(result, indent=2, sort_keys=True)
    if fmt == "value":
        return "\n".join(" ".join(_cell(v) for v in row) for row in _rows(result)[1])
    if fmt == "table":
        return _table(result)
    raise ValueError(f"unknown format {fmt!r}")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _rows(result: Any) -> tuple[list[str], list[list[Any]]]:
    """Return column names and rows: a mapping is one row per key."""
    if result is None:
        return [], []
    if isinstance(result, dict):
        return ["Field", "Value"], [[key, result[key]] for key in sorted(result)]
    if isinstance(result, list) and result and all(isinstance(r, dict) for r in result):
        columns = sorted({key for row in result for key in row})
        return columns, [[row.get(c) for c in columns] for row in result]
    if isinstance(result, list):
        return ["Value"], [[item] for item in result]
    return ["Value"], [[result]]


def _table(result: Any) -> str:
    columns, rows = _rows(result)
    if not columns:
        return ""
    if columns == ["Value"] and len(rows) == 1:
        return _cell(rows[0][0])
    import prettytable  # only a person at a terminal pays for it

    table = prettytable.PrettyTable(columns)
    table.align = "l"
    for row in rows:
        table.add_row([_cell(v) for v in row])
    return table.get_string()
