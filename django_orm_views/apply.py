"""Applying a plan: the sync lock, the one transaction, retries, the swap, the drop of
the replaced schema, and the check that the database now matches the code."""

from __future__ import annotations

import difflib
import time
from typing import TYPE_CHECKING, Any

from django.db import Error, connections, transaction

from . import signals
from .conf import get_settings
from .ddl import CompiledPlan, Phase, PreviousGeneration, Step, compile_plan
from .exceptions import (
    ColumnMismatchError,
    ConnectionLostError,
    InvalidViewError,
    SyncError,
    UnknownRoleError,
    sqlstate_of,
)
from .generations import Housekeeping, drop_schema, housekeeping
from .introspection import (
    CatalogSnapshot,
    external_dependents,
    missing_roles,
    package_schemas,
    read_catalog,
    view_columns,
)
from .locks import (
    RETRYABLE_SQLSTATES,
    advisory_key,
    connection_lost,
    lost_connection_error,
    retry_on_lock,
    set_local,
    sync_lock,
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

UNDEFINED_COLUMN = "42703"
# The name tests and tools used before the lock helpers had a module of their own.
_advisory_key = advisory_key

# Views whose statements go to the server in one round trip when their durations are not
# wanted. A failing batch is rolled back and run again one view at a time, so that the
# error names its view.
VIEWS_PER_BATCH = 50


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


def _execute_step(cursor: Any, step: Step, plan: SyncPlan) -> None:
    try:
        cursor.execute(step.sql)
    except Error as error:
        if connection_lost(error):
            raise lost_connection_error(plan.database, "while it ran", error) from error
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


def compile_for(connection: BaseDatabaseWrapper, plan: SyncPlan) -> CompiledPlan:
    """Compile ``plan`` against the outside objects that depend on its live views and
    the newest previous generation (whose grants never exceed the live ones)."""
    dependents = []
    if plan.snapshot.schema_exists:
        dependents = external_dependents(
            connection, plan.schema, package_schemas=package_schemas(plan.snapshot)
        )
    newest = next(iter(plan.snapshot.previous_generations()), None)
    previous = None
    if newest is not None and newest.replaced_at is not None:
        held = plan.snapshot.generations.get(newest.name) or read_catalog(
            connection, plan.schema, generation=newest.name
        )
        previous = PreviousGeneration(newest, held)
    return compile_plan(plan, dependents, previous)


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
    if not plan and not plan.snapshot.needs_housekeeping(
        get_settings().keep_previous_seconds, time.time()
    ):
        result.duration = time.perf_counter() - started
        return result
    desired = DesiredState(plan.database, plan.schema, plan.rendered, plan.order, plan.fingerprints)
    outermost = not connection.in_atomic_block
    compiled: CompiledPlan | None = None
    stage = "while it waited for the sync lock"
    try:
        with sync_lock(connection, plan.schema, get_settings().sync_lock_wait):
            stage = "while it ran"
            snapshot = read_catalog(connection, plan.schema, with_previous=True)
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
            raise lost_connection_error(plan.database, stage, error) from error
        raise SyncError(
            f"Sync of database '{plan.database}' failed {stage}: {str(error).strip()}. Its "
            "transaction was rolled back: the live views are unchanged. Fix the cause, then "
            "run sync_views again."
        ) from error
    result.applied = compiled is not None
    if compiled is not None:
        result.generation = compiled.generation
        result.previous_generation = compiled.replaced_schema
    _record_housekeeping(result, housekeeping(connection, plan.schema))
    if result.applied:
        _verify_applied(connection, desired, plan)
    result.duration = time.perf_counter() - started
    if result.applied:
        signals.post_sync.send(sender=SyncPlan, plan=plan, result=result, database=plan.database)
    return result


def _record_housekeeping(result: SyncResult, done: Housekeeping) -> None:
    result.dropped_leftovers = done.dropped("staging", "other")
    result.dropped_previous = [
        name for name in done.dropped("previous") if name != result.previous_generation
    ]
    result.dropped_stored = done.dropped_stored
    result.kept_old_schema = done.kept[0] if done.kept else None
    if result.previous_generation in done.dropped_schemas:
        # ORM_VIEWS_KEEP_PREVIOUS_SECONDS = 0: dropped right after the swap.
        result.previous_generation = None


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
        raise lost_connection_error(plan.database, "after it committed", error) from error
    left = compare(desired, snapshot, roles=plan.roles, strategy=plan.strategy, force=False)
    if left:
        raise SyncError(
            f"Sync of database '{plan.database}' finished, but the database still differs "
            f"from the declared views: {'; '.join(left.describe())}. Run sync_views again; "
            "if this persists, report it with the output of `sync_views --check`."
        )
