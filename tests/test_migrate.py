"""``migrate`` and views: migrations that alter, rename and drop columns views read.

The end-to-end tests run ``manage.py migrate`` in a subprocess with
tests/migrating_settings.py (tests.migrating_app and its migrations 0001..0003) on a
database each test creates for itself, so that nothing here touches test_project's
test databases. The first tests read the plan without any database.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connections, migrations, models
from django.db.migrations.operations.base import Operation
from django.db.migrations.state import ModelState, ProjectState

from django_orm_views.migrate import TABLES_HINT, Target, touched_targets

from .utils import REPOSITORY, CommandResult

# Reading the plan (no database) --------------------------------------------------------


def project_state() -> ProjectState:
    state = ProjectState()
    state.add_model(
        ModelState(
            "library",
            "Author",
            [("id", models.BigAutoField(primary_key=True)), ("name", models.TextField())],
        )
    )
    state.add_model(
        ModelState(
            "library",
            "Book",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("title", models.CharField(max_length=100)),
                ("price", models.IntegerField()),
                ("author", models.ForeignKey("library.Author", models.CASCADE)),
                ("isbn", models.CharField(max_length=13, db_column="ISBN_code")),
            ],
        )
    )
    state.add_model(
        ModelState(
            "library",
            "Legacy",
            [("id", models.AutoField(primary_key=True)), ("code", models.TextField())],
            options={"managed": False, "db_table": "legacy_codes"},
        )
    )
    return state


def migration(name: str, *operations: Any, app_label: str = "library") -> migrations.Migration:
    result = migrations.Migration(name, app_label)
    # django-stubs types `operations` as a ClassVar; Django's own autodetector sets it
    # on instances like this.
    result.operations = list(operations)  # type: ignore[misc]
    return result


def targets(*plan: tuple[migrations.Migration, bool]) -> list[tuple[str, str | None, str]]:
    found = touched_targets(list(plan), project_state(), connections["default"])
    return [(target.table, target.column, target.migration) for target in found]


class TestReadingThePlan:
    def test_altered_and_removed_columns_by_their_database_names(self) -> None:
        plan = migration(
            "0002",
            migrations.AlterField(
                "book", "price", models.DecimalField(max_digits=8, decimal_places=2)
            ),
            migrations.RemoveField("book", "isbn"),
            migrations.AlterField(
                "book", "author", models.ForeignKey("library.Author", models.PROTECT)
            ),
        )
        assert targets((plan, False)) == [
            ("library_book", "price", "library.0002"),
            ("library_book", "ISBN_code", "library.0002"),
            ("library_book", "author_id", "library.0002"),
        ]

    def test_added_renamed_and_indexed_columns_are_not_targets(self) -> None:
        plan = migration(
            "0002",
            migrations.AddField("book", "pages", models.IntegerField(default=0)),
            migrations.RenameField("book", "title", "name"),
            migrations.AddIndex("book", models.Index(fields=["price"], name="book_price")),
            migrations.CreateModel("Shelf", [("id", models.BigAutoField(primary_key=True))]),
        )
        assert targets((plan, False)) == []

    def test_renames_are_traced_back_to_the_names_the_database_has(self) -> None:
        first = migration("0002", migrations.RenameField("book", "title", "name"))
        second = migration(
            "0003",
            migrations.RenameModel("Book", "Volume"),
            migrations.AlterField("volume", "name", models.TextField()),
            migrations.AlterModelTable("volume", "volumes"),
            migrations.RemoveField("volume", "price"),
        )
        assert targets((first, False), (second, False)) == [
            ("library_book", "title", "library.0003"),
            ("library_book", "price", "library.0003"),
        ]

    def test_altering_a_primary_key_alters_the_foreign_keys_to_it(self) -> None:
        plan = migration(
            "0002", migrations.AlterField("author", "id", models.AutoField(primary_key=True))
        )
        assert targets((plan, False)) == [
            ("library_author", "id", "library.0002"),
            ("library_book", "author_id", "library.0002"),
        ]

    def test_deleted_tables(self) -> None:
        plan = migration("0002", migrations.DeleteModel("Book"), migrations.DeleteModel("Legacy"))
        # Legacy is unmanaged: Django never drops its table.
        assert targets((plan, False)) == [("library_book", None, "library.0002")]

    def test_run_sql_and_run_python_with_hints(self) -> None:
        plan = migration(
            "0002",
            migrations.RunSQL(
                "ALTER TABLE library_book ALTER COLUMN price TYPE bigint",
                hints={TABLES_HINT: ["library_book.price"]},
            ),
            migrations.RunSQL("SELECT 1"),
            migrations.RunPython(migrations.RunPython.noop, hints={TABLES_HINT: ["legacy_codes"]}),
        )
        assert targets((plan, False)) == [
            ("library_book", "price", "library.0002"),
            ("legacy_codes", None, "library.0002"),
        ]

    def test_database_operations_of_separate_database_and_state(self) -> None:
        plan = migration(
            "0002",
            migrations.SeparateDatabaseAndState(
                database_operations=[migrations.RemoveField("book", "price")],
                state_operations=[],
            ),
            migrations.AlterField("book", "price", models.BigIntegerField()),
        )
        # The state still has price after the database dropped it: both are reported.
        assert targets((plan, False)) == [
            ("library_book", "price", "library.0002"),
        ]

    def test_unapplying_names_whole_tables(self) -> None:
        plan = migration(
            "0002", migrations.AddField("book", "pages", models.IntegerField(default=0))
        )
        assert targets((plan, True)) == [("library_book", None, "library.0002")]

    def test_models_that_routers_keep_elsewhere_are_ignored(self) -> None:
        plan = migration(
            "0002",
            migrations.RemoveField("stockmovement", "location"),
            app_label="warehouse",
        )
        state = project_state()
        state.add_model(
            ModelState(
                "warehouse",
                "StockMovement",
                [("id", models.BigAutoField(primary_key=True)), ("location", models.TextField())],
            )
        )
        on_default = touched_targets([(plan, False)], state.clone(), connections["default"])
        on_warehouse = touched_targets([(plan, False)], state.clone(), connections["warehouse"])
        assert on_default == []
        assert on_warehouse == [Target("warehouse_stockmovement", "location", "warehouse.0002")]

    def test_removing_order_with_respect_to_drops_the_order_column(self) -> None:
        state = project_state()
        state.models["library", "book"].options["order_with_respect_to"] = "author"
        plan = migration("0002", migrations.AlterOrderWithRespectTo("book", None))
        found = touched_targets([(plan, False)], state, connections["default"])
        assert found == [Target("library_book", "_order", "library.0002")]

    def test_unapplying_hinted_and_separate_operations(self) -> None:
        plan = migration(
            "0002",
            migrations.SeparateDatabaseAndState(
                database_operations=[migrations.AlterField("author", "name", models.TextField())]
            ),
            migrations.RunSQL("SELECT 1", hints={TABLES_HINT: ["legacy_codes.code"]}),
        )
        assert targets((plan, True)) == [
            ("legacy_codes", "code", "library.0002"),
            ("library_author", None, "library.0002"),
        ]

    def test_an_operation_the_reader_cannot_follow_never_stops_migrate(self) -> None:
        class Unknown(Operation):
            def state_forwards(self, app_label: str, state: ProjectState) -> None:
                raise RuntimeError("boom")

        from django.apps import apps

        from django_orm_views.migrate import current_run, forget_run, handle_pre_migrate

        first = next(config for config in apps.get_app_configs() if config.models_module)
        output = io.StringIO()
        try:
            handle_pre_migrate(
                first,
                using="default",
                plan=[(migration("0002", Unknown()), False)],
                apps=apps,
                stdout=output,
            )
            run = current_run("default")
            assert run is not None and run.targets == []
        finally:
            forget_run("default")
        assert output.getvalue() == (
            "django-orm-views could not read the migration plan (RuntimeError: boom); no view "
            "is dropped before the migrations.\n"
        )


# Running migrate ----------------------------------------------------------------------


def drops_columns_with_cascade() -> bool:
    """Whether Django's RemoveField drops a column with CASCADE (it does before Django 6)."""
    return "CASCADE" in connections["default"].SchemaEditorClass.sql_delete_column


