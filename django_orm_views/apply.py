"""Applying a plan: the sync lock, the one transaction, retries, the swap, the drop of
the replaced schema, and the check that the database now matches the code."""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from django.db import Error, connections, transaction

from . import signals
from .conf import get_settings
from .ddl import CompiledPlan, Phase, Step, compile_plan, describe_dependent, drop_schema_sql
from .exceptions import (
    ColumnMismatchError,
    ConnectionLostError,
    InvalidViewError,
    SyncError,
    SyncLockTimeout,
    UnknownRoleError,
    sqlstate_of,
)
from .introspection import (
    SCHEMA_MARKER_PREFIX,
    CatalogSnapshot,
    external_dependents,
    missing_roles,
    package_schemas,
    read_catalog,
    view_columns,
)
from .plan import DesiredState, SyncPlan, compare, model_columns
from .results import SyncReport, SyncResult
from .views import describe

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

__all__ = [
    "SyncReport",
    "SyncResult",
    "apply_plan",
    "check_roles",
    "compile_for",
    "drop_schema",
    "retry_on_lock",
    "set_local",
    "sync_lock",
]

T = TypeVar("T")

LOCK_NOT_AVAILABLE = "55P03"

DEADLOCK_DETECTED = "40P01"

RETRYABLE_SQLSTATES = frozenset({LOCK_NOT_AVAILABLE, DEADLOCK_DETECTED})
UNDEFINED_COLUMN = "42703"


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


def _advisory_key(schema: str) -> int:
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
    key = _advisory_key(schema)
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


# Views whose statements go to the server in one round trip when their durations are not
# wanted. A failing batch is rolled back and run again one view at a time, so that the
# error names its view.
VIEWS_PER_BATCH = 50

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


def _lost_connection_error(database: str, stage: str, error: BaseException) -> SyncError:
    detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ConnectionLostError(
        f"Sync of database '{database}' lost its connection to PostgreSQL {stage} "
        f"({detail}). Its transaction was rolled back with its lock: the live views are "
        "unchanged. Run sync_views again."
    )


def _execute_phase(
    connection: BaseDatabaseWrapper,
    phase: Phase,
    plan: SyncPlan,
    timings: dict[str, float],
    *,
    views_per_batch: int = 1,
    outermost: bool = True,
) -> None:
    try:
        _execute_phase_batches(connection, phase, plan, timings, views_per_batch, outermost)
    except SyncError as error:
        if (
            views_per_batch == 1
            or sqlstate_of(error) in RETRYABLE_SQLSTATES
            or isinstance(error, ConnectionLostError)
        ):
            raise
        _execute_phase_batches(connection, phase, plan, timings, 1, outermost)


def _phase_settings(phase: Phase) -> list[tuple[str, str]]:
    settings = get_settings()
    values = []
    if phase.lock_timeout:
        values.append(("lock_timeout", f"{settings.swap_lock_timeout_ms}ms"))
    bound = f"{get_settings().swap_timeout_ms}ms"
    if phase.bounded:
        values.append(("statement_timeout", bound))
    if phase.bounded or phase.idle_bounded:
        values.append(("idle_in_transaction_session_timeout", bound))
    return values


def _execute_phase_batches(
    connection: BaseDatabaseWrapper,
    phase: Phase,
    plan: SyncPlan,
    timings: dict[str, float],
    views_per_batch: int,
    outermost: bool,
) -> None:
    local_settings = _phase_settings(phase)

    def run_phase() -> None:
        # A savepoint of the sync's transaction: a retry starts the phase afresh.
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            previous = set_local(cursor, local_settings)
            for step in phase.batches(views_per_batch):
                started = time.perf_counter()
                _execute_step(cursor, step, plan)
                if step.view is not None:
                    timings[step.view] = timings.get(step.view, 0.0) + (
                        time.perf_counter() - started
                    )
            if phase.verify_in is not None:
                verify_readable_columns(connection, plan, phase.verify_in)
            # The sync's own transaction commits right after a bounded phase: its
            # timeouts stay in force until then, so that a sync stopped before its
            # COMMIT is ended by the server instead of stalling readers.
            if previous and not ((phase.bounded or phase.idle_bounded) and outermost):
                set_local(cursor, previous)

    retry_on_lock(run_phase, attempts=get_settings().swap_attempts if phase.retry_on_lock else 1)


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


