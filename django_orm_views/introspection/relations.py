"""Questions about single relations of the views schema: where a live view really is,
the columns of the views, which roles exist, the statistics of materialized views."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..conf import PUBLIC_KEYWORD_ROLE
from ..sql import qualified_name, quote_literal
from .catalog import CatalogSnapshot
from .markers import parse_owner_marker

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

LOCATION_QUERY = """
SELECT obj_description(r.oid, 'pg_rewrite')
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_rewrite AS r ON r.ev_class = c.oid AND r.rulename = '_RETURN'
WHERE n.nspname = %s AND c.relname = %s
"""


def live_location(
    connection: BaseDatabaseWrapper, schema: str, name: str
) -> tuple[str, str | None]:
    """Where the live view ``name`` of ``schema`` really is (the storage schema of a
    materialized view, else ``schema``), and the generation that built it."""
    with connection.cursor() as cursor:
        cursor.execute(LOCATION_QUERY, [schema, name])
        row = cursor.fetchone()
    marker = parse_owner_marker(row[0], None) if row else None
    if marker is None:
        return schema, None
    return marker.storage or schema, marker.generation


VIEW_COLUMNS_QUERY = """
SELECT c.relname, array_agg(a.attname::text ORDER BY a.attnum)
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = %s AND c.relname = ANY(%s)
GROUP BY c.relname
"""


def view_columns(
    connection: BaseDatabaseWrapper, schema: str, names: Iterable[str]
) -> dict[str, list[str]]:
    """The columns of the relations ``names`` in ``schema``, in order, by name."""
    with connection.cursor() as cursor:
        cursor.execute(VIEW_COLUMNS_QUERY, [schema, sorted(names)])
        return {name: list(columns) for name, columns in cursor.fetchall()}


def missing_roles(connection: BaseDatabaseWrapper, roles: Iterable[str]) -> list[str]:
    """The roles that do not exist. ``public`` is PostgreSQL's PUBLIC keyword, no role:
    pg_roles never lists it."""
    roles = sorted(set(roles) - {PUBLIC_KEYWORD_ROLE})
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
JOIN unnest(%s::text[], %s::text[]) AS wanted (nspname, relname)
    ON wanted.nspname = n.nspname AND wanted.relname = c.relname
WHERE c.relkind = 'm'
ORDER BY c.relname
"""


def materialized_view_statistics(
    connection: BaseDatabaseWrapper, snapshot: CatalogSnapshot
) -> dict[str, MaterializedViewStatistics]:
    """Size and rows of each materialized view of the views schema (where it is
    stored), by name. Counting reads every populated view once, through the live
    schema (no lock that a reader would wait for); an unpopulated view cannot be read,
    so it is never counted. Two round trips."""
    locations = [
        (item.storage or snapshot.schema, name)
        for name, item in snapshot.objects.items()
        if item.materialized
    ]
    if not locations:
        return {}
    schema = snapshot.schema
    with connection.cursor() as cursor:
        cursor.execute(
            MATERIALIZED_VIEW_STATISTICS_QUERY,
            [[location for location, _ in locations], [name for _, name in locations]],
        )
        rows = cursor.fetchall()
        populated_names = [name for name, populated, _ in rows if populated]
        counts: dict[str, int] = {}
        if populated_names:
            # One query for all counts; names are quoted identifiers, never parameters.
            cursor.execute(
                " UNION ALL ".join(
                    f"SELECT {quote_literal(name)}, count(*) FROM {qualified_name(schema, name)}"
                    for name in populated_names
                )
            )
            counts = {name: int(count) for name, count in cursor.fetchall()}
    return {
        name: MaterializedViewStatistics(name, bool(populated), int(size), counts.get(name))
        for name, populated, size in rows
    }
