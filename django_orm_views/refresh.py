"""Refreshing materialized views."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, connections, transaction

from . import signals
from .conf import schema_name
from .exceptions import RefreshError
from .registry import dependency_order, views_for_database
from .views import BasePostgresView, PostgresMaterialisedViewMixin, describe, quote_identifier


def _view_class(view: type[BasePostgresView] | BasePostgresView) -> type[BasePostgresView]:
    return view if isinstance(view, type) else type(view)


def _require_materialized(view: type[BasePostgresView]) -> None:
    if not issubclass(view, PostgresMaterialisedViewMixin):
        raise RefreshError(
            f"View {describe(view)} is not a materialized view, so it cannot be refreshed. "
            "Add PostgresMaterialisedViewMixin first in its bases, or do not refresh it."
        )


def refresh_sql(view: type[BasePostgresView], *, concurrently: bool = False) -> str:
    """``REFRESH MATERIALIZED VIEW [CONCURRENTLY] "views"."<name>"``."""
    _require_materialized(view)
    if concurrently and not getattr(view, "pk_field", None):
        raise RefreshError(
            f"View {describe(view)} cannot be refreshed concurrently: it has no unique index. "
            "Set `pk_field` to its unique column(s), or refresh without concurrently."
        )
    target = f"{quote_identifier(schema_name())}.{quote_identifier(view.view_name)}"
    keyword = " CONCURRENTLY" if concurrently else ""
    return f"REFRESH MATERIALIZED VIEW{keyword} {target}"


@dataclass(frozen=True)
class RefreshResult:
    view: type[BasePostgresView]
    database: str
    concurrently: bool
    duration: float


def refresh_materialized_view(
    view: type[BasePostgresView] | BasePostgresView, concurrently: bool = False
) -> RefreshResult:
    """Refresh one materialized view (a class or an instance) on its database.

    Inside a transaction, the refresh is part of it.
    """
    view_class = _view_class(view)
    sql = refresh_sql(view_class, concurrently=concurrently)
    database = view_class.database
    started = time.perf_counter()
    try:
        with transaction.atomic(using=database), connections[database].cursor() as cursor:
            cursor.execute(sql)
    except DatabaseError as error:
        raise RefreshError(
            f"Refreshing view {describe(view_class)} on database '{database}' failed: "
            f"{str(error).strip()}. Its previous contents are still readable. Fix the data "
            "or the view, then refresh again."
        ) from error
    duration = time.perf_counter() - started
    signals.post_refresh.send(
        sender=view_class,
        view=view_class,
        database=database,
        duration=duration,
        concurrently=concurrently,
    )
    return RefreshResult(view_class, database, concurrently, duration)


def refresh_materialized_views(
    views: Iterable[type[BasePostgresView] | BasePostgresView] | None = None,
    *,
    database: str = "default",
    concurrently: bool | None = None,
) -> list[RefreshResult]:
    """Refresh all (or the given) materialized views of ``database``, every view after
    the views it depends on. ``concurrently=None`` refreshes concurrently where the view
    has a unique index and is populated."""
    from .compiler import render_view

    declared = views_for_database(database)
    materialized = [view for view in declared if issubclass(view, PostgresMaterialisedViewMixin)]
    if views is not None:
        chosen = {_view_class(view) for view in views}
        for view in chosen:
            _require_materialized(view)
        materialized = [view for view in materialized if view in chosen]
    connection = connections[database]
    schema = schema_name()
    classes = {view.view_name: view for view in declared}
    rendered = {view.view_name: render_view(view, connection, schema) for view in declared}
    order = dependency_order(
        {name: item.dependencies for name, item in rendered.items()}, classes, schema
    )
    wanted = {view.view_name for view in materialized}
    populated = _populated(connection, schema, wanted)
    results = []
    for name in order:
        if name not in wanted:
            continue
        view = classes[name]
        use_concurrently = concurrently
        if use_concurrently is None:
            use_concurrently = bool(getattr(view, "pk_field", None)) and populated.get(name, False)
        results.append(refresh_materialized_view(view, concurrently=use_concurrently))
    return results


def _populated(connection: Any, schema: str, names: set[str]) -> dict[str, bool]:
    if not names:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, c.relispopulated FROM pg_class AS c JOIN pg_namespace AS n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = ANY(%s)",
            [schema, sorted(names)],
        )
        return {name: bool(populated) for name, populated in cursor.fetchall()}
