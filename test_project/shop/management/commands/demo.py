"""Run the whole story in one process: tables, data, views, and a reader that can only
see what it is meant to see."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections

from test_project.shop.models import Customer

READER_ROLE = "analytics"
# test_project's CustomerSanitised grants itself to this role too (grant_select_to).
MARKETING_ROLE = "marketing"
SAMPLE_ROWS = 5
# SQLSTATE 42501: the role lacks the privilege (it is not an error of the demo).
INSUFFICIENT_PRIVILEGE = "42501"


class Command(BaseCommand):
    help = (
        "Migrate, seed the shop, sync the views, then read them as the analytics role and "
        "show that the tables and the hidden view stay out of its reach."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database",
            default=DEFAULT_DB_ALIAS,
            choices=tuple(connections),
            help='Database to use. Default: "default".',
        )
        parser.add_argument("--customers", type=int, default=20)
        parser.add_argument("--orders", type=int, default=60)

    def handle(self, *args: Any, **options: Any) -> None:
        database: str = options["database"]
        verbosity: int = options["verbosity"]
        # The raw streams: a command wraps them itself, and wrapping our wrappers would end
        # every line twice ("Applying ..." and its "OK" on lines of their own).
        streams = {"stdout": self.stdout._out, "stderr": self.stderr._out}
        nested = {"database": database, **streams}

        self.heading("1. Migrate the tables (every database)")
        for alias in connections:
            call_command(
                "migrate", interactive=False, verbosity=verbosity, database=alias, **streams
            )

        self.heading("2. Create the reader roles")
        self.create_roles(database)

        self.heading("3. Seed the shop")
        call_command(
            "seed_shop",
            customers=options["customers"],
            orders=options["orders"],
            verbosity=verbosity,
            **nested,
        )

        self.heading("4. Sync the views (every database that has some)")
        call_command("sync_views", verbosity=2, **streams)
        # A sync keeps unchanged materialized views as they were; the shop was just
        # seeded again, so bring them up to date.
        call_command("refresh_views", verbosity=2, **nested)

        self.heading(f"5. Read as the {READER_ROLE!r} role")
        schema = getattr(settings, "ORM_VIEWS_SCHEMA", "views")
        quote = connections[database].ops.quote_name
        leaks: list[str] = []
        with self.reader_connection(database) as reader:
            for view in ("shop_customersanitised", "shop_countryrevenue", "shop_dailysales"):
                self.show_rows(reader, f"{quote(schema)}.{quote(view)}")

            self.heading(f"6. What {READER_ROLE!r} must not read")
            forbidden = [
                f"public.{quote(Customer._meta.db_table)}",
                f"{quote(schema)}.{quote('shop_internalcustomercontacts')}",
            ]
            for relation in forbidden:
                if self.is_readable(reader, relation):
                    leaks.append(relation)

        if leaks:
            raise CommandError(
                f"The {READER_ROLE!r} role can read {', '.join(leaks)}. Only the views that "
                "are not hidden may be granted to it: check ORM_VIEWS_GRANT_SELECT_TO and the "
                "privileges granted on the tables."
            )
        self.heading("7. What each view reads (list_views --graph, Mermaid)")
        call_command("list_views", database=database, graph=True, **streams)
        self.stdout.write(self.style.SUCCESS("\nDemo complete."))
        self.stdout.write(
            "Next: change a view in test_project/shop/postgres_views.py, then run\n"
            "  python manage.py sync_views --check --diff   # what would change, as a diff\n"
            "  python manage.py sync_views                  # apply it without blocking readers\n"
            "  python manage.py list_views                  # state, rows, grantees of each view\n"
            "  python manage.py sync_views --rollback       # the previous generation back, at once"
        )

    def heading(self, text: str) -> None:
        self.stdout.write(self.style.MIGRATE_HEADING(f"\n{text}"))

    def create_roles(self, database: str) -> None:
        # Roles belong to the whole cluster, so the demo may find them from an earlier run.
        roles = list(getattr(settings, "ORM_VIEWS_GRANT_SELECT_TO", [])) or [READER_ROLE]
        roles += [role for role in (READER_ROLE, MARKETING_ROLE) if role not in roles]
        connection = connections[database]
        with connection.cursor() as cursor:
            for role in roles:
                cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
                if cursor.fetchone():
                    self.stdout.write(f"  role {role!r} already exists")
                    continue
                cursor.execute(f"CREATE ROLE {connection.ops.quote_name(role)} LOGIN")
                self.stdout.write(self.style.SUCCESS(f"  created role {role!r} (LOGIN)"))

    @contextmanager
    def reader_connection(self, database: str) -> Iterator[Any]:
        """A new connection to the same database, logged in as the reader role."""
        settings_dict = connections[database].settings_dict
        parameters = {
            "dbname": settings_dict["NAME"],
            "user": READER_ROLE,
            "host": settings_dict["HOST"],
            "port": settings_dict["PORT"],
        }
        parameters = {key: str(value) for key, value in parameters.items() if value}
        driver = database_driver()
        connection = driver.connect(**parameters)
        connection.autocommit = True
        try:
            yield connection
        finally:
            connection.close()

    def show_rows(self, reader: Any, relation: str) -> None:
        with reader.cursor() as cursor:
            cursor.execute(f"SELECT * FROM {relation} ORDER BY 1 LIMIT {SAMPLE_ROWS}")
            columns = [column[0] for column in cursor.description]
            rows = cursor.fetchall()
        self.stdout.write(self.style.SQL_TABLE(f"\n  SELECT * FROM {relation}"))
        for line in format_table(columns, rows):
            self.stdout.write(f"    {line}".rstrip())

    def is_readable(self, reader: Any, relation: str) -> bool:
        driver = database_driver()
        try:
            with reader.cursor() as cursor:
                cursor.execute(f"SELECT * FROM {relation} LIMIT 1")
                cursor.fetchall()
        except driver.Error as error:
            if sqlstate(error) != INSUFFICIENT_PRIVILEGE:
                raise
            message = str(error).strip().splitlines()[0]
            self.stdout.write(self.style.SUCCESS(f"  SELECT * FROM {relation}: denied: {message}"))
            return False
        self.stdout.write(self.style.ERROR(f"  SELECT * FROM {relation}: readable!"))
        return True


def database_driver() -> Any:
    """psycopg 3 when installed (as Django prefers), else psycopg2."""
    try:
        return importlib.import_module("psycopg")
    except ImportError:
        return importlib.import_module("psycopg2")


def sqlstate(error: Exception) -> str | None:
    # psycopg 3 spells it `sqlstate`, psycopg2 `pgcode`.
    return getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    cells = [[str(value) for value in row] for row in rows]
    widths = [
        max([len(column)] + [len(row[i]) for row in cells]) for i, column in enumerate(columns)
    ]
    lines = [" | ".join(column.ljust(width) for column, width in zip(columns, widths, strict=True))]
    lines.append("-+-".join("-" * width for width in widths))
    lines.extend(
        " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in cells
    )
    if not rows:
        lines.append("(no rows)")
    return lines
