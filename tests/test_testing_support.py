"""Views in test databases: pytest-django and Django's test runner, run in subprocesses.

Each test writes a small test suite into a temporary directory and runs it with
tests/testing_settings.py (test_project with both databases) against test databases
of its own (``test_<name>`` and ``test_<name>_warehouse``), then reads what the inner
run printed: how many views each test database held.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from .test_migrate import base_name, driver_connection
from .utils import REPOSITORY

ALL_VIEWS = {"default": 9, "warehouse": 2}
NO_VIEWS = {"default": 0, "warehouse": 0}

COUNT_VIEWS = """
import json

from django.db import connections

from test_project.shop.postgres_views import CustomerSanitised


def report() -> None:
    counts = {}
    for alias in ("default", "warehouse"):
        with connections[alias].cursor() as cursor:
            cursor.execute(
                "SELECT current_database(), count(*) FROM pg_class AS c JOIN pg_namespace AS n "
                "ON n.oid = c.relnamespace WHERE n.nspname = 'views' AND c.relkind IN ('v', 'm')"
            )
            name, count = cursor.fetchone()
        counts[alias] = [name, count]
    if counts["default"][1]:
        CustomerSanitised.objects.count()  # the ORM reads the view
    print("VIEWS " + json.dumps(counts))
"""

PYTEST_TEST = (
    COUNT_VIEWS
    + """

import pytest


@pytest.mark.django_db(databases=["default", "warehouse"])
def test_views() -> None:
    report()
"""
)

DJANGO_TEST = (
    COUNT_VIEWS
    + """

from django.test import TestCase


class ViewsTests(TestCase):
    databases = {"default", "warehouse"}

    def test_views(self) -> None:
        report()
