"""Definition diffs for ``sync_views --check --diff`` and ``--dry-run --diff``: what a
reviewer reads in a CI log.

Both sides are written by PostgreSQL itself (``pg_get_viewdef``, ``pg_get_indexdef``,
the relation's options), so that only real changes show: the declared views are
created in a schema of their own, empty, in a transaction that is rolled back.
"""

from __future__ import annotations

import difflib
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from django.db import DatabaseError, connections, transaction

from .compiler import splice_schema
from .exceptions import SyncError
from .plan import ActionKind, SyncPlan
from .sql import quote_identifier

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

__all__ = ["definition_diffs"]

DEFINITION_QUERY = """
SELECT c.relname,
       CASE c.relkind WHEN 'm' THEN 'materialized view' ELSE 'view' END,
       coalesce(array_to_string(c.reloptions, ', '), ''),
       pg_get_viewdef(c.oid, true),
       ARRAY(SELECT pg_get_indexdef(i.indexrelid) FROM pg_index AS i
             WHERE i.indrelid = c.oid ORDER BY 1)
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relkind IN ('v', 'm') AND c.relname = ANY(%s)
"""


def _definitions(
    connection: BaseDatabaseWrapper, schema: str, names: list[str], also: Sequence[str] = ()
) -> dict[str, list[str]]:
    """Each view's definition as PostgreSQL writes it, with the schema's own name left out
    (it differs between the two sides), as lines. Names in the schemas ``also`` print
    unqualified too (the storage schemas a stored view reads from)."""
    path = ", ".join(quote_identifier(name) for name in (schema, *also))
    with connection.cursor() as cursor:
        # Names in the schema print unqualified, names elsewhere qualified, on both sides.
        cursor.execute("SELECT set_config('search_path', %s, true)", [f"{path}, public"])
        cursor.execute(DEFINITION_QUERY, [schema, names])
        rows = cursor.fetchall()
    found = {}
    for name, kind, options, definition, indexes in rows:
        header = [f"-- {kind}" + (f" WITH ({options})" if options else "")]
        # pg_get_indexdef always names the schema (quoted only when it must be).
        own_indexes = [
            index.replace(f" ON {quote_identifier(schema)}.", " ON ").replace(
                f" ON {schema}.", " ON "
            )
            for index in indexes
        ]
        found[name] = header + definition.rstrip().splitlines() + own_indexes
    return found


def definition_diffs(plan: SyncPlan) -> dict[str, list[str]]:
    """A unified diff (``---``/``+++``, ``-``/``+`` lines) for each view the plan replaces
    that the database holds, by name. Changes nothing."""
    replaced = [
        action.name
        for action in plan.actions
        if action.kind is ActionKind.REPLACE
        and action.name in plan.snapshot.objects
        and plan.snapshot.objects[action.name].is_view
    ]
    if not replaced:
        return {}
    connection = connections[plan.database]
    scratch = f"{plan.schema}__diff_{uuid.uuid4().hex[:8]}"
    with transaction.atomic(using=plan.database):
        try:
            live = _live_definitions(connection, plan, replaced)
            _build(connection, plan, scratch)
            declared = _definitions(connection, scratch, replaced)
        except DatabaseError as error:
            raise SyncError(
                f"Cannot show the diff of database '{plan.database}': PostgreSQL refused a "
                f"declared view ({str(error).strip().splitlines()[0]}). Nothing was changed."
            ) from error
        finally:
            transaction.set_rollback(True, using=plan.database)
    return {
        name: list(
            difflib.unified_diff(
                live.get(name, []),
                declared.get(name, []),
                fromfile=f"{plan.schema}.{name} (database)",
                tofile=f"{plan.schema}.{name} (declared)",
                lineterm="",
            )
        )
        for name in replaced
    }


def _live_definitions(
    connection: BaseDatabaseWrapper, plan: SyncPlan, names: list[str]
) -> dict[str, list[str]]:
    """The live definitions of ``names``: of the stored view, for one the live schema
    only points to, read with the storage schemas of what it reads on the path."""
    objects = plan.snapshot.objects
    locations: dict[str, list[str]] = {}
    for name in names:
        locations.setdefault(objects[name].storage or plan.schema, []).append(name)
    stored = sorted({item.storage for item in objects.values() if item.storage is not None})
    found: dict[str, list[str]] = {}
    for location, group in locations.items():
        also = [] if location == plan.schema else [other for other in stored if other != location]
        found.update(_definitions(connection, location, group, also))
    return found


def _build(connection: BaseDatabaseWrapper, plan: SyncPlan, scratch: str) -> None:
    """Every declared view, empty, in ``scratch`` (references between them rewritten).
    The schema is never committed: its name only has to be unique."""
    names = frozenset(plan.order)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA {quote_identifier(scratch)}")
        for name in plan.order:
            item = plan.rendered[name]
            select_sql = splice_schema(item.select_sql, item.schema_references, scratch, names)
            for statement in item.create_statements(scratch, select_sql, populate=False):
                cursor.execute(statement)
