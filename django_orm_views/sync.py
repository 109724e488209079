"""The public entry points of a sync: make the views schema of each database match the
declared views (:func:`sync_views`), or only work out what that would take
(:func:`plan_sync`). Planning lives in ``plan``, statements in ``ddl``, execution in
``apply``; the refresh helpers are re-exported here because django-orm-views 2 users
import them from ``django_orm_views.sync``."""

from __future__ import annotations

import time
from collections.abc import Sequence

from django.db import connections, router

from .apply import SyncReport, SyncResult, apply_plan, check_roles, compile_for, sync_lock
from .conf import get_settings
from .generations import Housekeeping, RollbackResult, prune_views, rollback_views
from .introspection import read_catalog
from .plan import ActionKind, SyncPlan, ViewAction, plan_sync
from .refresh import refresh_materialized_view, refresh_materialized_views
from .registry import databases_with_views

__all__ = [
    "ActionKind",
    "Housekeeping",
    "RollbackResult",
    "SyncPlan",
    "SyncReport",
    "SyncResult",
    "ViewAction",
    "apply_plan",
    "databases_to_sync",
    "plan_sync",
    "prune_views",
    "refresh_materialized_view",
    "refresh_materialized_views",
    "rollback_views",
    "sync_lock",
    "sync_views",
]


def databases_to_sync() -> list[str]:
    """The aliases a sync covers by default, in settings order: every one with declared
    views, and every other PostgreSQL database (not a test mirror, migrated by this
    app) whose views schema holds the package's views: with their classes gone (an app
    removed from INSTALLED_APPS), a sync drops them and ``--check`` reports them."""
    with_views = set(databases_with_views())
    schema = get_settings().schema
    aliases = []
    for alias in connections:
        if alias not in with_views:
            connection = connections[alias]
            if (
                connection.vendor != "postgresql"
                or connection.settings_dict.get("TEST", {}).get("MIRROR")
                or not router.allow_migrate(alias, "django_orm_views")
                or not read_catalog(connection, schema).holds_package_objects
            ):
                continue
        aliases.append(alias)
    return aliases


def sync_views(
    *,
    database: str | None = None,
    strategy: str | None = None,
    force: bool = False,
    dry_run: bool = False,
    grant_select_permissions_to_user: str | Sequence[str] | None = None,
    time_each_view: bool = False,
) -> SyncReport:
    """Make the views schema of ``database`` (default: every alias with views) match
    the declared views. With ``dry_run``, only work out the statements; with
    ``time_each_view``, measure each view's statements (one round trip each)."""
    aliases = [database] if database else databases_to_sync()
    results = []
    for alias in aliases:
        started = time.perf_counter()
        plan = plan_sync(
            database=alias,
            strategy=strategy,
            force=force,
            grant_select_permissions_to_user=grant_select_permissions_to_user,
        )
        if dry_run:
            result = SyncResult(database=alias, plan=plan, dry_run=True)
            if plan:
                check_roles(connections[alias], plan)
                result.statements = compile_for(connections[alias], plan).statements
            result.duration = time.perf_counter() - started
        else:
            result = apply_plan(plan, time_each_view=time_each_view)
            result.duration = time.perf_counter() - started
        results.append(result)
    return SyncReport(results)
