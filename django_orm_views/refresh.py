"""Refreshing materialized views, without blocking the people who read them.

A materialized view is refreshed in one of three ways (:class:`RefreshMode`):

- ``concurrently``: ``REFRESH MATERIALIZED VIEW CONCURRENTLY``. Readers keep reading the
  old rows while the new ones are computed and merged in. PostgreSQL allows it only for
  a populated view with a unique index (``pk_field``).
- ``swap``: the view (and the views that depend on it) is built again beside the live
  one, in a staging schema, with its indexes and grants, and swapped in by one short
  transaction (:func:`rebuild_views`). Readers see the old
  contents, then the new ones, and never wait for the build.
- ``blocking``: a plain ``REFRESH MATERIALIZED VIEW``. It holds an ACCESS EXCLUSIVE lock
  for its whole duration, so every reader waits. Only :func:`refresh_materialized_view`,
  the django-orm-views 2 function, does this, and only when asked to.

:func:`refresh_materialized_views` refreshes concurrently where PostgreSQL allows it and
by swap elsewhere, every view after the views it depends on. Each refresh, successful
or not, is recorded in the history (:mod:`django_orm_views.history`) and announced by the
``post_refresh`` or ``refresh_failed`` signal.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, connections, transaction
from django.utils import timezone

from . import signals
from .apply import SyncResult, apply_plan, sync_lock
from .conf import get_settings, schema_name
from .exceptions import (
    ExternalDependentsError,
    RefreshError,
    RefreshFailedError,
    SyncLockTimeout,
    ViewError,
)
from .generations import housekeeping
from .history import record_refresh
from .introspection import live_location, read_catalog
from .plan import ActionKind, SyncPlan, compare, desired_state, plan_sync, resolve_roles
from .registry import find_view
from .results import RefreshMode, RefreshResult
from .sql import qualified_name
from .views import (
    BasePostgresView,
    PostgresMaterialisedViewMixin,
    describe,
    has_unique_index,
    refresh_sql,
    require_materialized,
)

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

logger = logging.getLogger("django_orm_views")

__all__ = [
    "RefreshMode",
    "RefreshResult",
    "refresh_materialized_view",
    "refresh_materialized_views",
    "refresh_sql",
]


def _view_class(view: type[BasePostgresView] | BasePostgresView) -> type[BasePostgresView]:
    return view if isinstance(view, type) else type(view)


def refresh_materialized_view(
    view: type[BasePostgresView] | BasePostgresView, concurrently: bool = False
) -> RefreshResult:
    """Refresh one materialized view (a class or an instance) on its database, as
    django-orm-views 2 did: ``REFRESH MATERIALIZED VIEW [CONCURRENTLY]``.

    Without ``concurrently`` readers wait for the whole refresh;
    :func:`refresh_materialized_views` never makes them wait. Inside a transaction, the
    refresh is part of it. Raises RefreshError, naming the view and PostgreSQL's error,
    when the refresh fails; the view then keeps its previous contents.
    """
    view_class = _view_class(view)
    refresh_sql(view_class, concurrently=concurrently)  # validates before any I/O
    result = _refresh_in_place(view_class, view_class.database, concurrently=concurrently)
    if result.error is not None:
        raise RefreshError(result.error)
    return result


def refresh_materialized_views(
    views: Iterable[type[BasePostgresView] | BasePostgresView | str] | None = None,
    *,
    database: str = "default",
    concurrently: bool | None = None,
    strict: bool = False,
) -> list[RefreshResult]:
    """Refresh every materialized view of ``database`` (or the ``views`` given: classes,
    instances, view names or ``app_label.ClassName``), each after the views it depends on.

    ``concurrently=None`` refreshes concurrently the views that have a unique index and
    are populated, and rebuilds the others beside the live ones (swap); ``strict=True``
    makes those others an error instead. ``concurrently=True`` requires every view to be
    refreshed concurrently; ``concurrently=False`` rebuilds every view by swap. No reader
    is ever blocked for longer than the swap's short transaction.

    Everything is checked before anything is refreshed. A view whose refresh fails keeps
    its previous contents; the views that do not depend on it are still refreshed, then
    RefreshFailedError names every failure (its ``results`` holds each view's outcome).
    """
    plan = plan_sync(database=database)
    wanted = _chosen_views(views, plan, database)
    modes = _refresh_modes(plan, wanted, database, concurrently=concurrently, strict=strict)
    results: list[RefreshResult] = []
    failed: set[str] = set()
    done: set[str] = set()
    for name in plan.order:
        if name not in wanted or name in done:
            continue
        view = wanted[name]
        blocked = sorted(_dependencies(plan, name) & failed)
        if blocked:
            failed.add(name)
            results.append(_skipped(view, database, modes[name], blocked))
            continue
        if modes[name] is RefreshMode.CONCURRENTLY:
            batch = [_refresh_in_place(view, database, concurrently=True)]
        else:
            batch = _refresh_by_swap(view, database)
        for result in batch:
            results.append(result)
            (done if result.succeeded else failed).add(result.view.view_name)
    if not any(result.mode is RefreshMode.SWAP for result in results):
        # A refresh by swap is a sync, which did it already: drop a previous generation
        # older than ORM_VIEWS_KEEP_PREVIOUS_SECONDS, and what nothing points to.
        housekeeping(connections[database], plan.schema)
    failures = [result for result in results if not result.succeeded]
    if failures:
        raise RefreshFailedError(
            "\n".join(result.error for result in failures if result.error), results
        )
    return results


def _refresh_modes(
    plan: SyncPlan,
    wanted: dict[str, type[BasePostgresView]],
    database: str,
    *,
    concurrently: bool | None,
    strict: bool,
) -> dict[str, RefreshMode]:
    """How each wanted view is refreshed; every problem of every view, raised together
    before anything is refreshed."""
    modes: dict[str, RefreshMode] = {}
    problems: list[str] = []
    for name, view in wanted.items():
        existing = plan.snapshot.objects.get(name)
        if existing is None or not existing.materialized:
            problems.append(
                f"View {describe(view)} is not a materialized view in the {plan.schema!r} "
                f"schema of database '{database}' yet. Run sync_views first."
            )
            continue
        mode, problem = _choose_mode(view, existing.populated, concurrently, strict)
        if problem is not None:
            problems.append(problem)
        else:
            modes[name] = mode
    if problems:
        raise RefreshError("\n".join([*problems, "Nothing was refreshed."]))
    if RefreshMode.SWAP in modes.values():
        _raise_if_out_of_sync(
            plan, [name for name in plan.order if modes.get(name) is RefreshMode.SWAP]
        )
    return modes


def _skipped(
    view: type[BasePostgresView], database: str, mode: RefreshMode, blocked: list[str]
) -> RefreshResult:
    return RefreshResult(
        view,
        database,
        mode,
        0.0,
        timezone.now(),
        error=f"View {describe(view)} was not refreshed: it depends on "
        f"{', '.join(blocked)}, whose refresh failed.",
        skipped=True,
    )


def _chosen_views(
    views: Iterable[type[BasePostgresView] | BasePostgresView | str] | None,
    plan: SyncPlan,
    database: str,
) -> dict[str, type[BasePostgresView]]:
    """The materialized views to refresh, by name."""
    if views is None:
        return {
            name: item.view
            for name, item in plan.rendered.items()
            if issubclass(item.view, PostgresMaterialisedViewMixin)
        }
    chosen: dict[str, type[BasePostgresView]] = {}
    for view in views:
        view_class = find_view(view, database) if isinstance(view, str) else _view_class(view)
        require_materialized(view_class)
        if view_class.database != database:
            raise RefreshError(
                f"View {describe(view_class)} lives on database '{view_class.database}', not "
                f"'{database}'. Refresh it with database='{view_class.database}' "
                f"(--database {view_class.database})."
            )
        chosen[view_class.view_name] = view_class
    return chosen


def _choose_mode(
    view: type[BasePostgresView], populated: bool, concurrently: bool | None, strict: bool
) -> tuple[RefreshMode, str | None]:
    if concurrently is False:
        return RefreshMode.SWAP, None
    if has_unique_index(view) and populated:
        return RefreshMode.CONCURRENTLY, None
    if concurrently is None and not strict:
        return RefreshMode.SWAP, None
    if not has_unique_index(view):
        reason = "it has no unique index"
        fix = "Set `pk_field` to its unique column(s), or"
    else:
        reason = "it has never been populated (with_data = False)"
        fix = "Refresh it once"
    return RefreshMode.SWAP, (
        f"View {describe(view)} cannot be refreshed concurrently: {reason}. {fix} "
        "without --concurrently and --strict (concurrently=True, strict=True) to have it "
        "rebuilt beside the live view."
    )


def _raise_if_out_of_sync(plan: SyncPlan, names: list[str]) -> None:
    """A swap rebuilds from the declared views, so it would also apply any change that
    sync_views has not applied yet: refuse rather than sync behind the user's back."""
    changes = [action.describe() for action in plan.actions if action.kind is not ActionKind.KEEP]
    if changes:
        raise RefreshError(
            f"Database '{plan.database}' differs from the declared views "
            f"({'; '.join(changes)}). Refreshing {', '.join(names)} rebuilds views beside "
            "the live ones, which would apply these changes too. Nothing was refreshed. Run "
            "sync_views first, or refresh only views that can be refreshed concurrently."
        )


def _dependencies(plan: SyncPlan, name: str) -> set[str]:
    """Every view that ``name`` reads, directly or through other views."""
    found: set[str] = set()
    pending = list(plan.rendered[name].dependencies)
    while pending:
        dependency = pending.pop()
        if dependency not in found:
            found.add(dependency)
            if dependency in plan.rendered:
                pending.extend(plan.rendered[dependency].dependencies)
    return found


# Doing one refresh ----------------------------------------------------------------------


@contextlib.contextmanager
def _sync_lock(connection: BaseDatabaseWrapper) -> Iterator[None]:
    """Hold the database's sync lock during a refresh in place: a sync waits for it
    instead of failing on the refresh's lock on the view, and two refreshes of one
    database do not run at once."""
    wait = get_settings().sync_lock_wait
    try:
        with sync_lock(connection, schema_name(), wait):
            yield
    except SyncLockTimeout as error:
        raise RefreshError(
            f"A sync of database '{connection.alias}' held the sync lock for more than "
            f"{wait:g}s. Let it finish, then refresh again."
        ) from error


def _refresh_in_place(
    view: type[BasePostgresView], database: str, *, concurrently: bool
) -> RefreshResult:
    refresh_sql(view, concurrently=concurrently)  # validates before any I/O
    mode = RefreshMode.CONCURRENTLY if concurrently else RefreshMode.BLOCKING
    connection = connections[database]
    started_at = timezone.now()
    started = time.perf_counter()
    generation = None
    try:
        with _sync_lock(connection):
            started = time.perf_counter()
            with transaction.atomic(using=database), connection.cursor() as cursor:
                # The live view points to where the materialized view is stored.
                stored_in, generation = live_location(connection, schema_name(), view.view_name)
                cursor.execute(refresh_sql(view, concurrently=concurrently, schema=stored_in))
    except (DatabaseError, RefreshError) as error:
        message = str(error) if isinstance(error, RefreshError) else _failure(view, database, error)
        return _finish(
            RefreshResult(
                view,
                database,
                mode,
                time.perf_counter() - started,
                started_at,
                error=message,
                generation=generation,
            )
        )
    duration = time.perf_counter() - started
    rows = _count_rows(connection, view.view_name)
    return _finish(
        RefreshResult(view, database, mode, duration, started_at, rows=rows, generation=generation)
    )


def rebuild_views(
    views: Iterable[type[BasePostgresView]], *, database: str = "default"
) -> SyncResult:
    """Rebuild ``views`` (and the views that depend on them) beside the live ones and
    swap them in: fresh contents for a materialized view without blocking its readers."""
    desired = desired_state(database)
    snapshot = read_catalog(connections[database], desired.schema)
    plan = compare(
        desired,
        snapshot,
        # The roles of the settings and those the last sync recorded in its markers
        # (--grant-select-permissions-to-user); never whatever else the catalog holds.
        roles=resolve_roles(sorted(snapshot.extra_roles)),
        strategy="swap",
        force=False,
        rebuild=frozenset(view.view_name for view in views),
    )
    return apply_plan(plan)


def _refresh_by_swap(view: type[BasePostgresView], database: str) -> list[RefreshResult]:
    """Rebuild ``view`` beside the live one and swap it in; the materialized views that
    depend on it are rebuilt (so refreshed) with it, and reported too."""
    started_at = timezone.now()
    started = time.perf_counter()
    try:
        result = rebuild_views([view], database=database)
    except ViewError as error:
        return [
            _finish(
                RefreshResult(
                    view,
                    database,
                    RefreshMode.SWAP,
                    time.perf_counter() - started,
                    started_at,
                    error=_failure(view, database, error),
                )
            )
        ]
    duration = time.perf_counter() - started
    connection = connections[database]
    results = []
    for action in result.plan.actions:
        if action.kind is not ActionKind.REPLACE or action.object_kind != "materialized view":
            continue
        rebuilt = result.plan.rendered[action.name].view
        own = action.name == view.view_name
        results.append(
            _finish(
                RefreshResult(
                    rebuilt,
                    database,
                    RefreshMode.SWAP,
                    duration if own else result.view_timings.get(action.name, 0.0),
                    started_at,
                    rows=_count_rows(connection, action.name),
                    rebuilt_with=None if own else view.view_name,
                    generation=result.generation,
                )
            )
        )
    return results


def _failure(view: type[BasePostgresView], database: str, error: BaseException) -> str:
    """The message of a failed refresh: the view, PostgreSQL's error, and that readers
    still have the previous contents."""
    if isinstance(error, ExternalDependentsError):
        return (
            f"Refreshing view {describe(view)} on database '{database}' failed: it has to be "
            f"rebuilt beside the live view, and {error} Alternatively give it a unique index "
            "(`pk_field`) so that it can be refreshed concurrently."
        )
    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, DatabaseError):
        cause = cause.__cause__
    text = _one_line(cause if cause is not None else error)
    return (
        f"Refreshing view {describe(view)} on database '{database}' failed: {text}. Its "
        "previous contents are still readable. Fix the data or the view, then refresh again."
    )


