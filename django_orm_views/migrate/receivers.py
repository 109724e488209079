"""The ``pre_migrate`` / ``post_migrate`` receivers: drop the views that read what the
migrations change before them, sync after them; explain a migration PostgreSQL refused
because views read what it changes."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from django.apps import apps as global_apps
from django.db import DatabaseError, connections, transaction
from django.db.migrations.state import ProjectState

from ..conf import get_settings
from ..ddl import describe_dependent
from ..exceptions import ExternalDependentsError, SyncError, ViewError, sqlstate_of
from ..introspection import (
    Dependent,
    dependents_closure,
    dependents_of,
    drop_order,
    external_dependents,
    own_schemas,
    read_catalog,
)
from ..locks import retry_on_lock, set_local, sync_lock
from ..registry import views_for_database
from ..sql import object_keyword, qualified_name
from ..sync import sync_views
from .reader import TABLES_HINT, Target, touched_targets

if TYPE_CHECKING:
    from django.apps import AppConfig
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.migrations import Migration

__all__ = [
    "DEPENDENT_OBJECTS_SQLSTATES",
    "MigrateRun",
    "current_run",
    "drop_dependent_views",
    "explain_migration_failure",
    "forget_run",
    "handle_post_migrate",
    "handle_pre_migrate",
    "restore_after_failure",
]

# "cannot alter type of a column used by a view or rule" and "cannot drop ... because
# other objects depend on it".
FEATURE_NOT_SUPPORTED = "0A000"
DEPENDENT_OBJECTS_STILL_EXIST = "2BP01"
DEPENDENT_OBJECTS_SQLSTATES = frozenset({FEATURE_NOT_SUPPORTED, DEPENDENT_OBJECTS_STILL_EXIST})


# The migrate run ---------------------------------------------------------------------


@dataclass
class MigrateRun:
    """What this package did (or would do) around one ``migrate`` of one database."""

    database: str
    plan: Sequence[tuple[Migration, bool]]
    targets: list[Target] = field(default_factory=list)
    dropped: list[Dependent] = field(default_factory=list)
    synced: bool = False
    current_migration: str | None = None
    # Without ORM_VIEWS_SYNC_ON_MIGRATE: the views that read what the plan changes, to
    # report the ones Django's DROP COLUMN / DROP TABLE ... CASCADE takes with it.
    at_risk: list[Dependent] = field(default_factory=list)

    def targets_of(self, migration: str | None) -> list[Target]:
        if migration is None:
            return self.targets
        return [target for target in self.targets if target.migration == migration] or (
            self.targets
        )


_runs: dict[str, MigrateRun] = {}


def _pairs(targets: Sequence[Target]) -> list[tuple[str, str | None]]:
    return [(target.table, target.column) for target in targets]


def current_run(database: str) -> MigrateRun | None:
    return _runs.get(database)


def forget_run(database: str) -> None:
    _runs.pop(database, None)


def _app_configs_with_models() -> list[AppConfig]:
    return [config for config in global_apps.get_app_configs() if config.models_module is not None]


def _write(stdout: TextIO | None, verbosity: int, message: str) -> None:
    if verbosity >= 1:
        (stdout or sys.stdout).write(message + "\n")


def handle_pre_migrate(
    sender: AppConfig,
    *,
    using: str,
    plan: Sequence[tuple[Migration, bool]] | None = None,
    apps: Any = None,
    verbosity: int = 1,
    stdout: TextIO | None = None,
    **kwargs: Any,
) -> None:
    """Receiver of ``pre_migrate``: acts once a run, on the first app's signal."""
    configs = _app_configs_with_models()
    if plan is None or not configs or sender is not configs[0]:
        return
    connection = connections[using]
    if connection.vendor != "postgresql":
        return
    run = MigrateRun(database=using, plan=plan)
    _runs[using] = run
    if plan and apps is not None:
        try:
            run.targets = touched_targets(plan, ProjectState.from_apps(apps), connection)
        except Exception as error:
            # A custom operation the reader does not understand must never stop a
            # migrate: go on without dropping anything, and say so.
            _write(
                stdout,
                verbosity,
                f"django-orm-views could not read the migration plan ({type(error).__name__}: "
                f"{error}); no view is dropped before the migrations.",
            )
            return
    if not run.targets:
        return
    if not get_settings().sync_on_migrate:
        try:
            run.at_risk = dependents_of(connection, _pairs(run.targets))
        except DatabaseError:
            run.at_risk = []
        return
    run.dropped = drop_dependent_views(connection, run.targets)
    if run.dropped:
        names = ", ".join(item.qualified_name for item in run.dropped)
        _write(
            stdout,
            verbosity,
            f"Dropped {len(run.dropped)} view(s) that read what the migrations change on "
            f"database '{using}' (ORM_VIEWS_SYNC_ON_MIGRATE); migrate syncs them when it "
            f"ends: {names}",
        )