INITIAL_VIEWS = {
    "migrating_categorynames": "v",
    "migrating_expensiveitems": "v",
    "migrating_itemcategories": "m",
    "migrating_itemcodes": "m",
    "migrating_itemprices": "v",
    "migrating_itemtitles": "v",
}


@contextmanager
def driver_connection(settings_dict: dict[str, Any], name: str) -> Iterator[Any]:
    """An autocommit connection with the driver Django uses (psycopg 3 or 2)."""
    # django-stubs does not declare the backends' DB-API module, `Database`.
    database = connections["default"].Database  # type: ignore[attr-defined]
    kwargs = {
        "dbname": name,
        "user": settings_dict.get("USER") or None,
        "password": settings_dict.get("PASSWORD") or None,
        "host": settings_dict.get("HOST") or None,
        "port": settings_dict.get("PORT") or None,
    }
    connection = database.connect(**{k: v for k, v in kwargs.items() if v is not None})
    connection.autocommit = True
    try:
        yield connection
    finally:
        connection.close()


# The storage schema each view of a generation points to, read from its marker.
STORED_IN = (
    "SELECT ev_class, substring(obj_description(oid, 'pg_rewrite') "
    'FROM \'"storage": "([^"]+)"\') AS stored FROM pg_rewrite WHERE rulename = \'_RETURN\''
)