def _execute_step(cursor: Any, step: Step, plan: SyncPlan) -> None:
    try:
        cursor.execute(step.sql)
    except Error as error:
        if connection_lost(error):
            raise _lost_connection_error(plan.database, "while it ran", error) from error
        message = _postgres_message(error)
        if step.view is not None and step.view in plan.rendered:
            subject = f"View {describe(plan.rendered[step.view].view)}"
            fix = "Fix the view's SQL, then run sync_views again."
            if "COMMENT ON COLUMN" in step.sql and sqlstate_of(error) == UNDEFINED_COLUMN:
                fix = (
                    "Name a column of the view in its `column_comments` (or fix the field "
                    "whose db_comment or help_text is set), then run sync_views again."
                )
        else:
            subject = f"Sync of database '{plan.database}'"
            fix = "Fix the cause, then run sync_views again."
        if sqlstate_of(error) in RETRYABLE_SQLSTATES:
            fix = "Readers held locks for too long; run sync_views again."
        raise SyncError(
            f"{subject}: PostgreSQL refused `{_shorten(step.sql)}`: {message}\nThe live views "
            f"are unchanged. {fix}"
        ) from error


def _postgres_message(error: BaseException) -> str:
    """PostgreSQL's message, its LINE / caret lines kept on lines of their own, ended by
    one period."""
    lines = [line.rstrip() for line in str(error).strip().splitlines() if line.strip()]
    if not lines:
        return type(error).__name__ + "."
    first = lines[0] if lines[0].endswith(".") else lines[0] + "."
    return "\n".join([first, *lines[1:]])


def _shorten(sql: str, limit: int = 200) -> str:
    sql = " ".join(sql.split())
    return sql if len(sql) <= limit else sql[: limit - 3] + "..."


def verify_readable_columns(connection: BaseDatabaseWrapper, plan: SyncPlan, schema: str) -> None:
    """Compare each readable view built in ``schema`` with its model: a field without a
    column would only fail when a query reads it. Raises before anything is swapped in."""
    readable = {
        name: columns for name in plan.order if (columns := model_columns(plan.rendered[name].view))
    }
    if not readable:
        return
    built = view_columns(connection, schema, readable)
    for name in plan.order:
        if name not in built or name not in readable:
            continue
        missing = [column for column in readable[name] if column not in built[name]]
        if missing:
            view = plan.rendered[name].view
            column = missing[0]
            close = difflib.get_close_matches(column, built[name], n=1)
            hint = f"; the closest column is {close[0]!r}" if close else ""
            raise ColumnMismatchError(
                f"View {describe(view)}: field column {column!r} is not a column of the view "
                f"(its columns: {', '.join(built[name])}){hint}. Rename the field (or set its "
                "db_column), or select that column in the view's SQL. Nothing was changed."
            )


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


def compile_for(connection: BaseDatabaseWrapper, plan: SyncPlan) -> CompiledPlan:
    """Compile ``plan`` against the outside objects that depend on its live views."""
    dependents = []
    if plan.snapshot.schema_exists:
        dependents = external_dependents(
            connection, plan.schema, package_schemas=package_schemas(plan.snapshot)
        )
    return compile_plan(plan, dependents)


# The first PostgreSQL major that has each view option.
OPTION_SINCE = {"security_barrier": 90200, "security_invoker": 150000}


def _check_options(connection: BaseDatabaseWrapper, plan: SyncPlan) -> None:
    """Refuse, before anything changes, a view option the server does not have."""
    version = int(connection.pg_version)  # type: ignore[attr-defined]
    for item in plan.rendered.values():
        for option in item.options:
            name = option.partition("=")[0]
            if version < OPTION_SINCE.get(name, 0):
                raise InvalidViewError(
                    f"View {describe(item.view)} sets `{name}`, which PostgreSQL "
                    f"{version // 10000} does not have (it needs PostgreSQL "
                    f"{OPTION_SINCE[name] // 10000} or newer). Remove it, or upgrade the "
                    "server. Nothing was changed."
                )


def check_roles(connection: BaseDatabaseWrapper, plan: SyncPlan) -> None:
    """Refuse, before anything changes, to grant to a role that does not exist."""
    declared = {role: item.view for item in plan.rendered.values() for role in item.grant_select_to}
    missing = missing_roles(connection, [*plan.roles, *declared])
    if missing:
        configured = set(get_settings().grant_select_to)

        def source(role: str) -> str:
            if role in configured:
                return "ORM_VIEWS_GRANT_SELECT_TO"
            if role in plan.roles:
                return "--grant-select-permissions-to-user"
            return f"grant_select_to of {describe(declared[role])}"

        listed = ", ".join(f"{role!r} (from {source(role)})" for role in missing)
        raise UnknownRoleError(
            f"Cannot grant SELECT on database '{plan.database}': role(s) {listed} do not "
            "exist. Create them (CREATE ROLE ...) or remove them from the setting, option "
            "or class. Nothing was changed."
        )


