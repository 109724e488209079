"""``manage.py migrate``: Django's command, with errors about views explained.

Everything Django's ``migrate`` does is unchanged. The views themselves are handled by
the ``pre_migrate`` / ``post_migrate`` receivers (``django_orm_views/migrate/``); this
subclass turns their errors, and PostgreSQL's refusal to change a column that views
read, into a ``CommandError`` that names the views and ORM_VIEWS_SYNC_ON_MIGRATE.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError
from django.core.management.commands.migrate import Command as DjangoMigrateCommand
from django.db import DatabaseError

from ...checks import checks_for_migrate
from ...exceptions import ViewError
from ...migrate import (
    current_run,
    explain_migration_failure,
    forget_run,
    migration_label,
    restore_after_failure,
)


class Command(DjangoMigrateCommand):
    database = "default"

    def execute(self, *args: Any, **options: Any) -> Any:
        # System checks run from execute() (Django 5) or handle() (Django 4.2).
        with checks_for_migrate():
            return super().execute(*args, **options)

    def handle(self, *args: Any, **options: Any) -> None:
        database: str = options["database"]
        self.database = database
        try:
            super().handle(*args, **options)
        except ViewError as error:
            raise CommandError(self.with_restore(str(error), database)) from error
        except DatabaseError as error:
            message = explain_migration_failure(error, database)
            restored = restore_after_failure(database)
            if message is None:
                if restored:
                    self.stderr.write(restored)
                raise
            raise CommandError(" ".join(filter(None, [message, restored]))) from error
        finally:
            forget_run(database)

    def with_restore(self, message: str, database: str) -> str:
        restored = restore_after_failure(database)
        return f"{message} {restored}" if restored else message

    def migration_progress_callback(
        self, action: str, migration: Any = None, fake: bool = False
    ) -> None:
        # Remember which migration runs, so that a failure can name it.
        if action in ("apply_start", "unapply_start") and migration is not None:
            run = current_run(self.database)
            if run is not None:
                run.current_migration = migration_label(migration)
        super().migration_progress_callback(action, migration, fake)
