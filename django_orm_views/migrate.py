"""Views and ``migrate``: keep views working while migrations change the tables they read.

PostgreSQL refuses to alter the type of a column, or to drop a column or a table, that
a view reads (SQLSTATE 0A000 and 2BP01). With ``ORM_VIEWS_SYNC_ON_MIGRATE = True``:

1. ``pre_migrate`` (once a run and database): the plan's operations are read to find
   the tables and columns they alter or drop (:func:`touched_targets`); the views of
   the views schema that read them, and the views that read those, are dropped in one
   short transaction. Every other view stays where it is, readable.
2. The migrations run.
3. ``post_migrate`` (once a run and database): ``sync_views(database=...)`` creates the
   dropped views again, from the code as it is now, and brings the rest up to date.

With the setting off nothing is dropped by this package. A migration that alters the
type of a column views read then fails; ``manage.py migrate`` (this package's subclass
of Django's) names the views and the setting instead of only repeating PostgreSQL's
error. Django drops columns and tables with ``CASCADE``, so ``RemoveField`` and
``DeleteModel`` succeed and take the views that read them along: migrate ends by naming
those views and telling to sync.

Which operations are read: ``AlterField``, ``RemoveField`` (the column; for a primary
key or another field that foreign keys point to, their columns as well),
``DeleteModel`` (the table), ``AlterOrderWithRespectTo`` (``_order``), the database
operations of ``SeparateDatabaseAndState``, and ``RunSQL`` / ``RunPython`` that list
what they change in ``hints={"orm_views_tables": ["table", "table.column"]}``.
``RenameField``, ``RenameModel`` and ``AlterModelTable`` rename in place (PostgreSQL's
views follow by identity), so they drop nothing; later operations of the same plan on
the new names are traced back to the old ones. Unapplying migrations (a backwards plan)
drops the views of every table its operations name. Everything else, and ``RunSQL``
without hints, is not analysed.
"""

from __future__ import annotations

import graphlib
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from django.apps import apps as global_apps
from django.db import DatabaseError, connections, router, transaction
from django.db.backends.utils import truncate_name
from django.db.migrations import operations
from django.db.migrations.state import ProjectState

from .conf import get_settings
from .exceptions import ExternalDependentsError, SyncError, ViewError, sqlstate_of
from .introspection import external_dependents, package_schemas, read_catalog
from .views import quote_identifier

if TYPE_CHECKING:
    from django.apps import AppConfig
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.migrations import Migration
    from django.db.migrations.operations.base import Operation

__all__ = [
    "DEPENDENT_OBJECTS_SQLSTATES",
    "TABLES_HINT",
    "Dependent",
    "Target",
    "dependents_of",
    "explain_migration_failure",
    "touched_targets",
]

# RunSQL / RunPython hint naming what the operation alters or drops.
TABLES_HINT = "orm_views_tables"
# "cannot alter type of a column used by a view or rule" and "cannot drop ... because
# other objects depend on it".
FEATURE_NOT_SUPPORTED = "0A000"
DEPENDENT_OBJECTS_STILL_EXIST = "2BP01"
DEPENDENT_OBJECTS_SQLSTATES = frozenset({FEATURE_NOT_SUPPORTED, DEPENDENT_OBJECTS_STILL_EXIST})
RETRYABLE_SQLSTATES = frozenset({"55P03", "40P01"})


@dataclass(frozen=True)
class Target:
    """A table (``column`` None) or a column that a migration alters or drops, by the
    names the database has before the plan runs."""

    table: str
    column: str | None
    migration: str

    def describe(self) -> str:
        return f"{self.table}.{self.column}" if self.column else self.table


@dataclass(frozen=True)
class Dependent:
    """A view or materialized view that reads a target, directly or through other views."""

    oid: int
    schema: str
    name: str
    kind: str

    @property
    def qualified_name(self) -> str:
        return f"{self.schema}.{self.name}"


# Reading the plan --------------------------------------------------------------------


def migration_label(migration: Migration) -> str:
    return f"{migration.app_label}.{migration.name}"