def _one_line(error: BaseException) -> str:
    """PostgreSQL's message, its DETAIL and HINT on one line (they read better in logs),
    without its CONTEXT (internal statements and temporary table names)."""
    driver_error = error.__cause__ or error
    diagnostics = getattr(driver_error, "diag", None)
    primary = getattr(diagnostics, "message_primary", None)
    if not primary:
        return " ".join(str(error).split()).rstrip(".")
    parts = [primary.rstrip(".")]
    for label, attribute in (("DETAIL", "message_detail"), ("HINT", "message_hint")):
        text = getattr(diagnostics, attribute, None)
        if text:
            parts.append(f"{label}: {text.rstrip('.')}")
    return " ".join(" ".join(parts).split())


def _count_rows(connection: BaseDatabaseWrapper, name: str) -> int | None:
    target = qualified_name(schema_name(), name)
    try:
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {target}")
            row = cursor.fetchone()
    except DatabaseError:
        return None
    return int(row[0]) if row else None


def _finish(result: RefreshResult) -> RefreshResult:
    """Record ``result`` in the history and send its signal."""
    record_refresh(
        view=result.view.view_name,
        database=result.database,
        mode=result.mode.value,
        started_at=result.started_at,
        duration=result.duration,
        rows=result.rows,
        error=result.error,
        generation=result.generation,
    )
    common: dict[str, Any] = {
        "sender": result.view,
        "view": result.view,
        "database": result.database,
        "duration": result.duration,
        "mode": result.mode.value,
        "started_at": result.started_at,
    }
    if result.succeeded:
        responses = signals.post_refresh.send_robust(
            concurrently=result.concurrently, rows=result.rows, **common
        )
    else:
        responses = signals.refresh_failed.send_robust(error=result.error, **common)
    # Receivers are monitoring hooks: one that fails must not stop the other views from
    # being refreshed, so its error is logged rather than raised.
    for receiver, response in responses:
        if isinstance(response, Exception):
            logger.error(
                "Receiver %r of the refresh signal for %s failed: %s",
                receiver,
                result.view.view_name,
                response,
                exc_info=response,
            )
    return result
