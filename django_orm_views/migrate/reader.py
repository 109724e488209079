"""Reading a migration plan: which tables and columns its operations alter or drop.

See the package's docstring for the operations that are read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db import router
from django.db.backends.utils import truncate_name
from django.db.migrations import operations
from django.db.migrations.state import ProjectState

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.migrations import Migration
    from django.db.migrations.operations.base import Operation

__all__ = ["TABLES_HINT", "Target", "migration_label", "touched_targets"]

# RunSQL / RunPython hint naming what the operation alters or drops.
TABLES_HINT = "orm_views_tables"


@dataclass(frozen=True)
class Target:
    """A table (``column`` None) or a column that a migration alters or drops, by the
    names the database has before the plan runs."""

    table: str
    column: str | None
    migration: str

    def describe(self) -> str:
        return f"{self.table}.{self.column}" if self.column else self.table


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
            self._separate(app_label, operation)
        elif isinstance(operation, operations.RenameField):
            self._rename_field(app_label, operation)
        elif isinstance(operation, (operations.RenameModel, operations.AlterModelTable)):
            self._rename_table(app_label, operation)
        else:
            self._record(app_label, operation)
            operation.state_forwards(app_label, self.state)

    def _record(self, app_label: str, operation: Operation) -> None:
        """The targets of an operation that changes no name."""
        if isinstance(operation, (operations.AlterField, operations.RemoveField)):
            model_state = self.model_state(app_label, operation.model_name)
            if model_state is not None:
                self.add_column(model_state, operation.name)
        elif isinstance(operation, operations.DeleteModel):
            model_state = self.model_state(app_label, operation.name)
            if model_state is not None:
                self.add_table(model_state)
        elif isinstance(operation, operations.AlterOrderWithRespectTo):
            self._order_removed(app_label, operation)
        elif isinstance(operation, (operations.RunSQL, operations.RunPython)):
            self.add_hinted(operation)

    def _separate(self, app_label: str, operation: operations.SeparateDatabaseAndState) -> None:
        # The database operations are read against a copy of the state; the state then
        # moves on by the operation's state operations only.
        saved = self.state
        self.state = saved.clone()
        for database_operation in operation.database_operations:
            self.forwards(app_label, database_operation)
        self.state = saved
        operation.state_forwards(app_label, self.state)

    def _order_removed(self, app_label: str, operation: operations.AlterOrderWithRespectTo) -> None:
        model_state = self.model_state(app_label, operation.name)
        if (
            model_state is not None
            and model_state.options.get("order_with_respect_to")
            and not operation.order_with_respect_to
            and self.migrates_here(model_state)
        ):
            table = self.table_of(model_state)
            self.targets.append(
                Target(self.names.table(table), self.names.column(table, "_order"), self.migration)
            )

    def _rename_field(self, app_label: str, operation: operations.RenameField) -> None:
        model_state = self.model_state(app_label, operation.model_name)
        if model_state is None:
            operation.state_forwards(app_label, self.state)
            return
        table = self.table_of(model_state)
        old_column = self.column_of(model_state, operation.old_name)
        operation.state_forwards(app_label, self.state)
        renamed = self.model_state(app_label, operation.model_name)
        new_column = self.column_of(renamed, operation.new_name) if renamed else None
        if old_column and new_column:
            self.names.rename_column(table, old_column, new_column)

    def _rename_table(self, app_label: str, operation: Operation) -> None:
        model_name = getattr(operation, "name", None)
        old_name = getattr(operation, "old_name", None) or model_name
        new_name = getattr(operation, "new_name", None) or model_name
        before = self.model_state(app_label, str(old_name))
        old_table = self.table_of(before) if before is not None else None
        operation.state_forwards(app_label, self.state)
        after = self.model_state(app_label, str(new_name))
        if old_table and after is not None:
            self.names.rename_table(old_table, self.table_of(after))

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