"""
)

FIXTURE_CONFTEST = (
    "from django_orm_views.testing import django_db_modify_db_settings  # noqa: F401\n"
)


@dataclass
class InnerRun:
    returncode: int
    output: str

    def views(self) -> dict[str, int]:
        lines = [line for line in self.output.splitlines() if line.startswith("VIEWS ")]
        assert len(lines) == 1, self.output
        counts: dict[str, list[Any]] = json.loads(lines[0][len("VIEWS ") :])
        return {alias: count for alias, (_, count) in counts.items()}

    def database_names(self) -> list[str]:
        lines = [line for line in self.output.splitlines() if line.startswith("VIEWS ")]
        return [name for name, _ in json.loads(lines[0][len("VIEWS ") :]).values()]


@dataclass
class InnerProject:
    directory: Path
    name: str

    @property
    def test_databases(self) -> list[str]:
        return [f"test_{self.name}", f"test_{self.name}_warehouse"]

    def env(self, sync_on_migrate: bool) -> dict[str, str]:
        server = settings.DATABASES["default"]
        host = server.get("HOST") or ""
        host = host.replace("/", "%2F")
        port = f":{server['PORT']}" if server.get("PORT") else ""
        password = f":{server['PASSWORD']}" if server.get("PASSWORD") else ""
        env = dict(os.environ)
        env.pop("WAREHOUSE_DATABASE_URL", None)
        env.update(
            DATABASE_URL=f"postgresql://{server.get('USER') or ''}{password}@{host}{port}/{self.name}",
            DJANGO_SETTINGS_MODULE="tests.testing_settings",
            ORM_VIEWS_SYNC_ON_MIGRATE="1" if sync_on_migrate else "0",
            PYTHONPATH=os.pathsep.join([str(REPOSITORY), str(self.directory)]),
        )
        return env

    def run(self, args: list[str], sync_on_migrate: bool) -> InnerRun:
        completed = subprocess.run(
            [sys.executable, *args],
            cwd=self.directory,
            env=self.env(sync_on_migrate),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        return InnerRun(completed.returncode, completed.stdout + completed.stderr)

    def pytest(self, *options: str, sync_on_migrate: bool, fixture: bool = False) -> InnerRun:
        (self.directory / "conftest.py").write_text(FIXTURE_CONFTEST if fixture else "")
        (self.directory / "test_inner.py").write_text(PYTEST_TEST)
        (self.directory / "pytest.ini").write_text("[pytest]\n")
        return self.run(
            ["-m", "pytest", "-p", "no:cacheprovider", "-q", "-s", *options],
            sync_on_migrate,
        )

    def django_test(self, *options: str, sync_on_migrate: bool) -> InnerRun:
        (self.directory / "inner_django_tests.py").write_text(DJANGO_TEST)
        return self.run(
            ["-m", "django", "test", "inner_django_tests", "--noinput", *options],
            sync_on_migrate,
        )

    def execute(self, database: str, sql: str) -> None:
        with driver_connection(settings.DATABASES["default"], database) as connection:
            connection.cursor().execute(sql)

    def drop_test_databases(self) -> None:
        with driver_connection(settings.DATABASES["default"], "postgres") as connection:
            for name in self.test_databases:
                connection.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def inner(tmp_path: Path) -> Iterator[InnerProject]:
    project = InnerProject(tmp_path, f"{base_name()}_ts_{uuid.uuid4().hex[:6]}")
    try:
        yield project
    finally:
        project.drop_test_databases()


class TestPytestDjangoWithSyncOnMigrate:
    def test_views_exist_in_every_test_database(self, inner: InnerProject) -> None:
        run = inner.pytest(sync_on_migrate=True)
        assert run.returncode == 0, run.output
        assert run.views() == ALL_VIEWS
        assert run.database_names() == inner.test_databases

    def test_without_migrations(self, inner: InnerProject) -> None:
        run = inner.pytest("--no-migrations", sync_on_migrate=True)
        assert run.returncode == 0, run.output
        assert run.views() == ALL_VIEWS

    def test_reused_databases_are_synced_again(self, inner: InnerProject) -> None:
        first = inner.pytest("--reuse-db", sync_on_migrate=True)
        assert first.returncode == 0, first.output
        assert first.views() == ALL_VIEWS
        # The kept database lost a view (or the code changed): the next run syncs it.
        inner.execute(inner.test_databases[0], "DROP VIEW views.shop_countryrevenue")
        second = inner.pytest("--reuse-db", sync_on_migrate=True)
        assert second.returncode == 0, second.output
        assert second.views() == ALL_VIEWS


class TestPytestDjangoWithTheFixture:
    def test_without_the_setting_or_the_fixture_there_are_no_views(
        self, inner: InnerProject
    ) -> None:
        run = inner.pytest(sync_on_migrate=False)
        assert run.returncode == 0, run.output
        assert run.views() == NO_VIEWS

    def test_the_fixture_syncs_them(self, inner: InnerProject) -> None:
        run = inner.pytest(sync_on_migrate=False, fixture=True)
        assert run.returncode == 0, run.output
        assert run.views() == ALL_VIEWS

    def test_the_fixture_without_migrations_and_reusing_the_databases(
        self, inner: InnerProject
    ) -> None:
        first = inner.pytest("--no-migrations", "--reuse-db", sync_on_migrate=False, fixture=True)
        assert first.returncode == 0, first.output
        assert first.views() == ALL_VIEWS
        inner.execute(inner.test_databases[1], "DROP SCHEMA views CASCADE")
        second = inner.pytest("--no-migrations", "--reuse-db", sync_on_migrate=False, fixture=True)
        assert second.returncode == 0, second.output
        assert second.views() == ALL_VIEWS


class TestDjangoTestRunner:
    def test_views_exist_with_the_setting(self, inner: InnerProject) -> None:
        run = inner.django_test(sync_on_migrate=True)
        assert run.returncode == 0, run.output
        assert run.views() == ALL_VIEWS
        assert run.database_names() == inner.test_databases

    def test_keepdb(self, inner: InnerProject) -> None:
        first = inner.django_test("--keepdb", sync_on_migrate=True)
        assert first.returncode == 0, first.output
        inner.execute(inner.test_databases[0], "DROP VIEW views.shop_countryrevenue")
        second = inner.django_test("--keepdb", sync_on_migrate=True)
        assert second.returncode == 0, second.output
        assert "Using existing test database for alias 'default'" in second.output
        assert second.views() == ALL_VIEWS

    def test_the_runner_syncs_them_without_the_setting(self, inner: InnerProject) -> None:
        run = inner.django_test(
            "--testrunner", "django_orm_views.testing.ViewsTestRunner", sync_on_migrate=False
        )
        assert run.returncode == 0, run.output
        assert run.views() == ALL_VIEWS


@pytest.mark.django_db(databases=["default", "warehouse"])
def test_sync_test_views_syncs_the_aliases_given() -> None:
    from django_orm_views.testing import sync_test_views

    from .conftest import drop_view_schemas
    from .utils import relations_in

    drop_view_schemas("default")
    drop_view_schemas("warehouse")
    sync_test_views(["warehouse"])
    assert set(relations_in("views", "warehouse")) >= {
        "warehouse_stocklevel",
        "warehouse_dailymovements",
    }
    assert relations_in("views", "default") == {}
    sync_test_views()
    assert "shop_dailysales" in relations_in("views", "default")
