"""Which database a view lives in: its ``database`` attribute, else the database routers.

A view class that sets ``database`` lives there. One that does not follows its app's
tables: the routers' ``allow_migrate(db, app_label, model_name=..., orm_view=cls)`` is
asked for ``"default"`` first, then for the other aliases in settings order, and the
first alias it allows wins. Without routers (or when they have no opinion) that is
``"default"``, as in django-orm-views 2.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.db import DEFAULT_DB_ALIAS, connections, router


def app_label_of(view: type[Any]) -> str | None:
    """The label of the installed app that declares ``view`` (None if there is none)."""
    meta = getattr(view, "_meta", None)
    if meta is not None and not meta.abstract:
        return str(meta.app_label)
    if not apps.apps_ready:
        return None
    app_config = apps.get_containing_app_config(view.__module__)
    return app_config.label if app_config is not None else None


def migrate_hints(view: type[Any]) -> dict[str, Any]:
    """What routers receive for a view: ``model_name`` and ``model`` for readable views
    (they are Django models), and ``orm_view`` (the class) for every view."""
    hints: dict[str, Any] = {"orm_view": view}
    meta = getattr(view, "_meta", None)
    if meta is not None and not meta.abstract:
        hints["model_name"] = meta.model_name
        hints["model"] = view
    return hints


def allowed_on(view: type[Any], alias: str) -> bool:
    """Whether the routers allow ``view``'s app on the database ``alias``."""
    app_label = app_label_of(view)
    if app_label is None:
        return True
    return bool(router.allow_migrate(alias, app_label, **migrate_hints(view)))


def routed_database(view: type[Any]) -> str:
    """The alias a view without an explicit ``database`` lives in."""
    if not router.routers:
        return DEFAULT_DB_ALIAS
    aliases = list(connections)
    if DEFAULT_DB_ALIAS in aliases:
        aliases.remove(DEFAULT_DB_ALIAS)
        aliases.insert(0, DEFAULT_DB_ALIAS)
    for alias in aliases:
        if allowed_on(view, alias):
            return alias
    # No alias allowed: stay on "default"; the system check orm_views.E024 reports it.
    return DEFAULT_DB_ALIAS


def explicit_database(view: type[Any]) -> str | None:
    """The ``database`` the class (or a base class) sets itself, if any (the package's
    own ``database`` is a property that asks the routers, not a string)."""
    for klass in view.__mro__:
        value = klass.__dict__.get("database")
        if isinstance(value, str):
            return value
    return None
