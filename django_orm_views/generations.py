"""Generations of the views schema: the live one, the previous one a swap kept, and the
storage schemas both point to.

A swap renames the live schema to ``<schema>__old_<id>`` instead of dropping it: the
previous generation. Queries that started before the swap (on a hot standby above all,
where replaying a DROP would cancel them) finish on it, and ``sync_views --rollback``
swaps it back in. It is dropped by a later sync or refresh once it is older than
``ORM_VIEWS_KEEP_PREVIOUS_SECONDS``, by the next swap (at most one is kept), or by
``sync_views --prune``. Materialized views (and the views they read) live in storage
schemas, ``<schema>__data_<id>``, which no swap moves: a stored object is dropped once
no generation points to it.

Every drop here happens in a short transaction of its own that holds the sync lock if
it is free (otherwise the next sync does it), waits at most
``ORM_VIEWS_SWAP_LOCK_TIMEOUT_MS`` for each lock, and drops only what the package marked
as its own.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.db import DatabaseError, Error, connections, transaction

from .conf import get_settings
from .ddl import describe_dependent, new_generation
from .exceptions import ExternalDependentsError, SyncError
from .introspection import (
    SCHEMA_MARKER_PREFIX,
    CatalogSnapshot,
    WorkingSchema,
    external_dependents,
    old_schema_prefix,
    package_schemas,
    read_catalog,
)
from .locks import (
    advisory_key,
    connection_lost,
    lost_connection_error,
    retry_on_lock,
    set_local,
    sync_lock,
)
from .sql import object_keyword, qualified_name, quote_identifier, quote_literal
from .statements import (
    Step,
    drop_schema_sql,
    narrowed_grants,
    regrant_steps,
    retire_generation_steps,
)

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

__all__ = [
    "Housekeeping",
    "RollbackResult",
    "drop_schema",
    "housekeeping",
    "prune_views",
    "rollback_views",
]

# Rounds of dropping stored objects that nothing reads: each round frees what only the
# previous round's objects read (a materialized view over a materialized view).
MAX_STORAGE_ROUNDS = 20


@dataclass
class Housekeeping:
    """What a sync, a refresh or a prune dropped after its work, and what it left."""

    dropped_schemas: list[str] = field(default_factory=list)
    dropped_stored: list[str] = field(default_factory=list)
    # The role of each schema dropped: staging or other (an interrupted sync's
    # leftovers), previous (a generation), storage.
    roles: dict[str, str] = field(default_factory=dict)
    # Working schemas it could not drop now (a reader held them, or the sync lock was
    # taken): the next sync tries again.
    kept: list[str] = field(default_factory=list)

    def dropped(self, *roles: str) -> list[str]:
        """The schemas dropped that had one of ``roles``."""
        return [name for name in self.dropped_schemas if self.roles.get(name) in roles]


def housekeeping(
    connection: BaseDatabaseWrapper, schema: str, *, keep_previous: bool = True
) -> Housekeeping:
    """Drop what the package no longer needs: what interrupted syncs left behind, every
    previous generation but the one kept (none when ``keep_previous`` is False, or when
    it is older than ORM_VIEWS_KEEP_PREVIOUS_SECONDS), and stored objects no generation
    points to."""
    done = Housekeeping()
    keep_seconds = get_settings().keep_previous_seconds if keep_previous else 0.0
    snapshot = read_catalog(connection, schema)
    done.roles.update((item.name, item.role) for item in snapshot.working)
    for name in snapshot.schemas_to_drop(keep_seconds, time.time()):
        if _locked(connection, schema, functools.partial(drop_schema, connection, name)):
            done.dropped_schemas.append(name)
        else:
            done.kept.append(name)
    # What it read still holds unless it dropped a generation (which frees storage).
    _drop_unreferenced_storage(connection, schema, done, None if done.dropped_schemas else snapshot)
    return done


def _locked(connection: BaseDatabaseWrapper, schema: str, operation: Callable[[], bool]) -> bool:
    """Run ``operation`` (returning whether it did its work) in a transaction that
    holds the sync lock; False, without running it, when another sync holds the lock."""
    try:
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [advisory_key(schema)])
            if not cursor.fetchone()[0]:
                return False
            return bool(operation())
    except Error as error:
        if connection_lost(error):
            connection.close()
        return False


def _drop_unreferenced_storage(
    connection: BaseDatabaseWrapper,
    schema: str,
    done: Housekeeping,
    snapshot: CatalogSnapshot | None = None,
) -> None:
    """Drop the stored objects no generation points to, round after round, then the
    storage schemas left empty. ``RESTRICT``: an object something reads is never
    dropped, whatever the catalog said a moment before. Readers that keep one locked
    leave it for the next sync."""

    def drop() -> tuple[list[str], list[str]]:
        schemas: list[str] = []
        stored: list[str] = []
        lock_timeout = [("lock_timeout", f"{get_settings().swap_lock_timeout_ms}ms")]
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            previous = set_local(cursor, lock_timeout)
            snapshot = read_catalog(connection, schema)
            for _ in range(MAX_STORAGE_ROUNDS):
                garbage = snapshot.unreferenced_storage
                if not garbage:
                    break
                cursor.execute(
                    ";\n".join(
                        f"DROP {object_keyword(item.kind)} IF EXISTS "
                        f"{qualified_name(item.schema, item.name)} RESTRICT"
                        for item in garbage
                    )
                )
                stored += [f"{item.schema}.{item.name}" for item in garbage]
                snapshot = read_catalog(connection, schema)
            for name in snapshot.empty_storage:
                try:
                    # A savepoint: a schema someone put a function or a type in stays.
                    with transaction.atomic(using=connection.alias):
                        cursor.execute(f"DROP SCHEMA IF EXISTS {quote_identifier(name)} RESTRICT")
                except DatabaseError:
                    continue
                schemas.append(name)
            if len(connection.atomic_blocks) > 1:  # inside an outer transaction
                set_local(cursor, previous)
        return schemas, stored

    snapshot = snapshot or read_catalog(connection, schema)
    if not (snapshot.unreferenced_storage or snapshot.empty_storage):
        return
    outcome: list[tuple[list[str], list[str]]] = []

    def attempt() -> bool:
        outcome.append(retry_on_lock(drop, attempts=10))
        return True

    if _locked(connection, schema, attempt):
        schemas, stored = outcome[-1]
        done.dropped_schemas += schemas
        done.roles.update(dict.fromkeys(schemas, "storage"))
        done.dropped_stored += stored


def prune_views(*, database: str = "default") -> Housekeeping:
    """Drop the previous generation now (``sync_views --prune``), and the stored objects
    only it pointed to. Queries still reading it are cancelled or make the drop wait
    (on a hot standby: up to ``max_standby_streaming_delay``)."""
    connection = connections[database]
    return housekeeping(connection, get_settings().schema, keep_previous=False)


@dataclass
class RollbackResult:
    """What ``sync_views --rollback`` did on one database."""

    database: str
    # The generation now live, and the one it replaced (kept as the previous one).
    generation: str
    previous: str
    views: list[str]
    duration: float = 0.0


def rollback_views(*, database: str = "default") -> RollbackResult:
    """Swap the previous generation back in (``sync_views --rollback``), in one short
    transaction, with the grants, comments and options it had; the generation it
    replaces is kept as the previous one. Refuses, changing nothing, when there is no
    previous generation or it no longer holds every view it had (a migration since)."""
    started = time.perf_counter()
    connection = connections[database]
    schema = get_settings().schema
    stage = "while it waited for the sync lock"
    try:
        with sync_lock(connection, schema, get_settings().sync_lock_wait):
            stage = "while it ran"
            snapshot = read_catalog(connection, schema, with_previous=True)
            previous, held = _previous_to_restore(database, snapshot)
            _refuse_outside_dependents(connection, database, snapshot)
            retired = _retired_name(schema, snapshot)
            steps = _rollback_steps(schema, snapshot, previous, held, retired)
            _swap_generations(connection, steps)
            stage = "while it committed"
    except Error as error:
        if connection_lost(error):
            raise lost_connection_error(
                database, stage, error, command="sync_views --rollback"
            ) from error
        raise SyncError(
            f"Rollback of database '{database}' failed {stage}: {str(error).strip()}. The "
            "live views are unchanged."
        ) from error
    return RollbackResult(
        database=database,
        generation=held.generation or previous.name.removeprefix(old_schema_prefix(schema)),
        previous=retired,
        views=sorted(held.owned_objects),
        duration=time.perf_counter() - started,
    )


def _rollback_steps(
    schema: str,
    snapshot: CatalogSnapshot,
    previous: WorkingSchema,
    held: CatalogSnapshot,
    retired: str,
) -> list[Step]:
    """Retire the live generation as ``retired``, rename ``previous`` (which ``held``
    describes) to ``schema`` with the comment the live schema had, and give it back the
    grants revoked from it when it was replaced. The generation retired keeps no grant
    that the restored one does not give."""
    given_back = dict(previous.revoked)
    restored = {
        name: item.grantees | frozenset(given_back.get(name, ()))
        for name, item in held.owned_objects.items()
    }
    revoked = narrowed_grants(
        snapshot, held.schema_grantees | frozenset(given_back.get("", ())), restored
    )
    comment = "NULL" if snapshot.schema_comment is None else quote_literal(snapshot.schema_comment)
    return [
        *retire_generation_steps(schema, retired, snapshot, revoked),
        Step(
            f"ALTER SCHEMA {quote_identifier(previous.name)} RENAME TO {quote_identifier(schema)}"
        ),
        Step(f"COMMENT ON SCHEMA {quote_identifier(schema)} IS {comment}"),
        *regrant_steps(schema, previous.revoked),
    ]


def _previous_to_restore(
    database: str, snapshot: CatalogSnapshot
) -> tuple[WorkingSchema, CatalogSnapshot]:
    """The previous generation to swap back in, and what it holds; refused when there is
    none or it is not whole."""
    generations = [item for item in snapshot.previous_generations() if item.replaced_at]
    if not generations:
        raise SyncError(
            f"Cannot roll back database '{database}': there is no previous generation of "
            f"the {snapshot.schema!r} schema (none was kept since the last swap, or it was "
            "dropped: it is kept for ORM_VIEWS_KEEP_PREVIOUS_SECONDS after a swap, and "
            "`sync_views --prune` drops it). Nothing was changed."
        )
    previous = generations[0]
    held = snapshot.generations[previous.name]
    missing = sorted(set(previous.views) - set(held.owned_objects))
    lost = sorted(name for name, item in held.owned_objects.items() if item.stored_missing)
    if missing or lost or previous.lost:
        gone = [*missing, *(f"{name} (its stored data)" for name in lost)]
        if previous.lost:
            gone.append(f"{previous.lost} view(s) dropped while it was live")
        listed = ", ".join(gone)
        raise SyncError(
            f"Cannot roll back database '{database}': the previous generation "
            f"({previous.name}) no longer matches the tables: it has lost {listed}, most "
            "likely to a migration since the swap. Nothing was changed. Deploy the code "
            "you want to go back to and run sync_views instead."
        )
    return previous, held


def _refuse_outside_dependents(
    connection: BaseDatabaseWrapper, database: str, snapshot: CatalogSnapshot
) -> None:
    outside = external_dependents(
        connection, snapshot.schema, package_schemas=package_schemas(snapshot)
    )
    if outside:
        listed = "; ".join(describe_dependent(snapshot.schema, item) for item in outside)
        raise ExternalDependentsError(
            f"Cannot roll back database '{database}': objects outside the "
            f"{snapshot.schema!r} schema depend on its live views ({listed}), and would "
            "stay attached to the generation rolled back. Nothing was changed. Drop them "
            "first, then run sync_views --rollback again."
        )


def _retired_name(schema: str, snapshot: CatalogSnapshot) -> str:
    live = snapshot.generation or new_generation()
    name = f"{old_schema_prefix(schema)}{live}"
    if name in snapshot.leftover_schemas:
        name = f"{old_schema_prefix(schema)}{new_generation()}"
    return name


def _swap_generations(connection: BaseDatabaseWrapper, steps: list[Step]) -> None:
    """The renames of a rollback, in one round trip, bounded like a sync's swap: each
    lock waited for at most ORM_VIEWS_SWAP_LOCK_TIMEOUT_MS (then retried), the whole
    transaction held at most ORM_VIEWS_SWAP_TIMEOUT_MS, stopped or not."""
    settings = get_settings()
    bound = f"{settings.swap_timeout_ms}ms"
    local = [
        ("lock_timeout", f"{settings.swap_lock_timeout_ms}ms"),
        ("statement_timeout", bound),
        ("idle_in_transaction_session_timeout", bound),
    ]

    def swap() -> None:
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            set_local(cursor, local)
            cursor.execute(";\n".join(step.sql for step in steps))

    retry_on_lock(swap, attempts=settings.swap_attempts)


def _unsafe_to_drop(connection: BaseDatabaseWrapper, schema: str) -> str | None:
    """Why ``schema`` must not be dropped, or None: it must be a working schema the
    package marked, hold nothing but the package's views, and nothing outside may
    depend on them."""
    snapshot = read_catalog(connection, schema)
    if not snapshot.schema_exists:
        return None
    comment = snapshot.schema_comment or ""
    if not comment.startswith(SCHEMA_MARKER_PREFIX):
        return f"schema {schema} was not created by django-orm-views"
    foreign = snapshot.foreign_objects()
    if foreign:
        return (
            f"schema {schema} holds objects django-orm-views did not create: {', '.join(foreign)}"
        )
    own = package_schemas(read_catalog(connection, get_settings().schema))
    outside = external_dependents(connection, schema, package_schemas=own)
    if outside:
        listed = "; ".join(describe_dependent(schema, dependent) for dependent in outside)
        return f"objects outside it depend on its views ({listed})"
    return None


def drop_schema(connection: BaseDatabaseWrapper, schema: str, *, attempts: int = 10) -> bool:
    """Drop a working schema (staging, previous generation) of the package, unless it is
    not the package's, holds anything else, an outside object depends on it, or readers
    keep it locked. Returns whether it is gone; the next sync tries again."""

    def drop() -> bool:
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            if _unsafe_to_drop(connection, schema) is not None:
                return False
            lock_timeout = [("lock_timeout", f"{get_settings().swap_lock_timeout_ms}ms")]
            previous = set_local(cursor, lock_timeout)
            cursor.execute(drop_schema_sql(schema))
            if len(connection.atomic_blocks) > 1:  # inside an outer transaction
                set_local(cursor, previous)
        return True

    try:
        return retry_on_lock(drop, attempts=attempts)
    except Error as error:
        if connection_lost(error):
            # The views are already swapped; the next sync drops this schema.
            connection.close()
        return False