def handle_post_migrate(
    sender: AppConfig,
    *,
    using: str,
    plan: Sequence[tuple[Migration, bool]] | None = None,
    verbosity: int = 1,
    stdout: TextIO | None = None,
    **kwargs: Any,
) -> None:
    """Receiver of ``post_migrate``: syncs the views once a run, on the last app's signal.

    ``flush`` sends post_migrate too, without a plan: it changes no table definition,
    so there is nothing to sync then."""
    configs = _app_configs_with_models()
    if plan is None or not configs or sender is not configs[-1]:
        return
    run = _runs.get(using)
    if not get_settings().sync_on_migrate:
        if run is not None and run.at_risk:
            report_cascaded_views(connections[using], run.at_risk, verbosity, stdout)
        forget_run(using)
        return
    if run is not None:
        run.synced = True
    if not views_for_database(using):
        forget_run(using)
        return
    try:
        report = sync_views(database=using)
    except ViewError as error:
        raise SyncError(
            f"The migrations were applied to database '{using}', but syncing its views "
            f"afterwards failed: {error}"
        ) from error
    forget_run(using)
    for result in report:
        _write(stdout, verbosity, result.summary())


def report_cascaded_views(
    connection: BaseDatabaseWrapper,
    views: Sequence[Dependent],
    verbosity: int,
    stdout: TextIO | None,
) -> list[Dependent]:
    """Say which views the migrations dropped along with the columns or tables they read
    (Django drops both with CASCADE). Returns them."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT oid FROM pg_class WHERE oid = ANY(%s::oid[])", [[item.oid for item in views]]
        )
        remaining = {int(oid) for (oid,) in cursor.fetchall()}
    gone = [item for item in views if item.oid not in remaining]
    if gone:
        schema = get_settings().schema
        roles = {schema: "live"}
        roles.update((item.name, item.role) for item in read_catalog(connection, schema).working)
        declared = sorted(
            {_as_declared(item, schema, roles.get(item.schema, "other")) for item in gone}
        )
        names = ", ".join(declared)
        _write(
            stdout,
            verbosity,
            f"The migrations dropped {len(declared)} view(s) on database '{connection.alias}' "
            f"together with the columns or tables they read (Django drops them with CASCADE): "
            f"{names}. Run `manage.py sync_views` to create them again, or set "
            "ORM_VIEWS_SYNC_ON_MIGRATE = True so that migrate does it.",
        )
    return gone


def drop_dependent_views(
    connection: BaseDatabaseWrapper, targets: Sequence[Target]
) -> list[Dependent]:
    """Drop the views of the views schema (and of the package's working schemas: the
    previous generation, storage) that read ``targets``, with the views that read them,
    in one transaction under the sync lock. Refuses, changing nothing, when an object outside those schemas
    reads one of them or uses its row type."""
    settings = get_settings()
    schema = settings.schema
    with sync_lock(connection, schema, settings.sync_lock_wait):
        own = own_schemas(connection, schema)
        pairs = [(target.table, target.column) for target in targets]
        direct = [item for item in dependents_of(connection, pairs) if item.schema in own]
        if not direct:
            return []
        closure = dependents_closure(connection, [item.oid for item in direct])
        _refuse_outside_readers(connection, schema, [i for i in closure if i.schema not in own])
        live = [item for item in closure if item.schema == schema]
        _refuse_row_type_users(connection, schema, live, own)
        # Every generation's views of what changes go, stored ones and the previous
        # generation's included, readers first: a stored materialized view read by the
        # live views is dropped with them, never by dropping a whole working schema
        # (the previous generation then refuses a rollback: it lost those views).
        ordered = drop_order(connection, closure)
        _drop_views(connection, ordered)
        return [item for item in ordered if item.schema == schema]


def _refuse_outside_readers(
    connection: BaseDatabaseWrapper, schema: str, outside: list[Dependent]
) -> None:
    if outside:
        names = ", ".join(f"{item.kind} {item.qualified_name}" for item in outside)
        raise ExternalDependentsError(
            f"Cannot keep the views of database '{connection.alias}' working through "
            f"migrate: {names} (outside the {schema!r} schema) read views that read "
            "what the migrations change, so those views cannot be dropped before the "
            "migrations and synced after them. Nothing was changed. Drop these "
            "objects (or declare them as views), then migrate again."
        )


def _refuse_row_type_users(
    connection: BaseDatabaseWrapper, schema: str, live: list[Dependent], own: set[str]
) -> None:
    users = external_dependents(
        connection, schema, [item.name for item in live], package_schemas=own
    )
    if users:
        listed = "; ".join(describe_dependent(schema, item) for item in users)
        raise ExternalDependentsError(
            f"Cannot keep the views of database '{connection.alias}' working through "
            f"migrate: {listed}, so the views that read what the migrations change "
            "cannot be dropped before the migrations and synced after them. Nothing was "
            "changed. Drop those objects (or stop them using the views), then migrate "
            "again."
        )


def _drop_views(connection: BaseDatabaseWrapper, ordered: list[Dependent]) -> None:
    """Drop ``ordered`` (readers first) in a savepoint, retried when readers hold locks."""
    statements = [
        f"DROP {object_keyword(item.kind)} IF EXISTS {qualified_name(item.schema, item.name)}"
        for item in ordered
    ]
    settings = get_settings()

    def drop() -> None:
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            previous = set_local(cursor, [("lock_timeout", f"{settings.swap_lock_timeout_ms}ms")])
            for statement in statements:
                cursor.execute(statement)
            set_local(cursor, previous)

    try:
        retry_on_lock(drop, attempts=settings.swap_attempts)
    except DatabaseError as error:
        raise SyncError(
            f"Dropping the views that read what the migrations change on database "
            f"'{connection.alias}' failed: {str(error).strip()}. Nothing was "
            "changed. Migrate again (readers held locks for too long?)."
        ) from error


# Explaining a failed migration -------------------------------------------------------


def _error_detail(error: BaseException | None) -> str:
    while error is not None:
        diag = getattr(error, "diag", None)
        detail = getattr(diag, "message_detail", None) if diag is not None else None
        if detail:
            return str(detail)
        error = error.__cause__
    return ""


def _as_declared(item: Dependent, schema: str, role: str) -> str:
    """How a view of the package is named to its users: a stored one by the name of the
    view that points to it, one of the previous generation as such."""
    if role == "storage":
        return f"{schema}.{item.name}"
    if role == "previous":
        return f"{item.qualified_name} (the previous generation)"
    return item.qualified_name


def explain_migration_failure(error: BaseException, database: str) -> str | None:
    """A message for a migration that PostgreSQL refused because views read what it
    changes, naming those views and ORM_VIEWS_SYNC_ON_MIGRATE; None for other errors."""
    if sqlstate_of(error) not in DEPENDENT_OBJECTS_SQLSTATES:
        return None
    run = _runs.get(database)
    migration = run.current_migration if run else None
    connection = connections[database]
    dependents: list[Dependent] = []
    schema = get_settings().schema
    roles = {schema: "live"}
    if run is not None and run.targets:
        try:
            dependents = dependents_of(connection, _pairs(run.targets_of(migration)))
            roles.update(
                (item.name, item.role) for item in read_catalog(connection, schema).working
            )
        except DatabaseError:
            dependents = []
    detail = _error_detail(error)
    if not dependents and " view " not in f" {detail} {error} ":
        return None
    ours = sorted(
        {
            _as_declared(item, schema, roles[item.schema])
            for item in dependents
            if item.schema in roles
        }
    )
    others = [item.qualified_name for item in dependents if item.schema not in roles]
    where = f"Migration {migration}" if migration else "A migration"
    reason = str(error).strip().splitlines()[0]
    lines = [
        f"{where} failed on database '{database}': PostgreSQL refused to change a column or "
        f"table that views read ({reason})."
    ]
    if ours:
        lines.append(f"Views of django-orm-views that read it: {', '.join(ours)}.")
    if others:
        lines.append(
            f"Views that django-orm-views does not manage also read it: {', '.join(others)}; "
            "drop or change them yourself."
        )
    if not dependents and detail:
        lines.append(f"PostgreSQL says: {' '.join(detail.split())}")
    if get_settings().sync_on_migrate and not ours and others:
        lines.append(
            f"ORM_VIEWS_SYNC_ON_MIGRATE only drops and syncs the views of the {schema!r} schema."
        )
    elif get_settings().sync_on_migrate:
        lines.append(
            "ORM_VIEWS_SYNC_ON_MIGRATE is on, but this operation is not one django-orm-views "
            "reads (RunSQL or RunPython, for instance): list what it changes in its hints, "
            f'e.g. hints={{"{TABLES_HINT}": ["<table>", "<table>.<column>"]}}, and migrate '
            "again."
        )
    else:
        lines.append(
            "Set ORM_VIEWS_SYNC_ON_MIGRATE = True in your settings: migrate then drops the "
            "views that read what the migrations change and syncs them when it ends. "
            "Or drop those views yourself, migrate, and run `manage.py sync_views`."
        )
    return " ".join(lines)


def restore_after_failure(database: str) -> str | None:
    """After a failed migrate that dropped views: sync them back (the failed migration
    was rolled back). Returns a sentence for the error message, or None."""
    run = _runs.pop(database, None)
    if run is None or not run.dropped or run.synced:
        return None
    try:
        sync_views(database=database)
    except Exception as error:
        return (
            f"The {len(run.dropped)} view(s) dropped before the migrations could not be "
            f"recreated ({error}); run `manage.py sync_views --database {database}` once "
            "the cause is fixed."
        )
    return f"The {len(run.dropped)} view(s) dropped before the migrations were recreated."
