"""The sync lock, retries on lock timeouts and deadlocks (the one retry helper), and
what a lost connection looks like: shared by syncs, refreshes, rollbacks and drops."""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from django.db import transaction

from .exceptions import ConnectionLostError, SyncError, SyncLockTimeout, sqlstate_of

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

__all__ = [
    "RETRYABLE_SQLSTATES",
    "advisory_key",
    "connection_lost",
    "lost_connection_error",
    "retry_on_lock",
    "set_local",
    "sync_lock",
]

T = TypeVar("T")

LOCK_NOT_AVAILABLE = "55P03"

DEADLOCK_DETECTED = "40P01"

RETRYABLE_SQLSTATES = frozenset({LOCK_NOT_AVAILABLE, DEADLOCK_DETECTED})


def retry_on_lock(operation: Callable[[], T], *, attempts: int) -> T:
    """Run ``operation`` (a transaction or a savepoint of its own), again after a short,
    growing pause when it timed out on a lock or was chosen as a deadlock victim; at
    least once, and at most ``attempts`` times. Other errors go straight through."""
    attempts = max(1, attempts)
    delay = 0.01
    for attempt in range(1, attempts + 1):
        try:
            return operation()
        except Exception as error:  # a database error, or the package's error wrapping one
            if sqlstate_of(error) not in RETRYABLE_SQLSTATES or attempt == attempts:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
    raise AssertionError("unreachable")  # the last attempt returns or raises


def advisory_key(schema: str) -> int:
    digest = hashlib.sha256(f"django_orm_views:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def sync_lock(connection: BaseDatabaseWrapper, schema: str, wait: float) -> Iterator[None]:
    """Open a transaction that holds the database's sync lock until it ends.

    The lock is a transaction-level advisory lock: it cannot outlive the transaction
    (a terminated backend, a transaction-mode pooler handing the session to someone
    else), and everything done under it is in that one transaction, so a sync that
    loses its connection loses its work with its lock and never goes on without it.
    Inside an outer transaction the lock is held until that transaction ends.
    """
    key = advisory_key(schema)
    deadline = time.monotonic() + wait
    delay = 0.02
    while True:
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [key])
            if cursor.fetchone()[0]:
                yield
                return
            if time.monotonic() >= deadline:
                cursor.execute(
                    "SELECT string_agg(pid::text, ', ') FROM pg_locks WHERE locktype = "
                    "'advisory' AND granted AND classid = %s AND objid = %s",
                    [(key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF],
                )
                holders = cursor.fetchone()[0] or "unknown"
                raise SyncLockTimeout(
                    f"Another sync of database '{connection.alias}' (backend pid {holders}) "
                    f"held the sync lock for more than {wait:g}s. Let it finish and run "
                    "sync_views again, or raise ORM_VIEWS_SYNC_LOCK_WAIT."
                )
        # Wait between attempts outside any transaction of ours: through a
        # transaction-mode pooler, a sync sleeping in an open transaction would keep one
        # of the pool's few server connections from every other client for as long as
        # it waits.
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


# SQLSTATE classes of a lost connection: 08 (connection exception) and 57 (operator
# intervention: pg_terminate_backend, a shutdown, a failover).
CONNECTION_LOST_CLASSES = ("08", "57")


def connection_lost(error: BaseException) -> bool:
    """Whether ``error`` means the session is gone (rather than a refused statement)."""
    code = sqlstate_of(error)
    if code is not None:
        # 25P03: ended by idle_in_transaction_session_timeout (a sync stopped too long).
        return code == "25P03" or (code[:2] in CONNECTION_LOST_CLASSES and code != "57014")
    cause = error.__cause__ or error
    return type(cause).__name__ in ("OperationalError", "InterfaceError")


def lost_connection_error(
    database: str, stage: str, error: BaseException, *, command: str = "sync_views"
) -> SyncError:
    """The one line a sync (or ``command``) ends with when its session is gone."""
    detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    what = "Sync" if command == "sync_views" else f"`{command}`"
    return ConnectionLostError(
        f"{what} of database '{database}' lost its connection to PostgreSQL {stage} "
        f"({detail}). Its transaction was rolled back with its lock: the live views are "
        f"unchanged. Run {command} again."
    )


def set_local(cursor: Any, values: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Set ``values`` for the rest of the transaction; returns the previous ones."""
    if not values:
        return []
    cursor.execute(
        "SELECT " + ", ".join("current_setting(%s), set_config(%s, %s, true)" for _ in values),
        [item for name, value in values for item in (name, name, value)],
    )
    row = cursor.fetchone()
    return [(name, row[index * 2]) for index, (name, _) in enumerate(values)]