def apply_plan(plan: SyncPlan, *, time_each_view: bool = False) -> SyncResult:
    """Execute ``plan`` in one transaction that holds the database's sync lock: re-read
    the catalog under it (another sync may have done the work meanwhile), build beside
    the live views and swap them in. Then drop the replaced schema, and read the
    catalog once more: a sync that returns has made the database match the code.

    ``time_each_view`` sends each view's statements on their own, to report how long
    each took (``result.view_timings``); otherwise they go in batches of several views.
    """
    started = time.perf_counter()
    connection = connections[plan.database]
    result = SyncResult(database=plan.database, plan=plan)
    if not plan and not plan.snapshot.leftover_schemas:
        result.duration = time.perf_counter() - started
        return result
    desired = DesiredState(plan.database, plan.schema, plan.rendered, plan.order, plan.fingerprints)
    outermost = not connection.in_atomic_block
    compiled: CompiledPlan | None = None
    stage = "while it waited for the sync lock"
    try:
        with sync_lock(connection, plan.schema, get_settings().sync_lock_wait):
            stage = "while it ran"
            snapshot = read_catalog(connection, plan.schema)
            plan = _replan(desired, snapshot, plan)
            result.plan = plan
            if plan:
                check_roles(connection, plan)
                _check_options(connection, plan)
                compiled = compile_for(connection, plan)
                signals.pre_sync.send(sender=SyncPlan, plan=plan, database=plan.database)
                for phase in compiled.phases:
                    _execute_phase(
                        connection,
                        phase,
                        plan,
                        result.view_timings,
                        views_per_batch=1 if time_each_view else VIEWS_PER_BATCH,
                        outermost=outermost,
                    )
                result.statements = compiled.statements
            stage = "while it committed"
    except Error as error:  # InterfaceError too: a closed connection is not a DatabaseError
        if connection_lost(error):
            raise _lost_connection_error(plan.database, stage, error) from error
        raise SyncError(
            f"Sync of database '{plan.database}' failed {stage}: {str(error).strip()}. Its "
            "transaction was rolled back: the live views are unchanged. Fix the cause, then "
            "run sync_views again."
        ) from error
    result.applied = compiled is not None
    _drop_working_schemas(connection, snapshot, compiled, result)
    if result.applied:
        _verify_applied(connection, desired, plan)
    result.duration = time.perf_counter() - started
    if result.applied:
        signals.post_sync.send(sender=SyncPlan, plan=plan, result=result, database=plan.database)
    return result


def _drop_working_schemas(
    connection: BaseDatabaseWrapper,
    snapshot: CatalogSnapshot,
    compiled: CompiledPlan | None,
    result: SyncResult,
) -> None:
    """After the commit: drop the leftovers of interrupted syncs and the schema the swap
    replaced; one a reader still uses is left for the next sync."""
    for leftover in snapshot.leftover_schemas:
        if drop_schema(connection, leftover):
            result.dropped_leftovers.append(leftover)
    old_schema = compiled.drop_schema if compiled is not None else None
    if old_schema and not drop_schema(connection, old_schema):
        result.kept_old_schema = old_schema


def _replan(desired: DesiredState, snapshot: CatalogSnapshot, plan: SyncPlan) -> SyncPlan:
    return compare(
        desired,
        snapshot,
        roles=plan.roles,
        strategy=plan.strategy,
        force=plan.force,
        rebuild=plan.rebuild,
    )


def _verify_applied(connection: BaseDatabaseWrapper, desired: DesiredState, plan: SyncPlan) -> None:
    """Exit status 0 means the database matches the code: read it back and compare."""
    try:
        snapshot = read_catalog(connection, plan.schema)
    except Error as error:
        raise _lost_connection_error(plan.database, "after it committed", error) from error
    left = compare(desired, snapshot, roles=plan.roles, strategy=plan.strategy, force=False)
    if left:
        raise SyncError(
            f"Sync of database '{plan.database}' finished, but the database still differs "
            f"from the declared views: {'; '.join(left.describe())}. Run sync_views again; "
            "if this persists, report it with the output of `sync_views --check`."
        )