@dataclass
class MigratingDatabase:
    """A database of its own for one test, and ``manage.py`` runs against it."""

    name: str
    settings_dict: dict[str, Any]
    history: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        host = self.settings_dict.get("HOST") or ""
        if host.startswith("/"):
            host = quote(host, safe="")
        port = f":{self.settings_dict['PORT']}" if self.settings_dict.get("PORT") else ""
        user = quote(self.settings_dict.get("USER") or "", safe="")
        password = self.settings_dict.get("PASSWORD")
        secret = f":{quote(password, safe='')}" if password else ""
        return f"postgresql://{user}{secret}@{host}{port}/{self.name}"

    def manage(
        self, *args: str, stage: str = "final", sync_on_migrate: bool = False
    ) -> CommandResult:
        env = dict(os.environ)
        env.update(
            DJANGO_SETTINGS_MODULE="tests.migrating_settings",
            DATABASE_URL=self.url,
            MIGRATING_APP_STAGE=stage,
            ORM_VIEWS_SYNC_ON_MIGRATE="1" if sync_on_migrate else "0",
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPOSITORY), env.get("PYTHONPATH")])),
        )
        completed = subprocess.run(
            [sys.executable, "-m", "django", *args],
            cwd=REPOSITORY,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        return CommandResult(completed.stdout, completed.stderr, completed.returncode)

    def fetch(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with driver_connection(self.settings_dict, self.name) as connection:
            cursor = connection.cursor()
            cursor.execute(sql, params or [])
            return list(cursor.fetchall()) if cursor.description else []

    def views(self) -> dict[str, str]:
        """The views of the views schema as readers see them: one that points to a
        stored materialized view is that materialized view ('m')."""
        return dict(
            self.fetch(
                "SELECT c.relname, CASE WHEN r.stored IS NULL THEN c.relkind::text ELSE 'm' END "
                "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                f"LEFT JOIN ({STORED_IN}) r ON r.ev_class = c.oid "
                "WHERE n.nspname = 'views' AND c.relkind IN ('v', 'm')"
            )
        )

    def schemas(self) -> list[str]:
        return [row[0] for row in self.fetch("SELECT nspname FROM pg_namespace ORDER BY 1")]

    def stored_in(self, view: str) -> str:
        """The schema that holds the view's rows: its storage schema, or views."""
        rows = self.fetch(
            f"SELECT stored FROM ({STORED_IN}) r WHERE r.ev_class = %s::regclass", [f"views.{view}"]
        )
        return rows[0][0] if rows and rows[0][0] else "views"

    def oid(self, view: str) -> int:
        where = self.stored_in(view)
        return int(self.fetch("SELECT %s::regclass::oid", [f'"{where}"."{view}"'])[0][0])

    def applied(self) -> list[str]:
        return [
            name
            for (name,) in self.fetch(
                "SELECT name FROM django_migrations WHERE app = 'migrating_app' ORDER BY id"
            )
        ]


def base_name() -> str:
    name = str(settings.DATABASES["default"]["NAME"])
    return name.removeprefix("test_")


@pytest.fixture
def migrating_database() -> Iterator[MigratingDatabase]:
    settings_dict = dict(settings.DATABASES["default"])
    database = MigratingDatabase(f"{base_name()}_mig_{uuid.uuid4().hex[:6]}", settings_dict)
    with driver_connection(settings_dict, "postgres") as connection:
        connection.cursor().execute(f'CREATE DATABASE "{database.name}"')
    try:
        yield database
    finally:
        with driver_connection(settings_dict, "postgres") as connection:
            connection.cursor().execute(f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)')


@pytest.fixture
def at_0001(migrating_database: MigratingDatabase) -> MigratingDatabase:
    """The app at 0001 with the views of that code, and some rows."""
    db = migrating_database
    result = db.manage("migrate", "migrating_app", "0001", "-v0", stage="initial")
    assert result.exit_code == 0, result.stderr
    result = db.manage("sync_views", "-v0", stage="initial")
    assert result.exit_code == 0, result.stderr
    db.fetch(
        "INSERT INTO migrating_app_category (label) VALUES ('books'), ('games');"
        "INSERT INTO migrating_app_item (category_id, name, price, legacy_code) "
        "SELECT 1 + g %% 2, 'item ' || g, g, 'code-' || g FROM generate_series(1, 200) AS g"
    )
    for name in ("migrating_itemcategories", "migrating_itemcodes"):
        db.fetch(f'REFRESH MATERIALIZED VIEW "{db.stored_in(name)}"."{name}"')
    assert db.views() == INITIAL_VIEWS
    return db


class Reader(threading.Thread):
    """Reads views in a loop on a connection of its own, recording every error."""

    def __init__(self, db: MigratingDatabase, views: list[str]) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.views = views
        self.stop = threading.Event()
        self.reads = 0
        self.errors: list[str] = []
        self.started_reading = threading.Event()

    def run(self) -> None:
        with driver_connection(self.db.settings_dict, self.db.name) as connection:
            cursor = connection.cursor()
            while not self.stop.is_set():
                for view in self.views:
                    try:
                        cursor.execute(f"SELECT count(*) FROM views.{view}")
                        cursor.fetchall()
                        self.reads += 1
                    except Exception as error:
                        self.errors.append(f"{view}: {error}")
                self.started_reading.set()
                time.sleep(0.002)


class TestSyncOnMigrate:
    def test_alter_rename_and_drop_succeed_and_the_views_are_synced(
        self, at_0001: MigratingDatabase
    ) -> None:
        db = at_0001
        kept = db.oid("migrating_itemcategories")
        reader = Reader(db, ["migrating_categorynames", "migrating_itemcategories"])
        reader.start()
        assert reader.started_reading.wait(10)
        reads_before = reader.reads
        result = db.manage("migrate", sync_on_migrate=True)
        reads_during = reader.reads - reads_before
        reader.stop.set()
        reader.join(10)

        assert result.exit_code == 0, result.stderr
        lines = result.stdout.splitlines()
        dropped = [line for line in lines if line.startswith("Dropped ")]
        assert dropped == [
            "Dropped 3 view(s) that read what the migrations change on database 'default' "
            "(ORM_VIEWS_SYNC_ON_MIGRATE); migrate syncs them when it ends: "
            "views.migrating_expensiveitems, views.migrating_itemcodes, views.migrating_itemprices"
        ]
        assert "  Applying migrating_app.0002_alter_price_type... OK" in lines
        assert "  Applying migrating_app.0003_rename_name_drop_legacy_code... OK" in lines
        synced = [line for line in lines if line.startswith("Synced on database")]
        assert len(synced) == 1
        # The three dropped views are created again; ItemTitles (a queryset over the
        # renamed field) changed with the model; the two others were left alone.
        assert synced[0].startswith(
            "Synced on database 'default' (swap): 3 created, 1 replaced, 0 dropped, 2 unchanged"
        )
        assert lines.index(dropped[0]) < lines.index("Running migrations:") < lines.index(synced[0])

        # Readers of views that read nothing the migrations change never saw an error.
        assert reader.errors == []
        assert reads_during > 0
        # The untouched materialized view was kept as it was, not rebuilt.
        assert db.oid("migrating_itemcategories") == kept

        assert db.views() == INITIAL_VIEWS
        assert db.manage("sync_views", "--check").exit_code == 0
        assert db.fetch(
            "SELECT pg_typeof(price)::text, count(*) FROM views.migrating_itemprices GROUP BY 1"
        ) == [("numeric", 200)]
        assert db.fetch("SELECT count(*) FROM views.migrating_expensiveitems") == [(100,)]
        assert db.fetch("SELECT code FROM views.migrating_itemcodes ORDER BY id LIMIT 1") == [
            ("item-1",)
        ]
        assert db.fetch("SELECT title FROM views.migrating_itemtitles ORDER BY id LIMIT 1") == [
            ("item 1",)
        ]

    def test_unapplying_migrations_round_trip(self, at_0001: MigratingDatabase) -> None:
        db = at_0001
        assert db.manage("migrate", sync_on_migrate=True).exit_code == 0
        result = db.manage(
            "migrate", "migrating_app", "0001", stage="initial", sync_on_migrate=True
        )
        assert result.exit_code == 0, result.stderr
        assert "  Unapplying migrating_app.0002_alter_price_type... OK" in result.stdout
        assert db.applied() == ["0001_initial"]
        assert db.manage("sync_views", "--check", stage="initial").exit_code == 0
        assert db.fetch(
            "SELECT pg_typeof(price)::text, sum(price) FROM views.migrating_itemprices GROUP BY 1"
        ) == [("integer", 20100)]

    def test_nothing_to_migrate_still_syncs(self, at_0001: MigratingDatabase) -> None:
        db = at_0001
        db.fetch("DROP VIEW views.migrating_categorynames")
        result = db.manage(
            "migrate", "migrating_app", "0001", stage="initial", sync_on_migrate=True
        )
        assert result.exit_code == 0, result.stderr
        assert (
            "Synced on database 'default' (swap): 1 created, 0 replaced, 0 dropped, 5 unchanged"
            in result.stdout
        )
        assert "Dropped" not in result.stdout

    def test_outside_views_on_dropped_views_stop_migrate_before_any_change(
        self, at_0001: MigratingDatabase
    ) -> None:
        db = at_0001
        db.fetch(
            "CREATE VIEW public.price_report AS SELECT count(*) AS n FROM views.migrating_itemprices"
        )
        result = db.manage("migrate", sync_on_migrate=True)
        assert result.exit_code == 1
        assert result.stderr == (
            "CommandError: Cannot keep the views of database 'default' working through migrate: "
            "view public.price_report (outside the 'views' schema) read views that read what the "
            "migrations change, so those views cannot be dropped before the migrations and synced "
            "after them. Nothing was changed. Drop these objects (or declare them as views), then "
            "migrate again.\n"
        )
        assert db.applied() == ["0001_initial"]
        assert db.views() == INITIAL_VIEWS

    def test_leftover_schemas_that_read_the_columns_are_dropped(
        self, at_0001: MigratingDatabase
    ) -> None:
        db = at_0001
        db.fetch("CREATE SCHEMA views__old_0badcafe")
        db.fetch("CREATE VIEW views__old_0badcafe.prices AS SELECT price FROM migrating_app_item")
        db.fetch("COMMENT ON SCHEMA views__old_0badcafe IS 'django_orm_views:previous'")
        db.fetch(
            'COMMENT ON RULE "_RETURN" ON views__old_0badcafe.prices IS '
            '\'django_orm_views {"extra_roles": [], "fingerprint": "left"}\''
        )
        result = db.manage("migrate", sync_on_migrate=True)
        assert result.exit_code == 0, result.stderr
        assert db.fetch("SELECT to_regnamespace('views__old_0badcafe')") == [(None,)]

    def test_a_reader_of_a_view_to_drop_delays_migrate_without_blocking_others(
        self, at_0001: MigratingDatabase
    ) -> None:
        db = at_0001
        with driver_connection(db.settings_dict, db.name) as holder:
            holder.autocommit = False
            cursor = holder.cursor()
            cursor.execute("SELECT count(*) FROM views.migrating_itemprices")
            cursor.fetchall()  # the transaction stays open, its lock held
            migrate = threading.Thread(
                target=lambda: setattr(
                    migrate, "result", db.manage("migrate", sync_on_migrate=True)
                )
            )
            migrate.start()
            # Wait until the drop is trying (and retrying, with a short lock_timeout).
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not db.fetch(
                "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND (query LIKE 'DROP VIEW%%' "
                "OR query LIKE '%%lock_timeout%%')"
            ):
                time.sleep(0.005)
            time.sleep(0.5)
            # It never queues other readers of the view behind it.
            assert db.fetch("SELECT count(*) FROM views.migrating_itemprices") == [(200,)]
            assert migrate.is_alive()
            holder.rollback()
        migrate.join(120)
        result = migrate.result  # type: ignore[attr-defined]
        assert result.exit_code == 0, result.stderr
        assert db.views() == INITIAL_VIEWS

    def test_a_failed_migration_puts_the_dropped_views_back(
        self, at_0001: MigratingDatabase
    ) -> None:
        db = at_0001
        # numeric(10, 2) cannot hold this price: 0002 fails after the views were dropped.
        db.fetch("UPDATE migrating_app_item SET price = 2000000000 WHERE id = 1")
        result = db.manage(
            "migrate", "migrating_app", "0002", stage="initial", sync_on_migrate=True
        )
        assert result.exit_code == 1
        assert "The 2 view(s) dropped before the migrations were recreated.\n" in result.stderr
        assert "numeric field overflow" in result.stderr
        assert db.applied() == ["0001_initial"]
        assert db.views() == INITIAL_VIEWS
        assert db.manage("sync_views", "--check", stage="initial").exit_code == 0

    def test_a_sync_that_fails_after_the_migrations_says_they_were_applied(
        self, at_0001: MigratingDatabase
    ) -> None:
        db = at_0001
        # The final code reads item.title, which only 0003 creates.
        result = db.manage("migrate", "migrating_app", "0002", sync_on_migrate=True)
        assert result.exit_code == 1
        assert result.stderr.startswith(
            "CommandError: The migrations were applied to database 'default', but syncing its "
            "views afterwards failed: View ItemPrices (tests.migrating_app.postgres_views): "
            "PostgreSQL refused `CREATE VIEW"
        )
        assert 'column "title" does not exist' in result.stderr
        assert db.applied() == ["0001_initial", "0002_alter_price_type"]
        # Finishing the migrations syncs everything.
        assert db.manage("migrate", sync_on_migrate=True).exit_code == 0
        assert db.views() == INITIAL_VIEWS

    def test_the_previous_generation_never_blocks_migrate_and_then_refuses_a_rollback(
        self, at_0001: MigratingDatabase
    ) -> None:
        db = at_0001
        # A deploy that rebuilt everything: the previous generation reads price too.
        assert db.manage("sync_views", "--force", "-v0", stage="initial").exit_code == 0
        (previous,) = [name for name in db.schemas() if name.startswith("views__old_")]
        assert db.fetch(f"SELECT count(*) FROM {previous}.migrating_itemprices") == [(200,)]

        result = db.manage(
            "migrate", "migrating_app", "0002", stage="initial", sync_on_migrate=True
        )

        assert result.exit_code == 0, result.stderr
        assert db.applied() == ["0001_initial", "0002_alter_price_type"]
        assert db.views() == INITIAL_VIEWS
        # The previous generation's views of price were dropped before the migration;
        # the sync after it kept the generation that lost them as the previous one...
        assert previous not in db.schemas()
        # ...so a rollback to it is refused, saying what it lost.
        result = db.manage("sync_views", "--rollback", stage="initial")
        assert result.exit_code == 1
        assert result.stderr.startswith("CommandError: Cannot roll back database 'default'")
        assert "it has lost 2 view(s) dropped while it was live" in result.stderr


class TestWithoutSyncOnMigrate:
    def test_altering_a_column_views_read_names_the_views_and_the_setting(
        self, at_0001: MigratingDatabase
    ) -> None:
        db = at_0001
        before = db.oid("migrating_itemprices")
        result = db.manage("migrate")
        assert result.exit_code == 1
        assert result.stderr == (
            "CommandError: Migration migrating_app.0002_alter_price_type failed on database "
            "'default': PostgreSQL refused to change a column or table that views read (cannot "
            "alter type of a column used by a view or rule). Views of django-orm-views that read "
            "it: views.migrating_expensiveitems, views.migrating_itemprices. Set "
            "ORM_VIEWS_SYNC_ON_MIGRATE = True in your settings: migrate then drops the views that "
            "read what the migrations change and syncs them when it ends. Or drop those views "
            "yourself, migrate, and run `manage.py sync_views`.\n"
        )
        assert db.applied() == ["0001_initial"]
        assert db.oid("migrating_itemprices") == before

    def test_the_error_names_the_previous_generations_views_too(
        self, at_0001: MigratingDatabase
    ) -> None:
        db = at_0001
        assert db.manage("sync_views", "--force", "-v0", stage="initial").exit_code == 0
        (previous,) = [name for name in db.schemas() if name.startswith("views__old_")]
        result = db.manage("migrate")
        assert result.exit_code == 1
        assert (
            "Views of django-orm-views that read it: views.migrating_expensiveitems, "
            f"views.migrating_itemprices, {previous}.migrating_expensiveitems (the previous "
            f"generation), {previous}.migrating_itemprices (the previous generation). Set "
            "ORM_VIEWS_SYNC_ON_MIGRATE = True"
        ) in result.stderr
        assert db.applied() == ["0001_initial"]

    def test_dropped_columns_take_their_views_along_and_migrate_says_so(
        self, at_0001: MigratingDatabase
    ) -> None:
        db = at_0001
        result = db.manage(
            "migrate", "migrating_app", "0002", stage="initial", sync_on_migrate=True
        )
        assert result.exit_code == 0, result.stderr
        # The sync after 0002 kept the generation it replaced as the previous one, which
        # reads legacy_code too.
        (previous,) = [name for name in db.schemas() if name.startswith("views__old_")]
        result = db.manage("migrate")
        if not drops_columns_with_cascade():
            # Django 6 drops a column without CASCADE: PostgreSQL refuses, and migrate
            # names the views and the fix, as for an altered column.
            assert result.exit_code == 1
            assert result.stderr == (
                "CommandError: Migration migrating_app.0003_rename_name_drop_legacy_code failed "
                "on database 'default': PostgreSQL refused to change a column or table that "
                "views read (cannot drop column legacy_code of table migrating_app_item because "
                "other objects depend on it). Views of django-orm-views that read it: "
                f"views.migrating_itemcodes, {previous}.migrating_itemcodes (the previous "
                "generation). Set ORM_VIEWS_SYNC_ON_MIGRATE = True in your settings: migrate "
                "then drops the views that read what the migrations change and syncs them when "
                "it ends. Or drop those views yourself, migrate, and run `manage.py "
                "sync_views`.\n"
            )
            assert db.applied() == ["0001_initial", "0002_alter_price_type"]
            assert "migrating_itemcodes" in db.views()
            return
        # Django before 6 drops columns with CASCADE: the migration succeeds without the
        # views, the live one and the previous generation's.
        assert result.exit_code == 0, result.stderr
        assert result.stdout.splitlines()[-1] == (
            "The migrations dropped 2 view(s) on database 'default' together with the columns "
            "or tables they read (Django drops them with CASCADE): views.migrating_itemcodes, "
            f"{previous}.migrating_itemcodes (the previous generation). Run `manage.py "
            "sync_views` to create them again, or set ORM_VIEWS_SYNC_ON_MIGRATE = True so that "
            "migrate does it."
        )
        assert "migrating_itemcodes" not in db.views()
        assert db.manage("sync_views", "-v0").exit_code == 0
        assert db.views() == INITIAL_VIEWS

    def test_views_outside_the_schema_are_named_as_not_managed(
        self, at_0001: MigratingDatabase
    ) -> None:
        db = at_0001
        assert db.manage("migrate", sync_on_migrate=True).exit_code == 0
        db.fetch("CREATE VIEW public.by_hand AS SELECT id, price FROM migrating_app_item")
        result = db.manage(
            "migrate", "migrating_app", "0001", stage="initial", sync_on_migrate=True
        )
        assert result.exit_code == 1
        assert result.stderr == (
            "CommandError: Migration migrating_app.0002_alter_price_type failed on database "
            "'default': PostgreSQL refused to change a column or table that views read (cannot "
            "alter type of a column used by a view or rule). Views that django-orm-views does not "
            "manage also read it: public.by_hand; drop or change them yourself. "
            "ORM_VIEWS_SYNC_ON_MIGRATE only drops and syncs the views of the 'views' schema. "
            "The 5 view(s) dropped before the migrations were recreated.\n"
        )
        # 0003 was unapplied, 0002 was not; the views match the code again.
        assert db.applied() == ["0001_initial", "0002_alter_price_type"]
        assert db.views() == INITIAL_VIEWS
