"""System checks (``manage.py check``) for the declared views and the settings."""

from __future__ import annotations

import contextlib
import contextvars
import difflib
from collections.abc import Iterator
from typing import Any

from django.conf import settings as django_settings
from django.core import checks
from django.db import DatabaseError, connections

from .conf import DEFAULTS, get_settings, setting_problems
from .introspection import missing_roles, read_catalog
from .registry import all_views, find_problems, views_for_database
from .routing import allowed_on, app_label_of, explicit_database
from .views import describe

# Django calls every check with ``app_configs`` (and ``databases``) by keyword; these
# checks cover the whole project, whichever apps are named.


def check_views(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:  # noqa: ARG001
    return [
        checks.Error(problem.message, hint=problem.hint or None, obj=problem.view, id=problem.id)
        for problem in find_problems()
    ]


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:  # noqa: ARG001
    """Every ``ORM_VIEWS_*`` setting, by the rules that reading it enforces (conf.py)."""
    return [
        checks.Error(problem.message, hint=problem.hint, id=problem.id)
        for problem in setting_problems()
    ]


# Checks added for the Django integration (ids from E020 up) -----------------------------

# Set while this package's ``migrate`` command runs: its database checks only matter
# to a migrate that syncs the views when it ends (ORM_VIEWS_SYNC_ON_MIGRATE).
running_migrate: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "orm_views_running_migrate", default=False
)


@contextlib.contextmanager
def checks_for_migrate() -> Iterator[None]:
    token = running_migrate.set(True)
    try:
        yield
    finally:
        running_migrate.reset(token)


def check_setting_values(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:  # noqa: ARG001
    """``ORM_VIEWS_*`` settings that the package does not know, so silently ignores (a
    typo leaves a role without its grants)."""
    known = list(DEFAULTS)
    warnings: list[checks.CheckMessage] = []
    for name in sorted(dir(django_settings)):
        if not name.startswith("ORM_VIEWS_") or name in DEFAULTS:
            continue
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"Did you mean {close[0]}? " if close else ""
        warnings.append(
            checks.Warning(
                f"{name} is not a setting of django-orm-views; it has no effect.",
                hint=f"{hint}The settings are: {', '.join(known)}.",
                id="orm_views.W001",
            )
        )
    return warnings


def check_databases(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:  # noqa: ARG001
    """Views on databases that cannot hold them (without connecting)."""
    errors: list[checks.CheckMessage] = []
    aliases = list(connections)
    for view in all_views():
        alias = view.database
        if alias not in aliases:
            continue  # orm_views.E004
        vendor = connections[alias].vendor
        if vendor != "postgresql":
            errors.append(
                checks.Error(
                    f"View {describe(view)} lives on database {alias!r}, which uses the "
                    f"{vendor} backend; views need PostgreSQL.",
                    hint="Set the view's `database` to a PostgreSQL alias, or route its app "
                    "to one (a router's allow_migrate).",
                    obj=view,
                    id="orm_views.E023",
                )
            )
        if explicit_database(view) is None and not any(
            allowed_on(view, candidate) for candidate in aliases
        ):
            errors.append(
                checks.Error(
                    f"View {describe(view)} sets no `database`, and the database routers "
                    f"allow its app ({app_label_of(view)!r}) on none of: {', '.join(aliases)}.",
                    hint="Set the view's `database`, or let a router's allow_migrate() allow "
                    "its app on the database that holds the tables it reads.",
                    obj=view,
                    id="orm_views.E024",
                )
            )
    return errors


def check_database_contents(
    app_configs: Any = None,  # noqa: ARG001
    databases: Any = None,
    **kwargs: Any,
) -> list[checks.CheckMessage]:
    """Checks that query the databases: only run for ``check --database <alias>`` (and by
    ``migrate`` for its database when it syncs the views), like Django's own database
    checks."""
    if not databases or setting_problems():
        return []  # bad settings are reported by check_settings
    if running_migrate.get() and not get_settings().sync_on_migrate:
        return []  # a migrate that never syncs has no use for these checks

    errors: list[checks.CheckMessage] = []
    settings = get_settings()
    for alias in databases:
        if alias not in connections or connections[alias].vendor != "postgresql":
            continue
        if not views_for_database(alias):
            continue
        connection = connections[alias]
        try:
            missing = missing_roles(connection, settings.grant_select_to)
            snapshot = read_catalog(connection, settings.schema)
        except DatabaseError as error:
            errors.append(
                checks.Error(
                    f"Could not read database {alias!r} to check its views: {str(error).strip()}",
                    hint="Check the database settings and that the server is running.",
                    id="orm_views.E026",
                )
            )
            continue
        if missing:
            errors.append(
                checks.Error(
                    f"ORM_VIEWS_GRANT_SELECT_TO names role(s) that do not exist on database "
                    f"{alias!r}: {', '.join(missing)}. A sync would fail granting SELECT.",
                    hint="Create them (CREATE ROLE ...) or remove them from the setting.",
                    id="orm_views.E020",
                )
            )
        foreign = sorted(
            f"{item.kind} {item.name}"
            for item in snapshot.objects.values()
            if item.kind not in ("view", "materialized view")
        )
        if foreign:
            errors.append(
                checks.Error(
                    f"Schema {settings.schema!r} on database {alias!r} holds objects that are "
                    f"not views: {', '.join(foreign)}. A sync replaces the schema and would "
                    "drop them.",
                    hint="Move them to another schema, or set ORM_VIEWS_SCHEMA to a schema "
                    "used only for views.",
                    id="orm_views.E022",
                )
            )
    return errors
