"""What a sync did (one result for each database, and the report that holds them), and
what a refresh did to one materialized view."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum

from .plan import ActionKind, SyncPlan
from .views import BasePostgresView

__all__ = ["RefreshMode", "RefreshResult", "SyncReport", "SyncResult"]


@dataclass
class SyncResult:
    """What a sync did on one database."""

    database: str
    plan: SyncPlan
    applied: bool = False
    dry_run: bool = False
    statements: list[str] = field(default_factory=list)
    view_timings: dict[str, float] = field(default_factory=dict)
    duration: float = 0.0
    # Dropped after the sync: schemas interrupted syncs left behind, older previous
    # generations, and stored objects no generation points to any more.
    dropped_leftovers: list[str] = field(default_factory=list)
    dropped_previous: list[str] = field(default_factory=list)
    dropped_stored: list[str] = field(default_factory=list)
    # A working schema that readers kept locked: the next sync drops it.
    kept_old_schema: str | None = None
    # The generation the sync built, and the one it replaced (kept for
    # ORM_VIEWS_KEEP_PREVIOUS_SECONDS; None when dropped at once).
    generation: str | None = None
    previous_generation: str | None = None

    def count(self, kind: ActionKind) -> int:
        return len(self.plan.actions_of(kind))

    def summary(self) -> str:
        counts = ", ".join(
            f"{self.count(kind)} {label}"
            for kind, label in (
                (ActionKind.CREATE, "created"),
                (ActionKind.REPLACE, "replaced"),
                (ActionKind.DROP, "dropped"),
                (ActionKind.KEEP, "unchanged"),
            )
        )
        if self.dry_run:
            verb = "Would sync"
        elif self.applied:
            verb = "Synced"
        else:
            verb = "Views already in sync"
        return (
            f"{verb} on database '{self.database}' ({self.plan.strategy}): {counts} "
            f"in {self.duration:.2f}s."
        )


@dataclass
class SyncReport:
    """The results of a sync, one for each database it covered."""

    results: list[SyncResult]

    def __iter__(self) -> Iterator[SyncResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, database: str) -> SyncResult:
        for result in self.results:
            if result.database == database:
                return result
        raise KeyError(database)

    @property
    def applied(self) -> bool:
        return any(result.applied for result in self.results)


class RefreshMode(Enum):
    CONCURRENTLY = "concurrently"
    SWAP = "swap"
    BLOCKING = "blocking"


@dataclass(frozen=True)
class RefreshResult:
    """What happened to one materialized view: refreshed, failed or skipped."""

    view: type[BasePostgresView]
    database: str
    mode: RefreshMode
    duration: float
    started_at: datetime.datetime
    rows: int | None = None
    # The message (naming the view and PostgreSQL's error) when the refresh failed or
    # was skipped; the view then still has its previous contents.
    error: str | None = None
    skipped: bool = False
    # The view whose rebuild (swap) rebuilt this one too, because this one depends on it.
    rebuilt_with: str | None = None
    # The generation of the views schema live after the refresh (a refresh by swap
    # makes a new one).
    generation: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.error is None

    @property
    def concurrently(self) -> bool:
        return self.mode is RefreshMode.CONCURRENTLY
