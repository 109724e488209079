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

from .reader import TABLES_HINT, Target, migration_label, touched_targets
from .receivers import (
    DEPENDENT_OBJECTS_SQLSTATES,
    MigrateRun,
    current_run,
    drop_dependent_views,
    explain_migration_failure,
    forget_run,
    handle_post_migrate,
    handle_pre_migrate,
    restore_after_failure,
)

__all__ = [
    "DEPENDENT_OBJECTS_SQLSTATES",
    "TABLES_HINT",
    "MigrateRun",
    "Target",
    "current_run",
    "drop_dependent_views",
    "explain_migration_failure",
    "forget_run",
    "handle_post_migrate",
    "handle_pre_migrate",
    "migration_label",
    "restore_after_failure",
    "touched_targets",
]
