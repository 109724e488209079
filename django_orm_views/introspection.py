"""Catalog queries: what the database holds in the views schema and around it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .compiler import parse_fingerprint_comment, quote_literal
from .views import quote_identifier

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

RELATION_KINDS = {
    "v": "view",
    "m": "materialized view",
    "r": "table",
    "p": "table",
    "f": "foreign table",
    "S": "sequence",
}


def staging_schema_name(schema: str) -> str:
    return f"{schema}__staging"


def old_schema_prefix(schema: str) -> str:
    return f"{schema}__old_"


@dataclass(frozen=True)
class DatabaseObject:
    """A relation found in the views schema."""

    name: str
    kind: str
    fingerprint: str | None
    grantees: frozenset[str]
    populated: bool

    @property
    def materialized(self) -> bool:
        return self.kind == "materialized view"


@dataclass(frozen=True)
class CatalogSnapshot:
    """The views schema as the database holds it, read in one query."""

    schema: str
    schema_exists: bool
    schema_grantees: frozenset[str] = frozenset()
    objects: dict[str, DatabaseObject] = field(default_factory=dict)
    leftover_schemas: tuple[str, ...] = ()


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


CATALOG_QUERY = """
SELECT
    n.nspname,
    ARRAY(
        SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END
        FROM aclexplode(n.nspacl) AS a
        WHERE a.privilege_type = 'USAGE' AND a.grantee <> n.nspowner
    ),
    c.relname,
    c.relkind,
    obj_description(c.oid, 'pg_class'),
    c.relispopulated,
    ARRAY(
        SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END
        FROM aclexplode(c.relacl) AS a
        WHERE a.privilege_type = 'SELECT' AND a.grantee <> c.relowner
    )
FROM pg_namespace AS n
LEFT JOIN pg_class AS c
    ON c.relnamespace = n.oid AND c.relkind IN ('v', 'm', 'r', 'p', 'f', 'S')
WHERE n.nspname = %s OR n.nspname = %s OR n.nspname LIKE %s
"""


def read_catalog(connection: BaseDatabaseWrapper, schema: str) -> CatalogSnapshot:
    """The views schema's relations (kind, fingerprint, SELECT grantees) and the
    schemas that an interrupted sync may have left behind. One round trip."""
    staging = staging_schema_name(schema)
    old_pattern = _like_escape(old_schema_prefix(schema)) + "%"
    with connection.cursor() as cursor:
        cursor.execute(CATALOG_QUERY, [schema, staging, old_pattern])
        rows = cursor.fetchall()
    schema_exists = False
    schema_grantees: frozenset[str] = frozenset()
    objects: dict[str, DatabaseObject] = {}
    leftovers: set[str] = set()
    for nspname, nsp_grantees, relname, relkind, comment, populated, grantees in rows:
        if nspname != schema:
            leftovers.add(nspname)
            continue
        schema_exists = True
        schema_grantees = frozenset(nsp_grantees or ())
        if relname is None:
            continue
        objects[relname] = DatabaseObject(
            name=relname,
            kind=RELATION_KINDS.get(relkind, relkind),
            fingerprint=parse_fingerprint_comment(comment),
            grantees=frozenset(grantees or ()),
            populated=bool(populated),
        )
    return CatalogSnapshot(
        schema=schema,
        schema_exists=schema_exists,
        schema_grantees=schema_grantees,
        objects=objects,
        leftover_schemas=tuple(sorted(leftovers)),
    )


@dataclass(frozen=True)
class ExternalDependent:
    """An object outside ``schema`` that depends on a relation inside it."""

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
  AND (dc.oid IS NULL OR dn.nspname <> %s)
  AND (dn.nspname IS NULL OR NOT (dn.nspname = %s OR dn.nspname LIKE %s))
  AND NOT (d.classid = 'pg_class'::regclass
           AND EXISTS (SELECT 1 FROM pg_class AS own
                       WHERE own.oid = d.objid AND own.relnamespace = tn.oid))
  AND NOT (d.classid = 'pg_rewrite'::regclass AND dc.oid = target.oid)
  AND d.classid <> 'pg_type'::regclass
ORDER BY 3, 1
"""


def external_dependents(
    connection: BaseDatabaseWrapper,
    schema: str,
    names: Iterable[str] | None = None,
    *,
    views_schema: str | None = None,
) -> list[ExternalDependent]:
    """Objects outside ``schema`` (views in other schemas, functions, ...) that depend on
    relations in it, optionally only on the relations called ``names``.

    Objects in the staging and old schemas of ``views_schema`` (default: ``schema``) are
    a sync's own debris, not outside objects: they are never reported.
    """
    views_schema = views_schema or schema
    debris_pattern = _like_escape(old_schema_prefix(views_schema)) + "%"
    with connection.cursor() as cursor:
        cursor.execute(
            EXTERNAL_DEPENDENTS_QUERY,
            [schema, schema, staging_schema_name(views_schema), debris_pattern],
        )
        rows = cursor.fetchall()
    wanted = None if names is None else set(names)
    kinds = RELATION_KINDS
    return [
        ExternalDependent(dependent=dependent, dependent_kind=kinds.get(kind, "object"), view=view)
        for dependent, kind, view in rows
        if wanted is None or view in wanted
    ]


def missing_roles(connection: BaseDatabaseWrapper, roles: Iterable[str]) -> list[str]:
    roles = sorted(set(roles))
    if not roles:
        return []
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", [roles])
        existing = {row[0] for row in cursor.fetchall()}
    return [role for role in roles if role not in existing]


@dataclass(frozen=True)
class MaterializedViewStatistics:
    """Size on disk (with its indexes) and exact row count of a materialized view."""

    name: str
    populated: bool
    size_bytes: int
    rows: int | None


MATERIALIZED_VIEW_STATISTICS_QUERY = """
SELECT c.relname, c.relispopulated, pg_total_relation_size(c.oid)
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relkind = 'm'
ORDER BY c.relname
"""


def materialized_view_statistics(
    connection: BaseDatabaseWrapper, schema: str
) -> dict[str, MaterializedViewStatistics]:
    """Size and rows of each materialized view in ``schema``, by name. Counting reads
    every populated view once (no lock that a reader would wait for); an unpopulated
    view cannot be read, so it is never counted. Two round trips."""
    with connection.cursor() as cursor:
        cursor.execute(MATERIALIZED_VIEW_STATISTICS_QUERY, [schema])
        rows = cursor.fetchall()
        populated_names = [name for name, populated, _ in rows if populated]
        counts: dict[str, int] = {}
        if populated_names:
            # One query for all counts; names are quoted identifiers, never parameters.
            cursor.execute(
                " UNION ALL ".join(
                    f"SELECT {quote_literal(name)}, count(*) FROM "
                    f"{quote_identifier(schema)}.{quote_identifier(name)}"
                    for name in populated_names
                )
            )
            counts = {name: int(count) for name, count in cursor.fetchall()}
    return {
        name: MaterializedViewStatistics(name, bool(populated), int(size), counts.get(name))
        for name, populated, size in rows
    }
