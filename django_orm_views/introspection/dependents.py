"""What depends on what: objects outside the package's schemas that use its views
(through a view, or their row type), and the views that read a table or a column."""

from __future__ import annotations

import graphlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, transaction

from .catalog import RELATION_KINDS, package_schemas, read_catalog
from .markers import storage_schema_prefix

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper


@dataclass(frozen=True)
class ExternalDependent:
    """An object outside the package's schemas that depends on a relation in ``schema``
    (on the relation itself, or on its row type)."""

    dependent: str
    dependent_kind: str
    view: str


EXTERNAL_DEPENDENTS_QUERY = """
SELECT DISTINCT
    COALESCE(
        quote_ident(dn.nspname) || '.' || quote_ident(dc.relname),
        pg_describe_object(d.classid, d.objid, d.objsubid)
    ),
    COALESCE(dc.relkind::text, ''),
    target.relname
FROM pg_depend AS d
JOIN pg_class AS target ON d.refclassid = 'pg_class'::regclass AND d.refobjid = target.oid
JOIN pg_namespace AS tn ON tn.oid = target.relnamespace
LEFT JOIN pg_rewrite AS r ON d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid
LEFT JOIN pg_class AS dc ON dc.oid = r.ev_class
LEFT JOIN pg_namespace AS dn ON dn.oid = dc.relnamespace
WHERE tn.nspname = %s
  AND d.deptype = 'n'
  AND (dn.nspname IS NULL OR NOT dn.nspname = ANY(%s))
  AND NOT (d.classid = 'pg_class'::regclass
           AND EXISTS (SELECT 1 FROM pg_class AS own
                       WHERE own.oid = d.objid AND own.relnamespace = tn.oid))
  AND NOT (d.classid = 'pg_rewrite'::regclass AND dc.oid = target.oid)
  AND d.classid <> 'pg_type'::regclass
UNION
SELECT
    pg_describe_object(d.classid, d.objid, d.objsubid),
    'row type',
    target.relname
FROM pg_class AS target
JOIN pg_namespace AS tn ON tn.oid = target.relnamespace
JOIN pg_type AS t ON t.oid = target.reltype OR (t.typelem = target.reltype AND t.typelem <> 0)
JOIN pg_depend AS d ON d.refclassid = 'pg_type'::regclass AND d.refobjid = t.oid
WHERE tn.nspname = %s
  AND d.deptype = 'n'
  AND NOT COALESCE((pg_identify_object(d.classid, d.objid, d.objsubid)).schema = ANY(%s), false)
ORDER BY 3, 1
"""

DEPENDENT_KINDS = {**RELATION_KINDS, "row type": "row type"}


def external_dependents(
    connection: BaseDatabaseWrapper,
    schema: str,
    names: Iterable[str] | None = None,
    *,
    package_schemas: Iterable[str] = (),
) -> list[ExternalDependent]:
    """Objects outside the package's schemas (``schema`` and ``package_schemas``) that
    depend on relations in ``schema``, optionally only on the relations called
    ``names``: views that read them, and table columns, functions and types that use
    their row type (a ``DROP ... CASCADE`` would silently take those too)."""
    own = sorted({schema, *package_schemas})
    with connection.cursor() as cursor:
        cursor.execute(EXTERNAL_DEPENDENTS_QUERY, [schema, own, schema, own])
        rows = cursor.fetchall()
    wanted = None if names is None else set(names)
    return [
        ExternalDependent(
            dependent=dependent, dependent_kind=DEPENDENT_KINDS.get(kind, "object"), view=view
        )
        for dependent, kind, view in rows
        if wanted is None or view in wanted
    ]


@dataclass(frozen=True)
class Dependent:
    """A view or materialized view that reads a target, directly or through other views."""

    oid: int
    schema: str
    name: str
    kind: str

    @property
    def qualified_name(self) -> str:
        return f"{self.schema}.{self.name}"


TARGET_QUERY = """
SELECT c.oid, COALESCE(a.attnum, 0)
FROM pg_class AS c
LEFT JOIN pg_attribute AS a
    ON a.attrelid = c.oid AND a.attname = %s AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.oid = to_regclass(%s)
"""