class _Names:
    """Maps the names a plan's state uses to the names the database has now, across
    the renames earlier operations of the same plan make."""

    def __init__(self) -> None:
        self.tables: dict[str, str] = {}
        self.columns: dict[tuple[str, str], str] = {}

    def table(self, table: str) -> str:
        return self.tables.get(table, table)

    def column(self, table: str, column: str) -> str:
        return self.columns.get((table, column), column)

    def rename_table(self, old: str, new: str) -> None:
        if old == new:
            return
        self.tables[new] = self.table(old)
        for (table, column), original in list(self.columns.items()):
            if table == old:
                self.columns[(new, column)] = original

    def rename_column(self, table: str, old: str, new: str) -> None:
        if old != new:
            self.columns[(table, new)] = self.column(table, old)


class _PlanReader:
    def __init__(self, connection: BaseDatabaseWrapper, state: ProjectState) -> None:
        self.connection = connection
        self.alias = connection.alias
        self.state = state
        self.names = _Names()
        self.targets: list[Target] = []
        self.migration = ""

    # Names in the state ----------------------------------------------------------

    def model_state(self, app_label: str, model_name: str) -> Any:
        return self.state.models.get((app_label, model_name.lower()))

    def table_of(self, model_state: Any) -> str:
        table = model_state.options.get("db_table")
        if not table:
            table = truncate_name(
                f"{model_state.app_label}_{model_state.name_lower}",
                self.connection.ops.max_name_length(),
            )
        return str(table)

    def column_of(self, model_state: Any, field_name: str) -> str | None:
        state_field = model_state.fields.get(field_name)
        if state_field is None or state_field.many_to_many:
            return None
        clone = state_field.clone()
        clone.set_attributes_from_name(field_name)
        return str(clone.column) if clone.column else None

    def migrates_here(self, model_state: Any) -> bool:
        options = model_state.options
        if options.get("proxy") or not options.get("managed", True):
            return False
        try:
            return bool(
                router.allow_migrate(
                    self.alias, model_state.app_label, model_name=model_state.name_lower
                )
            )
        except Exception:
            # A router that needs more hints than these: assume it may touch the table.
            return True

    # Targets -----------------------------------------------------------------------

    def add_table(self, model_state: Any) -> None:
        if self.migrates_here(model_state):
            table = self.table_of(model_state)
            self.targets.append(Target(self.names.table(table), None, self.migration))

    def add_column(self, model_state: Any, field_name: str) -> None:
        if not self.migrates_here(model_state):
            return
        column = self.column_of(model_state, field_name)
        if column is None:
            return
        table = self.table_of(model_state)
        self.targets.append(
            Target(self.names.table(table), self.names.column(table, column), self.migration)
        )
        self.add_referencing_columns(model_state, field_name)

    def add_referencing_columns(self, model_state: Any, field_name: str) -> None:
        """Altering a primary key (or a field foreign keys point to) alters the foreign
        key columns too."""
        state_field = model_state.fields.get(field_name)
        is_pk = bool(state_field is not None and getattr(state_field, "primary_key", False))
        try:
            related = self.state.relations.get((model_state.app_label, model_state.name_lower))
        except Exception:
            return
        for (app_label, model_name), fields in (related or {}).items():
            other = self.model_state(app_label, model_name)
            if other is None:
                continue
            for name, relation in fields.items():
                if relation.many_to_many:
                    continue
                to_field = getattr(relation, "to_fields", [None])[0]
                points_here = to_field == field_name or (to_field in (None, "") and is_pk)
                if not points_here or not self.migrates_here(other):
                    continue
                column = self.column_of(other, name)
                if column:
                    table = self.table_of(other)
                    self.targets.append(
                        Target(
                            self.names.table(table),
                            self.names.column(table, column),
                            self.migration,
                        )
                    )

    def add_hinted(self, operation: Operation) -> None:
        hints = getattr(operation, "hints", None) or {}
        for entry in hints.get(TABLES_HINT, ()) or ():
            table, _, column = str(entry).partition(".")
            self.targets.append(Target(self.names.table(table), column or None, self.migration))

    # Operations --------------------------------------------------------------------

    def forwards(self, app_label: str, operation: Operation) -> None:
        """Record what ``operation`` alters or drops, then apply it to the state."""
        if isinstance(operation, operations.SeparateDatabaseAndState):
            saved = self.state
            self.state = saved.clone()
            for database_operation in operation.database_operations:
                self.forwards(app_label, database_operation)
            self.state = saved
            operation.state_forwards(app_label, self.state)
            return
        model_state = None
        model_name = getattr(operation, "model_name", None) or getattr(operation, "name", None)
        if isinstance(operation, (operations.AlterField, operations.RemoveField)):
            model_state = self.model_state(app_label, operation.model_name)
            if model_state is not None:
                self.add_column(model_state, operation.name)
        elif isinstance(operation, operations.DeleteModel):
            model_state = self.model_state(app_label, operation.name)
            if model_state is not None:
                self.add_table(model_state)
        elif isinstance(operation, operations.AlterOrderWithRespectTo):
            model_state = self.model_state(app_label, operation.name)
            if (
                model_state is not None
                and model_state.options.get("order_with_respect_to")
                and not operation.order_with_respect_to
                and self.migrates_here(model_state)
            ):
                table = self.table_of(model_state)
                self.targets.append(
                    Target(
                        self.names.table(table),
                        self.names.column(table, "_order"),
                        self.migration,
                    )
                )
        elif isinstance(operation, (operations.RunSQL, operations.RunPython)):
            self.add_hinted(operation)
        elif isinstance(operation, operations.RenameField):
            model_state = self.model_state(app_label, operation.model_name)
            if model_state is not None:
                table = self.table_of(model_state)
                old_column = self.column_of(model_state, operation.old_name)
                operation.state_forwards(app_label, self.state)
                renamed = self.model_state(app_label, operation.model_name)
                new_column = self.column_of(renamed, operation.new_name) if renamed else None
                if old_column and new_column:
                    self.names.rename_column(table, old_column, new_column)
                return
        elif isinstance(operation, (operations.RenameModel, operations.AlterModelTable)):
            old_name = getattr(operation, "old_name", None) or model_name
            new_name = getattr(operation, "new_name", None) or model_name
            before = self.model_state(app_label, str(old_name))
            old_table = self.table_of(before) if before is not None else None
            operation.state_forwards(app_label, self.state)
            after = self.model_state(app_label, str(new_name))
            if old_table and after is not None:
                self.names.rename_table(old_table, self.table_of(after))
            return
        operation.state_forwards(app_label, self.state)

    def backwards(self, app_label: str, operation: Operation) -> None:
        """Unapplying: every table the operation names (as the database has it now)."""
        if isinstance(operation, operations.SeparateDatabaseAndState):
            for database_operation in operation.database_operations:
                self.backwards(app_label, database_operation)
            return
        if isinstance(operation, (operations.RunSQL, operations.RunPython)):
            self.add_hinted(operation)
            return
        for attribute in ("model_name", "name", "new_name", "old_name"):
            name = getattr(operation, attribute, None)
            if not isinstance(name, str):
                continue
            model_state = self.model_state(app_label, name)
            if model_state is not None:
                self.add_table(model_state)
                return


