"""Helpers shared by the tests: run a command and capture everything it says."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any
from urllib.parse import quote

from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

from django_orm_views.compiler import RenderedView, parse_select, splice_schema
from django_orm_views.introspection import parse_owner_marker
from django_orm_views.sql import qualified_name
from django_orm_views.views import BasePostgresView

REPOSITORY = Path(__file__).resolve().parent.parent


@dataclass
class CommandResult:
    stdout: str
    stderr: str
    exit_code: int


def run_command(name: str, *args: str, **options: Any) -> CommandResult:
    """Run a management command in this process, the way manage.py would: a
    CommandError or SystemExit becomes an exit code and its message goes to stderr."""
    stdout, stderr = StringIO(), StringIO()
    exit_code = 0
    try:
        call_command(name, *args, stdout=stdout, stderr=stderr, **options)
    except CommandError as error:
        stderr.write(f"CommandError: {error}\n")
        exit_code = error.returncode
    except SystemExit as error:
        exit_code = int(error.code or 0)
    return CommandResult(stdout.getvalue(), stderr.getvalue(), exit_code)


def database_url(alias: str = "default") -> str:
    """A URL for the database ``alias`` currently points to (the test database)."""
    settings = connections[alias].settings_dict
    host = settings["HOST"] or ""
    if host.startswith("/"):
        host = quote(host, safe="")
    port = f":{settings['PORT']}" if settings.get("PORT") else ""
    user = quote(settings["USER"] or "", safe="")
    password = f":{quote(settings['PASSWORD'], safe='')}" if settings.get("PASSWORD") else ""
    return f"postgresql://{user}{password}@{host}{port}/{settings['NAME']}"


def manage_py(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``manage.py`` in a new process against the test database."""
    return subprocess.run(
        [sys.executable, str(REPOSITORY / "manage.py"), *args],
        env=manage_py_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def manage_py_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = database_url()
    env.update(extra or {})
    return env


def fetch(
    sql: str, params: list[Any] | None = None, alias: str = "default"
) -> list[tuple[Any, ...]]:
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, params or [])
        return list(cursor.fetchall())


def relations_in(schema: str, alias: str = "default") -> dict[str, str]:
    """``{name: relkind}`` of the relations in ``schema`` as their readers see them: a
    view that points to a stored materialized view counts as that materialized view
    ('m'), and the stored view's indexes as the indexes of the schema ('i')."""
    rows = fetch(
        "SELECT c.relname, c.relkind, obj_description(r.oid, 'pg_rewrite') "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_rewrite r ON r.ev_class = c.oid AND r.rulename = '_RETURN' "
        "WHERE n.nspname = %s",
        [schema],
        alias,
    )
    found = {}
    for name, kind, rule_comment in rows:
        marker = parse_owner_marker(rule_comment, None)
        if marker is None or marker.storage is None:
            found[name] = kind
            continue
        stored = fetch(
            "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s AND (c.relname = %s OR c.oid IN "
            "(SELECT indexrelid FROM pg_index WHERE indrelid = "
            "(SELECT oid FROM pg_class WHERE relname = %s AND relnamespace = n.oid)))",
            [marker.storage, name, name],
            alias,
        )
        found.update({stored_name: stored_kind for stored_name, stored_kind in stored})
    return found


def stored_in(name: str, schema: str = "views", alias: str = "default") -> str:
    """The schema that holds the view ``name`` of ``schema``: its storage schema, for a
    view that points to a stored one (a materialized view), else ``schema``."""
    rows = fetch(
        "SELECT obj_description(r.oid, 'pg_rewrite') FROM pg_rewrite r "
        "WHERE r.ev_class = to_regclass(%s) AND r.rulename = '_RETURN'",
        [qualified_name(schema, name)],
        alias,
    )
    marker = parse_owner_marker(rows[0][0], None) if rows else None
    return marker.storage if marker is not None and marker.storage else schema


def oid_of(name: str, schema: str = "views", alias: str = "default") -> int:
    """The OID of the relation that is the view ``name`` to its readers: the stored
    materialized view, for a view of ``schema`` that points to one."""
    where = stored_in(name, schema, alias)
    return int(fetch("SELECT %s::regclass::oid", [qualified_name(where, name)], alias)[0][0])