# Views whose rewrite rule reads one of the (relation, column) pairs (column 0: any).
DIRECT_DEPENDENTS_QUERY = """
SELECT DISTINCT c.oid, n.nspname, c.relname, c.relkind
FROM unnest(%s::oid[], %s::int[]) AS t(relid, attnum)
JOIN pg_depend AS d
    ON d.refclassid = 'pg_class'::regclass AND d.refobjid = t.relid
   AND (t.attnum = 0 OR d.refobjsubid = t.attnum)
JOIN pg_rewrite AS r ON d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid
JOIN pg_class AS c ON c.oid = r.ev_class
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE r.ev_class <> t.relid
"""

# The given views and every view that reads them, directly or not.
DEPENDENTS_CLOSURE_QUERY = """
WITH RECURSIVE closure(oid) AS (
    SELECT unnest(%s::oid[])
    UNION
    SELECT r.ev_class
    FROM closure AS p
    JOIN pg_depend AS d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = p.oid
    JOIN pg_rewrite AS r ON d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid
    WHERE r.ev_class <> p.oid
)
SELECT c.oid, n.nspname, c.relname, c.relkind
FROM closure
JOIN pg_class AS c ON c.oid = closure.oid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
"""

# Which of the given views reads which other one of them.
EDGES_QUERY = """
SELECT DISTINCT r.ev_class, d.refobjid
FROM pg_depend AS d
JOIN pg_rewrite AS r ON d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid
WHERE d.refclassid = 'pg_class'::regclass
  AND r.ev_class = ANY(%s::oid[]) AND d.refobjid = ANY(%s::oid[]) AND r.ev_class <> d.refobjid
"""


def _as_dependents(rows: Iterable[tuple[Any, ...]]) -> list[Dependent]:
    found = {
        int(oid): Dependent(int(oid), schema, name, RELATION_KINDS.get(kind, "relation"))
        for oid, schema, name, kind in rows
    }
    return sorted(found.values(), key=lambda item: (item.schema, item.name))


def resolve_targets(
    connection: BaseDatabaseWrapper, targets: Iterable[tuple[str, str | None]]
) -> list[tuple[int, int]]:
    """``(relation oid, attnum)`` of the ``(table, column)`` targets that exist (column
    None, attnum 0: the whole table)."""
    resolved: set[tuple[int, int]] = set()
    with connection.cursor() as cursor:
        for table, column in targets:
            cursor.execute(TARGET_QUERY, [column or "", connection.ops.quote_name(table)])
            row = cursor.fetchone()
            if row is None:
                continue
            oid, attnum = int(row[0]), int(row[1])
            if column and not attnum:
                continue  # a column the plan adds before it alters it
            resolved.add((oid, attnum))
    return sorted(resolved)


def dependents_of(
    connection: BaseDatabaseWrapper, targets: Iterable[tuple[str, str | None]]
) -> list[Dependent]:
    """Every view, in any schema, that reads one of the ``(table, column)`` targets
    directly or through other views."""
    direct = direct_readers(connection, resolve_targets(connection, targets))
    return dependents_closure(connection, [item.oid for item in direct]) if direct else []


def direct_readers(
    connection: BaseDatabaseWrapper, resolved: list[tuple[int, int]]
) -> list[Dependent]:
    """The views that read one of the ``(relation oid, attnum)`` pairs themselves
    (attnum 0: any of its columns)."""
    if not resolved:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            DIRECT_DEPENDENTS_QUERY,
            [[oid for oid, _ in resolved], [attnum for _, attnum in resolved]],
        )
        return _as_dependents(cursor.fetchall())


def dependents_closure(connection: BaseDatabaseWrapper, oids: list[int]) -> list[Dependent]:
    """The views ``oids`` and every view that reads them, directly or not."""
    if not oids:
        return []
    with connection.cursor() as cursor:
        cursor.execute(DEPENDENTS_CLOSURE_QUERY, [oids])
        return _as_dependents(cursor.fetchall())


def own_schemas(connection: BaseDatabaseWrapper, views_schema: str) -> set[str]:
    """The views schema and the working schemas the package marked as its own (never a
    schema whose name merely looks like one of them)."""
    return set(package_schemas(read_catalog(connection, views_schema)))


