"""System checks orm_views.E020 and up: settings, databases, routers."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connections
from django.test import override_settings

from django_orm_views import PostgresViewFromSQL

from .utils import run_command


class NowhereRouter:
    """Allows no app on any database."""

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return False


@pytest.fixture
def extra_alias(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Adds a database alias for one test."""
    added: list[str] = []

    def add(alias: str, **settings_dict: Any) -> None:
        default = connections.settings["default"]
        configured = connections.configure_settings({"default": default, alias: settings_dict})
        monkeypatch.setitem(connections.settings, alias, configured[alias])
        added.append(alias)

    yield add
    for alias in added:
        # django-stubs leaves out ConnectionHandler's private per-thread storage.
        if hasattr(connections._connections, alias):  # type: ignore[attr-defined]
            connections[alias].close()
            delattr(connections._connections, alias)  # type: ignore[attr-defined]


def check(*args: str) -> tuple[int, str]:
    result = run_command("check", *args)
    return result.exit_code, result.stderr


class TestSettings:
    @pytest.mark.parametrize("schema", ["public", "pg_views", "information_schema"])
    def test_schemas_that_are_not_ours(self, schema: str) -> None:
        with override_settings(ORM_VIEWS_SCHEMA=schema):
            exit_code, stderr = check()
        assert exit_code == 1
        assert (
            f"?: (orm_views.E021) ORM_VIEWS_SCHEMA = {schema!r} names a schema that "
            "django-orm-views does not own: a sync replaces its schema as a whole.\n"
            "\tHINT: Use a schema of its own, such as 'views' (the default). PostgreSQL "
            "reserves names starting with 'pg_'." in stderr
        )

    def test_an_unusable_schema_name_is_still_e010(self) -> None:
        with override_settings(ORM_VIEWS_SCHEMA="Views; DROP"):
            exit_code, stderr = check()
        assert exit_code == 1
        assert "orm_views.E010" in stderr
        assert "orm_views.E021" not in stderr

    @pytest.mark.parametrize("roles", ["analytics", ["analytics", ""], [42], None])
    def test_roles_must_be_a_list_of_names(self, roles: Any) -> None:
        with override_settings(ORM_VIEWS_GRANT_SELECT_TO=roles):
            exit_code, stderr = check()
        assert exit_code == 1
        assert (
            f"(orm_views.E025) ORM_VIEWS_GRANT_SELECT_TO = {roles!r} is not a list of role names."
            in stderr
        )

    def test_the_project_passes(self) -> None:
        assert check() == (0, "")


@pytest.mark.django_db
class TestDatabaseChecks:
    def test_unknown_roles_only_with_database(self) -> None:
        with override_settings(ORM_VIEWS_GRANT_SELECT_TO=["analytics", "no_such_role_e020"]):
            assert check() == (0, "")
            exit_code, stderr = check("--database", "default")
        assert exit_code == 1
        assert (
            "?: (orm_views.E020) ORM_VIEWS_GRANT_SELECT_TO names role(s) that do not exist on "
            "database 'default': no_such_role_e020. A sync would fail granting SELECT.\n"
            "\tHINT: Create them (CREATE ROLE ...) or remove them from the setting." in stderr
        )

    def test_migrate_checks_roles_only_when_it_syncs(self) -> None:
        with override_settings(ORM_VIEWS_GRANT_SELECT_TO=["no_such_role_e020"]):
            result = run_command("migrate", skip_checks=False, verbosity=0)
            assert (result.exit_code, result.stderr) == (0, "")
            with (
                override_settings(ORM_VIEWS_SYNC_ON_MIGRATE=True),
                pytest.raises(SystemCheckError, match=r"orm_views\.E020"),
            ):
                call_command("migrate", skip_checks=False, verbosity=0, stdout=io.StringIO())

    def test_roles_that_exist_pass(self) -> None:
        assert check("--database", "default", "--database", "warehouse") == (0, "")

    def test_objects_in_the_views_schema_that_a_sync_would_drop(self) -> None:
        with connections["default"].cursor() as cursor:
            cursor.execute("CREATE SCHEMA views")
            cursor.execute("CREATE TABLE views.notes (id int)")
            cursor.execute("CREATE SEQUENCE views.counter")
            cursor.execute("CREATE VIEW views.shop_paidorders AS SELECT 1 AS id")
        exit_code, stderr = check("--database", "default")
        assert exit_code == 1
        assert (
            "?: (orm_views.E022) Schema 'views' on database 'default' holds objects that are not "
            "views: sequence counter, table notes. A sync replaces the schema and would drop them.\n"
            in stderr
        )
        # The warehouse database has no such objects.
        assert check("--database", "warehouse") == (0, "")


class TestViewDatabases:
    def test_a_view_on_a_database_that_is_not_postgresql(
        self, extra_alias: Callable[..., None], declared_views: list[type]
    ) -> None:
        extra_alias("legacy", ENGINE="django.db.backends.sqlite3", NAME=":memory:")

        class OnSqlite(PostgresViewFromSQL):
            database = "legacy"
            sql = "SELECT 1 AS one"

        exit_code, stderr = check()
        assert exit_code == 1
        assert (
            "(orm_views.E023) View TestViewDatabases.test_a_view_on_a_database_that_is_not_postgresql"
            ".<locals>.OnSqlite (tests.test_checks) lives on database 'legacy', which uses the "
            "sqlite backend; views need PostgreSQL.\n"
            "\tHINT: Set the view's `database` to a PostgreSQL alias, or route its app to one "
            "(a router's allow_migrate)." in stderr
        )

    def test_a_view_that_no_router_allows_anywhere(self, declared_views: list[type]) -> None:
        class Orphan(PostgresViewFromSQL):
            __module__ = "test_project.shop.postgres_views"
            sql = "SELECT 1 AS one"

        class Pinned(PostgresViewFromSQL):
            __module__ = "test_project.shop.postgres_views"
            database = "default"
            sql = "SELECT 1 AS one"

        with override_settings(DATABASE_ROUTERS=["tests.test_checks.NowhereRouter"]):
            exit_code, stderr = check()
            assert Orphan.database == "default"
        assert exit_code == 1
        assert (
            "(orm_views.E024) View TestViewDatabases.test_a_view_that_no_router_allows_anywhere"
            ".<locals>.Orphan (test_project.shop.postgres_views) sets no `database`, and the "
            "database routers allow its app ('shop') on none of: default, warehouse." in stderr
        )
        # Every shop view sets no database either; Pinned names its own and is fine.
        assert "Pinned" not in stderr

    def test_a_database_that_cannot_be_read(
        self,
        extra_alias: Callable[..., None],
        declared_views: list[type],
        django_db_blocker: Any,
    ) -> None:
        extra_alias("gone", **{**connections["default"].settings_dict, "NAME": "no_such_db_e026"})

        class OnGone(PostgresViewFromSQL):
            database = "gone"
            sql = "SELECT 1 AS one"

        with django_db_blocker.unblock():
            exit_code, stderr = check("--database", "gone")
        assert exit_code == 1
        assert "(orm_views.E026) Could not read database 'gone' to check its views: " in stderr
        assert 'database "no_such_db_e026" does not exist' in stderr
