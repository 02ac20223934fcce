"""The restore drill's consistency checks as SQL and pure functions: which tables, their row
counts, checksums of a few, and the comparisons with what the drill was told to expect.

A checksum is ``md5`` over every row's text form joined by newlines **in primary-key order**, so
two clusters holding the same rows give the same digest whatever their physical layout. Tables
without a primary key are counted, never checksummed (no stable order to digest).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

SEPARATOR: Final = "\x1f"  # psql -F: a unit separator cannot appear in a quoted identifier's text

DATABASES_SQL: Final = "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1"
# One row per user table: its quoted name, its row count, its primary-key columns (quoted, in
# key order; empty without a primary key). The counts come from one statement per table run
# through query_to_xml, so one query counts them all.
TABLES_SQL: Final = """
SELECT format('%I.%I', n.nspname, c.relname),
       (xpath('/row/n/text()', query_to_xml(
            format('SELECT count(*) AS n FROM %I.%I', n.nspname, c.relname), false, true, '')))[1]::text,
       coalesce((SELECT string_agg(format('%I', a.attname), ',' ORDER BY k.ord)
                 FROM pg_index i, unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                 JOIN pg_attribute a ON a.attnum = k.attnum
                 WHERE i.indrelid = c.oid AND i.indisprimary AND a.attrelid = c.oid), '')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
ORDER BY 1
"""


@dataclass(frozen=True)
class Table:
    name: str  # schema.table, each part quoted as needed (format('%I.%I'))
    rows: int
    primary_key: tuple[str, ...]  # quoted column names in key order


@dataclass
class Findings:
    """What the checks found: the result document's body."""

    databases: dict[str, dict[str, int]] = field(default_factory=dict)  # db -> table -> rows
    checksums: dict[str, str] = field(default_factory=dict)  # "db:schema.table" -> md5
    problems: list[str] = field(default_factory=list)


def parse_tables(text: str) -> list[Table]:
    tables = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split(SEPARATOR)
        if len(parts) != 3 or not parts[1].isdigit():
            raise ValueError(f"unexpected table row {line!r}")
        name, rows, key = parts
        tables.append(Table(name, int(rows), tuple(k for k in key.split(",") if k)))
    return tables


def checksum_sql(table: Table) -> str:
    """The digest of every row in primary-key order (``table`` came from TABLES_SQL: quoted)."""
    order = ", ".join(table.primary_key)
    return f"SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY {order}), '')) FROM {table.name} t"  # noqa: S608


def tables_to_checksum(tables: Sequence[Table], how_many: int) -> list[Table]:
    """The ``how_many`` largest tables with a primary key (ties by name): the data that matters."""
    keyed = [t for t in tables if t.primary_key]
    return sorted(keyed, key=lambda t: (-t.rows, t.name))[:how_many]


def missing_databases(expected: Sequence[str], restored: Sequence[str]) -> list[str]:
    """Databases the backup holds (pgBackRest's database-ref) that the restored cluster lacks."""
    return sorted(set(expected) - set(restored))


def compare_with_expected(findings: Findings, expected: Mapping[str, Any]) -> list[str]:
    """Differences from an expected result (same shape as the drill's result: ``databases``
    db -> table -> rows, ``checksums``); only what the expectation names is compared."""
    problems = []
    for database, tables in (expected.get("databases") or {}).items():
        restored = findings.databases.get(database)
        if restored is None:
            problems.append(f"database {database}: expected, not restored")
            continue
        for table, rows in tables.items():
            if table not in restored:
                problems.append(f"{database}:{table}: expected, not restored")
            elif restored[table] != rows:
                problems.append(f"{database}:{table}: {restored[table]} rows restored, {rows} expected")
    for key, digest in (expected.get("checksums") or {}).items():
        got = findings.checksums.get(key)
        if got != digest:
            problems.append(f"{key}: checksum {got or 'not computed'} restored, {digest} expected")
    return problems


def load_expected(text: str, source: str) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{source}: not JSON ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("databases", {}), dict) \
            or not isinstance(document.get("checksums", {}), dict):  # fmt: skip
        raise ValueError(f"{source}: expected an object with 'databases' and/or 'checksums'")
    return document


def report_lines(findings: Findings) -> list[str]:
    lines = []
    for database, tables in sorted(findings.databases.items()):
        lines.append(f"database {database}: {len(tables)} tables, {sum(tables.values())} rows")
        lines += [f"  {table}: {rows} rows" for table, rows in sorted(tables.items())]
    lines += [f"checksum {key}: {digest}" for key, digest in sorted(findings.checksums.items())]
    return lines