def drop_order(connection: BaseDatabaseWrapper, dependents: list[Dependent]) -> list[Dependent]:
    """Readers before the views they read."""
    oids = [item.oid for item in dependents]
    with connection.cursor() as cursor:
        cursor.execute(EDGES_QUERY, [oids, oids])
        edges = cursor.fetchall()
    sorter: graphlib.TopologicalSorter[int] = graphlib.TopologicalSorter()
    by_oid = {item.oid: item for item in dependents}
    for oid in oids:
        sorter.add(oid)
    for reader, read in edges:
        sorter.add(int(read), int(reader))  # ``read`` comes after ``reader``
    return [by_oid[oid] for oid in sorter.static_order()]


LINEAGE_QUERY = """
SELECT DISTINCT vn.nspname, v.relname, rn.nspname, rc.relname, rc.relkind::text, a.attname::text
FROM pg_class AS v
JOIN pg_namespace AS vn ON vn.oid = v.relnamespace
JOIN pg_rewrite AS r ON r.ev_class = v.oid
JOIN pg_depend AS d
    ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
   AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> v.oid
JOIN pg_class AS rc ON rc.oid = d.refobjid
JOIN pg_namespace AS rn ON rn.oid = rc.relnamespace
LEFT JOIN pg_attribute AS a
    ON a.attrelid = rc.oid AND a.attnum = d.refobjsubid AND d.refobjsubid > 0
WHERE (vn.nspname = %s OR vn.nspname LIKE %s) AND v.relkind IN ('v', 'm')
ORDER BY 1, 2, 3, 4, 6
"""


@dataclass
class Reads:
    """What one view reads directly: views of its schema, tables, and their columns."""

    views: set[str]
    tables: set[str]
    columns: set[str]


def view_reads(connection: BaseDatabaseWrapper, schema: str) -> dict[str, Reads]:
    """For each view and materialized view in ``schema``, what it reads directly, as the
    catalog records it (PostgreSQL resolved every name when it created the view). A
    view that points to a stored one reads what the stored one reads."""
    storage_pattern = storage_schema_prefix(schema).replace("_", "\\_") + "%"
    with connection.cursor() as cursor:
        cursor.execute(LINEAGE_QUERY, [schema, storage_pattern])
        rows = cursor.fetchall()
    stored_in = {(view_schema, view) for view_schema, view, *_ in rows if view_schema != schema}
    by_location: dict[tuple[str, str], Reads] = {}
    pointers: dict[str, tuple[str, str]] = {}
    for view_schema, view, read_schema, read_name, kind, column in rows:
        reads = by_location.setdefault((view_schema, view), Reads(set(), set(), set()))
        if view_schema == schema and read_name == view and (read_schema, read_name) in stored_in:
            pointers[view] = (read_schema, read_name)
        elif (read_schema == schema or (read_schema, read_name) in stored_in) and kind in (
            "v",
            "m",
        ):
            reads.views.add(read_name)
        else:
            reads.tables.add(f"{read_schema}.{read_name}")
            if column:
                reads.columns.add(f"{read_schema}.{read_name}.{column}")
    found = {
        view: reads for (view_schema, view), reads in by_location.items() if view_schema == schema
    }
    for view, location in pointers.items():
        found[view] = by_location.get(location, Reads(set(), set(), set()))
    return found


RELATION_QUERY = """
SELECT c.oid, n.nspname, c.relname, COALESCE(a.attnum, 0)
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_attribute AS a
    ON a.attrelid = c.oid AND a.attname = %s AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.oid = to_regclass(%s)
"""


def resolve_relation(
    connection: BaseDatabaseWrapper, text: str
) -> tuple[int, str, int, str | None] | None:
    """``TABLE`` or ``TABLE.COLUMN`` (the table optionally schema-qualified, as
    PostgreSQL's search path finds it) -> (oid, "schema.table", attnum, column), or None
    when there is no such table or column."""
    candidates: list[tuple[str, str | None]] = [(text, None)]
    if "." in text:
        table, _, column = text.rpartition(".")
        candidates.append((table, column))
    for table, wanted in candidates:
        try:
            # A savepoint: to_regclass refuses some names outright (a.b.c.d, or a.b.c
            # read as a reference to another database).
            with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
                cursor.execute(RELATION_QUERY, [wanted or "", table])
                row = cursor.fetchone()
        except DatabaseError:
            continue
        if row is not None and (wanted is None or row[3]):
            return int(row[0]), f"{row[1]}.{row[2]}", int(row[3]), wanted
    return None