LEFTOVERS_QUERY = r"""
SELECT nspname FROM pg_namespace WHERE nspname LIKE 'views\_\_staging%%'
UNION ALL
SELECT nspname FROM (
    SELECT nspname, row_number() OVER (
        ORDER BY substring(obj_description(oid, 'pg_namespace')
                           FROM '"replaced_at": ([0-9.]+)')::numeric DESC NULLS LAST
    ) AS position
    FROM pg_namespace WHERE nspname LIKE 'views\_\_old\_%%'
) AS generations
WHERE position > 1
UNION ALL
SELECT DISTINCT n.nspname
FROM pg_namespace AS n
LEFT JOIN pg_class AS c ON c.relnamespace = n.oid AND c.relkind IN ('v', 'm')
WHERE n.nspname LIKE 'views\_\_data\_%%' AND (c.oid IS NULL OR NOT EXISTS (
    SELECT 1 FROM pg_depend AS d JOIN pg_rewrite AS r ON r.oid = d.objid
    WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = c.oid AND r.ev_class <> c.oid
))
ORDER BY 1
"""


def leftovers(alias: str = "default") -> list[str]:
    """The working schemas that should not be there: a staging schema, previous
    generations beyond the newest, storage schemas that hold something nothing reads."""
    return [row[0] for row in fetch(LEFTOVERS_QUERY, [], alias)]


def schemas_like(pattern: str, alias: str = "default") -> list[str]:
    return [
        row[0]
        for row in fetch(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s ORDER BY 1", [pattern], alias
        )
    ]


def schema_state(alias: str = "default") -> list[tuple[Any, ...]]:
    """Everything a sync could change: the views schema and any staging or old schema,
    their relations, kinds, definitions, comments and privileges."""
    return fetch(
        "SELECT n.nspname, n.nspacl::text, c.relname, c.relkind, "
        "obj_description(c.oid, 'pg_class'), c.relacl::text, "
        "CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END "
        "FROM pg_namespace n LEFT JOIN pg_class c ON c.relnamespace = n.oid "
        "WHERE n.nspname = 'views' OR n.nspname LIKE 'views\\_\\_%%' ORDER BY 1, 3",
        [],
        alias,
    )


def declare_view(
    name: str, *, module: str, materialized: bool = True, **attributes: Any
) -> type[Any]:
    """A raw SQL view class declared by a test, named ``name`` in ``module`` (forgotten
    after the test when the ``declared_views`` fixture is used)."""
    from django_orm_views import PostgresMaterialisedViewMixin, PostgresViewFromSQL

    bases: tuple[type, ...] = (PostgresViewFromSQL,)
    if materialized:
        bases = (PostgresMaterialisedViewMixin, PostgresViewFromSQL)
    return type(name, bases, {"__module__": module, "__qualname__": name, **attributes})


def mark_as_working_schema(schema: str, *views: str, alias: str = "default") -> None:
    """Mark ``schema`` and its ``views`` the way a sync marks what it creates, to stand
    for a working schema an interrupted sync left behind."""
    with connections[alias].cursor() as cursor:
        cursor.execute(f"COMMENT ON SCHEMA \"{schema}\" IS 'django_orm_views:previous'")
        for view in views:
            cursor.execute(
                f'COMMENT ON RULE "_RETURN" ON "{schema}"."{view}" IS '
                '\'django_orm_views {"extra_roles": [], "fingerprint": "left"}\''
            )


def referenced_views(select_sql: str, schema: str) -> set[str]:
    """Names of the relations in ``schema`` that the query reads, found by the parser."""
    return set(parse_select(select_sql).references(schema))


def rewrite_schema(select_sql: str, schema: str, target_schema: str, names: Iterable[str]) -> str:
    """What a sync does to a view's SQL for its staging schema, on the whole text: the
    references to ``schema.<name>`` (for each of ``names``) point at ``target_schema``."""
    parsed = parse_select(select_sql)
    # The references locate the schema names in the statement alone (parsed.sql).
    references = [
        dataclasses.replace(
            reference,
            schema_start=reference.schema_start + parsed.start,
            schema_end=reference.schema_end + parsed.start,
        )
        for reference in parsed.schema_references(schema)
    ]
    return splice_schema(select_sql, references, target_schema, names)


def rendered_view(
    view: type[BasePostgresView],
    name: str | None = None,
    *,
    materialized: bool = False,
    with_data: bool = True,
    hidden: bool = False,
    reads: frozenset[str] = frozenset(),
) -> RenderedView:
    """A view as the compiler renders it, built by hand for tests without a database:
    ``SELECT 1 AS id``, reading the views ``reads``."""
    return RenderedView(
        view=view,
        name=name or view.__name__.lower(),
        database="default",
        materialized=materialized,
        hidden=hidden,
        with_data=with_data,
        select_sql="SELECT 1 AS id",
        indexes=(),
        references=reads,
        declared_dependencies=frozenset(),
    )
