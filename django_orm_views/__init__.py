"""Declare PostgreSQL views as Python classes; ``manage.py sync_views`` creates them.

The public API is re-exported here. The names load on first use, because the view
classes are Django models and Django imports this package before its app registry is
ready.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "3.0.0.dev0"

_EXPORTS = {
    "views": (
        "HiddenViewMixin",
        "PostgresMaterialisedViewMixin",
        "PostgresMaterializedViewMixin",
        "PostgresViewFromQueryset",
        "PostgresViewFromSQL",
        "ReadableViewFromQueryset",
        "ReadableViewFromSQL",
    ),
    "sync": (
        "ActionKind",
        "SyncPlan",
        "SyncReport",
        "SyncResult",
        "ViewAction",
        "apply_plan",
        "plan_sync",
        "sync_views",
    ),
    "refresh": ("refresh_materialized_view", "refresh_materialized_views"),
    "exceptions": (
        "ColumnMismatchError",
        "ConnectionLostError",
        "DependencyCycleError",
        "DependencyError",
        "ExternalDependentsError",
        "ForeignObjectsError",
        "InvalidRoleNameError",
        "InvalidSettingError",
        "InvalidViewError",
        "MissingDependencyError",
        "ReadOnlyViewError",
        "RefreshError",
        "SyncError",
        "SyncLockTimeout",
        "UnknownRoleError",
        "UnknownViewError",
        "ViewDiscoveryError",
        "ViewError",
    ),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

# Written once, in _EXPORTS: the names are imported lazily (views.py defines models,
# which cannot be imported before Django's app registry is ready).
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'django_orm_views' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


# For type checkers and editors: the same names, imported eagerly and re-exported
# explicitly (``X as X``: a computed __all__ is invisible to them).
if TYPE_CHECKING:
    from .exceptions import (
        ColumnMismatchError as ColumnMismatchError,
        ConnectionLostError as ConnectionLostError,
        DependencyCycleError as DependencyCycleError,
        DependencyError as DependencyError,
        ExternalDependentsError as ExternalDependentsError,
        ForeignObjectsError as ForeignObjectsError,
        InvalidRoleNameError as InvalidRoleNameError,
        InvalidSettingError as InvalidSettingError,
        InvalidViewError as InvalidViewError,
        MissingDependencyError as MissingDependencyError,
        ReadOnlyViewError as ReadOnlyViewError,
        RefreshError as RefreshError,
        SyncError as SyncError,
        SyncLockTimeout as SyncLockTimeout,
        UnknownRoleError as UnknownRoleError,
        UnknownViewError as UnknownViewError,
        ViewDiscoveryError as ViewDiscoveryError,
        ViewError as ViewError,
    )
    from .refresh import (
        refresh_materialized_view as refresh_materialized_view,
        refresh_materialized_views as refresh_materialized_views,
    )
    from .sync import (
        ActionKind as ActionKind,
        SyncPlan as SyncPlan,
        SyncReport as SyncReport,
        SyncResult as SyncResult,
        ViewAction as ViewAction,
        apply_plan as apply_plan,
        plan_sync as plan_sync,
        sync_views as sync_views,
    )
    from .views import (
        HiddenViewMixin as HiddenViewMixin,
        PostgresMaterialisedViewMixin as PostgresMaterialisedViewMixin,
        PostgresMaterializedViewMixin as PostgresMaterializedViewMixin,
        PostgresViewFromQueryset as PostgresViewFromQueryset,
        PostgresViewFromSQL as PostgresViewFromSQL,
        ReadableViewFromQueryset as ReadableViewFromQueryset,
        ReadableViewFromSQL as ReadableViewFromSQL,
    )