def touched_targets(
    plan: Sequence[tuple[Migration, bool]],
    state: ProjectState,
    connection: BaseDatabaseWrapper,
) -> list[Target]:
    """The tables and columns that ``plan`` alters or drops on ``connection``, named as
    the database names them before the plan runs. ``state`` is the project state before
    the plan; it is changed (pass a clone to keep it)."""
    reader = _PlanReader(connection, state)
    for migration, backwards in plan:
        reader.migration = migration_label(migration)
        for operation in reversed(migration.operations) if backwards else migration.operations:
            if backwards:
                reader.backwards(migration.app_label, operation)
            else:
                reader.forwards(migration.app_label, operation)
    unique: dict[tuple[str, str | None, str], Target] = {}
    for target in reader.targets:
        unique.setdefault((target.table, target.column, target.migration), target)
    return list(unique.values())


# Reading the catalog -----------------------------------------------------------------

TARGET_QUERY = """
SELECT c.oid, COALESCE(a.attnum, 0)
FROM pg_class AS c
LEFT JOIN pg_attribute AS a
    ON a.attrelid = c.oid AND a.attname = %s AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.oid = to_regclass(%s)
"""

# Views whose rewrite rule reads one of the (relation, column) pairs (column 0: any).
DIRECT_DEPENDENTS_QUERY = """
SELECT DISTINCT c.oid, n.nspname, c.relname, c.relkind
FROM unnest(%s::oid[], %s::int[]) AS t(relid, attnum)
JOIN pg_depend AS d
    ON d.refclassid = 'pg_class'::regclass AND d.refobjid = t.relid
   AND (t.attnum = 0 OR d.refobjsubid = t.attnum)
JOIN pg_rewrite AS r ON d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid
JOIN pg_class AS c ON c.oid = r.ev_class
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE r.ev_class <> t.relid
"""

