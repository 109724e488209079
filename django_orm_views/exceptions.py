"""Every error the package raises derives from :class:`ViewError`."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured


class ViewError(Exception):
    """Base class of the package's errors; the message names the view and the fix."""


class InvalidSettingError(ViewError, ImproperlyConfigured):
    """An ``ORM_VIEWS_*`` setting has a value the package cannot use; the message names
    the setting, its value and the values allowed."""


class InvalidRoleNameError(ViewError, ValueError):
    """A role to grant SELECT to has a name no role can have (empty, NUL, too long)."""


class InvalidViewError(ViewError):
    """A view class is declared in a way that cannot be synced."""


class ViewDiscoveryError(ViewError):
    """Importing an app's ``postgres_views`` module failed."""


class DependencyError(ViewError):
    """The views' dependencies cannot be ordered."""


class MissingDependencyError(DependencyError):
    """A view reads another view that no class declares."""


class DependencyCycleError(DependencyError):
    """Views depend on each other in a cycle."""


class SyncError(ViewError):
    """The database refused a statement of a sync; nothing was changed."""


class ExternalDependentsError(SyncError):
    """Objects outside the views schema depend on views that a sync would replace."""


class ForeignObjectsError(SyncError):
    """The views schema holds objects the package did not create, which a sync would drop."""


class ConnectionLostError(SyncError):
    """A sync lost its database session; its transaction (and its lock) went with it."""


class ColumnMismatchError(InvalidViewError):
    """A readable view's model has a field that the view as built has no column for."""


class SyncLockTimeout(SyncError):
    """Another sync of the same database held the lock for too long."""


class UnknownRoleError(SyncError):
    """A role to grant SELECT to does not exist in the database."""


class RefreshError(ViewError, ValueError):
    """A materialized view could not be refreshed (a ValueError, as in django-orm-views 2)."""


class RefreshFailedError(RefreshError):
    """Refreshing several views, one or more failed; ``results`` holds every view's outcome
    (refreshed, failed or skipped), in the order they were attempted."""

    def __init__(self, message: str, results: list[Any]) -> None:
        super().__init__(message)
        self.results = results


class UnknownViewError(ViewError, LookupError):
    """A view name given on the command line matches no declared view."""


class ReadOnlyViewError(ViewError):
    """A write was attempted through a readable view's model."""


def sqlstate_of(error: BaseException | None) -> str | None:
    """The SQLSTATE of a database error (psycopg 2 or 3), however deeply wrapped."""
    while error is not None:
        code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
        if code:
            return str(code)
        error = error.__cause__
    return None
