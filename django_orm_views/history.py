"""The refresh history, and the status of every view that ``list_views`` shows.

Each refresh of a materialized view is recorded as a :class:`RefreshRecord` (the
package's own table, created by ``migrate``) in the database that Django's routers
choose for that model: ``default`` unless a router says otherwise, whichever database
the view lives on.

A failed refresh is recorded too. Its own transaction has been rolled back by then, so
the record is written after it: in autocommit mode as a transaction of its own; inside
a transaction of the caller's (``atomic()``, a test case), as part of that transaction,
so it is kept if the caller commits and goes if the caller rolls back, like everything
else the caller did. When that transaction can no longer be written to, or the table
does not exist yet, the record is skipped with a warning: history must never turn a
refresh into a failure.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, connections, router, transaction
from django.db.models import OuterRef, QuerySet, Subquery

from .conf import refresh_history_limit
from .introspection import materialized_view_statistics
from .lineage import ViewLineage, lineage
from .models import RefreshRecord
from .plan import ActionKind, SyncPlan, plan_sync
from .views import describe

logger = logging.getLogger("django_orm_views")

__all__ = [
    "ViewStatus",
    "last_refreshes",
    "record_refresh",
    "refresh_history",
    "view_statuses",
]


def _model() -> type[RefreshRecord]:
    return RefreshRecord


def record_refresh(
    *,
    view: str,
    database: str,
    mode: str,
    started_at: datetime.datetime,
    duration: float,
    rows: int | None = None,
    error: str | None = None,
    generation: str | None = None,
) -> RefreshRecord | None:
    """Add one refresh to the history and drop that view's oldest records beyond
    ``ORM_VIEWS_REFRESH_HISTORY_LIMIT``. Returns the record, or None when it could not
    be written (see the module's docstring)."""
    model = _model()
    alias = router.db_for_write(model)
    connection = connections[alias]
    if connection.in_atomic_block and connection.needs_rollback:
        logger.warning(
            "Refresh of %s on database '%s' not recorded in the history: the surrounding "
            "transaction on database '%s' has failed and must be rolled back first.",
            view,
            database,
            alias,
        )
        return None
    try:
        # A savepoint inside the caller's transaction, a transaction of its own otherwise:
        # a missing table then leaves the caller's transaction usable.
        with transaction.atomic(using=alias):
            record = model.objects.using(alias).create(
                view=view,
                database=database,
                mode=mode,
                started_at=started_at,
                duration=duration,
                rows=rows,
                succeeded=error is None,
                error=error or "",
                generation=generation or "",
            )
            _prune(alias, view=view, database=database)
    except DatabaseError as problem:
        logger.warning(
            "Refresh of %s on database '%s' not recorded in the history (%s). Run "
            "`manage.py migrate django_orm_views --database %s` to create the history table.",
            view,
            database,
            str(problem).strip(),
            alias,
        )
        return None
    return record


def _prune(alias: str, *, view: str, database: str) -> None:
    limit = refresh_history_limit()
    if limit is None:
        return
    model = _model()
    older = list(
        model.objects.using(alias)
        .filter(view=view, database=database)
        .order_by("-started_at", "-id")
        .values_list("id", flat=True)[limit : limit + 1000]
    )
    if older:
        model.objects.using(alias).filter(id__in=older).delete()


def refresh_history(
    view: str | type[Any] | None = None, *, database: str | None = None
) -> QuerySet[RefreshRecord]:
    """The recorded refreshes, newest first; only those of ``view`` (a view name or
    class) and of ``database`` (the alias the views live on) when given."""
    model = _model()
    records = model.objects.using(router.db_for_read(model)).order_by("-started_at", "-id")
    if view is not None:
        records = records.filter(view=view if isinstance(view, str) else view.view_name)
    if database is not None:
        records = records.filter(database=database)
    return records


def last_refreshes(database: str = "default") -> dict[str, RefreshRecord]:
    """The latest recorded refresh of each view of ``database``, by view name. Empty,
    with a warning, when the history table does not exist."""
    model = _model()
    alias = router.db_for_read(model)
    latest = (
        model.objects.using(alias)
        .filter(database=database, view=OuterRef("view"))
        .order_by("-started_at", "-id")
        .values("id")[:1]
    )
    records = model.objects.using(alias).filter(database=database, id=Subquery(latest))
    try:
        with transaction.atomic(using=alias):
            return {record.view: record for record in records}
    except DatabaseError as problem:
        logger.warning(
            "The refresh history cannot be read (%s). Run `manage.py migrate django_orm_views "
            "--database %s` to create its table.",
            str(problem).strip(),
            alias,
        )
        return {}


# Status of the views: what list_views shows ------------------------------------------

IN_SYNC = "in sync"
OUTDATED = "outdated"
MISSING = "missing"
NOT_DECLARED = "not declared"


@dataclass(frozen=True)
class ViewStatus:
    """One view (declared, found in the views schema, or both) as ``list_views`` shows it."""

    database: str
    name: str
    kind: str
    state: str
    declared_as: str | None
    populated: bool | None = None
    rows: int | None = None
    size_bytes: int | None = None
    last_refresh: RefreshRecord | None = None
    # False for an object in the views schema that the package did not create.
    managed: bool = True
    options: tuple[str, ...] = ()
    grantees: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    reads_tables: tuple[str, ...] = ()
    reads_columns: tuple[str, ...] = ()
    # The generation (the sync) that built it, as its marker says, and the storage
    # schema of a materialized view.
    generation: str | None = None
    stored_in: str | None = None

    @property
    def materialized(self) -> bool:
        return self.kind == "materialized view"

    @property
    def lineage(self) -> ViewLineage:
        return ViewLineage(self.name, self.depends_on, self.reads_tables, self.reads_columns)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: what ``list_views --format json`` prints for this view."""
        refresh = self.last_refresh
        return {
            "database": self.database,
            "name": self.name,
            "kind": self.kind,
            "state": self.state,
            "declared_as": self.declared_as,
            "populated": self.populated,
            "rows": self.rows,
            "size_bytes": self.size_bytes,
            "managed": self.managed,
            "options": list(self.options),
            "grantees": list(self.grantees),
            "depends_on": list(self.depends_on),
            "reads_tables": list(self.reads_tables),
            "reads_columns": list(self.reads_columns),
            "generation": self.generation,
            "stored_in": self.stored_in,
            "last_refresh": None
            if refresh is None
            else {
                "started_at": refresh.started_at.isoformat(),
                "duration": round(refresh.duration, 6),
                "mode": refresh.mode,
                "rows": refresh.rows,
                "succeeded": refresh.succeeded,
                "error": refresh.error or None,
                "generation": refresh.generation or None,
            },
        }


def view_statuses(database: str = "default") -> tuple[SyncPlan, list[ViewStatus]]:
    """Every declared view of ``database`` and every object found in its views schema, by
    name: state (from the same plan as ``sync_views --check``), whether a materialized view
    is populated, its rows and size, its options and grantees, what it reads, and its
    last recorded refresh. Changes nothing.

    Rows are counted exactly (``count(*)``), which reads each populated materialized view
    once; readers are never blocked by it.
    """
    plan = plan_sync(database=database)
    statistics = materialized_view_statistics(connections[database], plan.snapshot)
    refreshes = last_refreshes(database)
    reads = lineage(plan)
    states = {
        ActionKind.KEEP: IN_SYNC,
        ActionKind.REPLACE: OUTDATED,
        ActionKind.CREATE: MISSING,
        ActionKind.DROP: NOT_DECLARED,
    }
    # A view kept as it is but whose grants or comments differ is outdated too: a sync
    # has work to do on it (and --check says so).
    found = {
        action.name: (
            action.object_kind,
            OUTDATED
            if action.kind is ActionKind.KEEP and action.is_change
            else states[action.kind],
            action.view,
        )
        for action in plan.actions
    }
    # Relations the package did not create are listed too: a sync refuses to replace
    # the schema while they are there.
    for name, item in plan.snapshot.objects.items():
        found.setdefault(name, (item.kind, NOT_DECLARED, None))
    statuses = []
    for name, (kind, state, view) in sorted(found.items()):
        existing = plan.snapshot.objects.get(name)
        stats = statistics.get(name)
        declared = plan.rendered.get(name)
        read = reads.get(name)
        statuses.append(
            ViewStatus(
                database=database,
                name=name,
                kind=kind,
                state=state,
                declared_as=describe(view) if view is not None else None,
                populated=existing.populated
                if existing is not None and existing.materialized
                else None,
                rows=stats.rows if stats is not None else None,
                size_bytes=stats.size_bytes if stats is not None else None,
                last_refresh=refreshes.get(name),
                managed=existing is None or existing.owned,
                options=existing.options
                if existing is not None
                else (declared.options if declared is not None else ()),
                grantees=tuple(sorted(existing.grantees)) if existing is not None else (),
                depends_on=read.depends_on if read is not None else (),
                reads_tables=read.reads_tables if read is not None else (),
                reads_columns=read.reads_columns if read is not None else (),
                generation=existing.generation if existing is not None else None,
                stored_in=existing.storage if existing is not None else None,
            )
        )
    return plan, statuses