# The given views and every view that reads them, directly or not.
DEPENDENTS_CLOSURE_QUERY = """
WITH RECURSIVE closure(oid) AS (
    SELECT unnest(%s::oid[])
    UNION
    SELECT r.ev_class
    FROM closure AS p
    JOIN pg_depend AS d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = p.oid
    JOIN pg_rewrite AS r ON d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid
    WHERE r.ev_class <> p.oid
)
SELECT c.oid, n.nspname, c.relname, c.relkind
FROM closure
JOIN pg_class AS c ON c.oid = closure.oid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
"""

# Which of the given views reads which other one of them.
EDGES_QUERY = """
SELECT DISTINCT r.ev_class, d.refobjid
FROM pg_depend AS d
JOIN pg_rewrite AS r ON d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid
WHERE d.refclassid = 'pg_class'::regclass
  AND r.ev_class = ANY(%s::oid[]) AND d.refobjid = ANY(%s::oid[]) AND r.ev_class <> d.refobjid
"""

KINDS = {"v": "view", "m": "materialized view"}


def _dependents(rows: Iterable[tuple[Any, ...]]) -> list[Dependent]:
    found = {
        int(oid): Dependent(int(oid), schema, name, KINDS.get(kind, "relation"))
        for oid, schema, name, kind in rows
    }
    return sorted(found.values(), key=lambda item: (item.schema, item.name))


def resolve_targets(
    connection: BaseDatabaseWrapper, targets: Iterable[Target]
) -> list[tuple[int, int]]:
    """``(relation oid, attnum)`` of the targets that exist (attnum 0: the whole table)."""
    resolved: set[tuple[int, int]] = set()
    with connection.cursor() as cursor:
        for target in targets:
            cursor.execute(
                TARGET_QUERY, [target.column or "", connection.ops.quote_name(target.table)]
            )
            row = cursor.fetchone()
            if row is None:
                continue
            oid, attnum = int(row[0]), int(row[1])
            if target.column and not attnum:
                continue  # a column the plan adds before it alters it
            resolved.add((oid, attnum))
    return sorted(resolved)


def dependents_of(connection: BaseDatabaseWrapper, targets: Iterable[Target]) -> list[Dependent]:
    """Every view, in any schema, that reads one of ``targets`` directly or through
    other views."""
    resolved = resolve_targets(connection, targets)
    if not resolved:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            DIRECT_DEPENDENTS_QUERY,
            [[oid for oid, _ in resolved], [attnum for _, attnum in resolved]],
        )
        direct = _dependents(cursor.fetchall())
        if not direct:
            return []
        cursor.execute(DEPENDENTS_CLOSURE_QUERY, [[item.oid for item in direct]])
        return _dependents(cursor.fetchall())


def own_schemas(connection: BaseDatabaseWrapper, views_schema: str) -> set[str]:
    """The views schema and the working schemas the package marked as its own (never a
    schema whose name merely looks like one of them)."""
    return set(package_schemas(read_catalog(connection, views_schema)))


def _drop_order(connection: BaseDatabaseWrapper, dependents: list[Dependent]) -> list[Dependent]:
    """Readers before the views they read."""
    oids = [item.oid for item in dependents]
    with connection.cursor() as cursor:
        cursor.execute(EDGES_QUERY, [oids, oids])
        edges = cursor.fetchall()
    sorter: graphlib.TopologicalSorter[int] = graphlib.TopologicalSorter()
    by_oid = {item.oid: item for item in dependents}
    for oid in oids:
        sorter.add(oid)
    for reader, read in edges:
        sorter.add(int(read), int(reader))  # ``read`` comes after ``reader``
    return [by_oid[oid] for oid in sorter.static_order()]


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
            run.at_risk = dependents_of(connection, run.targets)
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
    from .registry import views_for_database
    from .sync import sync_views

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
        names = ", ".join(item.qualified_name for item in gone)
        _write(
            stdout,
            verbosity,
            f"The migrations dropped {len(gone)} view(s) on database '{connection.alias}' "
            f"together with the columns or tables they read (Django drops them with CASCADE): "
            f"{names}. Run `manage.py sync_views` to create them again, or set "
            "ORM_VIEWS_SYNC_ON_MIGRATE = True so that migrate does it.",
        )
    return gone


@contextmanager
def _lock_timeout(cursor: Any, milliseconds: int) -> Iterator[None]:
    cursor.execute(
        "SELECT current_setting('lock_timeout'), set_config('lock_timeout', %s, true)",
        [f"{milliseconds}ms"],
    )
    previous = cursor.fetchone()[0]
    yield
    cursor.execute("SELECT set_config('lock_timeout', %s, true)", [previous])


def drop_dependent_views(
    connection: BaseDatabaseWrapper, targets: Sequence[Target]
) -> list[Dependent]:
    """Drop the views of the views schema (and any leftover staging or old schema) that
    read ``targets``, with the views that read them. Refuses, changing nothing, when a
    view outside those schemas reads one of them."""
    from .sync import describe_dependent, drop_schema, sync_lock

    settings = get_settings()
    schema = settings.schema
    with sync_lock(connection, schema, settings.sync_lock_wait):
        own = own_schemas(connection, schema)
        direct = [item for item in dependents_of(connection, targets) if item.schema in own]
        if not direct:
            return []
        with connection.cursor() as cursor:
            cursor.execute(DEPENDENTS_CLOSURE_QUERY, [[item.oid for item in direct]])
            closure = _dependents(cursor.fetchall())
        outside = [item for item in closure if item.schema not in own]
        if outside:
            names = ", ".join(f"{item.kind} {item.qualified_name}" for item in outside)
            raise ExternalDependentsError(
                f"Cannot keep the views of database '{connection.alias}' working through "
                f"migrate: {names} (outside the {schema!r} schema) read views that read "
                "what the migrations change, so those views cannot be dropped before the "
                "migrations and synced after them. Nothing was changed. Drop these "
                "objects (or declare them as views), then migrate again."
            )
        leftovers = sorted({item.schema for item in closure if item.schema != schema})
        for leftover in leftovers:
            if not drop_schema(connection, leftover):
                raise SyncError(
                    f"Schema {leftover} (left by an earlier sync) holds views that read what "
                    f"the migrations change on database '{connection.alias}', and it could "
                    "not be dropped (readers or outside objects still use it). Nothing else "
                    "was changed. Drop it, then migrate again."
                )
        live = [item for item in closure if item.schema == schema]
        if not live:
            return []
        row_type_users = external_dependents(
            connection, schema, [item.name for item in live], package_schemas=own
        )
        if row_type_users:
            listed = "; ".join(describe_dependent(schema, item) for item in row_type_users)
            raise ExternalDependentsError(
                f"Cannot keep the views of database '{connection.alias}' working through "
                f"migrate: {listed}, so the views that read what the migrations change "
                "cannot be dropped before the migrations and synced after them. Nothing was "
                "changed. Drop those objects (or stop them using the views), then migrate "
                "again."
            )
        ordered = _drop_order(connection, live)
        statements = [
            f"DROP {'MATERIALIZED VIEW' if item.kind == 'materialized view' else 'VIEW'} "
            f"IF EXISTS {quote_identifier(item.schema)}.{quote_identifier(item.name)}"
            for item in ordered
        ]
        delay = 0.01
        attempts = max(settings.swap_attempts, 1)
        attempt = 0
        while True:
            attempt += 1
            try:
                with (
                    transaction.atomic(using=connection.alias),
                    connection.cursor() as cursor,
                    _lock_timeout(cursor, settings.swap_lock_timeout_ms),
                ):
                    for statement in statements:
                        cursor.execute(statement)
                return ordered
            except DatabaseError as error:
                if sqlstate_of(error) in RETRYABLE_SQLSTATES and attempt < attempts:
                    time.sleep(delay)
                    delay = min(delay * 2, 0.5)
                    continue
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
    own = {schema}
    if run is not None and run.targets:
        try:
            dependents = dependents_of(connection, run.targets_of(migration))
            own = own_schemas(connection, schema)
        except DatabaseError:
            dependents = []
    detail = _error_detail(error)
    if not dependents and " view " not in f" {detail} {error} ":
        return None
    ours = [item.qualified_name for item in dependents if item.schema == schema]
    others = [item.qualified_name for item in dependents if item.schema not in own]
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
    from .sync import sync_views

    try:
        sync_views(database=database)
    except Exception as error:
        return (
            f"The {len(run.dropped)} view(s) dropped before the migrations could not be "
            f"recreated ({error}); run `manage.py sync_views --database {database}` once "
            "the cause is fixed."
        )
    return f"The {len(run.dropped)} view(s) dropped before the migrations were recreated."
